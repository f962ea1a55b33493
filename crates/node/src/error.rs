//! The node agent's error type.

use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Failures of the node agent, named after the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// A volume plugin failed.
    #[error(transparent)]
    Volume(#[from] kvol_volume::Error),
    /// A host-side step failed.
    #[error(transparent)]
    Host(#[from] kvol_mount::Error),
    /// Detaching a volume the agent attached itself failed (kubelet's `DetachVolume.Detach failed`).
    #[error("DetachVolume.Detach failed for volume {volume:?} : {source}")]
    Detach {
        volume: String,
        // Boxed: the plugin error would double the size of every Result of this crate.
        #[source]
        source: Box<kvol_volume::Error>,
    },
    /// Reading the root directory during reconstruction failed.
    #[error("reading {path}: {source}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A pod directory still holds volumes, so it is not removed (kubelet's orphaned-pod message).
    #[error("orphaned pod {uid:?} found, but volume paths are still present on disk: {paths:?}")]
    OrphanVolumesPresent { uid: String, paths: Vec<PathBuf> },
    /// Removing a pod directory failed.
    #[error("removing pod directory {path}: {source}")]
    RemovePodDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The read-only server's address could not be bound.
    #[error("binding the read-only server to {address}: {source}")]
    ReadOnlyServer { address: std::net::SocketAddr, source: std::io::Error },
    /// The watch on this node's pods failed for good.
    #[error("watching pods: {0}")]
    Watch(String),
    /// A claim could not be resolved to its PersistentVolume.
    #[error("{0}")]
    Claim(String),
    /// A subPath could not be set up.
    #[error("failed to prepare subPath for volumeMount {volume:?} of container {container:?}: {reason}")]
    SubPath { volume: String, container: String, reason: String },
}

impl Error {
    pub(crate) fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Api { what, source }
    }
}
