//! Dynamic provisioning: the [`Provisioner`] trait, the [`ProvisionerRegistry`], and the provisioning
//! controller, which follows `sig-storage-lib-external-provisioner`: it serves claims annotated
//! `volume.kubernetes.io/storage-provisioner` with a registered name, makes the volume, creates a PV pre-bound
//! to the claim (named `pvc-<claim uid>`, so a restart finds it instead of making a second one), and retries
//! failures with per-claim exponential backoff (15 s doubling to 1000 s), giving up after 15 failures.

use crate::ctx::{claim_volume_name, has_annotation, Ctx};
use crate::error::{Error, Result};
use crate::events::EventType;
use crate::matching;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::PostParams;
use kube::ResourceExt;
use kvol_api::names::{
    ANN_BETA_STORAGE_PROVISIONER, ANN_BOUND_BY_CONTROLLER, ANN_PROVISIONED_BY, ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER, FINALIZER_PV_PROTECTION,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The component name on provisioning events.
pub const PROVISIONER_COMPONENT: &str = "kvol-provisioner";

/// What a provisioner gets to make one volume.
#[derive(Debug, Clone)]
pub struct ProvisionOptions {
    /// The PV's name (`pvc-<claim uid>`); provisioners name their storage after it, so a retry finds it.
    pub pv_name: String,
    /// The claim.
    pub claim: PersistentVolumeClaim,
    /// The claim's StorageClass.
    pub class: StorageClass,
    /// The node the scheduler chose (WaitForFirstConsumer), if any.
    pub selected_node: Option<Node>,
    /// The node name from `volume.kubernetes.io/selected-node`, even when the Node object is unknown.
    pub selected_node_name: Option<String>,
    /// The requested size.
    pub capacity: Quantity,
}

/// What a provisioner made: the PV's volume source and the facts only it knows.
#[derive(Debug, Clone, Default)]
pub struct ProvisionedVolume {
    /// A spec carrying the volume source (`hostPath`, `local`, `csi`, …); the controller fills in the rest
    /// (capacity unless set here, access modes, class, reclaim policy, mount options, claimRef).
    pub spec: PersistentVolumeSpec,
    /// Where the volume can be used.
    pub node_affinity: Option<VolumeNodeAffinity>,
    /// Annotations to put on the PV.
    pub annotations: BTreeMap<String, String>,
}

/// Makes and deletes volumes for one provisioner name. Both calls must be idempotent: `provision` may be
/// called again for a volume that exists (after a restart), `delete` for one already gone.
pub trait Provisioner: Send + Sync {
    /// The name StorageClasses use in `provisioner:`.
    fn name(&self) -> &str;
    /// Make (or find) the volume.
    fn provision<'a>(&'a self, options: &'a ProvisionOptions) -> BoxFuture<'a, Result<ProvisionedVolume>>;
    /// Delete the volume behind a PV this provisioner made.
    fn delete<'a>(&'a self, volume: &'a PersistentVolume) -> BoxFuture<'a, Result<()>>;
    /// Whether its volumes take the StorageClass's `mountOptions` (hostPath and local volumes do not).
    fn supports_mount_options(&self) -> bool {
        true
    }
    /// The PV of a volume `provision` made now exists: the volume is the PV's from here on. A provisioner
    /// that marks volumes in flight (to find those a crash abandoned) clears the mark.
    fn volume_created<'a>(&'a self, _pv_name: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    /// Deletes volumes whose provisioning was cut short (a crash after making the volume and before its PV
    /// existed) and that no claim wants any more; `state(pv_name)` says what exists of that name. A marked
    /// volume with a PV is committed: its mark is cleared. Returns the names deleted. Only volumes still
    /// marked in flight are considered, so a volume that ever had a PV is never touched.
    fn collect_abandoned<'a>(
        &'a self,
        _state: &'a (dyn Fn(&str) -> VolumeState + Send + Sync),
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// What exists of a volume a provisioner made, for [`Provisioner::collect_abandoned`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeState {
    /// Its PV exists: the volume is committed.
    HasVolume,
    /// No PV, but its claim exists: provisioning may be in flight.
    HasClaim,
    /// Neither: abandoned.
    Gone,
}

/// Provisioners by name; built explicitly and handed to the controllers.
#[derive(Default)]
pub struct ProvisionerRegistry {
    provisioners: HashMap<String, Arc<dyn Provisioner>>,
}

impl ProvisionerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a provisioner; a second one with the same name is refused.
    pub fn register(&mut self, provisioner: Arc<dyn Provisioner>) -> Result<()> {
        let name = provisioner.name().to_string();
        if self.provisioners.contains_key(&name) {
            return Err(Error::DuplicateProvisioner(name));
        }
        self.provisioners.insert(name, provisioner);
        Ok(())
    }

    /// The provisioner serving a name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Provisioner>> {
        self.provisioners.get(name).cloned()
    }

    /// The names served.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.provisioners.keys().cloned().collect();
        names.sort();
        names
    }
}

