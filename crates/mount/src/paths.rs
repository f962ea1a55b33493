//! Kubelet's on-disk layout under its root directory (`pkg/kubelet/kubelet_getters.go`) and the escaping
//! of plugin names in it (`k8s.io/utils/strings`).

use std::path::{Path, PathBuf};

/// Directory of pods under the root (`config.DefaultKubeletPodsDirName`).
pub const PODS_DIR: &str = "pods";
/// Directory of plugin data under the root and under a pod.
pub const PLUGINS_DIR: &str = "plugins";
/// Directory of pod volumes under a pod.
pub const VOLUMES_DIR: &str = "volumes";
/// Directory of subPath bind mounts under a pod.
pub const VOLUME_SUBPATHS_DIR: &str = "volume-subpaths";
/// Directory of block volumes under a pod and under a plugin.
pub const VOLUME_DEVICES_DIR: &str = "volumeDevices";

/// `kubernetes.io/nfs` → `kubernetes.io~nfs`: a qualified name made safe as one path component.
pub fn escape_qualified_name(name: &str) -> String {
    name.replace('/', "~")
}

/// `kubernetes.io~nfs` → `kubernetes.io/nfs`.
pub fn unescape_qualified_name(name: &str) -> String {
    name.replace('~', "/")
}

/// `<root>/pods`.
pub fn pods_dir(root: &Path) -> PathBuf {
    root.join(PODS_DIR)
}

/// `<root>/pods/<uid>`.
pub fn pod_dir(root: &Path, pod_uid: &str) -> PathBuf {
    pods_dir(root).join(pod_uid)
}

/// `<root>/pods/<uid>/volumes`.
pub fn pod_volumes_dir(root: &Path, pod_uid: &str) -> PathBuf {
    pod_dir(root, pod_uid).join(VOLUMES_DIR)
}

/// `<root>/pods/<uid>/volumes/<escaped plugin>/<volume>`: where a pod's volume is mounted.
pub fn pod_volume_dir(root: &Path, pod_uid: &str, plugin: &str, volume: &str) -> PathBuf {
    pod_volumes_dir(root, pod_uid).join(escape_qualified_name(plugin)).join(volume)
}

/// `<root>/pods/<uid>/volume-subpaths/<volume>/<container>/<index>`: the bind target of a subPath mount.
pub fn pod_volume_subpath_dir(root: &Path, pod_uid: &str, volume: &str, container: &str, index: usize) -> PathBuf {
    pod_volume_subpaths_dir(root, pod_uid).join(volume).join(container).join(index.to_string())
}

/// `<root>/pods/<uid>/volume-subpaths`.
pub fn pod_volume_subpaths_dir(root: &Path, pod_uid: &str) -> PathBuf {
    pod_dir(root, pod_uid).join(VOLUME_SUBPATHS_DIR)
}

/// `<root>/pods/<uid>/plugins/<escaped plugin>`: per-pod plugin data.
pub fn pod_plugin_dir(root: &Path, pod_uid: &str, plugin: &str) -> PathBuf {
    pod_dir(root, pod_uid).join(PLUGINS_DIR).join(escape_qualified_name(plugin))
}

/// `<root>/pods/<uid>/volumeDevices/<escaped plugin>`: a pod's block volumes of one plugin.
pub fn pod_volume_devices_dir(root: &Path, pod_uid: &str, plugin: &str) -> PathBuf {
    pod_dir(root, pod_uid).join(VOLUME_DEVICES_DIR).join(escape_qualified_name(plugin))
}

/// `<root>/plugins`.
pub fn plugins_dir(root: &Path) -> PathBuf {
    root.join(PLUGINS_DIR)
}

/// `<root>/plugins/<plugin>`: a plugin's global data (not escaped: `plugins/kubernetes.io/csi/…`, as kubelet
/// lays it out).
pub fn plugin_dir(root: &Path, plugin: &str) -> PathBuf {
    plugins_dir(root).join(plugin)
}

/// `<root>/plugins/<plugin>/volumeDevices`: a plugin's global block-device dir.
pub fn volume_devices_dir(root: &Path, plugin: &str) -> PathBuf {
    plugin_dir(root, plugin).join(VOLUME_DEVICES_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_unescapes_qualified_names() {
        assert_eq!(escape_qualified_name("kubernetes.io/nfs"), "kubernetes.io~nfs");
        assert_eq!(escape_qualified_name("k8s/nfs"), "k8s~nfs");
        assert_eq!(escape_qualified_name("kubernetes.io/empty-dir"), "kubernetes.io~empty-dir");
        assert_eq!(unescape_qualified_name("kubernetes.io~csi"), "kubernetes.io/csi");
    }

    #[test]
    fn lays_out_pod_dirs_as_kubelet_does() {
        let r = Path::new("/var/lib/kubelet");
        assert_eq!(
            pod_volume_dir(r, "u1", "kubernetes.io/nfs", "data"),
            Path::new("/var/lib/kubelet/pods/u1/volumes/kubernetes.io~nfs/data")
        );
        assert_eq!(
            pod_volume_subpath_dir(r, "u1", "data", "app", 2),
            Path::new("/var/lib/kubelet/pods/u1/volume-subpaths/data/app/2")
        );
        assert_eq!(
            pod_plugin_dir(r, "u1", "kubernetes.io/csi"),
            Path::new("/var/lib/kubelet/pods/u1/plugins/kubernetes.io~csi")
        );
        assert_eq!(
            pod_volume_devices_dir(r, "u1", "kubernetes.io/csi"),
            Path::new("/var/lib/kubelet/pods/u1/volumeDevices/kubernetes.io~csi")
        );
    }

    #[test]
    fn plugin_dirs_keep_the_plugin_name_unescaped() {
        let r = Path::new("/var/lib/kubelet");
        assert_eq!(plugin_dir(r, "kubernetes.io/csi"), Path::new("/var/lib/kubelet/plugins/kubernetes.io/csi"));
        assert_eq!(
            volume_devices_dir(r, "kubernetes.io/csi"),
            Path::new("/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices")
        );
    }
}
