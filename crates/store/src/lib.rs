//! A revisioned key-value store with watch, on etcd's model: one global revision that every write advances,
//! writes guarded by the expected modification revision, range reads by prefix, watches that resume from a
//! revision, and compaction after which older revisions are refused (so clients relist).
//!
//! Callers hold an `Arc<dyn Store>`; the embedded backend ([`SqliteStore`]) keeps the current state and the
//! recent history in memory for reads and watches, and makes every write durable in SQLite (WAL mode,
//! `synchronous=FULL`) before acknowledging it. Concurrent writes are group-committed: one writer thread
//! drains all pending writes into one transaction and one fsync, which is how a single SQLite file sustains
//! thousands of acknowledged writes per second. An etcd v3 backend implements the same trait.

mod error;
mod memory;
mod sqlite;
mod types;
mod watch;

pub use error::{Error, Result};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use types::{Event, EventType, KeyValue, Precondition, RangeOptions, RangeResult};
pub use watch::Watcher;

use futures::future::BoxFuture;

/// The store interface every backend implements. All methods are safe to call concurrently.
pub trait Store: Send + Sync {
    /// The current value of `key`, if any.
    fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// The keys under `prefix` (sorted), with the revision the read reflects.
    fn range(&self, prefix: &str, options: &RangeOptions) -> Result<RangeResult>;

    /// [`Store::range`] as the keys were at an earlier `revision` (etcd's `RangeRequest.revision`), so that a
    /// list read in pages is one consistent snapshot. Fails with [`Error::Compacted`] when that state can no
    /// longer be rebuilt, and [`Error::FutureRevision`] for a revision not reached yet.
    fn range_at(&self, prefix: &str, options: &RangeOptions, revision: i64) -> Result<RangeResult>;

    /// Write `value` at `key` if `precondition` holds; resolves once the write is durable.
    fn put(&self, key: String, value: bytes::Bytes, precondition: Precondition)
        -> BoxFuture<'static, Result<KeyValue>>;

    /// Delete `key` if `precondition` holds; resolves with the deleted entry once the delete is durable.
    fn delete(&self, key: String, precondition: Precondition) -> BoxFuture<'static, Result<KeyValue>>;

    /// Watch changes under `prefix` with revisions greater than `after_revision`. Fails with
    /// [`Error::Compacted`] when that history is gone.
    fn watch(&self, prefix: &str, after_revision: i64) -> Result<Watcher>;

    /// The revision of the last acknowledged write.
    fn current_revision(&self) -> i64;

    /// The oldest revision a watch can still start after.
    fn compacted_revision(&self) -> i64;

    /// Drop history at and before `revision`.
    fn compact(&self, revision: i64) -> BoxFuture<'static, Result<()>>;
}