/// The provisioner a claim was handed to (either annotation spelling).
pub fn claim_provisioner(claim: &PersistentVolumeClaim) -> Option<&str> {
    let a = claim.metadata.annotations.as_ref()?;
    a.get(ANN_STORAGE_PROVISIONER).or_else(|| a.get(ANN_BETA_STORAGE_PROVISIONER)).map(String::as_str)
}

/// The PV a provisioner's result becomes (`lib controller.go provisionClaimOperation` + in-tree defaults).
pub fn build_volume(options: &ProvisionOptions, provisioner: &str, made: ProvisionedVolume) -> PersistentVolume {
    let claim = &options.claim;
    let class = &options.class;
    let mut spec = made.spec;
    if spec.capacity.is_none() {
        spec.capacity = Some([("storage".to_string(), options.capacity.clone())].into());
    }
    spec.access_modes = claim.spec.as_ref().and_then(|s| s.access_modes.clone());
    spec.volume_mode = claim.spec.as_ref().and_then(|s| s.volume_mode.clone());
    spec.storage_class_name = Some(class.name_any());
    spec.persistent_volume_reclaim_policy = Some(class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()));
    spec.mount_options = class.mount_options.clone();
    if made.node_affinity.is_some() {
        spec.node_affinity = made.node_affinity;
    }
    spec.claim_ref = Some(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        name: claim.metadata.name.clone(),
        namespace: claim.metadata.namespace.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        field_path: None,
    });
    let mut annotations = made.annotations;
    annotations.insert(ANN_PROVISIONED_BY.to_string(), provisioner.to_string());
    annotations.insert(ANN_BOUND_BY_CONTROLLER.to_string(), "yes".to_string());
    let mut pv = PersistentVolume { spec: Some(spec), ..Default::default() };
    pv.metadata.name = Some(options.pv_name.clone());
    pv.metadata.annotations = Some(annotations);
    // Born bound (pre-bound to its claim), so born protected: saves the binder a write.
    pv.metadata.finalizers = Some(vec![FINALIZER_PV_PROTECTION.to_string()]);
    pv
}

