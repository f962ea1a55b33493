//! Symlink-safe handling of user paths inside a volume (subPath), as Kubernetes fixed CVE-2017-1002101
//! (`pkg/volume/util/subpath/subpath_linux.go`).
//!
//! A subPath is resolved beneath the volume root one component at a time, never letting a symlink or `..`
//! lead outside it; the result is an `O_PATH` file descriptor, and the bind mount uses `/proc/self/fd/<fd>`
//! as its source, so swapping a component for a symlink after the check cannot redirect the mount.
//! `openat2(RESOLVE_BENEATH)` does the walk in the kernel where available; otherwise the same rules run in
//! user space (`openat(O_PATH|O_NOFOLLOW)` per component, symlinks read and resolved against the directory
//! stack, absolute targets and `..` above the root rejected).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fchmod, fstat, mkdirat, FileStat, Mode, SFlag};

use crate::error::{io_err, Error, Result};
use crate::mounter::{cleanup_mount_point, Mounter};
use crate::paths::VOLUME_SUBPATHS_DIR;

/// The most symlinks followed in one resolution (the kernel's MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// What to do with symlinks met while resolving beneath a root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    /// Follow them while they stay beneath the root (relative targets only): Kubernetes' behaviour, which
    /// keeps subPaths into configMap volumes (whose entries are symlinks into `..data`) working.
    FollowBeneath,
    /// Reject every symlink (`ELOOP`).
    Reject,
}

/// How the resolution is done; `Auto` uses `openat2` and falls back to the user-space walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Auto,
    Openat2,
    Walk,
}

/// Checks a user-supplied subPath as the API server does: relative, and no `..` component.
pub fn validate_sub_path(sub_path: &str) -> Result<()> {
    let invalid = |reason: &str| Err(Error::InvalidPath { path: sub_path.to_string(), reason: reason.to_string() });
    if sub_path.is_empty() {
        return invalid("must not be empty");
    }
    if sub_path.as_bytes().contains(&0) {
        return invalid("must not contain NUL");
    }
    if Path::new(sub_path).is_absolute() {
        return invalid("must be a relative path");
    }
    if Path::new(sub_path).components().any(|c| c == Component::ParentDir) {
        return invalid("must not contain '..'");
    }
    Ok(())
}

/// An `O_PATH` descriptor of a path that was verified to lie beneath a root.
#[derive(Debug)]
pub struct VerifiedPath {
    fd: OwnedFd,
    root: PathBuf,
    sub_path: String,
    stat: FileStat,
}

impl VerifiedPath {
    /// Resolves `sub_path` beneath `root`, following symlinks only while they stay beneath it.
    pub fn open(root: &Path, sub_path: &str) -> Result<Self> {
        Self::open_with(root, sub_path, Symlinks::FollowBeneath, Strategy::Auto)
    }

    /// [`VerifiedPath::open`] with an explicit symlink policy and strategy.
    pub fn open_with(root: &Path, sub_path: &str, symlinks: Symlinks, strategy: Strategy) -> Result<Self> {
        validate_sub_path(sub_path)?;
        let (root, root_fd) = open_root(root)?;
        let err = |source: io::Error| Error::OpenBeneath { root: root.clone(), sub_path: sub_path.to_string(), source };
        let fd = resolve(root_fd.as_fd(), OsStr::new(sub_path), symlinks, strategy, None).map_err(err)?;
        let stat = fstat(&fd).map_err(|e| err(io_err(e)))?;
        Ok(VerifiedPath { fd, root, sub_path: sub_path.to_string(), stat })
    }

