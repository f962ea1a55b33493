//! The expand controller for volumes the controller grows itself (Kubernetes' `expand_controller.go` for
//! in-tree plugins): FlexVolume PVs, through the driver's `expandvolume`. A bound claim asking for more than
//! its capacity, in a class with `allowVolumeExpansion`, gets its volume grown; the PV's capacity follows;
//! then the claim either gets the new capacity or, when the driver needs its file system grown on the node
//! (`requiresFSResize`, the default), the `FileSystemResizePending` condition, which the node agent finishes
//! with `expandfs`. CSI volumes are the resizer role's.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use kvol_volume::{PluginRegistry, VolumeSpec};

use kvol_runtime::{EventType, Recorder};

/// The component name on the expand controller's events.
pub const EXPAND_CONTROLLER: &str = "volume_expand";

/// What a claim needs: its PV, and the requested and current sizes in bytes.
#[derive(Debug, PartialEq)]
struct Expansion {
    pv: String,
    requested: i64,
    capacity: i64,
    /// The request as the user wrote it (`600Mi`), which the PV and the claim get when the plugin grew the
    /// volume to exactly that.
    requested_quantity: Quantity,
}

fn bytes(q: Option<&Quantity>) -> Option<i64> {
    kvol_api::quantity::parse(q?).ok().and_then(|v| i64::try_from(v.value()).ok())
}

fn storage(map: Option<&std::collections::BTreeMap<String, Quantity>>) -> Option<i64> {
    bytes(map.and_then(|m| m.get("storage")))
}

/// Whether `claim` asks to be grown: bound, requesting more than its capacity, and not already waiting for
/// the node to finish an expansion to that size.
fn needed(claim: &PersistentVolumeClaim) -> Option<Expansion> {
    let spec = claim.spec.as_ref()?;
    let status = claim.status.as_ref()?;
    if status.phase.as_deref() != Some("Bound") {
        return None;
    }
    let pv = spec.volume_name.clone().filter(|v| !v.is_empty())?;
    let requested_quantity = spec.resources.as_ref().and_then(|r| r.requests.as_ref())?.get("storage")?.clone();
    let requested = bytes(Some(&requested_quantity))?;
    let capacity = storage(status.capacity.as_ref()).unwrap_or(0);
    if requested <= capacity {
        return None;
    }
    let pending = status.conditions.as_deref().unwrap_or_default().iter().any(|c| c.type_ == "FileSystemResizePending");
    if pending && storage(status.allocated_resources.as_ref()).is_some_and(|a| a >= requested) {
        return None;
    }
    Some(Expansion { pv, requested, capacity, requested_quantity })
}

