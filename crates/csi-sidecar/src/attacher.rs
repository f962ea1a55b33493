//! The attacher role (external-attacher): ControllerPublishVolume for each VolumeAttachment of this
//! driver, recorded in `status.attached` / `attachmentMetadata` / `attachError`; ControllerUnpublish
//! when it is deleted, then its finalizer goes.
//!
//! Drivers without PUBLISH_UNPUBLISH_VOLUME: external-attacher's "trivial handler" marks such
//! attachments attached without calling the driver (and detaches them the same way); so does this role.
//! (Normally a CSIDriver with `attachRequired: false` makes Kubernetes skip VolumeAttachments entirely.)
//!
//! The PV gets the same finalizer while attached, so it cannot disappear before the volume is detached.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeSpec, Secret, SecretReference};
use k8s_openapi::api::storage::v1::{CSINode, VolumeAttachment};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use kvol_api::names::ANN_CSI_NODE_ID;
use kvol_csi::v1::{ControllerPublishVolumeRequest, ControllerUnpublishVolumeRequest};

use crate::capability::{self, Access};
use crate::error::{Error, Result};
use crate::run::Ctx;
use kvol_runtime::EventType;

/// `external-attacher/<driver>` with every character other than `[A-Za-z0-9-]` replaced by `-` (and an
/// `X` appended if that leaves a trailing `-`), exactly as external-attacher names its finalizer.
pub fn finalizer(driver: &str) -> String {
    let mut name: String =
        driver.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    if name.ends_with('-') {
        name.push('X');
    }
    format!("external-attacher/{name}")
}

/// Reconciles one key: a VolumeAttachment name, or `pv/<name>` for a PV being deleted.
pub async fn sync(ctx: Arc<Ctx>, key: String) {
    if let Some(pv) = key.strip_prefix("pv/") {
        if let Err(e) = release_volume(&ctx, pv).await {
            let n = ctx.attach_queue.add_rate_limited(&key);
            tracing::warn!(%key, error = %e, failures = n, "releasing the PV failed; retrying");
        }
        return;
    }
    let va = match ctx.get_attachment(&key).await {
        Ok(Some(va)) if va.spec.attacher == ctx.driver.name => va,
        Ok(_) => {
            ctx.attach_queue.forget(&key);
            return;
        }
        Err(e) => {
            let n = ctx.attach_queue.add_rate_limited(&key);
            tracing::warn!(attachment = %key, error = %e, failures = n, "cannot read the attachment; retrying");
            return;
        }
    };
    let result =
        if va.metadata.deletion_timestamp.is_some() { detach(&ctx, &va).await } else { attach(&ctx, &va).await };
    match result {
        Ok(()) => ctx.attach_queue.forget(&key),
        Err(e) => {
            let n = ctx.attach_queue.add_rate_limited(&key);
            tracing::warn!(attachment = %key, error = %e, failures = n, "retrying with backoff");
        }
    }
}

fn va_object(va: &VolumeAttachment) -> String {
    format!("VolumeAttachment {}", va.name_any())
}

async fn patch_status(ctx: &Ctx, va: &VolumeAttachment, status: serde_json::Value) -> Result<()> {
    let api: Api<VolumeAttachment> = Api::all(ctx.client.clone());
    api.patch_status(&va.name_any(), &PatchParams::default(), &Patch::Merge(&serde_json::json!({ "status": status })))
        .await
        .map(|_| ())
        .map_err(|source| Error::Api { action: "updating the status of", object: va_object(va), source })
}

/// Adds `finalizer` to an object's finalizers with a merge patch guarded by its resourceVersion.
async fn add_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str, object: String) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if obj.finalizers().iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let mut all = obj.finalizers().to_vec();
    all.push(finalizer.to_owned());
    let patch = serde_json::json!({ "metadata": { "finalizers": all, "resourceVersion": obj.resource_version() } });
    api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|source| Error::Api { action: "adding a finalizer to", object, source })
}

async fn remove_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str, object: String) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if !obj.finalizers().iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let rest: Vec<&String> = obj.finalizers().iter().filter(|f| *f != finalizer).collect();
    let patch = serde_json::json!({ "metadata": { "finalizers": rest, "resourceVersion": obj.resource_version() } });
    match api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(e) if crate::error::api_status(&e) == Some(404) => Ok(()),
        Err(source) => Err(Error::Api { action: "removing a finalizer from", object, source }),
    }
}

