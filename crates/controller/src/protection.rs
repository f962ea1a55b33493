//! The `kubernetes.io/pvc-protection` and `kubernetes.io/pv-protection` finalizers
//! (`pkg/controller/volume/pvcprotection`, `pkg/controller/volume/pvprotection`): a claim a live pod uses, and
//! a volume that is Bound, stay (Terminating) until that is no longer so.
//!
//! Kubernetes' admission plugin adds the finalizers on create; kvol's server does not, so the controllers add
//! them: to a claim when it binds or a pod uses it, to a volume when it binds. An unbound, unused object
//! without the finalizer is deleted at once, which is what Kubernetes does with it too (it removes the
//! finalizer immediately).

use crate::ctx::{add_finalizer, has_finalizer, remove_finalizer, volume_phase, Ctx};
use crate::error::{api, Result};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use kvol_api::names::{FINALIZER_PVC_PROTECTION, FINALIZER_PV_PROTECTION};
use std::sync::Arc;

/// The claims a pod's volumes name (persistentVolumeClaim volumes, and generic ephemeral volumes' claims,
/// which are named `<pod>-<volume>`).
pub fn pod_claim_names(pod: &Pod) -> Vec<String> {
    let Some(volumes) = pod.spec.as_ref().and_then(|s| s.volumes.as_ref()) else { return Vec::new() };
    volumes
        .iter()
        .filter_map(|v| {
            if let Some(pvc) = &v.persistent_volume_claim {
                Some(pvc.claim_name.clone())
            } else {
                v.ephemeral.as_ref().map(|_| format!("{}-{}", pod.name_any(), v.name))
            }
        })
        .collect()
}

/// Whether a pod has finished (Succeeded or Failed) and so no longer uses its volumes.
pub fn pod_is_terminated(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// Whether a pod holds a claim (`podUsesPVC`): only scheduled pods do — kubelet sees pods once they are
/// scheduled and refuses to start one whose claim is being deleted — and only until they have finished.
fn pod_uses(pod: &Pod, claim: &PersistentVolumeClaim) -> bool {
    let scheduled = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
    scheduled
        && pod.namespace() == claim.namespace()
        && !pod_is_terminated(pod)
        && pod_claim_names(pod).iter().any(|n| Some(n.as_str()) == claim.metadata.name.as_deref())
}

impl Ctx {
    /// Pods (in the cache) naming a claim, scheduled or not, that have not finished.
    pub fn pods_referencing_claim(&self, claim: &PersistentVolumeClaim) -> Vec<Arc<Pod>> {
        self.pods.filter(|p| {
            p.namespace() == claim.namespace()
                && !pod_is_terminated(p)
                && pod_claim_names(p).iter().any(|n| Some(n.as_str()) == claim.metadata.name.as_deref())
        })
    }

    /// Live pods (in the cache) that use a claim.
    pub fn pods_using_claim(&self, claim: &PersistentVolumeClaim) -> Vec<Arc<Pod>> {
        self.pods.filter(|p| pod_uses(p, claim))
    }

    /// Add or remove the claim's protection finalizer; returns the current claim.
    pub async fn sync_claim_protection(&self, claim: Arc<PersistentVolumeClaim>) -> Result<Arc<PersistentVolumeClaim>> {
        let has = has_finalizer(&*claim, FINALIZER_PVC_PROTECTION);
        if claim.metadata.deletion_timestamp.is_some() {
            if !has || !self.pods_using_claim(&claim).is_empty() {
                return Ok(claim);
            }
            // The cache may lag a pod just created: ask the API before letting the claim go.
            let namespace = claim.namespace().unwrap_or_default();
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            let live = pods.list(&ListParams::default()).await.map_err(api("list", format!("pods in {namespace}")))?;
            if live.items.iter().any(|p| pod_uses(p, &claim)) {
                return Ok(claim);
            }
            let mut new = (*claim).clone();
            remove_finalizer(&mut new, FINALIZER_PVC_PROTECTION);
            return self.replace_claim(&new).await;
        }
        let bound = !crate::ctx::claim_volume_name(&claim).is_empty();
        if !has && (bound || !self.pods_using_claim(&claim).is_empty()) {
            let mut new = (*claim).clone();
            add_finalizer(&mut new, FINALIZER_PVC_PROTECTION);
            return self.replace_claim(&new).await;
        }
        Ok(claim)
    }

    /// Add or remove the volume's protection finalizer; returns the current volume, or `None` when it was
    /// released for deletion (nothing more to do).
    pub async fn sync_volume_protection(&self, volume: Arc<PersistentVolume>) -> Result<Option<Arc<PersistentVolume>>> {
        let name = volume.name_any();
        let has = has_finalizer(&*volume, FINALIZER_PV_PROTECTION);
        let bound = volume_phase(&volume) == "Bound";
        if volume.metadata.deletion_timestamp.is_some() {
            if has && !bound {
                let _lock = self.volume_locks.lock(&name).await;
                let volume = self.volumes.get(&name).unwrap_or(volume);
                let mut new = (*volume).clone();
                remove_finalizer(&mut new, FINALIZER_PV_PROTECTION);
                self.replace_volume(&new).await?;
                return Ok(None);
            }
            return Ok(Some(volume));
        }
        if !has && bound {
            let _lock = self.volume_locks.lock(&name).await;
            let volume = self.volumes.get(&name).unwrap_or(volume);
            let mut new = (*volume).clone();
            add_finalizer(&mut new, FINALIZER_PV_PROTECTION);
            return Ok(Some(self.replace_volume(&new).await?));
        }
        Ok(Some(volume))
    }
}
