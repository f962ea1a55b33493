//! Reads: get and list (with label and field selectors, `limit`/`continue`, and Table output).

use crate::codec::Output;
use crate::registry::{answer, store_error};
use crate::status::ApiError;
use crate::ApiState;
use base64::Engine;
use kvol_api::selector::Selector;
use kvol_api::Resource;
use kvol_store::{KeyValue, RangeOptions};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Query parameters of a list or watch.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// `labelSelector`.
    pub labels: Selector,
    /// `fieldSelector`.
    pub fields: Selector,
    /// `limit`.
    pub limit: Option<usize>,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`: `Exact` or `NotOlderThan`.
    pub resource_version_match: Option<String>,
}

impl ListOptions {
    /// Whether objects must be decoded to be filtered.
    pub fn filters(&self) -> bool {
        !self.labels.is_empty() || !self.fields.is_empty()
    }
}

/// kube-apiserver's `ValidateListOptions`, refused as it refuses them: 422 `ListOptions.meta.k8s.io "" is
/// invalid: …`, for a list or (`watch`) a watch; `send_initial_events` says whether `sendInitialEvents` was
/// given at all.
pub fn validate_list_options(options: &ListOptions, watch: bool, send_initial_events: bool) -> Result<(), ApiError> {
    use kvol_api::field::{FieldError, FieldPath};
    let path = FieldPath::new("resourceVersionMatch");
    let mut errors = Vec::new();
    let given = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
    let matching = options.resource_version_match.as_deref().filter(|m| !m.is_empty());
    if watch {
        // A streaming list (WatchList) is a watch with sendInitialEvents and NotOlderThan.
        if send_initial_events && matching != Some("NotOlderThan") {
            errors.push(FieldError::forbidden(
                &path,
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if let Some(m) = matching {
            if !send_initial_events {
                errors.push(FieldError::forbidden(
                    &path,
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if m != "NotOlderThan" {
                errors.push(FieldError::not_supported(&path, m, &["NotOlderThan"]));
            }
            if given(&options.continue_token) {
                errors
                    .push(FieldError::forbidden(&path, "resourceVersionMatch is forbidden when continue is provided"));
            }
        }
    } else {
        if let Some(m) = matching {
            if !given(&options.resource_version) {
                errors.push(FieldError::forbidden(
                    &path,
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if given(&options.continue_token) {
                errors
                    .push(FieldError::forbidden(&path, "resourceVersionMatch is forbidden when continue is provided"));
            }
            if m != "Exact" && m != "NotOlderThan" {
                errors.push(FieldError::not_supported(&path, m, &["Exact", "NotOlderThan", ""]));
            }
            if m == "Exact" && options.resource_version.as_deref() == Some("0") {
                errors.push(FieldError::forbidden(
                    &path,
                    r#"resourceVersionMatch "exact" is forbidden for resourceVersion "0""#,
                ));
            }
        }
        if send_initial_events {
            errors.push(FieldError::forbidden(
                &FieldPath::new("sendInitialEvents"),
                "sendInitialEvents is forbidden for list",
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("ListOptions", "meta.k8s.io", "", &errors))
    }
}

/// A list's `resourceVersion`, parsed as kube's `APIObjectVersioner.ParseResourceVersion` does: unset, empty
/// and `0` mean "any"; anything else must be an unsigned integer.
fn list_resource_version(rv: Option<&str>) -> Result<i64, ApiError> {
    let rv = rv.unwrap_or("");
    if rv.is_empty() || rv == "0" {
        return Ok(0);
    }
    let why = if rv.bytes().all(|b| b.is_ascii_digit()) { "value out of range" } else { "invalid syntax" };
    rv.parse::<u64>().ok().and_then(|v| i64::try_from(v).ok()).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid resource version: resourceVersion: Invalid value: {rv:?}: strconv.ParseUint: parsing {rv:?}: {why}"
        ))
    })
}

/// The fields a field selector can name for an object of `kind`, as kube-apiserver's per-resource
/// `GetAttrs` expose them.
pub fn selectable_fields(kind: &str, obj: &Value) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    f.insert("metadata.name".into(), s(&obj["metadata"]["name"]));
    if let Some(ns) = obj["metadata"]["namespace"].as_str() {
        f.insert("metadata.namespace".into(), ns.to_string());
    }
    match kind {
        "Pod" => {
            f.insert("spec.nodeName".into(), s(&obj["spec"]["nodeName"]));
            f.insert("spec.restartPolicy".into(), s(&obj["spec"]["restartPolicy"]));
            f.insert("spec.schedulerName".into(), s(&obj["spec"]["schedulerName"]));
            f.insert("spec.serviceAccountName".into(), s(&obj["spec"]["serviceAccountName"]));
            f.insert("status.phase".into(), s(&obj["status"]["phase"]));
            f.insert("status.podIP".into(), s(&obj["status"]["podIP"]));
            f.insert("status.nominatedNodeName".into(), s(&obj["status"]["nominatedNodeName"]));
        }
        "Event" => {
            for k in ["kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"] {
                f.insert(format!("involvedObject.{k}"), s(&obj["involvedObject"][k]));
            }
            f.insert("reason".into(), s(&obj["reason"]));
            f.insert("reportingComponent".into(), s(&obj["reportingComponent"]));
            f.insert("source".into(), s(&obj["source"]["component"]));
            f.insert("type".into(), s(&obj["type"]));
        }
        "Node" => {
            f.insert("spec.unschedulable".into(), obj["spec"]["unschedulable"].as_bool().unwrap_or(false).to_string());
        }
        "Namespace" => {
            f.insert("status.phase".into(), s(&obj["status"]["phase"]));
        }
        "Secret" => {
            f.insert("type".into(), s(&obj["type"]));
        }
        "PersistentVolumeClaim" | "PersistentVolume" => {
            f.insert("status.phase".into(), s(&obj["status"]["phase"]));
        }
        _ => {}
    }
    f
}

/// Field selectors kube-apiserver refuses with "field label not supported".
pub fn check_field_selector(kind: &str, selector: &Selector) -> Result<(), ApiError> {
    let probe = selectable_fields(kind, &json!({"metadata": {"namespace": ""}}));
    for r in &selector.requirements {
        if !probe.contains_key(&r.key) {
            return Err(ApiError::bad_request(format!("field label not supported: {}", r.key)));
        }
    }
    Ok(())
}

/// Whether a decoded object passes the list options' selectors.
pub fn selected(kind: &str, obj: &Value, options: &ListOptions) -> bool {
    let labels: BTreeMap<String, String> = obj["metadata"]["labels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default();
    options.labels.matches(&labels)
        && (options.fields.is_empty() || options.fields.matches(&selectable_fields(kind, obj)))
}

/// GET of one object.
pub fn get(
    state: &ApiState,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
) -> Result<KeyValue, ApiError> {
    state
        .store
        .get(&resource.key(namespace, name))
        .map_err(|e| store_error(resource, name, e))?
        .ok_or_else(|| ApiError::not_found(resource, name))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

/// Read a continue token, refusing what kube's `storage.DecodeContinue` refuses: another version, no
/// resourceVersion, no start key. A token naming a revision that cannot be read any more is not refused here
/// but answered 410 by the list.
fn decode_continue(token: &str) -> Result<ContinueToken, ApiError> {
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| ApiError::bad_request("continue key is not valid: illegal base64 data"))?;
    let t: ContinueToken = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::bad_request("continue key is not valid: not a continue token"))?;
    if t.v != "meta.k8s.io/v1" {
        return Err(ApiError::bad_request(format!(
            "continue key is not valid: server does not recognize this encoded version {:?}",
            t.v
        )));
    }
    if t.rv <= 0 {
        return Err(ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        ));
    }
    if t.start.is_empty() {
        return Err(ApiError::bad_request(
            "continue key is not valid: encoded start key empty (version meta.k8s.io/v1)",
        ));
    }
    Ok(t)
}

fn encode_continue(rv: i64, start: &str) -> String {
    let t = ContinueToken { v: "meta.k8s.io/v1".into(), rv, start: start.into() };
    base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&t).unwrap_or_default())
}

/// LIST: the objects under a namespace (or all), filtered and paged. Answers a `<Kind>List` or a Table.
pub fn list(
    state: &ApiState,
    resource: &'static Resource,
    namespace: Option<&str>,
    options: &ListOptions,
    output: Output,
    include_object: crate::table::IncludeObject,
) -> Result<Vec<u8>, ApiError> {
    let prefix = resource.namespace_prefix(namespace);
    let mut start_after = None;
    let mut snapshot = None;
    let too_old = || {
        ApiError::gone(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
        )
    };
    let requested = list_resource_version(options.resource_version.as_deref())?;
    if let Some(token) = options.continue_token.as_deref().filter(|t| !t.is_empty()) {
        if requested != 0 {
            return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
        }
        let t = decode_continue(token)?;
        if t.rv < state.store.compacted_revision() {
            return Err(too_old());
        }
        start_after = Some(format!("{prefix}{}", t.start));
        snapshot = Some(t.rv);
    } else if requested != 0 {
        let current = state.store.current_revision();
        if requested > current {
            // Revisions are only ever handed out by this store: a later one was never issued.
            return Err(ApiError::too_large_resource_version(requested, current));
        }
        if options.resource_version_match.as_deref() == Some("Exact") {
            snapshot = Some(requested);
        }
    }
    let exact = snapshot.is_some() && options.continue_token.as_deref().is_none_or(str::is_empty);
    // With selectors, pages are counted after filtering: read everything past the start, then cut.
    let range_limit = if options.filters() { None } else { options.limit };
    let range_options = RangeOptions { start_after, limit: range_limit };
    // Later pages are read at the first page's revision, as kube-apiserver does: one consistent list.
    let range = match snapshot {
        Some(rv) => state.store.range_at(&prefix, &range_options, rv).map_err(|e| match e {
            kvol_store::Error::Compacted { .. } if exact => {
                ApiError::gone("The resourceVersion for the provided list is too old.")
            }
            kvol_store::Error::Compacted { .. } => too_old(),
            kvol_store::Error::FutureRevision { .. } => {
                ApiError::bad_request("continue key is not valid: its resource version is in the future")
            }
            other => store_error(resource, "", other),
        })?,
        None => state.store.range(&prefix, &range_options).map_err(|e| store_error(resource, "", e))?,
    };
    let revision = range.revision.max(1);
    let mut chosen: Vec<&KeyValue> = Vec::with_capacity(range.kvs.len());
    let mut decoded: Vec<Value> = Vec::new();
    let need_values = options.filters() || output != Output::Json;
    let mut remaining = range.remaining;
    for kv in &range.kvs {
        if need_values {
            let v: Value = serde_json::from_slice(&answer(kv)).map_err(|e| ApiError::internal(e.to_string()))?;
            if !selected(resource.kind, &v, options) {
                continue;
            }
            if options.limit.is_some_and(|l| l > 0 && chosen.len() >= l) {
                remaining += 1;
                continue;
            }
            decoded.push(v);
        }
        chosen.push(kv);
    }
    let continue_token =
        if remaining > 0 { chosen.last().map(|kv| encode_continue(revision, &kv.key[prefix.len()..])) } else { None };
    let mut metadata = json!({ "resourceVersion": revision.to_string() });
    if let Some(c) = &continue_token {
        metadata["continue"] = json!(c);
        if !options.filters() {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    if output == Output::Table {
        let mut table = crate::table::table(resource.kind, &decoded, jiff::Timestamp::now(), include_object);
        table["metadata"] = metadata;
        return serde_json::to_vec(&table).map_err(|e| ApiError::internal(e.to_string()));
    }
    if output == Output::Metadata {
        let items: Vec<Value> = decoded.iter().map(crate::codec::partial_object_metadata).collect();
        let list = json!({ "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items });
        return serde_json::to_vec(&list).map_err(|e| ApiError::internal(e.to_string()));
    }
    // Assemble the list by splicing stored bytes: no per-object decode on the common path.
    let head = json!({ "kind": resource.list_kind(), "apiVersion": resource.api_version(), "metadata": metadata });
    let mut out = serde_json::to_vec(&head).map_err(|e| ApiError::internal(e.to_string()))?;
    out.pop(); // the closing brace
    out.extend_from_slice(b",\"items\":[");
    for (i, kv) in chosen.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if need_values {
            serde_json::to_writer(&mut out, &decoded[i]).map_err(|e| ApiError::internal(e.to_string()))?;
        } else {
            out.extend_from_slice(&answer(kv));
        }
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}
