//! tmpfs mounts (emptyDir `medium: Memory`, secret volumes).

use std::path::Path;

use crate::error::Result;
use crate::mounter::Mounter;

/// The mount options kubelet gives a memory-backed emptyDir (`generateTmpfsMountOptions`): `size=` when a
/// limit is set (the kernel's default is half of RAM otherwise).
pub fn tmpfs_options(size_bytes: Option<u64>) -> Vec<String> {
    size_bytes.filter(|s| *s > 0).map(|s| vec![format!("size={s}")]).unwrap_or_default()
}

/// Whether the topmost mount at `path` is a tmpfs (kubelet's `GetMountMedium`).
pub fn is_tmpfs(mounter: &dyn Mounter, path: &Path) -> Result<bool> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(crate::mountinfo::find_by_mount_point(&mounter.list()?, &real).is_some_and(|m| m.fs_type == "tmpfs"))
}

/// Mounts a tmpfs limited to `size_bytes` on `target` (an existing directory). Idempotent: a tmpfs already
/// there is left as it is.
pub fn mount_tmpfs(mounter: &dyn Mounter, target: &Path, size_bytes: Option<u64>) -> Result<()> {
    if is_tmpfs(mounter, target)? {
        return Ok(());
    }
    mounter.mount("tmpfs", target, "tmpfs", &tmpfs_options(size_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mounter::FakeMounter;

    #[test]
    fn mounting_twice_mounts_once() {
        let d = tempfile::tempdir().unwrap();
        let f = FakeMounter::new();
        let real = std::fs::canonicalize(d.path()).unwrap();
        mount_tmpfs(&f, &real, Some(1 << 20)).unwrap();
        mount_tmpfs(&f, &real, Some(1 << 20)).unwrap();
        assert_eq!(f.calls().len(), 1);
        assert_eq!(f.mounted_options(&real).unwrap(), vec!["rw", "size=1048576"]);
        assert!(tmpfs_options(None).is_empty() && tmpfs_options(Some(0)).is_empty());
    }
}
