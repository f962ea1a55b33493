//! Where drivers live and what they are called (`plugin.go`, `probe.go`, `utilstrings`).

use std::path::{Path, PathBuf};

/// Kubelet's default `--volume-plugin-dir`.
pub const DEFAULT_PLUGIN_DIR: &str = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec/";

/// Prefix of a FlexVolume plugin's name in the volume plugin registry.
pub const PLUGIN_NAME_PREFIX: &str = "flexvolume-";

/// The in-tree plugin name whose plugin dir holds the flex global (device) mounts.
pub const FLEX_PLUGIN_NAME: &str = "kubernetes.io/flexvolume";

/// `vendor/driver` → `vendor~driver` (`EscapeQualifiedName`): the driver's directory name and
/// the plugin part of pod volume paths.
pub fn escape_qualified_name(driver: &str) -> String {
    driver.replace('/', "~")
}

/// `vendor~driver` → `vendor/driver` (`UnescapeQualifiedName`).
pub fn unescape_qualified_name(dir_name: &str) -> String {
    dir_name.replace('~', "/")
}

/// `flexvolume-<vendor/driver>` (`GetPluginName`).
pub fn plugin_name(driver: &str) -> String {
    format!("{PLUGIN_NAME_PREFIX}{driver}")
}

/// The executable's file name: the last `/` segment of the driver name.
pub fn executable_name(driver: &str) -> &str {
    driver.rsplit('/').next().unwrap_or(driver)
}

/// `<plugin dir>/<vendor~driver>/<driver>` for a driver directory name (`getExecutable`).
pub fn executable_path(plugin_dir: &Path, dir_name: &str) -> PathBuf {
    let driver = unescape_qualified_name(dir_name);
    plugin_dir.join(dir_name).join(executable_name(&driver))
}

/// Names starting with `.` are never drivers (and hide the atomic installer's temp file).
pub fn is_ignored(name: &str) -> bool {
    name.starts_with('.')
}

/// The driver directory names in `plugin_dir` (`probeAll`): directories not starting with `.`,
/// sorted. A missing plugin dir has no drivers.
pub fn list_driver_dirs(plugin_dir: &Path) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(plugin_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if !is_ignored(&name) && entry.file_type()?.is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The global (device) mount path of a volume:
/// `<root>/plugins/kubernetes.io/flexvolume/<vendor/driver>/mounts/<volume name>`.
pub fn device_mount_path(root: &Path, driver: &str, volume_name: &str) -> PathBuf {
    root.join("plugins").join(FLEX_PLUGIN_NAME).join(driver).join("mounts").join(volume_name)
}

/// The pod's volume dir: `<root>/pods/<uid>/volumes/<vendor~driver>/<volume name>`.
pub fn pod_volume_dir(root: &Path, pod_uid: &str, driver: &str, volume_name: &str) -> PathBuf {
    root.join("pods").join(pod_uid).join("volumes").join(escape_qualified_name(driver)).join(volume_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_map_to_directories_and_executables() {
        let dir = Path::new(DEFAULT_PLUGIN_DIR);
        assert_eq!(executable_path(dir, "k8s~nfs"), dir.join("k8s~nfs/nfs"));
        assert_eq!(executable_path(dir, "foo~cifs"), dir.join("foo~cifs/cifs"));
        assert_eq!(executable_path(dir, "nfs"), dir.join("nfs/nfs"));
        assert_eq!(executable_path(dir, "a~b~c"), dir.join("a~b~c/c"));
        assert_eq!(plugin_name(&unescape_qualified_name("k8s~nfs")), "flexvolume-k8s/nfs");
        assert_eq!(escape_qualified_name("kubernetes.io/lvm"), "kubernetes.io~lvm");
        assert!(is_ignored(".nfs") && !is_ignored("k8s~nfs"));
    }

    #[test]
    fn kubelet_paths_are_laid_out_as_kubelet_lays_them_out() {
        let root = Path::new("/var/lib/kubelet");
        assert_eq!(
            device_mount_path(root, "kvol/loop", "pv1"),
            Path::new("/var/lib/kubelet/plugins/kubernetes.io/flexvolume/kvol/loop/mounts/pv1")
        );
        assert_eq!(
            pod_volume_dir(root, "u1", "k8s/nfs", "test"),
            Path::new("/var/lib/kubelet/pods/u1/volumes/k8s~nfs/test")
        );
    }

    #[test]
    fn listing_skips_dot_names_and_files() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("k8s~nfs")).unwrap();
        std::fs::create_dir(tmp.path().join(".hidden")).unwrap();
        std::fs::write(tmp.path().join("file"), "").unwrap();
        assert_eq!(list_driver_dirs(tmp.path()).unwrap(), ["k8s~nfs"]);
        assert!(list_driver_dirs(&tmp.path().join("missing")).unwrap().is_empty());
    }
}