    /// `/proc/self/fd/<fd>`: a name for exactly the verified file, whatever happens to the path since.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// Whether the verified path is a directory.
    pub fn is_dir(&self) -> bool {
        SFlag::from_bits_truncate(self.stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR
    }

    /// `(st_dev, st_ino)` of the verified file.
    pub fn dev_ino(&self) -> (u64, u64) {
        (self.stat.st_dev, self.stat.st_ino)
    }

    /// The canonical root it was resolved beneath.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The subPath as given.
    pub fn sub_path(&self) -> &str {
        &self.sub_path
    }
}

impl AsFd for VerifiedPath {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Canonicalizes the root (it is ours, not the user's) and opens it without following a final symlink.
fn open_root(root: &Path) -> Result<(PathBuf, OwnedFd)> {
    let real = std::fs::canonicalize(root).map_err(|source| Error::Stat { path: root.to_path_buf(), source })?;
    let fd = nix::fcntl::open(
        &real,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::Stat { path: real.clone(), source: io_err(e) })?;
    Ok((real, fd))
}

fn resolve(
    root: BorrowedFd<'_>,
    sub: &OsStr,
    symlinks: Symlinks,
    strategy: Strategy,
    create: Option<Mode>,
) -> io::Result<OwnedFd> {
    if create.is_none() && strategy != Strategy::Walk {
        match openat2_beneath(root, sub, symlinks) {
            // ENOSYS: kernel < 5.6; EPERM: a seccomp filter; E2BIG: an older struct size.
            Err(e)
                if strategy == Strategy::Auto
                    && matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM | libc::E2BIG)) => {}
            other => return other,
        }
    }
    walk_beneath(root, sub, symlinks, create)
}

fn openat2_beneath(root: BorrowedFd<'_>, sub: &OsStr, symlinks: Symlinks) -> io::Result<OwnedFd> {
    use nix::fcntl::{openat2, OpenHow, ResolveFlag};
    let mut resolve = ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS;
    if symlinks == Symlinks::Reject {
        resolve |= ResolveFlag::RESOLVE_NO_SYMLINKS;
    }
    let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC).resolve(resolve);
    openat2(root, sub, how).map_err(io_err)
}

