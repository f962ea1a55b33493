//! Request and response bodies: JSON or YAML in, JSON out; strict field checking; and the resourceVersion
//! splice that lets stored objects (kept without a resourceVersion, as etcd keeps them) be answered without a
//! decode/encode round trip.

use crate::status::ApiError;
use kvol_api::Resource;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The largest request body accepted, as kube-apiserver's limit.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How unknown or duplicate fields in a body are treated (`?fieldValidation=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and answer a `Warning:` header (kube-apiserver's default).
    Warn,
    /// Refuse the request.
    Strict,
}

impl FieldValidation {
    /// Parse the query parameter; kube-apiserver accepts these three spellings only.
    pub fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        match v {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\" or \"Strict\", got {other:?}"
            ))),
        }
    }
}

/// Parse a body by its content type into a JSON value.
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    let media = content_type.unwrap_or("application/json").split(';').next().unwrap_or("").trim();
    match media {
        "application/json" | "" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded as JSON: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("the body of the request is not valid UTF-8 YAML"))?;
            serde_saphyr::from_str::<Value>(text).map_err(|e| {
                ApiError::bad_request(format!("the body of the request could not be decoded as YAML: {e}"))
            })
        }
        crate::protobuf::CONTENT_TYPE => crate::protobuf::decode_body(body),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// Decode a JSON value into the typed object of `resource`, checking apiVersion and kind, and find the
/// fields the type does not know. Returns the object and the unknown fields' paths.
pub fn decode_typed<T: DeserializeOwned + serde::Serialize>(
    resource: &Resource,
    mut value: Value,
) -> Result<(T, Vec<String>), ApiError> {
    let obj = value.as_object_mut().ok_or_else(|| {
        ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: the body is not a JSON object",
            resource.kind, resource.version, resource.kind
        ))
    })?;
    let api_version = resource.api_version();
    match obj.get("apiVersion") {
        None => {
            obj.insert("apiVersion".into(), Value::String(api_version.clone()));
        }
        Some(Value::String(v)) if *v == api_version => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({api_version})",
                other.as_str().unwrap_or("?")
            )))
        }
    }
    match obj.get("kind") {
        None => {
            obj.insert("kind".into(), Value::String(resource.kind.to_string()));
        }
        Some(Value::String(k)) if k == resource.kind => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({}) does not match the expected kind ({})",
                other.as_str().unwrap_or("?"),
                resource.kind
            )))
        }
    }
    let original = value.clone();
    let typed: T = serde_json::from_value(value).map_err(|e| {
        // serde_json's errors from a `Value` carry no position: name the field as kube-apiserver does.
        let at = failing_field::<T>(&original).map(|f| format!(" (field {f})")).unwrap_or_default();
        ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: {e}{at}",
            resource.kind, resource.version, resource.kind
        ))
    })?;
    let known = serde_json::to_value(&typed).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut unknown = Vec::new();
    unknown_fields(&original, &known, "", &mut unknown);
    Ok((typed, unknown))
}

