//! PATCH bodies applied to stored objects: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and
//! Kubernetes' strategic merge patch, as kube-apiserver's `handlers/patch.go` applies them.
//!
//! These are pure functions on `serde_json::Value`: the HTTP layer reads the stored object, calls
//! [`apply_patch`], then decodes, validates and stores the result like an update. Keeping the patch
//! step free of I/O and types lets it be tested exhaustively and reused by the CLI. Errors carry the
//! HTTP status class kube-apiserver gives them ([`PatchError::status_code`]) and kube's wording.

mod schema;
mod strategic;

use serde_json::Value;

/// kube-apiserver's cap on the operations of one JSON patch (`maxJSONPatchOperations`).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The three patch formats kube-apiserver accepts for typed objects, named by their content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json`: a list of RFC 6902 operations.
    Json,
    /// `application/merge-patch+json`: an RFC 7386 merge patch.
    Merge,
    /// `application/strategic-merge-patch+json`: Kubernetes' strategic merge patch (kubectl's default).
    StrategicMerge,
}

impl PatchType {
    /// The patch type of a `Content-Type` header value, ignoring parameters such as `; charset=utf-8`
    /// (kube-apiserver cuts at the first `;`). `None` for any other media type: kube answers 415.
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let media = ct.split(';').next().unwrap_or_default().trim();
        match media.to_ascii_lowercase().as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            _ => None,
        }
    }

    /// The content type naming this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
        }
    }
}

/// Why a patch could not be applied. Each variant is the step that failed; [`status_code`] and
/// [`reason`] give the `metav1.Status` code and reason kube-apiserver answers with, and the
/// `Display` text is kube's message. [`detail`] adds what kube keeps to itself.
///
/// [`status_code`]: PatchError::status_code
/// [`reason`]: PatchError::reason
/// [`detail`]: PatchError::detail
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch body is not the JSON its patch type needs (400 BadRequest).
    #[error("{message}")]
    DecodePatch {
        /// The patch type being decoded.
        patch_type: PatchType,
        /// The decoder's complaint, in kube's words where they differ from serde's.
        message: String,
    },
    /// A JSON patch with more operations than [`MAX_JSON_PATCH_OPERATIONS`] (413).
    #[error("Request entity too large: The allowed maximum operations in a JSON patch is {max}, got {count}")]
    TooManyOperations {
        /// Operations in the patch.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A JSON patch operation does not apply to the object: a missing path, a failed `test`
    /// (422 Invalid; kube's message hides which, [`PatchError::detail`] says).
    #[error("the server rejected our request due to an error in our request")]
    ApplyJsonPatch {
        /// What failed, in the words of the Go json-patch library kube uses.
        detail: String,
        /// The json-patch crate's error.
        #[source]
        source: json_patch::PatchError,
    },
    /// A strategic merge patch is malformed: a bad directive or parallel list (400 BadRequest).
    #[error("{message}")]
    StrategicPatchFormat {
        /// kube's message (from `mergepatch`'s errors).
        message: String,
    },
    /// A strategic merge patch cannot merge into this object: lists of lists, a missing merge key,
    /// mixed element types (422 Invalid).
    #[error("the server rejected our request due to an error in our request")]
    MergeStrategic {
        /// What failed, in `strategicpatch`'s words.
        detail: String,
    },
    /// The patched document is not a JSON object, so no kind can be read from it (422 Invalid).
    #[error(" \"\" is invalid: patch: Invalid value: {patched:?}: couldn't get version/kind; json parse error: json: cannot unmarshal {found} into Go value of type struct {{ APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }}")]
    DecodePatched {
        /// The patched document, serialized.
        patched: String,
        /// The JSON type found instead of an object (`array`, `string` …).
        found: &'static str,
    },
}

/// `Result` with [`PatchError`].
pub type Result<T, E = PatchError> = std::result::Result<T, E>;

impl PatchError {
    /// The HTTP status kube-apiserver answers with: 400, 413 or 422.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::DecodePatch { .. } | PatchError::StrategicPatchFormat { .. } => 400,
            PatchError::TooManyOperations { .. } => 413,
            PatchError::ApplyJsonPatch { .. }
            | PatchError::MergeStrategic { .. }
            | PatchError::DecodePatched { .. } => 422,
        }
    }

    /// The `metav1.Status` reason matching [`PatchError::status_code`].
    pub fn reason(&self) -> &'static str {
        match self.status_code() {
            400 => "BadRequest",
            413 => "RequestEntityTooLarge",
            _ => "Invalid",
        }
    }

    /// The specific failure behind a generic kube message, for a `details.causes` entry or a log.
    pub fn detail(&self) -> Option<&str> {
        match self {
            PatchError::ApplyJsonPatch { detail, .. } | PatchError::MergeStrategic { detail } => Some(detail),
            _ => None,
        }
    }
}