/// Runs until `shutdown`: claims are looked at when they change and every 30 s. `root` is the node root
/// the plugins' per-node paths are under (FlexVolume passes its device mount path to `expandvolume`).
pub async fn run_volume_expander(
    client: Client,
    registry: PluginRegistry,
    root: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> crate::Result<()> {
    let recorder = Recorder::start(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let stream = watcher(claims.clone(), watcher::Config::default()).default_backoff().applied_objects();
    let mut stream = std::pin::pin!(stream);
    let mut resync = tokio::time::interval(Duration::from_secs(30));
    tokio::pin!(shutdown);
    loop {
        let batch: Vec<PersistentVolumeClaim> = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            next = stream.next() => match next {
                Some(Ok(claim)) => vec![claim],
                Some(Err(e)) => { tracing::warn!("claim watch: {e}"); continue }
                None => return Ok(()),
            },
            _ = resync.tick() => claims.list(&Default::default()).await.map(|l| l.items).unwrap_or_default(),
        };
        for claim in batch {
            if let Some(expansion) = needed(&claim) {
                if let Err(message) = expand(&client, &registry, &root, &recorder, &claim, expansion).await {
                    tracing::warn!(claim = %format!("{}/{}", claim.namespace().unwrap_or_default(), claim.name_any()), "{message}");
                }
            }
        }
    }
}

async fn expand(
    client: &Client,
    registry: &PluginRegistry,
    root: &std::path::Path,
    recorder: &Recorder,
    claim: &PersistentVolumeClaim,
    e: Expansion,
) -> Result<(), String> {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let Some(pv) = pvs.get_opt(&e.pv).await.map_err(|err| format!("reading PV {}: {err}", e.pv))? else {
        return Ok(());
    };
    let spec = VolumeSpec::Persistent { pv: Box::new(pv.clone()), read_only: false };
    // Only volumes whose plugin here grows them: the others (CSI) are someone else's.
    let Ok(plugin) = registry.find_by_spec(&spec) else { return Ok(()) };
    if plugin.as_expandable().is_none() {
        return Ok(());
    }
    let class_name = claim.spec.as_ref().and_then(|s| s.storage_class_name.clone()).unwrap_or_default();
    let classes: Api<StorageClass> = Api::all(client.clone());
    let allowed = match classes.get_opt(&class_name).await {
        Ok(Some(class)) => class.allow_volume_expansion == Some(true),
        _ => false,
    };
    if !allowed {
        return Ok(());
    }
    let (requested, capacity, root) = (e.requested, e.capacity, root.to_path_buf());
    let grow = tokio::task::spawn_blocking(move || {
        let expandable = plugin.as_expandable().expect("checked above");
        expandable.expand_volume(&spec, requested, capacity, &root).map(|size| (size, expandable.requires_fs_resize()))
    })
    .await
    .map_err(|err| format!("expansion task: {err}"))?;
    let (size, node_step) = match grow {
        Ok(done) => done,
        Err(err) => {
            let message = format!("error expanding volume {:?} of plugin {:?}: {err}", e.pv, spec_plugin(&pv));
            recorder.event(claim, EventType::Warning, "VolumeResizeFailed", message.clone(), EXPAND_CONTROLLER);
            return Err(message);
        }
    };
    let new_size = if size == e.requested { e.requested_quantity.clone() } else { Quantity(size.to_string()) };
    let pv_patch = serde_json::json!({ "spec": { "capacity": { "storage": new_size } } });
    pvs.patch(&e.pv, &PatchParams::default(), &Patch::Merge(&pv_patch))
        .await
        .map_err(|err| format!("recording the new capacity on PV {}: {err}", e.pv))?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &claim.namespace().unwrap_or_default());
    let status = if node_step {
        serde_json::json!({ "status": {
            "conditions": [{
                "type": "FileSystemResizePending", "status": "True",
                "lastTransitionTime": jiff::Timestamp::now().to_string(),
                "message": "Waiting for user to (re-)start a pod to finish file system resize of volume on node.",
            }],
            "allocatedResources": { "storage": new_size },
        }})
    } else {
        serde_json::json!({ "status": { "capacity": { "storage": new_size }, "conditions": [] } })
    };
    claims
        .patch_status(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(|err| format!("updating the claim's status: {err}"))?;
    recorder.event(
        claim,
        EventType::Normal,
        "VolumeResizeSuccessful",
        format!("ExpandVolume succeeded for volume {}/{}", claim.namespace().unwrap_or_default(), claim.name_any()),
        EXPAND_CONTROLLER,
    );
    Ok(())
}

fn spec_plugin(pv: &PersistentVolume) -> String {
    pv.spec
        .as_ref()
        .and_then(|s| s.flex_volume.as_ref())
        .map(|f| format!("flexvolume-{}", f.driver))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimCondition, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
        VolumeResourceRequirements,
    };

    fn claim(requested: &str, capacity: &str, pending_at: Option<&str>) -> PersistentVolumeClaim {
        let q = |s: &str| [("storage".to_string(), Quantity(s.into()))].into();
        PersistentVolumeClaim {
            spec: Some(PersistentVolumeClaimSpec {
                volume_name: Some("pv1".into()),
                resources: Some(VolumeResourceRequirements { requests: Some(q(requested)), ..Default::default() }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                phase: Some("Bound".into()),
                capacity: Some(q(capacity)),
                allocated_resources: pending_at.map(q),
                conditions: pending_at.map(|_| {
                    vec![PersistentVolumeClaimCondition {
                        type_: "FileSystemResizePending".into(),
                        status: "True".into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_claim_asking_for_more_than_its_capacity_needs_expanding_once() {
        assert_eq!(
            needed(&claim("2Gi", "1Gi", None)),
            Some(Expansion {
                pv: "pv1".into(),
                requested: 2 << 30,
                capacity: 1 << 30,
                requested_quantity: Quantity("2Gi".into())
            })
        );
        assert_eq!(needed(&claim("1Gi", "1Gi", None)), None, "nothing to grow");
        assert_eq!(needed(&claim("2Gi", "1Gi", Some("2Gi"))), None, "grown already, the node's turn");
        assert!(needed(&claim("3Gi", "1Gi", Some("2Gi"))).is_some(), "asked for more again");
    }
}
