//! Validation as kube-apiserver does it for the types kvol serves (`pkg/apis/core/validation`,
//! `pkg/apis/storage/validation`). Entry points take typed `k8s-openapi` objects and return every error
//! found, with kube-apiserver's field paths and texts.
//!
//! One file per area: `meta` (ObjectMeta and selectors), `pv` (PersistentVolume, PersistentVolumeClaim),
//! `pod`, `config` (ConfigMap, Secret), `cluster` (Node, Namespace, Event), `storage` (storage.k8s.io/v1),
//! `syntax` (the DNS/label/key string rules). Objects are expected to be defaulted first, as kube does.

pub mod cluster;
pub mod config;
pub mod meta;
pub mod pod;
pub mod pv;
pub mod storage;
pub mod syntax;

#[cfg(test)]
mod seeds;

use crate::field::ErrorList;
use serde_json::Value;

/// Validation of one object type, on create and on update.
pub trait Validate {
    /// Errors in a new object (after defaulting).
    fn validate(&self) -> ErrorList;
    /// Errors in an update of `old` to `self`, including changes to immutable fields.
    fn validate_update(&self, old: &Self) -> ErrorList {
        let _ = old;
        self.validate()
    }
}

/// The JSON form of a typed value; `Null` in the impossible case that serialization fails.
pub(crate) fn json_of<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A short, readable diff of two JSON objects, standing in for the `cmp.Diff` kube appends to "is immutable"
/// messages. With `only` non-empty, just those keys are compared.
pub(crate) fn json_diff(old: &Value, new: &Value, only: &[&str]) -> String {
    let mut keys: Vec<&String> = old.as_object().into_iter().chain(new.as_object()).flat_map(|m| m.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = String::new();
    for k in keys {
        if !only.is_empty() && !only.contains(&k.as_str()) {
            continue;
        }
        let (a, b) = (old.get(k), new.get(k));
        if a != b {
            if let Some(a) = a {
                out.push_str(&format!("-  {k}: {a}\n"));
            }
            if let Some(b) = b {
                out.push_str(&format!("+  {k}: {b}\n"));
            }
        }
    }
    out.trim_end().to_string()
}

/// `v` without nulls, empty lists and empty maps, so comparisons treat "unset" and "empty" alike, as Go's
/// `equality.Semantic.DeepEqual` does for nil and empty slices and maps.
pub(crate) fn pruned(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), pruned(v))).filter(|(_, v)| !is_empty_json(v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(pruned).collect()),
        other => other.clone(),
    }
}

fn is_empty_json(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}
