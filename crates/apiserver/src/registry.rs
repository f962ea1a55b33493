//! Generic storage of API objects over the [`Store`]: the create, update, patch and delete flows of
//! kube-apiserver's generic registry (`staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go`),
//! with optimistic concurrency on the store's modification revision, finalizers and graceful deletion.
//!
//! Objects are stored as JSON without `metadata.resourceVersion` (the store's revision is the version, as in
//! etcd) and answered with it spliced in.

use crate::admission;
use crate::codec::{decode_typed, strict_error, strict_problems, with_resource_version, Body, FieldValidation};
use crate::object::ApiObject;
use crate::patch::{apply_patch, PatchType};
use crate::status::ApiError;
use crate::ApiState;
use bytes::Bytes;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kvol_api::Resource;
use kvol_store::{Error as StoreError, KeyValue, Precondition};
use serde_json::Value;

/// The outcome of a write: the answer body, the HTTP code, and `Warning:` headers.
pub struct Written {
    /// JSON body.
    pub body: Vec<u8>,
    /// 200 or 201.
    pub code: u16,
    /// Warnings for the client.
    pub warnings: Vec<String>,
}

/// Options common to writes (query parameters, and who asks).
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions<'a> {
    /// `?fieldValidation=`.
    pub field_validation: FieldValidation,
    /// `?dryRun=All`: run everything but the store write.
    pub dry_run: bool,
    /// The node agent making the request, if it is one: NodeRestriction limits what it may write.
    pub acting_node: Option<&'a str>,
}

/// Map a store error for one object to kube's error.
pub fn store_error(resource: &Resource, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists { .. } => ApiError::already_exists(resource, name),
        StoreError::NotFound { .. } => ApiError::not_found(resource, name),
        StoreError::Conflict { .. } => ApiError::conflict(resource, name),
        StoreError::Compacted { requested, compacted } => {
            ApiError::gone(format!("too old resource version: {requested} ({compacted})"))
        }
        StoreError::Full { .. } => ApiError::insufficient_storage(format!(
            "{} {name:?} was not written: the store is full (its database or disk has no room left); nothing was changed",
            crate::status::qualified(resource)
        )),
        other => ApiError::internal(other.to_string()),
    }
}

fn now() -> Time {
    // kube-apiserver stores timestamps with second precision.
    let secs = jiff::Timestamp::now().as_second();
    Time(jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

/// The stored JSON of an object: without resourceVersion, so the store's revision is the only version.
fn encode_for_store<T: ApiObject>(obj: &T) -> Result<Bytes, ApiError> {
    let mut obj = obj.clone();
    obj.metadata_mut().resource_version = None;
    serde_json::to_vec(&obj).map(Bytes::from).map_err(|e| ApiError::internal(format!("encoding object: {e}")))
}

/// The answer JSON of a stored entry.
pub fn answer(kv: &KeyValue) -> Vec<u8> {
    with_resource_version(&kv.value, kv.mod_revision)
}

/// Decode a stored entry into its typed object, with the resourceVersion set.
pub fn decode_stored<T: ApiObject>(kv: &KeyValue) -> Result<T, ApiError> {
    let mut obj: T = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {:?} does not decode: {e}", kv.key)))?;
    obj.metadata_mut().resource_version = Some(kv.mod_revision.to_string());
    Ok(obj)
}

fn parse_rv(rv: &str) -> Result<i64, ApiError> {
    rv.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
        ApiError::bad_request(format!("metadata.resourceVersion: Invalid value: {rv:?}: must be a positive integer"))
    })
}

