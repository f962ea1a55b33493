//! ConfigMap and Secret validation (`ValidateConfigMap`, `ValidateSecret` and their updates): key syntax, the
//! 1 MiB size limit, the required keys of the built-in Secret types, and `immutable: true`.

use super::meta::{invalid_each, validate_object_meta, validate_object_meta_update, NameRule};
use super::syntax::config_map_key;
use super::Validate;
use crate::field::{ErrorList, FieldError, FieldPath};
use k8s_openapi::api::core::v1 as core;

/// kube's limit on the data of one ConfigMap or Secret (`MaxSecretSize`).
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

const IMMUTABLE_MSG: &str = "field is immutable when `immutable` is set";

impl Validate for core::ConfigMap {
    fn validate(&self) -> ErrorList {
        let mut errs = validate_object_meta(&self.metadata, true, NameRule::Subdomain);
        let mut total = 0usize;
        for (k, v) in self.data.iter().flatten() {
            invalid_each(&mut errs, &FieldPath::new("data").key(k), k, config_map_key(k));
            total = total.saturating_add(v.len());
        }
        for (k, v) in self.binary_data.iter().flatten() {
            invalid_each(&mut errs, &FieldPath::new("binaryData").key(k), k, config_map_key(k));
            if self.data.as_ref().is_some_and(|d| d.contains_key(k)) {
                errs.push(FieldError::invalid(
                    &FieldPath::new("binaryData"),
                    k.as_str(),
                    "duplicate of key present in data",
                ));
            }
            total = total.saturating_add(v.0.len());
        }
        if total > MAX_DATA_SIZE {
            errs.push(FieldError::too_long(&FieldPath::new(""), MAX_DATA_SIZE));
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> ErrorList {
        let mut errs = validate_object_meta_update(&self.metadata, &old.metadata);
        if old.immutable == Some(true) {
            if self.immutable != Some(true) {
                errs.push(FieldError::forbidden(&FieldPath::new("immutable"), IMMUTABLE_MSG));
            }
            if self.data.clone().unwrap_or_default() != old.data.clone().unwrap_or_default() {
                errs.push(FieldError::forbidden(&FieldPath::new("data"), IMMUTABLE_MSG));
            }
            if self.binary_data.clone().unwrap_or_default() != old.binary_data.clone().unwrap_or_default() {
                errs.push(FieldError::forbidden(&FieldPath::new("binaryData"), IMMUTABLE_MSG));
            }
        }
        errs.extend(self.validate().into_iter().filter(|e| !e.field.starts_with("metadata.name")));
        errs
    }
}

/// The keys a built-in Secret type requires, as kube names them.
fn required_keys(secret_type: &str) -> &'static [&'static str] {
    match secret_type {
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        _ => &[],
    }
}

impl Validate for core::Secret {
    fn validate(&self) -> ErrorList {
        let mut errs = validate_object_meta(&self.metadata, true, NameRule::Subdomain);
        let data_path = FieldPath::new("data");
        let mut total = 0usize;
        let data = self.data.clone().unwrap_or_default();
        for (k, v) in &data {
            invalid_each(&mut errs, &data_path.key(k), k, config_map_key(k));
            total = total.saturating_add(v.0.len());
        }
        for (k, v) in self.string_data.iter().flatten() {
            invalid_each(&mut errs, &FieldPath::new("stringData").key(k), k, config_map_key(k));
            if !data.contains_key(k) {
                total = total.saturating_add(v.len());
            }
        }
        if total > MAX_DATA_SIZE {
            errs.push(FieldError::too_long(&data_path, MAX_DATA_SIZE));
        }
        let has = |k: &str| data.contains_key(k) || self.string_data.as_ref().is_some_and(|s| s.contains_key(k));
        let secret_type = self.type_.as_deref().unwrap_or("");
        match secret_type {
            "kubernetes.io/service-account-token" => {
                let key = "kubernetes.io/service-account.name";
                if self.metadata.annotations.as_ref().and_then(|a| a.get(key)).is_none_or(|v| v.is_empty()) {
                    errs.push(FieldError::required(&FieldPath::new("metadata").child("annotations").key(key), ""));
                }
            }
            "kubernetes.io/basic-auth" => {
                if !has("username") && !has("password") {
                    errs.push(FieldError::required(&data_path.key("username"), ""));
                    errs.push(FieldError::required(&data_path.key("password"), ""));
                }
            }
            t => {
                for key in required_keys(t) {
                    match data.get(*key) {
                        None if !has(key) => errs.push(FieldError::required(&data_path.key(key), "")),
                        Some(bytes) if key.starts_with(".docker") => {
                            if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes.0) {
                                errs.push(FieldError::invalid(
                                    &data_path.key(key),
                                    "<secret contents redacted>",
                                    e.to_string(),
                                ));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> ErrorList {
        let mut errs = validate_object_meta_update(&self.metadata, &old.metadata);
        let (new_type, old_type) = (self.type_.as_deref().unwrap_or(""), old.type_.as_deref().unwrap_or(""));
        if new_type != old_type {
            errs.push(FieldError::invalid(&FieldPath::new("type"), new_type, "field is immutable"));
        }
        if old.immutable == Some(true) {
            if self.immutable != Some(true) {
                errs.push(FieldError::forbidden(&FieldPath::new("immutable"), IMMUTABLE_MSG));
            }
            let string_changes = self.string_data.as_ref().is_some_and(|s| !s.is_empty());
            if self.data.clone().unwrap_or_default() != old.data.clone().unwrap_or_default() || string_changes {
                errs.push(FieldError::forbidden(&FieldPath::new("data"), IMMUTABLE_MSG));
            }
        }
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

    fn cm(extra: Value) -> Value {
        let mut v = json!({"metadata": {"name": "log-config", "namespace": "default"}});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    }

    #[test]
    fn validates_config_maps() {
        let big = "x".repeat(MAX_DATA_SIZE + 1);
        let cases = vec![
            Case {
                name: "a config map with plain keys is valid",
                object: cm(json!({"data": {"log_level": "INFO", "a.b-c": "x"}})),
                want: vec![],
            },
            Case {
                name: "keys with slashes are invalid",
                object: cm(json!({"data": {"a/b": "x"}})),
                want: vec!["data[a/b]"],
            },
            Case {
                name: "a key of two dots is invalid",
                object: cm(json!({"data": {"..": "x"}})),
                want: vec!["data[..]"],
            },
            Case {
                name: "a key in both data and binaryData is refused",
                object: cm(json!({"data": {"k": "x"}, "binaryData": {"k": "eA=="}})),
                want: vec!["binaryData"],
            },
            Case { name: "more than one MiB is too long", object: cm(json!({"data": {"k": big}})), want: vec![""] },
        ];
        for c in cases {
            let o: core::ConfigMap = serde_json::from_value(c.object).expect(c.name);
            assert_eq!(fields(&o.validate()), c.want, "{}", c.name);
        }
    }

    #[test]
    fn keeps_immutable_config_maps_immutable() {
        let old: core::ConfigMap =
            serde_json::from_value(cm(json!({"data": {"k": "1"}, "immutable": true}))).expect("old");
        let same = old.clone();
        assert!(same.validate_update(&old).is_empty());
        let changed: core::ConfigMap =
            serde_json::from_value(cm(json!({"data": {"k": "2"}, "immutable": true}))).expect("new");
        assert_eq!(fields(&changed.validate_update(&old)), vec!["data"]);
        let unset: core::ConfigMap = serde_json::from_value(cm(json!({"data": {"k": "1"}}))).expect("new");
        assert_eq!(fields(&unset.validate_update(&old)), vec!["immutable"]);
        let mutable: core::ConfigMap = serde_json::from_value(cm(json!({"data": {"k": "1"}}))).expect("old");
        assert!(changed.validate_update(&mutable).is_empty());
    }

    fn secret(extra: Value) -> Value {
        let mut v = json!({"metadata": {"name": "s", "namespace": "default"}});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    }

    #[test]
    fn validates_secrets_by_type() {
        let cases = vec![
            Case {
                name: "an opaque secret is valid",
                object: secret(json!({"type": "Opaque", "data": {"key": "dmFsdWU="}})),
                want: vec![],
            },
            Case {
                name: "a secret key must be a config key",
                object: secret(json!({"type": "Opaque", "data": {"a b": "dmFsdWU="}})),
                want: vec!["data[a b]"],
            },
            Case {
                name: "a dockerconfigjson secret needs its key",
                object: secret(json!({"type": "kubernetes.io/dockerconfigjson", "data": {}})),
                want: vec!["data[.dockerconfigjson]"],
            },
            Case {
                name: "a dockerconfigjson secret must hold json",
                object: secret(
                    json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "bm90IGpzb24="}}),
                ),
                want: vec!["data[.dockerconfigjson]"],
            },
            Case {
                name: "a tls secret needs a certificate and a key",
                object: secret(json!({"type": "kubernetes.io/tls", "stringData": {"tls.crt": "x"}})),
                want: vec!["data[tls.key]"],
            },
            Case {
                name: "a basic auth secret needs a username or password",
                object: secret(json!({"type": "kubernetes.io/basic-auth"})),
                want: vec!["data[username]", "data[password]"],
            },
            Case {
                name: "an ssh secret needs a private key",
                object: secret(json!({"type": "kubernetes.io/ssh-auth"})),
                want: vec!["data[ssh-privatekey]"],
            },
            Case {
                name: "a service account token names its account",
                object: secret(json!({"type": "kubernetes.io/service-account-token"})),
                want: vec!["metadata.annotations[kubernetes.io/service-account.name]"],
            },
            Case {
                name: "a custom type is allowed",
                object: secret(json!({"type": "example.com/thing"})),
                want: vec![],
            },
        ];
        for c in cases {
            let o: core::Secret = serde_json::from_value(c.object).expect(c.name);
            assert_eq!(fields(&o.validate()), c.want, "{}", c.name);
        }
    }

    #[test]
    fn keeps_secret_type_and_immutable_data() {
        let old: core::Secret =
            serde_json::from_value(secret(json!({"type": "Opaque", "data": {"k": "MQ=="}, "immutable": true})))
                .expect("old");
        let retyped: core::Secret =
            serde_json::from_value(secret(json!({"type": "kubernetes.io/ssh-auth", "data": {"k": "MQ==", "ssh-privatekey": "MQ=="}, "immutable": true})))
                .expect("new");
        assert_eq!(fields(&retyped.validate_update(&old)), vec!["type", "data"]);
        assert!(old.clone().validate_update(&old).is_empty());
    }
}