/// The field that makes `value` fail to decode as `T`: the deepest path whose removal lets it decode (every
/// k8s-openapi field may be absent). Only run on the error path, and bounded (about 32 MiB of trial decodes)
/// so a huge body stays cheap to refuse.
fn failing_field<T: DeserializeOwned>(value: &Value) -> Option<String> {
    const BUDGET_BYTES: usize = 32 << 20;
    let size = serde_json::to_vec(value).map_or(usize::MAX, |v| v.len()).max(1);
    let max_trials = (BUDGET_BYTES / size).min(256);
    let mut trials = 0;
    let mut path: Vec<PathStep> = Vec::new();
    loop {
        let node = path.iter().try_fold(value, |v, step| match step {
            PathStep::Key(k) => v.get(k.as_str()),
            PathStep::Index(i) => v.get(*i),
        })?;
        let children: Vec<PathStep> = match node {
            Value::Object(m) => m.keys().map(|k| PathStep::Key(k.clone())).collect(),
            Value::Array(a) => (0..a.len()).map(PathStep::Index).collect(),
            _ => break,
        };
        let mut culprit = None;
        for child in children {
            trials += 1;
            if trials > max_trials {
                break;
            }
            let mut trial = value.clone();
            remove_at(&mut trial, &path, &child);
            if serde_json::from_value::<T>(trial).is_ok() {
                culprit = Some(child);
                break;
            }
        }
        match culprit {
            Some(c) => path.push(c),
            None => break,
        }
    }
    if path.is_empty() {
        return None;
    }
    let mut out = String::new();
    for step in &path {
        match step {
            PathStep::Key(k) if out.is_empty() => out.push_str(k),
            PathStep::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            PathStep::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    Some(out)
}

enum PathStep {
    Key(String),
    Index(usize),
}

fn remove_at(value: &mut Value, parent: &[PathStep], child: &PathStep) {
    let mut at = value;
    for step in parent {
        let next = match step {
            PathStep::Key(k) => at.get_mut(k.as_str()),
            PathStep::Index(i) => at.get_mut(*i),
        };
        match next {
            Some(v) => at = v,
            None => return,
        }
    }
    match (at, child) {
        (Value::Object(m), PathStep::Key(k)) => {
            m.remove(k);
        }
        (Value::Array(a), PathStep::Index(i)) if *i < a.len() => {
            a.remove(*i);
        }
        _ => {}
    }
}

/// Paths present in `input` but absent from `known` (the input re-encoded through the typed object). Nulls
/// are not unknown: they decode to "unset".
fn unknown_fields(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                let p = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match k.get(key) {
                    Some(kv) => unknown_fields(v, kv, &p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (n, (iv, kv)) in i.iter().zip(k).enumerate() {
                unknown_fields(iv, kv, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// The message kube-apiserver gives for unknown fields under `fieldValidation=Strict`.
pub fn strict_error(resource: &Resource, unknown: &[String]) -> ApiError {
    let list = unknown.iter().map(|f| format!("unknown field {f:?}")).collect::<Vec<_>>().join(", ");
    ApiError::bad_request(format!(
        "{} in version {:?} cannot be handled as a {}: strict decoding error: {list}",
        resource.kind, resource.version, resource.kind
    ))
}

/// Insert `"resourceVersion":"<rv>"` into the top-level metadata of a stored object's JSON.
///
/// Stored objects are written by this server through `k8s-openapi`'s serializers, which emit `apiVersion`,
/// `kind`, then `metadata`, and never a resourceVersion; so the first `"metadata":{` is the top-level one.
/// Anything else falls back to a full decode and encode.
pub fn with_resource_version(stored: &[u8], rv: i64) -> Vec<u8> {
    const NEEDLE: &[u8] = b"\"metadata\":{";
    if let Some(pos) = find(stored, NEEDLE) {
        let at = pos + NEEDLE.len();
        let prefix = &stored[..pos];
        // apiVersion and kind are validated plain strings: only the object's own brace precedes metadata.
        if prefix.iter().filter(|&&c| c == b'{').count() == 1 {
            let rv_field = format!("\"resourceVersion\":\"{rv}\"");
            let mut out = Vec::with_capacity(stored.len() + rv_field.len() + 1);
            out.extend_from_slice(&stored[..at]);
            out.extend_from_slice(rv_field.as_bytes());
            if stored.get(at) != Some(&b'}') {
                out.push(b',');
            }
            out.extend_from_slice(&stored[at..]);
            return out;
        }
    }
    match serde_json::from_slice::<Value>(stored) {
        Ok(mut v) => {
            if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
            }
            serde_json::to_vec(&v).unwrap_or_else(|_| stored.to_vec())
        }
        Err(_) => stored.to_vec(),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What the client asked the response to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The object or list, as JSON.
    Json,
    /// A `meta.k8s.io/v1` Table (kubectl's server-side printing).
    Table,
    /// `meta.k8s.io/v1` PartialObjectMetadata (or its List): metadata only, for metadata informers.
    Metadata,
}

/// Pick the response form from an `Accept` header: the first acceptable entry wins, as kube-apiserver does.
pub fn negotiate(accept: Option<&str>) -> Result<Output, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Ok(Output::Json) };
    for entry in accept.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let get = |k: &str| params.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        match (media, get("as")) {
            ("application/json" | "*/*" | "application/*", Some("Table"))
                if get("g") == Some("meta.k8s.io") && matches!(get("v"), Some("v1") | Some("v1beta1")) =>
            {
                return Ok(Output::Table)
            }
            (
                "application/json" | "*/*" | "application/*",
                Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
            ) if get("g") == Some("meta.k8s.io") && matches!(get("v"), Some("v1") | Some("v1beta1")) => {
                return Ok(Output::Metadata)
            }
            ("application/json" | "*/*" | "application/*", None) => return Ok(Output::Json),
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable(accept))
}

/// The `PartialObjectMetadata` form of an object: its metadata only.
pub fn partial_object_metadata(obj: &Value) -> Value {
    serde_json::json!({ "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj["metadata"] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolume;

    fn pv_resource() -> &'static Resource {
        kvol_api::resources::by_kind("v1", "PersistentVolume").unwrap()
    }

    #[test]
    fn splices_the_resource_version_into_top_level_metadata() {
        let stored = br#"{"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":"a"},"spec":{}}"#;
        let out = with_resource_version(stored, 42);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["metadata"]["resourceVersion"], "42");
        assert_eq!(v["metadata"]["name"], "a");
        let empty = with_resource_version(br#"{"apiVersion":"v1","kind":"X","metadata":{}}"#, 7);
        assert_eq!(serde_json::from_slice::<Value>(&empty).unwrap()["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn falls_back_when_metadata_is_not_where_the_serializer_puts_it() {
        let odd = br#"{"spec":{"metadata":{"x":1}},"metadata":{"name":"a"}}"#;
        let v: Value = serde_json::from_slice(&with_resource_version(odd, 3)).unwrap();
        assert_eq!(v["metadata"]["resourceVersion"], "3");
        assert!(v["spec"]["metadata"].get("resourceVersion").is_none());
    }

    #[test]
    fn finds_unknown_fields_at_any_depth() {
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "a", "colour": "red"},
            "spec": {"capacity": {"storage": "1Gi"}, "nfs": {"server": "s", "path": "/p", "bogus": 1}, "labels": null}
        });
        let (_pv, unknown) = decode_typed::<PersistentVolume>(pv_resource(), body).unwrap();
        assert_eq!(unknown, vec!["metadata.colour".to_string(), "spec.nfs.bogus".to_string()]);
    }

    #[test]
    fn a_wrong_type_is_reported_with_its_field_path() {
        let body = serde_json::json!({"kind": "PersistentVolume", "metadata": {"name": "a"}, "spec": {"capacity": 5}});
        let e = decode_typed::<PersistentVolume>(pv_resource(), body).unwrap_err();
        assert!(e.message.ends_with("expected a map (field spec.capacity)"), "{}", e.message);
        let pod = kvol_api::resources::by_kind("v1", "Pod").unwrap();
        let body = serde_json::json!({"kind": "Pod", "spec": {"containers": [{"name": "c"}, {"name": "d", "ports": [{"containerPort": "x"}]}]}});
        let e = decode_typed::<k8s_openapi::api::core::v1::Pod>(pod, body).unwrap_err();
        assert!(e.message.ends_with("(field spec.containers[1].ports[0].containerPort)"), "{}", e.message);
    }

    #[test]
    fn refuses_wrong_types_and_kinds() {
        let wrong_type = serde_json::json!({"kind": "PersistentVolume", "metadata": {"name": 5}});
        let e = decode_typed::<PersistentVolume>(pv_resource(), wrong_type).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(
            e.message.starts_with("PersistentVolume in version \"v1\" cannot be handled as a PersistentVolume"),
            "{}",
            e.message
        );
        let wrong_kind = serde_json::json!({"kind": "Pod", "metadata": {"name": "a"}});
        assert!(decode_typed::<PersistentVolume>(pv_resource(), wrong_kind).unwrap_err().message.contains("kind"));
    }

    #[test]
    fn negotiates_tables_for_kubectl() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(kubectl)).unwrap(), Output::Table);
        assert_eq!(negotiate(Some("application/json")).unwrap(), Output::Json);
        assert_eq!(negotiate(None).unwrap(), Output::Json);
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf, application/json")).unwrap(), Output::Json);
        assert!(negotiate(Some("application/vnd.kubernetes.protobuf")).is_err());
        let metadata = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        assert_eq!(negotiate(Some(metadata)).unwrap(), Output::Metadata);
    }

    #[test]
    fn keeps_only_metadata_for_partial_objects() {
        let obj = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"x": 1}});
        assert_eq!(
            partial_object_metadata(&obj),
            serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": "a"}})
        );
    }
}
