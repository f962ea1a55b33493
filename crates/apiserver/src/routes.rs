//! The HTTP surface: authentication, then one dispatcher that parses Kubernetes REST paths
//! (`/api/v1/namespaces/<ns>/<plural>/<name>/<subresource>`, `/apis/<group>/<version>/...`) and verbs into
//! registry calls. Parsing paths by hand keeps the namespace/`namespaces` ambiguity in one readable place.
//! The one path that goes deeper, `nodes/<name>/proxy/<path...>`, is handed to [`crate::proxy`].

use crate::auth::{bearer, Transport, User};
use crate::authz::{authorize, Attributes, Verb};
use crate::codec::{
    negotiate, parse_body, parse_body_checked, Body as ParsedBody, FieldValidation, Output, MAX_BODY_BYTES,
};
use crate::patch::PatchType;
use crate::read::{check_field_selector, ListOptions};
use crate::registry::{self, DeleteOptions, Part, WriteOptions, Written};
use crate::status::ApiError;
use crate::table::IncludeObject;
use crate::watch::WatchOptions;
use crate::{discovery, dispatch, ApiState};
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use kvol_api::resources::by_plural;
use kvol_api::selector::Selector;
use kvol_api::Resource;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

fn json_response(code: u16, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn value_response(v: &Value) -> Response {
    json_response(200, serde_json::to_vec(v).unwrap_or_default())
}

fn written_response(w: Written) -> Response {
    let mut r = json_response(w.code, w.body);
    for warning in w.warnings {
        let text = format!("299 - {:?}", warning);
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

/// Where a path points.
#[derive(Debug)]
struct Target {
    resource: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_target(group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let lookup = |plural: &str| by_plural(group, version, plural).ok_or_else(ApiError::no_route);
    let t = |resource, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| Target {
        resource,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
    };
    let namespaces = group.is_empty() && rest.first() == Some(&"namespaces");
    match rest {
        [plural] => Ok(t(lookup(plural)?, None, None, None)),
        ["namespaces", ns, sub] if namespaces && matches!(*sub, "status" | "finalize") => {
            Ok(t(lookup("namespaces")?, None, Some(ns), Some(sub)))
        }
        ["namespaces", ns, plural] if namespaces => {
            let r = lookup(plural)?;
            if !r.namespaced {
                return Err(ApiError::no_route());
            }
            Ok(t(r, Some(ns), None, None))
        }
        ["namespaces", ns, plural, name] if namespaces => {
            let r = lookup(plural)?;
            if !r.namespaced {
                return Err(ApiError::no_route());
            }
            Ok(t(r, Some(ns), Some(name), None))
        }
        ["namespaces", ns, plural, name, sub] if namespaces => Ok(t(lookup(plural)?, Some(ns), Some(name), Some(sub))),
        [plural, name] => {
            let r = lookup(plural)?;
            if r.namespaced {
                return Err(ApiError::no_route());
            }
            Ok(t(r, None, Some(name), None))
        }
        [plural, name, sub] => {
            let r = lookup(plural)?;
            if r.namespaced {
                return Err(ApiError::no_route());
            }
            Ok(t(r, None, Some(name), Some(sub)))
        }
        _ => Err(ApiError::no_route()),
    }
}

fn query_map(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect()
}

/// A boolean query parameter, read as Go's `strconv.ParseBool` reads it (clients send `true`, `True`, `1`).
fn is_true(v: Option<&String>) -> bool {
    matches!(v.map(String::as_str), Some("1" | "t" | "T" | "true" | "TRUE" | "True"))
}

/// `?limit=`, read as kube's parameter codec reads it: an integer or a 400; zero or less means no limit.
fn parse_limit(v: Option<&String>) -> Result<Option<usize>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_empty()) else { return Ok(None) };
    let n = v.parse::<i64>().map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => "value out of range",
            _ => "invalid syntax",
        };
        ApiError::bad_request(format!("strconv.ParseInt: parsing {v:?}: {why}"))
    })?;
    Ok(usize::try_from(n).ok().filter(|n| *n > 0))
}

/// Who sent a request: the local socket's admin, or the user of its bearer token (None: anonymous).
pub fn authenticate(state: &ApiState, transport: Transport, headers: &http::HeaderMap) -> Option<User> {
    match transport {
        Transport::Unix => Some(User::local_admin()),
        Transport::Tls => bearer(&state.tokens, headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())),
    }
}

