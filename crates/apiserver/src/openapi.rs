//! A minimal OpenAPI v3 description of the served paths: for every resource, its operations with
//! `x-kubernetes-group-version-kind` and the query parameters the server honours. kubectl reads it to learn
//! that the server validates fields itself (`fieldValidation`), so it does not need client-side schemas.
//! Object schemas are not published; kubectl then falls back to its built-in types for strategic merge.

use kvol_api::resources::{groups, RESOURCES};
use kvol_api::Resource;
use serde_json::{json, Map, Value};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A stable short hash of a document, for `?hash=` cache busting.
fn hash(doc: &Value) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    doc.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// `/openapi/v3`: the list of group-version documents.
pub fn root() -> Value {
    let mut paths = Map::new();
    let mut gvs = vec![("", "v1")];
    for (g, vs) in groups() {
        for v in vs {
            gvs.push((g, v));
        }
    }
    for (g, v) in gvs {
        if let Some(doc) = group_version(g, v) {
            let p = gv_path(g, v);
            paths.insert(p.clone(), json!({ "serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(&doc)) }));
        }
    }
    json!({ "paths": paths })
}

fn param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "query", "description": description, "schema": { "type": "string", "uniqueItems": true } })
}

fn operation(r: &Resource, action: &str, params: &[Value]) -> Value {
    json!({
        "operationId": format!("{action}{}", r.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": { "group": r.group, "version": r.version, "kind": r.kind },
        "parameters": params,
        "responses": { "200": { "description": "OK" } },
    })
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/<group>/<version>`.
pub fn group_version(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&Resource> = RESOURCES.iter().filter(|r| r.group == group && r.version == version).collect();
    if served.is_empty() {
        return None;
    }
    let write_params = [
        param("dryRun", "When present, indicates that modifications should not be persisted."),
        param("fieldManager", "A name associated with the actor or entity that is making these changes."),
        param("fieldValidation", "Ignore, Warn or Strict: how unknown and duplicate fields are treated."),
    ];
    let list_params = [
        param("labelSelector", "A selector to restrict the list of returned objects by their labels."),
        param("fieldSelector", "A selector to restrict the list of returned objects by their fields."),
        param("limit", "Maximum number of responses to return for a list call."),
        param("continue", "The continue option from a previous paged list."),
        param("resourceVersion", "Where to start a list or watch."),
        param("watch", "Watch for changes to the described resources."),
        param("allowWatchBookmarks", "Request watch events with type BOOKMARK."),
        param("timeoutSeconds", "Timeout for the list/watch call."),
    ];
    let mut paths = Map::new();
    for r in served {
        let base = format!("/{}", gv_path(group, version));
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        paths.insert(
            collection.clone(),
            json!({ "get": operation(r, "list", &list_params), "post": operation(r, "post", &write_params) }),
        );
        let item = format!("{collection}/{{name}}");
        paths.insert(
            item.clone(),
            json!({
                "get": operation(r, "get", &[]),
                "put": operation(r, "put", &write_params),
                "patch": operation(r, "patch", &write_params),
                "delete": operation(r, "delete", &[param("dryRun", ""), param("gracePeriodSeconds", "")]),
            }),
        );
        if r.has_status {
            paths.insert(
                format!("{item}/status"),
                json!({
                    "get": operation(r, "get", &[]),
                    "put": operation(r, "put", &write_params),
                    "patch": operation(r, "patch", &write_params),
                }),
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": format!("v{}.{}.0", crate::discovery::KUBE_MAJOR, crate::discovery::KUBE_MINOR) },
        "paths": paths,
        "components": { "schemas": {} },
    }))
}

/// The media type answered for OpenAPI v2 as protobuf (gnostic's `openapi_v2.Document`). client-go asks for
/// `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, but Go's media-type parser refuses the `@` in
/// a Content-Type, so kube-apiserver's answer type is not reusable verbatim; client-go reads the raw bytes.
const V2_PROTOBUF: &str = "application/octet-stream";

/// `/openapi/v2`: kvol publishes no v2 schemas. The answer is an empty document: zero bytes in protobuf (the
/// encoding of a message with no fields set), or a swagger object with no paths in JSON. Clients then find
/// no schema for a kind and skip client-side validation, leaving it to the server.
pub fn v2(accept: Option<&str>) -> axum::response::Response {
    use axum::response::IntoResponse;
    if accept.is_some_and(|a| a.contains("protobuf")) {
        return ([(http::header::CONTENT_TYPE, V2_PROTOBUF)], Vec::<u8>::new()).into_response();
    }
    let doc = json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": format!("v{}.{}.0", crate::discovery::KUBE_MAJOR, crate::discovery::KUBE_MINOR) },
        "paths": {},
    });
    ([(http::header::CONTENT_TYPE, "application/json")], doc.to_string()).into_response()
}
