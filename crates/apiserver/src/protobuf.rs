//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), as kubectl's typed commands
//! (`kubectl create configmap|secret|namespace`) and client-go controllers send them, decoded into the same
//! JSON the server handles for JSON bodies. Answers stay JSON, which those clients accept.
//!
//! Design decision: the messages are described in `proto/*.proto` (written from the public Kubernetes API
//! definitions), compiled by `build.rs` into a descriptor set and decoded at run time with `prost-reflect`
//! into a dynamic message, which is then written out with Kubernetes' JSON rules rather than proto3 JSON:
//! Go's `omitempty` for value fields, kept zero values for pointer fields, inlined structs, RFC 3339 times,
//! quantities as strings, bytes as base64. Generating Rust types instead would duplicate `k8s-openapi`'s
//! types, which stay the one typed model of the objects.

use crate::status::ApiError;
use base64::Engine;
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage};
use serde_json::{Map, Number, Value};
use std::collections::HashSet;
use std::sync::OnceLock;

/// The media type this module decodes.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Every Kubernetes protobuf body starts with these four bytes, then a `runtime.Unknown`.
pub const MAGIC: &[u8; 4] = b"k8s\0";

const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes.fds"));

const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";
const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
const DURATION: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Duration";
const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";
const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";

/// The compiled descriptors, with the kvol field options read once.
struct Schema {
    pool: DescriptorPool,
    unknown: MessageDescriptor,
    /// Full names of fields that are Go pointers (zero values kept).
    pointer: HashSet<String>,
    /// Full names of fields that are inlined Go structs.
    inline: HashSet<String>,
}

impl Schema {
    fn load() -> Result<Schema, String> {
        let pool = DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string())?;
        let unknown = pool.get_message_by_name(UNKNOWN).ok_or("runtime.Unknown is not described")?;
        let pointer_ext = pool.get_extension_by_name("kvol.pointer").ok_or("kvol.pointer is not described")?;
        let inline_ext = pool.get_extension_by_name("kvol.inline").ok_or("kvol.inline is not described")?;
        let (mut pointer, mut inline) = (HashSet::new(), HashSet::new());
        for message in pool.all_messages() {
            for field in message.fields() {
                let options = field.options();
                let flag = |ext| options.has_extension(ext) && options.get_extension(ext).as_bool() == Some(true);
                if flag(&pointer_ext) {
                    pointer.insert(field.full_name().to_string());
                }
                if flag(&inline_ext) {
                    inline.insert(field.full_name().to_string());
                }
            }
        }
        Ok(Schema { pool, unknown, pointer, inline })
    }
}

/// The schema, decoded on first use. The descriptor set is a build artefact, so this is process-wide.
fn schema() -> Result<&'static Schema, ApiError> {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(Schema::load)
        .as_ref()
        .map_err(|e| ApiError::internal(format!("the protobuf descriptors could not be loaded: {e}")))
}

fn bad(message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("the body of the request could not be decoded as protobuf: {message}"))
}

/// Decode a `application/vnd.kubernetes.protobuf` body into the object's JSON, with `apiVersion` and `kind`
/// taken from the envelope.
///
/// Errors: 400 for a body without the `k8s\0` magic, a malformed or truncated message, or a kind kvol does
/// not serve; 415 for a kind kvol serves but has no protobuf description for (the client can send JSON).
pub fn decode_body(body: &[u8]) -> Result<Value, ApiError> {
    let schema = schema()?;
    let envelope = body.strip_prefix(MAGIC.as_slice()).ok_or_else(|| {
        bad(format!("provided data does not appear to be a protobuf message, expected prefix {:?}", MAGIC.as_slice()))
    })?;
    let unknown = DynamicMessage::decode(schema.unknown.clone(), envelope).map_err(bad)?;
    let text = |name: &str| unknown.get_field_by_name(name).and_then(|v| v.as_str().map(str::to_string));
    let (api_version, kind) = match unknown.get_field_by_name("typeMeta").as_deref().and_then(|v| v.as_message()) {
        Some(type_meta) => {
            let get = |name: &str| {
                type_meta.get_field_by_name(name).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            };
            (get("apiVersion"), get("kind"))
        }
        None => (String::new(), String::new()),
    };
    if let Some(encoding) = text("contentEncoding").filter(|e| !e.is_empty()) {
        return Err(bad(format!("content encoding {encoding:?} is not supported")));
    }
    if let Some(ct) = text("contentType").filter(|c| !c.is_empty() && c != CONTENT_TYPE) {
        return Err(bad(format!("the embedded object's content type {ct:?} is not {CONTENT_TYPE:?}")));
    }
    if kind.is_empty() {
        return Err(bad("Object 'Kind' is missing in the protobuf envelope"));
    }
    let descriptor = message_for(schema, &api_version, &kind)?;
    let raw = unknown.get_field_by_name("raw").and_then(|v| v.as_bytes().cloned()).unwrap_or_default();
    let object = DynamicMessage::decode(descriptor, raw).map_err(|e| bad(format!("{kind}: {e}")))?;
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(api_version));
    out.insert("kind".into(), Value::String(kind));
    write_fields(schema, &object, &mut out)?;
    Ok(Value::Object(out))
}

/// The message describing `kind` in `api_version`.
fn message_for(schema: &Schema, api_version: &str, kind: &str) -> Result<MessageDescriptor, ApiError> {
    let full_name = if kind == "DeleteOptions" {
        format!("{META}.DeleteOptions")
    } else {
        let resource = kvol_api::resources::by_kind(api_version, kind).ok_or_else(|| {
            let version = if api_version.is_empty() { "v1" } else { api_version };
            bad(format!("no kind {kind:?} is registered for version {version:?}"))
        })?;
        let package = match resource.group {
            "" => "core",
            group => group.split('.').next().unwrap_or(group),
        };
        format!("k8s.io.api.{package}.{}.{kind}", resource.version)
    };
    schema.pool.get_message_by_name(&full_name).ok_or_else(|| {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "{kind} in version {api_version:?} cannot be handled as {CONTENT_TYPE}: kvol has no protobuf \
                 description of it; send it as application/json"
            ),
        )
    })
}

/// Write the set fields of `message` into `out` with Kubernetes' JSON rules.
fn write_fields(schema: &Schema, message: &DynamicMessage, out: &mut Map<String, Value>) -> Result<(), ApiError> {
    for field in message.descriptor().fields() {
        if !message.has_field(&field) {
            continue;
        }
        let value = message.get_field(&field);
        let json = if field.is_map() {
            let Some(map) = value.as_map() else { continue };
            if map.is_empty() {
                continue;
            }
            let mut object = Map::new();
            let value_field = match field.kind() {
                Kind::Message(entry) => entry.map_entry_value_field(),
                _ => continue,
            };
            for (key, v) in map {
                let key = match key {
                    MapKey::String(s) => s.clone(),
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(n) => n.to_string(),
                    MapKey::I64(n) => n.to_string(),
                    MapKey::U32(n) => n.to_string(),
                    MapKey::U64(n) => n.to_string(),
                };
                object.insert(key, element(schema, &value_field, v)?);
            }
            Value::Object(object)
        } else if field.is_list() {
            let Some(list) = value.as_list() else { continue };
            if list.is_empty() {
                continue;
            }
            Value::Array(list.iter().map(|v| element(schema, &field, v)).collect::<Result<_, _>>()?)
        } else if let Some(inner) = value.as_message() {
            match message_json(schema, inner)? {
                None => continue,
                Some(Value::Object(fields)) if schema.inline.contains(field.full_name()) => {
                    out.extend(fields);
                    continue;
                }
                Some(json) => json,
            }
        } else {
            if is_zero(&value) && !schema.pointer.contains(field.full_name()) {
                continue;
            }
            scalar(&value)?
        };
        out.insert(field.name().to_string(), json);
    }
    Ok(())
}

/// One element of a list or map: messages that encode to nothing become `null`, as Go writes them.
fn element(schema: &Schema, field: &FieldDescriptor, value: &prost_reflect::Value) -> Result<Value, ApiError> {
    match value.as_message() {
        Some(inner) => Ok(message_json(schema, inner)?.unwrap_or(Value::Null)),
        None if matches!(field.kind(), Kind::Message(_)) => Ok(Value::Null),
        None => scalar(value),
    }
}

/// A message's JSON: the well-known Kubernetes types by their JSON form, others as objects. `None` when Go's
/// JSON would write `null` (a zero time, an empty raw extension), so the field is left out.
fn message_json(schema: &Schema, message: &DynamicMessage) -> Result<Option<Value>, ApiError> {
    let int = |name: &str| message.get_field_by_name(name).and_then(|v| v.as_i64().or(v.as_i32().map(i64::from)));
    let text = |name: &str| message.get_field_by_name(name).and_then(|v| v.as_str().map(str::to_string));
    let bytes = |name: &str| message.get_field_by_name(name).and_then(|v| v.as_bytes().cloned()).unwrap_or_default();
    Ok(match message.descriptor().full_name() {
        TIME | MICRO_TIME => {
            let (seconds, nanos) = (int("seconds").unwrap_or(0), int("nanos").unwrap_or(0));
            if seconds == 0 && nanos == 0 {
                return Ok(None);
            }
            let micro = message.descriptor().full_name() == MICRO_TIME;
            Some(Value::String(rfc3339(seconds, nanos, micro)?))
        }
        QUANTITY => Some(Value::String(text("string").unwrap_or_default())),
        INT_OR_STRING => Some(match int("type").unwrap_or(0) {
            1 => Value::String(text("strVal").unwrap_or_default()),
            _ => Value::Number(int("intVal").unwrap_or(0).into()),
        }),
        DURATION => Some(Value::String(go_duration(int("duration").unwrap_or(0)))),
        RAW_EXTENSION => raw_json(&bytes("raw"), "RawExtension")?,
        FIELDS_V1 => raw_json(&bytes("Raw"), "FieldsV1")?,
        _ => {
            let mut out = Map::new();
            write_fields(schema, message, &mut out)?;
            Some(Value::Object(out))
        }
    })
}

/// Embedded JSON bytes (RawExtension, FieldsV1); empty means unset.
fn raw_json(raw: &[u8], what: &str) -> Result<Option<Value>, ApiError> {
    if raw.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(raw).map(Some).map_err(|e| bad(format!("{what} does not hold JSON: {e}")))
}

fn is_zero(value: &prost_reflect::Value) -> bool {
    use prost_reflect::Value as V;
    match value {
        V::Bool(b) => !b,
        V::I32(n) => *n == 0,
        V::I64(n) => *n == 0,
        V::U32(n) => *n == 0,
        V::U64(n) => *n == 0,
        V::F32(n) => *n == 0.0,
        V::F64(n) => *n == 0.0,
        V::String(s) => s.is_empty(),
        V::Bytes(b) => b.is_empty(),
        V::EnumNumber(n) => *n == 0,
        V::Message(_) | V::List(_) | V::Map(_) => false,
    }
}

