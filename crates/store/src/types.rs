use bytes::Bytes;

/// One stored entry, as etcd's `mvccpb.KeyValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value bytes.
    pub value: Bytes,
    /// The revision that created the key (since its last deletion).
    pub create_revision: i64,
    /// The revision of the last change to the key.
    pub mod_revision: i64,
    /// How many times the key changed since it was created (1 on create).
    pub version: i64,
}

/// What a write requires of the key's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Write unconditionally.
    None,
    /// The key must not exist (create).
    MustNotExist,
    /// The key must exist (any revision).
    MustExist,
    /// The key must exist at exactly this modification revision.
    ModRevision(i64),
}

/// Whether an event is a write or a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The key was created or updated.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change, as a watcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub event_type: EventType,
    /// For a put, the new entry; for a delete, the last value with `mod_revision` set to the delete's revision.
    pub kv: KeyValue,
    /// The entry before the change, if there was one. In history reloaded from disk, a key whose earlier
    /// entry was compacted away gets a stand-in with `version` 0: it existed, and its value is the deleted
    /// value for a delete and unknown (empty) for a put.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

/// Options of a range read.
#[derive(Debug, Clone, Default)]
pub struct RangeOptions {
    /// Start strictly after this key (pagination).
    pub start_after: Option<String>,
    /// Return at most this many entries (0 or `None`: all).
    pub limit: Option<usize>,
}

/// The answer to a range read.
#[derive(Debug, Clone)]
pub struct RangeResult {
    /// The entries, sorted by key.
    pub kvs: Vec<KeyValue>,
    /// The store revision the read reflects.
    pub revision: i64,
    /// Entries left after the last one returned.
    pub remaining: usize,
}
