//! The provisioner role (external-provisioner + sig-storage-lib-external-provisioner): CreateVolume for
//! claims of this driver's classes and a PV pre-bound to the claim; DeleteVolume for Released PVs it
//! provisioned with reclaim policy Delete.
//!
//! Idempotency: the volume name is `pvc-<claim uid>` both for CreateVolume (idempotent by name in CSI)
//! and for the PV, so a retry or a restart can repeat the call but never makes a second volume or PV.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, Secret, SecretReference, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::{CSINode, StorageClass, VolumeAttachment};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use kvol_api::names::{ANN_BETA_STORAGE_PROVISIONER, ANN_PROVISIONED_BY, ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER};
use kvol_csi::v1::{CreateVolumeRequest, DeleteVolumeRequest, Topology, TopologyRequirement};
use kvol_runtime::WorkQueue;

use crate::capability::{self, Access};
use crate::error::{Error, Result};
use crate::events::EventType;
use crate::params::{ClassParams, SecretKind, TemplateInput};
use crate::run::Ctx;

/// The finalizer the provisioner puts on PVs it creates, removed once the volume is deleted.
pub const FINALIZER: &str = "external-provisioner.volume.kubernetes.io/finalizer";
/// The provisioner secret's name for DeleteVolume, stored on the PV at creation (external-provisioner).
pub const ANN_DELETION_SECRET_NAME: &str = "volume.kubernetes.io/provisioner-deletion-secret-name";
/// The provisioner secret's namespace for DeleteVolume.
pub const ANN_DELETION_SECRET_NAMESPACE: &str = "volume.kubernetes.io/provisioner-deletion-secret-namespace";
/// The claim's class, in the annotation spelling of old clients.
const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// The PV (and volume) name for a claim.
pub fn volume_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.uid().unwrap_or_default())
}

fn claim_object(claim: &PersistentVolumeClaim) -> String {
    format!("PersistentVolumeClaim {}/{}", claim.namespace().unwrap_or_default(), claim.name_any())
}

fn class_name(claim: &PersistentVolumeClaim) -> Option<String> {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .or_else(|| claim.annotations().get(ANN_BETA_STORAGE_CLASS).cloned())
        .filter(|c| !c.is_empty())
}

/// The class to provision `claim` with, if this driver should provision it now (whether its PV exists
/// already is checked by [`provision`], on the API server).
fn should_provision(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Result<Option<Arc<StorageClass>>> {
    let driver = ctx.driver.name.as_str();
    if claim.metadata.deletion_timestamp.is_some()
        || claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).is_some_and(|v| !v.is_empty())
    {
        return Ok(None);
    }
    let annotated = claim
        .annotations()
        .get(ANN_STORAGE_PROVISIONER)
        .or_else(|| claim.annotations().get(ANN_BETA_STORAGE_PROVISIONER))
        .map(String::as_str);
    if annotated.is_some_and(|p| p != driver) {
        return Ok(None);
    }
    let Some(class_name) = class_name(claim) else { return Ok(None) };
    let Some(class) = ctx.class(&class_name) else {
        return match annotated {
            // The claim is ours; its class may just not be in the cache yet.
            Some(_) => Err(Error::NotFound { kind: "StorageClass", name: class_name }),
            None => Ok(None),
        };
    };
    if class.provisioner != driver {
        return Ok(None);
    }
    if class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
        && !claim.annotations().contains_key(ANN_SELECTED_NODE)
    {
        return Ok(None);
    }
    Ok(Some(class))
}

/// Whether a watched claim should be queued for provisioning (or for a retry of a missing class).
pub fn wants_claim(ctx: &Ctx, claim: &PersistentVolumeClaim) -> bool {
    !matches!(should_provision(ctx, claim), Ok(None))
}

/// Whether a watched PV should be queued for deletion (or for its finalizer).
pub fn wants_volume(driver: &str, pv: &PersistentVolume) -> bool {
    volume_action(driver, pv) != VolumeAction::Nothing
}