/// Answer one request from `user` (see [`authenticate`]); anonymous requests get 401.
pub async fn handle(state: ApiState, user: Option<User>, req: Request<Body>) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let Some(user) = user else {
        tracing::debug!(%method, %path, "anonymous request refused");
        return ApiError::unauthorized().into_response();
    };
    let started = std::time::Instant::now();
    let response = match serve(&state, &user, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    tracing::debug!(%method, %path, user = %user.name, status = response.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    response
}

async fn serve(state: &ApiState, user: &User, req: Request<Body>) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let query = query_map(parts.uri.query());
    let header = |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let get_only =
        |m: &Method| if *m == Method::GET { Ok(()) } else { Err(ApiError::method_not_allowed(m.as_str(), &path)) };
    match segments.as_slice() {
        ["version"] => return get_only(&parts.method).map(|_| value_response(&discovery::version())),
        ["healthz"] | ["livez"] | ["readyz"] => return Ok(json_response(200, b"ok".to_vec())),
        ["api"] => {
            get_only(&parts.method)?;
            return Ok(value_response(&discovery::core_versions(&state.advertise_address)));
        }
        ["apis"] => {
            get_only(&parts.method)?;
            return Ok(value_response(&discovery::group_list()));
        }
        ["api", "v1"] => {
            get_only(&parts.method)?;
            return discovery::resource_list("", "v1").map(|v| value_response(&v)).ok_or_else(ApiError::no_route);
        }
        ["openapi", "v2"] => {
            get_only(&parts.method)?;
            return Ok(crate::openapi::v2(header(header::ACCEPT).as_deref()));
        }
        ["apis", "apiextensions.k8s.io", "v1", "customresourcedefinitions"] => {
            // kvol serves no custom resources; kubectl's validator asks before falling back to schemas.
            get_only(&parts.method)?;
            let list = serde_json::json!({
                "kind": "CustomResourceDefinitionList", "apiVersion": "apiextensions.k8s.io/v1",
                "metadata": { "resourceVersion": state.store.current_revision().to_string() }, "items": [],
            });
            return Ok(value_response(&list));
        }
        ["openapi", "v3"] => {
            get_only(&parts.method)?;
            return Ok(value_response(&crate::openapi::root()));
        }
        ["openapi", "v3", "api", version] => {
            get_only(&parts.method)?;
            return crate::openapi::group_version("", version)
                .map(|v| value_response(&v))
                .ok_or_else(ApiError::no_route);
        }
        ["openapi", "v3", "apis", group, version] => {
            get_only(&parts.method)?;
            return crate::openapi::group_version(group, version)
                .map(|v| value_response(&v))
                .ok_or_else(ApiError::no_route);
        }
        ["apis", group] => {
            get_only(&parts.method)?;
            return discovery::group(group).map(|v| value_response(&v)).ok_or_else(ApiError::no_route);
        }
        ["apis", group, version] => {
            get_only(&parts.method)?;
            return discovery::resource_list(group, version).map(|v| value_response(&v)).ok_or_else(ApiError::no_route);
        }
        _ => {}
    }
    // The node proxy's path continues past the subresource, so it is recognised before the generic parser.
    if let ["api", "v1", "nodes", name, "proxy", rest @ ..] = segments.as_slice() {
        return crate::proxy::node_proxy(state, user, &parts, name, rest).await;
    }
    let target = match segments.as_slice() {
        ["api", "v1", rest @ ..] => parse_target("", "v1", rest)?,
        ["apis", group, version, rest @ ..] => parse_target(group, version, rest)?,
        _ => return Err(ApiError::no_route()),
    };
    let resource = target.resource;
    let ns = target.namespace.as_deref();
    if target.subresource.as_deref() == Some("binding") && resource.kind == "Pod" {
        return bind(state, user, &parts, body, &target).await;
    }
    let part = match target.subresource.as_deref() {
        None => Part::Main,
        Some("status") if resource.has_status => Part::Status,
        Some("finalize") if resource.kind == "Namespace" => Part::Finalize,
        Some(_) => return Err(ApiError::no_route()),
    };
    let content_type = header(header::CONTENT_TYPE);
    let accept = header(header::ACCEPT);
    let verb = match (&parts.method, target.name.is_some()) {
        (&Method::GET, true) => Verb::Get,
        (&Method::GET, false) if is_true(query.get("watch")) => Verb::Watch,
        (&Method::GET, false) => Verb::List,
        (&Method::POST, false) => Verb::Create,
        (&Method::PUT, true) => Verb::Update,
        (&Method::PATCH, true) => Verb::Patch,
        (&Method::DELETE, true) => Verb::Delete,
        (&Method::DELETE, false) => Verb::DeleteCollection,
        (m, _) => return Err(ApiError::method_not_allowed(m.as_str(), &path)),
    };
    // A list or watch narrowed to one object by `metadata.name=` is about that object (kubelet watches
    // single Secrets and ConfigMaps this way).
    let selected_name = query.get("fieldSelector").and_then(|f| {
        let s = Selector::parse_fields(f).ok()?;
        match s.requirements.as_slice() {
            [r] if r.key == "metadata.name" => match &r.op {
                kvol_api::selector::Op::In(v) if v.len() == 1 => Some(v[0].clone()),
                _ => None,
            },
            _ => None,
        }
    });
    let mut body = Some(body);
    let mut created: Option<ParsedBody> = None;
    let mut attributes = Attributes {
        verb,
        resource,
        subresource: target.subresource.as_deref(),
        namespace: ns,
        name: target.name.as_deref().or(selected_name.as_deref()),
    };
    if verb == Verb::Create {
        // A create is authorized by the name in its body (NodeRestriction: a node creates only itself).
        let limited = http_body_util::Limited::new(body.take().unwrap_or_default(), MAX_BODY_BYTES);
        let bytes = limited.collect().await.map(|c| c.to_bytes()).map_err(|_| ApiError::too_large(MAX_BODY_BYTES))?;
        let mut parsed = parse_body_checked(content_type.as_deref(), &bytes)?;
        registry::resolve_generate_name(&mut parsed.value);
        created = Some(parsed);
    }
    // The name the object will have (generateName resolved above): none at all is authorized as none.
    let create_name = created.as_ref().and_then(|b| b.value["metadata"]["name"].as_str().map(str::to_string));
    if verb == Verb::Create {
        attributes.name = create_name.as_deref().filter(|n| !n.is_empty());
    }
    authorize(state, user, &attributes)?;
    let body = body.unwrap_or_default();
    let read_body = || async {
        let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
        limited.collect().await.map(|c| c.to_bytes()).map_err(|_| ApiError::too_large(MAX_BODY_BYTES))
    };
    let write_options = || -> Result<WriteOptions, ApiError> {
        Ok(WriteOptions {
            field_validation: FieldValidation::parse(query.get("fieldValidation").map(String::as_str))?,
            dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
            acting_node: crate::authz::node_of(user),
        })
    };
    let include_object = match query.get("includeObject").map(String::as_str) {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    };
    match (parts.method.clone(), target.name.as_deref()) {
        (Method::GET, None) => {
            let mut options = ListOptions {
                labels: Selector::parse_labels(query.get("labelSelector").map_or("", String::as_str))
                    .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
                fields: Selector::parse_fields(query.get("fieldSelector").map_or("", String::as_str))
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
                limit: parse_limit(query.get("limit"))?,
                continue_token: query.get("continue").cloned(),
                resource_version: query.get("resourceVersion").cloned(),
                resource_version_match: query.get("resourceVersionMatch").cloned(),
            };
            check_field_selector(resource.kind, &options.fields)?;
            let streaming = query.contains_key("sendInitialEvents");
            crate::read::validate_list_options(&options, is_true(query.get("watch")), streaming)?;
            let output = negotiate(accept.as_deref())?;
            if is_true(query.get("watch")) {
                let timeout = query
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse::<u64>().ok())
                    // 0 means "not given", as in kube-apiserver.
                    .filter(|t| *t > 0)
                    .map(Duration::from_secs)
                    .unwrap_or(state.watch_timeout);
                options.limit = None;
                let watch = WatchOptions {
                    bookmarks: is_true(query.get("allowWatchBookmarks")),
                    timeout,
                    send_initial_events: is_true(query.get("sendInitialEvents")),
                    output,
                    include_object,
                    budget: state.limits.watch,
                };
                let body = crate::watch::start(state, resource, ns, options, watch)?;
                let stream = body.map(Ok::<Bytes, std::convert::Infallible>);
                let mut r = Response::new(Body::from_stream(stream));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
                return Ok(r);
            }
            let body = crate::read::list(state, resource, ns, &options, output, include_object)?;
            Ok(json_response(200, body))
        }
        (Method::GET, Some(name)) => {
            let output = negotiate(accept.as_deref())?;
            let kv = crate::read::get(state, resource, ns, name)?;
            let body = registry::answer(&kv);
            if output == Output::Metadata {
                let v: Value = serde_json::from_slice(&body).map_err(|e| ApiError::internal(e.to_string()))?;
                return Ok(value_response(&crate::codec::partial_object_metadata(&v)));
            }
            if output == Output::Table {
                let v: Value = serde_json::from_slice(&body).map_err(|e| ApiError::internal(e.to_string()))?;
                let mut table = crate::table::table(resource.kind, &[v], jiff::Timestamp::now(), include_object);
                table["metadata"] = serde_json::json!({ "resourceVersion": kv.mod_revision.to_string() });
                return Ok(value_response(&table));
            }
            Ok(json_response(200, body))
        }
        (Method::POST, None) => {
            let body = created.ok_or_else(|| ApiError::internal("create body not read"))?;
            let opts = write_options()?;
            let w =
                dispatch!(resource.kind, registry::create(state, resource, ns, body, opts), Err(ApiError::no_route()))?;
            Ok(written_response(w))
        }
        (Method::PUT, Some(name)) => {
            let bytes = read_body().await?;
            let body = parse_body_checked(content_type.as_deref(), &bytes)?;
            let opts = write_options()?;
            let w = dispatch!(
                resource.kind,
                registry::update(state, resource, ns, name, body, part, opts),
                Err(ApiError::no_route())
            )?;
            Ok(written_response(w))
        }
        (Method::PATCH, Some(name)) => {
            let ct = content_type.unwrap_or_default();
            let patch_type = PatchType::from_content_type(&ct).ok_or_else(|| ApiError::unsupported_media_type(&ct))?;
            let bytes = read_body().await?;
            let opts = write_options()?;
            let w = dispatch!(
                resource.kind,
                registry::patch(state, resource, ns, name, bytes, patch_type, part, opts),
                Err(ApiError::no_route())
            )?;
            Ok(written_response(w))
        }
        (Method::DELETE, Some(name)) if part == Part::Main => {
            let bytes = read_body().await?;
            let grace = query.get("gracePeriodSeconds").and_then(|g| g.parse().ok());
            let options = DeleteOptions::parse(
                content_type.as_deref(),
                &bytes,
                grace,
                query.get("dryRun").is_some_and(|d| d == "All"),
            )?;
            let w = dispatch!(
                resource.kind,
                registry::delete(state, resource, ns, name, options),
                Err(ApiError::no_route())
            )?;
            Ok(written_response(w))
        }
        (Method::DELETE, None) => {
            let bytes = read_body().await?;
            let grace = query.get("gracePeriodSeconds").and_then(|g| g.parse().ok());
            let options = DeleteOptions::parse(
                content_type.as_deref(),
                &bytes,
                grace,
                query.get("dryRun").is_some_and(|d| d == "All"),
            )?;
            let list_options = ListOptions {
                labels: Selector::parse_labels(query.get("labelSelector").map_or("", String::as_str))
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
                fields: Selector::parse_fields(query.get("fieldSelector").map_or("", String::as_str))
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
                ..Default::default()
            };
            delete_collection(state, resource, ns, &list_options, options).await
        }
        (m, _) => Err(ApiError::method_not_allowed(m.as_str(), &path)),
    }
}

