//! Admission: what kube-apiserver's admission plugins do to the objects kvol serves. DefaultStorageClass
//! (a claim without a class gets the default one; with several defaults the newest wins, as current
//! Kubernetes does), NamespaceLifecycle (no content in missing or terminating namespaces), NodeRestriction's
//! rules for a node's own Node object, and the pod graceful-deletion rule.

use crate::object::ApiObject;
use crate::registry::store_error;
use crate::status::ApiError;
use crate::ApiState;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kvol_api::names::is_default_class;
use kvol_api::resources::by_kind;
use kvol_api::Resource;
use kvol_store::RangeOptions;
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};

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

/// NodeRestriction (`plugin/pkg/admission/noderestriction/admission.go`) for a node agent writing its own Node
/// (authorization already confined it to that one): it may not add, change or remove labels a node must not
/// steer workloads with (`node-restriction.kubernetes.io/`, and `kubernetes.io`/`k8s.io` labels other than
/// kubelet's own, such as `node-role.kubernetes.io/*`), nor change its taints. `old` is None on create.
pub fn node_restriction<T: ApiObject>(node: &str, obj: &T, old: Option<&T>) -> Result<(), ApiError> {
    let Some(new) = (obj as &dyn Any).downcast_ref::<Node>() else { return Ok(()) };
    let old = old.and_then(|o| (o as &dyn Any).downcast_ref::<Node>());
    let forbidden = |why: String| {
        let name = new.metadata.name.as_deref().unwrap_or_default();
        let mut e = ApiError::forbidden(format!("nodes {name:?} is forbidden: {why}"));
        e.details = Some(serde_json::json!({ "name": name, "kind": "nodes" }));
        e
    };
    let empty = BTreeMap::new();
    let labels = new.metadata.labels.as_ref().unwrap_or(&empty);
    let Some(old) = old else {
        let set = forbidden_node_labels(labels, &empty);
        if !set.is_empty() {
            let list = set.into_iter().collect::<Vec<_>>().join(", ");
            return Err(forbidden(format!("node {node:?} is not allowed to set the following labels: {list}")));
        }
        return Ok(());
    };
    let taints = |n: &Node| n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    if taints(new) != taints(old) {
        return Err(forbidden(format!("node {node:?} is not allowed to modify taints")));
    }
    let set = forbidden_node_labels(labels, old.metadata.labels.as_ref().unwrap_or(&empty));
    if !set.is_empty() {
        let list = set.into_iter().collect::<Vec<_>>().join(", ");
        return Err(forbidden(format!("is not allowed to modify labels: {list}")));
    }
    Ok(())
}

/// The labels that differ between `new` and `old` and that a node may not set itself, sorted (kube's
/// `getForbiddenLabels` over `getModifiedLabels`).
fn forbidden_node_labels<'a>(
    new: &'a BTreeMap<String, String>,
    old: &'a BTreeMap<String, String>,
) -> BTreeSet<&'a str> {
    let modified = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .chain(old.iter().filter(|(k, v)| new.get(*k) != Some(v)))
        .map(|(k, _)| k.as_str());
    let in_domain = |namespace: &str, domain: &str| {
        namespace == domain || namespace.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.'))
    };
    modified
        .filter(|key| {
            let namespace = key.split_once('/').map_or("", |(ns, _)| ns);
            let restricted = in_domain(namespace, "node-restriction.kubernetes.io");
            let kubernetes = in_domain(namespace, "kubernetes.io") || in_domain(namespace, "k8s.io");
            restricted || (kubernetes && !is_kubelet_label(key, namespace))
        })
        .collect()
}

/// Labels kubelet sets on its own Node (`pkg/kubelet/apis/well_known_labels.go`, `IsKubeletLabel`).
fn is_kubelet_label(key: &str, namespace: &str) -> bool {
    const LABELS: [&str; 12] = [
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "node.kubernetes.io/windows-build",
    ];
    const NAMESPACES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];
    LABELS.contains(&key)
        || NAMESPACES.iter().any(|ns| namespace == *ns || namespace.strip_suffix(ns).is_some_and(|r| r.ends_with('.')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_node_may_set_only_kubelets_own_kubernetes_labels() {
        struct Case {
            name: &'static str,
            new: &'static [(&'static str, &'static str)],
            old: &'static [(&'static str, &'static str)],
            forbidden: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "kubelet's labels and foreign domains are fine",
                new: &[
                    ("kubernetes.io/hostname", "n1"),
                    ("kubernetes.io/os", "linux"),
                    ("example.com/x", "y"),
                    ("plain", "z"),
                ],
                old: &[],
                forbidden: &[],
            },
            Case {
                name: "node.kubernetes.io and kubelet.kubernetes.io are kubelet's namespaces",
                new: &[
                    ("node.kubernetes.io/exclude-from-external-load-balancers", ""),
                    ("kubelet.kubernetes.io/x", ""),
                ],
                old: &[],
                forbidden: &[],
            },
            Case {
                name: "a node role is refused",
                new: &[("node-role.kubernetes.io/control-plane", "")],
                old: &[],
                forbidden: &["node-role.kubernetes.io/control-plane"],
            },
            Case {
                name: "node-restriction labels and their subdomains are refused",
                new: &[("node-restriction.kubernetes.io/a", "1"), ("x.node-restriction.kubernetes.io/b", "1")],
                old: &[],
                forbidden: &["node-restriction.kubernetes.io/a", "x.node-restriction.kubernetes.io/b"],
            },
            Case {
                name: "removing or changing a restricted label is refused too",
                new: &[("node-role.kubernetes.io/a", "2")],
                old: &[("node-role.kubernetes.io/a", "1"), ("k8s.io/gone", "")],
                forbidden: &["k8s.io/gone", "node-role.kubernetes.io/a"],
            },
            Case {
                name: "an unchanged restricted label set by an admin is left alone",
                new: &[("node-role.kubernetes.io/a", "1"), ("mine", "new")],
                old: &[("node-role.kubernetes.io/a", "1")],
                forbidden: &[],
            },
            Case {
                name: "a look-alike domain is not kubernetes.io",
                new: &[("notkubernetes.io/a", "1")],
                old: &[],
                forbidden: &[],
            },
        ];
        for c in cases {
            let (new, old) = (labels(c.new), labels(c.old));
            let got: Vec<&str> = forbidden_node_labels(&new, &old).into_iter().collect();
            assert_eq!(got, c.forbidden, "{}", c.name);
        }
    }
}