impl Ctx {
    /// One pass of the provisioning controller over a claim.
    pub async fn sync_provision(self: &Arc<Self>, key: &str) -> Result<()> {
        let Some(claim) = self.claims.get(key) else {
            self.provision_queue.forget(&key.to_string());
            self.provision_given_up.lock().remove(key);
            return Ok(());
        };
        if !claim_volume_name(&claim).is_empty() || claim.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(provisioner_name) = claim_provisioner(&claim).map(str::to_string) else { return Ok(()) };
        let Some(provisioner) = self.registry.get(&provisioner_name) else { return Ok(()) };
        let Some(class) = self.claim_class_object(&claim) else { return Ok(()) };
        if class.provisioner != provisioner_name {
            return Ok(());
        }
        let delayed = class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
        if delayed && !has_annotation(&*claim, ANN_SELECTED_NODE) {
            return Ok(());
        }
        let pv_name = format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or_default());
        if self.volumes.get(&pv_name).is_some() {
            return Ok(()); // provisioned already; the PV controller binds it
        }
        // Backoff: a claim update or wake-up does not jump the queue.
        if let Some(at) = self.provision_retry_at.lock().get(key) {
            if Instant::now() < *at {
                return Ok(());
            }
        }
        let version = claim.resource_version().unwrap_or_default();
        if self.provision_given_up.lock().get(key) == Some(&version) {
            return Ok(());
        }
        // Not in the cache; maybe the cache lags: ask before making a second volume.
        if let Some(pv) = self
            .pv_api()
            .get_opt(&pv_name)
            .await
            .map_err(crate::error::api("get", format!("persistentvolume/{pv_name}")))?
        {
            self.volumes.apply(pv);
            self.claim_queue.add(key.to_string());
            return Ok(());
        }
        let selected_node_name = claim.annotations().get(ANN_SELECTED_NODE).cloned();
        let options = ProvisionOptions {
            pv_name: pv_name.clone(),
            claim: (*claim).clone(),
            class: (*class).clone(),
            selected_node: selected_node_name.as_deref().and_then(|n| self.nodes.get(n)).map(|n| (*n).clone()),
            selected_node_name,
            capacity: claim
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage").cloned())
                .unwrap_or_else(|| Quantity("0".into())),
        };
        self.recorder.event(
            &*claim,
            EventType::Normal,
            "Provisioning",
            format!("External provisioner is provisioning volume for claim \"{key}\""),
            PROVISIONER_COMPONENT,
        );
        let mount_options = class.mount_options.clone().unwrap_or_default();
        let result = if !mount_options.is_empty() && !provisioner.supports_mount_options() {
            Err(Error::Provision(format!(
                "Mount options are not supported by the provisioner but StorageClass {:?} has mount options [{}]",
                class.name_any(),
                mount_options.join(" ")
            )))
        } else {
            match provisioner.provision(&options).await {
                Ok(made) => {
                    self.create_provisioned_volume(&options, &provisioner_name, made, provisioner.as_ref()).await
                }
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(pv) => {
                self.provision_queue.forget(&key.to_string());
                self.provision_retry_at.lock().remove(key);
                self.recorder.event(
                    &*claim,
                    EventType::Normal,
                    "ProvisioningSucceeded",
                    format!("Successfully provisioned volume {}", pv.name_any()),
                    PROVISIONER_COMPONENT,
                );
                self.claim_queue.add(key.to_string());
                self.volume_queue.add(pv.name_any());
                self.metrics.provisioned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                let class_name = matching::claim_class(&claim);
                let message = format!("failed to provision volume with StorageClass {class_name:?}: {e}");
                self.recorder.event(&*claim, EventType::Warning, "ProvisioningFailed", message, PROVISIONER_COMPONENT);
                let threshold = self.config.failed_provision_threshold;
                let failures = self.provision_queue.failures(&key.to_string()) + 1;
                if threshold > 0 && failures >= threshold {
                    self.provision_queue.count_failure(key.to_string());
                    self.provision_given_up.lock().insert(key.to_string(), version);
                    let message = format!(
                        "Giving up provisioning volume for claim \"{key}\" after {failures} failures; \
                         edit or recreate the claim to try again"
                    );
                    self.recorder.event(
                        &*claim,
                        EventType::Warning,
                        "ProvisioningFailed",
                        message,
                        PROVISIONER_COMPONENT,
                    );
                    tracing::warn!(claim = %key, failures, "giving up provisioning");
                } else {
                    // Not before the backoff; a little early so the queue's own retry is never turned away.
                    let delay = self.config.provision_backoff.delay(failures).saturating_sub(Duration::from_millis(50));
                    self.provision_retry_at.lock().insert(key.to_string(), Instant::now() + delay);
                    self.provision_queue.add_rate_limited(key.to_string());
                }
                Ok(())
            }
        }
    }

    /// Tells the provisioner its volume now has a PV. A failure only leaves the in-flight mark, which the
    /// abandoned-volume collector clears (the PV exists, so the volume is live).
    async fn volume_committed(&self, provisioner: &dyn Provisioner, pv_name: &str) {
        if let Err(e) = provisioner.volume_created(pv_name).await {
            tracing::warn!(volume = %pv_name, error = %e, "clearing the provisioning mark failed");
        }
    }

