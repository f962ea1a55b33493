//! `kvol apply -f FILE|DIR|-`: client-side apply as kubectl does it. Each object is looked up; an absent
//! one is created with the `kubectl.kubernetes.io/last-applied-configuration` annotation; a present one
//! gets a three-way JSON merge patch computed from (last applied, new config, live object), so fields
//! the user removed from the file are removed from the object while fields set by others are kept.
//!
//! Design decision: the patch is kubectl's JSON three-way merge (`jsonmergepatch.CreateThreeWayJSONMergePatch`,
//! lists replaced whole) sent as `application/merge-patch+json`, which every API server accepts for every
//! kind, rather than a strategic merge patch that needs per-field schema knowledge.

use crate::client::{render_failures, ApiError, ConnectArgs, Connection, Failure, Mapping, RestMapper};
use crate::manifest::{self, Document};
use anyhow::Context;
use http::Method;
use serde_json::{Map, Value};
use std::path::PathBuf;

/// The annotation holding the configuration last applied.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Files, directories or `-` for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<bool> {
    let docs = manifest::read_all(&args.files)?;
    let conn = Connection::connect(&args.connect).await?;
    let mut mapper = RestMapper::new(&conn);
    let mut failures = Vec::new();
    for doc in &docs {
        match apply_one(&conn, &mut mapper, doc).await? {
            Ok(line) => println!("{line}"),
            Err(failure) => failures.push(failure),
        }
    }
    eprint!("{}", render_failures(&failures));
    Ok(failures.is_empty())
}

/// Where an object goes: its mapping, namespace and name, or kubectl's message for why it cannot go anywhere.
pub struct Target {
    pub mapping: Mapping,
    pub namespace: Option<String>,
    pub name: String,
}

/// Maps a document to its resource, kubectl's way (discovery decides; unknown kinds are refused by name).
pub async fn resolve(
    conn: &Connection,
    mapper: &mut RestMapper,
    doc: &Document,
) -> anyhow::Result<Result<Target, String>> {
    let api_version = doc.object["apiVersion"].as_str().unwrap_or_default();
    let kind = doc.object["kind"].as_str().unwrap_or_default();
    let name = manifest::name_of(&doc.object).to_string();
    let doc_ns = manifest::namespace_of(&doc.object);
    if kind.is_empty() || api_version.is_empty() {
        let missing = if kind.is_empty() { "kind" } else { "apiVersion" };
        return Ok(Err(format!(
            "error validating \"{}\": error validating data: {missing} not set; if you choose to ignore these errors, turn validation off with --validate=false",
            doc.source
        )));
    }
    let Some(mapping) = mapper.for_kind(api_version, kind).await? else {
        return Ok(Err(format!(
            "resource mapping not found for name: \"{name}\" namespace: \"{doc_ns}\" from \"{}\": no matches for kind \"{kind}\" in version \"{api_version}\"\nensure CRDs are installed first",
            doc.source
        )));
    };
    let namespace = if mapping.namespaced {
        if !doc_ns.is_empty() && conn.namespace_explicit && doc_ns != conn.namespace {
            return Ok(Err(format!(
                "the namespace from the provided object \"{doc_ns}\" does not match the namespace \"{}\". You must pass '--namespace={doc_ns}' to perform this operation.",
                conn.namespace
            )));
        }
        Some(if doc_ns.is_empty() { conn.namespace.clone() } else { doc_ns.to_string() })
    } else {
        None
    };
    Ok(Ok(Target { mapping, namespace, name }))
}