/// The driver's id for `node`: the CSINode entry, else the node's `csi.volume.kubernetes.io/nodeid` map.
async fn node_id(ctx: &Ctx, node: &str) -> Result<String> {
    let csinodes: Api<CSINode> = Api::all(ctx.client.clone());
    if let Some(csinode) = csinodes.get_opt(node).await.map_err(|source| Error::Api {
        action: "reading",
        object: format!("CSINode {node}"),
        source,
    })? {
        if let Some(d) = csinode.spec.drivers.iter().find(|d| d.name == ctx.driver.name) {
            return Ok(d.node_id.clone());
        }
    }
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let n = nodes
        .get_opt(node)
        .await
        .map_err(|source| Error::Api { action: "reading", object: format!("Node {node}"), source })?
        .ok_or_else(|| Error::NotFound { kind: "Node", name: node.to_owned() })?;
    let ids: HashMap<String, String> = match n.annotations().get(ANN_CSI_NODE_ID) {
        Some(json) => serde_json::from_str(json).map_err(|e| Error::Invalid {
            object: format!("Node {node}"),
            reason: format!("annotation {ANN_CSI_NODE_ID} is not a JSON map of driver to node id: {e}"),
        })?,
        None => HashMap::new(),
    };
    ids.get(&ctx.driver.name).cloned().ok_or_else(|| Error::Invalid {
        object: format!("Node {node}"),
        reason: format!(
            "has no node id for driver {} (no CSINode entry, no {ANN_CSI_NODE_ID} annotation)",
            ctx.driver.name
        ),
    })
}

async fn secrets(ctx: &Ctx, reference: Option<&SecretReference>) -> Result<HashMap<String, String>> {
    let Some(r) = reference else { return Ok(HashMap::new()) };
    let (name, ns) = (r.name.clone().unwrap_or_default(), r.namespace.clone().unwrap_or_default());
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = api
        .get_opt(&name)
        .await
        .map_err(|source| Error::Api { action: "reading", object: format!("Secret {ns}/{name}"), source })?
        .ok_or_else(|| Error::NotFound { kind: "Secret", name: format!("{ns}/{name}") })?;
    let mut out = HashMap::new();
    for (k, v) in secret.data.unwrap_or_default() {
        out.insert(
            k.clone(),
            String::from_utf8(v.0).map_err(|_| Error::Invalid {
                object: format!("Secret {ns}/{name}"),
                reason: format!("data[{k:?}] is not UTF-8"),
            })?,
        );
    }
    Ok(out)
}

/// The PV spec an attachment is for (a PV by name, or an inline spec from migration).
async fn pv_spec(ctx: &Ctx, va: &VolumeAttachment) -> Result<(Option<PersistentVolume>, PersistentVolumeSpec)> {
    if let Some(name) = &va.spec.source.persistent_volume_name {
        let pv = ctx
            .get_volume(name)
            .await?
            .ok_or_else(|| Error::NotFound { kind: "PersistentVolume", name: name.clone() })?;
        let spec = pv.spec.clone().unwrap_or_default();
        return Ok((Some(pv), spec));
    }
    if let Some(inline) = &va.spec.source.inline_volume_spec {
        return Ok((None, inline.clone()));
    }
    Err(Error::Invalid {
        object: va_object(va),
        reason: "spec.source names no PersistentVolume and no inline spec".into(),
    })
}

/// Whether a watched PV is being deleted while it still carries this attacher's finalizer.
pub fn wants_volume(driver: &str, pv: &PersistentVolume) -> bool {
    pv.metadata.deletion_timestamp.is_some() && pv.finalizers().contains(&finalizer(driver))
}

async fn attach(ctx: &Ctx, va: &VolumeAttachment) -> Result<()> {
    let fin = finalizer(&ctx.driver.name);
    let api: Api<VolumeAttachment> = Api::all(ctx.client.clone());
    if va.status.as_ref().is_some_and(|s| s.attached) {
        return add_finalizer(&api, va, &fin, va_object(va)).await;
    }
    let outcome = async {
        let (pv, spec) = pv_spec(ctx, va).await?;
        if let Some(pv) = &pv {
            add_finalizer(
                &Api::<PersistentVolume>::all(ctx.client.clone()),
                pv,
                &fin,
                format!("PersistentVolume {}", pv.name_any()),
            )
            .await?;
        }
        add_finalizer(&api, va, &fin, va_object(va)).await?;
        if !ctx.driver.caps.publish_unpublish_volume {
            return Ok(HashMap::new());
        }
        let csi = spec.csi.as_ref().ok_or_else(|| Error::Invalid {
            object: va_object(va),
            reason: "the volume has no spec.csi source".into(),
        })?;
        let access = Access::new(spec.volume_mode.as_deref(), csi.fs_type.as_deref(), spec.mount_options.as_ref());
        let capability = capability::for_publish(
            spec.access_modes.as_deref().unwrap_or_default(),
            &access,
            ctx.driver.caps.single_node_multi_writer,
        )
        .map_err(|reason| Error::Invalid { object: va_object(va), reason })?;
        let request = ControllerPublishVolumeRequest {
            volume_id: csi.volume_handle.clone(),
            node_id: node_id(ctx, &va.spec.node_name).await?,
            volume_capability: Some(capability),
            readonly: csi.read_only.unwrap_or(false),
            secrets: secrets(ctx, csi.controller_publish_secret_ref.as_ref()).await?,
            volume_context: csi.volume_attributes.clone().unwrap_or_default().into_iter().collect(),
        };
        ctx.driver.publish(&va_object(va), request).await
    }
    .await;
    match outcome {
        Ok(context) => {
            let metadata: BTreeMap<String, String> = context.into_iter().collect();
            patch_status(
                ctx,
                va,
                serde_json::json!({ "attached": true, "attachmentMetadata": metadata, "attachError": null }),
            )
            .await?;
            tracing::info!(attachment = %va.name_any(), node = %va.spec.node_name, "attached");
            Ok(())
        }
        Err(e) => {
            let message = e.to_string();
            ctx.attacher_events.event(va, EventType::Warning, "FailedAttach", message.clone());
            let status = serde_json::json!({
                "attached": false,
                "attachError": { "message": message, "time": Time(jiff::Timestamp::now()) },
            });
            if let Err(pe) = patch_status(ctx, va, status).await {
                tracing::warn!(error = %pe, "could not record attachError");
            }
            Err(e)
        }
    }
}

