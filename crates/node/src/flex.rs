//! FlexVolume on the node: the prober over `--volume-plugin-dir` as a dynamic plugin source of the
//! registry, and an event on the Node for every driver that is loaded, fails its `init`, or goes away, so a
//! misbehaving driver is visible with `kubectl describe node` (kubelet only logs these).

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::api::PostParams;
use kube::{Api, Client};
use kvol_flex::ProbeOp;
use kvol_volume::plugins::flexvolume::{FlexConfig, FlexVolumeProber, ProbeReport};
use kvol_volume::PluginRegistry;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::error::{Error, Result};

/// Loads the drivers in `dir` (each call with `env` added), adds them to `registry` as a dynamic source, and keeps watching `dir`
/// (in `tasks`); probe reports become events on node `node`.
pub async fn start(
    dir: PathBuf,
    limits: kvol_flex::CallLimits,
    env: &[(std::ffi::OsString, std::ffi::OsString)],
    registry: &mut PluginRegistry,
    client: Client,
    node: String,
    tasks: &mut JoinSet<()>,
) -> Result<Arc<FlexVolumeProber>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let config = env.iter().fold(FlexConfig::new(&dir).with_limits(limits), |c, (k, v)| c.with_env(k, v));
    let prober = FlexVolumeProber::new(config, Some(tx))
        .await
        .map_err(|e| Error::Watch(format!("FlexVolume plugin directory {}: {e}", dir.display())))?;
    tracing::info!(dir = %dir.display(), drivers = ?prober.drivers(), "FlexVolume drivers loaded");
    registry.add_source(prober.clone());
    tasks.spawn(Arc::clone(&prober).run(std::future::pending()));
    tasks.spawn(report_writer(client, node, rx));
    Ok(prober)
}

/// The event for one probe report: `(type, reason, message)`.
pub fn report_event(r: &ProbeReport) -> (&'static str, &'static str, String) {
    match (&r.op, &r.error) {
        (_, Some(error)) => (
            "Warning",
            "FailedFlexVolumeDriverInit",
            format!("FlexVolume driver {} is not loaded: init failed: {error}", r.driver),
        ),
        (ProbeOp::AddOrUpdate, None) => {
            ("Normal", "FlexVolumeDriverLoaded", format!("FlexVolume driver {} loaded (init succeeded)", r.driver))
        }
        (ProbeOp::Remove, None) => {
            ("Normal", "FlexVolumeDriverRemoved", format!("FlexVolume driver {} removed and unloaded", r.driver))
        }
    }
}

async fn report_writer(client: Client, node: String, mut rx: mpsc::UnboundedReceiver<ProbeReport>) {
    let events: Api<Event> = Api::namespaced(client, "default");
    while let Some(report) = rx.recv().await {
        let (type_, reason, message) = report_event(&report);
        if type_ == "Warning" {
            tracing::warn!(driver = %report.driver, "{message}");
        } else {
            tracing::info!(driver = %report.driver, "{message}");
        }
        let object = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.clone()),
            uid: Some(node.clone()),
            ..Default::default()
        };
        let event = crate::status::kubelet_event(&node, "default", object, type_, reason, message);
        if let Err(e) = events.create(&PostParams::default(), &event).await {
            tracing::warn!(reason, "writing a node event failed: {e}");
        }
    }
}
