//! The one error type of the FlexVolume protocol crate.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::Command;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong calling a driver, or reading what a caller passed to a driver.
///
/// The `Display` texts of [`Error::NotSupported`] and [`Error::Failed`] are kubelet's own
/// (`driver-call.go`), so events and logs read as they do in Kubernetes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The driver answered `{"status": "Not supported"}` to this command, now or in an earlier
    /// call (then it was not run again). Kubelet's fallback for the command applies.
    #[error("Not supported")]
    NotSupported {
        /// The command the driver does not support.
        command: Command,
    },

    /// The driver answered with a status other than `Success` (usually `Failure`).
    #[error("{command} command failed, status: {status}, reason: {message}")]
    Failed {
        /// The command that failed.
        command: Command,
        /// The status the driver printed.
        status: String,
        /// The driver's `message`.
        message: String,
    },

    /// The driver's combined stdout+stderr is not a JSON status object.
    #[error("{command}: driver {executable} printed no valid JSON status ({reason}){exit}; output: {output:?}")]
    BadOutput {
        /// The command that was run.
        command: Command,
        /// The driver executable.
        executable: PathBuf,
        /// Why the output was rejected.
        reason: String,
        /// `", exit status N"` when the driver also exited non-zero, else empty.
        exit: String,
        /// The output, truncated to a few KiB.
        output: String,
    },

    /// Driver bug: it printed a `Success` status but exited non-zero. Kubelet treats this as a
    /// failure (the exec error wins), and so does kvol.
    #[error("{command}: driver bug: {executable} printed a Success status but exited with {status}")]
    DriverBug {
        /// The command that was run.
        command: Command,
        /// The driver executable.
        executable: PathBuf,
        /// How it exited.
        status: ExitStatus,
    },

    /// The call ran past its time limit; the driver's whole process group was killed.
    #[error("timeout: {command} on driver {executable} did not finish within {limit:?}; its process group was killed")]
    Timeout {
        /// The command that was run.
        command: Command,
        /// The driver executable.
        executable: PathBuf,
        /// The limit that passed.
        limit: Duration,
    },

    /// The driver could not be started (missing, not executable, bad interpreter...).
    #[error("{command}: cannot run driver {executable}: {source}")]
    Spawn {
        /// The command that was to be run.
        command: Command,
        /// The driver executable.
        executable: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// Reading the driver's output or waiting for it failed.
    #[error("{command}: waiting for driver {executable}: {source}")]
    Wait {
        /// The command that was run.
        command: Command,
        /// The driver executable.
        executable: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// The argument is not a FlexVolume command name.
    #[error("unknown FlexVolume command {0:?}")]
    UnknownCommand(String),

    /// The options JSON passed to a driver is not an object of strings.
    #[error("options are not a JSON object of strings: {reason}")]
    OptionsJson {
        /// Why.
        reason: String,
    },

    /// A required option is absent (or empty).
    #[error("missing option {key:?}")]
    MissingOption {
        /// The option key.
        key: String,
    },

    /// An option has a value the driver cannot use.
    #[error("invalid option {key:?}={value:?}: {reason}")]
    InvalidOption {
        /// The option key.
        key: String,
        /// The value given (secrets are never put here).
        value: String,
        /// Why it is invalid.
        reason: String,
    },

    /// The plugin directory could not be created or watched.
    #[error("watching FlexVolume plugin directory {dir}: {source}")]
    Watch {
        /// The plugin directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the driver said "Not supported", so kubelet's fallback for the command applies.
    pub fn is_not_supported(&self) -> bool {
        matches!(self, Error::NotSupported { .. })
    }

    /// Whether the error says nothing about the volume's state on the host (the driver never
    /// ran, or it was killed mid-way): the caller must check before assuming anything.
    pub fn is_uncertain(&self) -> bool {
        matches!(self, Error::Timeout { .. } | Error::Wait { .. } | Error::DriverBug { .. } | Error::BadOutput { .. })
    }
}
