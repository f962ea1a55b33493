//! The driver's error type, and the one place where errors become gRPC status codes.

use std::path::PathBuf;

/// Everything a CSI call can fail with. Each variant maps to exactly one gRPC code in
/// `impl From<Error> for tonic::Status` below; handlers never build a `Status` themselves.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field the spec marks REQUIRED is empty.
    #[error("{field} is required")]
    MissingField {
        /// Request field name, as in csi.proto.
        field: &'static str,
    },
    /// A field has a value the driver does not accept.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// Request field name.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// Another call for this volume or snapshot is still running (the spec's "operation pending").
    #[error("an operation for {key} is already in progress; retry later")]
    OperationPending {
        /// The volume id, snapshot id or name that is busy.
        key: String,
    },
    /// No volume with this id.
    #[error("volume {volume_id} not found")]
    VolumeNotFound {
        /// The id asked for.
        volume_id: String,
    },
    /// No snapshot with this id.
    #[error("snapshot {snapshot_id} not found")]
    SnapshotNotFound {
        /// The id asked for.
        snapshot_id: String,
    },
    /// The node id is not a node this driver serves.
    #[error("node {node_id} not found: this driver serves node {own}")]
    NodeNotFound {
        /// The node id asked for.
        node_id: String,
        /// This driver's node id.
        own: String,
    },
    /// An object with this name/at this path exists but differs from the request.
    #[error("{what} already exists with different parameters: {reason}")]
    AlreadyExists {
        /// What exists (volume name, snapshot name, staging or target path).
        what: String,
        /// How it differs.
        reason: String,
    },
    /// The call cannot proceed in the current state (in use, not staged, exceeds capabilities…).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The requested capacity cannot be satisfied by this driver.
    #[error("capacity out of range: {0}")]
    CapacityOutOfRange(String),
    /// The pool has not enough free space, or the topology cannot be satisfied.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// `starting_token` was not produced by this driver.
    #[error("invalid starting_token {token:?}")]
    BadToken {
        /// The token as received.
        token: String,
    },
    /// The RPC is not implemented (or not served in this mode).
    #[error("{0} is not implemented by kvol-csi")]
    Unimplemented(&'static str),
    /// The pool is not usable (probe).
    #[error("pool {pool} is unhealthy: {reason}")]
    PoolUnhealthy {
        /// The pool directory.
        pool: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An external command (btrfs, mkfs…) failed.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// mount(2) or umount(2) failed.
    #[error("{op} {target}: {source}")]
    Mount {
        /// "mount", "bind mount", "remount", "unmount".
        op: &'static str,
        /// The mount point.
        target: PathBuf,
        /// Cause.
        #[source]
        source: nix::Error,
    },
    /// A step of the shared host layer (kvol-mount: loop devices) failed; shown with its causes.
    #[error("{}", .0.with_causes())]
    Host(#[from] kvol_mount::Error),
    /// A metadata file could not be parsed.
    #[error("metadata {path} is corrupt: {source}")]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// A blocking task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}

/// Result with the driver's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for an I/O error with its operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        use tonic::Code;
        let code = match &err {
            Error::MissingField { .. } | Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::OperationPending { .. } | Error::BadToken { .. } => Code::Aborted,
            Error::VolumeNotFound { .. } | Error::SnapshotNotFound { .. } | Error::NodeNotFound { .. } => {
                Code::NotFound
            }
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::FailedPrecondition(_) | Error::PoolUnhealthy { .. } => Code::FailedPrecondition,
            Error::CapacityOutOfRange(_) => Code::OutOfRange,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::Command { .. }
            | Error::Io { .. }
            | Error::Mount { .. }
            | Error::Host(_)
            | Error::Metadata { .. }
            | Error::Task(_) => Code::Internal,
        };
        if code == Code::Internal {
            tracing::warn!(error = %err, "internal error");
        }
        tonic::Status::new(code, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mandated_conditions_map_to_the_spec_codes() {
        struct Case {
            err: Error,
            code: tonic::Code,
        }
        let cases = [
            Case { err: Error::MissingField { field: "name" }, code: tonic::Code::InvalidArgument },
            Case { err: Error::OperationPending { key: "v1".into() }, code: tonic::Code::Aborted },
            Case { err: Error::BadToken { token: "x".into() }, code: tonic::Code::Aborted },
            Case { err: Error::VolumeNotFound { volume_id: "v".into() }, code: tonic::Code::NotFound },
            Case {
                err: Error::AlreadyExists { what: "n".into(), reason: "r".into() },
                code: tonic::Code::AlreadyExists,
            },
            Case { err: Error::FailedPrecondition("in use".into()), code: tonic::Code::FailedPrecondition },
            Case { err: Error::CapacityOutOfRange("big".into()), code: tonic::Code::OutOfRange },
            Case { err: Error::ResourceExhausted("full".into()), code: tonic::Code::ResourceExhausted },
        ];
        for case in cases {
            let status = tonic::Status::from(case.err);
            assert_eq!(status.code(), case.code, "{}", status.message());
            assert!(!status.message().is_empty());
        }
    }
}
