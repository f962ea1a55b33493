//! The `Mounter` trait (Kubernetes' `mount.Interface`), its real implementation on `mount(2)`, a fake for
//! unit tests that records calls and fails on demand, and `cleanup_mount_point`.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags};
use nix::sys::statvfs::FsFlags;

use crate::error::{io_err, Error, Result};
use crate::mount_options::{plan, type_needs_helper, MountOptions, MountStep, StepKind};
use crate::mountinfo::{self, MountInfo};

/// Mounting and unmounting, as Kubernetes' `mount.Interface` does it.
///
/// Implementations must be idempotent where the doc says so; all are safe to call from several threads.
pub trait Mounter: Send + Sync {
    /// Mounts `source` on `target` with file system type `fstype` (empty for binds) and options.
    ///
    /// `bind`/`rbind` make a bind mount; flags given with a bind (`ro`, `nosuid`…) are applied by a second
    /// `remount,bind` call, as the kernel requires. Propagation options (`rshared`, `rslave`…) are applied
    /// last. If a later step fails the mount made by the first is undone, so a failed read-only bind never
    /// stays mounted read-write.
    fn mount(&self, source: &str, target: &Path, fstype: &str, options: &[String]) -> Result<()>;

    /// Unmounts the topmost mount at `target`. Not mounted, or missing, is success.
    fn unmount(&self, target: &Path) -> Result<()>;

    /// Kubelet's `IsLikelyNotMountPoint`: `true` when `path` is on its parent's device. A missing path is an
    /// error whose OS error is `ENOENT`.
    fn is_likely_not_mount_point(&self, path: &Path) -> Result<bool>;

    /// The mount table.
    fn list(&self) -> Result<Vec<MountInfo>>;

    /// Whether `path` is a mount point, exactly (bind mounts within one file system included).
    fn is_mount_point(&self, path: &Path) -> Result<bool> {
        if !self.is_likely_not_mount_point(path)? {
            return Ok(true);
        }
        let real = std::fs::canonicalize(path).map_err(|source| Error::Stat { path: path.to_path_buf(), source })?;
        Ok(mountinfo::find_by_mount_point(&self.list()?, &real).is_some())
    }
}

/// Runs a plan's steps with `exec`, undoing a created mount when a later step fails.
fn run_plan(
    target: &Path,
    steps: Vec<MountStep>,
    exec: impl Fn(&MountStep) -> Result<()>,
    undo: impl Fn() -> Result<()>,
) -> Result<()> {
    let mut created = false;
    for step in &steps {
        if let Err(err) = exec(step) {
            if created {
                tracing::warn!(target = %target.display(), error = %err, "mount step failed, undoing the mount");
                if let Err(undo_err) = undo() {
                    return Err(Error::Rollback {
                        target: target.to_path_buf(),
                        step_error: err.to_string(),
                        source: Box::new(undo_err),
                    });
                }
            }
            return Err(err);
        }
        created |= step.creates_mount();
    }
    Ok(())
}

/// Mounts for real, with `mount(2)`; types that need a helper go through mount(8).
#[derive(Debug, Clone)]
pub struct RealMounter {
    /// How long mount(8) may run before it is killed (its result is then uncertain).
    pub helper_timeout: Duration,
    /// The mount(8) program.
    pub mount_program: PathBuf,
}

impl Default for RealMounter {
    fn default() -> Self {
        RealMounter { helper_timeout: Duration::from_secs(120), mount_program: PathBuf::from("/bin/mount") }
    }
}

impl RealMounter {
    /// A mounter using `/bin/mount` for helper types, with a 2-minute helper timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a request for `fstype` must go through mount(8): known helper types, and any type for which
    /// a `mount.<type>` helper is installed (mount(8) would use it).
    fn use_helper(&self, fstype: &str) -> bool {
        if fstype.is_empty() {
            return false;
        }
        type_needs_helper(fstype)
            || ["/sbin", "/usr/sbin"].iter().any(|d| Path::new(d).join(format!("mount.{fstype}")).exists())
    }

