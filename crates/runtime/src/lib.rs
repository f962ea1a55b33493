//! The controller runtime kvol's control loops share: the controllers, the CSI sidecar roles and the node
//! agent take work from one [`WorkQueue`] and retry with one [`Backoff`], as every Kubernetes controller
//! does with client-go's rate-limited work queue.
//!
//! Design decision: the queue holds keys, never objects. A worker reads the object it is given the key of
//! (from a cache or the API server), so a key queued many times is processed once, with the newest state.

#![warn(missing_docs)]

mod backoff;
mod queue;

pub use backoff::Backoff;
pub use queue::WorkQueue;
