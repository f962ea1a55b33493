//! `metadata` as kube-apiserver checks it for every kind (`ValidateObjectMeta`, `ValidateObjectMetaUpdate`),
//! plus the selectors several kinds share: label selectors (PVC `spec.selector`) and node selectors (PV
//! `spec.nodeAffinity`, pod affinity).
//!
//! The name rule differs per kind, so callers pass a [`NameRule`]; the scope is a plain `namespaced` flag.

use super::syntax::{dns1123_label, dns1123_subdomain, label_value, qualified_name};
use crate::field::{ErrorList, FieldError, FieldPath};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::BTreeMap;

/// kube's limit on the total size of an object's annotations (`TotalAnnotationSizeLimitB`).
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Which syntax a kind's `metadata.name` must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain (most kinds).
    Subdomain,
    /// DNS-1123 label (Namespace).
    Label,
    /// A CSI driver name: a DNS-1123 subdomain of at most 63 characters (CSIDriver).
    CsiDriver,
}

impl NameRule {
    /// kube's messages for `name`; `prefix` is set for `generateName`, whose trailing `-` is allowed.
    pub fn check(self, name: &str, prefix: bool) -> Vec<String> {
        let masked;
        let name = if prefix && name.ends_with('-') {
            masked = format!("{}a", &name[..name.len() - 1]);
            masked.as_str()
        } else {
            name
        };
        match self {
            NameRule::Subdomain => dns1123_subdomain(name),
            NameRule::Label => dns1123_label(name),
            NameRule::CsiDriver => {
                let mut errs = Vec::new();
                if name.len() > 63 {
                    errs.push(super::syntax::max_len_error(63));
                }
                errs.extend(dns1123_subdomain(&name.to_lowercase()));
                errs
            }
        }
    }
}

/// Push one `Invalid` error per message, as kube's `for _, msg := range ...` loops do.
pub(crate) fn invalid_each(errs: &mut ErrorList, path: &FieldPath, value: &str, msgs: Vec<String>) {
    errs.extend(msgs.into_iter().map(|m| FieldError::invalid(path, value, m)));
}

/// `metadata` of a new object.
pub fn validate_object_meta(meta: &ObjectMeta, namespaced: bool, rule: NameRule) -> ErrorList {
    let path = FieldPath::new("metadata");
    let mut errs = ErrorList::new();
    let generate_name = meta.generate_name.as_deref().unwrap_or("");
    if !generate_name.is_empty() {
        invalid_each(&mut errs, &path.child("generateName"), generate_name, rule.check(generate_name, true));
    }
    match meta.name.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(&path.child("name"), "name or generateName is required")),
        name => invalid_each(&mut errs, &path.child("name"), name, rule.check(name, false)),
    }
    let namespace = meta.namespace.as_deref().unwrap_or("");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required(&path.child("namespace"), ""));
        } else {
            invalid_each(&mut errs, &path.child("namespace"), namespace, dns1123_label(namespace));
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(&path.child("namespace"), "not allowed on this type"));
    }
    if let Some(g) = meta.generation {
        if g < 0 {
            errs.push(FieldError::invalid(&path.child("generation"), g, "must be greater than or equal to 0"));
        }
    }
    errs.extend(validate_labels(meta.labels.as_ref(), &path.child("labels")));
    errs.extend(validate_annotations(meta.annotations.as_ref(), &path.child("annotations")));
    errs.extend(validate_finalizers(meta.finalizers.as_deref().unwrap_or(&[]), &path.child("finalizers")));
    for (i, r) in meta.owner_references.iter().flatten().enumerate() {
        let p = path.child("ownerReferences").index(i);
        for (field, value) in [("apiVersion", &r.api_version), ("kind", &r.kind), ("name", &r.name), ("uid", &r.uid)] {
            if value.is_empty() {
                errs.push(FieldError::invalid(&p.child(field), value.as_str(), format!("{field} must not be empty")));
            }
        }
    }
    errs
}