    fn exec(&self, step: &MountStep) -> Result<()> {
        tracing::debug!(?step, "mount step");
        match step {
            MountStep::Bind { source, target, recursive } => {
                let flags = if *recursive { MsFlags::MS_BIND | MsFlags::MS_REC } else { MsFlags::MS_BIND };
                nix::mount::mount(Some(source.as_str()), target, None::<&str>, flags, None::<&str>)
                    .map_err(|e| Error::Bind { source_spec: source.clone(), target: target.clone(), source: io_err(e) })
            }
            MountStep::Remount { source, target, fstype, bind, flags, cleared, data } => {
                let mut all = MsFlags::MS_REMOUNT | *flags;
                if *bind {
                    all |= MsFlags::MS_BIND | locked_flags(target, *flags, *cleared);
                }
                let src = (!source.is_empty()).then_some(source.as_str());
                let fst = (!fstype.is_empty()).then_some(fstype.as_str());
                let dat = (!data.is_empty()).then_some(data.as_str());
                nix::mount::mount(src, target, fst, all, dat).map_err(|e| Error::Remount {
                    target: target.clone(),
                    options: format!("{all:?} {data}"),
                    source: io_err(e),
                })
            }
            MountStep::Mount { source, target, fstype, flags, data } => {
                let dat = (!data.is_empty()).then_some(data.as_str());
                nix::mount::mount(Some(source.as_str()), target, Some(fstype.as_str()), *flags, dat).map_err(|e| {
                    Error::Mount {
                        source_spec: source.clone(),
                        target: target.clone(),
                        fstype: fstype.clone(),
                        options: data.clone(),
                        source: io_err(e),
                    }
                })
            }
            MountStep::Propagation { target, propagation } => {
                let mut flags = propagation.kind;
                if propagation.recursive {
                    flags |= MsFlags::MS_REC;
                }
                nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(|e| {
                    Error::SetPropagation {
                        target: target.clone(),
                        propagation: propagation.name.to_string(),
                        source: io_err(e),
                    }
                })
            }
            MountStep::Helper { source, target, fstype, options } => {
                let program = self.mount_program.to_string_lossy().into_owned();
                let opts = options.join(",");
                let target_s = target.to_string_lossy();
                let mut args: Vec<&str> = Vec::new();
                if !fstype.is_empty() {
                    args.extend(["-t", fstype.as_str()]);
                }
                if !opts.is_empty() {
                    args.extend(["-o", opts.as_str()]);
                }
                args.extend([source.as_str(), &target_s]);
                let out = crate::command::run(&program, &args, self.helper_timeout)?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(Error::MountHelper {
                        fstype: fstype.clone(),
                        source_spec: source.clone(),
                        target: target.clone(),
                        status: out.status.to_string(),
                        output: out.text,
                    })
                }
            }
        }
    }
}

/// Flags of the current mount at `target` that a bind remount must repeat: without them the kernel refuses
/// the remount when they are locked (mounts inherited from a more privileged namespace), and otherwise
/// silently clears them. Flags the caller set or cleared explicitly win.
fn locked_flags(target: &Path, set: MsFlags, cleared: MsFlags) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::statvfs(target) else { return MsFlags::empty() };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if f.contains(fs) && !cleared.contains(ms) {
            out |= ms;
        }
    }
    let atime = MsFlags::MS_NOATIME | MsFlags::MS_RELATIME | MsFlags::MS_STRICTATIME;
    if !set.intersects(atime) && !cleared.intersects(atime) {
        if f.contains(FsFlags::ST_NOATIME) {
            out |= MsFlags::MS_NOATIME;
        } else if f.contains(FsFlags::ST_RELATIME) {
            out |= MsFlags::MS_RELATIME;
        }
        if f.contains(FsFlags::ST_NODIRATIME) && !cleared.contains(MsFlags::MS_NODIRATIME) {
            out |= MsFlags::MS_NODIRATIME;
        }
    }
    out
}

impl Mounter for RealMounter {
    fn mount(&self, source: &str, target: &Path, fstype: &str, options: &[String]) -> Result<()> {
        let steps = plan(source, target.to_path_buf(), fstype, options, self.use_helper(fstype));
        run_plan(target, steps, |s| self.exec(s), || self.unmount(target))
    }

