//! How driver failures become the crate's [`Error`], with the class the node agent acts on.
//!
//! The crate's error enum has no variant for a driver call yet (see the module's report), so a failed
//! call is carried whole as the source of an [`Error::Io`] whose text reads
//! `flexVolume driver <vendor/driver>: <kvol-flex's text>`: the driver's own message (kubelet's
//! `mount command failed, status: Failure, reason: ...`) reaches the FailedMount event, and the
//! [`kvol_flex::Error`] can be recovered with [`flex_error`]. That class is transient. A call killed
//! at its time limit, with nothing cleaned up after it, is uncertain: it maps to
//! [`kvol_mount::Error::CommandTimedOut`].

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::mount_root::is_mount_root;

/// A failed driver call of `driver`, when nothing on the host was left in an unknown state: the
/// call failed cleanly, or kvol cleaned up after it (transient).
pub(super) fn driver_error(driver: &str, err: kvol_flex::Error) -> Error {
    Error::Io { what: "flexVolume driver", path: PathBuf::from(driver), source: std::io::Error::other(err) }
}

/// A failed driver call after which the volume's state is unknown and was not cleaned up (attach,
/// detach, waitforattach): a timeout is uncertain, anything else as [`driver_error`].
pub(super) fn uncleaned_driver_error(driver: &str, err: kvol_flex::Error) -> Error {
    match err {
        kvol_flex::Error::Timeout { command, limit, .. } => Error::Host(kvol_mount::Error::CommandTimedOut {
            program: format!("flexVolume driver {driver}: `{command}` was killed with its process group because it"),
            timeout: limit,
        }),
        other => driver_error(driver, other),
    }
}

/// After a failed `mount`/`mountdevice` at `path`: unmounts whatever the driver left there and removes
/// the directory, then returns `err` (the driver's message). When that cleanup fails and `path` is still
/// a mount point, the result is uncertain (the reconciler must look at the host).
pub(super) fn clean_up_failed_mount(mounter: &dyn kvol_mount::Mounter, path: &Path, err: Error) -> Error {
    let Err(clean) = kvol_mount::cleanup_mount_point(mounter, path) else { return err };
    match is_mount_root(mounter, path) {
        Ok(false) => {
            tracing::warn!(path = %path.display(), error = %clean, "FlexVolume: a failed mount left a directory that cannot be removed");
            err
        }
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => err,
        _ => Error::Host(kvol_mount::Error::Rollback {
            target: path.to_path_buf(),
            step_error: err.to_string(),
            source: Box::new(clean),
        }),
    }
}

/// The driver's error inside one of this module's errors, if it carries one.
pub fn flex_error(err: &Error) -> Option<&kvol_flex::Error> {
    match err {
        Error::Io { source, .. } => source.get_ref().and_then(|e| e.downcast_ref::<kvol_flex::Error>()),
        _ => None,
    }
}
