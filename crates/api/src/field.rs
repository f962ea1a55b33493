//! Field errors in kube-apiserver's shape (`k8s.io/apimachinery/pkg/util/validation/field`): a type, the
//! field path (`spec.accessModes[0]`), the bad value and a detail. They render the way kube-apiserver renders
//! them, so `kubectl` users read the same messages.

use serde_json::Value;
use std::fmt;

/// The kind of a field error; `reason()` gives the `metav1.CauseType` string kube-apiserver puts in
/// `status.details.causes[].reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// A required field is missing (`FieldValueRequired`).
    Required,
    /// A value is malformed or out of range (`FieldValueInvalid`).
    Invalid,
    /// A value is not one of the supported values (`FieldValueNotSupported`).
    NotSupported,
    /// A value must be unique but is repeated (`FieldValueDuplicate`).
    Duplicate,
    /// A referenced value does not exist (`FieldValueNotFound`).
    NotFound,
    /// The field may not be set or changed (`FieldValueForbidden`).
    Forbidden,
    /// A value is too long (`FieldValueTooLong`).
    TooLong,
    /// A list has too many items (`FieldValueTooMany`).
    TooMany,
    /// The server failed in an unexpected way (`InternalError`).
    Internal,
}

impl ErrorType {
    /// The `metav1.CauseType` string.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
        }
    }

    /// The words kube-apiserver uses for the type in a message.
    pub fn phrase(self) -> &'static str {
        match self {
            ErrorType::Required => "Required value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::NotFound => "Not found",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
        }
    }
}

/// A path to a field, built up as validation descends (`FieldPath::new("spec").child("accessModes").index(0)`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldPath(String);

impl FieldPath {
    /// A path starting at the top-level field `name`.
    pub fn new(name: &str) -> Self {
        FieldPath(name.to_string())
    }

    /// The path to a child field.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            FieldPath(name.to_string())
        } else {
            FieldPath(format!("{}.{name}", self.0))
        }
    }

    /// The path to the `i`th item of a list.
    pub fn index(&self, i: usize) -> Self {
        FieldPath(format!("{}[{i}]", self.0))
    }

    /// The path to the entry `key` of a map.
    pub fn key(&self, key: &str) -> Self {
        FieldPath(format!("{}[{key}]", self.0))
    }

    /// The path as kube-apiserver prints it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One validation error.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// What kind of error.
    pub error_type: ErrorType,
    /// The field, e.g. `spec.capacity`.
    pub field: String,
    /// The offending value, when there is one to show.
    pub bad_value: Option<Value>,
    /// Extra explanation; for `NotSupported`, the supported values.
    pub detail: String,
}

impl FieldError {
    fn make(error_type: ErrorType, path: &FieldPath, bad_value: Option<Value>, detail: impl Into<String>) -> Self {
        FieldError { error_type, field: path.to_string(), bad_value, detail: detail.into() }
    }

    /// `field: Required value[: detail]`.
    pub fn required(path: &FieldPath, detail: impl Into<String>) -> Self {
        Self::make(ErrorType::Required, path, None, detail)
    }

    /// `field: Invalid value: <value>: detail`.
    pub fn invalid(path: &FieldPath, value: impl Into<Value>, detail: impl Into<String>) -> Self {
        Self::make(ErrorType::Invalid, path, Some(value.into()), detail)
    }

    /// `field: Unsupported value: <value>: supported values: "a", "b"`.
    pub fn not_supported(path: &FieldPath, value: impl Into<Value>, supported: &[&str]) -> Self {
        let list = supported.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
        Self::make(ErrorType::NotSupported, path, Some(value.into()), format!("supported values: {list}"))
    }

    /// `field: Duplicate value: <value>`.
    pub fn duplicate(path: &FieldPath, value: impl Into<Value>) -> Self {
        Self::make(ErrorType::Duplicate, path, Some(value.into()), "")
    }

    /// `field: Not found: <value>`.
    pub fn not_found(path: &FieldPath, value: impl Into<Value>) -> Self {
        Self::make(ErrorType::NotFound, path, Some(value.into()), "")
    }

    /// `field: Forbidden: detail`.
    pub fn forbidden(path: &FieldPath, detail: impl Into<String>) -> Self {
        Self::make(ErrorType::Forbidden, path, None, detail)
    }

    /// `field: Too long: may not be more than N bytes`.
    pub fn too_long(path: &FieldPath, max: usize) -> Self {
        Self::make(ErrorType::TooLong, path, None, format!("may not be more than {max} bytes"))
    }

    /// `field: Too many: N: must have at most M items`.
    pub fn too_many(path: &FieldPath, actual: usize, max: usize) -> Self {
        Self::make(ErrorType::TooMany, path, Some(actual.into()), format!("must have at most {max} items"))
    }