/// Reconciles one claim (`ns/name`): provision if needed, with the library's retry policy.
pub async fn sync_claim(ctx: Arc<Ctx>, key: String) {
    let claim = match ctx.get_claim(&key).await {
        Ok(Some(claim)) => claim,
        Ok(None) => {
            ctx.claim_queue.forget(&key);
            return;
        }
        Err(e) => {
            retry(&ctx.claim_queue, &key, 0, &e, "claim");
            return;
        }
    };
    let class = match should_provision(&ctx, &claim) {
        Ok(None) => {
            ctx.claim_queue.forget(&key);
            return;
        }
        Ok(Some(class)) => Some(class),
        Err(e) => {
            tracing::info!(claim = %key, error = %e, "not provisioning yet");
            None
        }
    };
    let result = match &class {
        Some(class) => provision(&ctx, &claim, class).await,
        None => Err(Error::NotFound { kind: "StorageClass", name: class_name(&claim).unwrap_or_default() }),
    };
    match result {
        Ok(()) => ctx.claim_queue.forget(&key),
        Err(e) => {
            let class = class_name(&claim).unwrap_or_default();
            ctx.provisioner_events.event(
                &claim,
                EventType::Warning,
                "ProvisioningFailed",
                format!("failed to provision volume with StorageClass {class:?}: {e}"),
            );
            retry(&ctx.claim_queue, &key, ctx.config.failed_provision_threshold, &e, "claim");
        }
    }
}

/// Requeues `key` with backoff unless it failed `threshold` times already (0 = retry forever).
fn retry(queue: &WorkQueue<String>, key: &str, threshold: u32, error: &Error, what: &str) {
    let failures = queue.failures(key);
    if threshold == 0 || failures < threshold {
        let n = queue.add_rate_limited(key);
        tracing::warn!(%key, error = %error, failures = n, "{what} failed; retrying with backoff");
    } else {
        // As the library: Done but not Forget, so a later change of the object tries once more and
        // gives up again. An in-progress CreateVolume may still finish in the driver.
        tracing::error!(%key, error = %error, failures, "giving up syncing {what} because failures >= threshold");
    }
}

async fn secret_data(ctx: &Ctx, reference: &SecretReference) -> Result<HashMap<String, String>> {
    let (name, ns) = (reference.name.clone().unwrap_or_default(), reference.namespace.clone().unwrap_or_default());
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = api.get_opt(&name).await.map_err(|source| Error::Api {
        action: "reading",
        object: format!("Secret {ns}/{name}"),
        source,
    })?;
    let secret = secret.ok_or_else(|| Error::NotFound { kind: "Secret", name: format!("{ns}/{name}") })?;
    let mut out: HashMap<String, String> = HashMap::new();
    for (k, v) in secret.data.unwrap_or_default() {
        let value = String::from_utf8(v.0).map_err(|_| Error::Invalid {
            object: format!("Secret {ns}/{name}"),
            reason: format!("data[{k:?}] is not UTF-8, which CSI secrets must be"),
        })?;
        out.insert(k, value);
    }
    for (k, v) in secret.string_data.unwrap_or_default() {
        out.insert(k, v);
    }
    Ok(out)
}

/// Topology segments a node offers for the driver's topology keys (from its CSINode and labels).
async fn node_segment(ctx: &Ctx, node_name: &str) -> Result<Option<Topology>> {
    let csinodes: Api<CSINode> = Api::all(ctx.client.clone());
    let csinode = csinodes.get_opt(node_name).await.map_err(|source| Error::Api {
        action: "reading",
        object: format!("CSINode {node_name}"),
        source,
    })?;
    let Some(csinode) = csinode else { return Err(Error::NotFound { kind: "CSINode", name: node_name.to_owned() }) };
    let Some(entry) = csinode.spec.drivers.iter().find(|d| d.name == ctx.driver.name) else {
        return Err(Error::Invalid {
            object: format!("CSINode {node_name}"),
            reason: format!(
                "spec.drivers has no entry for {} (the driver is not registered on the node)",
                ctx.driver.name
            ),
        });
    };
    let keys = entry.topology_keys.clone().unwrap_or_default();
    if keys.is_empty() {
        return Ok(None);
    }
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(ctx.client.clone());
    let node = nodes
        .get_opt(node_name)
        .await
        .map_err(|source| Error::Api { action: "reading", object: format!("Node {node_name}"), source })?
        .ok_or_else(|| Error::NotFound { kind: "Node", name: node_name.to_owned() })?;
    let mut segments = HashMap::new();
    for key in keys {
        let value = node.labels().get(&key).ok_or_else(|| Error::Invalid {
            object: format!("Node {node_name}"),
            reason: format!("has no label {key:?}, a topology key of {}", ctx.driver.name),
        })?;
        segments.insert(key, value.clone());
    }
    Ok(Some(Topology { segments }))
}

