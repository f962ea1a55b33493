//! `statx(2)` for mount checks: in one system call, whether a path is the root of a mount
//! (`STATX_ATTR_MOUNT_ROOT`, Linux 5.8+) and which file it shows (device and inode). Reading the mount
//! table instead costs O(mounts) per question; callers fall back to it only where the kernel does not
//! report the attribute (see [`PathStat::mount_root`]).
//!
//! Same-file-system bind mounts are seen too, which the device comparison of
//! [`is_likely_not_mount_point`](crate::is_likely_not_mount_point) misses.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What `statx(2)` says about a path, as far as mount checks need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathStat {
    /// Major number of the device of the file system holding the file.
    pub dev_major: u32,
    /// Minor number of that device.
    pub dev_minor: u32,
    /// Inode number.
    pub ino: u64,
    /// Whether the path is the root of a mount; `None` when the kernel does not say (before 5.8).
    pub mount_root: Option<bool>,
}

impl PathStat {
    /// `(dev_major, dev_minor, ino)`: equal for two paths exactly when they show the same file.
    pub fn file_id(&self) -> (u32, u32, u64) {
        (self.dev_major, self.dev_minor, self.ino)
    }
}

/// `statx(2)` of `path`; a final symlink is followed only if `follow` says so. Errors are the OS error
/// (`NotFound` for a missing path; `ENOTCONN`, `ESTALE`… for a dead mount).
pub fn statx(path: &Path, follow: bool) -> io::Result<PathStat> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: `c` is a NUL-terminated path that lives across the call; `buf` is a zeroed `statx` the kernel
    // fills and that nothing else references.
    #[allow(unsafe_code)] // statx(2) has no safe wrapper in std or nix 0.30; the block is the call alone.
    let (rc, buf) = unsafe {
        let mut buf: libc::statx = std::mem::zeroed();
        let rc = libc::statx(libc::AT_FDCWD, c.as_ptr(), flags, libc::STATX_TYPE | libc::STATX_INO, &mut buf);
        (rc, buf)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let attr = libc::STATX_ATTR_MOUNT_ROOT as u64;
    let mount_root = (buf.stx_attributes_mask & attr != 0).then_some(buf.stx_attributes & attr != 0);
    Ok(PathStat { dev_major: buf.stx_dev_major, dev_minor: buf.stx_dev_minor, ino: buf.stx_ino, mount_root })
}

/// Whether `path` (not followed if a symlink) is the root of a mount; `None` when the kernel does not
/// say. A missing path is an error with `NotFound`.
pub fn statx_mount_root(path: &Path) -> io::Result<Option<bool>> {
    statx(path, false).map(|st| st.mount_root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn proc_is_a_mount_root_and_its_subdirectories_are_not() {
        if statx_mount_root(Path::new("/proc")).unwrap().is_none() {
            eprintln!("skipped: kernel does not report STATX_ATTR_MOUNT_ROOT");
            return;
        }
        assert_eq!(statx_mount_root(Path::new("/proc")).unwrap(), Some(true));
        assert_eq!(statx_mount_root(Path::new("/proc/self/fd")).unwrap(), Some(false));
    }

    #[test]
    fn reports_the_same_device_and_inode_as_stat_and_follows_symlinks_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let st = statx(&file, false).unwrap();
        assert_eq!(st.ino, meta.ino());
        assert_eq!(libc::makedev(st.dev_major, st.dev_minor), meta.dev());
        assert_eq!(statx(&link, true).unwrap().file_id(), st.file_id());
        assert_ne!(statx(&link, false).unwrap().file_id(), st.file_id());
        let missing = statx(&dir.path().join("missing"), false).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }
}