async fn detach(ctx: &Ctx, va: &VolumeAttachment) -> Result<()> {
    let fin = finalizer(&ctx.driver.name);
    if !va.finalizers().contains(&fin) {
        return Ok(());
    }
    let outcome = async {
        if !ctx.driver.caps.publish_unpublish_volume {
            return Ok(());
        }
        let (_, spec) = match pv_spec(ctx, va).await {
            Ok(found) => found,
            // Without the PV there is nothing to unpublish with; external-attacher refuses too.
            Err(e) => return Err(e),
        };
        let Some(csi) = spec.csi.as_ref() else { return Ok(()) };
        let node = match node_id(ctx, &va.spec.node_name).await {
            Ok(id) => id,
            // The node is gone: unpublishing from "all nodes" is what the spec offers.
            Err(Error::NotFound { kind: "Node", .. }) => String::new(),
            Err(e) => return Err(e),
        };
        let request = ControllerUnpublishVolumeRequest {
            volume_id: csi.volume_handle.clone(),
            node_id: node,
            secrets: secrets(ctx, csi.controller_publish_secret_ref.as_ref()).await?,
        };
        ctx.driver.unpublish(&va_object(va), request).await
    }
    .await;
    match outcome {
        Ok(()) => {
            let api: Api<VolumeAttachment> = Api::all(ctx.client.clone());
            let status =
                serde_json::json!({ "status": { "attached": false, "attachmentMetadata": null, "detachError": null } });
            // The finalizer comes off the object the status write returned: its resourceVersion is current.
            match api.patch_status(&va.name_any(), &PatchParams::default(), &Patch::Merge(&status)).await {
                Ok(current) => remove_finalizer(&api, &current, &fin, va_object(va)).await?,
                Err(e) if crate::error::api_status(&e) == Some(404) => {}
                Err(source) => {
                    return Err(Error::Api { action: "updating the status of", object: va_object(va), source })
                }
            }
            tracing::info!(attachment = %va.name_any(), "detached");
            if let Some(pv) = &va.spec.source.persistent_volume_name {
                ctx.attach_queue.add(format!("pv/{pv}"));
            }
            Ok(())
        }
        Err(e) => {
            let message = e.to_string();
            ctx.attacher_events.event(va, EventType::Warning, "FailedDetach", message.clone());
            let status =
                serde_json::json!({ "detachError": { "message": message, "time": Time(jiff::Timestamp::now()) } });
            if let Err(pe) = patch_status(ctx, va, status).await {
                tracing::warn!(error = %pe, "could not record detachError");
            }
            Err(e)
        }
    }
}

/// Drops the attacher finalizer from a PV being deleted once no attachment of this driver uses it.
async fn release_volume(ctx: &Ctx, name: &str) -> Result<()> {
    let Some(pv) = ctx.get_volume(name).await? else { return Ok(()) };
    let fin = finalizer(&ctx.driver.name);
    if pv.metadata.deletion_timestamp.is_none() {
        return Ok(());
    }
    let attachments: Api<VolumeAttachment> = Api::all(ctx.client.clone());
    let list = attachments.list(&kube::api::ListParams::default()).await.map_err(|source| Error::Api {
        action: "listing",
        object: "VolumeAttachments".into(),
        source,
    })?;
    let in_use = list.items.iter().any(|va| {
        va.spec.attacher == ctx.driver.name && va.spec.source.persistent_volume_name.as_deref() == Some(name)
    });
    if in_use {
        return Ok(()); // the attachment's detach re-queues this PV
    }
    remove_finalizer(&Api::<PersistentVolume>::all(ctx.client.clone()), &pv, &fin, format!("PersistentVolume {name}"))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finalizer_names_match_external_attacher() {
        assert_eq!(finalizer("csi.kvol.io"), "external-attacher/csi-kvol-io");
        assert_eq!(finalizer("hostpath.csi.k8s.io"), "external-attacher/hostpath-csi-k8s-io");
        assert_eq!(finalizer("vendor/x."), "external-attacher/vendor-x-X");
    }
}
