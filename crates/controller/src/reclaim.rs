//! Reclaiming released volumes (`reclaimVolume`, `deleteVolumeOperation`, `recycleVolumeOperation`): Retain
//! keeps everything, Delete asks the provisioner that made the volume to delete it and then removes the PV,
//! Recycle scrubs the volume's directory and makes the PV Available again. Deletion and recycling run as
//! background operations, one per volume at a time.

use crate::ctx::{volume_phase, Ctx, PV_CONTROLLER};
use crate::error::{api, Result};
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::ResourceExt;
use kvol_api::names::ANN_PROVISIONED_BY;
use kvol_runtime::EventType;
use std::path::PathBuf;
use std::sync::Arc;

/// What a Recycle can do with a volume source.
enum RecycleTarget {
    /// A directory on this machine.
    Local(PathBuf),
    /// A volume kvol cannot reach here; the message says why.
    Unsupported(String),
}

fn recycle_target(volume: &PersistentVolume) -> RecycleTarget {
    let spec = volume.spec.as_ref();
    if let Some(host) = spec.and_then(|s| s.host_path.as_ref()) {
        return RecycleTarget::Local(PathBuf::from(&host.path));
    }
    if let Some(nfs) = spec.and_then(|s| s.nfs.as_ref()) {
        return RecycleTarget::Unsupported(format!(
            "cannot scrub nfs volume {}:{}: it needs an NFS client mount and this machine has no kernel NFS client",
            nfs.server, nfs.path
        ));
    }
    RecycleTarget::Unsupported("No recycler plugin found for the volume!".to_string())
}

impl Ctx {
    /// `reclaimVolume`: act on a Released volume according to its reclaim policy.
    pub async fn reclaim_volume(self: &Arc<Self>, volume: Arc<PersistentVolume>) -> Result<()> {
        let policy = volume
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.clone())
            .unwrap_or_else(|| "Retain".to_string());
        match policy.as_str() {
            "Retain" => Ok(()),
            "Delete" | "Recycle" => {
                let name = volume.name_any();
                if !self.operations.lock().insert(name.clone()) {
                    return Ok(()); // already running
                }
                let ctx = self.clone();
                let recycle = policy == "Recycle";
                tokio::spawn(async move {
                    let result =
                        if recycle { ctx.recycle_operation(&name).await } else { ctx.delete_operation(&name).await };
                    ctx.operations.lock().remove(&name);
                    if let Err(e) = result {
                        tracing::warn!(volume = %name, error = %e, "reclaim failed; retrying");
                        ctx.volume_queue.add_rate_limited(name);
                    } else {
                        ctx.volume_queue.forget(&name);
                    }
                });
                Ok(())
            }
            _ => {
                let name = volume.name_any();
                let _lock = self.volume_locks.lock(&name).await;
                let volume = self.volumes.get(&name).unwrap_or(volume);
                self.update_volume_phase_with_event(
                    &volume,
                    "Failed",
                    EventType::Warning,
                    "VolumeUnknownReclaimPolicy",
                    "Volume has unrecognized PersistentVolumeReclaimPolicy",
                )
                .await?;
                Ok(())
            }
        }
    }

    /// The newest version of a volume, if it still needs reclaiming: Released (or Failed), and its claim
    /// really gone (`isVolumeReleased`, asked of the API, not the cache).
    async fn volume_to_reclaim(&self, name: &str) -> Result<Option<Arc<PersistentVolume>>> {
        let Some(volume) = self.pv_api().get_opt(name).await.map_err(api("get", format!("persistentvolume/{name}")))?
        else {
            return Ok(None);
        };
        self.volumes.apply(volume.clone());
        if !matches!(volume_phase(&volume), "Released" | "Failed") {
            return Ok(None);
        }
        let Some(claim_ref) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else { return Ok(None) };
        if let (Some(ns), Some(claim_name)) = (claim_ref.namespace.as_deref(), claim_ref.name.as_deref()) {
            let live = self
                .pvc_api(ns)
                .get_opt(claim_name)
                .await
                .map_err(api("get", format!("persistentvolumeclaim/{ns}/{claim_name}")))?;
            if let Some(claim) = live {
                let same = claim.metadata.uid.is_some() && claim.metadata.uid == claim_ref.uid;
                let bound_here = crate::ctx::claim_volume_name(&claim) == name;
                if same && bound_here {
                    return Ok(None);
                }
            }
        }
        Ok(Some(Arc::new(volume)))
    }

    /// `deleteVolumeOperation`.
    async fn delete_operation(self: &Arc<Self>, name: &str) -> Result<()> {
        let Some(volume) = self.volume_to_reclaim(name).await? else { return Ok(()) };
        let provisioned_by = volume.annotations().get(ANN_PROVISIONED_BY).cloned();
        let provisioner = provisioned_by.as_deref().and_then(|p| self.registry.get(p));
        match (provisioner, provisioned_by) {
            (Some(provisioner), _) => {
                if let Err(e) = provisioner.delete(&volume).await {
                    let _lock = self.volume_locks.lock(name).await;
                    let volume = self.volumes.get(name).unwrap_or(volume);
                    let message = e.to_string();
                    self.update_volume_phase(&volume, "Failed", Some(&message)).await?;
                    self.recorder.event(&*volume, EventType::Warning, "VolumeFailedDelete", message, PV_CONTROLLER);
                    return Err(e);
                }
            }
            (None, Some(external)) => {
                let message = format!(
                    "Waiting for a volume to be deleted either by the external provisioner '{external}' or manually \
                     by the system administrator"
                );
                self.recorder.event(&*volume, EventType::Normal, "ExternalDeleting", message, PV_CONTROLLER);
                return Ok(());
            }
            (None, None) => {
                let message = format!(
                    "error getting deleter volume plugin for volume {name:?}: no deletable volume plugin matched"
                );
                let _lock = self.volume_locks.lock(name).await;
                let volume = self.volumes.get(name).unwrap_or(volume);
                self.update_volume_phase_with_event(
                    &volume,
                    "Failed",
                    EventType::Warning,
                    "VolumeFailedDelete",
                    &message,
                )
                .await?;
                return Ok(());
            }
        }
        tracing::info!(volume = %name, "volume deleted");
        self.delete_volume_object(name).await
    }

    /// `recycleVolumeOperation`, with kvol scrubbing the directory itself.
    async fn recycle_operation(self: &Arc<Self>, name: &str) -> Result<()> {
        let Some(volume) = self.volume_to_reclaim(name).await? else { return Ok(()) };
        if volume_phase(&volume) == "Failed" {
            return Ok(()); // a failed recycle is not retried (Kubernetes: "Do not overwrite previous Failed state")
        }
        let failure = match recycle_target(&volume) {
            RecycleTarget::Unsupported(message) => Some(message),
            RecycleTarget::Local(path) => {
                let limit = self.config.recycle_timeout;
                let scrub = tokio::task::spawn_blocking(move || crate::scrub::scrub_directory(&path, limit));
                match scrub.await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(format!("scrub task failed: {e}")),
                }
            }
        };
        if let Some(message) = failure {
            let message = format!("Recycle failed: {message}");
            let _lock = self.volume_locks.lock(name).await;
            let volume = self.volumes.get(name).unwrap_or(volume);
            self.update_volume_phase_with_event(&volume, "Failed", EventType::Warning, "VolumeFailedRecycle", &message)
                .await?;
            return Ok(());
        }
        self.recorder.event(&*volume, EventType::Normal, "VolumeRecycled", "Volume recycled", PV_CONTROLLER);
        self.unbind_volume(name).await
    }
}
