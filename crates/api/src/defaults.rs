//! Defaulting as kube-apiserver does it (`pkg/apis/core/v1/defaults.go`, `pkg/apis/storage/v1/defaults.go`).

/// Fill in the fields kube-apiserver defaults on create and update.
pub trait ApplyDefaults {
    /// Set every defaulted field that is unset.
    fn apply_defaults(&mut self);
}
