//! kvol's object model: the Kubernetes types kvol serves (re-exported from `k8s-openapi`, never redefined),
//! the table of resources the API server knows, and the rules kube-apiserver applies to them: validation,
//! defaulting, quantities, label and field selectors, and the well-known annotation, label and finalizer names.
//!
//! Design decision: everything here is pure (no I/O, no async), so the API server, the controllers, the node
//! agent and the CLI share one definition of "a valid PersistentVolume" and of what `storageclass.kubernetes.io/
//! is-default-class` is called.

pub mod defaults;
pub mod field;
pub mod names;
pub mod quantity;
pub mod resources;
pub mod selector;
pub mod strategy;
pub mod validation;

pub use defaults::ApplyDefaults;
pub use field::{ErrorList, ErrorType, FieldError, FieldPath};
pub use k8s_openapi;
pub use quantity::{parse_quantity, ParsedQuantity, Quantities, QuantityError};
pub use resources::{Resource, RESOURCES};
pub use strategy::{PrepareForCreate, PrepareForUpdate};
pub use validation::Validate;
