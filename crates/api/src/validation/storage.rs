//! storage.k8s.io/v1 validation (`pkg/apis/storage/validation`): StorageClass, VolumeAttachment, CSIDriver
//! and CSINode, with the immutability rules their controllers rely on (a class's parameters, provisioner,
//! reclaimPolicy and volumeBindingMode; an attachment's spec; a driver's attach mode).

use super::meta::{invalid_each, validate_object_meta, validate_object_meta_update, NameRule};
use super::pv::{validate_csi_driver_name, validate_pv_spec};
use super::syntax::{dns1123_subdomain, qualified_name};
use super::{json_of, Validate};
use crate::field::{ErrorList, FieldError, FieldPath};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::storage::v1 as storage;
use std::collections::{BTreeMap, BTreeSet};

const MAX_PARAMETERS: usize = 512;
const MAX_PARAMETERS_SIZE: usize = 256 * 1024;
const MAX_ATTACHMENT_METADATA_SIZE: usize = 256 * 1024;
const MAX_VOLUME_ERROR_MESSAGE: usize = 1024;
const CSI_NODE_ID_MAX: usize = 192;
/// Reclaim policies a StorageClass may set (no Recycle).
pub const CLASS_RECLAIM_POLICIES: &[&str] = &["Delete", "Retain"];
/// Binding modes of a StorageClass.
pub const BINDING_MODES: &[&str] = &["Immediate", "WaitForFirstConsumer"];

/// One `allowedTopologies` term (`ValidateTopologySelectorTerm`); returns the key → values map used to spot
/// duplicate terms.
fn validate_topology_term(
    term: &core::TopologySelectorTerm,
    path: &FieldPath,
) -> (BTreeMap<String, BTreeSet<String>>, ErrorList) {
    let mut errs = ErrorList::new();
    let mut map = BTreeMap::new();
    for (i, req) in term.match_label_expressions.iter().flatten().enumerate() {
        let p = path.child("matchLabelExpressions").index(i);
        let values_path = p.child("values");
        if req.values.is_empty() {
            errs.push(FieldError::required(&values_path, ""));
        }
        let mut set = BTreeSet::new();
        for (j, v) in req.values.iter().enumerate() {
            if !set.insert(v.clone()) {
                errs.push(FieldError::duplicate(&values_path.index(j), v.as_str()));
            }
        }
        invalid_each(&mut errs, &p.child("key"), &req.key, qualified_name(&req.key));
        if map.insert(req.key.clone(), set).is_some() {
            errs.push(FieldError::duplicate(&p.child("key"), req.key.as_str()));
        }
    }
    (map, errs)
}

