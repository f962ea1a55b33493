//! Validation as kube-apiserver does it for the types kvol serves (`pkg/apis/core/validation`,
//! `pkg/apis/storage/validation`). Entry points take typed `k8s-openapi` objects and return every error
//! found, with kube-apiserver's field paths and texts.

use crate::field::ErrorList;

/// Validation of one object type, on create and on update.
pub trait Validate {
    /// Errors in a new object (after defaulting).
    fn validate(&self) -> ErrorList;
    /// Errors in an update of `old` to `self`, including changes to immutable fields.
    fn validate_update(&self, old: &Self) -> ErrorList {
        let _ = old;
        self.validate()
    }
}
