//! Node registration and heartbeat (kubelet's `kubelet_node_status.go`, reduced to what kvol needs): the
//! Node object with the `kubernetes.io/hostname` label and a Ready condition renewed every period.

use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::error::{Error, Result};

/// kubelet's hostname label.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

fn labels(node: &str) -> std::collections::BTreeMap<String, String> {
    [
        (HOSTNAME_LABEL.to_string(), node.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "kubernetes.io/arch".to_string(),
            std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        ),
    ]
    .into()
}

fn ready_condition(previous: Option<&NodeCondition>) -> NodeCondition {
    let now = Time(jiff::Timestamp::now());
    let transition = previous.filter(|c| c.status == "True").and_then(|c| c.last_transition_time.clone());
    NodeCondition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: Some("KubeletReady".into()),
        message: Some("kvol agent is posting ready status".into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(transition.unwrap_or(now)),
    }
}

/// Creates the Node if missing and makes sure it carries the hostname label and kubelet's
/// `volumes.kubernetes.io/controller-managed-attach-detach` annotation (`"true"` when the attach/detach
/// controller attaches this node's volumes, `"false"` when the agent does).
///
/// `endpoint` is where the read-only server listens: its port becomes the Node's kubelet endpoint
/// (`status.daemonEndpoints.kubeletEndpoint.Port`), with the address (an `InternalIP` unless it is the
/// unspecified address) and the machine's `Hostname` in `status.addresses`.
pub async fn register(
    client: &Client,
    node: &str,
    controller_attach_detach: bool,
    endpoint: Option<std::net::SocketAddr>,
) -> Result<()> {
    let managed = if controller_attach_detach { "true" } else { "false" };
    let annotations: std::collections::BTreeMap<String, String> =
        [(kvol_api::names::ANN_CONTROLLER_MANAGED_ATTACH.to_string(), managed.to_string())].into();
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.get_opt(node).await.map_err(Error::api(format!("getting node {node}")))? {
        None => {
            let object = Node {
                metadata: ObjectMeta {
                    name: Some(node.into()),
                    labels: Some(labels(node)),
                    annotations: Some(annotations.clone()),
                    ..Default::default()
                },
                ..Default::default()
            };
            match nodes.create(&PostParams::default(), &object).await {
                Ok(_) => tracing::info!(node, "registered node"),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(Error::Api { what: format!("registering node {node}"), source: e }),
            }
        }
        Some(existing) => {
            let has = existing.metadata.labels.as_ref().and_then(|l| l.get(HOSTNAME_LABEL)).is_some();
            let current = existing
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(kvol_api::names::ANN_CONTROLLER_MANAGED_ATTACH))
                .map(String::as_str);
            if !has || current != Some(managed) {
                let patch = serde_json::json!({ "metadata": { "labels": labels(node), "annotations": annotations } });
                nodes
                    .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(Error::api(format!("labelling node {node}")))?;
            }
        }
    }
    if let Some(endpoint) = endpoint {
        let mut addresses = Vec::new();
        if !endpoint.ip().is_unspecified() {
            addresses.push(serde_json::json!({ "type": "InternalIP", "address": endpoint.ip().to_string() }));
        }
        if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            addresses.push(serde_json::json!({ "type": "Hostname", "address": host.trim() }));
        }
        let patch = serde_json::json!({ "status": {
            "addresses": addresses,
            "daemonEndpoints": { "kubeletEndpoint": { "Port": endpoint.port() } },
        }});
        nodes
            .patch_status(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::api(format!("recording node {node}'s kubelet endpoint")))?;
    }
    heartbeat(client, node).await
}

/// Renews the Ready condition.
pub async fn heartbeat(client: &Client, node: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let current = nodes.get_status(node).await.map_err(Error::api(format!("getting node {node}")))?;
    let previous =
        current.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let mut conditions: Vec<NodeCondition> = current
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "Ready")
        .collect();
    conditions.push(ready_condition(previous));
    let status = NodeStatus { conditions: Some(conditions), ..Default::default() };
    let patch = serde_json::json!({ "status": status });
    nodes
        .patch_status(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::api(format!("updating node {node} status")))?;
    Ok(())
}

/// Keeps the Node's `status.volumesInUse` equal to the devices this agent needs or still has mounted
/// (kubelet's volume manager `GetVolumesInUse`, written with the node status). The attach/detach controller
/// detaches nothing listed there, and the agent mounts a controller-attached device only once it is listed.
/// Written when it changes (checked every 500 ms, or at once when the reconciler asks), and every minute.
pub async fn volumes_in_use_loop(manager: std::sync::Arc<crate::manager::Manager>, client: Client) {
    let nodes: Api<Node> = Api::all(client);
    let node = manager.config.node_name.clone();
    let mut written: Option<Vec<String>> = None;
    let mut last_write = tokio::time::Instant::now();
    loop {
        let in_use = manager.volumes_in_use();
        let stale = last_write.elapsed() >= std::time::Duration::from_secs(60);
        if written.as_ref() != Some(&in_use) || stale {
            let attached = serde_json::json!({ "status": { "volumesInUse": in_use } });
            match nodes.patch_status(&node, &PatchParams::default(), &Patch::Merge(&attached)).await {
                Ok(_) => {
                    tracing::debug!(volumes = ?in_use, "reported volumes in use");
                    *manager.reported_in_use.lock() = in_use.iter().cloned().collect();
                    written = Some(in_use);
                    last_write = tokio::time::Instant::now();
                    manager.reconcile_all();
                }
                Err(e) => tracing::warn!("updating node {node} volumesInUse: {e}"),
            }
        }
        tokio::select! {
            _ = manager.in_use_wake.notified() => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
        }
    }
}
