//! kubernetes-csi's sidecars, built into kvol: the controller-side roles that connect a CSI driver to
//! Kubernetes objects (provisioner, attacher, resizer) and the node-side registrar.
//!
//! Each role is a plain Kubernetes API client (the `kube` crate's watchers), so the same code runs
//! against `kvol server` and against a real kube-apiserver, as external-provisioner, external-attacher,
//! external-resizer and node-driver-registrar do. Key decisions: one process runs any subset of the
//! roles over one driver connection; and claims, volumes and attachments are not cached: every watch
//! event is filtered on the spot and only the keys of objects that need work are queued, the worker
//! reading the object fresh before acting. Memory stays flat in the number of volumes (kubernetes-csi's
//! informer caches need ~200 MiB per sidecar per 5,000 volumes), and no decision is taken on a stale
//! copy of an object a role just wrote. Driver calls go through [`driver::Driver`], which validates
//! every reply; gRPC status codes are classified in one place ([`error::classify`]).

pub mod attacher;
pub mod capability;
pub mod config;
pub mod driver;
pub mod error;
pub mod events;
pub mod params;
pub mod provisioner;
pub mod registrar;
pub mod resizer;
pub mod run;

pub use config::{parse_roles, Role, SidecarConfig};
pub use driver::{Capabilities, Driver};
pub use error::{Error, Result};
pub use kvol_runtime::Backoff;
pub use registrar::{run_registrar, RegistrarConfig};
pub use run::run_sidecar;