/// The accessibility requirements: the selected node's segment for WaitForFirstConsumer claims, else
/// the class's allowedTopologies, else every registered node's segment (preferred rotated per volume so
/// volumes spread).
async fn accessibility(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
) -> Result<Option<TopologyRequirement>> {
    if !ctx.driver.caps.accessibility_constraints {
        return Ok(None);
    }
    if let Some(node) = claim.annotations().get(ANN_SELECTED_NODE) {
        return Ok(node_segment(ctx, node)
            .await?
            .map(|t| TopologyRequirement { requisite: vec![t.clone()], preferred: vec![t] }));
    }
    let mut requisite: Vec<Topology> = Vec::new();
    if let Some(terms) = class.allowed_topologies.as_ref().filter(|t| !t.is_empty()) {
        for term in terms {
            let mut product: Vec<HashMap<String, String>> = vec![HashMap::new()];
            for expr in term.match_label_expressions.iter().flatten() {
                product = product
                    .into_iter()
                    .flat_map(|seg| {
                        expr.values.iter().map(move |v| {
                            let mut s = seg.clone();
                            s.insert(expr.key.clone(), v.clone());
                            s
                        })
                    })
                    .collect();
            }
            requisite.extend(product.into_iter().filter(|s| !s.is_empty()).map(|segments| Topology { segments }));
        }
    } else {
        let csinodes: Api<CSINode> = Api::all(ctx.client.clone());
        let list = csinodes.list(&ListParams::default()).await.map_err(|source| Error::Api {
            action: "listing",
            object: "CSINodes".into(),
            source,
        })?;
        for csinode in list.items.iter().filter(|n| n.spec.drivers.iter().any(|d| d.name == ctx.driver.name)) {
            match node_segment(ctx, &csinode.name_any()).await {
                Ok(Some(t)) => requisite.push(t),
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "node skipped for topology"),
            }
        }
    }
    let mut seen = BTreeSet::new();
    requisite
        .retain(|t| seen.insert(t.segments.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>()));
    if requisite.is_empty() {
        return Ok(None);
    }
    let mut preferred = requisite.clone();
    let shift = volume_name(claim).bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    let len = preferred.len();
    preferred.rotate_left(shift % len);
    Ok(Some(TopologyRequirement { requisite, preferred }))
}

/// PV node affinity from the topology the driver reports for the volume.
fn node_affinity(topology: &[Topology]) -> Option<VolumeNodeAffinity> {
    let terms: Vec<NodeSelectorTerm> = topology
        .iter()
        .filter(|t| !t.segments.is_empty())
        .map(|t| {
            let sorted: BTreeMap<_, _> = t.segments.iter().collect();
            NodeSelectorTerm {
                match_expressions: Some(
                    sorted
                        .into_iter()
                        .map(|(k, v)| NodeSelectorRequirement {
                            key: k.clone(),
                            operator: "In".into(),
                            values: Some(vec![v.clone()]),
                        })
                        .collect(),
                ),
                match_fields: None,
            }
        })
        .collect();
    (!terms.is_empty()).then_some(VolumeNodeAffinity { required: Some(NodeSelector { node_selector_terms: terms }) })
}

