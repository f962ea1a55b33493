//! The creation and update rules of kube-apiserver's registry strategies (`pkg/registry/*/strategy.go`):
//! what the server itself sets or resets on an object, independent of what the client sent.
//!
//! On create, status is the server's: a new PV or PVC starts `Pending`, a Pod `Pending` with its QoS class,
//! a Namespace `Active`. On an update of the main resource the client cannot change status, and on an update
//! of the `status` subresource it cannot change anything else. A Secret's write-only `stringData` is merged
//! into `data` here, as kube's conversion does.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::storage::v1 as storage;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::ByteString;
use std::collections::{BTreeMap, BTreeSet};

/// What the server sets on a new object before validation (kube's `PrepareForCreate`).
pub trait PrepareForCreate {
    /// Reset server-owned fields of a new object.
    fn prepare_for_create(&mut self);
}

/// What the server keeps from the stored object on an update (kube's `PrepareForUpdate`).
pub trait PrepareForUpdate {
    /// An update of the main resource: server-owned fields (status) come from `old`.
    fn prepare_for_update(&mut self, old: &Self);
    /// An update of the `status` subresource: everything but status comes from `old`. Kinds without a status
    /// subresource keep the default, which changes nothing.
    fn prepare_for_status_update(&mut self, old: &Self) {
        let _ = old;
    }
}

/// A pod's QoS class (`GetPodQOS`): `Guaranteed` when every container limits cpu and memory and requests equal
/// limits, `BestEffort` when nothing requests or limits cpu or memory, `Burstable` otherwise.
pub fn pod_qos_class(spec: &core::PodSpec) -> &'static str {
    let mut requests: BTreeMap<&str, crate::quantity::ParsedQuantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, crate::quantity::ParsedQuantity> = BTreeMap::new();
    let mut guaranteed = true;
    let positive = |q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
        crate::quantity::parse(q).ok().filter(|p| !p.is_zero() && !p.is_negative())
    };
    let add = |map: &mut BTreeMap<&str, crate::quantity::ParsedQuantity>,
               name: &'static str,
               q: crate::quantity::ParsedQuantity| {
        let sum = match map.remove(name) {
            // Sums only feed equality checks; milli precision is what kube compares in practice.
            Some(prev) => {
                crate::quantity::parse_quantity(&format!("{}m", prev.milli_value() + q.milli_value())).unwrap_or(q)
            }
            None => q,
        };
        map.insert(name, sum);
    };
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        let r = c.resources.clone().unwrap_or_default();
        let mut limited = BTreeSet::new();
        for name in ["cpu", "memory"] {
            if let Some(q) = r.requests.as_ref().and_then(|m| m.get(name)).and_then(positive) {
                add(&mut requests, name, q);
            }
            if let Some(q) = r.limits.as_ref().and_then(|m| m.get(name)).and_then(positive) {
                limited.insert(name);
                add(&mut limits, name, q);
            }
        }
        if limited.len() != 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed {
        let equal = requests.iter().all(|(k, v)| limits.get(k) == Some(v));
        if equal && requests.len() == limits.len() {
            return "Guaranteed";
        }
    }
    "Burstable"
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

impl PrepareForCreate for core::PersistentVolume {
    fn prepare_for_create(&mut self) {
        self.status = Some(core::PersistentVolumeStatus {
            phase: Some("Pending".into()),
            last_phase_transition_time: Some(now()),
            ..Default::default()
        });
    }
}

impl PrepareForCreate for core::PersistentVolumeClaim {
    fn prepare_for_create(&mut self) {
        self.status = Some(core::PersistentVolumeClaimStatus { phase: Some("Pending".into()), ..Default::default() });
    }
}

impl PrepareForCreate for core::Pod {
    fn prepare_for_create(&mut self) {
        let qos = self.spec.as_ref().map_or("BestEffort", pod_qos_class);
        self.status =
            Some(core::PodStatus { phase: Some("Pending".into()), qos_class: Some(qos.into()), ..Default::default() });
    }
}

impl PrepareForCreate for core::Namespace {
    fn prepare_for_create(&mut self) {
        self.status = Some(core::NamespaceStatus { phase: Some("Active".into()), ..Default::default() });
        let spec = self.spec.get_or_insert_with(Default::default);
        let finalizers = spec.finalizers.get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == "kubernetes") {
            finalizers.push("kubernetes".into());
        }
    }
}

impl PrepareForCreate for storage::VolumeAttachment {
    fn prepare_for_create(&mut self) {
        self.status = None;
    }
}

/// Merge `stringData` into `data` (string values win) and drop it, as kube's v1 → internal conversion does.
pub fn merge_secret_string_data(secret: &mut core::Secret) {
    if let Some(strings) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (k, v) in strings {
            data.insert(k, ByteString(v.into_bytes()));
        }
    }
}

impl PrepareForCreate for core::Secret {
    fn prepare_for_create(&mut self) {
        merge_secret_string_data(self);
    }
}

macro_rules! nothing_on_create {
    ($($t:ty),*) => {$(
        impl PrepareForCreate for $t {
            fn prepare_for_create(&mut self) {}
        }
    )*};
}

nothing_on_create!(
    core::ConfigMap,
    core::Node,
    core::Event,
    storage::StorageClass,
    storage::CSIDriver,
    storage::CSINode
);

