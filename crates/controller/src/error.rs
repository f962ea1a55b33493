//! The controllers' error type.

use std::path::PathBuf;

/// What went wrong in a controller step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{action} {object}: {source}")]
    Api {
        /// What was attempted (`update`, `update status`, `create`, …).
        action: &'static str,
        /// The object ("pv/name", "pvc/ns/name").
        object: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The volume changed under a bind (another claim or binder got it first); the claim is retried.
    #[error("volume {volume} is no longer available for claim {claim}")]
    VolumeTaken {
        /// The volume.
        volume: String,
        /// The claim.
        claim: String,
    },
    /// A claim's selector does not parse.
    #[error("claim {claim}: {message}")]
    Selector {
        /// The claim.
        claim: String,
        /// The parse error.
        message: String,
    },
    /// A StorageClass parameter is invalid.
    #[error("StorageClass {class}: parameter {key}: {message}")]
    Parameter {
        /// The class.
        class: String,
        /// The parameter.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A provisioner failed.
    #[error("{0}")]
    Provision(String),
    /// A filesystem step of a provisioner or the recycler failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// The step.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A recycle scrub ran out of time.
    #[error("scrubbing {path} did not finish within {seconds} s")]
    ScrubTimeout {
        /// The volume directory.
        path: PathBuf,
        /// The limit.
        seconds: u64,
    },
    /// Two provisioners were registered under one name.
    #[error("provisioner {0} is registered twice")]
    DuplicateProvisioner(String),
    /// A watch stream ended with an error the watcher could not recover from.
    #[error("watching {what}: {message}")]
    Watch {
        /// The resource.
        what: &'static str,
        /// The watcher's error.
        message: String,
    },
}

impl Error {
    /// Whether this is an API 409 Conflict (stale resourceVersion).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Api { source: kube::Error::Api(s), .. } if s.code == 409)
    }

    /// Whether this is an API 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { source: kube::Error::Api(s), .. } if s.code == 404)
    }
}

/// Results of controller steps.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wrap a client error with what was attempted on which object.
pub(crate) fn api(action: &'static str, object: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let object = object.into();
    move |source| Error::Api { action, object, source }
}