fn scalar(value: &prost_reflect::Value) -> Result<Value, ApiError> {
    use prost_reflect::Value as V;
    let float = |f: f64| Number::from_f64(f).map(Value::Number).ok_or_else(|| bad(format!("{f} is not a JSON number")));
    Ok(match value {
        V::Bool(b) => Value::Bool(*b),
        V::I32(n) => Value::Number((*n).into()),
        V::I64(n) => Value::Number((*n).into()),
        V::U32(n) => Value::Number((*n).into()),
        V::U64(n) => Value::Number((*n).into()),
        V::F32(n) => float(f64::from(*n))?,
        V::F64(n) => float(*n)?,
        V::String(s) => Value::String(s.clone()),
        V::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        V::EnumNumber(n) => Value::Number((*n).into()),
        V::Message(_) | V::List(_) | V::Map(_) => Value::Null,
    })
}

/// metav1.Time is RFC 3339 in UTC with seconds (its protobuf decoding drops the nanoseconds);
/// metav1.MicroTime keeps six fractional digits.
fn rfc3339(seconds: i64, nanos: i64, micro: bool) -> Result<String, ApiError> {
    let nanos =
        if micro { i32::try_from(nanos).map_err(|_| bad(format!("nanos {nanos} is out of range")))? } else { 0 };
    let at = jiff::Timestamp::new(seconds, nanos).map_err(|e| bad(format!("time {seconds}s {nanos}ns: {e}")))?;
    let whole = at.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    Ok(if micro { format!("{whole}.{:06}Z", at.subsec_nanosecond() / 1000) } else { format!("{whole}Z") })
}

