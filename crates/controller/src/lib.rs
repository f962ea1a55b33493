//! kvol's control loops for storage: the PV controller (binding, phases, reclaim), dynamic provisioning with a
//! provisioner registry and the built-in `kvol.io/local-path` provisioner, PVC/PV protection, and a minimal
//! volume-aware scheduler for `WaitForFirstConsumer` — as ordinary Kubernetes API clients (`kube`), so the
//! same code runs against `kvol server` and against a real kube-apiserver.
//!
//! Design decision: Kubernetes' PV controller binds with one worker and reads from informer caches that lag its
//! own writes, which caps it near 30 bindings/s. Here every object kind has a local cache fed by a watch and
//! updated with the controllers' own writes; claims find volumes through an index instead of a scan; many
//! workers run at once, with the queue serialising work per object, a per-volume lock serialising writes to
//! one PV, and a reservation set so two claims never race for the same volume. All state is rebuilt from the
//! API on start; the two-step binding (PV claimRef first, then the claim) makes a restart at any point safe.

pub mod attach_detach;
mod binder;
pub mod cache;
mod ctx;
pub mod error;
pub mod events;
pub mod expand;
pub mod index;
pub mod local_path;
pub mod matching;
mod protection;
pub mod provision;
mod reclaim;
mod runner;
mod scheduler;
pub mod scrub;

pub use error::{Error, Result};
pub use local_path::LocalPathProvisioner;
pub use provision::{ProvisionOptions, ProvisionedVolume, Provisioner, ProvisionerRegistry, VolumeState};
pub use runner::{run_controllers, run_controllers_with, ControllerConfig, Metrics};