/// Decode a body into `T`, applying the field validation mode to its unknown and duplicated fields.
fn decode_body<T: ApiObject>(
    resource: &Resource,
    body: Value,
    duplicates: &[String],
    opts: &WriteOptions<'_>,
) -> Result<(T, Vec<String>), ApiError> {
    let (obj, unknown) = decode_typed::<T>(resource, body)?;
    let mut warnings = Vec::new();
    if !unknown.is_empty() || !duplicates.is_empty() {
        let problems = strict_problems(&unknown, duplicates);
        match opts.field_validation {
            FieldValidation::Strict => return Err(strict_error(resource, &problems)),
            FieldValidation::Warn => warnings = problems,
            FieldValidation::Ignore => {}
        }
    }
    if let Some((path, e)) = obj.bad_quantity() {
        return Err(ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: {e} (field {path})",
            resource.kind, resource.version, resource.kind
        )));
    }
    Ok((obj, warnings))
}

const GENERATE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Give a create body carrying only `metadata.generateName` its generated `metadata.name`, before it is
/// authorized: a create is authorized on the name the object will have (NodeRestriction).
pub fn resolve_generate_name(body: &mut Value) {
    let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let named = meta.get("name").is_some_and(|n| !n.is_null() && n.as_str() != Some(""));
    if named {
        return;
    }
    if let Some(base) = meta.get("generateName").and_then(Value::as_str).filter(|g| !g.is_empty()) {
        let name = generate_name(base);
        meta.insert("name".into(), Value::String(name));
    }
}

fn generate_name(base: &str) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    // kube trims the base so the result stays within 63 characters.
    let base: String = base.chars().take(58).collect();
    let suffix: String =
        (0..5).map(|_| GENERATE_ALPHABET[rng.random_range(0..GENERATE_ALPHABET.len())] as char).collect();
    format!("{base}{suffix}")
}

/// POST: create an object.
pub async fn create<T: ApiObject>(
    state: &ApiState,
    resource: &'static Resource,
    namespace: Option<&str>,
    body: Body,
    opts: WriteOptions<'_>,
) -> Result<Written, ApiError> {
    let (mut obj, warnings) = decode_body::<T>(resource, body.value, &body.duplicates, &opts)?;
    if obj.metadata().resource_version.as_deref().is_some_and(|rv| !rv.is_empty()) {
        // kube-apiserver's storage refuses this (storage.ErrResourceVersionSetOnCreate).
        return Err(ApiError::bad_request("resourceVersion should not be set on objects to be created"));
    }
    {
        let meta = obj.metadata_mut();
        if resource.namespaced {
            match (&meta.namespace, namespace) {
                (Some(body_ns), Some(url_ns)) if !body_ns.is_empty() && body_ns != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => meta.namespace = namespace.map(str::to_string),
            }
        } else {
            meta.namespace = None;
        }
        let generate =
            meta.name.as_deref().unwrap_or("").is_empty() && !meta.generate_name.as_deref().unwrap_or("").is_empty();
        if generate {
            meta.name = Some(generate_name(meta.generate_name.as_deref().unwrap_or("")));
        }
        meta.uid = Some(uuid::Uuid::new_v4().to_string());
        meta.creation_timestamp = Some(now());
        meta.resource_version = None;
        meta.deletion_timestamp = None;
        meta.deletion_grace_period_seconds = None;
        meta.generation = Some(1);
        meta.managed_fields = None;
        meta.self_link = None;
    }
    obj.prepare_create();
    obj.default_fields();
    admission::admit_create(state, resource, &mut obj).await?;
    if let Some(node) = opts.acting_node {
        admission::node_restriction(node, &obj, None)?;
    }
    let name = obj.metadata().name.clone().unwrap_or_default();
    let errors = obj.validate_new();
    if !errors.is_empty() {
        return Err(ApiError::invalid(resource.kind, resource.group, &name, &errors));
    }
    if resource.namespaced {
        admission::require_namespace(state, namespace.unwrap_or_default()).await?;
    }
    let value = encode_for_store(&obj)?;
    if opts.dry_run {
        return Ok(Written { body: value.to_vec(), code: 201, warnings });
    }
    let key = resource.key(namespace, &name);
    let kv =
        state.store.put(key, value, Precondition::MustNotExist).await.map_err(|e| store_error(resource, &name, e))?;
    Ok(Written { body: answer(&kv), code: 201, warnings })
}