async fn provision(ctx: &Ctx, claim: &PersistentVolumeClaim, class: &StorageClass) -> Result<()> {
    let object = claim_object(claim);
    // The cache may not show a PV this role just created: ask the API server before provisioning.
    let pv_name = volume_name(claim);
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match pvs.get_opt(&pv_name).await {
        Ok(Some(_)) => return Ok(()),
        Ok(None) => {}
        Err(source) => {
            return Err(Error::Api { action: "reading", object: format!("PersistentVolume {pv_name}"), source })
        }
    }
    let invalid = |reason: String| Error::Invalid { object: object.clone(), reason };
    let class_object = format!("StorageClass {}", class.name_any());
    let params = ClassParams::try_from(&class.parameters.clone().unwrap_or_default())
        .map_err(|reason| Error::Invalid { object: class_object.clone(), reason })?;
    let spec = claim.spec.clone().unwrap_or_default();
    let resources = spec.resources.clone().unwrap_or_default();
    let required = capability::storage(resources.requests.as_ref(), "spec.resources.requests")
        .map_err(&invalid)?
        .ok_or_else(|| invalid("spec.resources.requests.storage is required".into()))?;
    let limit = capability::storage(resources.limits.as_ref(), "spec.resources.limits").map_err(&invalid)?.unwrap_or(0);
    let access_modes = spec.access_modes.clone().unwrap_or_default();
    let access = Access::new(spec.volume_mode.as_deref(), params.fs_type.as_deref(), class.mount_options.as_ref());
    let capabilities = capability::for_create(&access_modes, &access, ctx.driver.caps.single_node_multi_writer)
        .map_err(|r| invalid(format!("spec.{r}")))?;
    let input = TemplateInput {
        pv_name: &pv_name,
        pvc_name: claim.metadata.name.as_deref(),
        pvc_namespace: claim.metadata.namespace.as_deref(),
        pvc_annotations: claim.metadata.annotations.as_ref(),
    };
    let mut refs: HashMap<SecretKind, SecretReference> = HashMap::new();
    for (kind, template) in &params.secrets {
        let reference = template
            .resolve(*kind, &input)
            .map_err(|reason| Error::Invalid { object: class_object.clone(), reason })?;
        refs.insert(*kind, reference);
    }
    let secrets = match refs.get(&SecretKind::Provisioner) {
        Some(r) => secret_data(ctx, r).await?,
        None => HashMap::new(),
    };
    let accessibility_requirements = accessibility(ctx, claim, class).await?;

    ctx.provisioner_events.event(
        claim,
        EventType::Normal,
        "Provisioning",
        format!(
            "External provisioner is provisioning volume for claim {:?}",
            format!("{}/{}", claim.namespace().unwrap_or_default(), claim.name_any())
        ),
    );
    let request = CreateVolumeRequest {
        name: pv_name.clone(),
        capacity_range: Some(kvol_csi::v1::CapacityRange { required_bytes: required, limit_bytes: limit }),
        volume_capabilities: capabilities,
        parameters: params.driver.clone(),
        secrets,
        volume_content_source: None,
        accessibility_requirements,
        mutable_parameters: HashMap::new(),
    };
    let secrets_for_cleanup = request.secrets.clone();
    let volume = ctx.driver.create_volume(&object, request).await?;
    let capacity = if volume.capacity_bytes == 0 { required } else { volume.capacity_bytes };
    if capacity < required {
        let e = Error::BadReply {
            call: "CreateVolume",
            object: object.clone(),
            reason: format!("capacity_bytes {capacity} is less than the requested {required}"),
        };
        cleanup(ctx, &pv_name, &volume.volume_id, secrets_for_cleanup).await;
        return Err(e);
    }

    let mut annotations = BTreeMap::from([(ANN_PROVISIONED_BY.to_owned(), ctx.driver.name.clone())]);
    if let Some(r) = refs.get(&SecretKind::Provisioner) {
        annotations.insert(ANN_DELETION_SECRET_NAME.into(), r.name.clone().unwrap_or_default());
        annotations.insert(ANN_DELETION_SECRET_NAMESPACE.into(), r.namespace.clone().unwrap_or_default());
    }
    let fs_type = match &access {
        Access::Mount { fs_type, .. } if !fs_type.is_empty() => Some(fs_type.clone()),
        _ => None,
    };
    let pv = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(pv_name.clone()),
            annotations: Some(annotations),
            finalizers: Some(vec![FINALIZER.to_owned()]),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(access_modes),
            capacity: Some(BTreeMap::from([("storage".to_owned(), capability::quantity(capacity))])),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                name: claim.metadata.name.clone(),
                namespace: claim.metadata.namespace.clone(),
                uid: claim.metadata.uid.clone(),
                resource_version: claim.metadata.resource_version.clone(),
                field_path: None,
            }),
            persistent_volume_reclaim_policy: Some(class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into())),
            storage_class_name: Some(class.name_any()),
            mount_options: class.mount_options.clone().filter(|m| !m.is_empty()),
            volume_mode: spec.volume_mode.clone(),
            node_affinity: node_affinity(&volume.accessible_topology),
            csi: Some(CSIPersistentVolumeSource {
                driver: ctx.driver.name.clone(),
                volume_handle: volume.volume_id.clone(),
                fs_type,
                read_only: None,
                volume_attributes: Some(volume.volume_context.clone().into_iter().collect())
                    .filter(|m: &BTreeMap<String, String>| !m.is_empty()),
                controller_publish_secret_ref: refs.get(&SecretKind::ControllerPublish).cloned(),
                node_stage_secret_ref: refs.get(&SecretKind::NodeStage).cloned(),
                node_publish_secret_ref: refs.get(&SecretKind::NodePublish).cloned(),
                controller_expand_secret_ref: refs.get(&SecretKind::ControllerExpand).cloned(),
                node_expand_secret_ref: refs.get(&SecretKind::NodeExpand).cloned(),
            }),
            ..Default::default()
        }),
        status: None,
    };

    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let mut last_error = None;
    for attempt in 0..ctx.config.create_pv_retries.max(1) {
        if attempt > 0 {
            tokio::time::sleep(ctx.config.create_pv_interval).await;
        }
        match api.create(&PostParams::default(), &pv).await {
            Ok(_) => {
                last_error = None;
                break;
            }
            Err(e) if crate::error::api_status(&e) == Some(409) => {
                // Created by an earlier attempt whose answer was lost: ours if it points at this claim.
                match api.get_opt(&pv_name).await {
                    Ok(Some(existing))
                        if existing.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).and_then(|c| c.uid.as_ref())
                            == claim.metadata.uid.as_ref() =>
                    {
                        last_error = None;
                        break;
                    }
                    Ok(_) => {
                        return Err(Error::Invalid {
                            object: format!("PersistentVolume {pv_name}"),
                            reason: format!("exists and is not bound to {object}"),
                        })
                    }
                    Err(source) => {
                        last_error = Some(Error::Api {
                            action: "reading",
                            object: format!("PersistentVolume {pv_name}"),
                            source,
                        })
                    }
                }
            }
            Err(source) => {
                tracing::warn!(pv = %pv_name, error = %source, attempt, "creating the PersistentVolume failed");
                last_error =
                    Some(Error::Api { action: "creating", object: format!("PersistentVolume {pv_name}"), source });
            }
        }
    }
    if let Some(e) = last_error {
        // The library deletes the volume rather than leak it when its PV cannot be saved.
        cleanup(ctx, &pv_name, &volume.volume_id, secrets_for_cleanup).await;
        return Err(e);
    }
    tracing::info!(claim = %object, pv = %pv_name, volume = %volume.volume_id, capacity, "provisioned");
    ctx.provisioner_events.event(
        claim,
        EventType::Normal,
        "ProvisioningSucceeded",
        format!("Successfully provisioned volume {pv_name}"),
    );
    Ok(())
}