/// Applies `patch` (the request body) of type `ty` to `original`, an object of kind `kind`
/// (`Pod`, `PersistentVolume` …; the kind only matters for strategic merge patch). Returns the
/// patched object; `original` is untouched. Never panics, whatever the input.
pub fn apply_patch(kind: &str, original: &Value, patch: &[u8], ty: PatchType) -> Result<Value> {
    let patched = match ty {
        PatchType::Json => apply_json_patch(original, patch)?,
        PatchType::Merge => apply_merge_patch(original, patch)?,
        PatchType::StrategicMerge => apply_strategic_merge_patch(kind, original, patch)?,
    };
    if !patched.is_object() {
        return Err(PatchError::DecodePatched { patched: patched.to_string(), found: json_type(&patched) });
    }
    Ok(patched)
}

/// The name Go's `encoding/json` gives a JSON value's type in "cannot unmarshal X" errors.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn apply_json_patch(original: &Value, body: &[u8]) -> Result<Value> {
    let decode_error = |message: String| PatchError::DecodePatch { patch_type: PatchType::Json, message };
    let raw: Value = serde_json::from_slice(body).map_err(|e| decode_error(e.to_string()))?;
    if !raw.is_array() {
        return Err(decode_error(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
            json_type(&raw)
        )));
    }
    let ops: json_patch::Patch = serde_json::from_value(raw).map_err(|e| decode_error(e.to_string()))?;
    if ops.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations { count: ops.0.len(), max: MAX_JSON_PATCH_OPERATIONS });
    }
    let mut doc = original.clone();
    // `patch_unsafe` leaves `doc` half-patched on error, which is fine on a copy, and unlike
    // `json_patch::patch` has no undo step that could panic.
    json_patch::patch_unsafe(&mut doc, &ops.0)
        .map_err(|source| PatchError::ApplyJsonPatch { detail: json_patch_detail(&ops, &source), source })?;
    Ok(doc)
}

/// The failure in the words of `gopkg.in/evanphx/json-patch.v4`, which kube-apiserver uses.
fn json_patch_detail(ops: &json_patch::Patch, err: &json_patch::PatchError) -> String {
    use json_patch::{PatchErrorKind, PatchOperation};
    let op = ops.0.get(err.operation);
    let name = match op {
        Some(PatchOperation::Add(_)) => "add",
        Some(PatchOperation::Remove(_)) => "remove",
        Some(PatchOperation::Replace(_)) => "replace",
        Some(PatchOperation::Move(_)) => "move",
        Some(PatchOperation::Copy(_)) => "copy",
        Some(PatchOperation::Test(_)) | None => "test",
    };
    let path = err.path.as_str();
    match &err.kind {
        PatchErrorKind::TestFailed => format!("testing value {path} failed: test failed"),
        PatchErrorKind::InvalidFromPointer => {
            let from = match op {
                Some(PatchOperation::Move(m)) => m.from.as_str().to_string(),
                Some(PatchOperation::Copy(c)) => c.from.as_str().to_string(),
                _ => String::new(),
            };
            format!("{name} operation does not apply: doc is missing from path: {from}: missing value")
        }
        PatchErrorKind::CannotMoveInsideItself => {
            format!("{name} operation does not apply: cannot move {path} into itself")
        }
        _ => format!("{name} operation does not apply: doc is missing path: \"{path}\": missing value"),
    }
}

fn apply_merge_patch(original: &Value, body: &[u8]) -> Result<Value> {
    // evanphx's MergePatch answers ErrBadJSONPatch for invalid JSON, `null` and scalars; an array
    // replaces the document (and then fails to decode as an object).
    let bad = || PatchError::DecodePatch { patch_type: PatchType::Merge, message: "Invalid JSON Patch".to_string() };
    let patch: Value = serde_json::from_slice(body).map_err(|_| bad())?;
    match patch {
        Value::Object(_) => {
            let mut doc = original.clone();
            json_patch::merge(&mut doc, &patch);
            Ok(doc)
        }
        Value::Array(items) => Ok(Value::Array(items.into_iter().map(prune_nulls).collect())),
        _ => Err(bad()),
    }
}

/// evanphx's `pruneAryNulls`: a merge patch that is an array becomes the document, minus nulls in
/// its objects.
fn prune_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, prune_nulls(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(prune_nulls).collect()),
        other => other,
    }
}

fn apply_strategic_merge_patch(kind: &str, original: &Value, body: &[u8]) -> Result<Value> {
    let decode_error = |message: String| PatchError::DecodePatch { patch_type: PatchType::StrategicMerge, message };
    let patch: Value = serde_json::from_slice(body).map_err(|e| decode_error(e.to_string()))?;
    let patch = match patch {
        Value::Object(m) => m,
        // Go unmarshals `null` into a map as a no-op.
        Value::Null => serde_json::Map::new(),
        other => {
            return Err(decode_error(format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                json_type(&other)
            )))
        }
    };
    let Value::Object(original) = original.clone() else {
        return Err(PatchError::StrategicPatchFormat { message: "invalid JSON document".to_string() });
    };
    let schema = schema::Schema::for_kind(kind);
    Ok(Value::Object(strategic::merge(original, patch, &schema)?))
}

#[cfg(test)]
mod tests;
