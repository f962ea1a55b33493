//! The controller runtime kvol's control loops share: the controllers, the CSI sidecar roles and the node
//! agent take work from one [`WorkQueue`] and retry with one [`Backoff`], as every Kubernetes controller
//! does with client-go's rate-limited work queue, and report with one event [`Recorder`].
//!
//! Design decision: the queue holds keys, never objects. A worker reads the object it is given the key of
//! (from a cache or the API server), so a key queued many times is processed once, with the newest state.

#![warn(missing_docs)]

mod backoff;
pub mod events;
mod queue;

pub use backoff::Backoff;
pub use events::{EventType, Recorder, Reporter};
pub use queue::WorkQueue;