/// Deletes a volume whose PV could not be made.
async fn cleanup(ctx: &Ctx, pv_name: &str, volume_id: &str, secrets: HashMap<String, String>) {
    let req = DeleteVolumeRequest { volume_id: volume_id.to_owned(), secrets };
    if let Err(e) = ctx.driver.delete_volume(&format!("volume {volume_id} of {pv_name}"), req).await {
        tracing::error!(pv = %pv_name, volume = %volume_id, error = %e, "could not delete the volume again: it may leak");
    }
}

fn has_finalizer(pv: &PersistentVolume) -> bool {
    pv.finalizers().iter().any(|f| f == FINALIZER)
}

/// What the deleter should do with a PV.
#[derive(Debug, PartialEq, Eq)]
enum VolumeAction {
    Nothing,
    /// DeleteVolume, then drop the finalizer and delete the PV.
    Delete,
    /// Only drop the finalizer (a retained volume's PV is being deleted).
    RemoveFinalizer,
}

fn volume_action(driver: &str, pv: &PersistentVolume) -> VolumeAction {
    let spec = pv.spec.as_ref();
    let ours = spec.and_then(|s| s.csi.as_ref()).is_some_and(|c| c.driver == driver)
        && pv.annotations().get(ANN_PROVISIONED_BY).is_some_and(|p| p == driver);
    // A PV being deleted whose volume this role already deleted (its finalizer is gone) is left alone, as
    // external-provisioner's `shouldDelete` does: the PV lingers for pv-protection, and every update of it
    // would otherwise call DeleteVolume again.
    if !ours || (pv.metadata.deletion_timestamp.is_some() && !has_finalizer(pv)) {
        return VolumeAction::Nothing;
    }
    let policy = spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref()).unwrap_or("Delete");
    let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    match (policy, phase) {
        ("Delete", "Released") => VolumeAction::Delete,
        ("Delete", _) => VolumeAction::Nothing,
        _ if pv.metadata.deletion_timestamp.is_some() && has_finalizer(pv) => VolumeAction::RemoveFinalizer,
        _ => VolumeAction::Nothing,
    }
}