    /// The message without the field: what kube-apiserver puts in `causes[].message`'s tail.
    pub fn body(&self) -> String {
        let mut s = self.error_type.phrase().to_string();
        match self.error_type {
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal => {}
            _ => {
                if let Some(v) = &self.bad_value {
                    s.push_str(": ");
                    s.push_str(&render_value(v));
                }
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

/// How much of a bad value an error shows. kube-apiserver shows values whole (and omits them only for
/// `Too long`); kvol cuts them here so that a huge invalid value cannot make a huge answer.
pub const MAX_SHOWN_VALUE_BYTES: usize = 256;

/// How many distinct errors a 422 lists, in its message and in its causes. kube-apiserver lists them all; a
/// request with 20,000 bad labels made a 22 MB answer, so kvol lists this many and counts the rest.
pub const MAX_LISTED_ERRORS: usize = 100;

/// Values print as Go's `%#v` would for the simple cases kube-apiserver shows: strings quoted, numbers bare.
/// Longer than [`MAX_SHOWN_VALUE_BYTES`], they are cut, saying how long they were.
fn render_value(v: &Value) -> String {
    let full = match v {
        Value::String(s) if s.len() > MAX_SHOWN_VALUE_BYTES => {
            let cut = (0..=MAX_SHOWN_VALUE_BYTES).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
            return format!("{:?}... (truncated, {} bytes)", &s[..cut], s.len());
        }
        Value::String(s) => return format!("{s:?}"),
        Value::Null => return "null".to_string(),
        other => other.to_string(),
    };
    if full.len() <= MAX_SHOWN_VALUE_BYTES {
        return full;
    }
    let cut = (0..=MAX_SHOWN_VALUE_BYTES).rev().find(|i| full.is_char_boundary(*i)).unwrap_or(0);
    format!("{}... (truncated, {} bytes)", &full[..cut], full.len())
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.body())
        } else {
            write!(f, "{}: {}", self.field, self.body())
        }
    }
}

/// All errors found in one object.
pub type ErrorList = Vec<FieldError>;

/// kube-apiserver's `NewInvalid` message: `PersistentVolume "pv1" is invalid: spec.capacity: Required value`,
/// or `... is invalid: [a, b]` for several errors.
///
/// Identical errors are listed once (as kube's `ToAggregate` does), and no more than [`MAX_LISTED_ERRORS`]:
/// `... is invalid: [a, b, ..., and 19900 more errors]`.
pub fn invalid_message(kind: &str, name: &str, errors: &[FieldError]) -> String {
    let (listed, more) = distinct_errors(errors);
    let mut texts: Vec<String> = listed.iter().map(|e| e.to_string()).collect();
    if more > 0 {
        texts.push(format!("and {more} more errors"));
    }
    match texts.as_slice() {
        [one] => format!("{kind} {name:?} is invalid: {one}"),
        many => format!("{kind} {name:?} is invalid: [{}]", many.join(", ")),
    }
}

/// The errors a 422 lists: each distinct error once, at most [`MAX_LISTED_ERRORS`] of them, and how many
/// distinct ones are left out.
pub fn distinct_errors(errors: &[FieldError]) -> (Vec<&FieldError>, usize) {
    let mut seen = std::collections::HashSet::new();
    let mut listed = Vec::new();
    let mut more = 0;
    for e in errors {
        if !seen.insert(e.to_string()) {
            continue;
        }
        if listed.len() < MAX_LISTED_ERRORS {
            listed.push(e);
        } else {
            more += 1;
        }
    }
    (listed, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_error_like_kube_apiserver() {
        let e = FieldError::required(&FieldPath::new("spec").child("capacity"), "");
        assert_eq!(
            invalid_message("PersistentVolume", "pv1", &[e]),
            r#"PersistentVolume "pv1" is invalid: spec.capacity: Required value"#
        );
    }

    #[test]
    fn long_values_are_cut_and_many_errors_are_counted_not_listed() {
        let path = FieldPath::new("metadata").child("labels");
        let long = FieldError::invalid(&path, "é".repeat(1000), "bad");
        let shown = long.to_string();
        assert!(shown.len() < MAX_SHOWN_VALUE_BYTES + 100, "{shown}");
        assert!(shown.ends_with("... (truncated, 2000 bytes): bad"), "{shown}");
        let errors: Vec<FieldError> =
            (0..20_000).map(|i| FieldError::invalid(&path, format!("bad key {i}"), "a qualified name")).collect();
        let message = invalid_message("ConfigMap", "x", &errors);
        assert!(message.len() < 100 * 80, "{} bytes", message.len());
        assert!(message.starts_with(r#"ConfigMap "x" is invalid: [metadata.labels: Invalid value: "bad key 0""#));
        assert!(message.ends_with(", and 19900 more errors]"), "{}", &message[message.len() - 60..]);
        let same = vec![FieldError::required(&path, ""); 3];
        assert_eq!(
            invalid_message("ConfigMap", "x", &same),
            r#"ConfigMap "x" is invalid: metadata.labels: Required value"#
        );
    }

    #[test]
    fn renders_several_errors_in_brackets() {
        let p = FieldPath::new("spec").child("accessModes").index(0);
        let a = FieldError::not_supported(&p, "Sometimes", &["ReadOnlyMany", "ReadWriteOnce"]);
        let b = FieldError::invalid(&FieldPath::new("metadata").child("name"), "A_b", "a lowercase RFC 1123 subdomain");
        assert_eq!(
            invalid_message("PersistentVolume", "x", &[a, b]),
            r#"PersistentVolume "x" is invalid: [spec.accessModes[0]: Unsupported value: "Sometimes": supported values: "ReadOnlyMany", "ReadWriteOnce", metadata.name: Invalid value: "A_b": a lowercase RFC 1123 subdomain]"#
        );
    }
}
