//! The resizer role (external-resizer): a bound claim of this driver whose requested size grew past its
//! capacity, in a class with `allowVolumeExpansion: true`, gets ControllerExpandVolume; the PV's
//! capacity follows; then either the claim's capacity (no node step needed) or the condition
//! `FileSystemResizePending` (kubelet finishes with NodeExpandVolume).
//!
//! A driver without the EXPAND_VOLUME controller capability gets a no-op controller expansion, as
//! external-resizer does: the PV is updated and the node step is required.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use kvol_csi::v1::{CapacityRange, ControllerExpandVolumeRequest};

use crate::capability::{self, Access};
use crate::error::{Error, Result};
use crate::run::Ctx;
use kvol_runtime::EventType;

/// What a claim needs from the resizer.
#[derive(Debug, PartialEq, Eq)]
struct Expansion {
    pv: String,
    requested: i64,
}

fn claim_object(claim: &PersistentVolumeClaim) -> String {
    format!("PersistentVolumeClaim {}/{}", claim.namespace().unwrap_or_default(), claim.name_any())
}

fn has_condition(claim: &PersistentVolumeClaim, type_: &str) -> bool {
    claim.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == type_))
}

/// Whether the claim needs a controller expansion, and to what; with `pv`, also that its volume is
/// this driver's.
fn needed(ctx: &Ctx, claim: &PersistentVolumeClaim, pv: Option<&PersistentVolume>) -> Result<Option<Expansion>> {
    let object = claim_object(claim);
    let invalid = |reason: String| Error::Invalid { object: object.clone(), reason };
    let Some(spec) = claim.spec.as_ref() else { return Ok(None) };
    let Some(pv_name) = spec.volume_name.as_ref().filter(|v| !v.is_empty()) else { return Ok(None) };
    let status = claim.status.clone().unwrap_or_default();
    if status.phase.as_deref() != Some("Bound") {
        return Ok(None);
    }
    let Some(requested) =
        capability::storage(spec.resources.as_ref().and_then(|r| r.requests.as_ref()), "spec.resources.requests")
            .map_err(&invalid)?
    else {
        return Ok(None);
    };
    let capacity = capability::storage(status.capacity.as_ref(), "status.capacity").map_err(&invalid)?.unwrap_or(0);
    if requested <= capacity {
        return Ok(None);
    }
    let allocated =
        capability::storage(status.allocated_resources.as_ref(), "status.allocatedResources").map_err(&invalid)?;
    if has_condition(claim, "FileSystemResizePending") && allocated.is_some_and(|a| a >= requested) {
        return Ok(None); // the controller part is done; the node finishes
    }
    if pv.is_some_and(|pv| pv.spec.as_ref().and_then(|s| s.csi.as_ref()).is_none_or(|c| c.driver != ctx.driver.name)) {
        return Ok(None);
    }
    let class = spec.storage_class_name.as_deref().and_then(|c| ctx.class(c));
    if class.as_ref().is_none_or(|c| c.allow_volume_expansion != Some(true)) {
        tracing::debug!(claim = %object, "class does not allow expansion");
        return Ok(None);
    }
    Ok(Some(Expansion { pv: pv_name.clone(), requested }))
}

/// Whether a watched claim should be queued for expansion.
pub fn wants_claim(ctx: &Ctx, claim: &PersistentVolumeClaim) -> bool {
    matches!(needed(ctx, claim, None), Ok(Some(_)))
}

/// Reconciles one claim (`ns/name`), read fresh with its PV.
pub async fn sync(ctx: Arc<Ctx>, key: String) {
    let read = async {
        let Some(claim) = ctx.get_claim(&key).await? else { return Ok(None) };
        let Some(Expansion { pv, .. }) = needed(&ctx, &claim, None)? else { return Ok(None) };
        let Some(pv) = ctx.get_volume(&pv).await? else { return Ok(None) };
        Ok::<_, Error>(needed(&ctx, &claim, Some(&pv))?.map(|e| (claim, pv, e)))
    };
    let (claim, pv, expansion) = match read.await {
        Ok(Some(found)) => found,
        Ok(None) => {
            ctx.resize_queue.forget(&key);
            return;
        }
        Err(e) => {
            let n = ctx.resize_queue.add_rate_limited(&key);
            tracing::warn!(claim = %key, error = %e, failures = n, "cannot decide on expansion; retrying");
            return;
        }
    };
    match expand(&ctx, &claim, &pv, &expansion).await {
        Ok(()) => ctx.resize_queue.forget(&key),
        Err(e) => {
            ctx.resizer_events.event(&claim, EventType::Warning, "VolumeResizeFailed", e.to_string());
            let status = serde_json::json!({
                "conditions": [{
                    "type": "ControllerResizeError", "status": "True",
                    "lastTransitionTime": Time(jiff::Timestamp::now()), "message": e.to_string(),
                }],
            });
            if let Err(pe) = patch_claim_status(&ctx, &claim, status).await {
                tracing::warn!(error = %pe, "could not record the resize error");
            }
            let n = ctx.resize_queue.add_rate_limited(&key);
            tracing::warn!(claim = %key, error = %e, failures = n, "expansion failed; retrying with backoff");
        }
    }
}

