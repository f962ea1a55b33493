//! The PV controller's state machine (`pkg/controller/volume/persistentvolume/pv_controller.go`): `syncClaim`
//! for claims, `syncVolume` for volumes, and the two-step `bind` (volume claimRef first, then the claim), with
//! Kubernetes' annotations, phases, event reasons and messages.

use crate::ctx::{
    add_finalizer, claim_key, claim_phase, claim_volume_name, has_annotation, has_finalizer, set_annotation,
    volume_phase, Ctx, PV_CONTROLLER,
};
use crate::error::{Error, Result};
use crate::index::claim_ref_key;
use crate::matching;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use kvol_api::names::{
    ANN_BETA_STORAGE_PROVISIONER, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_MIGRATED_TO, ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, FINALIZER_PVC_PROTECTION, FINALIZER_PV_PROTECTION, NO_PROVISIONER,
};
use kvol_runtime::EventType;
use std::collections::HashSet;
use std::sync::Arc;

/// A claimRef for a claim, as `reference.GetReference` builds it.
fn claim_reference(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        name: claim.metadata.name.clone(),
        namespace: claim.metadata.namespace.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        field_path: None,
    }
}

impl Ctx {
    /// `syncClaim`: protection first, then the unbound or bound path.
    pub async fn sync_claim(self: &Arc<Self>, key: &str) -> Result<()> {
        let Some(mut claim) = self.claims.get(key) else { return Ok(()) };
        claim = self.sync_claim_protection(claim).await?;
        if has_annotation(&*claim, ANN_MIGRATED_TO) {
            return Ok(());
        }
        if has_annotation(&*claim, ANN_BIND_COMPLETED) {
            self.sync_bound_claim(claim).await
        } else {
            self.sync_unbound_claim(claim).await
        }
    }

    async fn sync_unbound_claim(self: &Arc<Self>, claim: Arc<PersistentVolumeClaim>) -> Result<()> {
        let key = claim_key(&claim);
        let volume_name = claim_volume_name(&claim).to_string();
        if volume_name.is_empty() {
            let delay = self.is_delay_binding(&claim);
            let found = {
                let mut reserved = self.reserved.lock();
                let excluded: HashSet<String> =
                    reserved.iter().filter(|(_, c)| **c != key).map(|(v, _)| v.clone()).collect();
                let found = self
                    .volumes
                    .read()
                    .find_best_match(&claim, &excluded, delay)
                    .map_err(|message| Error::Selector { claim: key.clone(), message })?;
                if let Some(v) = &found {
                    reserved.insert(v.name_any(), key.clone());
                }
                found
            };
            return match found {
                Some(volume) => {
                    let name = volume.name_any();
                    let result = self.bind(volume, claim).await;
                    let mut reserved = self.reserved.lock();
                    if reserved.get(&name) == Some(&key) {
                        reserved.remove(&name);
                    }
                    result
                }
                None => self.no_volume_for_claim(claim, delay).await,
            };
        }
        // The user asked for a specific volume.
        let Some(volume) = self.volumes.get(&volume_name) else {
            // Not (yet) there: wait for it; its creation syncs this claim.
            self.update_claim_status(&claim, "Pending", None).await?;
            return Ok(());
        };
        let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if claim_ref.is_none() {
            if let Err(message) = matching::check_volume_satisfies_claim(&volume, &claim) {
                self.recorder.event(&*claim, EventType::Warning, "VolumeMismatch", message, PV_CONTROLLER);
                self.update_claim_status(&claim, "Pending", None).await?;
                return Ok(());
            }
            return self.bind(volume, claim).await;
        }
        if matching::is_volume_bound_to_claim(&volume, &claim) {
            return self.bind(volume, claim).await;
        }
        if !has_annotation(&*claim, ANN_BOUND_BY_CONTROLLER) {
            // Pre-bound by the user to a volume someone else has.
            let message = format!("volume {volume_name:?} already bound to a different claim.");
            self.recorder.event(&*claim, EventType::Warning, "FailedBinding", message, PV_CONTROLLER);
            self.update_claim_status(&claim, "Pending", None).await?;
            return Ok(());
        }
        Err(Error::VolumeTaken { volume: volume_name, claim: key })
    }

