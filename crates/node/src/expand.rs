//! Node-side volume expansion (kubelet's `NodeExpandVolume` step of the reconciler): once the controller
//! has grown a volume and marked its claim `FileSystemResizePending`, the agent grows the file system of
//! the mounted volume through its plugin, then records the new size in the claim's `status.capacity` and
//! clears the condition, as kubelet's `MarkFSResizeFinished` does.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use kvol_volume::{PodRef, VolumePlugin, VolumeSpec};

use crate::actual::MountState;
use crate::manager::{Manager, PodEvent};

/// kubelet's condition on a claim waiting for the node step.
pub const FS_RESIZE_PENDING: &str = "FileSystemResizePending";

/// One mounted volume that could be grown on this node.
struct Candidate {
    pod: PodRef,
    spec: VolumeSpec,
    plugin: Arc<dyn VolumePlugin>,
    volume_path: PathBuf,
    device_mount_path: Option<PathBuf>,
}

/// Mounted persistent volumes whose plugin can grow them on the node, one per PV, by `(namespace, claim)`.
fn candidates(manager: &Manager) -> BTreeMap<(String, String), Candidate> {
    let desired = manager.desired.lock();
    let actual = manager.actual.lock();
    let mut out = BTreeMap::new();
    for pod in desired.pods() {
        for v in pod.volumes.values() {
            let VolumeSpec::Persistent { pv, .. } = &v.spec else { continue };
            if v.plugin.as_node_expandable().is_none() {
                continue;
            }
            let Some(mounted) = actual.get(&v.id).filter(|a| a.state == MountState::Mounted) else { continue };
            let Some(claim) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else { continue };
            let key = (claim.namespace.clone().unwrap_or_default(), claim.name.clone().unwrap_or_default());
            let device_mount_path = v
                .device
                .as_ref()
                .and_then(|d| actual.device(&d.unique_name))
                .map(|d| d.device_mount_path.clone())
                .filter(|p| !p.as_os_str().is_empty());
            out.entry(key).or_insert_with(|| Candidate {
                pod: pod.pod_ref.clone(),
                spec: v.spec.clone(),
                plugin: Arc::clone(&v.plugin),
                volume_path: mounted.path.clone(),
                device_mount_path,
            });
        }
    }
    out
}

fn storage_bytes(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Option<i64> {
    let q = q?;
    kvol_api::quantity::parse(q).ok().and_then(|v| i64::try_from(v.value()).ok())
}

/// Whether a claim waits for the node to finish its expansion.
fn resize_pending(claim: &PersistentVolumeClaim) -> bool {
    let conditions = claim.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    conditions.iter().any(|c| c.type_ == FS_RESIZE_PENDING)
}

/// Finishes pending expansions of mounted volumes. A watch of the claims keeps the set of those waiting
/// for a node (`FileSystemResizePending`), so nothing is read from the API server while none waits; every
/// `period` the waiting ones that have a mounted volume here are grown (the claim may have been waiting
/// before its pod came to this node).
pub async fn expansion_loop(manager: Arc<Manager>, client: Client, period: Duration) {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let stream = watcher(claims, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut pending: HashSet<(String, String)> = HashSet::new();
    let mut listing: HashSet<(String, String)> = HashSet::new();
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(watcher::Event::Init)) => listing.clear(),
                Some(Ok(watcher::Event::InitApply(c))) => {
                    if resize_pending(&c) {
                        listing.insert(key_of(&c));
                    }
                }
                Some(Ok(watcher::Event::InitDone)) => pending = std::mem::take(&mut listing),
                Some(Ok(watcher::Event::Apply(c))) => {
                    if resize_pending(&c) {
                        pending.insert(key_of(&c));
                    } else {
                        pending.remove(&key_of(&c));
                    }
                }
                Some(Ok(watcher::Event::Delete(c))) => {
                    pending.remove(&key_of(&c));
                }
                Some(Err(e)) => tracing::warn!("claim watch: {e}"),
                None => return,
            },
            _ = tick.tick() => {
                if pending.is_empty() {
                    continue;
                }
                for (key, candidate) in candidates(&manager) {
                    if !pending.contains(&key) {
                        continue;
                    }
                    let (namespace, claim) = key;
                    if let Err(message) = expand_one(&manager, &client, &namespace, &claim, candidate).await {
                        tracing::warn!(claim = %format!("{namespace}/{claim}"), "{message}");
                    }
                }
            }
        }
    }
}

fn key_of(claim: &PersistentVolumeClaim) -> (String, String) {
    (claim.metadata.namespace.clone().unwrap_or_default(), claim.metadata.name.clone().unwrap_or_default())
}

async fn expand_one(
    manager: &Arc<Manager>,
    client: &Client,
    namespace: &str,
    claim_name: &str,
    c: Candidate,
) -> Result<(), String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let Some(claim) = claims.get_opt(claim_name).await.map_err(|e| format!("reading the claim: {e}"))? else {
        return Ok(());
    };
    if !resize_pending(&claim) {
        return Ok(());
    }
    let status = claim.status.clone().unwrap_or_default();
    let pv_name = claim.spec.as_ref().and_then(|s| s.volume_name.clone()).unwrap_or_default();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pvs.get(&pv_name).await.map_err(|e| format!("reading PV {pv_name}: {e}"))?;
    let new_size = storage_bytes(pv.spec.as_ref().and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage")))
        .ok_or_else(|| format!("PV {pv_name} has no storage capacity"))?;
    let old_size = storage_bytes(status.capacity.as_ref().and_then(|c| c.get("storage"))).unwrap_or(0);
    // The PV as it is now carries the new capacity the plugin passes on.
    let spec = match c.spec {
        VolumeSpec::Persistent { read_only, .. } => VolumeSpec::Persistent { pv: Box::new(pv.clone()), read_only },
        other => other,
    };
    let host = Arc::clone(&manager.host);
    let plugin = Arc::clone(&c.plugin);
    let (volume_path, device_mount_path) = (c.volume_path.clone(), c.device_mount_path.clone());
    let result = tokio::task::spawn_blocking(move || {
        let expandable = plugin.as_node_expandable().expect("candidates are expandable");
        expandable.node_expand(&spec, &volume_path, device_mount_path.as_deref(), new_size, old_size, host.as_ref())
    })
    .await
    .map_err(|e| format!("node expansion task: {e}"))?;
    let node = &manager.config.node_name;
    if let Err(e) = result {
        let message = format!("MountVolume.NodeExpandVolume failed for volume {pv_name:?} : {e}");
        manager.event(PodEvent {
            pod: c.pod,
            type_: "Warning",
            reason: "VolumeResizeFailed",
            message: message.clone(),
        });
        return Err(message);
    }
    let conditions: Vec<_> = status
        .conditions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != FS_RESIZE_PENDING && c.type_ != "Resizing")
        .collect();
    let capacity = pv.spec.as_ref().and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage")).cloned();
    let patch = serde_json::json!({
        "status": {
            "capacity": { "storage": capacity },
            "conditions": conditions,
            "allocatedResourceStatuses": null,
        }
    });
    claims
        .patch_status(claim_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| format!("recording the new capacity on the claim: {e}"))?;
    tracing::info!(claim = %format!("{namespace}/{claim_name}"), volume = %pv_name, new_size, "NodeExpandVolume succeeded");
    manager.event(PodEvent {
        pod: c.pod,
        type_: "Normal",
        reason: "FileSystemResizeSuccessful",
        message: format!("MountVolume.NodeExpandVolume succeeded for volume {pv_name:?} {node}"),
    });
    Ok(())
}
