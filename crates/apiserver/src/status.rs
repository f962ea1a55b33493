//! API errors as `metav1.Status` objects, worded and coded as kube-apiserver words and codes them
//! (`k8s.io/apimachinery/pkg/api/errors`), so kubectl prints the same `Error from server (...)` lines.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use kvol_api::field::{distinct_errors, invalid_message, FieldError};
use kvol_api::Resource;
use serde_json::{json, Value};

/// An error answered to a client as a Status object.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `metav1.StatusReason`, e.g. `NotFound`.
    pub reason: &'static str,
    /// The human-readable message.
    pub message: String,
    /// `status.details`, when the error is about one object.
    pub details: Option<Value>,
}

fn details(resource: Option<&Resource>, name: &str) -> Value {
    let mut d = json!({ "name": name });
    if let Some(r) = resource {
        d["group"] = json!(r.group);
        d["kind"] = json!(r.plural);
    }
    d
}

/// `persistentvolumes` or `storageclasses.storage.k8s.io`, as kube names a resource in messages.
pub fn qualified(resource: &Resource) -> String {
    if resource.group.is_empty() {
        resource.plural.to_string()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

impl ApiError {
    /// An error with any code and reason.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 404 NotFound for one object: `persistentvolumes "pv1" not found`.
    pub fn not_found(resource: &Resource, name: &str) -> Self {
        let mut e = Self::new(404, "NotFound", format!("{} {name:?} not found", qualified(resource)));
        e.details = Some(details(Some(resource), name));
        e
    }

    /// 404 for a path that names nothing.
    pub fn no_route() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }

    /// 405 for a verb a path does not support.
    pub fn method_not_allowed(method: &str, what: &str) -> Self {
        Self::new(405, "MethodNotAllowed", format!("{method} is not supported on {what}"))
    }

    /// 406 when no acceptable media type can be produced.
    pub fn not_acceptable(accept: &str) -> Self {
        Self::new(406, "NotAcceptable", format!("only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io (asked for {accept:?})"))
    }

    /// 409 AlreadyExists: `persistentvolumes "pv1" already exists`.
    pub fn already_exists(resource: &Resource, name: &str) -> Self {
        let mut e = Self::new(409, "AlreadyExists", format!("{} {name:?} already exists", qualified(resource)));
        e.details = Some(details(Some(resource), name));
        e
    }

    /// 409 Conflict for a stale resourceVersion, in kube's words.
    pub fn conflict(resource: &Resource, name: &str) -> Self {
        let mut e = Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                qualified(resource)
            ),
        );
        e.details = Some(details(Some(resource), name));
        e
    }

    /// 409 Conflict with a custom reason text (precondition failures).
    pub fn conflict_because(resource: &Resource, name: &str, why: &str) -> Self {
        let mut e = Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} {name:?}: {why}", qualified(resource)),
        );
        e.details = Some(details(Some(resource), name));
        e
    }

    /// 410 Gone for a compacted resourceVersion.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 504 Timeout for a watch from a revision the store has not reached, as kube-apiserver's
    /// `NewTooLargeResourceVersionError` (client-go relists on its `ResourceVersionTooLarge` cause).
    pub fn too_large_resource_version(requested: i64, current: i64) -> Self {
        let mut e =
            Self::new(504, "Timeout", format!("Timeout: Too large resource version: {requested}, current: {current}"));
        e.details = Some(json!({
            "causes": [{ "reason": "ResourceVersionTooLarge", "message": "Too large resource version" }],
            "retryAfterSeconds": 1,
        }));
        e
    }

    /// 413 for an oversized body.
    pub fn too_large(limit: usize) -> Self {
        Self::new(413, "RequestEntityTooLarge", format!("Request entity too large: limit is {limit}"))
    }

    /// 415 for a body type the server cannot read.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"))
    }

    /// 422 Invalid, with one cause per distinct field error (at most `MAX_LISTED_ERRORS`, values cut to
    /// `MAX_SHOWN_VALUE_BYTES`, so the answer stays small whatever the request).
    pub fn invalid(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> Self {
        let causes: Vec<Value> = distinct_errors(errors)
            .0
            .into_iter()
            .map(|e| json!({ "reason": e.error_type.reason(), "message": e.body(), "field": e.field }))
            .collect();
        // kube-apiserver names the kind with its group: `StorageClass.storage.k8s.io "fast" is invalid`.
        let qualified_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let mut e = Self::new(422, "Invalid", invalid_message(&qualified_kind, name, errors));
        e.details = Some(json!({ "name": name, "group": group, "kind": kind, "causes": causes }));
        e
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }

    /// 507 when the store has no room for a write (kube-apiserver answers etcd's "database space exceeded"
    /// with a 500; 507 says what it is, and clients treat it as a server error all the same).
    pub fn insufficient_storage(message: impl Into<String>) -> Self {
        Self::new(507, "InsufficientStorage", message)
    }

    /// 503 ServiceUnavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The Status object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        (code, [(http::header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// The Status answered for a completed delete.
pub fn success_status(resource: &Resource, name: &str, uid: Option<&str>) -> Value {
    let mut d = details(Some(resource), name);
    if let Some(uid) = uid {
        d["uid"] = json!(uid);
    }
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d })
}