/// `metadata` on update: name, namespace, uid and creationTimestamp are immutable; labels and annotations are
/// checked again.
pub fn validate_object_meta_update(new: &ObjectMeta, old: &ObjectMeta) -> ErrorList {
    let path = FieldPath::new("metadata");
    let mut errs = ErrorList::new();
    let immutable = |errs: &mut ErrorList, field: &str, new: Option<&str>, old: Option<&str>| {
        if new.unwrap_or("") != old.unwrap_or("") {
            errs.push(FieldError::invalid(&path.child(field), new.unwrap_or(""), "field is immutable"));
        }
    };
    immutable(&mut errs, "name", new.name.as_deref(), old.name.as_deref());
    immutable(&mut errs, "namespace", new.namespace.as_deref(), old.namespace.as_deref());
    immutable(&mut errs, "uid", new.uid.as_deref(), old.uid.as_deref());
    let ts = |m: &ObjectMeta| m.creation_timestamp.as_ref().map(|t| t.0.to_string());
    if old.creation_timestamp.is_some() && ts(new) != ts(old) {
        errs.push(FieldError::invalid(
            &path.child("creationTimestamp"),
            ts(new).unwrap_or_default(),
            "field is immutable",
        ));
    }
    if let Some(g) = new.generation {
        if g < 0 {
            errs.push(FieldError::invalid(&path.child("generation"), g, "must be greater than or equal to 0"));
        }
    }
    errs.extend(validate_labels(new.labels.as_ref(), &path.child("labels")));
    errs.extend(validate_annotations(new.annotations.as_ref(), &path.child("annotations")));
    errs.extend(validate_finalizers(new.finalizers.as_deref().unwrap_or(&[]), &path.child("finalizers")));
    errs
}

/// Label keys are qualified names and values label values (`ValidateLabels`).
pub fn validate_labels(labels: Option<&BTreeMap<String, String>>, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    for (k, v) in labels.into_iter().flatten() {
        invalid_each(&mut errs, path, k, qualified_name(k));
        invalid_each(&mut errs, path, v, label_value(v));
    }
    errs
}

