//! The crate's error type: what a plugin operation failed at, and how the node agent must treat it.

use std::path::PathBuf;

pub use kvol_mount::ErrorClass;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure of a volume plugin, named after the step that failed. Display texts are kubelet's where
/// kubelet has one, because they end up in FailedMount events users search for.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A host-side step (mount, mkdir, atomic write…) failed.
    #[error(transparent)]
    Host(#[from] kvol_mount::Error),
    /// A hostPath exists but is not of the declared `type`.
    #[error("hostPath type check failed: {path} is not a {expected}")]
    HostPathType { path: PathBuf, expected: &'static str },
    /// A hostPath `type` kvol does not know.
    #[error("{kind} is an invalid volume type")]
    HostPathInvalidType { kind: String },
    /// A user-given path contains a `..` element.
    #[error("invalid HostPath `{path}`: must not contain '..'")]
    Backsteps { path: String },
    /// Creating a hostPath (DirectoryOrCreate, FileOrCreate) failed.
    #[error("creating hostPath {path}: {source}")]
    CreateHostPath {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A local filesystem step outside kvol-mount (mkdir, chmod, remove) failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A referenced API object (ConfigMap, Secret) does not exist and the volume is not optional.
    #[error("{resource} \"{name}\" not found")]
    ObjectNotFound { resource: &'static str, name: String },
    /// A key listed in `items` is missing from the object and the volume is not optional.
    #[error("{kind} references non-existent {what} key: {key}")]
    KeyNotFound { kind: &'static str, what: &'static str, key: String },
    /// The object could not be read (the API is unreachable, the cache not yet synced).
    #[error("getting {resource} {namespace}/{name}: {reason}")]
    ObjectUnavailable { resource: &'static str, namespace: String, name: String, reason: String },
    /// No registered plugin supports the spec, or several do.
    #[error("{0}")]
    NoPlugin(String),
    /// A plugin name was registered twice.
    #[error("volume plugin {0:?} was registered twice")]
    DuplicatePlugin(String),
    /// A CSI step failed; its class follows kubelet's `isFinalError`.
    #[error(transparent)]
    Csi(#[from] crate::plugins::csi::CsiError),
    /// The spec is malformed for this plugin (a field it requires is missing).
    #[error("volume {volume}: {reason}")]
    InvalidSpec { volume: String, reason: String },
}

impl Error {
    /// How the node agent should treat the error (STYLE rule 4): uncertain mounts must be checked on the
    /// host; everything else leaves the host unchanged and is retried with backoff (kubelet retries final
    /// errors too, since a user may fix the host or the object).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Host(e) => e.class(),
            Error::Csi(e) => e.class(),
            Error::HostPathType { .. }
            | Error::HostPathInvalidType { .. }
            | Error::Backsteps { .. }
            | Error::NoPlugin(_)
            | Error::DuplicatePlugin(_)
            | Error::InvalidSpec { .. } => ErrorClass::Final,
            _ => ErrorClass::Transient,
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }
}
