//! The crate's one error type, and the classification the node agent acts on.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a caller should do with a failed host operation (Kubernetes `volume.go`'s error kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Nothing was changed, or the change was rolled back; retrying later may succeed.
    Transient,
    /// The operation may or may not have taken effect (a mount helper timed out, a rollback failed):
    /// the reconciler must look at the host before deciding what to do next.
    Uncertain,
    /// Retrying the same request cannot succeed: the input is invalid or the host refuses it for good.
    Final,
}

/// Every failure of a host-side step, named after the step, carrying the path involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a mount table (`/proc/self/mountinfo`) failed.
    #[error("reading mount table {path}")]
    ReadMountTable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A mountinfo line does not have the kernel's format.
    #[error("mountinfo line {line}: {reason}: {text:?}")]
    ParseMountInfo { line: usize, reason: &'static str, text: String },
    /// `stat`/`lstat` of a path failed.
    #[error("stat {path}")]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A plain `mount(2)` failed.
    #[error("mounting {source_spec} on {target} (type {fstype:?}, options {options:?})")]
    Mount {
        source_spec: String,
        target: PathBuf,
        fstype: String,
        options: String,
        #[source]
        source: io::Error,
    },
    /// The bind step of a bind mount failed.
    #[error("bind-mounting {source_spec} on {target}")]
    Bind {
        source_spec: String,
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The remount step (e.g. `remount,bind,ro`) failed.
    #[error("remounting {target} with {options:?}")]
    Remount {
        target: PathBuf,
        options: String,
        #[source]
        source: io::Error,
    },
    /// Changing mount propagation (shared/slave/private/unbindable) failed.
    #[error("setting {propagation} propagation on {target}")]
    SetPropagation {
        target: PathBuf,
        propagation: String,
        #[source]
        source: io::Error,
    },
    /// A later mount step failed and undoing the earlier one failed too: the mount is in an unknown state.
    #[error("mount of {target} half done: {step_error}; rolling back failed")]
    Rollback {
        target: PathBuf,
        step_error: String,
        #[source]
        source: Box<Error>,
    },
    /// `/bin/mount` (used for file systems that need a user-space helper) exited with an error.
    #[error("mount -t {fstype} {source_spec} {target} failed ({status}): {output}")]
    MountHelper { fstype: String, source_spec: String, target: PathBuf, status: String, output: String },
    /// `umount(2)` failed.
    #[error("unmounting {target}")]
    Unmount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A mount point is still mounted after being unmounted (stacked or busy mounts).
    #[error("{path} is still a mount point after unmounting it")]
    StillMounted { path: PathBuf },
    /// Removing a directory or file the crate created failed.
    #[error("removing {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Creating a directory failed.
    #[error("creating directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A user-supplied relative path (subPath, projected item path) is invalid.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    /// Opening a path component by component beneath a root failed; EXDEV/ELOOP mean it tried to escape.
    #[error("opening {sub_path:?} beneath {root}: {}", beneath_reason(.source))]
    OpenBeneath {
        root: PathBuf,
        sub_path: String,
        #[source]
        source: io::Error,
    },
    /// A subPath resolves outside its volume (through a symlink or `..`).
    #[error("{sub_path:?} escapes volume {root}: {reason}")]
    Escapes { root: PathBuf, sub_path: String, reason: String },
    /// Preparing the bind target for a subPath (directory 0750 or empty file 0640) failed.
    #[error("preparing subPath target {path}")]
    PrepareTarget {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing a file (atomic writer payload) failed.
    #[error("writing {path}")]
    WriteFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading a file or link failed.
    #[error("reading {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Creating a symlink failed.
    #[error("creating symlink {path} -> {target}")]
    Symlink {
        path: PathBuf,
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `rename(2)` failed.
    #[error("renaming {from} to {to}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `chmod`/`fchmod` failed.
    #[error("changing mode of {path} to {mode:o}")]
    Chmod {
        path: PathBuf,
        mode: u32,
        #[source]
        source: io::Error,
    },
    /// `chown`/`lchown` failed.
    #[error("changing ownership of {path}")]
    Chown {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Listing a directory failed.
    #[error("reading directory {path}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The atomic writer's target directory does not exist.
    #[error("atomic writer target {path} does not exist")]
    NoTargetDir { path: PathBuf },
    /// An external program could not be started or waited for.
    #[error("running {program}")]
    RunCommand {
        program: String,
        #[source]
        source: io::Error,
    },
    /// An external program did not finish in time and was killed.
    #[error("{program} did not finish within {timeout:?}")]
    CommandTimedOut { program: String, timeout: Duration },
    /// A loop-device ioctl or device open failed.
    #[error("loop device {step} on {device} (backing file {file})")]
    Loop {
        step: &'static str,
        device: PathBuf,
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A detached loop device stayed bound: something still holds it open (a mount, in this or another mount
    /// namespace, or a process), and the kernel releases it only when the last holder closes it.
    #[error(
        "loop device {device} is still bound to {file} {waited:?} after its detach: it is held open (mounted, or \
         opened by a process); the kernel releases it when the last holder closes it"
    )]
    LoopBusy { device: PathBuf, file: PathBuf, waited: Duration },
    /// `blkid` could not tell whether a device holds a file system.
    #[error("probing {device} with blkid failed ({status}): {output}")]
    Probe { device: PathBuf, status: String, output: String },
    /// The device already holds a different file system (or a partition table); it is never reformatted.
    #[error("{device} already holds {found}, not {wanted}: refusing to format it")]
    FormatMismatch { device: PathBuf, found: String, wanted: String },
    /// `mkfs.<type>` failed.
    #[error("mkfs.{fstype} {device} failed ({status}): {output}")]
    Mkfs { device: PathBuf, fstype: String, status: String, output: String },
}

/// errnos after which retrying the same call cannot help.
const FINAL_ERRNOS: &[i32] = &[
    libc::EINVAL,
    libc::ENODEV,
    libc::ENOTBLK,
    libc::ENOTDIR,
    libc::EISDIR,
    libc::ELOOP,
    libc::EXDEV,
    libc::EPERM,
    libc::ENAMETOOLONG,
];

/// errnos after which a mount may have happened although the call failed.
const UNCERTAIN_ERRNOS: &[i32] = &[libc::ETIMEDOUT, libc::EINTR];

fn class_of_io(err: &io::Error) -> ErrorClass {
    match err.raw_os_error() {
        Some(e) if FINAL_ERRNOS.contains(&e) => ErrorClass::Final,
        Some(e) if UNCERTAIN_ERRNOS.contains(&e) => ErrorClass::Uncertain,
        _ => ErrorClass::Transient,
    }
}

impl Error {
    /// How the node agent should treat this error (STYLE rule 4).
    ///
    /// Mount steps that time out or cannot be rolled back are [`ErrorClass::Uncertain`]; invalid input and
    /// refusals that a retry cannot change are [`ErrorClass::Final`]; everything else is
    /// [`ErrorClass::Transient`] (nothing changed on the host, retry with backoff).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Rollback { .. } | Error::CommandTimedOut { .. } => ErrorClass::Uncertain,
            Error::InvalidPath { .. }
            | Error::Escapes { .. }
            | Error::FormatMismatch { .. }
            | Error::ParseMountInfo { .. }
            | Error::NoTargetDir { .. } => ErrorClass::Final,
            Error::MountHelper { output, .. } => {
                // mount(8) says "unknown filesystem type" or "helper program", mount.nfs "No such
                // device", when the kernel module or the helper is missing: this host cannot mount the type.
                let o = output.to_ascii_lowercase();
                if ["unknown filesystem type", "helper program", "no such device"].iter().any(|m| o.contains(m)) {
                    ErrorClass::Final
                } else {
                    ErrorClass::Transient
                }
            }
            Error::OpenBeneath { source, .. } => match source.raw_os_error() {
                Some(libc::EXDEV) | Some(libc::ELOOP) => ErrorClass::Final,
                _ => class_of_io(source),
            },
            Error::Mount { source, .. }
            | Error::Bind { source, .. }
            | Error::Remount { source, .. }
            | Error::SetPropagation { source, .. }
            | Error::Unmount { source, .. } => class_of_io(source),
            _ => ErrorClass::Transient,
        }
    }

    /// This error and its causes, `: `-separated: for messages that travel as one string (a FlexVolume
    /// driver's answer, a gRPC status).
    pub fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }

    /// The OS error behind this error, if there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<io::Error>() {
                return io.raw_os_error();
            }
            cur = e.source();
        }
        None
    }
}

