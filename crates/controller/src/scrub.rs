//! The Recycle scrub: delete everything inside a volume directory, and nothing outside it.
//!
//! Kubernetes runs a busybox pod with `rm -rf /scrub/..?* /scrub/.[!.]* /scrub/*`; kvol does it in-process
//! with `openat`/`unlinkat` relative to directory descriptors opened with `O_NOFOLLOW`, so a symlink inside the
//! volume (or one swapped in during the scrub) is removed as a link and never followed, and the walk never
//! leaves the volume's filesystem (a mount point inside it is an error, not a target). A deadline bounds it.

use crate::error::{Error, Result};
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn io(action: &'static str, path: &Path, errno: Errno) -> Error {
    Error::Io { action, path: path.to_path_buf(), source: std::io::Error::from(errno) }
}

/// Remove every entry inside `root` (which stays, empty). `root` itself must be a real directory, not a
/// symlink. Idempotent: an empty directory is success.
pub fn scrub_directory(root: &Path, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let fd = nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io("opening volume directory (symlinks refused)", root, e))?;
    let dev = fstat(&fd).map_err(|e| io("stat", root, e))?.st_dev;
    let walk = Walk { root, dev, deadline, limit };
    walk.scrub(fd, root.to_path_buf())
}

struct Walk<'a> {
    root: &'a Path,
    dev: u64,
    deadline: Instant,
    limit: Duration,
}

impl Walk<'_> {
    fn scrub(&self, fd: OwnedFd, path: PathBuf) -> Result<()> {
        let mut dir = Dir::from_fd(fd).map_err(|e| io("reading directory", &path, e))?;
        let names: Vec<CString> = dir
            .iter()
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_owned())
            .filter(|name| name.as_bytes() != b"." && name.as_bytes() != b"..")
            .collect();
        for name in names {
            if Instant::now() > self.deadline {
                return Err(Error::ScrubTimeout { path: self.root.to_path_buf(), seconds: self.limit.as_secs() });
            }
            self.remove_entry(&dir, &path, &name)?;
        }
        Ok(())
    }

    fn remove_entry(&self, dir: &Dir, parent: &Path, name: &CStr) -> Result<()> {
        let path = parent.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        let st = match fstatat(dir.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(io("stat", &path, e)),
        };
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        if is_dir {
            if st.st_dev != self.dev {
                return Err(io("refusing to scrub a mount point inside the volume", &path, Errno::EXDEV));
            }
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            match openat(dir.as_fd(), name, flags, Mode::empty()) {
                Ok(child) => {
                    // Swapped for something else on another filesystem since the stat? Refuse.
                    let child_dev = fstat(&child).map_err(|e| io("stat", &path, e))?.st_dev;
                    if child_dev != self.dev {
                        return Err(io("refusing to scrub a mount point inside the volume", &path, Errno::EXDEV));
                    }
                    self.scrub(child, path.clone())?;
                    match unlinkat(dir.as_fd(), name, UnlinkatFlags::RemoveDir) {
                        Ok(()) | Err(Errno::ENOENT) => Ok(()),
                        Err(e) => Err(io("removing directory", &path, e)),
                    }
                }
                // Replaced by a symlink or a file since the stat: remove that instead, without following it.
                Err(Errno::ELOOP | Errno::ENOTDIR) => self.unlink_file(dir, &path, name),
                Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(io("opening directory", &path, e)),
            }
        } else {
            self.unlink_file(dir, &path, name)
        }
    }

    fn unlink_file(&self, dir: &Dir, path: &Path, name: &CStr) -> Result<()> {
        match unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(io("removing", path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn scrubs_files_directories_and_hidden_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::write(root.join("a/b/c/file"), "x").unwrap();
        std::fs::write(root.join(".hidden"), "x").unwrap();
        std::fs::write(root.join("..dots"), "x").unwrap();
        scrub_directory(&root, Duration::from_secs(10)).unwrap();
        assert!(root.is_dir(), "the volume directory itself stays");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    }

    #[test]
    fn never_follows_a_symlink_out_of_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("precious"), "keep me").unwrap();
        let root = dir.path().join("vol");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        symlink(&outside, root.join("link-to-dir")).unwrap();
        symlink(outside.join("precious"), root.join("sub/link-to-file")).unwrap();
        scrub_directory(&root, Duration::from_secs(10)).unwrap();
        assert_eq!(std::fs::read_to_string(outside.join("precious")).unwrap(), "keep me");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    }

    #[test]
    fn refuses_a_volume_root_that_is_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(real.join("f"), "x").unwrap();
        symlink(&real, dir.path().join("vol")).unwrap();
        assert!(scrub_directory(&dir.path().join("vol"), Duration::from_secs(10)).is_err());
        assert!(real.join("f").exists());
    }

    #[test]
    fn stops_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        std::fs::create_dir_all(&root).unwrap();
        for i in 0..10 {
            std::fs::write(root.join(format!("f{i}")), "x").unwrap();
        }
        let err = scrub_directory(&root, Duration::ZERO).unwrap_err();
        assert!(matches!(err, Error::ScrubTimeout { .. }), "{err}");
    }
}
