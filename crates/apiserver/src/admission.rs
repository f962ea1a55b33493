//! Admission: what kube-apiserver's admission plugins do to the objects kvol serves. DefaultStorageClass
//! (a claim without a class gets the default one; with several defaults the newest wins, as current
//! Kubernetes does), NamespaceLifecycle (no content in missing or terminating namespaces), and the pod
//! graceful-deletion rule.

use crate::object::ApiObject;
use crate::registry::store_error;
use crate::status::ApiError;
use crate::ApiState;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kvol_api::names::is_default_class;
use kvol_api::resources::by_kind;
use kvol_api::Resource;
use kvol_store::RangeOptions;
use std::any::Any;

/// Mutating admission on create.
pub async fn admit_create<T: ApiObject>(state: &ApiState, _resource: &Resource, obj: &mut T) -> Result<(), ApiError> {
    if let Some(pvc) = (obj as &mut dyn Any).downcast_mut::<PersistentVolumeClaim>() {
        default_storage_class(state, pvc)?;
    }
    Ok(())
}

/// The class `storageclass.kubernetes.io/is-default-class: "true"` names; the newest when several do
/// (creation time, then name ascending), as `pkg/volume/util/storageclass.go GetDefaultClass`.
pub fn default_class(state: &ApiState) -> Result<Option<StorageClass>, ApiError> {
    let sc = by_kind("storage.k8s.io/v1", "StorageClass").expect("StorageClass is served");
    let list = state.store.range(&sc.key_prefix(), &RangeOptions::default()).map_err(|e| store_error(sc, "", e))?;
    let mut defaults: Vec<StorageClass> = list
        .kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice::<StorageClass>(&kv.value).ok())
        .filter(|c| is_default_class(c.metadata.annotations.as_ref()))
        .collect();
    defaults.sort_by(|a, b| {
        let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
        tb.cmp(&ta).then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    Ok(defaults.into_iter().next())
}

fn default_storage_class(state: &ApiState, pvc: &mut PersistentVolumeClaim) -> Result<(), ApiError> {
    let has_class = pvc.spec.as_ref().is_some_and(|s| s.storage_class_name.is_some())
        || pvc.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("volume.beta.kubernetes.io/storage-class"));
    if has_class {
        return Ok(());
    }
    if let Some(class) = default_class(state)? {
        let name = class.metadata.name.unwrap_or_default();
        tracing::debug!(claim = ?pvc.metadata.name, class = %name, "defaulting storage class");
        pvc.spec.get_or_insert_with(Default::default).storage_class_name = Some(name);
    }
    Ok(())
}

/// NamespaceLifecycle: namespaced objects may only be created in a namespace that exists and is not
/// terminating.
pub async fn require_namespace(state: &ApiState, namespace: &str) -> Result<(), ApiError> {
    let ns_resource = by_kind("v1", "Namespace").expect("Namespace is served");
    let kv = state.store.get(&ns_resource.key(None, namespace)).map_err(|e| store_error(ns_resource, namespace, e))?;
    let Some(kv) = kv else { return Err(ApiError::not_found(ns_resource, namespace)) };
    let ns: Namespace = serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(e.to_string()))?;
    if ns.metadata.deletion_timestamp.is_some() {
        return Err(ApiError::forbidden(format!(
            "unable to create new content in namespace {namespace} because it is being terminated"
        )));
    }
    Ok(())
}

/// How long a delete should wait (`Some(seconds)`) before the object goes: only pods bound to a node and
/// not finished get a grace period, which their node agent ends; everything else is deleted at once.
pub fn graceful_deletion_seconds<T: ApiObject>(_resource: &Resource, obj: &T, requested: Option<i64>) -> Option<i64> {
    let pod = (obj as &dyn Any).downcast_ref::<Pod>()?;
    let spec = pod.spec.as_ref()?;
    spec.node_name.as_ref().filter(|n| !n.is_empty())?;
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    if matches!(phase, "Succeeded" | "Failed") {
        return None;
    }
    let grace = requested.or(spec.termination_grace_period_seconds).unwrap_or(30);
    // A negative period means the shortest graceful one, as kube's pod strategy (`CheckGracefulDelete`) has it.
    (grace != 0).then_some(grace.max(1))
}

/// The namespaces every cluster needs; kube-apiserver refuses to delete them.
const IMMORTAL_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

/// Validating admission on delete (NamespaceLifecycle): the system namespaces may not be deleted.
pub fn admit_delete<T: ApiObject>(resource: &Resource, obj: &T) -> Result<(), ApiError> {
    if (obj as &dyn Any).downcast_ref::<Namespace>().is_some() {
        let name = obj.metadata().name.as_deref().unwrap_or_default();
        if IMMORTAL_NAMESPACES.contains(&name) {
            let mut e =
                ApiError::forbidden(format!("namespace {name} is forbidden: this namespace may not be deleted"));
            e.details = Some(serde_json::json!({ "name": name, "kind": resource.plural }));
            return Err(e);
        }
    }
    Ok(())
}

/// Whether something other than `metadata.finalizers` holds a deleted object: a namespace's
/// `spec.finalizers` (the `kubernetes` finalizer the namespace controller removes once the namespace is empty).
pub fn held_by_spec<T: ApiObject>(obj: &T) -> bool {
    (obj as &dyn Any)
        .downcast_ref::<Namespace>()
        .and_then(|ns| ns.spec.as_ref()?.finalizers.as_ref())
        .is_some_and(|f| !f.is_empty())
}

/// What marking an object for deletion changes besides `deletionTimestamp`: a namespace turns Terminating.
pub fn mark_deleting<T: ApiObject>(obj: &mut T) {
    if let Some(ns) = (obj as &mut dyn Any).downcast_mut::<Namespace>() {
        ns.status.get_or_insert_with(Default::default).phase = Some("Terminating".into());
    }
}