/// Applies one document; `Ok(line)` is what kubectl prints on stdout, `Err` what it reports at the end.
async fn apply_one(
    conn: &Connection,
    mapper: &mut RestMapper,
    doc: &Document,
) -> anyhow::Result<Result<String, Failure>> {
    let target = match resolve(conn, mapper, doc).await? {
        Ok(t) => t,
        Err(message) => return Ok(Err(Failure::Other(message))),
    };
    let Target { mapping, namespace, name } = target;
    let display = format!("{}/{}", mapping.qualified_singular(), name);
    let mut config = doc.object.clone();
    if let (Some(ns), Some(meta)) = (&namespace, config.get_mut("metadata").and_then(Value::as_object_mut)) {
        meta.insert("namespace".into(), Value::String(ns.clone()));
    }
    let modified = with_last_applied(&config)?;
    let path = mapping.object_path(namespace.as_deref(), &name);
    let live = match conn.get(&path).await? {
        Ok(live) => live,
        Err(e) if e.is_not_found() => {
            let collection = mapping.collection_path(namespace.as_deref());
            return Ok(match conn.json(Method::POST, &collection, Some(("application/json", &modified))).await? {
                Ok(_) => Ok(format!("{display} created")),
                Err(e) => Err(Failure::Api(e.with_prefix(&format!("error when creating \"{}\": ", doc.source)))),
            });
        }
        Err(e) => {
            return Ok(Err(Failure::Api(e.with_prefix(&format!(
                "error when retrieving current configuration of:\nResource: \"{}\", GroupVersionKind: \"{}\"\nName: \"{name}\", Namespace: \"{}\"\nfrom server for: \"{}\": ",
                resource_label(&mapping),
                gvk_label(&mapping),
                namespace.as_deref().unwrap_or_default(),
                doc.source
            )))))
        }
    };
    if live["metadata"]["annotations"][LAST_APPLIED].as_str().is_none() {
        let resource = &mapping.plural;
        eprintln!(
            "Warning: resource {resource}/{name} is missing the {LAST_APPLIED} annotation which is required by kvol apply. kvol apply should only be used on resources created declaratively by either kubectl create --save-config or kvol apply. The missing annotation will be patched automatically."
        );
    }
    let original = live["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .unwrap_or(Value::Object(Map::new()));
    let patch = three_way_merge_patch(&original, &modified, &live);
    if patch.as_object().is_some_and(Map::is_empty) {
        return Ok(Ok(format!("{display} unchanged")));
    }
    Ok(match conn.json(Method::PATCH, &path, Some(("application/merge-patch+json", &patch))).await? {
        Ok(_) => Ok(format!("{display} configured")),
        Err(e) => Err(Failure::Api(patch_error(e, &patch, &mapping, &name, namespace.as_deref(), &doc.source))),
    })
}

/// kubectl's message for a failed apply patch.
fn patch_error(
    e: ApiError,
    patch: &Value,
    mapping: &Mapping,
    name: &str,
    namespace: Option<&str>,
    source: &str,
) -> ApiError {
    e.with_prefix(&format!(
        "error when applying patch:\n{patch}\nto:\nResource: \"{}\", GroupVersionKind: \"{}\"\nName: \"{name}\", Namespace: \"{}\"\nfor: \"{source}\": error when patching \"{source}\": ",
        resource_label(mapping),
        gvk_label(mapping),
        namespace.unwrap_or_default(),
    ))
}

fn resource_label(m: &Mapping) -> String {
    format!("{}/{}, Resource={}", m.group, m.version, m.plural)
}

fn gvk_label(m: &Mapping) -> String {
    format!("{}/{}, Kind={}", m.group, m.version, m.kind)
}

/// The config with the last-applied annotation set to the config itself (without that annotation),
/// as kubectl's `GetModifiedConfiguration(annotate=true)` builds it.
pub fn with_last_applied(config: &Value) -> anyhow::Result<Value> {
    // Like kubectl, the annotations map is set (possibly empty) before the first encoding.
    let mut without = config.clone();
    let meta = without
        .as_object_mut()
        .context("the object is not a map")?
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let meta = meta.as_object_mut().context("metadata is not a map")?;
    let annotations = meta.entry("annotations").or_insert_with(|| Value::Object(Map::new()));
    if !annotations.is_object() {
        *annotations = Value::Object(Map::new());
    }
    annotations.as_object_mut().expect("just made a map").remove(LAST_APPLIED);
    let text = serde_json::to_string(&without).context("encoding the configuration")?;
    let mut modified = config.clone();
    let meta = modified
        .as_object_mut()
        .context("the object is not a map")?
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let meta = meta.as_object_mut().context("metadata is not a map")?;
    let annotations = meta.entry("annotations").or_insert_with(|| Value::Object(Map::new()));
    if !annotations.is_object() {
        *annotations = Value::Object(Map::new());
    }
    annotations.as_object_mut().expect("just made a map").insert(LAST_APPLIED.into(), Value::String(text + "\n"));
    Ok(modified)
}

/// kubectl's `CreateThreeWayJSONMergePatch(original, modified, current)`: additions and changes from
/// `current` to `modified`, plus deletions of what `original` had and `modified` dropped.
pub fn three_way_merge_patch(original: &Value, modified: &Value, current: &Value) -> Value {
    let add_and_change = keep_or_delete_null(&merge_patch(current, modified), false);
    let deletions = keep_or_delete_null(&merge_patch(original, modified), true);
    let mut patch = deletions;
    merge_into(&mut patch, &add_and_change);
    patch
}

/// RFC 7386 diff: the merge patch that turns `from` into `to`.
fn merge_patch(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            let mut out = Map::new();
            for (k, bv) in b {
                match a.get(k) {
                    Some(av) if av == bv => {}
                    Some(av @ Value::Object(_)) if bv.is_object() => {
                        let sub = merge_patch(av, bv);
                        if sub.as_object().is_some_and(|m| !m.is_empty()) {
                            out.insert(k.clone(), sub);
                        }
                    }
                    _ => {
                        out.insert(k.clone(), bv.clone());
                    }
                }
            }
            for k in a.keys() {
                if !b.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(out)
        }
        _ => to.clone(),
    }
}