async fn patch_claim_status(ctx: &Ctx, claim: &PersistentVolumeClaim, status: serde_json::Value) -> Result<()> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
    api.patch_status(
        &claim.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({ "status": status })),
    )
    .await
    .map(|_| ())
    .map_err(|source| Error::Api { action: "updating the status of", object: claim_object(claim), source })
}

async fn expand(ctx: &Ctx, claim: &PersistentVolumeClaim, pv: &PersistentVolume, expansion: &Expansion) -> Result<()> {
    let object = claim_object(claim);
    let spec = pv.spec.clone().unwrap_or_default();
    let csi = spec.csi.clone().unwrap_or_default();
    let requested = capability::quantity(expansion.requested);
    let now = Time(jiff::Timestamp::now());
    patch_claim_status(
        ctx,
        claim,
        serde_json::json!({
            "conditions": [{ "type": "Resizing", "status": "True", "lastTransitionTime": now }],
            "allocatedResources": { "storage": requested },
            "allocatedResourceStatuses": { "storage": "ControllerResizeInProgress" },
        }),
    )
    .await?;
    ctx.resizer_events.event(
        claim,
        EventType::Normal,
        "Resizing",
        format!("External resizer is resizing volume {}", expansion.pv),
    );

    let (size, node_expansion_required) = if ctx.driver.caps.expand_volume {
        let secrets = match &csi.controller_expand_secret_ref {
            Some(r) => {
                let (name, ns) = (r.name.clone().unwrap_or_default(), r.namespace.clone().unwrap_or_default());
                let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
                let secret = api
                    .get_opt(&name)
                    .await
                    .map_err(|source| Error::Api { action: "reading", object: format!("Secret {ns}/{name}"), source })?
                    .ok_or_else(|| Error::NotFound { kind: "Secret", name: format!("{ns}/{name}") })?;
                secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| {
                        String::from_utf8(v.0).map(|v| (k.clone(), v)).map_err(|_| Error::Invalid {
                            object: format!("Secret {ns}/{name}"),
                            reason: format!("data[{k:?}] is not UTF-8"),
                        })
                    })
                    .collect::<Result<_>>()?
            }
            None => Default::default(),
        };
        let access = Access::new(spec.volume_mode.as_deref(), csi.fs_type.as_deref(), spec.mount_options.as_ref());
        let capability = capability::for_publish(
            spec.access_modes.as_deref().unwrap_or_default(),
            &access,
            ctx.driver.caps.single_node_multi_writer,
        )
        .ok();
        let request = ControllerExpandVolumeRequest {
            volume_id: csi.volume_handle.clone(),
            capacity_range: Some(CapacityRange { required_bytes: expansion.requested, limit_bytes: 0 }),
            secrets,
            volume_capability: capability,
        };
        let (bytes, node) = ctx.driver.expand(&object, request).await?;
        let bytes = if bytes == 0 { expansion.requested } else { bytes };
        if bytes < expansion.requested {
            return Err(Error::BadReply {
                call: "ControllerExpandVolume",
                object,
                reason: format!("capacity_bytes {bytes} is less than the requested {}", expansion.requested),
            });
        }
        (bytes, node)
    } else {
        (expansion.requested, true)
    };

    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let patch = serde_json::json!({ "spec": { "capacity": { "storage": capability::quantity(size) } } });
    pvs.patch(&expansion.pv, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(|source| Error::Api {
        action: "updating the capacity of",
        object: format!("PersistentVolume {}", expansion.pv),
        source,
    })?;
    let now = Time(jiff::Timestamp::now());
    let status = if node_expansion_required {
        serde_json::json!({
            "conditions": [{
                "type": "FileSystemResizePending", "status": "True", "lastTransitionTime": now,
                "message": "Waiting for user to (re-)start a pod to finish file system resize of volume on node.",
            }],
            "allocatedResources": { "storage": requested },
            "allocatedResourceStatuses": { "storage": "NodeResizePending" },
        })
    } else {
        serde_json::json!({
            "capacity": { "storage": capability::quantity(size) },
            "conditions": [],
            "allocatedResources": { "storage": requested },
            "allocatedResourceStatuses": null,
        })
    };
    patch_claim_status(ctx, claim, status).await?;
    tracing::info!(claim = %object, pv = %expansion.pv, size, node_expansion_required, "controller expansion done");
    ctx.resizer_events.event(claim, EventType::Normal, "VolumeResizeSuccessful", "Resize volume succeeded");
    Ok(())
}