/// POST `pods/<name>/binding` (the scheduler's way to set `spec.nodeName`).
async fn bind(
    state: &ApiState,
    user: &User,
    parts: &http::request::Parts,
    body: Body,
    target: &Target,
) -> Result<Response, ApiError> {
    if parts.method != Method::POST {
        return Err(ApiError::method_not_allowed(parts.method.as_str(), parts.uri.path()));
    }
    let attributes = Attributes {
        verb: Verb::Create,
        resource: target.resource,
        subresource: Some("binding"),
        namespace: target.namespace.as_deref(),
        name: target.name.as_deref(),
    };
    authorize(state, user, &attributes)?;
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    let bytes = limited.collect().await.map(|c| c.to_bytes()).map_err(|_| ApiError::too_large(MAX_BODY_BYTES))?;
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let binding = parse_body(content_type, &bytes)?;
    let name = target.name.as_deref().unwrap_or_default();
    let w = registry::bind_pod(state, target.resource, target.namespace.as_deref(), name, &binding).await?;
    Ok(written_response(w))
}

/// DELETE on a collection: delete every selected object, answering the list of what was deleted.
async fn delete_collection(
    state: &ApiState,
    resource: &'static Resource,
    ns: Option<&str>,
    list_options: &ListOptions,
    options: DeleteOptions,
) -> Result<Response, ApiError> {
    let listed = crate::read::list(state, resource, ns, list_options, Output::Json, IncludeObject::Metadata)?;
    let list: Value = serde_json::from_slice(&listed).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut items = Vec::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let name = item["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let item_ns = item["metadata"]["namespace"].as_str().map(str::to_string);
        let result = dispatch!(
            resource.kind,
            registry::delete(state, resource, item_ns.as_deref(), &name, options.clone()),
            Err(ApiError::no_route())
        );
        match result {
            Ok(_) => items.push(item.clone()),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let out = serde_json::json!({
        "kind": resource.list_kind(),
        "apiVersion": resource.api_version(),
        "metadata": { "resourceVersion": state.store.current_revision().to_string() },
        "items": items,
    });
    Ok(value_response(&out))
}

use futures::StreamExt as _;