    fn unmount(&self, target: &Path) -> Result<()> {
        match nix::mount::umount2(target, MntFlags::empty()) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::ENOENT) => Ok(()),
            // EINVAL: not a mount point (or a locked mount); only the first is "already gone".
            Err(nix::errno::Errno::EINVAL) => match mountinfo::is_mount_point(target) {
                Ok(false) => Ok(()),
                _ => Err(Error::Unmount { target: target.to_path_buf(), source: io_err(nix::errno::Errno::EINVAL) }),
            },
            Err(e) => Err(Error::Unmount { target: target.to_path_buf(), source: io_err(e) }),
        }
    }

    fn is_likely_not_mount_point(&self, path: &Path) -> Result<bool> {
        mountinfo::is_likely_not_mount_point(path)
    }

    fn list(&self) -> Result<Vec<MountInfo>> {
        mountinfo::read_mountinfo()
    }

    fn is_mount_point(&self, path: &Path) -> Result<bool> {
        mountinfo::is_mount_point(path)
    }
}

/// Removes a mount point: unmounts it if mounted (repeatedly, for stacked mounts), including corrupted
/// mounts that cannot be stat'ed, then removes the empty directory (or the empty file a subPath bind
/// targets). Idempotent: a path that is already gone is success. Never removes a non-empty directory.
pub fn cleanup_mount_point(mounter: &dyn Mounter, path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if mountinfo::is_corrupted_mount_error(&e) => {
            tracing::info!(path = %path.display(), error = %e, "corrupted mount, unmounting");
            mounter.unmount(path)?;
        }
        Err(source) => return Err(Error::Stat { path: path.to_path_buf(), source }),
        Ok(_) => {}
    }
    // Stacked mounts need one unmount each; a bounded loop rather than trusting the count.
    for _ in 0..16 {
        if remove_if_not_mount_point(mounter, path)? {
            return Ok(());
        }
        mounter.unmount(path)?;
    }
    Err(Error::StillMounted { path: path.to_path_buf() })
}

/// Removes `path` when it is not a mount point; returns whether it is now gone.
fn remove_if_not_mount_point(mounter: &dyn Mounter, path: &Path) -> Result<bool> {
    match mounter.is_mount_point(path) {
        Ok(true) => return Ok(false),
        Ok(false) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(true),
        Err(e) => return Err(e),
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(source) => return Err(Error::Stat { path: path.to_path_buf(), source }),
    };
    let res = if meta.is_dir() { std::fs::remove_dir(path) } else { std::fs::remove_file(path) };
    match res {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(source) => Err(Error::Remove { path: path.to_path_buf(), source }),
    }
}

/// A call made on the [`FakeMounter`], as the caller made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeCall {
    Mount { source: String, target: PathBuf, fstype: String, options: Vec<String> },
    Unmount { target: PathBuf },
}

/// A failure the [`FakeMounter`] injects the next time a step of this kind runs (on `target`, if given).
#[derive(Debug, Clone)]
pub struct FailPoint {
    pub step: StepKind,
    pub target: Option<PathBuf>,
    pub errno: i32,
}

#[derive(Debug, Clone)]
struct FakeMount {
    source: String,
    target: PathBuf,
    fstype: String,
    options: Vec<String>,
    propagation: Option<String>,
}

#[derive(Debug, Default)]
struct FakeState {
    mounts: Vec<FakeMount>,
    calls: Vec<FakeCall>,
    steps: Vec<(StepKind, PathBuf)>,
    fail: VecDeque<FailPoint>,
}

/// An in-memory mounter for unit tests (Kubernetes' `FakeMounter`): it keeps a mount table, records every
/// call and every step, and fails the steps you arm with [`FakeMounter::fail_at`]. It runs the same plan
/// (bind, remount, propagation…) as the real mounter, including the rollback of a half-done mount.
///
/// Paths must exist on disk for the mount-point checks, as with the real mounter.
#[derive(Debug, Default)]
pub struct FakeMounter {
    state: Mutex<FakeState>,
}