    /// Deletes what crashed provisionings left behind: volumes made, marked in flight, whose PV was never
    /// created and whose claim is gone (the claim was deleted while the controller was down). A volume
    /// whose PV or claim exists is kept (and, with its PV, unmarked). Runs once the caches are synced.
    pub async fn collect_abandoned_volumes(self: &Arc<Self>) {
        // Asked per marked volume, after the provisioner has listed its marks: a claim is in the cache
        // before its volume is ever marked (provisioning works from the cache), and a PV made by an earlier
        // run is in the synced cache, so a volume being provisioned now is never taken for abandoned.
        let ctx = Arc::clone(self);
        let state = move |pv_name: &str| {
            if ctx.volumes.get(pv_name).is_some() {
                VolumeState::HasVolume
            } else if pv_name
                .strip_prefix("pvc-")
                .is_some_and(|uid| ctx.claims.list().iter().any(|c| c.metadata.uid.as_deref() == Some(uid)))
            {
                VolumeState::HasClaim
            } else {
                VolumeState::Gone
            }
        };
        for name in self.registry.names() {
            let Some(provisioner) = self.registry.get(&name) else { continue };
            match provisioner.collect_abandoned(&state).await {
                Ok(deleted) if !deleted.is_empty() => {
                    tracing::info!(provisioner = %name, volumes = ?deleted, "deleted volumes abandoned by interrupted provisioning")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(provisioner = %name, error = %e, "collecting abandoned volumes"),
            }
        }
    }

    /// Create the PV, retrying (5 times, 10 s apart, as the library does); if it cannot be created, delete
    /// the volume again so nothing leaks.
    async fn create_provisioned_volume(
        &self,
        options: &ProvisionOptions,
        provisioner_name: &str,
        made: ProvisionedVolume,
        provisioner: &dyn Provisioner,
    ) -> Result<Arc<PersistentVolume>> {
        let pv = build_volume(options, provisioner_name, made);
        let mut last = None;
        for attempt in 0..self.config.create_pv_retries.max(1) {
            if attempt > 0 {
                tokio::time::sleep(self.config.create_pv_interval).await;
            }
            self.metrics.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match self.pv_api().create(&PostParams::default(), &pv).await {
                Ok(created) => {
                    self.volumes.apply(created.clone());
                    self.volume_committed(provisioner, &options.pv_name).await;
                    return Ok(Arc::new(created));
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    // Created by an earlier attempt whose answer was lost.
                    if let Ok(Some(existing)) = self.pv_api().get_opt(&options.pv_name).await {
                        self.volumes.apply(existing.clone());
                        self.volume_committed(provisioner, &options.pv_name).await;
                        return Ok(Arc::new(existing));
                    }
                    last = Some(format!("{s}"));
                }
                Err(e) => {
                    tracing::warn!(volume = %options.pv_name, attempt, error = %e, "creating the provisioned PV failed");
                    last = Some(e.to_string());
                }
            }
        }
        let message = last.unwrap_or_default();
        if let Err(e) = provisioner.delete(&pv).await {
            self.recorder.event(
                &options.claim,
                EventType::Warning,
                "ProvisioningCleanupFailed",
                format!(
                    "Volume {} was provisioned but its PV could not be created, and deleting it failed: {e}",
                    options.pv_name
                ),
                PROVISIONER_COMPONENT,
            );
        }
        Err(Error::Provision(format!("creating PersistentVolume {}: {message}", options.pv_name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::fixtures::{pvc, PvcExt, RWX};

    #[test]
    fn a_provisioned_volume_takes_the_class_policy_and_mount_options_and_is_pre_bound_to_the_claim() {
        let mut class = StorageClass { provisioner: "p".into(), ..Default::default() };
        class.metadata.name = Some("gold".into());
        class.reclaim_policy = Some("Retain".into());
        class.mount_options = Some(vec!["nfsvers=4.1".into()]);
        let claim = pvc("c").modes(&[RWX]).class(Some("gold"));
        let options = ProvisionOptions {
            pv_name: "pvc-uid-c".into(),
            claim: claim.clone(),
            class,
            selected_node: None,
            selected_node_name: None,
            capacity: Quantity("2Gi".into()),
        };
        let pv = build_volume(&options, "p", ProvisionedVolume::default());
        let spec = pv.spec.as_ref().unwrap();
        assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
        assert_eq!(spec.mount_options.as_deref(), Some(&["nfsvers=4.1".to_string()][..]));
        assert_eq!(spec.storage_class_name.as_deref(), Some("gold"));
        assert_eq!(spec.access_modes.as_deref(), Some(&[RWX.to_string()][..]));
        assert_eq!(spec.capacity.as_ref().unwrap()["storage"].0, "2Gi");
        assert_eq!(spec.claim_ref.as_ref().unwrap().uid.as_deref(), Some("uid-c"));
        assert_eq!(pv.annotations().get(ANN_PROVISIONED_BY).map(String::as_str), Some("p"));
        assert!(matching::is_volume_bound_to_claim(&pv, &claim));
    }

    #[test]
    fn a_class_without_reclaim_policy_provisions_with_delete() {
        let mut class = StorageClass { provisioner: "p".into(), ..Default::default() };
        class.metadata.name = Some("c".into());
        let options = ProvisionOptions {
            pv_name: "v".into(),
            claim: pvc("c"),
            class,
            selected_node: None,
            selected_node_name: None,
            capacity: Quantity("1Gi".into()),
        };
        let pv = build_volume(&options, "p", ProvisionedVolume::default());
        assert_eq!(pv.spec.unwrap().persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
    }
}