/// Reconciles one PV by name: Delete reclaim of a released volume this driver provisioned.
pub async fn sync_volume(ctx: Arc<Ctx>, name: String) {
    let pv = match ctx.get_volume(&name).await {
        Ok(Some(pv)) => pv,
        Ok(None) => {
            ctx.volume_queue.forget(&name);
            return;
        }
        Err(e) => {
            retry(&ctx.volume_queue, &name, 0, &e, "volume deletion");
            return;
        }
    };
    let result = match volume_action(&ctx.driver.name, &pv) {
        VolumeAction::Nothing => {
            ctx.volume_queue.forget(&name);
            return;
        }
        VolumeAction::RemoveFinalizer => remove_finalizer(&ctx, &pv).await,
        VolumeAction::Delete => delete(&ctx, &pv).await,
    };
    match result {
        Ok(()) => ctx.volume_queue.forget(&name),
        Err(e) => {
            ctx.provisioner_events.event(&pv, EventType::Warning, "VolumeFailedDelete", e.to_string());
            retry(&ctx.volume_queue, &name, ctx.config.failed_delete_threshold, &e, "volume deletion");
        }
    }
}

async fn delete(ctx: &Ctx, pv: &PersistentVolume) -> Result<()> {
    let name = pv.name_any();
    let object = format!("PersistentVolume {name}");
    // A volume still attached somewhere must be detached first (external-provisioner checks this too).
    let attachments: Api<VolumeAttachment> = Api::all(ctx.client.clone());
    let list = attachments.list(&ListParams::default()).await.map_err(|source| Error::Api {
        action: "listing",
        object: "VolumeAttachments".into(),
        source,
    })?;
    if let Some(va) =
        list.items.iter().find(|va| va.spec.source.persistent_volume_name.as_deref() == Some(name.as_str()))
    {
        return Err(Error::Invalid {
            object: object.clone(),
            reason: format!("is still attached to node {} (VolumeAttachment {})", va.spec.node_name, va.name_any()),
        });
    }
    let handle = pv.spec.as_ref().and_then(|s| s.csi.as_ref()).map(|c| c.volume_handle.clone()).unwrap_or_default();
    let secret_ref =
        match (pv.annotations().get(ANN_DELETION_SECRET_NAME), pv.annotations().get(ANN_DELETION_SECRET_NAMESPACE)) {
            (Some(n), Some(ns)) => Some(SecretReference { name: Some(n.clone()), namespace: Some(ns.clone()) }),
            _ => None,
        };
    let secrets = match &secret_ref {
        Some(r) => secret_data(ctx, r).await?,
        None => HashMap::new(),
    };
    ctx.driver.delete_volume(&object, DeleteVolumeRequest { volume_id: handle, secrets }).await?;
    tracing::info!(pv = %name, "volume deleted");
    if has_finalizer(pv) {
        remove_finalizer(ctx, pv).await?;
    }
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if crate::error::api_status(&e) == Some(404) => Ok(()),
        Err(source) => Err(Error::Api { action: "deleting", object, source }),
    }
}