/// Converts an errno from nix into an `io::Error` (so every variant carries one source type).
pub(crate) fn io_err(errno: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(errno as i32)
}

/// What an [`Error::OpenBeneath`] failure means, with its errno: the escapes in words.
fn beneath_reason(source: &io::Error) -> String {
    match source.raw_os_error() {
        Some(libc::EXDEV) => {
            "it escapes the volume through \"..\", an absolute symlink or a symlink out of it (EXDEV)".to_string()
        }
        Some(libc::ELOOP) => "it goes through a symlink, which is refused here, or symlinks loop (ELOOP)".to_string(),
        _ => source.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_causes_appends_the_cause_chain() {
        let err = Error::Loop {
            step: "open",
            device: "/dev/loop7".into(),
            file: "/p/v.img".into(),
            source: io::Error::from_raw_os_error(libc::ENXIO),
        };
        assert_eq!(
            err.with_causes(),
            format!(
                "loop device open on /dev/loop7 (backing file /p/v.img): {}",
                io::Error::from_raw_os_error(libc::ENXIO)
            )
        );
    }

    #[test]
    fn mount_errnos_are_classified() {
        let mount = |errno| Error::Mount {
            source_spec: "s".into(),
            target: "/t".into(),
            fstype: "ext4".into(),
            options: String::new(),
            source: io::Error::from_raw_os_error(errno),
        };
        assert_eq!(mount(libc::EBUSY).class(), ErrorClass::Transient);
        assert_eq!(mount(libc::ENODEV).class(), ErrorClass::Final);
        assert_eq!(mount(libc::ETIMEDOUT).class(), ErrorClass::Uncertain);
        assert_eq!(mount(libc::EBUSY).raw_os_error(), Some(libc::EBUSY));
    }

    #[test]
    fn a_refused_subpath_says_that_it_escapes_the_volume_and_gives_the_errno() {
        let beneath = |errno| Error::OpenBeneath {
            root: "/v".into(),
            sub_path: "rel-link".into(),
            source: io::Error::from_raw_os_error(errno),
        };
        let text = beneath(libc::EXDEV).to_string();
        assert!(text.starts_with("opening \"rel-link\" beneath /v: it escapes the volume"), "{text}");
        assert!(text.ends_with("(EXDEV)"), "{text}");
        assert!(beneath(libc::ELOOP).to_string().contains("symlink"));
        assert!(beneath(libc::ELOOP).to_string().ends_with("(ELOOP)"));
        assert!(beneath(libc::ENOENT).to_string().contains("No such file or directory (os error 2)"));
    }

    #[test]
    fn escapes_and_missing_helpers_are_final() {
        let e = Error::Escapes { root: "/v".into(), sub_path: "a".into(), reason: "symlink".into() };
        assert_eq!(e.class(), ErrorClass::Final);
        let e = Error::MountHelper {
            fstype: "nfs".into(),
            source_spec: "h:/e".into(),
            target: "/t".into(),
            status: "exit status: 32".into(),
            output: "mount: /t: bad option; for several filesystems (e.g. nfs, cifs) you might need a \
                     /sbin/mount.<type> helper program."
                .into(),
        };
        assert_eq!(e.class(), ErrorClass::Final);
        let e = Error::CommandTimedOut { program: "mount".into(), timeout: Duration::from_secs(1) };
        assert_eq!(e.class(), ErrorClass::Uncertain);
    }
}