macro_rules! status_subresource {
    ($t:ty) => {
        impl PrepareForUpdate for $t {
            fn prepare_for_update(&mut self, old: &Self) {
                self.status = old.status.clone();
            }
            fn prepare_for_status_update(&mut self, old: &Self) {
                let status = self.status.take();
                let metadata = self.metadata.clone();
                *self = old.clone();
                self.status = status;
                // Labels, annotations and finalizers travel with a status update as in kube; identity does not.
                self.metadata.labels = metadata.labels;
                self.metadata.annotations = metadata.annotations;
                self.metadata.finalizers = metadata.finalizers;
                self.metadata.resource_version = metadata.resource_version;
            }
        }
    };
}

status_subresource!(core::PersistentVolume);
status_subresource!(core::PersistentVolumeClaim);
status_subresource!(core::Pod);
status_subresource!(core::Node);
status_subresource!(storage::VolumeAttachment);

impl PrepareForUpdate for core::Namespace {
    fn prepare_for_update(&mut self, old: &Self) {
        // Finalizers change only through the `finalize` subresource.
        self.spec = old.spec.clone();
        self.status = old.status.clone();
    }
    fn prepare_for_status_update(&mut self, old: &Self) {
        self.spec = old.spec.clone();
    }
}

impl PrepareForUpdate for core::Secret {
    fn prepare_for_update(&mut self, _old: &Self) {
        merge_secret_string_data(self);
    }
}

macro_rules! nothing_on_update {
    ($($t:ty),*) => {$(
        impl PrepareForUpdate for $t {
            fn prepare_for_update(&mut self, _old: &Self) {}
        }
    )*};
}

nothing_on_update!(core::ConfigMap, core::Event, storage::StorageClass, storage::CSIDriver, storage::CSINode);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(containers: serde_json::Value) -> core::PodSpec {
        serde_json::from_value(json!({"containers": containers})).expect("spec")
    }

    #[test]
    fn computes_the_qos_class_like_kube() {
        let cases = [
            ("no resources is best effort", json!([{"name": "a"}]), "BestEffort"),
            (
                "requests alone are burstable",
                json!([{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]),
                "Burstable",
            ),
            (
                "equal requests and limits are guaranteed",
                json!([{"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1Gi"}}}]),
                "Guaranteed",
            ),
            (
                "requests below limits are burstable",
                json!([{"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]),
                "Burstable",
            ),
            (
                "one container without limits makes the pod burstable",
                json!([{"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}, {"name": "b"}]),
                "Burstable",
            ),
            (
                "other resources do not count",
                json!([{"name": "a", "resources": {"requests": {"ephemeral-storage": "1Gi"}}}]),
                "BestEffort",
            ),
        ];
        for (name, containers, want) in cases {
            assert_eq!(pod_qos_class(&spec(containers)), want, "{name}");
        }
    }

    #[test]
    fn sets_initial_status_on_create() {
        let mut pv = core::PersistentVolume {
            status: Some(core::PersistentVolumeStatus { phase: Some("Bound".into()), ..Default::default() }),
            ..Default::default()
        };
        pv.prepare_for_create();
        assert_eq!(pv.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Pending"));
        let mut pvc = core::PersistentVolumeClaim::default();
        pvc.prepare_for_create();
        assert_eq!(pvc.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Pending"));
        let mut pod = core::Pod { spec: Some(spec(json!([{"name": "a"}]))), ..Default::default() };
        pod.prepare_for_create();
        let status = pod.status.as_ref().expect("status");
        assert_eq!((status.phase.as_deref(), status.qos_class.as_deref()), (Some("Pending"), Some("BestEffort")));
        let mut ns = core::Namespace::default();
        ns.prepare_for_create();
        assert_eq!(ns.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Active"));
        assert_eq!(ns.spec.as_ref().and_then(|s| s.finalizers.clone()), Some(vec!["kubernetes".to_string()]));
    }

    #[test]
    fn keeps_status_on_update_and_spec_on_status_update() {
        let old: core::PersistentVolumeClaim = serde_json::from_value(
            json!({"metadata": {"name": "c"}, "spec": {"volumeName": "a"}, "status": {"phase": "Bound"}}),
        )
        .expect("old");
        let mut new: core::PersistentVolumeClaim = serde_json::from_value(
            json!({"metadata": {"name": "c"}, "spec": {"volumeName": "a"}, "status": {"phase": "Lost"}}),
        )
        .expect("new");
        new.prepare_for_update(&old);
        assert_eq!(new.status, old.status);
        let mut status: core::PersistentVolumeClaim = serde_json::from_value(
            json!({"metadata": {"name": "c"}, "spec": {"volumeName": "b"}, "status": {"phase": "Lost"}}),
        )
        .expect("status");
        status.prepare_for_status_update(&old);
        assert_eq!(status.spec, old.spec);
        assert_eq!(status.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Lost"));
    }

    #[test]
    fn merges_secret_string_data_into_data() {
        let mut s: core::Secret =
            serde_json::from_value(json!({"data": {"a": "MQ=="}, "stringData": {"a": "2", "b": "3"}})).expect("secret");
        s.prepare_for_create();
        let data = s.data.expect("data");
        assert_eq!(data.get("a").map(|b| b.0.clone()), Some(b"2".to_vec()));
        assert_eq!(data.get("b").map(|b| b.0.clone()), Some(b"3".to_vec()));
        assert!(s.string_data.is_none());
    }
}
