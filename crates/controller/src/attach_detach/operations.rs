//! The attach and detach operations (`operation_generator.go` `GenerateAttachVolumeFunc` /
//! `GenerateDetachVolumeFunc`, with `csi_attacher.go` for CSI). Each runs as its own task and reports an
//! [`Outcome`]; the controller alone changes its state from those.
//!
//! A CSI attach creates (or adopts) the VolumeAttachment `csi-<sha256(handle+driver+node)>` and reports
//! `Attached` once the driver's attacher has set `status.attached`; until then it reports `AttachWaiting`
//! and the controller looks again when the VolumeAttachment changes (kube's attacher polls it for up to two
//! minutes instead, holding a goroutine). A CSI detach deletes the VolumeAttachment and is done once it is
//! gone; the attacher's finalizer keeps it while the driver unpublishes. FlexVolume attach and detach call
//! the plugin on the blocking pool, since a driver call is a process run.

use super::error::OperationError;
use super::names;
use super::world::World;
use k8s_openapi::api::storage::v1::{VolumeAttachment, VolumeAttachmentSource, VolumeAttachmentSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use kvol_volume::{PluginRegistry, VolumePlugin, VolumeSpec};
use std::sync::Arc;

/// How an operation ended.
#[derive(Debug)]
pub enum Outcome {
    /// Attached; the device path for the node's status.
    Attached {
        /// As the plugin reported it ("" for CSI).
        device_path: String,
    },
    /// The VolumeAttachment exists but its attacher has not attached it yet.
    AttachWaiting,
    /// The attach failed.
    AttachFailed(OperationError),
    /// Detached (the VolumeAttachment is gone).
    Detached,
    /// The VolumeAttachment is being deleted; its attacher has not finished.
    DetachWaiting,
    /// The detach failed.
    DetachFailed(OperationError),
    /// A check found an attachment the driver no longer has.
    NotAttached,
    /// A check found nothing wrong (or could not tell).
    Verified,
}

/// Attaches a CSI volume: makes sure its VolumeAttachment exists and reads whether it is attached.
pub async fn attach_csi(
    client: Client,
    world: Arc<World>,
    driver: &str,
    handle: &str,
    pv: &str,
    node: &str,
) -> Outcome {
    let name = names::attachment_name(handle, driver, node);
    let api: Api<VolumeAttachment> = Api::all(client);
    let attachment = match world.attachments.get(&name) {
        Some(existing) => existing,
        None => {
            let object = VolumeAttachment {
                metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
                spec: VolumeAttachmentSpec {
                    attacher: driver.to_string(),
                    node_name: node.to_string(),
                    source: VolumeAttachmentSource {
                        persistent_volume_name: Some(pv.to_string()),
                        ..Default::default()
                    },
                },
                status: None,
            };
            let written = match api.create(&PostParams::default(), &object).await {
                Ok(created) => {
                    tracing::info!(attachment = %name, %driver, %handle, %node, "created VolumeAttachment");
                    created
                }
                Err(kube::Error::Api(s)) if s.code == 409 => match api.get_opt(&name).await {
                    Ok(Some(existing)) => existing,
                    Ok(None) => return Outcome::AttachWaiting, // deleted in between: created on the next try
                    Err(source) => return Outcome::AttachFailed(api_error("get", &name, source)),
                },
                Err(source) => return Outcome::AttachFailed(api_error("create", &name, source)),
            };
            world.attachments.apply(written.clone());
            Arc::new(written)
        }
    };
    attach_status(&attachment)
}

/// Whether a VolumeAttachment is attached (`verifyAttachmentStatus`).
pub fn attach_status(attachment: &VolumeAttachment) -> Outcome {
    if attachment.metadata.deletion_timestamp.is_some() {
        return Outcome::AttachFailed(OperationError::AttachmentDeleting);
    }
    let status = attachment.status.as_ref();
    if status.is_some_and(|s| s.attached) {
        return Outcome::Attached { device_path: String::new() };
    }
    if let Some(error) = status.and_then(|s| s.attach_error.as_ref()) {
        return Outcome::AttachFailed(OperationError::Attacher(error.message.clone().unwrap_or_default()));
    }
    Outcome::AttachWaiting
}

/// Detaches a CSI volume: deletes its VolumeAttachment (already gone is success) and reports whether it is
/// gone yet.
pub async fn detach_csi(client: Client, world: Arc<World>, unique: &str, node: &str) -> Outcome {
    let Some((driver, handle)) = names::split_csi_unique_name(unique) else {
        return Outcome::DetachFailed(OperationError::BadUniqueName(unique.to_string()));
    };
    let name = names::attachment_name(handle, driver, node);
    if let Some(attachment) = world.attachments.get(&name) {
        if attachment.metadata.deletion_timestamp.is_some() {
            return detach_status(&attachment); // deleted already; waiting for its finalizer
        }
    }
    let api: Api<VolumeAttachment> = Api::all(client);
    // `Left` is the object when it is still there (finalizers) or, from some servers, the deleted object.
    match api.delete(&name, &DeleteParams::default()).await.map(|r| r.left()) {
        Ok(Some(remaining))
            if remaining.metadata.deletion_timestamp.is_some()
                && remaining.metadata.finalizers.as_ref().is_some_and(|f| !f.is_empty()) =>
        {
            tracing::info!(attachment = %name, %node, "deleted VolumeAttachment; waiting for its attacher");
            world.attachments.apply(remaining.clone());
            detach_status(&remaining)
        }
        Ok(_) => {
            world.attachments.delete(&name);
            Outcome::Detached
        }
        Err(kube::Error::Api(s)) if s.code == 404 => {
            world.attachments.delete(&name);
            Outcome::Detached
        }
        Err(source) => Outcome::DetachFailed(api_error("delete", &name, source)),
    }
}

/// A VolumeAttachment being deleted: a detach error its attacher reported, or still waiting.
fn detach_status(attachment: &VolumeAttachment) -> Outcome {
    match attachment.status.as_ref().and_then(|s| s.detach_error.as_ref()) {
        Some(error) => Outcome::DetachFailed(OperationError::Attacher(error.message.clone().unwrap_or_default())),
        None => Outcome::DetachWaiting,
    }
}

fn api_error(action: &'static str, name: &str, source: kube::Error) -> OperationError {
    OperationError::Api { action, object: format!("volumeattachment/{name}"), source }
}

/// Runs a plugin call on the blocking pool.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, OperationError> + Send + 'static,
) -> Result<T, OperationError> {
    tokio::task::spawn_blocking(call).await.unwrap_or_else(|e| Err(OperationError::Join(e.to_string())))
}