async fn remove_finalizer(ctx: &Ctx, pv: &PersistentVolume) -> Result<()> {
    let name = pv.name_any();
    let remaining: Vec<&String> = pv.finalizers().iter().filter(|f| *f != FINALIZER).collect();
    let patch = serde_json::json!({
        "metadata": { "finalizers": remaining, "resourceVersion": pv.resource_version() }
    });
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(e) if crate::error::api_status(&e) == Some(404) => Ok(()),
        Err(source) => {
            Err(Error::Api { action: "removing the finalizer of", object: format!("PersistentVolume {name}"), source })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeStatus;

    fn pv(driver: &str, provisioned_by: &str, policy: &str, phase: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pvc-1".into()),
                annotations: Some(BTreeMap::from([(ANN_PROVISIONED_BY.into(), provisioned_by.into())])),
                finalizers: Some(vec![FINALIZER.into()]),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                persistent_volume_reclaim_policy: Some(policy.into()),
                csi: Some(CSIPersistentVolumeSource {
                    driver: driver.into(),
                    volume_handle: "v".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus { phase: Some(phase.into()), ..Default::default() }),
        }
    }

    #[test]
    fn deletes_only_released_volumes_it_provisioned_with_delete_policy() {
        struct Case {
            pv: PersistentVolume,
            want: VolumeAction,
        }
        let cases = [
            Case { pv: pv("d", "d", "Delete", "Released"), want: VolumeAction::Delete },
            Case { pv: pv("d", "d", "Delete", "Bound"), want: VolumeAction::Nothing },
            Case { pv: pv("d", "other", "Delete", "Released"), want: VolumeAction::Nothing },
            Case { pv: pv("other", "d", "Delete", "Released"), want: VolumeAction::Nothing },
            Case { pv: pv("d", "d", "Retain", "Released"), want: VolumeAction::Nothing },
        ];
        for case in cases {
            assert_eq!(volume_action("d", &case.pv), case.want);
        }
        let deleting = |policy| {
            let mut pv = pv("d", "d", policy, "Released");
            pv.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));
            pv
        };
        assert_eq!(volume_action("d", &deleting("Retain")), VolumeAction::RemoveFinalizer);
        assert_eq!(volume_action("d", &deleting("Delete")), VolumeAction::Delete, "deleted before its volume");
        // DeleteVolume succeeded and the finalizer went; the PV waits for pv-protection: no second call.
        let mut deleted = deleting("Delete");
        deleted.metadata.finalizers = Some(vec!["kubernetes.io/pv-protection".into()]);
        assert_eq!(volume_action("d", &deleted), VolumeAction::Nothing);
    }

    #[test]
    fn node_affinity_has_one_term_per_topology_segment() {
        let t = Topology { segments: HashMap::from([("topology.csi.kvol.io/node".to_string(), "n1".to_string())]) };
        let affinity = node_affinity(&[t]).unwrap();
        let terms = affinity.required.unwrap().node_selector_terms;
        assert_eq!(terms.len(), 1);
        let expr = &terms[0].match_expressions.as_ref().unwrap()[0];
        assert_eq!((expr.key.as_str(), expr.operator.as_str()), ("topology.csi.kvol.io/node", "In"));
        assert_eq!(expr.values.as_deref(), Some(&["n1".to_string()][..]));
        assert!(node_affinity(&[]).is_none());
    }
}
