//! What the three services share: configuration, backend, metadata store and the in-flight set.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::guard::{InFlight, OpGuard};
use crate::store::Store;

/// The driver's shared state.
pub struct Driver {
    /// CSI plugin name (`csi.kvol.io`).
    pub name: String,
    /// This node's id.
    pub node_id: String,
    /// The pool directory.
    pub pool: PathBuf,
    /// The storage backend.
    pub backend: Arc<dyn Backend>,
    /// Volume/snapshot metadata and node records.
    pub store: Store,
    /// One operation per volume.
    pub inflight: InFlight,
    /// Test fail point: hold every mutating operation this long after taking its guard, so tests can
    /// collide two calls deterministically (`KVOL_CSI_TEST_OP_DELAY_MS`).
    pub op_delay: Option<Duration>,
}

impl Driver {
    /// Takes the per-volume guard for `keys` (ABORTED if busy), then waits out the test delay.
    pub async fn begin(&self, keys: &[&str]) -> Result<OpGuard> {
        let guard = self.inflight.try_begin(keys)?;
        if let Some(delay) = self.op_delay {
            tokio::time::sleep(delay).await;
        }
        Ok(guard)
    }
}

/// Runs blocking storage work off the async runtime.
pub async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Task(e.to_string()))?
}

/// `Err(MissingField)` if `value` is empty.
pub fn required<'a>(value: &'a str, field: &'static str) -> Result<&'a str> {
    if value.is_empty() {
        Err(Error::MissingField { field })
    } else {
        Ok(value)
    }
}
