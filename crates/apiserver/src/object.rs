//! The typed side of the server: one trait, [`ApiObject`], that every served type implements (by macro), so
//! the generic create/update code calls defaulting, validation, status handling and quantity checks without
//! knowing the type; and [`dispatch!`], which turns a resource's kind into a call monomorphized for its type.

use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};
use k8s_openapi::api::storage::v1::{CSIDriver, CSINode, StorageClass, VolumeAttachment};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kvol_api::defaults::ApplyDefaults;
use kvol_api::quantity::Quantities;
use kvol_api::strategy::{PrepareForCreate, PrepareForUpdate};
use kvol_api::validation::Validate;
use kvol_api::ErrorList;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What the generic handlers need of a served type.
pub trait ApiObject:
    k8s_openapi::Resource
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + Serialize
    + DeserializeOwned
    + Clone
    + Send
    + Sync
    + 'static
{
    /// Defaulting, as kube-apiserver does on every write.
    fn default_fields(&mut self);
    /// Validation of a new object.
    fn validate_new(&self) -> ErrorList;
    /// Validation of an update.
    fn validate_change(&self, old: &Self) -> ErrorList;
    /// Reset what a client may not set on create (status) and set the initial status.
    fn prepare_create(&mut self);
    /// On an update of the main resource: keep what only the status subresource may change.
    fn prepare_update(&mut self, old: &Self);
    /// On an update of the status subresource: keep everything of the old object but the status.
    fn prepare_status_update(&mut self, old: &Self);
    /// The first quantity that does not parse, with its field path.
    fn bad_quantity(&self) -> Option<(String, String)>;
}

macro_rules! api_object {
    ($t:ty, quantities: $q:tt) => {
        impl ApiObject for $t {
            fn default_fields(&mut self) {
                ApplyDefaults::apply_defaults(self)
            }
            fn validate_new(&self) -> ErrorList {
                Validate::validate(self)
            }
            fn validate_change(&self, old: &Self) -> ErrorList {
                Validate::validate_update(self, old)
            }
            fn prepare_create(&mut self) {
                PrepareForCreate::prepare_for_create(self)
            }
            fn prepare_update(&mut self, old: &Self) {
                PrepareForUpdate::prepare_for_update(self, old)
            }
            fn prepare_status_update(&mut self, old: &Self) {
                PrepareForUpdate::prepare_for_status_update(self, old)
            }
            fn bad_quantity(&self) -> Option<(String, String)> {
                api_object!(@quantities $q, self)
            }
        }
    };
    (@quantities yes, $s:ident) => { $s.check_quantities().err().map(|(path, e)| (path, e.to_string())) };
    (@quantities no, $s:ident) => { { let _ = $s; None } };
}

api_object!(PersistentVolume, quantities: yes);
api_object!(PersistentVolumeClaim, quantities: yes);
api_object!(Pod, quantities: yes);
api_object!(ConfigMap, quantities: no);
api_object!(Secret, quantities: no);
api_object!(Node, quantities: yes);
api_object!(Namespace, quantities: no);
api_object!(Event, quantities: no);
api_object!(StorageClass, quantities: no);
api_object!(VolumeAttachment, quantities: yes);
api_object!(CSIDriver, quantities: no);
api_object!(CSINode, quantities: no);

/// Call `$($f)::+::<T>($args...)` with `T` the type of `$kind` (a `&str`), or evaluate `$otherwise`.
#[macro_export]
macro_rules! dispatch {
    ($kind:expr, $($f:ident)::+ ( $($arg:expr),* $(,)? ), $otherwise:expr) => {{
        use k8s_openapi::api::core::v1 as core;
        use k8s_openapi::api::storage::v1 as storage;
        match $kind {
            "PersistentVolume" => $($f)::+::<core::PersistentVolume>($($arg),*).await,
            "PersistentVolumeClaim" => $($f)::+::<core::PersistentVolumeClaim>($($arg),*).await,
            "Pod" => $($f)::+::<core::Pod>($($arg),*).await,
            "ConfigMap" => $($f)::+::<core::ConfigMap>($($arg),*).await,
            "Secret" => $($f)::+::<core::Secret>($($arg),*).await,
            "Node" => $($f)::+::<core::Node>($($arg),*).await,
            "Namespace" => $($f)::+::<core::Namespace>($($arg),*).await,
            "Event" => $($f)::+::<core::Event>($($arg),*).await,
            "StorageClass" => $($f)::+::<storage::StorageClass>($($arg),*).await,
            "VolumeAttachment" => $($f)::+::<storage::VolumeAttachment>($($arg),*).await,
            "CSIDriver" => $($f)::+::<storage::CSIDriver>($($arg),*).await,
            "CSINode" => $($f)::+::<storage::CSINode>($($arg),*).await,
            _ => $otherwise,
        }
    }};
}
