//! The parts `kvol server` (and `kvol controller`) run beside the core loops: the attach/detach
//! controller with the FlexVolume drivers it can attach through, and the controller-side CSI roles of
//! every CSI driver that registers with the local agent (what kubernetes-csi's sidecars do in a cluster).

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kube::Client;
use kvol_controller::attach_detach::{run_attach_detach, AttachDetachConfig};
use kvol_csi_sidecar::{Role, SidecarConfig};
use kvol_flex::CallLimits;
use kvol_volume::plugins::csi::RegistrationEvent;
use kvol_volume::plugins::flexvolume::{FlexConfig, FlexVolumeProber};
use kvol_volume::PluginRegistry;
use tokio::sync::mpsc;

/// Runs the attach/detach controller and the expand controller until `shutdown`, attaching and growing
/// FlexVolumes through the drivers in `flex_dir` (kube-controller-manager's `--flex-volume-plugin-dir`),
/// probed as they come and go. `node_root` is the node agent's root directory (the drivers' per-node paths);
/// `limits` bound every driver call, as the agent's `--flex-call-timeout` bounds its own.
pub async fn attach_detach(
    client: Client,
    flex_dir: PathBuf,
    node_root: PathBuf,
    limits: CallLimits,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut registry = PluginRegistry::new();
    let prober = FlexVolumeProber::new(FlexConfig::new(&flex_dir).with_limits(limits), None)
        .await
        .with_context(|| format!("FlexVolume plugin directory {}", flex_dir.display()))?;
    registry.add_source(prober.clone());
    let probing = tokio::spawn(prober.run(std::future::pending()));
    let expander = tokio::spawn(kvol_controller::expand::run_volume_expander(
        client.clone(),
        registry.clone(),
        node_root,
        std::future::pending(),
    ));
    let result = run_attach_detach(client, registry, AttachDetachConfig::default(), shutdown).await;
    probing.abort();
    expander.abort();
    result.context("attach/detach controller")
}

/// A hook for the agent that hands CSI registrations to [`csi_roles`].
pub fn registration_hook() -> (Arc<dyn Fn(RegistrationEvent) + Send + Sync>, mpsc::UnboundedReceiver<RegistrationEvent>)
{
    let (tx, rx) = mpsc::unbounded_channel();
    (Arc::new(move |event| drop(tx.send(event))), rx)
}

/// Starts the controller roles (provisioner, attacher, resizer: those the driver's controller
/// capabilities allow) for each CSI driver registering on this node, and stops them when it goes.
pub async fn csi_roles(client: Client, mut events: mpsc::UnboundedReceiver<RegistrationEvent>) {
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    while let Some(event) = events.recv().await {
        match event {
            RegistrationEvent::Registered(info) => {
                if let Some(old) = running.remove(&info.name) {
                    old.abort();
                }
                let client = client.clone();
                let (name, endpoint) = (info.name.clone(), info.endpoint.clone());
                running.insert(info.name.clone(), tokio::spawn(run_roles(client, name, endpoint)));
            }
            RegistrationEvent::Unregistered { name } => {
                if let Some(task) = running.remove(&name) {
                    tracing::info!(driver = %name, "CSI driver unregistered: stopping its controller roles");
                    task.abort();
                }
            }
        }
    }
}

async fn run_roles(client: Client, name: String, endpoint: String) {
    let driver =
        match kvol_csi_sidecar::Driver::connect(&endpoint, Duration::from_secs(10), Duration::from_secs(60)).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(driver = %name, "cannot reach the CSI driver's controller service: {e}");
                return;
            }
        };
    let mut roles = std::collections::BTreeSet::new();
    if driver.caps.create_delete_volume {
        roles.insert(Role::Provisioner);
    }
    if driver.caps.publish_unpublish_volume {
        roles.insert(Role::Attacher);
    }
    // Without EXPAND_VOLUME the resizer still records the new size and leaves the rest to the node, as
    // external-resizer does.
    if driver.caps.expand_volume || driver.caps.controller_service {
        roles.insert(Role::Resizer);
    }
    if roles.is_empty() {
        tracing::info!(driver = %name, "CSI driver has no controller capabilities: no controller roles to run");
        return;
    }
    drop(driver);
    tracing::info!(driver = %name, ?roles, "running the CSI controller roles in-process");
    if let Err(e) =
        kvol_csi_sidecar::run_sidecar(client, SidecarConfig::new(endpoint, roles), std::future::pending()).await
    {
        tracing::error!(driver = %name, "CSI controller roles stopped: {e}");
    }
}
