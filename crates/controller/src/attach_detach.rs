//! The attach/detach controller (`pkg/controller/volume/attachdetach`): attaches the volumes that pods bound
//! to a node need before the node agent may mount them, and detaches them once no pod there needs them and
//! the node has unmounted them.
//!
//! Two kinds of volume are attached: CSI PersistentVolumes whose CSIDriver requires attach (the controller
//! creates a VolumeAttachment and the driver's attacher sidecar does the ControllerPublishVolume), and
//! volumes of attachable plugins in the [`PluginRegistry`] (FlexVolume drivers with `attach`, which the
//! controller calls itself). A confirmed attachment is recorded in the Node's `status.volumesAttached`, which
//! the node agent waits for; the agent reports what it mounts in `status.volumesInUse`, and the controller
//! never detaches a volume listed there before `max_wait_for_unmount` has passed (kubelet's safety rule).
//!
//! Design decision: kube's shape — [`desired`] state, [`actual`] state, a pure [`reconcile`] step, and
//! [`operations`] that run as tasks — with one loop owning the actual state, so operation outcomes are
//! applied in one place and the node status writes follow from them. The desired state is recomputed from
//! the caches on every pass instead of being maintained by event handlers: simpler to get right, and cheap at
//! the scale a node agent's cluster has. Waiting for a CSI attacher does not hold a task: the operation
//! reports "waiting" and is tried again when the VolumeAttachment changes.

pub mod actual;
mod controller;
pub mod desired;
pub mod error;
pub mod names;
pub mod operations;
pub mod reconcile;
pub mod world;

pub use error::OperationError;

use crate::error::{Error, Result};
use controller::{watch, Controller};
use kvol_runtime::Backoff;
use kvol_volume::PluginRegistry;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use world::World;

/// How the attach/detach controller runs (kube's `--attach-detach-reconcile-*` flags).
#[derive(Debug, Clone)]
pub struct AttachDetachConfig {
    /// The shortest time between two passes of the reconciler once woken (kube's reconciler period, 100 ms).
    pub loop_period: Duration,
    /// A full pass, with the plugins' attachment checks, at least this often (kube's `syncDuration`, 1 min).
    pub sync_period: Duration,
    /// How long a volume the node still reports in use keeps its detach waiting (kube: 6 min).
    pub max_wait_for_unmount: Duration,
    /// Retries of failed attaches and detaches: 500 ms doubling to 2 min 2 s (kube's exponential backoff).
    pub backoff: Backoff,
    /// How long a CSI attach or detach waits for the driver's attacher before it counts as failed
    /// (kube's `csiTimeout`, 2 min).
    pub csi_timeout: Duration,
}

impl Default for AttachDetachConfig {
    fn default() -> Self {
        AttachDetachConfig {
            loop_period: Duration::from_millis(100),
            sync_period: Duration::from_secs(60),
            max_wait_for_unmount: Duration::from_secs(6 * 60),
            backoff: Backoff { base: Duration::from_millis(500), max: Duration::from_millis(122_000) },
            csi_timeout: Duration::from_secs(120),
        }
    }
}

/// Runs the attach/detach controller until `shutdown` resolves (or the future is dropped). FlexVolume
/// drivers are found in `registry` (its dynamic sources included); CSI volumes need no plugin.
pub async fn run_attach_detach(
    client: kube::Client,
    registry: PluginRegistry,
    config: AttachDetachConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let world = Arc::new(World::default());
    let wake = Arc::new(Notify::new());
    let (ready_tx, mut ready_rx) = mpsc::channel::<&'static str>(8);
    let mut watches = tokio::task::JoinSet::new();
    let (c, w, n, r) = (&client, &world, &wake, &ready_tx);
    watches.spawn(watch(c.clone(), w.clone(), |w| &w.pods, "pods", n.clone(), r.clone()));
    watches.spawn(watch(c.clone(), w.clone(), |w| &w.claims, "persistentvolumeclaims", n.clone(), r.clone()));
    watches.spawn(watch(c.clone(), w.clone(), |w| &w.volumes, "persistentvolumes", n.clone(), r.clone()));
    watches.spawn(watch(c.clone(), w.clone(), |w| &w.nodes, "nodes", n.clone(), r.clone()));
    watches.spawn(watch(c.clone(), w.clone(), |w| &w.drivers, "csidrivers", n.clone(), r.clone()));
    watches.spawn(watch(c.clone(), w.clone(), |w| &w.attachments, "volumeattachments", n.clone(), r.clone()));
    drop(ready_tx);
    tokio::pin!(shutdown);
    let task_failed =
        |e: tokio::task::JoinError| Error::Watch { what: "attach/detach watch task", message: e.to_string() };
    // The actual state is rebuilt from full lists only: never from half a picture.
    for _ in 0..watches.len() {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = ready_rx.recv() => if let Some(kind) = r { tracing::debug!(kind, "attach/detach: cache filled") },
            Some(r) = watches.join_next() => return r.unwrap_or_else(|e| Err(task_failed(e))),
        }
    }
    let controller = Controller::new(client, world, registry, config, wake);
    tracing::info!("attach/detach controller running");
    tokio::select! {
        _ = &mut shutdown => Ok(()),
        r = controller.run() => r,
        Some(r) = watches.join_next() => r.unwrap_or_else(|e| Err(task_failed(e))),
    }
}