impl Validate for storage::StorageClass {
    fn validate(&self) -> ErrorList {
        let mut errs = validate_object_meta(&self.metadata, false, NameRule::Subdomain);
        let path = FieldPath::new("provisioner");
        if self.provisioner.is_empty() {
            errs.push(FieldError::required(&path, ""));
        } else {
            let lower = self.provisioner.to_lowercase();
            invalid_each(&mut errs, &path, &lower, qualified_name(&lower));
        }
        let params = self.parameters.clone().unwrap_or_default();
        let params_path = FieldPath::new("parameters");
        if params.len() > MAX_PARAMETERS {
            errs.push(FieldError::too_long(&params_path, MAX_PARAMETERS));
        } else {
            let mut total = 0usize;
            for (k, v) in &params {
                if k.is_empty() {
                    errs.push(FieldError::invalid(&params_path, k.as_str(), "field can not be empty."));
                }
                total = total.saturating_add(k.len()).saturating_add(v.len());
            }
            if total > MAX_PARAMETERS_SIZE {
                errs.push(FieldError::too_long(&params_path, MAX_PARAMETERS_SIZE));
            }
        }
        if let Some(p) = self.reclaim_policy.as_deref().filter(|p| !p.is_empty()) {
            if !CLASS_RECLAIM_POLICIES.contains(&p) {
                errs.push(FieldError::not_supported(&FieldPath::new("reclaimPolicy"), p, CLASS_RECLAIM_POLICIES));
            }
        }
        match self.volume_binding_mode.as_deref() {
            None => errs.push(FieldError::required(&FieldPath::new("volumeBindingMode"), "")),
            Some(m) if !BINDING_MODES.contains(&m) => {
                errs.push(FieldError::not_supported(&FieldPath::new("volumeBindingMode"), m, BINDING_MODES))
            }
            Some(_) => {}
        }
        let mut seen: Vec<BTreeMap<String, BTreeSet<String>>> = Vec::new();
        for (i, term) in self.allowed_topologies.iter().flatten().enumerate() {
            let p = FieldPath::new("allowedTopologies").index(i);
            let (map, term_errs) = validate_topology_term(term, &p);
            errs.extend(term_errs);
            if seen.contains(&map) {
                errs.push(FieldError::duplicate(&p.child("matchLabelExpressions"), ""));
            }
            seen.push(map);
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> ErrorList {
        let mut errs = validate_object_meta_update(&self.metadata, &old.metadata);
        if self.parameters.clone().unwrap_or_default() != old.parameters.clone().unwrap_or_default() {
            errs.push(FieldError::forbidden(&FieldPath::new("parameters"), "updates to parameters are forbidden."));
        }
        if self.provisioner != old.provisioner {
            errs.push(FieldError::forbidden(&FieldPath::new("provisioner"), "updates to provisioner are forbidden."));
        }
        if self.reclaim_policy != old.reclaim_policy {
            errs.push(FieldError::forbidden(
                &FieldPath::new("reclaimPolicy"),
                "updates to reclaimPolicy are forbidden.",
            ));
        }
        if self.volume_binding_mode != old.volume_binding_mode {
            errs.push(FieldError::invalid(
                &FieldPath::new("volumeBindingMode"),
                self.volume_binding_mode.clone().unwrap_or_default(),
                "field is immutable",
            ));
        }
        errs.extend(self.validate().into_iter().filter(|e| !e.field.starts_with("metadata.name")));
        errs
    }
}

impl Validate for storage::VolumeAttachment {
    fn validate(&self) -> ErrorList {
        let mut errs = validate_object_meta(&self.metadata, false, NameRule::Subdomain);
        let spec = FieldPath::new("spec");
        errs.extend(validate_csi_driver_name(&self.spec.attacher, &spec.child("attacher")));
        let source = spec.child("source");
        let src = &self.spec.source;
        match (&src.persistent_volume_name, &src.inline_volume_spec) {
            (None, None) => errs.push(FieldError::required(
                &source,
                "must specify exactly one of inlineVolumeSpec and persistentVolumeName",
            )),
            (Some(_), Some(_)) => errs.push(FieldError::forbidden(
                &source,
                "must specify exactly one of inlineVolumeSpec and persistentVolumeName",
            )),
            (Some(name), None) => {
                if name.is_empty() {
                    errs.push(FieldError::required(
                        &source.child("persistentVolumeName"),
                        "must specify non empty persistentVolumeName",
                    ));
                } else {
                    invalid_each(&mut errs, &source.child("persistentVolumeName"), name, dns1123_subdomain(name));
                }
            }
            (None, Some(inline)) => errs.extend(validate_pv_spec(inline, &source.child("inlineVolumeSpec"), true)),
        }
        let node = &self.spec.node_name;
        if node.is_empty() {
            errs.push(FieldError::required(&spec.child("nodeName"), ""));
        } else {
            invalid_each(&mut errs, &spec.child("nodeName"), node, dns1123_subdomain(node));
        }
        if let Some(status) = &self.status {
            let p = FieldPath::new("status");
            let size: usize = status.attachment_metadata.iter().flatten().map(|(k, v)| k.len() + v.len()).sum();
            if size > MAX_ATTACHMENT_METADATA_SIZE {
                errs.push(FieldError::too_long(&p.child("attachmentMetadata"), MAX_ATTACHMENT_METADATA_SIZE));
            }
            for (field, e) in [("attachError", &status.attach_error), ("detachError", &status.detach_error)] {
                if let Some(e) = e {
                    if e.message.as_deref().unwrap_or("").len() > MAX_VOLUME_ERROR_MESSAGE {
                        errs.push(FieldError::too_long(&p.child(field).child("message"), MAX_VOLUME_ERROR_MESSAGE));
                    }
                    if let Some(code) = e.error_code.filter(|c| *c < 0) {
                        errs.push(FieldError::invalid(
                            &p.child(field).child("errorCode"),
                            code,
                            "must be between 0 and 2147483647, inclusive",
                        ));
                    }
                }
            }
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> ErrorList {
        let mut errs = validate_object_meta_update(&self.metadata, &old.metadata);
        errs.extend(self.validate().into_iter().filter(|e| !e.field.starts_with("metadata.name")));
        if self.spec != old.spec {
            errs.push(FieldError::invalid(&FieldPath::new("spec"), json_of(&self.spec), "field is immutable"));
        }
        errs
    }
}

impl Validate for storage::CSIDriver {
    fn validate(&self) -> ErrorList {
        let mut errs = validate_object_meta(&self.metadata, false, NameRule::CsiDriver);
        let spec = FieldPath::new("spec");
        let s = &self.spec;
        // kube's field path really is `attachedRequired`.
        for (field, value) in [
            ("attachedRequired", s.attach_required),
            ("podInfoOnMount", s.pod_info_on_mount),
            ("storageCapacity", s.storage_capacity),
            ("seLinuxMount", s.se_linux_mount),
        ] {
            if value.is_none() {
                errs.push(FieldError::required(&spec.child(field), ""));
            }
        }
        if let Some(p) = s.fs_group_policy.as_deref() {
            const POLICIES: &[&str] = &["File", "None", "ReadWriteOnceWithFSType"];
            if !POLICIES.contains(&p) {
                errs.push(FieldError::not_supported(&spec.child("fsGroupPolicy"), p, POLICIES));
            }
        }
        let mut audiences = BTreeSet::new();
        for (i, t) in s.token_requests.iter().flatten().enumerate() {
            let p = spec.child("tokenRequests").index(i);
            if !audiences.insert(t.audience.as_str()) {
                errs.push(FieldError::duplicate(&p.child("audience"), t.audience.as_str()));
                continue;
            }
            if let Some(e) = t.expiration_seconds {
                if e < 600 {
                    errs.push(FieldError::invalid(
                        &p.child("expirationSeconds"),
                        e,
                        "may not specify a duration less than 10 minutes",
                    ));
                }
                if e > 1 << 32 {
                    errs.push(FieldError::invalid(
                        &p.child("expirationSeconds"),
                        e,
                        "may not specify a duration larger than 2^32 seconds",
                    ));
                }
            }
        }
        for m in s.volume_lifecycle_modes.iter().flatten() {
            if !matches!(m.as_str(), "Persistent" | "Ephemeral") {
                errs.push(FieldError::not_supported(
                    &spec.child("volumeLifecycleModes"),
                    m.as_str(),
                    &["Persistent", "Ephemeral"],
                ));
            }
        }
        if let Some(p) = s.node_allocatable_update_period_seconds.filter(|p| *p < 10) {
            errs.push(FieldError::invalid(
                &spec.child("nodeAllocatableUpdatePeriodSeconds"),
                p,
                "must be greater than or equal to 10 seconds",
            ));
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> ErrorList {
        let mut errs = validate_object_meta_update(&self.metadata, &old.metadata);
        errs.extend(self.validate().into_iter().filter(|e| !e.field.starts_with("metadata.name")));
        let spec = FieldPath::new("spec");
        if self.spec.attach_required != old.spec.attach_required {
            errs.push(FieldError::invalid(
                &spec.child("attachedRequired"),
                json_of(&self.spec.attach_required),
                "field is immutable",
            ));
        }
        if self.spec.volume_lifecycle_modes != old.spec.volume_lifecycle_modes {
            errs.push(FieldError::invalid(
                &spec.child("volumeLifecycleModes"),
                json_of(&self.spec.volume_lifecycle_modes),
                "field is immutable",
            ));
        }
        errs
    }
}

impl Validate for storage::CSINode {
    fn validate(&self) -> ErrorList {
        let mut errs = validate_object_meta(&self.metadata, false, NameRule::Subdomain);
        let mut names = BTreeSet::new();
        for (i, d) in self.spec.drivers.iter().enumerate() {
            let p = FieldPath::new("spec").child("drivers").index(i);
            errs.extend(validate_csi_driver_name(&d.name, &p.child("name")));
            if d.node_id.is_empty() {
                errs.push(FieldError::required(&p.child("nodeID"), ""));
            }
            if d.node_id.len() > CSI_NODE_ID_MAX {
                errs.push(FieldError::invalid(
                    &p.child("nodeID"),
                    d.node_id.as_str(),
                    format!("must be {CSI_NODE_ID_MAX} characters or less"),
                ));
            }
            if let Some(count) = d.allocatable.as_ref().and_then(|a| a.count).filter(|c| *c < 0) {
                errs.push(FieldError::invalid(
                    &p.child("allocatable").child("count"),
                    count,
                    "must be greater than or equal to 0",
                ));
            }
            if !names.insert(d.name.as_str()) {
                errs.push(FieldError::duplicate(&p.child("name"), d.name.as_str()));
            }
            let mut keys = BTreeSet::new();
            for key in d.topology_keys.iter().flatten() {
                if key.is_empty() {
                    errs.push(FieldError::required(&p, ""));
                }
                if !keys.insert(key.as_str()) {
                    errs.push(FieldError::duplicate(&p, key.as_str()));
                }
                invalid_each(&mut errs, &p, key, qualified_name(key));
            }
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> ErrorList {
        let mut errs = validate_object_meta_update(&self.metadata, &old.metadata);
        errs.extend(self.validate().into_iter().filter(|e| !e.field.starts_with("metadata.name")));
        for o in &old.spec.drivers {
            for n in self.spec.drivers.iter().filter(|n| n.name == o.name) {
                let (mut a, mut b) = (n.clone(), o.clone());
                a.allocatable = None;
                b.allocatable = None;
                if a != b {
                    errs.push(FieldError::invalid(
                        &FieldPath::new("spec").child("drivers"),
                        json_of(n),
                        "field is immutable",
                    ));
                }
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::ApplyDefaults;
    use serde_json::{json, Value};

    struct Case {
        name: &'static str,
        object: Value,
        want: Vec<&'static str>,
    }

    fn fields(errs: &ErrorList) -> Vec<&str> {
        errs.iter().map(|e| e.field.as_str()).collect()
    }

    fn run<T: Validate + ApplyDefaults + serde::de::DeserializeOwned>(cases: Vec<Case>) {
        for c in cases {
            let mut o: T = serde_json::from_value(c.object).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            o.apply_defaults();
            let errs = o.validate();
            assert_eq!(fields(&errs), c.want, "{}: {errs:#?}", c.name);
        }
    }

    fn sc(extra: Value) -> Value {
        let mut v = json!({"metadata": {"name": "fast"}, "provisioner": "kubernetes.io/gce-pd", "parameters": {"type": "pd-ssd"}});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    }

    #[test]
    fn validates_storage_classes() {
        run::<storage::StorageClass>(vec![
            Case { name: "a defaulted class is valid", object: sc(json!({})), want: vec![] },
            Case {
                name: "a class needs a provisioner",
                object: sc(json!({"provisioner": ""})),
                want: vec!["provisioner"],
            },
            Case {
                name: "a provisioner is a qualified name",
                object: sc(json!({"provisioner": "a/b/c"})),
                want: vec!["provisioner"],
            },
            Case {
                name: "a class may not recycle",
                object: sc(json!({"reclaimPolicy": "Recycle"})),
                want: vec!["reclaimPolicy"],
            },
            Case { name: "a class may retain", object: sc(json!({"reclaimPolicy": "Retain"})), want: vec![] },
            Case {
                name: "a binding mode must be known",
                object: sc(json!({"volumeBindingMode": "Later"})),
                want: vec!["volumeBindingMode"],
            },
            Case {
                name: "waiting for the first consumer is fine",
                object: sc(json!({"volumeBindingMode": "WaitForFirstConsumer"})),
                want: vec![],
            },
            Case {
                name: "an empty parameter key is refused",
                object: sc(json!({"parameters": {"": "x"}})),
                want: vec!["parameters"],
            },
            Case {
                name: "allowed topologies need values and unique keys",
                object: sc(json!({"allowedTopologies": [{"matchLabelExpressions": [
                    {"key": "topology.kubernetes.io/zone", "values": []},
                    {"key": "topology.kubernetes.io/zone", "values": ["a", "a"]}
                ]}]})),
                want: vec![
                    "allowedTopologies[0].matchLabelExpressions[0].values",
                    "allowedTopologies[0].matchLabelExpressions[1].values[1]",
                    "allowedTopologies[0].matchLabelExpressions[1].key",
                ],
            },
            Case {
                name: "duplicate topology terms are refused",
                object: sc(json!({"allowedTopologies": [
                    {"matchLabelExpressions": [{"key": "zone", "values": ["a"]}]},
                    {"matchLabelExpressions": [{"key": "zone", "values": ["a"]}]}
                ]})),
                want: vec!["allowedTopologies[1].matchLabelExpressions"],
            },
        ]);
    }

    #[test]
    fn refuses_updates_to_a_class_s_fixed_fields() {
        let typed = |v: Value| {
            let mut s: storage::StorageClass = serde_json::from_value(v).expect("sc");
            s.apply_defaults();
            s
        };
        let old = typed(sc(json!({})));
        assert!(typed(sc(json!({"allowVolumeExpansion": true}))).validate_update(&old).is_empty());
        let changed = typed(sc(json!({
            "provisioner": "kubernetes.io/aws-ebs", "parameters": {"type": "gp2"},
            "reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer"
        })));
        let errs = changed.validate_update(&old);
        assert_eq!(fields(&errs), vec!["parameters", "provisioner", "reclaimPolicy", "volumeBindingMode"]);
        assert_eq!(errs[0].to_string(), "parameters: Forbidden: updates to parameters are forbidden.");
        assert_eq!(errs[1].to_string(), "provisioner: Forbidden: updates to provisioner are forbidden.");
    }

    fn va(source: Value) -> Value {
        json!({"metadata": {"name": "csi-123"}, "spec": {"attacher": "csi.kvol.io", "nodeName": "node-1", "source": source}})
    }

    #[test]
    fn validates_volume_attachments() {
        run::<storage::VolumeAttachment>(vec![
            Case {
                name: "an attachment of a named volume is valid",
                object: va(json!({"persistentVolumeName": "pv1"})),
                want: vec![],
            },
            Case { name: "an attachment needs a source", object: va(json!({})), want: vec!["spec.source"] },
            Case {
                name: "an attachment has only one source",
                object: va(
                    json!({"persistentVolumeName": "pv1", "inlineVolumeSpec": {"csi": {"driver": "d", "volumeHandle": "h"}}}),
                ),
                want: vec!["spec.source"],
            },
            Case {
                name: "an inline spec is checked as an inline volume",
                object: va(json!({"inlineVolumeSpec": {"csi": {"driver": "d", "volumeHandle": ""}}})),
                want: vec!["spec.source.inlineVolumeSpec.csi.volumeHandle"],
            },
            Case {
                name: "an attachment needs an attacher and a node",
                object: json!({"metadata": {"name": "a"}, "spec": {"attacher": "", "nodeName": "", "source": {"persistentVolumeName": "pv1"}}}),
                want: vec!["spec.attacher", "spec.nodeName"],
            },
        ]);
        let old: storage::VolumeAttachment =
            serde_json::from_value(va(json!({"persistentVolumeName": "pv1"}))).expect("va");
        let new: storage::VolumeAttachment =
            serde_json::from_value(va(json!({"persistentVolumeName": "pv2"}))).expect("va");
        assert_eq!(fields(&new.validate_update(&old)), vec!["spec"]);
        let mut status = old.clone();
        status.status = Some(storage::VolumeAttachmentStatus { attached: true, ..Default::default() });
        assert!(status.validate_update(&old).is_empty());
    }

    #[test]
    fn validates_csi_drivers() {
        run::<storage::CSIDriver>(vec![
            Case {
                name: "a defaulted driver is valid",
                object: json!({"metadata": {"name": "csi.kvol.io"}}),
                want: vec![],
            },
            Case {
                name: "a driver name is at most 63 characters",
                object: json!({"metadata": {"name": format!("{}.io", "a".repeat(63))}}),
                want: vec!["metadata.name"],
            },
            Case {
                name: "fs group policy and lifecycle modes must be known",
                object: json!({"metadata": {"name": "d"}, "spec": {"fsGroupPolicy": "Always", "volumeLifecycleModes": ["Forever"]}}),
                want: vec!["spec.fsGroupPolicy", "spec.volumeLifecycleModes"],
            },
            Case {
                name: "token requests have unique audiences and long enough lives",
                object: json!({"metadata": {"name": "d"}, "spec": {"tokenRequests": [{"audience": "a", "expirationSeconds": 60}, {"audience": "a"}]}}),
                want: vec!["spec.tokenRequests[0].expirationSeconds", "spec.tokenRequests[1].audience"],
            },
        ]);
        let mut old: storage::CSIDriver = serde_json::from_value(json!({"metadata": {"name": "d"}})).expect("d");
        old.apply_defaults();
        let mut new = old.clone();
        new.spec.attach_required = Some(false);
        new.spec.pod_info_on_mount = Some(true);
        assert_eq!(fields(&new.validate_update(&old)), vec!["spec.attachedRequired"]);
    }

    #[test]
    fn validates_csi_nodes() {
        run::<storage::CSINode>(vec![
            Case {
                name: "a node with one driver is valid",
                object: json!({"metadata": {"name": "node-1"}, "spec": {"drivers": [{"name": "csi.kvol.io", "nodeID": "node-1", "topologyKeys": ["topology.kvol.io/node"], "allocatable": {"count": 10}}]}}),
                want: vec![],
            },
            Case {
                name: "drivers are unique with a node id and a sane count",
                object: json!({"metadata": {"name": "n"}, "spec": {"drivers": [
                    {"name": "d", "nodeID": "n"},
                    {"name": "d", "nodeID": "", "allocatable": {"count": -1}}
                ]}}),
                want: vec!["spec.drivers[1].nodeID", "spec.drivers[1].allocatable.count", "spec.drivers[1].name"],
            },
        ]);
        let old: storage::CSINode = serde_json::from_value(
            json!({"metadata": {"name": "n"}, "spec": {"drivers": [{"name": "d", "nodeID": "a"}]}}),
        )
        .expect("n");
        let mut new = old.clone();
        new.spec.drivers[0].allocatable = Some(storage::VolumeNodeResources { count: Some(3) });
        assert!(new.validate_update(&old).is_empty());
        new.spec.drivers[0].node_id = "b".into();
        assert_eq!(fields(&new.validate_update(&old)), vec!["spec.drivers"]);
    }
}