/// Attaches through the plugin's own attach.
pub async fn attach_plugin(plugin: Arc<dyn VolumePlugin>, spec: VolumeSpec, node: String) -> Outcome {
    let result = blocking(move || {
        let attachable = plugin.as_attachable().ok_or_else(|| OperationError::NoPlugin(plugin.name().to_string()))?;
        Ok(attachable.attach(&spec, &node)?)
    })
    .await;
    match result {
        Ok(device_path) => Outcome::Attached { device_path },
        Err(e) => Outcome::AttachFailed(e),
    }
}

/// Asks the plugin whether the volume is still attached (`VolumesAreAttached`).
pub async fn verify_plugin(plugin: Arc<dyn VolumePlugin>, spec: VolumeSpec, node: String) -> Outcome {
    let result = blocking(move || {
        let attachable = plugin.as_attachable().ok_or_else(|| OperationError::NoPlugin(plugin.name().to_string()))?;
        Ok(attachable.is_attached(&spec, &node)?)
    })
    .await;
    match result {
        Ok(false) => Outcome::NotAttached,
        Ok(true) => Outcome::Verified,
        Err(e) => {
            tracing::debug!(error = %e, "checking an attachment failed; assuming it is still attached");
            Outcome::Verified
        }
    }
}

/// The attachable plugin serving `unique`: the one named `hint` if given, else the one whose plugin name
/// (`<name>` or `flexvolume-<name>`) is the unique name's plugin part (`FindAttachablePluginByName`).
pub fn find_attachable(
    registry: &PluginRegistry,
    hint: Option<&str>,
    unique: &str,
) -> Result<(Arc<dyn VolumePlugin>, String), OperationError> {
    let (prefix, volume) =
        names::split_unique_name(unique).ok_or_else(|| OperationError::BadUniqueName(unique.to_string()))?;
    let serves = |p: &Arc<dyn VolumePlugin>| {
        let name = p.name();
        hint.is_some_and(|h| h == name)
            || name == prefix
            || prefix.strip_prefix(names::FLEX_PLUGIN_PREFIX).is_some_and(|rest| rest == name)
    };
    registry
        .all()
        .into_iter()
        .find(|p| p.as_attachable().is_some() && serves(p))
        .map(|p| (p, volume.to_string()))
        .ok_or_else(|| OperationError::NoPlugin(prefix.to_string()))
}

/// Detaches through the plugin's own detach (`detach <volume name> <node>`).
pub async fn detach_plugin(registry: PluginRegistry, hint: Option<String>, unique: String, node: String) -> Outcome {
    let result = blocking(move || {
        let (plugin, volume) = find_attachable(&registry, hint.as_deref(), &unique)?;
        let attachable = plugin.as_attachable().ok_or_else(|| OperationError::NoPlugin(plugin.name().to_string()))?;
        Ok(attachable.detach(&volume, &node)?)
    })
    .await;
    match result {
        Ok(()) => Outcome::Detached,
        Err(e) => Outcome::DetachFailed(e),
    }
}