impl FakeMounter {
    /// An empty mount table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms a failure: the next `step` (on `target`, if given) fails with `errno`. Several arm in order.
    pub fn fail_at(&self, step: StepKind, target: Option<&Path>, errno: i32) {
        self.lock().fail.push_back(FailPoint { step, target: target.map(Path::to_path_buf), errno });
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<FakeCall> {
        self.lock().calls.clone()
    }

    /// The steps run so far (including rollbacks, recorded as `Unmount`).
    pub fn steps(&self) -> Vec<(StepKind, PathBuf)> {
        self.lock().steps.clone()
    }

    /// Whether something is mounted at `target`, and its options if so.
    pub fn mounted_options(&self, target: &Path) -> Option<Vec<String>> {
        self.lock().mounts.iter().rev().find(|m| m.target == target).map(|m| m.options.clone())
    }

    /// Adds a mount to the table without recording a call (test setup).
    pub fn add_mount(&self, source: &str, target: &Path, fstype: &str, options: &[&str]) {
        self.lock().mounts.push(FakeMount {
            source: source.to_string(),
            target: target.to_path_buf(),
            fstype: fstype.to_string(),
            options: options.iter().map(|s| s.to_string()).collect(),
            propagation: None,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the step and returns the armed failure for it, if any.
    fn step(&self, kind: StepKind, target: &Path) -> Option<io::Error> {
        let mut st = self.lock();
        st.steps.push((kind, target.to_path_buf()));
        let pos = st.fail.iter().position(|f| f.step == kind && f.target.as_deref().is_none_or(|t| t == target))?;
        let fp = st.fail.remove(pos)?;
        Some(io::Error::from_raw_os_error(fp.errno))
    }

    fn exec(&self, step: &MountStep) -> Result<()> {
        let target = match step {
            MountStep::Bind { target, .. }
            | MountStep::Remount { target, .. }
            | MountStep::Mount { target, .. }
            | MountStep::Propagation { target, .. }
            | MountStep::Helper { target, .. } => target.clone(),
        };
        if let Some(source) = self.step(step.kind(), &target) {
            return Err(match step {
                MountStep::Bind { source: s, .. } => Error::Bind { source_spec: s.clone(), target, source },
                MountStep::Remount { .. } => Error::Remount { target, options: String::new(), source },
                MountStep::Mount { source: s, fstype, data, .. } => Error::Mount {
                    source_spec: s.clone(),
                    target,
                    fstype: fstype.clone(),
                    options: data.clone(),
                    source,
                },
                MountStep::Propagation { propagation, .. } => {
                    Error::SetPropagation { target, propagation: propagation.name.to_string(), source }
                }
                MountStep::Helper { source: s, fstype, .. } => Error::MountHelper {
                    fstype: fstype.clone(),
                    source_spec: s.clone(),
                    target,
                    status: "exit status: 32".into(),
                    output: source.to_string(),
                },
            });
        }
        let mut st = self.lock();
        let einval = || io::Error::from_raw_os_error(libc::EINVAL);
        match step {
            MountStep::Bind { source, .. } => st.mounts.push(FakeMount {
                source: source.clone(),
                target,
                fstype: "none".into(),
                options: vec!["bind".into(), "rw".into()],
                propagation: None,
            }),
            MountStep::Mount { source, fstype, flags, data, .. } => {
                let mut options = vec![if flags.contains(MsFlags::MS_RDONLY) { "ro" } else { "rw" }.to_string()];
                options.extend(data.split(',').filter(|s| !s.is_empty()).map(str::to_string));
                st.mounts.push(FakeMount {
                    source: source.clone(),
                    target,
                    fstype: fstype.clone(),
                    options,
                    propagation: None,
                })
            }
            MountStep::Helper { source, fstype, options, .. } => st.mounts.push(FakeMount {
                source: source.clone(),
                target,
                fstype: fstype.clone(),
                options: options.clone(),
                propagation: None,
            }),
            MountStep::Remount { flags, cleared, .. } => {
                let Some(m) = st.mounts.iter_mut().rev().find(|m| m.target == target) else {
                    return Err(Error::Remount { source: einval(), target, options: String::new() });
                };
                let ro = if flags.contains(MsFlags::MS_RDONLY) {
                    Some("ro")
                } else if cleared.contains(MsFlags::MS_RDONLY) {
                    Some("rw")
                } else {
                    None
                };
                if let Some(ro) = ro {
                    m.options.retain(|o| o != "ro" && o != "rw");
                    m.options.push(ro.to_string());
                }
            }
            MountStep::Propagation { propagation, .. } => {
                let Some(m) = st.mounts.iter_mut().rev().find(|m| m.target == target) else {
                    return Err(Error::SetPropagation {
                        source: einval(),
                        target,
                        propagation: propagation.name.to_string(),
                    });
                };
                m.propagation = Some(propagation.name.to_string());
            }
        }
        Ok(())
    }
}

impl Mounter for FakeMounter {
    fn mount(&self, source: &str, target: &Path, fstype: &str, options: &[String]) -> Result<()> {
        self.lock().calls.push(FakeCall::Mount {
            source: source.to_string(),
            target: target.to_path_buf(),
            fstype: fstype.to_string(),
            options: options.to_vec(),
        });
        let helper = type_needs_helper(fstype) || MountOptions::parse(options).needs_mount_program;
        let steps = plan(source, target.to_path_buf(), fstype, options, helper);
        run_plan(target, steps, |s| self.exec(s), || self.unmount_step(target))
    }

    fn unmount(&self, target: &Path) -> Result<()> {
        self.lock().calls.push(FakeCall::Unmount { target: target.to_path_buf() });
        self.unmount_step(target)
    }

    fn is_likely_not_mount_point(&self, path: &Path) -> Result<bool> {
        if let Some(source) = self.step(StepKind::IsLikelyNotMountPoint, path) {
            return Err(Error::Stat { path: path.to_path_buf(), source });
        }
        std::fs::metadata(path).map_err(|source| Error::Stat { path: path.to_path_buf(), source })?;
        Ok(!self.lock().mounts.iter().any(|m| m.target == path))
    }

    fn list(&self) -> Result<Vec<MountInfo>> {
        if let Some(source) = self.step(StepKind::List, Path::new("/proc/self/mountinfo")) {
            return Err(Error::ReadMountTable { path: mountinfo::PROC_MOUNTINFO.into(), source });
        }
        Ok(self
            .lock()
            .mounts
            .iter()
            .enumerate()
            .map(|(i, m)| MountInfo {
                id: 1000 + i as u32,
                parent_id: 1,
                major: 0,
                minor: 1000 + i as u32,
                root: PathBuf::from("/"),
                mount_point: m.target.clone(),
                mount_options: m.options.clone(),
                optional_fields: match m.propagation.as_deref().map(|p| p.trim_start_matches('r')) {
                    Some("shared") => vec!["shared:1".to_string()],
                    Some("slave") => vec!["master:1".to_string()],
                    Some("unbindable") => vec!["unbindable".to_string()],
                    _ => Vec::new(),
                },
                fs_type: m.fstype.clone(),
                source: m.source.clone(),
                super_options: Vec::new(),
            })
            .collect())
    }

    fn is_mount_point(&self, path: &Path) -> Result<bool> {
        self.is_likely_not_mount_point(path).map(|not| !not)
    }
}

impl FakeMounter {
    fn unmount_step(&self, target: &Path) -> Result<()> {
        if let Some(source) = self.step(StepKind::Unmount, target) {
            return Err(Error::Unmount { target: target.to_path_buf(), source });
        }
        let mut st = self.lock();
        if let Some(pos) = st.mounts.iter().rposition(|m| m.target == target) {
            st.mounts.remove(pos);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn fake_records_calls_and_steps_of_a_read_only_bind() {
        let f = FakeMounter::new();
        f.mount("/src", Path::new("/dst"), "", &s(&["bind", "ro"])).unwrap();
        assert_eq!(
            f.calls(),
            vec![FakeCall::Mount {
                source: "/src".into(),
                target: "/dst".into(),
                fstype: "".into(),
                options: s(&["bind", "ro"])
            }]
        );
        assert_eq!(f.steps(), vec![(StepKind::Bind, "/dst".into()), (StepKind::Remount, "/dst".into())]);
        assert!(f.mounted_options(Path::new("/dst")).unwrap().contains(&"ro".to_string()));
    }

    #[test]
    fn a_failed_remount_undoes_the_bind() {
        let f = FakeMounter::new();
        f.fail_at(StepKind::Remount, Some(Path::new("/dst")), libc::EPERM);
        let err = f.mount("/src", Path::new("/dst"), "", &s(&["bind", "ro"])).unwrap_err();
        assert!(matches!(err, Error::Remount { .. }), "{err}");
        assert!(f.mounted_options(Path::new("/dst")).is_none(), "the rw bind must not stay");
        assert_eq!(f.steps().last().unwrap().0, StepKind::Unmount);
    }

    #[test]
    fn a_failed_rollback_is_uncertain() {
        let f = FakeMounter::new();
        f.fail_at(StepKind::Propagation, None, libc::EINVAL);
        f.fail_at(StepKind::Unmount, None, libc::EBUSY);
        let err = f.mount("/x", Path::new("/x"), "", &s(&["bind", "rshared"])).unwrap_err();
        assert!(matches!(err, Error::Rollback { .. }), "{err}");
        assert_eq!(err.class(), crate::ErrorClass::Uncertain);
    }

    #[test]
    fn a_failure_on_another_target_does_not_fire() {
        let f = FakeMounter::new();
        f.fail_at(StepKind::Mount, Some(Path::new("/other")), libc::EIO);
        f.mount("tmpfs", Path::new("/m"), "tmpfs", &s(&["size=1m"])).unwrap();
        assert!(f.mount("tmpfs", Path::new("/other"), "tmpfs", &[]).is_err());
        assert!(f.mount("tmpfs", Path::new("/other"), "tmpfs", &[]).is_ok(), "fires once");
    }

    #[test]
    fn checks_and_listing_can_fail_too() {
        let d = tempfile::tempdir().unwrap();
        let f = FakeMounter::new();
        f.fail_at(StepKind::IsLikelyNotMountPoint, None, libc::ENOTCONN);
        f.fail_at(StepKind::List, None, libc::EIO);
        let err = f.is_likely_not_mount_point(d.path()).unwrap_err();
        assert!(crate::mountinfo::is_corrupted_mount(&err));
        assert!(f.list().is_err());
        assert!(f.is_likely_not_mount_point(d.path()).unwrap());
        assert_eq!(f.is_likely_not_mount_point(&d.path().join("gone")).unwrap_err().raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn unmount_of_nothing_is_success() {
        let f = FakeMounter::new();
        f.unmount(Path::new("/nothing")).unwrap();
    }

    #[test]
    fn nfs_goes_through_the_helper_and_its_failure_is_reported() {
        let f = FakeMounter::new();
        f.fail_at(StepKind::Helper, None, libc::EIO);
        let err = f.mount("srv:/e", Path::new("/m"), "nfs", &s(&["ro"])).unwrap_err();
        assert!(matches!(err, Error::MountHelper { .. }));
        assert_eq!(f.steps(), vec![(StepKind::Helper, "/m".into())]);
    }

    #[test]
    fn list_shows_mounts_with_propagation() {
        let f = FakeMounter::new();
        f.mount("/x", Path::new("/x"), "", &s(&["bind", "rshared"])).unwrap();
        let l = f.list().unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].propagation(), "shared");
    }

    #[test]
    fn cleanup_unmounts_then_removes_the_directory_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let mp = dir.path().join("vol");
        std::fs::create_dir(&mp).unwrap();
        let f = FakeMounter::new();
        f.add_mount("tmpfs", &mp, "tmpfs", &["rw"]);
        f.add_mount("tmpfs", &mp, "tmpfs", &["rw"]);
        cleanup_mount_point(&f, &mp).unwrap();
        assert!(!mp.exists());
        assert_eq!(f.calls().len(), 2, "one unmount per stacked mount");
        cleanup_mount_point(&f, &mp).unwrap();
    }

    #[test]
    fn cleanup_keeps_a_non_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mp = dir.path().join("vol");
        std::fs::create_dir(&mp).unwrap();
        std::fs::write(mp.join("data"), b"x").unwrap();
        let err = cleanup_mount_point(&FakeMounter::new(), &mp).unwrap_err();
        assert!(matches!(err, Error::Remove { .. }));
        assert!(mp.join("data").exists());
    }

    #[test]
    fn cleanup_reports_an_unmount_failure() {
        let dir = tempfile::tempdir().unwrap();
        let mp = dir.path().join("vol");
        std::fs::create_dir(&mp).unwrap();
        let f = FakeMounter::new();
        f.add_mount("tmpfs", &mp, "tmpfs", &["rw"]);
        f.fail_at(StepKind::Unmount, None, libc::EBUSY);
        let err = cleanup_mount_point(&f, &mp).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBUSY));
        assert!(mp.exists());
    }
}