/// Go's `time.Duration.String()`: "1h2m3.5s", "1.5ms", "0s".
fn go_duration(nanos: i64) -> String {
    fn frac(v: u64, prec: u32, out: &mut String) -> u64 {
        let digits: Vec<u64> = (0..prec)
            .scan(v, |v, _| {
                let d = *v % 10;
                *v /= 10;
                Some(d)
            })
            .collect();
        let first_nonzero = digits.iter().position(|&d| d != 0);
        if let Some(start) = first_nonzero {
            out.push('.');
            for d in digits[start..].iter().rev() {
                out.push(char::from(b'0' + *d as u8));
            }
        }
        v / 10u64.pow(prec)
    }
    let mut u = nanos.unsigned_abs();
    let sign = if nanos < 0 { "-" } else { "" };
    if u == 0 {
        return "0s".into();
    }
    let mut fraction = String::new();
    if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        u = frac(u, prec, &mut fraction);
        return format!("{sign}{u}{fraction}{unit}");
    }
    u = frac(u, 9, &mut fraction);
    let (hours, minutes, seconds) = (u / 3600, (u / 60) % 60, u % 60);
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{seconds}{fraction}s")
    } else if u >= 60 {
        format!("{sign}{minutes}m{seconds}{fraction}s")
    } else {
        format!("{sign}{seconds}{fraction}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode_typed;
    use prost_reflect::Value as V;
    use serde_json::json;
    use std::collections::HashMap;

    // ---- building messages as client-go's gogo-protobuf marshaller writes them ----

    fn msg(name: &str, fields: Vec<(&str, V)>) -> DynamicMessage {
        let desc = schema().unwrap().pool.get_message_by_name(name).unwrap_or_else(|| panic!("{name} not described"));
        let mut m = DynamicMessage::new(desc);
        for (field, value) in fields {
            m.try_set_field_by_name(field, value).unwrap_or_else(|e| panic!("{name}.{field}: {e}"));
        }
        m
    }
    fn core(kind: &str, fields: Vec<(&str, V)>) -> V {
        V::Message(msg(&format!("k8s.io.api.core.v1.{kind}"), fields))
    }
    fn storage(kind: &str, fields: Vec<(&str, V)>) -> V {
        V::Message(msg(&format!("k8s.io.api.storage.v1.{kind}"), fields))
    }
    fn meta(kind: &str, fields: Vec<(&str, V)>) -> V {
        V::Message(msg(&format!("{META}.{kind}"), fields))
    }
    fn s(v: &str) -> V {
        V::String(v.into())
    }
    fn list(items: Vec<V>) -> V {
        V::List(items)
    }
    fn strings(items: &[&str]) -> V {
        V::List(items.iter().map(|i| s(i)).collect())
    }
    fn string_map(pairs: &[(&str, &str)]) -> V {
        V::Map(pairs.iter().map(|(k, v)| (MapKey::String(k.to_string()), s(v))).collect::<HashMap<_, _>>())
    }
    fn quantities(pairs: &[(&str, &str)]) -> V {
        V::Map(
            pairs
                .iter()
                .map(|(k, v)| (MapKey::String(k.to_string()), V::Message(msg(QUANTITY, vec![("string", s(v))]))))
                .collect::<HashMap<_, _>>(),
        )
    }
    fn time(seconds: i64) -> V {
        V::Message(msg(TIME, vec![("seconds", V::I64(seconds)), ("nanos", V::I32(0))]))
    }
    /// A zero metav1.Time: gogo writes the field with an empty message.
    fn zero_time() -> V {
        V::Message(msg(TIME, vec![]))
    }

    /// ObjectMeta as Go writes it: every value field present, zero or not.
    fn object_meta(name: &str, namespace: &str, extra: Vec<(&str, V)>) -> V {
        let mut fields = vec![
            ("name", s(name)),
            ("generateName", s("")),
            ("namespace", s(namespace)),
            ("selfLink", s("")),
            ("uid", s("")),
            ("resourceVersion", s("")),
            ("generation", V::I64(0)),
            ("creationTimestamp", zero_time()),
        ];
        fields.extend(extra);
        meta("ObjectMeta", fields)
    }

    fn envelope(api_version: &str, kind: &str, object: V) -> Vec<u8> {
        let V::Message(object) = object else { panic!("not a message") };
        let unknown = msg(
            UNKNOWN,
            vec![
                (
                    "typeMeta",
                    V::Message(msg(
                        "k8s.io.apimachinery.pkg.runtime.TypeMeta",
                        vec![("apiVersion", s(api_version)), ("kind", s(kind))],
                    )),
                ),
                ("raw", V::Bytes(prost::Message::encode_to_vec(&object).into())),
                ("contentEncoding", s("")),
                ("contentType", s("")),
            ],
        );
        let mut body = MAGIC.to_vec();
        body.extend(prost::Message::encode_to_vec(&unknown));
        body
    }

    fn strip_nulls(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), strip_nulls(v))).collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
            other => other.clone(),
        }
    }

    /// The protobuf body decodes to exactly the JSON kubectl would have sent (without its nulls), and both
    /// decode to the same typed object.
    fn same_as_json<T>(body: &[u8], expected: Value)
    where
        T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
    {
        let decoded = decode_body(body).unwrap();
        assert_eq!(decoded, strip_nulls(&expected), "decoded JSON");
        let resource =
            kvol_api::resources::by_kind(expected["apiVersion"].as_str().unwrap(), expected["kind"].as_str().unwrap())
                .unwrap();
        let (from_pb, unknown) = decode_typed::<T>(resource, decoded).unwrap();
        assert!(unknown.is_empty(), "unknown fields {unknown:?}");
        let (from_json, _) = decode_typed::<T>(resource, expected).unwrap();
        assert_eq!(from_pb, from_json);
    }

    #[test]
    fn decodes_a_configmap_as_kubectl_create_configmap_sends_it() {
        let managed = meta(
            "ManagedFieldsEntry",
            vec![
                ("manager", s("kubectl-create")),
                ("operation", s("Update")),
                ("apiVersion", s("v1")),
                ("time", time(1_700_000_000)),
                ("fieldsType", s("FieldsV1")),
                (
                    "fieldsV1",
                    meta("FieldsV1", vec![("Raw", V::Bytes(br#"{"f:data":{".":{},"f:a":{}}}"#.to_vec().into()))]),
                ),
                ("subresource", s("")),
            ],
        );
        let object = core(
            "ConfigMap",
            vec![
                (
                    "metadata",
                    object_meta(
                        "log-config",
                        "",
                        vec![("labels", string_map(&[("app", "web")])), ("managedFields", list(vec![managed]))],
                    ),
                ),
                ("data", string_map(&[("log_level", "debug")])),
                (
                    "binaryData",
                    V::Map(
                        [(MapKey::String("blob".into()), V::Bytes(vec![0u8, 159, 146, 150].into()))]
                            .into_iter()
                            .collect(),
                    ),
                ),
                ("immutable", V::Bool(false)),
            ],
        );
        let expected = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "log-config", "creationTimestamp": null, "labels": {"app": "web"},
                "managedFields": [{"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1",
                    "time": "2023-11-14T22:13:20Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {".": {}, "f:a": {}}}}]},
            "data": {"log_level": "debug"},
            "binaryData": {"blob": "AJ+Slg=="},
            "immutable": false
        });
        same_as_json::<k8s_openapi::api::core::v1::ConfigMap>(&envelope("v1", "ConfigMap", object), expected);
    }

    #[test]
    fn decodes_a_secret_with_its_data_as_base64() {
        let object = core(
            "Secret",
            vec![
                ("metadata", object_meta("s1", "default", vec![])),
                ("data", V::Map([(MapKey::String("a".into()), V::Bytes(b"b".to_vec().into()))].into_iter().collect())),
                ("type", s("Opaque")),
            ],
        );
        let expected = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s1", "namespace": "default", "creationTimestamp": null},
            "data": {"a": "Yg=="}, "type": "Opaque"
        });
        same_as_json::<k8s_openapi::api::core::v1::Secret>(&envelope("v1", "Secret", object), expected);
    }

    #[test]
    fn decodes_a_namespace_with_empty_spec_and_status() {
        let object = core(
            "Namespace",
            vec![
                ("metadata", object_meta("team-a", "", vec![])),
                ("spec", core("NamespaceSpec", vec![])),
                ("status", core("NamespaceStatus", vec![("phase", s(""))])),
            ],
        );
        let expected = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "creationTimestamp": null}, "spec": {}, "status": {}});
        same_as_json::<k8s_openapi::api::core::v1::Namespace>(&envelope("v1", "Namespace", object), expected);
    }

    #[test]
    fn decodes_an_event_with_micro_times_and_a_series() {
        let micro = |seconds: i64, nanos: i32| {
            V::Message(msg(MICRO_TIME, vec![("seconds", V::I64(seconds)), ("nanos", V::I32(nanos))]))
        };
        let object = core(
            "Event",
            vec![
                ("metadata", object_meta("pvc1.17a", "default", vec![])),
                (
                    "involvedObject",
                    core(
                        "ObjectReference",
                        vec![
                            ("kind", s("PersistentVolumeClaim")),
                            ("namespace", s("default")),
                            ("name", s("pvc1")),
                            ("uid", s("u-1")),
                            ("apiVersion", s("v1")),
                            ("resourceVersion", s("12")),
                            ("fieldPath", s("")),
                        ],
                    ),
                ),
                ("reason", s("ProvisioningSucceeded")),
                ("message", s("Successfully provisioned volume pv-1")),
                ("source", core("EventSource", vec![("component", s("kvol-provisioner")), ("host", s(""))])),
                ("firstTimestamp", time(1_700_000_000)),
                ("lastTimestamp", time(1_700_000_060)),
                ("count", V::I32(2)),
                ("type", s("Normal")),
                ("eventTime", micro(1_700_000_000, 123_456_789)),
                (
                    "series",
                    core("EventSeries", vec![("count", V::I32(2)), ("lastObservedTime", micro(1_700_000_060, 5_000))]),
                ),
                ("action", s("")),
                ("reportingComponent", s("kvol")),
                ("reportingInstance", s("")),
            ],
        );
        let expected = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "pvc1.17a", "namespace": "default", "creationTimestamp": null},
            "involvedObject": {"kind": "PersistentVolumeClaim", "namespace": "default", "name": "pvc1", "uid": "u-1", "apiVersion": "v1", "resourceVersion": "12"},
            "reason": "ProvisioningSucceeded", "message": "Successfully provisioned volume pv-1",
            "source": {"component": "kvol-provisioner"},
            "firstTimestamp": "2023-11-14T22:13:20Z", "lastTimestamp": "2023-11-14T22:14:20Z",
            "count": 2, "type": "Normal",
            "eventTime": "2023-11-14T22:13:20.123456Z",
            "series": {"count": 2, "lastObservedTime": "2023-11-14T22:14:20.000005Z"},
            "reportingComponent": "kvol"
        });
        same_as_json::<k8s_openapi::api::core::v1::Event>(&envelope("v1", "Event", object), expected);
    }

    fn secret_ref(name: &str) -> V {
        core("SecretReference", vec![("name", s(name)), ("namespace", s("kube-system"))])
    }

    fn pv_spec() -> V {
        let requirement = core(
            "NodeSelectorRequirement",
            vec![("key", s("kubernetes.io/hostname")), ("operator", s("In")), ("values", strings(&["node-1"]))],
        );
        core(
            "PersistentVolumeSpec",
            vec![
                ("capacity", quantities(&[("storage", "5Gi")])),
                (
                    "persistentVolumeSource",
                    core(
                        "PersistentVolumeSource",
                        vec![(
                            "csi",
                            core(
                                "CSIPersistentVolumeSource",
                                vec![
                                    ("driver", s("csi.kvol.io")),
                                    ("volumeHandle", s("vol-1")),
                                    ("readOnly", V::Bool(false)),
                                    ("fsType", s("ext4")),
                                    (
                                        "volumeAttributes",
                                        string_map(&[("storage.kubernetes.io/csiProvisionerIdentity", "123-kvol")]),
                                    ),
                                    ("nodeStageSecretRef", secret_ref("stage")),
                                    ("controllerExpandSecretRef", secret_ref("expand")),
                                ],
                            ),
                        )],
                    ),
                ),
                ("accessModes", strings(&["ReadWriteOnce"])),
                (
                    "claimRef",
                    core(
                        "ObjectReference",
                        vec![
                            ("kind", s("PersistentVolumeClaim")),
                            ("namespace", s("default")),
                            ("name", s("pvc1")),
                            ("uid", s("u-1")),
                            ("apiVersion", s("v1")),
                            ("resourceVersion", s("")),
                            ("fieldPath", s("")),
                        ],
                    ),
                ),
                ("persistentVolumeReclaimPolicy", s("Delete")),
                ("storageClassName", s("fast")),
                ("mountOptions", strings(&["noatime"])),
                ("volumeMode", s("Filesystem")),
                (
                    "nodeAffinity",
                    core(
                        "VolumeNodeAffinity",
                        vec![(
                            "required",
                            core(
                                "NodeSelector",
                                vec![(
                                    "nodeSelectorTerms",
                                    list(vec![core(
                                        "NodeSelectorTerm",
                                        vec![("matchExpressions", list(vec![requirement]))],
                                    )]),
                                )],
                            ),
                        )],
                    ),
                ),
            ],
        )
    }

    fn pv_spec_json() -> Value {
        json!({
            "capacity": {"storage": "5Gi"},
            "csi": {"driver": "csi.kvol.io", "volumeHandle": "vol-1", "fsType": "ext4",
                "volumeAttributes": {"storage.kubernetes.io/csiProvisionerIdentity": "123-kvol"},
                "nodeStageSecretRef": {"name": "stage", "namespace": "kube-system"},
                "controllerExpandSecretRef": {"name": "expand", "namespace": "kube-system"}},
            "accessModes": ["ReadWriteOnce"],
            "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "default", "name": "pvc1", "uid": "u-1", "apiVersion": "v1"},
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": "fast",
            "mountOptions": ["noatime"],
            "volumeMode": "Filesystem",
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}]}]}}
        })
    }

    #[test]
    fn decodes_a_provisioned_persistent_volume_with_its_source_inlined() {
        let object = core(
            "PersistentVolume",
            vec![
                (
                    "metadata",
                    object_meta(
                        "pv-1",
                        "",
                        vec![
                            ("annotations", string_map(&[("pv.kubernetes.io/provisioned-by", "csi.kvol.io")])),
                            ("finalizers", strings(&["kubernetes.io/pv-protection"])),
                        ],
                    ),
                ),
                ("spec", pv_spec()),
                (
                    "status",
                    core(
                        "PersistentVolumeStatus",
                        vec![("phase", s("Pending")), ("message", s("")), ("reason", s(""))],
                    ),
                ),
            ],
        );
        let expected = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "pv-1", "creationTimestamp": null, "annotations": {"pv.kubernetes.io/provisioned-by": "csi.kvol.io"}, "finalizers": ["kubernetes.io/pv-protection"]},
            "spec": pv_spec_json(),
            "status": {"phase": "Pending"}
        });
        same_as_json::<k8s_openapi::api::core::v1::PersistentVolume>(
            &envelope("v1", "PersistentVolume", object),
            expected,
        );
    }

    #[test]
    fn decodes_the_other_persistent_volume_sources() {
        let cases: Vec<(&str, V, Value)> = vec![
            (
                "nfs",
                core(
                    "NFSVolumeSource",
                    vec![("server", s("10.0.0.1")), ("path", s("/export")), ("readOnly", V::Bool(true))],
                ),
                json!({"server": "10.0.0.1", "path": "/export", "readOnly": true}),
            ),
            (
                "hostPath",
                core("HostPathVolumeSource", vec![("path", s("/data")), ("type", s(""))]),
                json!({"path": "/data", "type": ""}),
            ),
            ("local", core("LocalVolumeSource", vec![("path", s("/mnt/disks/a"))]), json!({"path": "/mnt/disks/a"})),
            (
                "cephfs",
                core(
                    "CephFSPersistentVolumeSource",
                    vec![
                        ("monitors", strings(&["10.0.0.2:6789"])),
                        ("path", s("/")),
                        ("user", s("admin")),
                        ("secretFile", s("")),
                        ("secretRef", secret_ref("ceph")),
                        ("readOnly", V::Bool(false)),
                    ],
                ),
                json!({"monitors": ["10.0.0.2:6789"], "path": "/", "user": "admin", "secretRef": {"name": "ceph", "namespace": "kube-system"}}),
            ),
            (
                "flexVolume",
                core(
                    "FlexPersistentVolumeSource",
                    vec![
                        ("driver", s("k8s/nfs")),
                        ("fsType", s("")),
                        ("secretRef", secret_ref("flex")),
                        ("readOnly", V::Bool(false)),
                        ("options", string_map(&[("server", "s"), ("share", "/x")])),
                    ],
                ),
                json!({"driver": "k8s/nfs", "secretRef": {"name": "flex", "namespace": "kube-system"}, "options": {"server": "s", "share": "/x"}}),
            ),
            (
                "iscsi",
                core(
                    "ISCSIPersistentVolumeSource",
                    vec![
                        ("targetPortal", s("10.0.0.3:3260")),
                        ("iqn", s("iqn.2001-04.com.example:a")),
                        ("lun", V::I32(0)),
                        ("iscsiInterface", s("default")),
                        ("fsType", s("ext4")),
                        ("readOnly", V::Bool(false)),
                        ("portals", strings(&["10.0.0.4:3260"])),
                        ("chapAuthDiscovery", V::Bool(true)),
                        ("chapAuthSession", V::Bool(false)),
                        ("secretRef", secret_ref("chap")),
                        ("initiatorName", s("iqn.init")),
                    ],
                ),
                json!({"targetPortal": "10.0.0.3:3260", "iqn": "iqn.2001-04.com.example:a", "iscsiInterface": "default", "fsType": "ext4", "portals": ["10.0.0.4:3260"], "chapAuthDiscovery": true, "secretRef": {"name": "chap", "namespace": "kube-system"}, "initiatorName": "iqn.init"}),
            ),
            (
                "rbd",
                core(
                    "RBDPersistentVolumeSource",
                    vec![
                        ("monitors", strings(&["m1"])),
                        ("image", s("img")),
                        ("fsType", s("")),
                        ("pool", s("rbd")),
                        ("user", s("admin")),
                        ("keyring", s("/etc/ceph/keyring")),
                        ("readOnly", V::Bool(false)),
                    ],
                ),
                json!({"monitors": ["m1"], "image": "img", "pool": "rbd", "user": "admin", "keyring": "/etc/ceph/keyring"}),
            ),
            (
                "glusterfs",
                core(
                    "GlusterfsPersistentVolumeSource",
                    vec![
                        ("endpoints", s("ep")),
                        ("path", s("vol")),
                        ("readOnly", V::Bool(false)),
                        ("endpointsNamespace", s("gluster")),
                    ],
                ),
                json!({"endpoints": "ep", "path": "vol", "endpointsNamespace": "gluster"}),
            ),
            (
                "fc",
                core(
                    "FCVolumeSource",
                    vec![
                        ("targetWWNs", strings(&["500a0981891b8dc5"])),
                        ("lun", V::I32(0)),
                        ("fsType", s("ext4")),
                        ("readOnly", V::Bool(false)),
                    ],
                ),
                json!({"targetWWNs": ["500a0981891b8dc5"], "lun": 0, "fsType": "ext4"}),
            ),
            (
                "gcePersistentDisk",
                core(
                    "GCEPersistentDiskVolumeSource",
                    vec![
                        ("pdName", s("pd")),
                        ("fsType", s("ext4")),
                        ("partition", V::I32(1)),
                        ("readOnly", V::Bool(false)),
                    ],
                ),
                json!({"pdName": "pd", "fsType": "ext4", "partition": 1}),
            ),
            (
                "awsElasticBlockStore",
                core(
                    "AWSElasticBlockStoreVolumeSource",
                    vec![
                        ("volumeID", s("vol-1")),
                        ("fsType", s("")),
                        ("partition", V::I32(0)),
                        ("readOnly", V::Bool(true)),
                    ],
                ),
                json!({"volumeID": "vol-1", "readOnly": true}),
            ),
            (
                "azureDisk",
                core(
                    "AzureDiskVolumeSource",
                    vec![
                        ("diskName", s("d")),
                        ("diskURI", s("u")),
                        ("cachingMode", s("ReadWrite")),
                        ("fsType", s("ext4")),
                        ("readOnly", V::Bool(false)),
                        ("kind", s("Managed")),
                    ],
                ),
                json!({"diskName": "d", "diskURI": "u", "cachingMode": "ReadWrite", "fsType": "ext4", "readOnly": false, "kind": "Managed"}),
            ),
            (
                "azureFile",
                core(
                    "AzureFilePersistentVolumeSource",
                    vec![("secretName", s("az")), ("shareName", s("share")), ("readOnly", V::Bool(false))],
                ),
                json!({"secretName": "az", "shareName": "share"}),
            ),
            (
                "cinder",
                core(
                    "CinderPersistentVolumeSource",
                    vec![
                        ("volumeID", s("c")),
                        ("fsType", s("")),
                        ("readOnly", V::Bool(false)),
                        ("secretRef", secret_ref("os")),
                    ],
                ),
                json!({"volumeID": "c", "secretRef": {"name": "os", "namespace": "kube-system"}}),
            ),
            (
                "vsphereVolume",
                core(
                    "VsphereVirtualDiskVolumeSource",
                    vec![
                        ("volumePath", s("[ds] v.vmdk")),
                        ("fsType", s("")),
                        ("storagePolicyName", s("")),
                        ("storagePolicyID", s("")),
                    ],
                ),
                json!({"volumePath": "[ds] v.vmdk"}),
            ),
            (
                "quobyte",
                core(
                    "QuobyteVolumeSource",
                    vec![
                        ("registry", s("r:7861")),
                        ("volume", s("v")),
                        ("readOnly", V::Bool(false)),
                        ("user", s("")),
                        ("group", s("")),
                        ("tenant", s("")),
                    ],
                ),
                json!({"registry": "r:7861", "volume": "v"}),
            ),
            (
                "flocker",
                core("FlockerVolumeSource", vec![("datasetName", s("ds")), ("datasetUUID", s(""))]),
                json!({"datasetName": "ds"}),
            ),
            (
                "photonPersistentDisk",
                core("PhotonPersistentDiskVolumeSource", vec![("pdID", s("p")), ("fsType", s(""))]),
                json!({"pdID": "p"}),
            ),
            (
                "portworxVolume",
                core(
                    "PortworxVolumeSource",
                    vec![("volumeID", s("px")), ("fsType", s("")), ("readOnly", V::Bool(false))],
                ),
                json!({"volumeID": "px"}),
            ),
            (
                "scaleIO",
                core(
                    "ScaleIOPersistentVolumeSource",
                    vec![
                        ("gateway", s("https://g")),
                        ("system", s("sys")),
                        ("secretRef", secret_ref("sio")),
                        ("sslEnabled", V::Bool(false)),
                        ("protectionDomain", s("")),
                        ("storagePool", s("")),
                        ("storageMode", s("ThinProvisioned")),
                        ("volumeName", s("v")),
                        ("fsType", s("xfs")),
                        ("readOnly", V::Bool(false)),
                    ],
                ),
                json!({"gateway": "https://g", "system": "sys", "secretRef": {"name": "sio", "namespace": "kube-system"}, "storageMode": "ThinProvisioned", "volumeName": "v", "fsType": "xfs"}),
            ),
            (
                "storageos",
                core(
                    "StorageOSPersistentVolumeSource",
                    vec![
                        ("volumeName", s("v")),
                        ("volumeNamespace", s("")),
                        ("fsType", s("")),
                        ("readOnly", V::Bool(false)),
                        ("secretRef", core("ObjectReference", vec![("name", s("sos")), ("namespace", s("default"))])),
                    ],
                ),
                json!({"volumeName": "v", "secretRef": {"name": "sos", "namespace": "default"}}),
            ),
        ];
        for (field, source, json) in cases {
            let spec = core(
                "PersistentVolumeSpec",
                vec![
                    ("capacity", quantities(&[("storage", "1Gi")])),
                    ("persistentVolumeSource", core("PersistentVolumeSource", vec![(field, source)])),
                    ("accessModes", strings(&["ReadWriteMany"])),
                    ("persistentVolumeReclaimPolicy", s("Retain")),
                    ("storageClassName", s("")),
                ],
            );
            let object = core("PersistentVolume", vec![("metadata", object_meta("pv", "", vec![])), ("spec", spec)]);
            let expected = json!({
                "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv", "creationTimestamp": null},
                "spec": {"capacity": {"storage": "1Gi"}, field: json, "accessModes": ["ReadWriteMany"], "persistentVolumeReclaimPolicy": "Retain"}
            });
            same_as_json::<k8s_openapi::api::core::v1::PersistentVolume>(
                &envelope("v1", "PersistentVolume", object),
                expected,
            );
        }
    }

    #[test]
    fn decodes_a_claim_keeping_an_empty_storage_class_name() {
        let selector = meta(
            "LabelSelector",
            vec![
                ("matchLabels", string_map(&[("tier", "db")])),
                (
                    "matchExpressions",
                    list(vec![meta(
                        "LabelSelectorRequirement",
                        vec![("key", s("zone")), ("operator", s("NotIn")), ("values", strings(&["a", "b"]))],
                    )]),
                ),
            ],
        );
        let object = core(
            "PersistentVolumeClaim",
            vec![
                ("metadata", object_meta("pvc1", "default", vec![])),
                (
                    "spec",
                    core(
                        "PersistentVolumeClaimSpec",
                        vec![
                            ("accessModes", strings(&["ReadWriteOnce"])),
                            ("selector", selector),
                            (
                                "resources",
                                core(
                                    "VolumeResourceRequirements",
                                    vec![("requests", quantities(&[("storage", "1Gi")]))],
                                ),
                            ),
                            ("volumeName", s("")),
                            ("storageClassName", s("")),
                            (
                                "dataSourceRef",
                                core(
                                    "TypedObjectReference",
                                    vec![
                                        ("apiGroup", s("snapshot.storage.k8s.io")),
                                        ("kind", s("VolumeSnapshot")),
                                        ("name", s("snap")),
                                    ],
                                ),
                            ),
                        ],
                    ),
                ),
                (
                    "status",
                    core(
                        "PersistentVolumeClaimStatus",
                        vec![
                            ("phase", s("Bound")),
                            ("capacity", quantities(&[("storage", "1Gi")])),
                            (
                                "conditions",
                                list(vec![core(
                                    "PersistentVolumeClaimCondition",
                                    vec![
                                        ("type", s("Resizing")),
                                        ("status", s("True")),
                                        ("lastProbeTime", zero_time()),
                                        ("lastTransitionTime", time(1_700_000_000)),
                                        ("reason", s("")),
                                        ("message", s("")),
                                    ],
                                )]),
                            ),
                            ("allocatedResourceStatuses", string_map(&[("storage", "ControllerResizeInProgress")])),
                        ],
                    ),
                ),
            ],
        );
        let expected = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "pvc1", "namespace": "default", "creationTimestamp": null},
            "spec": {"accessModes": ["ReadWriteOnce"],
                "selector": {"matchLabels": {"tier": "db"}, "matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a", "b"]}]},
                "resources": {"requests": {"storage": "1Gi"}},
                "storageClassName": "",
                "dataSourceRef": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap"}},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"},
                "conditions": [{"type": "Resizing", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2023-11-14T22:13:20Z"}],
                "allocatedResourceStatuses": {"storage": "ControllerResizeInProgress"}}
        });
        let decoded = decode_body(&envelope("v1", "PersistentVolumeClaim", object.clone())).unwrap();
        assert_eq!(decoded["spec"]["storageClassName"], "", "a set empty class means no dynamic provisioning");
        same_as_json::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(
            &envelope("v1", "PersistentVolumeClaim", object),
            expected,
        );
    }

    #[test]
    fn decodes_a_node_as_a_kubelet_registers_it() {
        let object = core(
            "Node",
            vec![
                (
                    "metadata",
                    object_meta("node-1", "", vec![("labels", string_map(&[("kubernetes.io/hostname", "node-1")]))]),
                ),
                (
                    "spec",
                    core(
                        "NodeSpec",
                        vec![
                            ("podCIDR", s("10.244.0.0/24")),
                            ("podCIDRs", strings(&["10.244.0.0/24"])),
                            ("providerID", s("")),
                            ("unschedulable", V::Bool(true)),
                            (
                                "taints",
                                list(vec![core(
                                    "Taint",
                                    vec![
                                        ("key", s("node.kubernetes.io/unschedulable")),
                                        ("value", s("")),
                                        ("effect", s("NoSchedule")),
                                        ("timeAdded", time(1_700_000_000)),
                                    ],
                                )]),
                            ),
                            ("externalID", s("")),
                        ],
                    ),
                ),
                (
                    "status",
                    core(
                        "NodeStatus",
                        vec![
                            (
                                "capacity",
                                quantities(&[
                                    ("cpu", "2"),
                                    ("memory", "4Gi"),
                                    ("attachable-volumes-csi-csi.kvol.io", "16"),
                                ]),
                            ),
                            ("allocatable", quantities(&[("cpu", "1900m")])),
                            ("phase", s("")),
                            (
                                "conditions",
                                list(vec![core(
                                    "NodeCondition",
                                    vec![
                                        ("type", s("Ready")),
                                        ("status", s("True")),
                                        ("lastHeartbeatTime", time(1_700_000_000)),
                                        ("lastTransitionTime", time(1_700_000_000)),
                                        ("reason", s("KubeletReady")),
                                        ("message", s("kubelet is posting ready status")),
                                    ],
                                )]),
                            ),
                            (
                                "addresses",
                                list(vec![core(
                                    "NodeAddress",
                                    vec![("type", s("InternalIP")), ("address", s("10.0.0.5"))],
                                )]),
                            ),
                            (
                                "daemonEndpoints",
                                core(
                                    "NodeDaemonEndpoints",
                                    vec![("kubeletEndpoint", core("DaemonEndpoint", vec![("Port", V::I32(10250))]))],
                                ),
                            ),
                            (
                                "nodeInfo",
                                core(
                                    "NodeSystemInfo",
                                    vec![
                                        ("machineID", s("m")),
                                        ("systemUUID", s("")),
                                        ("bootID", s("b")),
                                        ("kernelVersion", s("6.1.0")),
                                        ("osImage", s("Debian GNU/Linux 12")),
                                        ("containerRuntimeVersion", s("containerd://1.7")),
                                        ("kubeletVersion", s("v1.33.0")),
                                        ("kubeProxyVersion", s("")),
                                        ("operatingSystem", s("linux")),
                                        ("architecture", s("amd64")),
                                        ("swap", core("NodeSwapStatus", vec![("capacity", V::I64(0))])),
                                    ],
                                ),
                            ),
                            (
                                "images",
                                list(vec![core(
                                    "ContainerImage",
                                    vec![("names", strings(&["busybox:1.36"])), ("sizeBytes", V::I64(4_261_574))],
                                )]),
                            ),
                            ("volumesInUse", strings(&["kubernetes.io/csi/csi.kvol.io^vol-1"])),
                            (
                                "volumesAttached",
                                list(vec![core(
                                    "AttachedVolume",
                                    vec![("name", s("kubernetes.io/csi/csi.kvol.io^vol-1")), ("devicePath", s(""))],
                                )]),
                            ),
                            ("features", core("NodeFeatures", vec![("supplementalGroupsPolicy", V::Bool(true))])),
                        ],
                    ),
                ),
            ],
        );
        let expected = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-1", "creationTimestamp": null, "labels": {"kubernetes.io/hostname": "node-1"}},
            "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"], "unschedulable": true,
                "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": "2023-11-14T22:13:20Z"}]},
            "status": {
                "capacity": {"cpu": "2", "memory": "4Gi", "attachable-volumes-csi-csi.kvol.io": "16"},
                "allocatable": {"cpu": "1900m"},
                "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2023-11-14T22:13:20Z", "lastTransitionTime": "2023-11-14T22:13:20Z", "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {"machineID": "m", "bootID": "b", "kernelVersion": "6.1.0", "osImage": "Debian GNU/Linux 12", "containerRuntimeVersion": "containerd://1.7", "kubeletVersion": "v1.33.0", "operatingSystem": "linux", "architecture": "amd64", "swap": {"capacity": 0}},
                "images": [{"names": ["busybox:1.36"], "sizeBytes": 4_261_574}],
                "volumesInUse": ["kubernetes.io/csi/csi.kvol.io^vol-1"],
                "volumesAttached": [{"name": "kubernetes.io/csi/csi.kvol.io^vol-1"}],
                "features": {"supplementalGroupsPolicy": true}
            }
        });
        same_as_json::<k8s_openapi::api::core::v1::Node>(&envelope("v1", "Node", object), expected);
    }

    #[test]
    fn decodes_a_storage_class_keeping_pointer_zero_values() {
        let object = storage(
            "StorageClass",
            vec![
                (
                    "metadata",
                    object_meta(
                        "fast",
                        "",
                        vec![("annotations", string_map(&[("storageclass.kubernetes.io/is-default-class", "true")]))],
                    ),
                ),
                ("provisioner", s("csi.kvol.io")),
                ("parameters", string_map(&[("type", "ssd")])),
                ("reclaimPolicy", s("Retain")),
                ("mountOptions", strings(&["discard"])),
                ("allowVolumeExpansion", V::Bool(false)),
                ("volumeBindingMode", s("WaitForFirstConsumer")),
                (
                    "allowedTopologies",
                    list(vec![core(
                        "TopologySelectorTerm",
                        vec![(
                            "matchLabelExpressions",
                            list(vec![core(
                                "TopologySelectorLabelRequirement",
                                vec![("key", s("topology.kubernetes.io/zone")), ("values", strings(&["a"]))],
                            )]),
                        )],
                    )]),
                ),
            ],
        );
        let expected = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "fast", "creationTimestamp": null, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "csi.kvol.io", "parameters": {"type": "ssd"}, "reclaimPolicy": "Retain", "mountOptions": ["discard"],
            "allowVolumeExpansion": false, "volumeBindingMode": "WaitForFirstConsumer",
            "allowedTopologies": [{"matchLabelExpressions": [{"key": "topology.kubernetes.io/zone", "values": ["a"]}]}]
        });
        same_as_json::<k8s_openapi::api::storage::v1::StorageClass>(
            &envelope("storage.k8s.io/v1", "StorageClass", object),
            expected,
        );
    }

    #[test]
    fn decodes_a_volume_attachment_with_status_and_errors() {
        let object = storage(
            "VolumeAttachment",
            vec![
                ("metadata", object_meta("csi-abc", "", vec![])),
                (
                    "spec",
                    storage(
                        "VolumeAttachmentSpec",
                        vec![
                            ("attacher", s("csi.kvol.io")),
                            ("source", storage("VolumeAttachmentSource", vec![("persistentVolumeName", s("pv-1"))])),
                            ("nodeName", s("node-1")),
                        ],
                    ),
                ),
                (
                    "status",
                    storage(
                        "VolumeAttachmentStatus",
                        vec![
                            ("attached", V::Bool(true)),
                            ("attachmentMetadata", string_map(&[("devicePath", "/dev/loop7")])),
                            (
                                "detachError",
                                storage(
                                    "VolumeError",
                                    vec![
                                        ("time", time(1_700_000_000)),
                                        ("message", s("rpc error: code = Aborted")),
                                        ("errorCode", V::I32(10)),
                                    ],
                                ),
                            ),
                        ],
                    ),
                ),
            ],
        );
        let expected = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
            "metadata": {"name": "csi-abc", "creationTimestamp": null},
            "spec": {"attacher": "csi.kvol.io", "source": {"persistentVolumeName": "pv-1"}, "nodeName": "node-1"},
            "status": {"attached": true, "attachmentMetadata": {"devicePath": "/dev/loop7"},
                "detachError": {"time": "2023-11-14T22:13:20Z", "message": "rpc error: code = Aborted", "errorCode": 10}}
        });
        same_as_json::<k8s_openapi::api::storage::v1::VolumeAttachment>(
            &envelope("storage.k8s.io/v1", "VolumeAttachment", object.clone()),
            expected,
        );

        let inline = storage(
            "VolumeAttachment",
            vec![
                ("metadata", object_meta("csi-inline", "", vec![])),
                (
                    "spec",
                    storage(
                        "VolumeAttachmentSpec",
                        vec![
                            ("attacher", s("csi.kvol.io")),
                            ("source", storage("VolumeAttachmentSource", vec![("inlineVolumeSpec", pv_spec())])),
                            ("nodeName", s("node-1")),
                        ],
                    ),
                ),
                ("status", storage("VolumeAttachmentStatus", vec![("attached", V::Bool(false))])),
            ],
        );
        let expected = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
            "metadata": {"name": "csi-inline", "creationTimestamp": null},
            "spec": {"attacher": "csi.kvol.io", "source": {"inlineVolumeSpec": pv_spec_json()}, "nodeName": "node-1"},
            "status": {}
        });
        same_as_json::<k8s_openapi::api::storage::v1::VolumeAttachment>(
            &envelope("storage.k8s.io/v1", "VolumeAttachment", inline),
            expected,
        );
    }

    #[test]
    fn decodes_a_csi_driver_and_a_csi_node() {
        let driver = storage(
            "CSIDriver",
            vec![
                ("metadata", object_meta("csi.kvol.io", "", vec![])),
                (
                    "spec",
                    storage(
                        "CSIDriverSpec",
                        vec![
                            ("attachRequired", V::Bool(false)),
                            ("podInfoOnMount", V::Bool(true)),
                            ("volumeLifecycleModes", strings(&["Persistent", "Ephemeral"])),
                            ("storageCapacity", V::Bool(false)),
                            ("fsGroupPolicy", s("File")),
                            (
                                "tokenRequests",
                                list(vec![storage(
                                    "TokenRequest",
                                    vec![("audience", s("vault")), ("expirationSeconds", V::I64(3600))],
                                )]),
                            ),
                            ("requiresRepublish", V::Bool(false)),
                            ("seLinuxMount", V::Bool(false)),
                        ],
                    ),
                ),
            ],
        );
        let expected = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
            "metadata": {"name": "csi.kvol.io", "creationTimestamp": null},
            "spec": {"attachRequired": false, "podInfoOnMount": true, "volumeLifecycleModes": ["Persistent", "Ephemeral"], "storageCapacity": false,
                "fsGroupPolicy": "File", "tokenRequests": [{"audience": "vault", "expirationSeconds": 3600}], "requiresRepublish": false, "seLinuxMount": false}
        });
        same_as_json::<k8s_openapi::api::storage::v1::CSIDriver>(
            &envelope("storage.k8s.io/v1", "CSIDriver", driver),
            expected,
        );

        let node = storage(
            "CSINode",
            vec![
                (
                    "metadata",
                    object_meta(
                        "node-1",
                        "",
                        vec![(
                            "ownerReferences",
                            list(vec![meta(
                                "OwnerReference",
                                vec![
                                    ("apiVersion", s("v1")),
                                    ("kind", s("Node")),
                                    ("name", s("node-1")),
                                    ("uid", s("u-n")),
                                ],
                            )]),
                        )],
                    ),
                ),
                (
                    "spec",
                    storage(
                        "CSINodeSpec",
                        vec![(
                            "drivers",
                            list(vec![storage(
                                "CSINodeDriver",
                                vec![
                                    ("name", s("csi.kvol.io")),
                                    ("nodeID", s("node-1")),
                                    ("topologyKeys", strings(&["topology.kvol.io/node"])),
                                    ("allocatable", storage("VolumeNodeResources", vec![("count", V::I32(0))])),
                                ],
                            )]),
                        )],
                    ),
                ),
            ],
        );
        let expected = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "CSINode",
            "metadata": {"name": "node-1", "creationTimestamp": null, "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "node-1", "uid": "u-n"}]},
            "spec": {"drivers": [{"name": "csi.kvol.io", "nodeID": "node-1", "topologyKeys": ["topology.kvol.io/node"], "allocatable": {"count": 0}}]}
        });
        same_as_json::<k8s_openapi::api::storage::v1::CSINode>(
            &envelope("storage.k8s.io/v1", "CSINode", node),
            expected,
        );
    }

    fn local_ref(name: &str) -> V {
        core("LocalObjectReference", vec![("name", s(name))])
    }
    fn int_or_string(port: i32) -> V {
        V::Message(msg(INT_OR_STRING, vec![("type", V::I64(0)), ("intVal", V::I32(port)), ("strVal", s(""))]))
    }
    fn volume(name: &str, field: &str, source: V) -> V {
        core("Volume", vec![("name", s(name)), ("volumeSource", core("VolumeSource", vec![(field, source)]))])
    }

    #[test]
    fn decodes_a_pod_with_every_kind_of_volume_and_container_setting() {
        let key_to_path = core("KeyToPath", vec![("key", s("a")), ("path", s("dir/a")), ("mode", V::I32(0o400))]);
        let claim_template = core(
            "PersistentVolumeClaimTemplate",
            vec![
                ("metadata", object_meta("", "", vec![("labels", string_map(&[("scratch", "yes")]))])),
                (
                    "spec",
                    core(
                        "PersistentVolumeClaimSpec",
                        vec![
                            ("accessModes", strings(&["ReadWriteOnce"])),
                            (
                                "resources",
                                core(
                                    "VolumeResourceRequirements",
                                    vec![("requests", quantities(&[("storage", "1Gi")]))],
                                ),
                            ),
                            ("storageClassName", s("fast")),
                        ],
                    ),
                ),
            ],
        );
        let volumes = list(vec![
            volume(
                "scratch",
                "emptyDir",
                core(
                    "EmptyDirVolumeSource",
                    vec![
                        ("medium", s("Memory")),
                        ("sizeLimit", V::Message(msg(QUANTITY, vec![("string", s("64Mi"))]))),
                    ],
                ),
            ),
            volume(
                "config",
                "configMap",
                core(
                    "ConfigMapVolumeSource",
                    vec![
                        ("localObjectReference", local_ref("log-config")),
                        ("items", list(vec![key_to_path.clone()])),
                        ("defaultMode", V::I32(0o644)),
                        ("optional", V::Bool(false)),
                    ],
                ),
            ),
            volume(
                "creds",
                "secret",
                core("SecretVolumeSource", vec![("secretName", s("s1")), ("defaultMode", V::I32(0o400))]),
            ),
            volume(
                "host",
                "hostPath",
                core("HostPathVolumeSource", vec![("path", s("/var/log")), ("type", s("Directory"))]),
            ),
            volume(
                "data",
                "persistentVolumeClaim",
                core("PersistentVolumeClaimVolumeSource", vec![("claimName", s("pvc1")), ("readOnly", V::Bool(false))]),
            ),
            volume(
                "nfs",
                "nfs",
                core(
                    "NFSVolumeSource",
                    vec![("server", s("10.0.0.1")), ("path", s("/")), ("readOnly", V::Bool(false))],
                ),
            ),
            volume(
                "flex",
                "flexVolume",
                core(
                    "FlexVolumeSource",
                    vec![
                        ("driver", s("k8s/nfs")),
                        ("fsType", s("nfs")),
                        ("secretRef", local_ref("flex")),
                        ("readOnly", V::Bool(false)),
                        ("options", string_map(&[("share", "export")])),
                    ],
                ),
            ),
            volume(
                "inline-csi",
                "csi",
                core(
                    "CSIVolumeSource",
                    vec![
                        ("driver", s("csi.kvol.io")),
                        ("readOnly", V::Bool(false)),
                        ("volumeAttributes", string_map(&[("size", "1Gi")])),
                        ("nodePublishSecretRef", local_ref("csi")),
                    ],
                ),
            ),
            volume(
                "cephfs",
                "cephfs",
                core(
                    "CephFSVolumeSource",
                    vec![
                        ("monitors", strings(&["m:6789"])),
                        ("path", s("/")),
                        ("user", s("")),
                        ("secretFile", s("")),
                        ("secretRef", local_ref("ceph")),
                        ("readOnly", V::Bool(true)),
                    ],
                ),
            ),
            volume(
                "downward",
                "downwardAPI",
                core(
                    "DownwardAPIVolumeSource",
                    vec![(
                        "items",
                        list(vec![
                            core(
                                "DownwardAPIVolumeFile",
                                vec![
                                    ("path", s("labels")),
                                    (
                                        "fieldRef",
                                        core(
                                            "ObjectFieldSelector",
                                            vec![("apiVersion", s("v1")), ("fieldPath", s("metadata.labels"))],
                                        ),
                                    ),
                                ],
                            ),
                            core(
                                "DownwardAPIVolumeFile",
                                vec![
                                    ("path", s("mem")),
                                    (
                                        "resourceFieldRef",
                                        core(
                                            "ResourceFieldSelector",
                                            vec![
                                                ("containerName", s("app")),
                                                ("resource", s("limits.memory")),
                                                ("divisor", V::Message(msg(QUANTITY, vec![("string", s("1Mi"))]))),
                                            ],
                                        ),
                                    ),
                                ],
                            ),
                        ]),
                    )],
                ),
            ),
            volume(
                "projected",
                "projected",
                core(
                    "ProjectedVolumeSource",
                    vec![
                        (
                            "sources",
                            list(vec![
                                core(
                                    "VolumeProjection",
                                    vec![(
                                        "secret",
                                        core(
                                            "SecretProjection",
                                            vec![
                                                ("localObjectReference", local_ref("s1")),
                                                ("items", list(vec![key_to_path])),
                                            ],
                                        ),
                                    )],
                                ),
                                core(
                                    "VolumeProjection",
                                    vec![(
                                        "configMap",
                                        core(
                                            "ConfigMapProjection",
                                            vec![
                                                ("localObjectReference", local_ref("log-config")),
                                                ("optional", V::Bool(true)),
                                            ],
                                        ),
                                    )],
                                ),
                                core(
                                    "VolumeProjection",
                                    vec![(
                                        "serviceAccountToken",
                                        core(
                                            "ServiceAccountTokenProjection",
                                            vec![
                                                ("audience", s("vault")),
                                                ("expirationSeconds", V::I64(3600)),
                                                ("path", s("token")),
                                            ],
                                        ),
                                    )],
                                ),
                                core(
                                    "VolumeProjection",
                                    vec![(
                                        "clusterTrustBundle",
                                        core(
                                            "ClusterTrustBundleProjection",
                                            vec![("signerName", s("example.com/signer")), ("path", s("ca.pem"))],
                                        ),
                                    )],
                                ),
                            ]),
                        ),
                        ("defaultMode", V::I32(0o440)),
                    ],
                ),
            ),
            volume(
                "ephemeral",
                "ephemeral",
                core("EphemeralVolumeSource", vec![("volumeClaimTemplate", claim_template)]),
            ),
            volume(
                "image",
                "image",
                core("ImageVolumeSource", vec![("reference", s("quay.io/data:1")), ("pullPolicy", s("IfNotPresent"))]),
            ),
            volume(
                "iscsi",
                "iscsi",
                core(
                    "ISCSIVolumeSource",
                    vec![
                        ("targetPortal", s("10.0.0.3:3260")),
                        ("iqn", s("iqn.x")),
                        ("lun", V::I32(1)),
                        ("iscsiInterface", s("default")),
                        ("fsType", s("ext4")),
                        ("readOnly", V::Bool(false)),
                        ("secretRef", local_ref("chap")),
                    ],
                ),
            ),
            volume(
                "rbd",
                "rbd",
                core(
                    "RBDVolumeSource",
                    vec![("monitors", strings(&["m1"])), ("image", s("img")), ("secretRef", local_ref("ceph"))],
                ),
            ),
            volume(
                "git",
                "gitRepo",
                core(
                    "GitRepoVolumeSource",
                    vec![("repository", s("https://example.com/r.git")), ("revision", s("abc")), ("directory", s("."))],
                ),
            ),
        ]);
        let probe = core(
            "Probe",
            vec![
                (
                    "handler",
                    core(
                        "ProbeHandler",
                        vec![(
                            "httpGet",
                            core(
                                "HTTPGetAction",
                                vec![
                                    ("path", s("/healthz")),
                                    ("port", int_or_string(8080)),
                                    ("host", s("")),
                                    ("scheme", s("HTTP")),
                                    (
                                        "httpHeaders",
                                        list(vec![core("HTTPHeader", vec![("name", s("X-Probe")), ("value", s("1"))])]),
                                    ),
                                ],
                            ),
                        )],
                    ),
                ),
                ("initialDelaySeconds", V::I32(5)),
                ("timeoutSeconds", V::I32(1)),
                ("periodSeconds", V::I32(10)),
                ("successThreshold", V::I32(1)),
                ("failureThreshold", V::I32(3)),
                ("terminationGracePeriodSeconds", V::I64(0)),
            ],
        );
        let named_port =
            V::Message(msg(INT_OR_STRING, vec![("type", V::I64(1)), ("intVal", V::I32(0)), ("strVal", s("http"))]));
        let container = core(
            "Container",
            vec![
                ("name", s("app")),
                ("image", s("busybox:1.36")),
                ("command", strings(&["sh", "-c"])),
                ("args", strings(&["sleep 3600"])),
                ("workingDir", s("")),
                (
                    "ports",
                    list(vec![core(
                        "ContainerPort",
                        vec![
                            ("name", s("http")),
                            ("hostPort", V::I32(0)),
                            ("containerPort", V::I32(8080)),
                            ("protocol", s("TCP")),
                            ("hostIP", s("")),
                        ],
                    )]),
                ),
                (
                    "envFrom",
                    list(vec![core(
                        "EnvFromSource",
                        vec![
                            ("prefix", s("CFG_")),
                            (
                                "configMapRef",
                                core("ConfigMapEnvSource", vec![("localObjectReference", local_ref("log-config"))]),
                            ),
                        ],
                    )]),
                ),
                (
                    "env",
                    list(vec![
                        core("EnvVar", vec![("name", s("MODE")), ("value", s("fast"))]),
                        core(
                            "EnvVar",
                            vec![
                                ("name", s("PASSWORD")),
                                ("value", s("")),
                                (
                                    "valueFrom",
                                    core(
                                        "EnvVarSource",
                                        vec![(
                                            "secretKeyRef",
                                            core(
                                                "SecretKeySelector",
                                                vec![
                                                    ("localObjectReference", local_ref("s1")),
                                                    ("key", s("password")),
                                                    ("optional", V::Bool(false)),
                                                ],
                                            ),
                                        )],
                                    ),
                                ),
                            ],
                        ),
                        core(
                            "EnvVar",
                            vec![
                                ("name", s("NODE")),
                                ("value", s("")),
                                (
                                    "valueFrom",
                                    core(
                                        "EnvVarSource",
                                        vec![(
                                            "fieldRef",
                                            core(
                                                "ObjectFieldSelector",
                                                vec![("apiVersion", s("v1")), ("fieldPath", s("spec.nodeName"))],
                                            ),
                                        )],
                                    ),
                                ),
                            ],
                        ),
                    ]),
                ),
                (
                    "resources",
                    core(
                        "ResourceRequirements",
                        vec![
                            ("limits", quantities(&[("memory", "128Mi")])),
                            ("requests", quantities(&[("cpu", "100m")])),
                        ],
                    ),
                ),
                (
                    "resizePolicy",
                    list(vec![core(
                        "ContainerResizePolicy",
                        vec![("resourceName", s("cpu")), ("restartPolicy", s("NotRequired"))],
                    )]),
                ),
                (
                    "volumeMounts",
                    list(vec![
                        core(
                            "VolumeMount",
                            vec![
                                ("name", s("data")),
                                ("readOnly", V::Bool(false)),
                                ("mountPath", s("/data")),
                                ("subPath", s("")),
                                ("mountPropagation", s("HostToContainer")),
                                ("subPathExpr", s("")),
                            ],
                        ),
                        core(
                            "VolumeMount",
                            vec![
                                ("name", s("config")),
                                ("readOnly", V::Bool(true)),
                                ("recursiveReadOnly", s("IfPossible")),
                                ("mountPath", s("/etc/app")),
                                ("subPath", s("conf")),
                            ],
                        ),
                    ]),
                ),
                (
                    "volumeDevices",
                    list(vec![core("VolumeDevice", vec![("name", s("raw")), ("devicePath", s("/dev/xvda"))])]),
                ),
                ("livenessProbe", probe),
                (
                    "readinessProbe",
                    core(
                        "Probe",
                        vec![(
                            "handler",
                            core(
                                "ProbeHandler",
                                vec![(
                                    "tcpSocket",
                                    core("TCPSocketAction", vec![("port", named_port), ("host", s(""))]),
                                )],
                            ),
                        )],
                    ),
                ),
                (
                    "startupProbe",
                    core(
                        "Probe",
                        vec![(
                            "handler",
                            core(
                                "ProbeHandler",
                                vec![("exec", core("ExecAction", vec![("command", strings(&["true"]))]))],
                            ),
                        )],
                    ),
                ),
                (
                    "lifecycle",
                    core(
                        "Lifecycle",
                        vec![(
                            "preStop",
                            core(
                                "LifecycleHandler",
                                vec![("sleep", core("SleepAction", vec![("seconds", V::I64(5))]))],
                            ),
                        )],
                    ),
                ),
                ("terminationMessagePath", s("/dev/termination-log")),
                ("terminationMessagePolicy", s("File")),
                ("imagePullPolicy", s("IfNotPresent")),
                (
                    "securityContext",
                    core(
                        "SecurityContext",
                        vec![
                            (
                                "capabilities",
                                core(
                                    "Capabilities",
                                    vec![("add", strings(&["SYS_ADMIN"])), ("drop", strings(&["ALL"]))],
                                ),
                            ),
                            ("privileged", V::Bool(false)),
                            ("runAsUser", V::I64(0)),
                            ("readOnlyRootFilesystem", V::Bool(true)),
                            ("seccompProfile", core("SeccompProfile", vec![("type", s("RuntimeDefault"))])),
                        ],
                    ),
                ),
                ("stdin", V::Bool(false)),
                ("stdinOnce", V::Bool(false)),
                ("tty", V::Bool(false)),
            ],
        );
        let init =
            core("Container", vec![("name", s("init")), ("image", s("busybox:1.36")), ("restartPolicy", s("Always"))]);
        let term = core(
            "NodeSelectorTerm",
            vec![(
                "matchExpressions",
                list(vec![core(
                    "NodeSelectorRequirement",
                    vec![("key", s("zone")), ("operator", s("In")), ("values", strings(&["a"]))],
                )]),
            )],
        );
        let spec = core(
            "PodSpec",
            vec![
                ("volumes", volumes),
                ("initContainers", list(vec![init])),
                ("containers", list(vec![container])),
                ("restartPolicy", s("Always")),
                ("terminationGracePeriodSeconds", V::I64(30)),
                ("dnsPolicy", s("ClusterFirst")),
                ("nodeSelector", string_map(&[("disk", "ssd")])),
                ("serviceAccountName", s("default")),
                ("serviceAccount", s("default")),
                ("automountServiceAccountToken", V::Bool(false)),
                ("nodeName", s("")),
                ("hostNetwork", V::Bool(false)),
                ("hostPID", V::Bool(false)),
                ("hostIPC", V::Bool(false)),
                (
                    "securityContext",
                    core(
                        "PodSecurityContext",
                        vec![
                            ("runAsUser", V::I64(1000)),
                            ("runAsNonRoot", V::Bool(true)),
                            ("supplementalGroups", list(vec![V::I64(0), V::I64(2000)])),
                            ("fsGroup", V::I64(2000)),
                            ("fsGroupChangePolicy", s("OnRootMismatch")),
                            (
                                "sysctls",
                                list(vec![core(
                                    "Sysctl",
                                    vec![("name", s("net.core.somaxconn")), ("value", s("1024"))],
                                )]),
                            ),
                            ("seLinuxOptions", core("SELinuxOptions", vec![("level", s("s0:c1,c2"))])),
                        ],
                    ),
                ),
                ("imagePullSecrets", list(vec![local_ref("regcred")])),
                ("hostname", s("")),
                ("subdomain", s("")),
                (
                    "affinity",
                    core(
                        "Affinity",
                        vec![
                            (
                                "nodeAffinity",
                                core(
                                    "NodeAffinity",
                                    vec![
                                        (
                                            "requiredDuringSchedulingIgnoredDuringExecution",
                                            core("NodeSelector", vec![("nodeSelectorTerms", list(vec![term.clone()]))]),
                                        ),
                                        (
                                            "preferredDuringSchedulingIgnoredDuringExecution",
                                            list(vec![core(
                                                "PreferredSchedulingTerm",
                                                vec![("weight", V::I32(10)), ("preference", term)],
                                            )]),
                                        ),
                                    ],
                                ),
                            ),
                            (
                                "podAntiAffinity",
                                core(
                                    "PodAntiAffinity",
                                    vec![(
                                        "preferredDuringSchedulingIgnoredDuringExecution",
                                        list(vec![core(
                                            "WeightedPodAffinityTerm",
                                            vec![
                                                ("weight", V::I32(50)),
                                                (
                                                    "podAffinityTerm",
                                                    core(
                                                        "PodAffinityTerm",
                                                        vec![
                                                            (
                                                                "labelSelector",
                                                                meta(
                                                                    "LabelSelector",
                                                                    vec![(
                                                                        "matchLabels",
                                                                        string_map(&[("app", "web")]),
                                                                    )],
                                                                ),
                                                            ),
                                                            ("topologyKey", s("kubernetes.io/hostname")),
                                                            ("matchLabelKeys", strings(&["pod-template-hash"])),
                                                        ],
                                                    ),
                                                ),
                                            ],
                                        )]),
                                    )],
                                ),
                            ),
                        ],
                    ),
                ),
                ("schedulerName", s("default-scheduler")),
                (
                    "tolerations",
                    list(vec![core(
                        "Toleration",
                        vec![
                            ("key", s("node.kubernetes.io/not-ready")),
                            ("operator", s("Exists")),
                            ("value", s("")),
                            ("effect", s("NoExecute")),
                            ("tolerationSeconds", V::I64(300)),
                        ],
                    )]),
                ),
                (
                    "hostAliases",
                    list(vec![core("HostAlias", vec![("ip", s("10.0.0.9")), ("hostnames", strings(&["db.local"]))])]),
                ),
                ("priorityClassName", s("")),
                ("priority", V::I32(0)),
                (
                    "dnsConfig",
                    core(
                        "PodDNSConfig",
                        vec![
                            ("nameservers", strings(&["1.1.1.1"])),
                            (
                                "options",
                                list(vec![
                                    core("PodDNSConfigOption", vec![("name", s("ndots")), ("value", s("2"))]),
                                    core("PodDNSConfigOption", vec![("name", s("edns0"))]),
                                ]),
                            ),
                        ],
                    ),
                ),
                (
                    "readinessGates",
                    list(vec![core("PodReadinessGate", vec![("conditionType", s("example.com/ready"))])]),
                ),
                ("enableServiceLinks", V::Bool(true)),
                ("preemptionPolicy", s("PreemptLowerPriority")),
                (
                    "topologySpreadConstraints",
                    list(vec![core(
                        "TopologySpreadConstraint",
                        vec![
                            ("maxSkew", V::I32(1)),
                            ("topologyKey", s("zone")),
                            ("whenUnsatisfiable", s("DoNotSchedule")),
                            (
                                "labelSelector",
                                meta("LabelSelector", vec![("matchLabels", string_map(&[("app", "web")]))]),
                            ),
                            ("minDomains", V::I32(2)),
                            ("nodeTaintsPolicy", s("Honor")),
                        ],
                    )]),
                ),
                ("os", core("PodOS", vec![("name", s("linux"))])),
                ("hostUsers", V::Bool(false)),
                ("schedulingGates", list(vec![core("PodSchedulingGate", vec![("name", s("example.com/gate"))])])),
            ],
        );
        let status = core(
            "PodStatus",
            vec![
                ("phase", s("Running")),
                (
                    "conditions",
                    list(vec![core(
                        "PodCondition",
                        vec![
                            ("type", s("Ready")),
                            ("status", s("True")),
                            ("lastProbeTime", zero_time()),
                            ("lastTransitionTime", time(1_700_000_000)),
                            ("reason", s("")),
                            ("message", s("")),
                        ],
                    )]),
                ),
                ("message", s("")),
                ("reason", s("")),
                ("nominatedNodeName", s("")),
                ("hostIP", s("10.0.0.5")),
                ("hostIPs", list(vec![core("HostIP", vec![("ip", s("10.0.0.5"))])])),
                ("podIP", s("10.244.0.7")),
                ("podIPs", list(vec![core("PodIP", vec![("ip", s("10.244.0.7"))])])),
                ("startTime", time(1_700_000_000)),
                (
                    "containerStatuses",
                    list(vec![core(
                        "ContainerStatus",
                        vec![
                            ("name", s("app")),
                            (
                                "state",
                                core(
                                    "ContainerState",
                                    vec![(
                                        "running",
                                        core("ContainerStateRunning", vec![("startedAt", time(1_700_000_001))]),
                                    )],
                                ),
                            ),
                            (
                                "lastState",
                                core(
                                    "ContainerState",
                                    vec![(
                                        "terminated",
                                        core(
                                            "ContainerStateTerminated",
                                            vec![
                                                ("exitCode", V::I32(137)),
                                                ("signal", V::I32(0)),
                                                ("reason", s("OOMKilled")),
                                                ("message", s("")),
                                                ("startedAt", time(1_699_999_000)),
                                                ("finishedAt", time(1_699_999_999)),
                                                ("containerID", s("containerd://a")),
                                            ],
                                        ),
                                    )],
                                ),
                            ),
                            ("ready", V::Bool(true)),
                            ("restartCount", V::I32(1)),
                            ("image", s("busybox:1.36")),
                            ("imageID", s("sha256:abc")),
                            ("containerID", s("containerd://b")),
                            ("started", V::Bool(true)),
                            (
                                "volumeMounts",
                                list(vec![core(
                                    "VolumeMountStatus",
                                    vec![("name", s("data")), ("mountPath", s("/data")), ("readOnly", V::Bool(false))],
                                )]),
                            ),
                        ],
                    )]),
                ),
                ("qosClass", s("Burstable")),
            ],
        );
        let object = core(
            "Pod",
            vec![
                ("metadata", object_meta("web-0", "default", vec![("labels", string_map(&[("app", "web")]))])),
                ("spec", spec),
                ("status", status),
            ],
        );
        let expected = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": null, "labels": {"app": "web"}},
            "spec": {
                "volumes": [
                    {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                    {"name": "config", "configMap": {"name": "log-config", "items": [{"key": "a", "path": "dir/a", "mode": 256}], "defaultMode": 420, "optional": false}},
                    {"name": "creds", "secret": {"secretName": "s1", "defaultMode": 256}},
                    {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "pvc1"}},
                    {"name": "nfs", "nfs": {"server": "10.0.0.1", "path": "/"}},
                    {"name": "flex", "flexVolume": {"driver": "k8s/nfs", "fsType": "nfs", "secretRef": {"name": "flex"}, "options": {"share": "export"}}},
                    {"name": "inline-csi", "csi": {"driver": "csi.kvol.io", "readOnly": false, "volumeAttributes": {"size": "1Gi"}, "nodePublishSecretRef": {"name": "csi"}}},
                    {"name": "cephfs", "cephfs": {"monitors": ["m:6789"], "path": "/", "secretRef": {"name": "ceph"}, "readOnly": true}},
                    {"name": "downward", "downwardAPI": {"items": [
                        {"path": "labels", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}},
                        {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}}]}},
                    {"name": "projected", "projected": {"sources": [
                        {"secret": {"name": "s1", "items": [{"key": "a", "path": "dir/a", "mode": 256}]}},
                        {"configMap": {"name": "log-config", "optional": true}},
                        {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "token"}},
                        {"clusterTrustBundle": {"signerName": "example.com/signer", "path": "ca.pem"}}], "defaultMode": 288}},
                    {"name": "ephemeral", "ephemeral": {"volumeClaimTemplate": {"metadata": {"creationTimestamp": null, "labels": {"scratch": "yes"}},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "fast"}}}},
                    {"name": "image", "image": {"reference": "quay.io/data:1", "pullPolicy": "IfNotPresent"}},
                    {"name": "iscsi", "iscsi": {"targetPortal": "10.0.0.3:3260", "iqn": "iqn.x", "lun": 1, "iscsiInterface": "default", "fsType": "ext4", "secretRef": {"name": "chap"}}},
                    {"name": "rbd", "rbd": {"monitors": ["m1"], "image": "img", "secretRef": {"name": "ceph"}}},
                    {"name": "git", "gitRepo": {"repository": "https://example.com/r.git", "revision": "abc", "directory": "."}}
                ],
                "initContainers": [{"name": "init", "image": "busybox:1.36", "restartPolicy": "Always"}],
                "containers": [{
                    "name": "app", "image": "busybox:1.36", "command": ["sh", "-c"], "args": ["sleep 3600"],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "log-config"}}],
                    "env": [
                        {"name": "MODE", "value": "fast"},
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "password", "optional": false}}},
                        {"name": "NODE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}],
                    "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "100m"}},
                    "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}],
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data", "mountPropagation": "HostToContainer"},
                        {"name": "config", "readOnly": true, "recursiveReadOnly": "IfPossible", "mountPath": "/etc/app", "subPath": "conf"}],
                    "volumeDevices": [{"name": "raw", "devicePath": "/dev/xvda"}],
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP", "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                        "initialDelaySeconds": 5, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3, "terminationGracePeriodSeconds": 0},
                    "readinessProbe": {"tcpSocket": {"port": "http"}},
                    "startupProbe": {"exec": {"command": ["true"]}},
                    "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
                    "securityContext": {"capabilities": {"add": ["SYS_ADMIN"], "drop": ["ALL"]}, "privileged": false, "runAsUser": 0, "readOnlyRootFilesystem": true, "seccompProfile": {"type": "RuntimeDefault"}}
                }],
                "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                "nodeSelector": {"disk": "ssd"}, "serviceAccountName": "default", "serviceAccount": "default", "automountServiceAccountToken": false,
                "securityContext": {"runAsUser": 1000, "runAsNonRoot": true, "supplementalGroups": [0, 2000], "fsGroup": 2000, "fsGroupChangePolicy": "OnRootMismatch",
                    "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}], "seLinuxOptions": {"level": "s0:c1,c2"}},
                "imagePullSecrets": [{"name": "regcred"}],
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]},
                        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]},
                    "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname", "matchLabelKeys": ["pod-template-hash"]}}]}},
                "schedulerName": "default-scheduler",
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
                "hostAliases": [{"ip": "10.0.0.9", "hostnames": ["db.local"]}],
                "priority": 0,
                "dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]},
                "readinessGates": [{"conditionType": "example.com/ready"}],
                "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority",
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}, "minDomains": 2, "nodeTaintsPolicy": "Honor"}],
                "os": {"name": "linux"}, "hostUsers": false,
                "schedulingGates": [{"name": "example.com/gate"}]
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2023-11-14T22:13:20Z"}],
                "hostIP": "10.0.0.5", "hostIPs": [{"ip": "10.0.0.5"}], "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}],
                "startTime": "2023-11-14T22:13:20Z",
                "containerStatuses": [{
                    "name": "app",
                    "state": {"running": {"startedAt": "2023-11-14T22:13:21Z"}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": "2023-11-14T21:56:40Z", "finishedAt": "2023-11-14T22:13:19Z", "containerID": "containerd://a"}},
                    "ready": true, "restartCount": 1, "image": "busybox:1.36", "imageID": "sha256:abc", "containerID": "containerd://b", "started": true,
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                }],
                "qosClass": "Burstable"
            }
        });
        same_as_json::<k8s_openapi::api::core::v1::Pod>(&envelope("v1", "Pod", object), expected);
    }

    #[test]
    fn every_served_kind_decodes_or_is_refused_with_415() {
        for resource in kvol_api::resources::RESOURCES {
            let body = envelope(&resource.api_version(), resource.kind, core("ConfigMap", vec![]));
            match decode_body(&body) {
                Ok(v) => assert_eq!(v["kind"], resource.kind),
                Err(e) => assert_eq!(e.code, 415, "{}: {}", resource.kind, e.message),
            }
        }
        assert_eq!(decode_body(&envelope("v1", "Pod", core("ConfigMap", vec![]))).unwrap()["kind"], "Pod");
    }

    #[test]
    fn decodes_delete_options_keeping_a_zero_grace_period() {
        let options = meta(
            "DeleteOptions",
            vec![
                ("gracePeriodSeconds", V::I64(0)),
                ("preconditions", meta("Preconditions", vec![("uid", s("u-1"))])),
                ("propagationPolicy", s("Foreground")),
                ("dryRun", strings(&["All"])),
            ],
        );
        let decoded = decode_body(&envelope("v1", "DeleteOptions", options)).unwrap();
        assert_eq!(
            decoded,
            json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": "u-1"}, "propagationPolicy": "Foreground", "dryRun": ["All"]})
        );
        let typed: k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions =
            serde_json::from_value(decoded).unwrap();
        assert_eq!(typed.grace_period_seconds, Some(0));
    }

    #[test]
    fn writes_the_well_known_types_as_kubernetes_json_does() {
        let schema = schema().unwrap();
        let json_of = |name: &str, fields: Vec<(&str, V)>| message_json(schema, &msg(name, fields)).unwrap();
        assert_eq!(
            json_of(INT_OR_STRING, vec![("type", V::I64(0)), ("intVal", V::I32(8080)), ("strVal", s(""))]),
            Some(json!(8080))
        );
        assert_eq!(
            json_of(INT_OR_STRING, vec![("type", V::I64(1)), ("intVal", V::I32(0)), ("strVal", s("http"))]),
            Some(json!("http"))
        );
        assert_eq!(json_of(QUANTITY, vec![("string", s("500m"))]), Some(json!("500m")));
        assert_eq!(json_of(DURATION, vec![("duration", V::I64(90_000_000_000))]), Some(json!("1m30s")));
        assert_eq!(
            json_of(RAW_EXTENSION, vec![("raw", V::Bytes(br#"{"a":[1]}"#.to_vec().into()))]),
            Some(json!({"a": [1]}))
        );
        assert_eq!(json_of(RAW_EXTENSION, vec![]), None);
        assert_eq!(json_of(TIME, vec![]), None, "a zero time is null");
        assert!(
            message_json(schema, &msg(RAW_EXTENSION, vec![("raw", V::Bytes(b"\x08\x01".to_vec().into()))])).is_err()
        );
    }

    #[test]
    fn formats_durations_as_go_does() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_001, "1h2m3.000000001s"),
            (-90_000_000_000, "-1m30s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (i64::MAX, "2562047h47m16.854775807s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(go_duration(nanos), want, "{nanos}ns");
        }
    }

    #[test]
    fn refuses_a_body_without_the_magic_prefix() {
        let e = decode_body(br#"{"kind":"ConfigMap"}"#).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("does not appear to be a protobuf message"), "{}", e.message);
        assert_eq!(decode_body(b"").unwrap_err().code, 400);
    }

    #[test]
    fn refuses_a_truncated_message() {
        let body = envelope(
            "v1",
            "ConfigMap",
            core("ConfigMap", vec![("metadata", object_meta("x", "", vec![])), ("data", string_map(&[("a", "b")]))]),
        );
        for cut in [5, body.len() / 2, body.len() - 1] {
            let e = decode_body(&body[..cut]).unwrap_err();
            assert_eq!(e.code, 400, "cut at {cut}: {}", e.message);
        }
        // A well-formed envelope whose object is cut short.
        let V::Message(object) = core("ConfigMap", vec![("metadata", object_meta("x", "", vec![]))]) else {
            unreachable!()
        };
        let raw = prost::Message::encode_to_vec(&object);
        let unknown = msg(
            UNKNOWN,
            vec![
                (
                    "typeMeta",
                    V::Message(msg(
                        "k8s.io.apimachinery.pkg.runtime.TypeMeta",
                        vec![("apiVersion", s("v1")), ("kind", s("ConfigMap"))],
                    )),
                ),
                ("raw", V::Bytes(raw[..raw.len() - 3].to_vec().into())),
            ],
        );
        let mut body = MAGIC.to_vec();
        body.extend(prost::Message::encode_to_vec(&unknown));
        let e = decode_body(&body).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("ConfigMap"), "{}", e.message);
    }

    #[test]
    fn refuses_kinds_it_does_not_serve_and_kinds_it_cannot_describe() {
        let e = decode_body(&envelope("apps/v1", "ConfigMap", core("ConfigMap", vec![]))).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains(r#"no kind "ConfigMap" is registered for version "apps/v1""#), "{}", e.message);
        let e = decode_body(&envelope("v1", "Service", core("ConfigMap", vec![]))).unwrap_err();
        assert_eq!(e.code, 400);
        let e = decode_body(&envelope("storage.k8s.io/v1", "StorageClass", core("ConfigMap", vec![])));
        assert!(e.is_ok(), "an empty StorageClass decodes");
        // A served kind without a description (every served kind has one today, so use an empty pool).
        let real = schema().unwrap();
        let bare = Schema {
            pool: DescriptorPool::new(),
            unknown: real.unknown.clone(),
            pointer: HashSet::new(),
            inline: HashSet::new(),
        };
        let e = message_for(&bare, "v1", "Pod").unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.contains("send it as application/json"), "{}", e.message);
        let mut no_kind = MAGIC.to_vec();
        no_kind.extend(prost::Message::encode_to_vec(&msg(UNKNOWN, vec![("raw", V::Bytes(vec![].into()))])));
        assert_eq!(decode_body(&no_kind).unwrap_err().code, 400);
    }

    #[test]
    fn never_panics_on_random_bytes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x6b3873);
        let seeds = [
            envelope(
                "v1",
                "PersistentVolume",
                core("PersistentVolume", vec![("metadata", object_meta("pv", "", vec![])), ("spec", pv_spec())]),
            ),
            envelope(
                "v1",
                "ConfigMap",
                core(
                    "ConfigMap",
                    vec![("metadata", object_meta("x", "", vec![])), ("data", string_map(&[("a", "b")]))],
                ),
            ),
        ];
        for round in 0..6000 {
            let body: Vec<u8> = match round % 3 {
                // Pure noise, with and without the magic.
                0 => {
                    let len = rng.random_range(0..64);
                    let mut b: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                    if rng.random_bool(0.5) {
                        b.splice(0..0, MAGIC.iter().copied());
                    }
                    b
                }
                // Real bodies with bytes flipped, inserted or cut.
                _ => {
                    let mut b = seeds[round % 2].clone();
                    for _ in 0..rng.random_range(1..6) {
                        let at = rng.random_range(4..b.len());
                        match rng.random_range(0..3) {
                            0 => b[at] = rng.random(),
                            1 => b.insert(at, rng.random()),
                            _ => b.truncate(at.max(5)),
                        }
                    }
                    b
                }
            };
            let _ = decode_body(&body);
        }
    }
}
