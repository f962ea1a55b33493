use thiserror::Error;

/// What went wrong in a store operation.
#[derive(Debug, Error)]
pub enum Error {
    /// A create found the key already present.
    #[error("key {key:?} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// An update or delete found no such key.
    #[error("key {key:?} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// An update or delete expected another modification revision.
    #[error("key {key:?} is at revision {actual}, not {expected}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: i64,
        /// The revision the key is at.
        actual: i64,
    },
    /// A watch asked for history that compaction removed.
    #[error("revision {requested} has been compacted (oldest available is {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The compaction point.
        compacted: i64,
    },
    /// A watch asked for a revision the store has not reached.
    #[error("revision {requested} is in the future (current is {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: i64,
        /// The current revision.
        current: i64,
    },
    /// A watcher fell too far behind the write stream and was dropped.
    #[error("watcher fell behind by {0} events")]
    WatcherLagged(u64),
    /// Opening or writing the SQLite database failed.
    #[error("sqlite {step} failed")]
    Sqlite {
        /// The step, e.g. "commit".
        step: &'static str,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The disk (or file system) holding the database is full: the write was rolled back and nothing of it
    /// was applied. It can be retried once space is freed.
    #[error("store is full: write of {key:?} not committed: the database or its disk is full")]
    Full {
        /// The key written.
        key: String,
    },
    /// The database files could not be created or made private (mode 0600).
    #[error("making {path} private: {source}")]
    MakePrivate {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The database holds something this version cannot read.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The store was shut down.
    #[error("store is closed")]
    Closed,
}

/// Result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
