//! What every controller shares: the caches, the queues, the event recorder, the provisioners, and the API
//! writes, each of which stores the written object back into its cache.

use crate::cache::{Cache, VolumeCache};
use crate::error::{api, Result};
use crate::events::{EventType, Recorder};
use crate::provision::ProvisionerRegistry;
use crate::runner::{ControllerConfig, Metrics};
use k8s_openapi::api::core::v1::{
    Node, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus, PersistentVolumeStatus, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kvol_runtime::WorkQueue;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The component name on the PV controller's events.
pub const PV_CONTROLLER: &str = "persistentvolume-controller";

/// Locks by key, for serialising writes to one object across queues.
#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while writing one object.
pub struct KeyedGuard<'a> {
    owner: &'a KeyedLocks,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    /// Wait for the lock of `key`.
    pub async fn lock(&self, key: &str) -> KeyedGuard<'_> {
        let lock = self.locks.lock().entry(key.to_string()).or_default().clone();
        let guard = lock.lock_owned().await;
        KeyedGuard { owner: self, key: key.to_string(), guard: Some(guard) }
    }
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.owner.locks.lock();
        // Only the map holds it now: nobody waits, so the entry can go.
        if locks.get(&self.key).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(&self.key);
        }
    }
}

/// The shared state of all controllers.
pub struct Ctx {
    pub client: Client,
    pub config: ControllerConfig,
    pub metrics: Arc<Metrics>,
    pub volumes: VolumeCache,
    pub claims: Cache<PersistentVolumeClaim>,
    pub classes: Cache<StorageClass>,
    pub pods: Cache<Pod>,
    pub nodes: Cache<Node>,
    pub claim_queue: WorkQueue<String>,
    pub volume_queue: WorkQueue<String>,
    pub provision_queue: WorkQueue<String>,
    pub pod_queue: WorkQueue<String>,
    /// StorageClass names whose waiting claims should look again (a volume became available).
    pub class_wakeups: WorkQueue<String>,
    pub recorder: Recorder,
    pub registry: Arc<ProvisionerRegistry>,
    /// Volumes chosen by a bind in flight: volume name → claim key.
    pub reserved: Mutex<HashMap<String, String>>,
    pub volume_locks: KeyedLocks,
    /// Reclaim operations running, by volume name (`delete-<pv>` / `recycle-<pv>` in Kubernetes).
    pub operations: Mutex<HashSet<String>>,
    /// Provisioning: claims not to retry before this instant (backoff), and claims given up on at a version.
    pub provision_retry_at: Mutex<HashMap<String, std::time::Instant>>,
    pub provision_given_up: Mutex<HashMap<String, String>>,
}

/// "namespace/name" of a claim.
pub fn claim_key(claim: &PersistentVolumeClaim) -> String {
    format!("{}/{}", claim.namespace().unwrap_or_default(), claim.name_any())
}

/// Whether an object carries an annotation.
pub fn has_annotation<K: kube::Resource>(obj: &K, key: &str) -> bool {
    obj.meta().annotations.as_ref().is_some_and(|a| a.contains_key(key))
}

/// Whether an object carries a finalizer.
pub fn has_finalizer<K: kube::Resource>(obj: &K, finalizer: &str) -> bool {
    obj.meta().finalizers.as_ref().is_some_and(|f| f.iter().any(|x| x == finalizer))
}

/// Add a finalizer (no-op if present).
pub fn add_finalizer<K: kube::Resource>(obj: &mut K, finalizer: &str) {
    let list = obj.meta_mut().finalizers.get_or_insert_with(Vec::new);
    if !list.iter().any(|x| x == finalizer) {
        list.push(finalizer.to_string());
    }
}

/// Remove a finalizer.
pub fn remove_finalizer<K: kube::Resource>(obj: &mut K, finalizer: &str) {
    if let Some(list) = obj.meta_mut().finalizers.as_mut() {
        list.retain(|x| x != finalizer);
    }
}

/// Set an annotation.
pub fn set_annotation<K: kube::Resource>(obj: &mut K, key: &str, value: &str) {
    obj.meta_mut().annotations.get_or_insert_with(Default::default).insert(key.to_string(), value.to_string());
}