/// The user-space equivalent of `openat2(RESOLVE_BENEATH)`, optionally creating missing directories with
/// `mode` (each created directory is opened with `O_NOFOLLOW` and `fchmod`ed, so umask does not apply and
/// nobody can swap it for a symlink between creation and use).
fn walk_beneath(root: BorrowedFd<'_>, sub: &OsStr, symlinks: Symlinks, create: Option<Mode>) -> io::Result<OwnedFd> {
    let mut stack: Vec<OwnedFd> = vec![nix::unistd::dup(root).map_err(io_err)?];
    let mut pending: VecDeque<OsString> = components(sub);
    let mut followed = 0;
    while let Some(comp) = pending.pop_front() {
        if comp == "." {
            continue;
        }
        if comp == ".." {
            if stack.len() == 1 {
                return Err(io::Error::from_raw_os_error(libc::EXDEV));
            }
            stack.pop();
            continue;
        }
        let parent = stack.last().expect("the root stays on the stack");
        match openat(parent, comp.as_os_str(), OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()) {
            Ok(fd) => {
                let st = fstat(&fd).map_err(io_err)?;
                let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
                if kind == SFlag::S_IFLNK {
                    if symlinks == Symlinks::Reject {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    followed += 1;
                    if followed > MAX_SYMLINKS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = readlinkat(&fd, "").map_err(io_err)?;
                    if target.as_bytes().starts_with(b"/") {
                        // An absolute target would be resolved against the host's root.
                        return Err(io::Error::from_raw_os_error(libc::EXDEV));
                    }
                    for c in components(&target).into_iter().rev() {
                        pending.push_front(c);
                    }
                } else {
                    if !pending.is_empty() && kind != SFlag::S_IFDIR {
                        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
                    }
                    stack.push(fd);
                }
            }
            Err(Errno::ENOENT) if create.is_some() => {
                let mode = create.expect("checked");
                match mkdirat(parent, comp.as_os_str(), mode) {
                    Ok(()) => {
                        let fd = openat(
                            parent,
                            comp.as_os_str(),
                            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                            Mode::empty(),
                        )
                        .map_err(io_err)?;
                        fchmod(&fd, mode).map_err(io_err)?;
                        stack.push(fd);
                    }
                    // Someone created it meanwhile: look again (it may be a symlink now).
                    Err(Errno::EEXIST) => pending.push_front(comp),
                    Err(e) => return Err(io_err(e)),
                }
            }
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(stack.pop().expect("the stack is never empty"))
}

fn components(p: &OsStr) -> VecDeque<OsString> {
    p.as_bytes().split(|b| *b == b'/').filter(|c| !c.is_empty()).map(|c| OsStr::from_bytes(c).to_os_string()).collect()
}

/// Creates `sub_path` beneath `root` with `mode` (umask ignored) for every directory it creates, without
/// following any symlink out of `root` (kubelet's `SafeMakeDir`). Existing directories are left as they
/// are. Idempotent.
pub fn safe_make_dir(root: &Path, sub_path: &str, mode: u32) -> Result<()> {
    safe_make_dir_with(root, sub_path, mode, Symlinks::FollowBeneath)
}

/// [`safe_make_dir`] with an explicit symlink policy.
pub fn safe_make_dir_with(root: &Path, sub_path: &str, mode: u32, symlinks: Symlinks) -> Result<()> {
    validate_sub_path(sub_path)?;
    let (real, root_fd) = open_root(root)?;
    let err = |source: io::Error| Error::OpenBeneath { root: real.clone(), sub_path: sub_path.to_string(), source };
    let fd =
        resolve(root_fd.as_fd(), OsStr::new(sub_path), symlinks, Strategy::Walk, Some(Mode::from_bits_truncate(mode)))
            .map_err(err)?;
    let st = fstat(&fd).map_err(|e| err(io_err(e)))?;
    if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFDIR {
        return Err(err(io::Error::from_raw_os_error(libc::ENOTDIR)));
    }
    Ok(())
}

/// Bind-mounts `sub_path` of the volume at `volume_root` onto `target`, symlink-safely: the path is
/// resolved beneath the root to an `O_PATH` fd and `/proc/self/fd/<fd>` is what gets mounted. The target
/// is created as a directory (0750) or an empty file (0640) to match, with its parents (0750).
///
/// Idempotent: if `target` is already a mount of the same file, nothing is done; a mount of something else
/// there is replaced. On failure the target is removed again.
pub fn bind_subpath(mounter: &dyn Mounter, volume_root: &Path, sub_path: &str, target: &Path) -> Result<()> {
    let verified = VerifiedPath::open(volume_root, sub_path)?;
    bind_verified(mounter, &verified, target)
}

/// The mount half of [`bind_subpath`], for a path verified earlier.
pub fn bind_verified(mounter: &dyn Mounter, verified: &VerifiedPath, target: &Path) -> Result<()> {
    let stat_err = |source: io::Error| Error::Stat { path: target.to_path_buf(), source };
    match std::fs::symlink_metadata(target) {
        Ok(meta) => {
            if mounter.is_mount_point(target)? {
                let now = std::fs::metadata(target).map_err(stat_err)?;
                if (now.dev(), now.ino()) == verified.dev_ino() {
                    tracing::debug!(target = %target.display(), "subPath already bind-mounted");
                    return Ok(());
                }
                tracing::info!(target = %target.display(), "subPath target holds another mount, replacing it");
                mounter.unmount(target)?;
            } else if meta.is_dir() != verified.is_dir() || meta.file_type().is_symlink() {
                // A leftover of the other type (the subPath changed from file to directory): replace it.
                remove_empty(target)?;
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(stat_err(e)),
    }
    prepare_target(target, verified.is_dir())?;
    let source = verified.proc_path();
    if let Err(err) = mounter.mount(&source.to_string_lossy(), target, "", &["bind".to_string()]) {
        if let Err(clean) = cleanup_mount_point(mounter, target) {
            tracing::warn!(target = %target.display(), error = %clean, "cleaning up a failed subPath target");
        }
        return Err(err);
    }
    tracing::debug!(root = %verified.root.display(), sub_path = verified.sub_path, target = %target.display(), "bound subPath");
    Ok(())
}

fn remove_empty(path: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(path).map_err(|source| Error::Stat { path: path.to_path_buf(), source })?;
    let res = if meta.is_dir() {
        std::fs::remove_dir(path)
    } else if meta.file_type().is_symlink() || meta.len() == 0 {
        std::fs::remove_file(path)
    } else {
        Err(io::Error::from_raw_os_error(libc::ENOTEMPTY))
    };
    res.map_err(|source| Error::Remove { path: path.to_path_buf(), source })
}

fn prepare_target(target: &Path, dir: bool) -> Result<()> {
    let err = |source: io::Error| Error::PrepareTarget { path: target.to_path_buf(), source };
    if let Some(parent) = target.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o750).create(parent).map_err(err)?;
    }
    let res = if dir {
        std::fs::DirBuilder::new().mode(0o750).create(target)
    } else {
        std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o640).open(target).map(drop)
    };
    match res {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other.map_err(err),
    }
}

/// Unmounts and removes every subPath bind of one volume of a pod (`<pod_dir>/volume-subpaths/<volume>/
/// <container>/<index>`), then the emptied directories (kubelet's `CleanSubPaths`). Idempotent: nothing
/// there is success. Data in the volume is never touched; a non-empty leftover is an error.
pub fn clean_subpaths(mounter: &dyn Mounter, pod_dir: &Path, volume_name: &str) -> Result<()> {
    let subpaths = pod_dir.join(VOLUME_SUBPATHS_DIR);
    let volume_dir = subpaths.join(volume_name);
    let containers = match std::fs::read_dir(&volume_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(Error::ReadDir { path: volume_dir, source }),
    };
    for entry in containers {
        let entry = entry.map_err(|source| Error::ReadDir { path: volume_dir.clone(), source })?;
        let container_dir = entry.path();
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let mounts = std::fs::read_dir(&container_dir)
            .map_err(|source| Error::ReadDir { path: container_dir.clone(), source })?;
        for m in mounts {
            let m = m.map_err(|source| Error::ReadDir { path: container_dir.clone(), source })?;
            cleanup_mount_point(mounter, &m.path())?;
        }
        remove_dir_if_exists(&container_dir)?;
    }
    remove_dir_if_exists(&volume_dir)?;
    // The last volume's cleanup removes volume-subpaths itself; others leave it to that one.
    match std::fs::remove_dir(&subpaths) {
        Err(e) if e.raw_os_error() != Some(libc::ENOTEMPTY) && e.kind() != io::ErrorKind::NotFound => {
            Err(Error::Remove { path: subpaths, source: e })
        }
        _ => Ok(()),
    }
}

fn remove_dir_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Remove { path: path.to_path_buf(), source: e }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mounter::{FakeCall, FakeMounter};
    use std::os::unix::fs::symlink;

    fn volume() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let v = d.path().join("vol");
        std::fs::create_dir_all(v.join("a/b")).unwrap();
        std::fs::write(v.join("a/b/file"), b"inside").unwrap();
        (d, v)
    }

    const STRATEGIES: [Strategy; 2] = [Strategy::Openat2, Strategy::Walk];

    #[test]
    fn rejects_absolute_and_dotdot_sub_paths() {
        for bad in ["/etc", "a/../../etc", "..", "a/..", ""] {
            assert!(matches!(validate_sub_path(bad), Err(Error::InvalidPath { .. })), "{bad}");
        }
        for good in ["a", "a/b", "./a", "a//b/", "..a", "a..b"] {
            validate_sub_path(good).unwrap();
        }
    }

    #[test]
    fn opens_a_plain_path_with_both_strategies() {
        let (_d, v) = volume();
        for s in STRATEGIES {
            let p = VerifiedPath::open_with(&v, "a/b/file", Symlinks::FollowBeneath, s).unwrap();
            assert!(!p.is_dir());
            let meta = std::fs::metadata(v.join("a/b/file")).unwrap();
            assert_eq!(p.dev_ino(), (meta.dev(), meta.ino()));
            assert!(VerifiedPath::open_with(&v, "a/b", Symlinks::FollowBeneath, s).unwrap().is_dir());
        }
    }

    #[test]
    fn refuses_a_symlink_to_etc_with_both_strategies() {
        let (_d, v) = volume();
        symlink("/etc", v.join("evil")).unwrap();
        for s in STRATEGIES {
            for sub in ["evil", "evil/passwd"] {
                let err = VerifiedPath::open_with(&v, sub, Symlinks::FollowBeneath, s).unwrap_err();
                assert_eq!(err.raw_os_error(), Some(libc::EXDEV), "{s:?} {sub}: {err}");
                assert_eq!(err.class(), crate::ErrorClass::Final);
            }
        }
    }

    #[test]
    fn refuses_a_relative_symlink_climbing_out_with_both_strategies() {
        let (_d, v) = volume();
        symlink("../../../../../../../etc", v.join("a/up")).unwrap();
        for s in STRATEGIES {
            let err = VerifiedPath::open_with(&v, "a/up/passwd", Symlinks::FollowBeneath, s).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EXDEV), "{s:?}: {err}");
        }
    }

    #[test]
    fn follows_symlinks_that_stay_inside_like_configmap_entries() {
        let (_d, v) = volume();
        symlink("a/b", v.join("..data")).unwrap();
        symlink("..data/file", v.join("file")).unwrap();
        symlink("../a/b/file", v.join("a/sib")).unwrap();
        for s in STRATEGIES {
            let p = VerifiedPath::open_with(&v, "file", Symlinks::FollowBeneath, s).unwrap();
            let meta = std::fs::metadata(v.join("a/b/file")).unwrap();
            assert_eq!(p.dev_ino(), (meta.dev(), meta.ino()), "{s:?}");
            assert!(VerifiedPath::open_with(&v, "a/sib", Symlinks::FollowBeneath, s).is_ok());
            let err = VerifiedPath::open_with(&v, "file", Symlinks::Reject, s).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{s:?}: {err}");
        }
    }

    #[test]
    fn a_symlink_loop_is_refused() {
        let (_d, v) = volume();
        symlink("loop2", v.join("loop1")).unwrap();
        symlink("loop1", v.join("loop2")).unwrap();
        for s in STRATEGIES {
            let err = VerifiedPath::open_with(&v, "loop1", Symlinks::FollowBeneath, s).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{s:?}");
        }
    }

    #[test]
    fn safe_make_dir_creates_with_the_exact_mode_and_refuses_escapes() {
        let (_d, v) = volume();
        safe_make_dir(&v, "a/new/deeper", 0o2775).unwrap();
        let meta = std::fs::metadata(v.join("a/new/deeper")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o2775);
        safe_make_dir(&v, "a/new/deeper", 0o700).unwrap();
        assert_eq!(std::fs::metadata(v.join("a/new/deeper")).unwrap().mode() & 0o7777, 0o2775, "left alone");

        let outside = _d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        symlink(&outside, v.join("out")).unwrap();
        let err = safe_make_dir(&v, "out/x", 0o755).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EXDEV));
        assert!(!outside.join("x").exists());

        std::fs::write(v.join("plain"), b"").unwrap();
        assert_eq!(safe_make_dir(&v, "plain", 0o755).unwrap_err().raw_os_error(), Some(libc::ENOTDIR));
    }

    #[test]
    fn bind_subpath_mounts_the_fd_and_is_idempotent_with_the_fake() {
        let (d, v) = volume();
        let target = d.path().join("pod/volume-subpaths/vol/c/0");
        let f = FakeMounter::new();
        bind_subpath(&f, &v, "a/b", &target).unwrap();
        assert!(target.is_dir());
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o750);
        match &f.calls()[0] {
            FakeCall::Mount { source, options, .. } => {
                assert!(source.starts_with("/proc/self/fd/"), "{source}");
                assert_eq!(options, &vec!["bind".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        let file_target = d.path().join("pod/volume-subpaths/vol/c/1");
        bind_subpath(&f, &v, "a/b/file", &file_target).unwrap();
        assert!(file_target.is_file());
        assert_eq!(std::fs::metadata(&file_target).unwrap().mode() & 0o777, 0o640);
    }

    #[test]
    fn a_failed_bind_removes_the_target() {
        let (d, v) = volume();
        let target = d.path().join("pod/volume-subpaths/vol/c/0");
        let f = FakeMounter::new();
        f.fail_at(crate::StepKind::Bind, None, libc::EPERM);
        assert!(bind_subpath(&f, &v, "a", &target).is_err());
        assert!(!target.exists());
    }

    #[test]
    fn clean_subpaths_unmounts_and_removes_everything_and_is_idempotent() {
        let d = tempfile::tempdir().unwrap();
        let pod = d.path().join("pod");
        let t0 = pod.join("volume-subpaths/vol/c1/0");
        let t1 = pod.join("volume-subpaths/vol/c2/0");
        std::fs::create_dir_all(&t0).unwrap();
        std::fs::create_dir_all(t1.parent().unwrap()).unwrap();
        std::fs::write(&t1, b"").unwrap();
        let f = FakeMounter::new();
        f.add_mount("/proc/self/fd/3", &t0, "none", &["rw"]);
        f.add_mount("/proc/self/fd/4", &t1, "none", &["rw"]);
        clean_subpaths(&f, &pod, "vol").unwrap();
        assert!(!pod.join("volume-subpaths").exists());
        assert_eq!(f.calls().len(), 2);
        clean_subpaths(&f, &pod, "vol").unwrap();
    }
}
