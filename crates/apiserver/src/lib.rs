//! kvol's API server: the Kubernetes REST API for the storage objects (PersistentVolume, claims, pods,
//! ConfigMaps, Secrets, nodes, namespaces, events, StorageClasses, VolumeAttachments, CSIDriver, CSINode),
//! over kvol's revisioned store, so kubectl and any Kubernetes client work against it unchanged.
//!
//! Design decision: objects are handled as `k8s-openapi` types wherever rules apply (decode, defaulting,
//! validation, admission), and as stored JSON bytes everywhere else (get, list, watch), with the
//! resourceVersion spliced in, so reads never pay for a decode.

mod admission;
pub mod auth;
pub mod authz;
pub mod codec;
pub mod conn;
pub mod discovery;
pub mod namespaces;
pub mod object;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod proxy;
pub mod read;
pub mod registry;
pub mod routes;
pub mod server;
pub mod status;
pub mod table;
pub mod tls;
pub mod watch;

pub use server::{run, Server, ServerConfig, ServerError};

use std::sync::Arc;
use std::time::Duration;

/// What every request handler shares.
#[derive(Clone)]
pub struct ApiState {
    /// The object store.
    pub store: Arc<dyn kvol_store::Store>,
    /// Bearer tokens.
    pub tokens: Arc<auth::Tokens>,
    /// The address `/api` advertises.
    pub advertise_address: String,
    /// How often watches with `allowWatchBookmarks` get a bookmark.
    pub bookmark_interval: Duration,
    /// How long a watch without `timeoutSeconds` lasts.
    pub watch_timeout: Duration,
    /// Connection timeouts, the unauthenticated-connection cap and each watch's byte budget.
    pub limits: conn::Limits,
}
