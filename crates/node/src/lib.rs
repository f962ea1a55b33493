//! kvol's node agent: kubelet's volume manager for the pods bound to one node.
//!
//! Design decision: kubelet's shape, kept strict. A populator turns pods (watched with
//! `fieldSelector=spec.nodeName=<node>`) into the [`desired`] state; operations record what they did in
//! the [`actual`] state; the [`reconciler`] is a pure function from the two to a list of operations, which
//! the [`manager`] runs on the blocking pool through an [`executor`] that allows one operation per volume
//! and backs off exponentially. After a restart the actual state is [`reconstruct`]ed from the disk alone,
//! every volume *uncertain*: set-up is idempotent, so a wanted volume is simply set up again (which
//! verifies it), and teardown waits until the desired state is complete, so nothing still wanted is ever
//! unmounted by a restart.

pub mod actual;
pub mod agent;
pub mod config;
pub mod container_mounts;
pub mod csinode;
pub mod desired;
pub mod error;
pub mod executor;
pub mod expand;
pub mod flex;
pub mod host;
pub mod manager;
pub mod node_status;
pub mod operations;
pub mod plugin_watcher;
pub mod populator;
pub mod reconciler;
pub mod reconstruct;
pub mod server;
pub mod status;
pub mod subpath;
pub mod volume_id;
pub mod volume_stats;

pub use agent::{run_agent, run_agent_hooked, run_agent_with, AgentHooks};
pub use config::{AgentConfig, DEFAULT_ROOT_DIR, DEFAULT_VOLUME_PLUGIN_DIR};
pub use container_mounts::{
    container_devices, container_mounts, devices_to_docker, to_docker, to_oci, volume_path, ContainerDevice,
    ContainerMount, Propagation,
};
pub use error::{Error, Result};
pub use status::VOLUMES_READY;
pub use volume_id::VolumeId;
