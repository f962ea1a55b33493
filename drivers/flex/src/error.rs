//! The driver's one error type. Its `Display` is the `message` kubelet shows in the pod's
//! FailedMount event, so every variant names the step and the path or option involved.

use std::path::PathBuf;

/// `Result` with the driver's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a driver call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The options were missing, malformed or invalid (`missing option "volumeID"`).
    #[error(transparent)]
    Options(#[from] kvol_flex::Error),

    /// Wrong number or kind of arguments.
    #[error("usage: {0}")]
    Usage(String),

    /// A file system step failed.
    #[error("{step} {path}: {source}")]
    Io {
        /// What was being done (`create pool dir`, `read loop state`...).
        step: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// A system call failed (the flock of the state directory).
    #[error("{step} {path}: {source}")]
    Sys {
        /// What was being done (`lock state directory`).
        step: String,
        /// The path involved.
        path: PathBuf,
        /// The errno.
        #[source]
        source: nix::Error,
    },

    /// An external tool (mkfs, blkid) failed; `output` is what it printed.
    #[error("{command} failed ({status}): {output}")]
    Tool {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its stderr (or stdout when stderr is empty), trimmed.
        output: String,
    },

    /// A host step of the shared host layer (kvol-mount: loop devices) failed; shown with its causes.
    #[error("{}", .0.with_causes())]
    Host(#[from] kvol_mount::Error),

    /// The host is not in a state this call can work from.
    #[error("{0}")]
    State(String),
}