    /// No volume matched: wait for the first consumer, provision, or report (`syncUnboundClaim`'s nil branch).
    /// `assignDefaultStorageClass` (KEP-3333, retroactive default StorageClass): an unbound claim with no
    /// `storageClassName` at all (not `""`, which asks for no class) gets the default class once one
    /// exists, the newest default when there are several, as the admission plugin would have given it.
    async fn assign_default_class(&self, claim: &PersistentVolumeClaim) -> Result<bool> {
        let spec = claim.spec.clone().unwrap_or_default();
        if spec.storage_class_name.is_some() {
            return Ok(false);
        }
        let default = self
            .classes
            .list()
            .into_iter()
            .filter(|c| kvol_api::names::is_default_class(c.metadata.annotations.as_ref()))
            .max_by(|a, b| {
                let created = |c: &k8s_openapi::api::storage::v1::StorageClass| {
                    c.metadata.creation_timestamp.as_ref().map(|t| t.0)
                };
                created(a).cmp(&created(b)).then_with(|| b.name_any().cmp(&a.name_any()))
            });
        let Some(default) = default else { return Ok(false) };
        let mut updated = claim.clone();
        updated.spec.get_or_insert_with(Default::default).storage_class_name = Some(default.name_any());
        self.replace_claim(&updated).await?;
        tracing::info!(claim = %claim_key(claim), class = %default.name_any(), "assigned the default StorageClass to an unbound claim");
        Ok(true)
    }