/// Annotation keys are qualified names (checked lower-cased) and all annotations together stay within
/// 256 KiB (`ValidateAnnotations`).
pub fn validate_annotations(annotations: Option<&BTreeMap<String, String>>, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut total = 0usize;
    for (k, v) in annotations.into_iter().flatten() {
        invalid_each(&mut errs, path, k, qualified_name(&k.to_lowercase()));
        total = total.saturating_add(k.len()).saturating_add(v.len());
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// Finalizers are qualified names, and one without a `/` must be a standard one (`ValidateFinalizers`).
pub fn validate_finalizers(finalizers: &[String], path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    for f in finalizers {
        let msgs = qualified_name(f);
        if !msgs.is_empty() {
            invalid_each(&mut errs, path, f, msgs);
        } else if !f.contains('/') && !matches!(f.as_str(), "kubernetes" | "orphan" | "foregroundDeletion") {
            errs.push(FieldError::invalid(
                path,
                f.as_str(),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

/// A `metav1.LabelSelector` (`ValidateLabelSelector`).
pub fn validate_label_selector(sel: &LabelSelector, path: &FieldPath) -> ErrorList {
    let mut errs = validate_labels(sel.match_labels.as_ref(), &path.child("matchLabels"));
    for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let values = req.values.as_deref().unwrap_or(&[]);
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errs
                .push(FieldError::required(&p.child("values"), "must be specified when `operator` is 'In' or 'NotIn'")),
            "In" | "NotIn" => {}
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                &p.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::invalid(&p.child("operator"), other, "not a valid selector operator")),
        }
        invalid_each(&mut errs, &p.child("key"), &req.key, qualified_name(&req.key));
        for (j, v) in values.iter().enumerate() {
            invalid_each(&mut errs, &p.child("values").index(j), v, label_value(v));
        }
    }
    errs
}

/// A `core/v1.NodeSelector` (`ValidateNodeSelector`), as used by PV node affinity and pod affinity.
pub fn validate_node_selector(sel: &core::NodeSelector, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let terms_path = path.child("nodeSelectorTerms");
    if sel.node_selector_terms.is_empty() {
        errs.push(FieldError::required(&terms_path, "must have at least one node selector term"));
    }
    for (i, term) in sel.node_selector_terms.iter().enumerate() {
        errs.extend(validate_node_selector_term(term, &terms_path.index(i)));
    }
    errs
}

/// One `NodeSelectorTerm` (`ValidateNodeSelectorTerm`).
pub fn validate_node_selector_term(term: &core::NodeSelectorTerm, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    for (j, req) in term.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(j);
        let n = req.values.as_ref().map_or(0, Vec::len);
        match req.operator.as_str() {
            "In" | "NotIn" if n == 0 => errs
                .push(FieldError::required(&p.child("values"), "must be specified when `operator` is 'In' or 'NotIn'")),
            "Exists" | "DoesNotExist" if n > 0 => errs.push(FieldError::forbidden(
                &p.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "Gt" | "Lt" if n != 1 => errs.push(FieldError::required(
                &p.child("values"),
                "must be specified single value when `operator` is 'Lt' or 'Gt'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
            other => errs.push(FieldError::invalid(&p.child("operator"), other, "not a valid selector operator")),
        }
        invalid_each(&mut errs, &p.child("key"), &req.key, qualified_name(&req.key));
    }
    for (j, req) in term.match_fields.iter().flatten().enumerate() {
        let p = path.child("matchFields").index(j);
        if req.key != "metadata.name" {
            errs.push(FieldError::invalid(&p.child("key"), req.key.as_str(), "not a valid field selector key"));
        }
        match req.operator.as_str() {
            "In" | "NotIn" => {
                if req.values.as_ref().map_or(0, Vec::len) != 1 {
                    errs.push(FieldError::required(
                        &p.child("values"),
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(&p.child("operator"), other, "not a valid selector operator")),
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Case {
        name: &'static str,
        meta: serde_json::Value,
        namespaced: bool,
        rule: NameRule,
        want: Vec<&'static str>,
    }

    fn fields(errs: &ErrorList) -> Vec<&str> {
        errs.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn validates_object_metadata_like_kube() {
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let cases = vec![
            Case {
                name: "a plain name is fine",
                meta: json!({"name": "pv-1"}),
                namespaced: false,
                rule: NameRule::Subdomain,
                want: vec![],
            },
            Case {
                name: "a missing name is required",
                meta: json!({}),
                namespaced: false,
                rule: NameRule::Subdomain,
                want: vec!["metadata.name"],
            },
            Case {
                name: "generateName alone is enough",
                meta: json!({"generateName": "pv-"}),
                namespaced: false,
                rule: NameRule::Subdomain,
                want: vec!["metadata.name"],
            },
            Case {
                name: "an upper-case name is invalid",
                meta: json!({"name": "A_b"}),
                namespaced: false,
                rule: NameRule::Subdomain,
                want: vec!["metadata.name"],
            },
            Case {
                name: "a bad generateName is invalid",
                meta: json!({"name": "a", "generateName": "X-"}),
                namespaced: false,
                rule: NameRule::Subdomain,
                want: vec!["metadata.generateName"],
            },
            Case {
                name: "a namespace name may not contain dots",
                meta: json!({"name": "a.b"}),
                namespaced: false,
                rule: NameRule::Label,
                want: vec!["metadata.name"],
            },
            Case {
                name: "a namespaced kind needs a namespace",
                meta: json!({"name": "a"}),
                namespaced: true,
                rule: NameRule::Subdomain,
                want: vec!["metadata.namespace"],
            },
            Case {
                name: "a cluster kind forbids a namespace",
                meta: json!({"name": "a", "namespace": "default"}),
                namespaced: false,
                rule: NameRule::Subdomain,
                want: vec!["metadata.namespace"],
            },
            Case {
                name: "an invalid namespace is refused",
                meta: json!({"name": "a", "namespace": "Default"}),
                namespaced: true,
                rule: NameRule::Subdomain,
                want: vec!["metadata.namespace"],
            },
            Case {
                name: "labels need qualified keys and valid values",
                meta: json!({"name": "a", "labels": {"a/b/c": "ok", "k": "-bad"}}),
                namespaced: false,
                rule: NameRule::Subdomain,
                want: vec!["metadata.labels", "metadata.labels"],
            },
            Case {
                name: "valid labels pass",
                meta: json!({"name": "a", "labels": {"app.kubernetes.io/name": "web", "release": ""}}),
                namespaced: false,
                rule: NameRule::Subdomain,
                want: vec![],
            },
            Case {
                name: "annotation keys must be qualified",
                meta: json!({"name": "a", "annotations": {"bad key": "v"}}),
                namespaced: false,
                rule: NameRule::Subdomain,
                want: vec!["metadata.annotations"],
            },
            Case {
                name: "annotations over 256 KiB are too long",
                meta: json!({"name": "a", "annotations": {"k": big}}),
                namespaced: false,
                rule: NameRule::Subdomain,
                want: vec!["metadata.annotations"],
            },
            Case {
                name: "a finalizer without a prefix must be standard",
                meta: json!({"name": "a", "finalizers": ["kubernetes", "custom", "kubernetes.io/pv-protection"]}),
                namespaced: false,
                rule: NameRule::Subdomain,
                want: vec!["metadata.finalizers"],
            },
            Case {
                name: "a long csi driver name is refused",
                meta: json!({"name": format!("{}.io", "a".repeat(62))}),
                namespaced: false,
                rule: NameRule::CsiDriver,
                want: vec!["metadata.name"],
            },
        ];
        for c in cases {
            let meta: ObjectMeta = serde_json::from_value(c.meta).expect(c.name);
            let errs = validate_object_meta(&meta, c.namespaced, c.rule);
            assert_eq!(fields(&errs), c.want, "{}: {errs:?}", c.name);
        }
    }

    #[test]
    fn refuses_changes_to_immutable_metadata() {
        let old: ObjectMeta = serde_json::from_value(
            json!({"name": "a", "namespace": "n", "uid": "1", "creationTimestamp": "2024-01-01T00:00:00Z"}),
        )
        .expect("old");
        let mut new = old.clone();
        assert!(validate_object_meta_update(&new, &old).is_empty());
        new.labels = Some([("x".to_string(), "y".to_string())].into());
        assert!(validate_object_meta_update(&new, &old).is_empty());
        new.name = Some("b".into());
        new.uid = Some("2".into());
        new.creation_timestamp = None;
        let errs = validate_object_meta_update(&new, &old);
        assert_eq!(fields(&errs), vec!["metadata.name", "metadata.uid", "metadata.creationTimestamp"]);
        assert_eq!(errs[0].to_string(), "metadata.name: Invalid value: \"b\": field is immutable");
    }

    #[test]
    fn checks_label_and_node_selectors() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"release": "stable"},
            "matchExpressions": [{"key": "environment", "operator": "In", "values": ["dev"]}]
        }))
        .expect("sel");
        assert!(validate_label_selector(&sel, &FieldPath::new("spec").child("selector")).is_empty());
        let bad: LabelSelector = serde_json::from_value(json!({
            "matchExpressions": [
                {"key": "a", "operator": "In"},
                {"key": "b", "operator": "Exists", "values": ["x"]},
                {"key": "c", "operator": "Near"}
            ]
        }))
        .expect("bad");
        let errs = validate_label_selector(&bad, &FieldPath::new("spec").child("selector"));
        assert_eq!(
            fields(&errs),
            vec![
                "spec.selector.matchExpressions[0].values",
                "spec.selector.matchExpressions[1].values",
                "spec.selector.matchExpressions[2].operator"
            ]
        );
        let ns: core::NodeSelector = serde_json::from_value(json!({"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]},
                                  {"key": "x", "operator": "Gt", "values": ["1", "2"]}],
             "matchFields": [{"key": "spec.nodeName", "operator": "In", "values": ["n1"]}]}
        ]}))
        .expect("ns");
        let errs = validate_node_selector(&ns, &FieldPath::new("required"));
        assert_eq!(
            fields(&errs),
            vec![
                "required.nodeSelectorTerms[0].matchExpressions[1].values",
                "required.nodeSelectorTerms[0].matchFields[0].key"
            ]
        );
        let empty = core::NodeSelector::default();
        assert_eq!(fields(&validate_node_selector(&empty, &FieldPath::new("r"))), vec!["r.nodeSelectorTerms"]);
    }
}
