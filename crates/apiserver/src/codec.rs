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

/// A request body as JSON, with the fields it gave more than once.
#[derive(Debug, Clone, Default)]
pub struct Body {
    /// The value; of a field given twice in one object, the last one (as Go's decoder and kube keep it).
    pub value: Value,
    /// Paths of fields given more than once in one object (`metadata.name`), in the order they were met;
    /// `fieldValidation` decides whether they are refused, warned about or ignored.
    pub duplicates: Vec<String>,
}

/// Parse a body by its content type into a JSON value.
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    parse_body_checked(content_type, body).map(|b| b.value)
}

/// Parse a body by its content type, noting duplicated fields (a protobuf body cannot have any).
pub fn parse_body_checked(content_type: Option<&str>, body: &[u8]) -> Result<Body, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    let media = content_type.unwrap_or("application/json").split(';').next().unwrap_or("").trim();
    let checked = match media {
        "application/json" | "" | "*/*" => serde_json::from_slice::<DuplicateChecked>(body)
            .map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded as JSON: {e}")))?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("the body of the request is not valid UTF-8 YAML"))?;
            // Duplicates are the field validation's to judge, so the parser keeps the last one.
            let options = serde_saphyr::options! { duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins };
            serde_saphyr::from_str_with_options::<DuplicateChecked>(text, options).map_err(|e| {
                ApiError::bad_request(format!("the body of the request could not be decoded as YAML: {e}"))
            })?
        }
        crate::protobuf::CONTENT_TYPE => {
            return crate::protobuf::decode_body(body).map(|value| Body { value, duplicates: Vec::new() })
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    Ok(Body { value: checked.value, duplicates: checked.duplicates })
}

/// A JSON value deserialized from any self-describing format, noting the fields given twice in one object.
/// Paths are kept as a chain of borrowed frames on the stack, so nothing is allocated unless a duplicate
/// is found.
struct DuplicateChecked {
    value: Value,
    duplicates: Vec<String>,
}

impl<'de> serde::Deserialize<'de> for DuplicateChecked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let duplicates = std::cell::RefCell::new(Vec::new());
        let value =
            d.deserialize_any(Checking { at: Frame { step: Step::Root, parent: None }, duplicates: &duplicates })?;
        Ok(DuplicateChecked { value, duplicates: duplicates.into_inner() })
    }
}

#[derive(Clone, Copy)]
enum Step<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

#[derive(Clone, Copy)]
struct Frame<'a> {
    step: Step<'a>,
    parent: Option<&'a Frame<'a>>,
}

impl Frame<'_> {
    /// `spec.containers[0].name`, as kube names fields in strict decoding errors.
    fn path(&self, out: &mut String) {
        if let Some(parent) = self.parent {
            parent.path(out);
        }
        match self.step {
            Step::Root => {}
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
}

struct Checking<'a> {
    at: Frame<'a>,
    duplicates: &'a std::cell::RefCell<Vec<String>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Checking<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Checking<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        loop {
            let at = Frame { step: Step::Index(items.len()), parent: Some(&self.at) };
            match seq.next_element_seed(Checking { at, duplicates: self.duplicates })? {
                Some(v) => items.push(v),
                None => break,
            }
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let at = Frame { step: Step::Key(&key), parent: Some(&self.at) };
            let value = map.next_value_seed(Checking { at, duplicates: self.duplicates })?;
            if object.contains_key(&key) {
                let mut path = String::new();
                at.path(&mut path);
                self.duplicates.borrow_mut().push(path);
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
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

/// What `fieldValidation` reports about a body: each unknown and each duplicated field, in kube's words
/// (`unknown field "spec.foo"`, `duplicate field "metadata.name"`).
pub fn strict_problems(unknown: &[String], duplicates: &[String]) -> Vec<String> {
    let unknown = unknown.iter().map(|f| format!("unknown field {f:?}"));
    unknown.chain(duplicates.iter().map(|f| format!("duplicate field {f:?}"))).collect()
}

/// The message kube-apiserver gives for unknown or duplicate fields under `fieldValidation=Strict`:
/// `strict decoding error: unknown field "spec.foo", duplicate field "metadata.name"`.
pub fn strict_error(resource: &Resource, problems: &[String]) -> ApiError {
    let list = problems.join(", ");
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
    fn duplicate_fields_are_found_at_any_depth_and_the_last_one_wins() {
        struct Case {
            name: &'static str,
            content_type: &'static str,
            body: &'static str,
            duplicates: &'static [&'static str],
            name_is: &'static str,
        }
        let cases = [
            Case {
                name: "json, in metadata",
                content_type: "application/json",
                body: r#"{"metadata":{"name":"sd","name":"sd2"}}"#,
                duplicates: &["metadata.name"],
                name_is: "sd2",
            },
            Case {
                name: "json, in a list item, twice",
                content_type: "application/json",
                body: r#"{"metadata":{"name":"a"},"spec":{"c":[{"x":1},{"x":1,"x":2,"x":3}]}}"#,
                duplicates: &["spec.c[1].x", "spec.c[1].x"],
                name_is: "a",
            },
            Case {
                name: "json without duplicates",
                content_type: "application/json",
                body: r#"{"metadata":{"name":"a"},"a":[1,2.5,null,true,"s"]}"#,
                duplicates: &[],
                name_is: "a",
            },
            Case {
                name: "yaml, in metadata",
                content_type: "application/yaml",
                body: "metadata:\n  name: sd\n  name: sd2\n",
                duplicates: &["metadata.name"],
                name_is: "sd2",
            },
        ];
        for c in cases {
            let b = parse_body_checked(Some(c.content_type), c.body.as_bytes()).unwrap();
            assert_eq!(b.duplicates, c.duplicates, "{}", c.name);
            assert_eq!(b.value["metadata"]["name"], c.name_is, "{}", c.name);
        }
        let plain: Value = serde_json::from_str(r#"{"a":[1,2.5,null,true,"s",{"b":{}}],"n":-3}"#).unwrap();
        let b = parse_body_checked(None, plain.to_string().as_bytes()).unwrap();
        assert_eq!(b.value, plain, "values are read as serde_json reads them");
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
