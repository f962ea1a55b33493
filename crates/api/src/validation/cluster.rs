//! Node, Namespace and core/v1 Event validation. kvol's controllers and agents write these, so the checks
//! are kube's light ones: metadata, node taints and capacities, namespace finalizers, and the event fields
//! kube limits (`legacyValidateEvent`).

use super::meta::{invalid_each, validate_finalizers, validate_object_meta, validate_object_meta_update, NameRule};
use super::pv::nonnegative_quantity;
use super::syntax::{dns1123_subdomain, label_value, qualified_name};
use super::Validate;
use crate::field::{ErrorList, FieldError, FieldPath};
use k8s_openapi::api::core::v1 as core;
use std::collections::BTreeSet;

const TAINT_EFFECTS: &[&str] = &["NoExecute", "NoSchedule", "PreferNoSchedule"];

impl Validate for core::Node {
    fn validate(&self) -> ErrorList {
        let mut errs = validate_object_meta(&self.metadata, false, NameRule::Subdomain);
        let spec = self.spec.clone().unwrap_or_default();
        let mut seen = BTreeSet::new();
        for (i, t) in spec.taints.iter().flatten().enumerate() {
            let p = FieldPath::new("spec").child("taints").index(i);
            invalid_each(&mut errs, &p.child("key"), &t.key, qualified_name(&t.key));
            if let Some(v) = t.value.as_deref() {
                invalid_each(&mut errs, &p.child("value"), v, label_value(v));
            }
            if t.effect.is_empty() {
                errs.push(FieldError::required(&p.child("effect"), ""));
            } else if !TAINT_EFFECTS.contains(&t.effect.as_str()) {
                errs.push(FieldError::not_supported(&p.child("effect"), t.effect.as_str(), TAINT_EFFECTS));
            }
            if !seen.insert((t.key.as_str(), t.effect.as_str())) {
                errs.push(FieldError::duplicate(&p, format!("{}:{}", t.key, t.effect)));
            }
        }
        if let Some(status) = &self.status {
            for (field, map) in [("capacity", &status.capacity), ("allocatable", &status.allocatable)] {
                for (k, q) in map.iter().flatten() {
                    errs.extend(nonnegative_quantity(q, &FieldPath::new("status").child(field).key(k)));
                }
            }
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> ErrorList {
        let mut errs = validate_object_meta_update(&self.metadata, &old.metadata);
        errs.extend(self.validate().into_iter().filter(|e| !e.field.starts_with("metadata.name")));
        let (new, old) = (self.spec.clone().unwrap_or_default(), old.spec.clone().unwrap_or_default());
        let old_cidrs = old.pod_cidrs.clone().unwrap_or_default();
        if !old_cidrs.is_empty() && new.pod_cidrs.clone().unwrap_or_default() != old_cidrs {
            errs.push(FieldError::forbidden(
                &FieldPath::new("spec").child("podCIDRs"),
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let old_provider = old.provider_id.as_deref().unwrap_or("");
        if !old_provider.is_empty() && new.provider_id.as_deref().unwrap_or("") != old_provider {
            errs.push(FieldError::forbidden(
                &FieldPath::new("spec").child("providerID"),
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
        errs
    }
}

impl Validate for core::Namespace {
    fn validate(&self) -> ErrorList {
        let mut errs = validate_object_meta(&self.metadata, false, NameRule::Label);
        let finalizers = self.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
        errs.extend(validate_finalizers(&finalizers, &FieldPath::new("spec").child("finalizers")));
        if let Some(phase) = self.status.as_ref().and_then(|s| s.phase.as_deref()) {
            if !matches!(phase, "Active" | "Terminating") {
                errs.push(FieldError::not_supported(
                    &FieldPath::new("status").child("phase"),
                    phase,
                    &["Active", "Terminating"],
                ));
            }
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> ErrorList {
        let mut errs = validate_object_meta_update(&self.metadata, &old.metadata);
        errs.extend(self.validate().into_iter().filter(|e| !e.field.starts_with("metadata.name")));
        errs
    }
}

/// kube's event field limits.
const REASON_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REPORTING_INSTANCE_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

impl Validate for core::Event {
    fn validate(&self) -> ErrorList {
        let mut errs = validate_object_meta(&self.metadata, true, NameRule::Subdomain);
        let ns = self.metadata.namespace.as_deref().unwrap_or("");
        let involved_ns = self.involved_object.namespace.as_deref().unwrap_or("");
        let involved_path = FieldPath::new("involvedObject").child("namespace");
        let mismatch = || FieldError::invalid(&involved_path, involved_ns, "does not match event.namespace");
        let too_long = |field: &str, limit: usize| {
            FieldError::invalid(&FieldPath::new(field), "", format!("can have at most {limit} characters"))
        };
        let reason = self.reason.as_deref().unwrap_or("");
        let message = self.message.as_deref().unwrap_or("");
        if self.event_time.is_none() {
            if involved_ns.is_empty() {
                if !ns.is_empty() && ns != "default" {
                    errs.push(mismatch());
                }
            } else if ns != involved_ns {
                errs.push(mismatch());
            }
            // kube checks lengths of old-style events through the storage limits; kvol keeps them bounded here.
            if reason.len() > REASON_LIMIT {
                errs.push(too_long("reason", REASON_LIMIT));
            }
        } else {
            if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
                errs.push(mismatch());
            }
            let controller = self.reporting_component.as_deref().unwrap_or("");
            if controller.is_empty() {
                errs.push(FieldError::required(&FieldPath::new("reportingComponent"), ""));
            } else {
                invalid_each(&mut errs, &FieldPath::new("reportingComponent"), controller, qualified_name(controller));
            }
            let instance = self.reporting_instance.as_deref().unwrap_or("");
            if instance.is_empty() {
                errs.push(FieldError::required(&FieldPath::new("reportingInstance"), ""));
            }
            if instance.len() > REPORTING_INSTANCE_LIMIT {
                errs.push(too_long("reportingInstance", REPORTING_INSTANCE_LIMIT));
            }
            let action = self.action.as_deref().unwrap_or("");
            if action.is_empty() {
                errs.push(FieldError::required(&FieldPath::new("action"), ""));
            }
            if action.len() > ACTION_LIMIT {
                errs.push(too_long("action", ACTION_LIMIT));
            }
            if reason.is_empty() {
                errs.push(FieldError::required(&FieldPath::new("reason"), ""));
            }
            if reason.len() > REASON_LIMIT {
                errs.push(too_long("reason", REASON_LIMIT));
            }
            if message.len() > NOTE_LIMIT {
                errs.push(too_long("message", NOTE_LIMIT));
            }
        }
        if !ns.is_empty() {
            invalid_each(&mut errs, &FieldPath::new("namespace"), ns, dns1123_subdomain(ns));
        }
        if let Some(t) = self.type_.as_deref().filter(|t| !t.is_empty()) {
            if !matches!(t, "Normal" | "Warning") {
                errs.push(FieldError::not_supported(&FieldPath::new("type"), t, &["Normal", "Warning"]));
            }
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> ErrorList {
        let mut errs = validate_object_meta_update(&self.metadata, &old.metadata);
        errs.extend(self.validate().into_iter().filter(|e| !e.field.starts_with("metadata.name")));
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    struct Case {
        name: &'static str,
        object: Value,
        want: Vec<&'static str>,
    }

    fn fields(errs: &ErrorList) -> Vec<&str> {
        errs.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn validates_nodes() {
        let cases = vec![
            Case {
                name: "a node with capacity is valid",
                object: json!({"metadata": {"name": "node-1"}, "status": {"capacity": {"cpu": "2", "memory": "4Gi"}}}),
                want: vec![],
            },
            Case {
                name: "a node name must be a subdomain",
                object: json!({"metadata": {"name": "Node_1"}}),
                want: vec!["metadata.name"],
            },
            Case {
                name: "negative capacity is refused",
                object: json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "-1"}}}),
                want: vec!["status.allocatable[cpu]"],
            },
            Case {
                name: "taints need a known effect and no duplicates",
                object: json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "a", "effect": "Never"}, {"key": "b", "effect": "NoSchedule"}, {"key": "b", "effect": "NoSchedule"}]}}),
                want: vec!["spec.taints[0].effect", "spec.taints[2]"],
            },
        ];
        for c in cases {
            let o: core::Node = serde_json::from_value(c.object).expect(c.name);
            assert_eq!(fields(&o.validate()), c.want, "{}", c.name);
        }
        let old: core::Node =
            serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {"podCIDRs": ["10.0.0.0/24"]}}))
                .expect("old");
        let new: core::Node =
            serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {"podCIDRs": ["10.0.1.0/24"]}}))
                .expect("new");
        assert_eq!(fields(&new.validate_update(&old)), vec!["spec.podCIDRs"]);
    }

    #[test]
    fn validates_namespaces() {
        let cases = vec![
            Case {
                name: "a namespace with the kubernetes finalizer is valid",
                object: json!({"metadata": {"name": "team-a"}, "spec": {"finalizers": ["kubernetes"]}}),
                want: vec![],
            },
            Case {
                name: "a namespace name is a label",
                object: json!({"metadata": {"name": "team.a"}}),
                want: vec!["metadata.name"],
            },
            Case {
                name: "a namespace may not have a namespace",
                object: json!({"metadata": {"name": "a", "namespace": "b"}}),
                want: vec!["metadata.namespace"],
            },
            Case {
                name: "an unqualified finalizer is refused",
                object: json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["mine"]}}),
                want: vec!["spec.finalizers"],
            },
        ];
        for c in cases {
            let o: core::Namespace = serde_json::from_value(c.object).expect(c.name);
            assert_eq!(fields(&o.validate()), c.want, "{}", c.name);
        }
    }

    #[test]
    fn validates_events() {
        let long = "r".repeat(200);
        let cases = vec![
            Case {
                name: "an old style event is valid",
                object: json!({"metadata": {"name": "pv.1", "namespace": "default"}, "involvedObject": {"kind": "PersistentVolumeClaim", "namespace": "default", "name": "c"}, "reason": "ProvisioningSucceeded", "type": "Normal"}),
                want: vec![],
            },
            Case {
                name: "the involved namespace must match",
                object: json!({"metadata": {"name": "e", "namespace": "a"}, "involvedObject": {"namespace": "b"}}),
                want: vec!["involvedObject.namespace"],
            },
            Case {
                name: "a new style event needs its reporting fields",
                object: json!({"metadata": {"name": "e", "namespace": "default"}, "eventTime": "2024-01-01T00:00:00.000000Z", "involvedObject": {"namespace": "default"}}),
                want: vec!["reportingComponent", "reportingInstance", "action", "reason"],
            },
            Case {
                name: "a long reason is refused",
                object: json!({"metadata": {"name": "e", "namespace": "default"}, "involvedObject": {"namespace": "default"}, "reason": long}),
                want: vec!["reason"],
            },
            Case {
                name: "an unknown type is refused",
                object: json!({"metadata": {"name": "e", "namespace": "default"}, "involvedObject": {}, "type": "Fatal"}),
                want: vec!["type"],
            },
        ];
        for c in cases {
            let o: core::Event = serde_json::from_value(c.object).expect(c.name);
            assert_eq!(fields(&o.validate()), c.want, "{}", c.name);
        }
    }
}