/// apimachinery's `keepOrDeleteNullInObj`: keep only the deletions (`keep_null`) or only the rest.
fn keep_or_delete_null(patch: &Value, keep_null: bool) -> Value {
    let Some(map) = patch.as_object() else {
        return Value::Object(Map::new());
    };
    let mut out = Map::new();
    for (k, v) in map {
        match v {
            Value::Null if keep_null => {
                out.insert(k.clone(), Value::Null);
            }
            Value::Null => {}
            // An explicitly empty map is a value, not an empty patch.
            Value::Object(sub) if sub.is_empty() && !keep_null => {
                out.insert(k.clone(), v.clone());
            }
            Value::Object(sub) if sub.is_empty() => {}
            Value::Object(_) => {
                let sub = keep_or_delete_null(v, keep_null);
                if sub.as_object().is_some_and(|m| !m.is_empty()) {
                    out.insert(k.clone(), sub);
                }
            }
            _ if !keep_null => {
                out.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    Value::Object(out)
}

/// Merges patch `add` (which holds no nulls) into `base`.
fn merge_into(base: &mut Value, add: &Value) {
    match (base.as_object_mut(), add.as_object()) {
        (Some(b), Some(a)) => {
            for (k, v) in a {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge_into(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *base = add.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_unchanged_config_gives_an_empty_patch() {
        let config = with_last_applied(&json!({"metadata": {"name": "a"}, "spec": {"x": 1}})).unwrap();
        let mut live = config.clone();
        live["metadata"]["uid"] = json!("u");
        live["status"] = json!({"phase": "Available"});
        let original: Value =
            serde_json::from_str(live["metadata"]["annotations"][LAST_APPLIED].as_str().unwrap()).unwrap();
        assert_eq!(three_way_merge_patch(&original, &config, &live), json!({}));
    }

    #[test]
    fn removes_fields_dropped_from_the_config_and_keeps_fields_set_by_others() {
        let original = json!({"spec": {"a": 1, "b": 2}});
        let modified = json!({"spec": {"a": 3}});
        let current = json!({"spec": {"a": 1, "b": 2, "c": 9}});
        assert_eq!(three_way_merge_patch(&original, &modified, &current), json!({"spec": {"a": 3, "b": null}}));
    }

    #[test]
    fn replaces_lists_whole() {
        let original = json!({"spec": {"l": [1, 2]}});
        let modified = json!({"spec": {"l": [1]}});
        assert_eq!(three_way_merge_patch(&original, &modified, &original), json!({"spec": {"l": [1]}}));
    }

    #[test]
    fn the_annotation_holds_the_config_without_itself() {
        let m = with_last_applied(&json!({"kind": "X", "metadata": {"name": "a"}})).unwrap();
        assert_eq!(
            m["metadata"]["annotations"][LAST_APPLIED],
            json!("{\"kind\":\"X\",\"metadata\":{\"annotations\":{},\"name\":\"a\"}}\n")
        );
    }
}
