//! Errors of the endpoint helpers.

use std::path::PathBuf;

/// What went wrong while connecting to or serving a CSI endpoint.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint string is neither `unix:///abs/path` nor a bare path.
    #[error("unsupported CSI endpoint {endpoint:?}: expected unix:///path or a filesystem path")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
    },
    /// Connecting the gRPC channel over the socket failed.
    #[error("connecting to CSI endpoint {path}")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// Removing a stale socket before binding failed.
    #[error("removing stale socket {path}")]
    RemoveStale {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Something other than a socket sits at the endpoint path; it is left alone.
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Binding or chmod-ing the listening socket failed.
    #[error("binding unix socket {path}")]
    Bind {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server stopped with an error.
    #[error("serving gRPC on {path}")]
    Serve {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: tonic::transport::Error,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