/// The phase of a volume ("" when unset).
pub fn volume_phase(pv: &PersistentVolume) -> &str {
    pv.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// The phase of a claim ("" when unset).
pub fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// A claim's `spec.volumeName` ("" when unset).
pub fn claim_volume_name(claim: &PersistentVolumeClaim) -> &str {
    claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("")
}

impl Ctx {
    fn count_write(&self) {
        self.metrics.writes.fetch_add(1, Ordering::Relaxed);
    }

    fn count_error(&self, e: &crate::Error) {
        if e.is_conflict() {
            self.metrics.conflicts.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn pv_api(&self) -> Api<PersistentVolume> {
        Api::all(self.client.clone())
    }

    pub fn pvc_api(&self, namespace: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// PUT a volume (spec and metadata) and cache the result.
    pub async fn replace_volume(&self, pv: &PersistentVolume) -> Result<Arc<PersistentVolume>> {
        let name = pv.name_any();
        self.count_write();
        let written = self
            .pv_api()
            .replace(&name, &PostParams::default(), pv)
            .await
            .map_err(api("update", format!("persistentvolume/{name}")))
            .inspect_err(|e| self.count_error(e))?;
        self.volumes.apply(written.clone());
        Ok(Arc::new(written))
    }

    /// PUT a volume's status and cache the result.
    pub async fn replace_volume_status(&self, pv: &PersistentVolume) -> Result<Arc<PersistentVolume>> {
        let name = pv.name_any();
        self.count_write();
        let written = self
            .pv_api()
            .replace_status(&name, &PostParams::default(), pv)
            .await
            .map_err(api("update status of", format!("persistentvolume/{name}")))
            .inspect_err(|e| self.count_error(e))?;
        self.volumes.apply(written.clone());
        Ok(Arc::new(written))
    }

    /// PUT a claim (spec and metadata) and cache the result.
    pub async fn replace_claim(&self, claim: &PersistentVolumeClaim) -> Result<Arc<PersistentVolumeClaim>> {
        let key = claim_key(claim);
        self.count_write();
        let written = self
            .pvc_api(&claim.namespace().unwrap_or_default())
            .replace(&claim.name_any(), &PostParams::default(), claim)
            .await
            .map_err(api("update", format!("persistentvolumeclaim/{key}")))
            .inspect_err(|e| self.count_error(e))?;
        self.claims.apply(written.clone());
        Ok(Arc::new(written))
    }

    /// PUT a claim's status and cache the result.
    pub async fn replace_claim_status(&self, claim: &PersistentVolumeClaim) -> Result<Arc<PersistentVolumeClaim>> {
        let key = claim_key(claim);
        self.count_write();
        let written = self
            .pvc_api(&claim.namespace().unwrap_or_default())
            .replace_status(&claim.name_any(), &PostParams::default(), claim)
            .await
            .map_err(api("update status of", format!("persistentvolumeclaim/{key}")))
            .inspect_err(|e| self.count_error(e))?;
        self.claims.apply(written.clone());
        Ok(Arc::new(written))
    }

    /// DELETE a volume; already gone is success.
    pub async fn delete_volume_object(&self, name: &str) -> Result<()> {
        self.count_write();
        match self.pv_api().delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api("delete", format!("persistentvolume/{name}"))(e)),
        }
    }

    /// Set a volume's phase (and message), unless it already has them (`updateVolumePhase`).
    pub async fn update_volume_phase(
        &self,
        pv: &Arc<PersistentVolume>,
        phase: &str,
        message: Option<&str>,
    ) -> Result<Arc<PersistentVolume>> {
        let status = pv.status.clone().unwrap_or_default();
        if status.phase.as_deref() == Some(phase) && status.message.as_deref() == message {
            return Ok(pv.clone());
        }
        let mut new = (**pv).clone();
        let changed = status.phase.as_deref() != Some(phase);
        new.status = Some(PersistentVolumeStatus {
            phase: Some(phase.to_string()),
            message: message.map(str::to_string),
            reason: status.reason,
            last_phase_transition_time: if changed {
                Some(Time(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default()))
            } else {
                status.last_phase_transition_time
            },
        });
        self.replace_volume_status(&new).await
    }

    /// Set a volume's phase and record an event, the event only when the phase changes
    /// (`updateVolumePhaseWithEvent`).
    pub async fn update_volume_phase_with_event(
        &self,
        pv: &Arc<PersistentVolume>,
        phase: &str,
        kind: EventType,
        reason: &'static str,
        message: &str,
    ) -> Result<Arc<PersistentVolume>> {
        if volume_phase(pv) == phase {
            return Ok(pv.clone());
        }
        let written = self.update_volume_phase(pv, phase, Some(message)).await?;
        self.recorder.event(&*written, kind, reason, message, PV_CONTROLLER);
        Ok(written)
    }

    /// Set a claim's phase and, from the volume, its access modes and, when the claim becomes bound, its
    /// capacity; without a volume both are cleared (`updateClaimStatus`). A bound claim's capacity is not
    /// overwritten from the volume: during an expansion the volume is bigger than the file system the claim
    /// reports until the node has grown it. No write when nothing changes.
    pub async fn update_claim_status(
        &self,
        claim: &Arc<PersistentVolumeClaim>,
        phase: &str,
        volume: Option<&PersistentVolume>,
    ) -> Result<Arc<PersistentVolumeClaim>> {
        let old = claim.status.clone().unwrap_or_default();
        let mut status = PersistentVolumeClaimStatus { phase: Some(phase.to_string()), ..old.clone() };
        match volume.and_then(|v| v.spec.as_ref()) {
            Some(spec) => {
                status.access_modes = spec.access_modes.clone();
                if old.phase.as_deref() != Some(phase) || old.capacity.is_none() {
                    status.capacity = spec.capacity.clone();
                }
            }
            None => {
                status.access_modes = None;
                status.capacity = None;
            }
        }
        if status == old {
            return Ok(claim.clone());
        }
        let mut new = (**claim).clone();
        new.status = Some(status);
        self.replace_claim_status(&new).await
    }

    /// Set a claim's phase and record an event when the phase changes (`updateClaimStatusWithEvent`).
    pub async fn update_claim_status_with_event(
        &self,
        claim: &Arc<PersistentVolumeClaim>,
        phase: &str,
        volume: Option<&PersistentVolume>,
        kind: EventType,
        reason: &'static str,
        message: &str,
    ) -> Result<Arc<PersistentVolumeClaim>> {
        if claim_phase(claim) == phase {
            return Ok(claim.clone());
        }
        let written = self.update_claim_status(claim, phase, volume).await?;
        self.recorder.event(&*written, kind, reason, message, PV_CONTROLLER);
        Ok(written)
    }

    /// The StorageClass a claim names, if it exists.
    pub fn claim_class_object(&self, claim: &PersistentVolumeClaim) -> Option<Arc<StorageClass>> {
        let name = crate::matching::claim_class(claim);
        if name.is_empty() {
            return None;
        }
        self.classes.get(name)
    }

    /// Whether a claim's class binds on first consumer (`IsDelayBindingMode`); a missing class is not delayed.
    pub fn is_delay_binding(&self, claim: &PersistentVolumeClaim) -> bool {
        self.claim_class_object(claim).is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
    }
}