/// Which part of the object a write targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main resource: spec and metadata; status is kept.
    Main,
    /// The `status` subresource: only status (and mutable metadata).
    Status,
    /// A namespace's `finalize` subresource.
    Finalize,
}

/// PUT: replace an object (or its status).
pub async fn update<T: ApiObject>(
    state: &ApiState,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
    body: Body,
    part: Part,
    opts: WriteOptions<'_>,
) -> Result<Written, ApiError> {
    let (obj, warnings) = decode_body::<T>(resource, body.value, &body.duplicates, &opts)?;
    let key = resource.key(namespace, name);
    // Without a resourceVersion the update is unconditional: a race lost to another write is retried.
    let pinned = obj.metadata().resource_version.as_deref().is_some_and(|rv| !rv.is_empty());
    for _attempt in 0..CONFLICT_RETRIES {
        let current = state.store.get(&key).map_err(|e| store_error(resource, name, e))?;
        let Some(current) = current else { return Err(ApiError::not_found(resource, name)) };
        match write_update(state, resource, namespace, name, obj.clone(), &current, part, opts, true).await {
            Err(e) if !pinned && lost_race(&e) => continue,
            Ok(written) => return Ok(Written { warnings, ..written }),
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(resource, name))
}

/// Whether a write failed only because another write changed the object first (not a precondition).
fn lost_race(e: &ApiError) -> bool {
    e.reason == "Conflict" && e.message.contains("has been modified")
}

/// The shared tail of update and patch: merge with the stored object, validate, and write guarded by the
/// revision the caller saw (the body's resourceVersion, or the stored one when `unconditional` allows).
#[allow(clippy::too_many_arguments)] // one call site each for update and patch; a struct would only rename them
async fn write_update<T: ApiObject>(
    state: &ApiState,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
    mut obj: T,
    current: &KeyValue,
    part: Part,
    opts: WriteOptions<'_>,
    unconditional: bool,
) -> Result<Written, ApiError> {
    let old: T = decode_stored(current)?;
    let body_name = obj.metadata().name.clone().unwrap_or_default();
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if resource.namespaced {
        if let (Some(body_ns), Some(url_ns)) = (obj.metadata().namespace.as_deref(), namespace) {
            if !body_ns.is_empty() && body_ns != url_ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    }
    if let (Some(uid), Some(old_uid)) = (obj.metadata().uid.as_deref(), old.metadata().uid.as_deref()) {
        if !uid.is_empty() && uid != old_uid {
            return Err(ApiError::conflict_because(
                resource,
                name,
                &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {old_uid}"),
            ));
        }
    }
    let precondition = match obj.metadata().resource_version.as_deref() {
        Some(rv) if !rv.is_empty() => Precondition::ModRevision(parse_rv(rv)?),
        _ if unconditional => Precondition::ModRevision(current.mod_revision),
        _ => {
            return Err(ApiError::invalid(
                resource.kind,
                resource.group,
                name,
                &[kvol_api::FieldError::invalid(
                    &kvol_api::FieldPath::new("metadata").child("resourceVersion"),
                    "",
                    "must be specified for an update",
                )],
            ))
        }
    };
    if let Precondition::ModRevision(rv) = precondition {
        if rv != current.mod_revision {
            return Err(ApiError::conflict(resource, name));
        }
    }
    match part {
        Part::Main => obj.prepare_update(&old),
        Part::Status => obj.prepare_status_update(&old),
        // A namespace's finalize subresource writes spec.finalizers, which its main update keeps.
        Part::Finalize => {}
    }
    {
        let (meta, old_meta) = (obj.metadata().clone(), old.metadata());
        let m = obj.metadata_mut();
        m.name = Some(name.to_string());
        m.namespace = old_meta.namespace.clone();
        m.uid = old_meta.uid.clone();
        m.creation_timestamp = old_meta.creation_timestamp.clone();
        m.deletion_timestamp = old_meta.deletion_timestamp.clone();
        m.deletion_grace_period_seconds = old_meta.deletion_grace_period_seconds;
        m.generation = old_meta.generation;
        m.managed_fields = None;
        m.self_link = None;
        if old_meta.deletion_timestamp.is_some() {
            let old_f = old_meta.finalizers.clone().unwrap_or_default();
            if meta.finalizers.iter().flatten().any(|f| !old_f.contains(f)) {
                return Err(ApiError::invalid(
                    resource.kind,
                    resource.group,
                    name,
                    &[kvol_api::FieldError::forbidden(
                        &kvol_api::FieldPath::new("metadata").child("finalizers"),
                        "no new finalizers can be added if the object is being deleted",
                    )],
                ));
            }
        }
    }
    obj.default_fields();
    if let Some(node) = opts.acting_node {
        admission::node_restriction(node, &obj, Some(&old))?;
    }
    if spec_changed(&obj, &old) {
        let g = old.metadata().generation.unwrap_or(1) + 1;
        obj.metadata_mut().generation = Some(g);
    }
    let errors = obj.validate_change(&old);
    if !errors.is_empty() {
        return Err(ApiError::invalid(resource.kind, resource.group, name, &errors));
    }
    let value = encode_for_store(&obj)?;
    if value == current.value {
        // A no-op update writes nothing and keeps the resourceVersion, as kube-apiserver does.
        return Ok(Written { body: answer(current), code: 200, warnings: vec![] });
    }
    if opts.dry_run {
        return Ok(Written { body: with_resource_version(&value, current.mod_revision), code: 200, warnings: vec![] });
    }
    let key = resource.key(namespace, name);
    let finalized = obj.metadata().deletion_timestamp.is_some()
        && obj.metadata().finalizers.as_ref().is_none_or(|f| f.is_empty())
        && !admission::held_by_spec(&obj);
    if finalized {
        // The last finalizer is gone from an object being deleted: the update completes the delete.
        let kv = state
            .store
            .delete(key, Precondition::ModRevision(current.mod_revision))
            .await
            .map_err(|e| store_error(resource, name, e))?;
        return Ok(Written { body: with_resource_version(&value, kv.mod_revision), code: 200, warnings: vec![] });
    }
    let kv = state
        .store
        .put(key, value, Precondition::ModRevision(current.mod_revision))
        .await
        .map_err(|e| store_error(resource, name, e))?;
    Ok(Written { body: answer(&kv), code: 200, warnings: vec![] })
}

/// Whether anything but metadata and status differs (kube bumps `metadata.generation` then).
fn spec_changed<T: ApiObject>(new: &T, old: &T) -> bool {
    let strip = |o: &T| {
        let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(new) != strip(old)
}

/// PATCH: apply a JSON, merge or strategic merge patch to the current object and write the result,
/// retrying on conflict when the patch did not pin a resourceVersion (as kube-apiserver does).
#[allow(clippy::too_many_arguments)] // mirrors the handler's inputs one to one
pub async fn patch<T: ApiObject>(
    state: &ApiState,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
    patch: Bytes,
    patch_type: PatchType,
    part: Part,
    opts: WriteOptions<'_>,
) -> Result<Written, ApiError> {
    let key = resource.key(namespace, name);
    for _attempt in 0..CONFLICT_RETRIES {
        let current = state.store.get(&key).map_err(|e| store_error(resource, name, e))?;
        let Some(current) = current else { return Err(ApiError::not_found(resource, name)) };
        let original: Value = serde_json::from_slice(&answer(&current))
            .map_err(|e| ApiError::internal(format!("stored object does not decode: {e}")))?;
        let patched = apply_patch(resource.kind, &original, &patch, patch_type).map_err(|e| {
            let mut err = ApiError::new(e.status_code(), e.reason(), e.to_string());
            if e.status_code() == 422 {
                err.details = Some(serde_json::json!({ "name": name, "group": resource.group, "kind": resource.kind }));
            }
            err
        })?;
        let pinned = patched["metadata"]["resourceVersion"] != original["metadata"]["resourceVersion"];
        let (obj, warnings) = decode_body::<T>(resource, patched, &[], &opts)?;
        match write_update(state, resource, namespace, name, obj, &current, part, opts, true).await {
            Err(e) if !pinned && lost_race(&e) => continue,
            Ok(w) => return Ok(Written { warnings, ..w }),
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(resource, name))
}

/// How often an unconditional patch or delete re-reads and retries after losing a race to another write.
/// kube-apiserver's `GuaranteedUpdate` retries without a limit; every lost race means another write landed,
/// so the bound is only a guard against a livelock bug, never reached by honest contention.
const CONFLICT_RETRIES: usize = 1000;

/// `DeleteOptions` fields the server honours.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// Seconds before the object is deleted; 0 deletes at once.
    pub grace_period_seconds: Option<i64>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun: ["All"]`.
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Read DeleteOptions from a request body (may be empty; JSON, YAML or protobuf by its content type)
    /// and query parameters.
    pub fn parse(
        content_type: Option<&str>,
        body: &[u8],
        query_grace: Option<i64>,
        dry_run: bool,
    ) -> Result<Self, ApiError> {
        let mut o = DeleteOptions { grace_period_seconds: query_grace, dry_run, ..Default::default() };
        if body.iter().any(|b| !b.is_ascii_whitespace()) {
            let v = crate::codec::parse_body(content_type, body)
                .map_err(|e| ApiError::bad_request(format!("DeleteOptions could not be decoded: {}", e.message)))?;
            if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
                o.grace_period_seconds = Some(g);
            }
            o.uid = v["preconditions"]["uid"].as_str().map(str::to_string);
            o.resource_version = v["preconditions"]["resourceVersion"].as_str().map(str::to_string);
            if v["dryRun"].as_array().is_some_and(|a| a.iter().any(|d| d == "All")) {
                o.dry_run = true;
            }
        }
        Ok(o)
    }
}

/// DELETE: remove an object at once, or mark it for deletion while finalizers remain (or a bound pod
/// terminates gracefully).
pub async fn delete<T: ApiObject>(
    state: &ApiState,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
    options: DeleteOptions,
) -> Result<Written, ApiError> {
    let key = resource.key(namespace, name);
    for _attempt in 0..CONFLICT_RETRIES {
        let Some(current) = state.store.get(&key).map_err(|e| store_error(resource, name, e))? else {
            return Err(ApiError::not_found(resource, name));
        };
        let mut obj: T = decode_stored(&current)?;
        let meta = obj.metadata();
        if let Some(uid) = &options.uid {
            if meta.uid.as_ref() != Some(uid) {
                return Err(ApiError::conflict_because(
                    resource,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta.uid.clone().unwrap_or_default()
                    ),
                ));
            }
        }
        if let Some(rv) = &options.resource_version {
            if *rv != current.mod_revision.to_string() {
                return Err(ApiError::conflict_because(
                    resource,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        current.mod_revision
                    ),
                ));
            }
        }
        admission::admit_delete(resource, &obj)?;
        let has_finalizers = meta.finalizers.as_ref().is_some_and(|f| !f.is_empty()) || admission::held_by_spec(&obj);
        let grace = admission::graceful_deletion_seconds(resource, &obj, options.grace_period_seconds);
        if has_finalizers || grace.is_some() {
            if meta.deletion_timestamp.is_some() && grace.is_none() {
                // Already being deleted: nothing more to do until the finalizers are gone.
                return Ok(Written { body: answer(&current), code: 200, warnings: vec![] });
            }
            admission::mark_deleting(&mut obj);
            let m = obj.metadata_mut();
            let grace_secs = grace.unwrap_or(0);
            let at = jiff::Timestamp::now().as_second() + grace_secs;
            let at = Time(jiff::Timestamp::from_second(at).unwrap_or(jiff::Timestamp::UNIX_EPOCH));
            if m.deletion_timestamp.as_ref().is_none_or(|old| old.0 > at.0) {
                m.deletion_timestamp = Some(at);
                m.deletion_grace_period_seconds = Some(grace_secs);
            }
            let value = encode_for_store(&obj)?;
            if options.dry_run {
                return Ok(Written {
                    body: with_resource_version(&value, current.mod_revision),
                    code: 200,
                    warnings: vec![],
                });
            }
            match state.store.put(key.clone(), value, Precondition::ModRevision(current.mod_revision)).await {
                Ok(kv) => return Ok(Written { body: answer(&kv), code: 200, warnings: vec![] }),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_error(resource, name, e)),
            }
        }
        let uid = obj.metadata().uid.clone();
        if !options.dry_run {
            match state.store.delete(key.clone(), Precondition::ModRevision(current.mod_revision)).await {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_error(resource, name, e)),
            }
        }
        let status = crate::status::success_status(resource, name, uid.as_deref());
        return Ok(Written { body: serde_json::to_vec(&status).unwrap_or_default(), code: 200, warnings: vec![] });
    }
    Err(ApiError::conflict(resource, name))
}

/// POST `pods/<name>/binding`: assign a pod to a node, as kube-apiserver's `BindingREST` does for the
/// scheduler. Only an unassigned pod may be bound; the pod gets the `PodScheduled` condition.
pub async fn bind_pod(
    state: &ApiState,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
    binding: &Value,
) -> Result<Written, ApiError> {
    use k8s_openapi::api::core::v1::{Pod, PodCondition};
    let node = binding["target"]["name"].as_str().unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            "",
            name,
            &[kvol_api::FieldError::required(&kvol_api::FieldPath::new("target").child("name"), "")],
        ));
    }
    if let Some(kind) = binding["target"]["kind"].as_str().filter(|k| !k.is_empty() && *k != "Node") {
        return Err(ApiError::bad_request(format!("only Node may be a binding target, got {kind:?}")));
    }
    let key = resource.key(namespace, name);
    for _attempt in 0..CONFLICT_RETRIES {
        let current = state.store.get(&key).map_err(|e| store_error(resource, name, e))?;
        let Some(current) = current else { return Err(ApiError::not_found(resource, name)) };
        let mut pod: Pod = decode_stored(&current)?;
        if let Some(uid) = binding["metadata"]["uid"].as_str().filter(|u| !u.is_empty()) {
            if pod.metadata.uid.as_deref() != Some(uid) {
                return Err(ApiError::conflict_because(
                    resource,
                    name,
                    "Precondition failed: UID in precondition does not match",
                ));
            }
        }
        let spec = pod.spec.get_or_insert_with(Default::default);
        if let Some(assigned) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict_because(
                resource,
                name,
                &format!("pod {name} is already assigned to node {assigned:?}"),
            ));
        }
        if pod.metadata.deletion_timestamp.is_some() {
            return Err(ApiError::conflict_because(
                resource,
                name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        spec.node_name = Some(node.to_string());
        let status = pod.status.get_or_insert_with(Default::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != "PodScheduled");
        conditions.push(PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            last_transition_time: Some(now()),
            ..Default::default()
        });
        let value = encode_for_store(&pod)?;
        match state.store.put(key.clone(), value, Precondition::ModRevision(current.mod_revision)).await {
            Ok(_) => {
                let status = serde_json::json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 });
                return Ok(Written {
                    body: serde_json::to_vec(&status).unwrap_or_default(),
                    code: 201,
                    warnings: vec![],
                });
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_error(resource, name, e)),
        }
    }
    Err(ApiError::conflict(resource, name))
}
