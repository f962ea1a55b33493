//! The in-tree plugins, one module each.

pub mod config_map;
pub mod csi;
pub mod empty_dir;
pub mod flexvolume;
pub mod host_path;
pub mod local;
pub mod nfs;
mod projection;
pub mod secret;

use std::sync::Arc;

use crate::plugin::VolumePlugin;

/// The plugins' qualified names, as kubelet registers them.
pub mod names {
    /// emptyDir.
    pub const EMPTY_DIR: &str = "kubernetes.io/empty-dir";
    /// hostPath.
    pub const HOST_PATH: &str = "kubernetes.io/host-path";
    /// configMap.
    pub const CONFIG_MAP: &str = "kubernetes.io/configmap";
    /// secret.
    pub const SECRET: &str = "kubernetes.io/secret";
    /// nfs.
    pub const NFS: &str = "kubernetes.io/nfs";
    /// local.
    pub const LOCAL: &str = "kubernetes.io/local-volume";

    /// Splits a unique volume name (`<plugin name>/<volume name>`) into the plugin name (its first two
    /// `/`-separated parts) and the plugin's volume name (the rest), as `util.SplitUniqueName` does; `None`
    /// when there are fewer than three parts.
    pub fn split_unique_name(unique: &str) -> Option<(&str, &str)> {
        let first = unique.find('/')?;
        let second = first + 1 + unique[first + 1..].find('/')?;
        Some((&unique[..second], &unique[second + 1..]))
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn unique_names_split_after_the_second_slash() {
            use super::split_unique_name;
            assert_eq!(split_unique_name("flexvolume-k8s/loop/vol1"), Some(("flexvolume-k8s/loop", "vol1")));
            assert_eq!(split_unique_name("kubernetes.io/csi/d^a/b"), Some(("kubernetes.io/csi", "d^a/b")));
            assert_eq!(split_unique_name("a/b"), None);
        }
    }
}

/// Every in-tree plugin, for [`crate::PluginRegistry::with`].
pub fn all_plugins() -> Vec<Arc<dyn VolumePlugin>> {
    vec![
        Arc::new(empty_dir::EmptyDirPlugin),
        Arc::new(host_path::HostPathPlugin),
        Arc::new(config_map::ConfigMapPlugin),
        Arc::new(secret::SecretPlugin),
        Arc::new(nfs::NfsPlugin),
        Arc::new(local::LocalPlugin),
    ]
}

/// Tears down a volume directory the plugin owns (emptyDir, configMap, secret): unmounts what is mounted
/// at it (a tmpfs), then removes it recursively, after checking that nothing is mounted at or beneath it,
/// so the removal never reaches into another file system. One `statx` per entry, no mount-table read.
/// Idempotent: a missing directory is success.
pub(crate) fn tear_down_volume_dir(mounter: &dyn kvol_mount::Mounter, path: &std::path::Path) -> crate::Result<()> {
    use crate::mount_root::{find_mount_beneath, is_mount_root};
    for _ in 0..8 {
        match is_mount_root(mounter, path) {
            Ok(true) => mounter.unmount(path)?,
            Ok(false) => {
                if let Some(m) = find_mount_beneath(mounter, path)? {
                    return Err(kvol_mount::Error::StillMounted { path: m }.into());
                }
                return match std::fs::remove_dir_all(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(crate::Error::io("removing", path)(e)),
                    _ => Ok(()),
                };
            }
            Err(crate::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Err(kvol_mount::Error::StillMounted { path: path.to_path_buf() }.into())
}

/// Mounts a tmpfs at `path` unless one is there. A fresh directory is on its parent's device, which
/// proves there is no tmpfs without reading the mount table.
pub(crate) fn ensure_tmpfs(
    mounter: &dyn kvol_mount::Mounter,
    path: &std::path::Path,
    size: Option<u64>,
) -> crate::Result<()> {
    if mounter.is_likely_not_mount_point(path)? {
        mounter.mount("tmpfs", path, "tmpfs", &kvol_mount::tmpfs::tmpfs_options(size))?;
        return Ok(());
    }
    Ok(kvol_mount::mount_tmpfs(mounter, path, size)?)
}

/// Creates `path` and its parents (0750, as kubelet's `os.MkdirAll(dir, 0750)` for pod volume dirs).
pub(crate) fn make_dirs(path: &std::path::Path) -> crate::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o750).create(path).map_err(crate::Error::io("creating", path))
}