    async fn no_volume_for_claim(self: &Arc<Self>, claim: Arc<PersistentVolumeClaim>, delay: bool) -> Result<()> {
        if self.assign_default_class(&claim).await? {
            // The claim changed: its next sync (from the watch) provisions or binds it with the class.
            return Ok(());
        }
        let class = matching::claim_class(&claim).to_string();
        if delay && !has_annotation(&*claim, ANN_SELECTED_NODE) {
            let pods = self.pods_referencing_claim(&claim);
            let unscheduled: Vec<String> = pods
                .iter()
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("").is_empty())
                .map(|p| p.name_any())
                .collect();
            if unscheduled.is_empty() {
                self.recorder.event(
                    &*claim,
                    EventType::Normal,
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding",
                    PV_CONTROLLER,
                );
            } else {
                let message = format!("waiting for pod {} to be scheduled", unscheduled.join(", "));
                self.recorder.event(&*claim, EventType::Normal, "WaitForPodScheduled", message, PV_CONTROLLER);
            }
        } else if !class.is_empty() {
            self.provision_claim(&claim).await?;
        } else {
            self.recorder.event(
                &*claim,
                EventType::Normal,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
                PV_CONTROLLER,
            );
        }
        let claim = self.claims.get(&claim_key(&claim)).unwrap_or(claim);
        self.update_claim_status(&claim, "Pending", None).await?;
        Ok(())
    }

    /// Hand the claim to its class's provisioner: annotate it with the provisioner's name, and say that it
    /// waits (`provisionClaim` → `provisionClaimOperationExternal`).
    async fn provision_claim(self: &Arc<Self>, claim: &Arc<PersistentVolumeClaim>) -> Result<()> {
        let class_name = matching::claim_class(claim);
        let Some(class) = self.classes.get(class_name) else {
            let message = format!("storageclass.storage.k8s.io {class_name:?} not found");
            self.recorder.event(&**claim, EventType::Warning, "ProvisioningFailed", message, PV_CONTROLLER);
            return Ok(());
        };
        let provisioner = class.provisioner.clone();
        if provisioner == NO_PROVISIONER {
            let message = format!(
                "storageclass.storage.k8s.io {class_name:?} has provisioner {NO_PROVISIONER}: \
                 no dynamic provisioning; create a matching PersistentVolume"
            );
            self.recorder.event(&**claim, EventType::Normal, "FailedBinding", message, PV_CONTROLLER);
            return Ok(());
        }
        let annotations = claim.annotations();
        if annotations.get(ANN_STORAGE_PROVISIONER) != Some(&provisioner)
            || annotations.get(ANN_BETA_STORAGE_PROVISIONER) != Some(&provisioner)
        {
            let mut new = (**claim).clone();
            set_annotation(&mut new, ANN_STORAGE_PROVISIONER, &provisioner);
            set_annotation(&mut new, ANN_BETA_STORAGE_PROVISIONER, &provisioner);
            self.replace_claim(&new).await?;
        }
        let message = format!(
            "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by \
             the system administrator. If volume creation is delayed, please verify that the provisioner is \
             running and correctly registered."
        );
        self.recorder.event(&**claim, EventType::Normal, "ExternalProvisioning", message, PV_CONTROLLER);
        self.provision_queue.add(claim_key(claim));
        Ok(())
    }

    async fn sync_bound_claim(self: &Arc<Self>, claim: Arc<PersistentVolumeClaim>) -> Result<()> {
        let volume_name = claim_volume_name(&claim).to_string();
        if volume_name.is_empty() {
            self.update_claim_status_with_event(
                &claim,
                "Lost",
                None,
                EventType::Warning,
                "ClaimLost",
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            )
            .await?;
            return Ok(());
        }
        let Some(volume) = self.volumes.get(&volume_name) else {
            self.update_claim_status_with_event(
                &claim,
                "Lost",
                None,
                EventType::Warning,
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            )
            .await?;
            return Ok(());
        };
        let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        match claim_ref {
            None => self.bind(volume, claim).await,
            Some(r) if r.uid.is_some() && r.uid == claim.metadata.uid => self.bind(volume, claim).await,
            Some(_) => {
                self.update_claim_status_with_event(
                    &claim,
                    "Lost",
                    None,
                    EventType::Warning,
                    "ClaimMisbound",
                    "Two claims are bound to the same volume, this one is bound incorrectly",
                )
                .await?;
                Ok(())
            }
        }
    }

    /// Bind volume and claim, each step skipped when already done: volume claimRef (+ bound-by-controller,
    /// pv-protection), volume phase Bound, claim volumeName (+ bind-completed, bound-by-controller,
    /// pvc-protection), claim status Bound with the volume's capacity and access modes.
    pub async fn bind(
        self: &Arc<Self>,
        volume: Arc<PersistentVolume>,
        claim: Arc<PersistentVolumeClaim>,
    ) -> Result<()> {
        let name = volume.name_any();
        let key = claim_key(&claim);
        let volume = {
            let _lock = self.volume_locks.lock(&name).await;
            let mut volume = self.volumes.get(&name).unwrap_or(volume);
            let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
            if claim_ref.is_some() && !matching::is_volume_bound_to_claim(&volume, &claim) {
                return Err(Error::VolumeTaken { volume: name, claim: key });
            }
            let ref_matches = claim_ref.is_some_and(|r| {
                r.name == claim.metadata.name && r.namespace == claim.metadata.namespace && r.uid == claim.metadata.uid
            });
            let set_by_controller = claim_ref.is_none();
            let needs_update = !ref_matches
                || (set_by_controller && !has_annotation(&*volume, ANN_BOUND_BY_CONTROLLER))
                || (volume.metadata.deletion_timestamp.is_none() && !has_finalizer(&*volume, FINALIZER_PV_PROTECTION));
            if needs_update {
                let mut new = (*volume).clone();
                new.spec.get_or_insert_with(Default::default).claim_ref = Some(claim_reference(&claim));
                if set_by_controller {
                    set_annotation(&mut new, ANN_BOUND_BY_CONTROLLER, "yes");
                }
                if new.metadata.deletion_timestamp.is_none() {
                    add_finalizer(&mut new, FINALIZER_PV_PROTECTION);
                }
                volume = self.replace_volume(&new).await?;
            }
            self.update_volume_phase(&volume, "Bound", None).await?
        };
        let mut claim = self.claims.get(&key).unwrap_or(claim);
        let needs_update = claim_volume_name(&claim) != name
            || !has_annotation(&*claim, ANN_BIND_COMPLETED)
            || (claim.metadata.deletion_timestamp.is_none() && !has_finalizer(&*claim, FINALIZER_PVC_PROTECTION));
        if needs_update {
            let mut new = (*claim).clone();
            if claim_volume_name(&new) != name {
                new.spec.get_or_insert_with(Default::default).volume_name = Some(name.clone());
                set_annotation(&mut new, ANN_BOUND_BY_CONTROLLER, "yes");
            }
            set_annotation(&mut new, ANN_BIND_COMPLETED, "yes");
            if new.metadata.deletion_timestamp.is_none() {
                add_finalizer(&mut new, FINALIZER_PVC_PROTECTION);
            }
            claim = self.replace_claim(&new).await?;
        }
        let claim = self.update_claim_status(&claim, "Bound", Some(&volume)).await?;
        self.metrics.record_bound(&claim);
        Ok(())
    }

    /// `syncVolume`.
    pub async fn sync_volume(self: &Arc<Self>, name: &str) -> Result<()> {
        let Some(volume) = self.volumes.get(name) else { return Ok(()) };
        let Some(volume) = self.sync_volume_protection(volume).await? else { return Ok(()) };
        if has_annotation(&*volume, ANN_MIGRATED_TO) {
            return Ok(());
        }
        let Some(claim_ref) = volume.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
            let _lock = self.volume_locks.lock(name).await;
            let volume = self.volumes.get(name).unwrap_or(volume);
            if volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_none() {
                self.update_volume_phase(&volume, "Available", None).await?;
            }
            return Ok(());
        };
        let uid = claim_ref.uid.clone().unwrap_or_default();
        if uid.is_empty() {
            // Pre-bound by the user; the claim binds it when it comes.
            let _lock = self.volume_locks.lock(name).await;
            let volume = self.volumes.get(name).unwrap_or(volume);
            self.update_volume_phase(&volume, "Available", None).await?;
            if let Some(key) = claim_ref_key(&volume) {
                self.claim_queue.add(key);
            }
            return Ok(());
        }
        let key = claim_ref_key(&volume).unwrap_or_default();
        let mut claim = self.claims.get(&key).filter(|c| c.metadata.uid.as_deref() == Some(uid.as_str()));
        if claim.is_none() {
            // The claim may be newer than our cache (created and bound by someone else a moment ago): ask.
            let (ns, claim_name) = key.split_once('/').unwrap_or(("", &key));
            let live = self
                .pvc_api(ns)
                .get_opt(claim_name)
                .await
                .map_err(crate::error::api("get", format!("persistentvolumeclaim/{key}")))?;
            claim = live.filter(|c| c.metadata.uid.as_deref() == Some(uid.as_str())).map(Arc::new);
        }
        let Some(claim) = claim else {
            let volume = {
                let _lock = self.volume_locks.lock(name).await;
                let volume = self.volumes.get(name).unwrap_or(volume);
                if !matches!(volume_phase(&volume), "Released" | "Failed") {
                    self.update_volume_phase(&volume, "Released", None).await?
                } else {
                    volume
                }
            };
            return self.reclaim_volume(volume).await;
        };
        let claim_volume = claim_volume_name(&claim);
        if claim_volume.is_empty() {
            if matching::volume_mode_mismatch(claim.spec.as_ref(), volume.spec.as_ref()) {
                self.recorder.event(
                    &*volume,
                    EventType::Warning,
                    "VolumeMismatch",
                    "Cannot bind PersistentVolume to requested PersistentVolumeClaim due to incompatible volumeMode.",
                    PV_CONTROLLER,
                );
            }
            // Binding in progress (or pre-bound by the user): the claim finishes it.
            self.claim_queue.add(key);
            return Ok(());
        }
        if claim_volume == name {
            let _lock = self.volume_locks.lock(name).await;
            let volume = self.volumes.get(name).unwrap_or(volume);
            self.update_volume_phase(&volume, "Bound", None).await?;
            return Ok(());
        }
        // The claim is bound to another volume.
        let provisioned = has_annotation(&*volume, ANN_PROVISIONED_BY);
        let policy = volume.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
        if provisioned && policy == Some("Delete") {
            let volume = {
                let _lock = self.volume_locks.lock(name).await;
                let volume = self.volumes.get(name).unwrap_or(volume);
                if !matches!(volume_phase(&volume), "Released" | "Failed") {
                    self.update_volume_phase(&volume, "Released", None).await?
                } else {
                    volume
                }
            };
            return self.reclaim_volume(volume).await;
        }
        self.unbind_volume(name).await
    }

    /// Undo a binding on the volume side: drop the claimRef the controller set, or just its UID when the user
    /// pre-bound it; then Available (`unbindVolume`).
    pub async fn unbind_volume(&self, name: &str) -> Result<()> {
        let _lock = self.volume_locks.lock(name).await;
        let Some(volume) = self.volumes.get(name) else { return Ok(()) };
        let mut new = (*volume).clone();
        if has_annotation(&new, ANN_BOUND_BY_CONTROLLER) {
            if let Some(spec) = new.spec.as_mut() {
                spec.claim_ref = None;
            }
            if let Some(a) = new.metadata.annotations.as_mut() {
                a.remove(ANN_BOUND_BY_CONTROLLER);
            }
        } else if let Some(r) = new.spec.as_mut().and_then(|s| s.claim_ref.as_mut()) {
            r.uid = None;
        }
        let volume = self.replace_volume(&new).await?;
        self.update_volume_phase(&volume, "Available", None).await?;
        Ok(())
    }

    /// Whether a claim's phase says Bound (for the scheduler).
    pub fn claim_is_bound(claim: &PersistentVolumeClaim) -> bool {
        claim_phase(claim) == "Bound" && !claim_volume_name(claim).is_empty()
    }
}
