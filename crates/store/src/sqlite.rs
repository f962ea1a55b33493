//! The embedded backend: SQLite in WAL mode with `synchronous=FULL` for durability, an in-memory copy of the
//! current state and recent history for reads and watches, and one writer thread that group-commits.
//!
//! Why SQLite rather than redb: its WAL + full-sync commit is the most battle-tested crash-safety story there
//! is, the file can be inspected with the `sqlite3` shell when something looks wrong, and group commit removes
//! its one weakness for this workload (one fsync per write).

use crate::memory::State;
use crate::{Error, Event, EventType, KeyValue, Precondition, RangeOptions, RangeResult, Result, Store, Watcher};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use parking_lot::{Mutex, RwLock};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Tuning of the embedded store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How many writes one transaction may carry.
    pub max_batch: usize,
    /// How many events a slow watcher may fall behind before it is dropped (and must relist).
    pub watch_buffer: usize,
    /// History older than this many revisions behind the head is compacted away automatically.
    pub max_history: usize,
    /// How often the history is compacted to what was current one period earlier (kube-apiserver: 5 min).
    pub compaction_interval: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            max_batch: 1024,
            watch_buffer: 16 * 1024,
            max_history: 50_000,
            compaction_interval: Duration::from_secs(300),
        }
    }
}

enum Request {
    Write { key: String, value: Option<Bytes>, precondition: Precondition, reply: oneshot::Sender<Result<KeyValue>> },
    Compact { revision: i64, reply: oneshot::Sender<Result<()>> },
}

struct Shared {
    state: RwLock<State>,
}

/// The embedded, durable store. Dropping it stops the writer after pending writes are committed.
pub struct SqliteStore {
    shared: Arc<Shared>,
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path` and load it. The database and its `-wal` and `-shm`
    /// files are private (0600), also when an older version left them readable.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        make_private(&path)?;
        let conn = Connection::open(&path).map_err(|source| Error::Sqlite { step: "open", source })?;
        // One store per database: the lock is taken now and held until the store closes (exclusive locking
        // mode), so a second store, in this process or another, fails here instead of writing revisions
        // that clash with this one's. A store that is still closing gets a moment to let go.
        conn.busy_timeout(Duration::from_secs(2)).map_err(|source| Error::Sqlite { step: "open", source })?;
        conn.execute_batch("PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT;")
            .map_err(|source| Error::Sqlite { step: "lock the database (is another kvol server using it?)", source })?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             PRAGMA foreign_keys=OFF;
             CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, create_rev INTEGER NOT NULL,
                 mod_rev INTEGER NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS history (rev INTEGER PRIMARY KEY, key TEXT NOT NULL, deleted INTEGER NOT NULL,
                 value BLOB NOT NULL, create_rev INTEGER NOT NULL, version INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )
        .map_err(|source| Error::Sqlite { step: "create schema", source })?;
        let state = load(&conn, &options)?;
        tracing::info!(path = %path.display(), revision = state.revision, keys = state.kvs.len(), "store opened");
        let shared = Arc::new(Shared { state: RwLock::new(state) });
        let (tx, rx) = mpsc::channel();
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("kvol-store-writer".into())
            .spawn(move || Writer { conn, shared: writer_shared, options, compaction_mark: None }.run(rx))
            .map_err(|e| Error::Corrupt(format!("cannot start writer thread: {e}")))?;
        Ok(SqliteStore { shared, requests: Mutex::new(Some(tx)), writer: Mutex::new(Some(writer)), path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop accepting writes, commit what is pending and wait for the writer to finish.
    pub fn close(&self) {
        self.requests.lock().take();
        if let Some(handle) = self.writer.lock().take() {
            let _ = handle.join();
        }
    }

    fn send(&self, request: Request) -> Result<()> {
        match &*self.requests.lock() {
            Some(tx) => tx.send(request).map_err(|_| Error::Closed),
            None => Err(Error::Closed),
        }
    }

    fn write(
        &self,
        key: String,
        value: Option<Bytes>,
        precondition: Precondition,
    ) -> BoxFuture<'static, Result<KeyValue>> {
        let (reply, rx) = oneshot::channel();
        let sent = self.send(Request::Write { key, value, precondition, reply });
        async move {
            sent?;
            rx.await.map_err(|_| Error::Closed)?
        }
        .boxed()
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl Store for SqliteStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.shared.state.read().kvs.get(key).cloned())
    }

    fn range(&self, prefix: &str, options: &RangeOptions) -> Result<RangeResult> {
        Ok(self.shared.state.read().range(prefix, options))
    }

    fn range_at(&self, prefix: &str, options: &RangeOptions, revision: i64) -> Result<RangeResult> {
        self.shared.state.read().range_at(prefix, options, revision)
    }

    fn put(&self, key: String, value: Bytes, precondition: Precondition) -> BoxFuture<'static, Result<KeyValue>> {
        self.write(key, Some(value), precondition)
    }

    fn delete(&self, key: String, precondition: Precondition) -> BoxFuture<'static, Result<KeyValue>> {
        self.write(key, None, precondition)
    }

    fn watch(&self, prefix: &str, after_revision: i64) -> Result<Watcher> {
        self.shared.state.read().watch(prefix, after_revision)
    }

    fn current_revision(&self) -> i64 {
        self.shared.state.read().revision
    }

    fn compacted_revision(&self) -> i64 {
        self.shared.state.read().compacted
    }

    fn compact(&self, revision: i64) -> BoxFuture<'static, Result<()>> {
        let (reply, rx) = oneshot::channel();
        let sent = self.send(Request::Compact { revision, reply });
        async move {
            sent?;
            rx.await.map_err(|_| Error::Closed)?
        }
        .boxed()
    }
}

/// Create the database file 0600 if missing (SQLite gives its `-wal` and `-shm` files the database's mode),
/// and take group and other access away from the three files if they exist.
fn make_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |what: &Path, source| Error::MakePrivate { path: what.to_path_buf(), source };
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| err(path, e))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = PathBuf::from(file);
        match std::fs::metadata(&file) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                let mode = m.permissions().mode() & 0o700;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).map_err(|e| err(&file, e))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(&file, e)),
        }
    }
    Ok(())
}

fn meta_get(conn: &Connection, name: &str) -> Result<i64> {
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0))
        .optional()
        .map(|v| v.unwrap_or(0))
        .map_err(|source| Error::Sqlite { step: "read meta", source })
}

fn load(conn: &Connection, options: &SqliteOptions) -> Result<State> {
    let mut state = State::new(options.watch_buffer);
    state.revision = meta_get(conn, "revision")?;
    state.compacted = meta_get(conn, "compacted")?;
    let sql = |source| Error::Sqlite { step: "load", source };
    let mut stmt = conn.prepare("SELECT key, value, create_rev, mod_rev, version FROM kv").map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(KeyValue {
                key: r.get(0)?,
                value: Bytes::from(r.get::<_, Vec<u8>>(1)?),
                create_revision: r.get(2)?,
                mod_revision: r.get(3)?,
                version: r.get(4)?,
            })
        })
        .map_err(sql)?;
    for kv in rows {
        let kv = kv.map_err(sql)?;
        if kv.mod_revision > state.revision {
            return Err(Error::Corrupt(format!(
                "key {:?} is at revision {} past the store's {}",
                kv.key, kv.mod_revision, state.revision
            )));
        }
        state.kvs.insert(kv.key.clone(), kv);
    }
    let mut stmt = conn
        .prepare("SELECT rev, key, deleted, value, create_rev, version FROM history WHERE rev > ?1 ORDER BY rev")
        .map_err(sql)?;
    let rows = stmt
        .query_map([state.compacted], |r| {
            let deleted: bool = r.get(2)?;
            Ok((
                deleted,
                KeyValue {
                    key: r.get(1)?,
                    value: Bytes::from(r.get::<_, Vec<u8>>(3)?),
                    create_revision: r.get(4)?,
                    mod_revision: r.get(0)?,
                    version: r.get(5)?,
                },
            ))
        })
        .map_err(sql)?;
    let mut last: HashMap<String, KeyValue> = HashMap::new();
    for row in rows {
        let (deleted, kv) = row.map_err(sql)?;
        let prev = match last.get(&kv.key) {
            Some(prev) => Some(prev.clone()),
            // The key's earlier entry predates the history on disk: it existed unless this change created it.
            None if deleted || kv.version > 1 => Some(KeyValue {
                key: kv.key.clone(),
                value: if deleted { kv.value.clone() } else { Bytes::new() },
                create_revision: kv.create_revision,
                mod_revision: 0,
                version: 0,
            }),
            None => None,
        };
        let event_type = if deleted { EventType::Delete } else { EventType::Put };
        if deleted {
            last.remove(&kv.key);
        } else {
            last.insert(kv.key.clone(), kv.clone());
        }
        state.history.push_back(Arc::new(Event { event_type, kv, prev }));
    }
    Ok(state)
}

struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    options: SqliteOptions,
    /// The revision at the last compaction tick; the next tick compacts up to it.
    compaction_mark: Option<(Instant, i64)>,
}

enum Outcome {
    Done(Result<KeyValue>),
    /// Succeeds if the batch commits.
    Pending(KeyValue),
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        loop {
            let first = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(r) => r,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.maybe_compact();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            while batch.len() < self.options.max_batch {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.process(batch);
            self.maybe_compact();
        }
        tracing::debug!("store writer stopped");
    }

    fn process(&mut self, batch: Vec<Request>) {
        let mut writes = Vec::with_capacity(batch.len());
        for request in batch {
            match request {
                Request::Write { key, value, precondition, reply } => writes.push((key, value, precondition, reply)),
                Request::Compact { revision, reply } => {
                    let _ = reply.send(self.compact(revision));
                }
            }
        }
        if writes.is_empty() {
            return;
        }
        // Plan under a read lock: readers go on; only this thread ever takes the write lock.
        let (events, outcomes, revision) = {
            let state = self.shared.state.read();
            let mut overlay: HashMap<&str, Option<KeyValue>> = HashMap::new();
            let mut revision = state.revision;
            let mut events = Vec::new();
            let mut outcomes = Vec::with_capacity(writes.len());
            for (key, value, precondition, _) in &writes {
                let current = match overlay.get(key.as_str()) {
                    Some(v) => v.clone(),
                    None => state.kvs.get(key).cloned(),
                };
                if let Err(e) = check(key, current.as_ref(), *precondition) {
                    outcomes.push(Outcome::Done(Err(e)));
                    continue;
                }
                revision += 1;
                match (value, current) {
                    (Some(value), current) => {
                        let kv = KeyValue {
                            key: key.clone(),
                            value: value.clone(),
                            create_revision: current.as_ref().map_or(revision, |c| c.create_revision),
                            mod_revision: revision,
                            version: current.as_ref().map_or(1, |c| c.version + 1),
                        };
                        overlay.insert(key, Some(kv.clone()));
                        events.push(Event { event_type: EventType::Put, kv: kv.clone(), prev: current });
                        outcomes.push(Outcome::Pending(kv));
                    }
                    (None, Some(current)) => {
                        let kv = KeyValue { mod_revision: revision, ..current.clone() };
                        overlay.insert(key, None);
                        events.push(Event { event_type: EventType::Delete, kv: kv.clone(), prev: Some(current) });
                        outcomes.push(Outcome::Pending(kv));
                    }
                    (None, None) => {
                        revision -= 1;
                        outcomes.push(Outcome::Done(Err(Error::NotFound { key: key.clone() })));
                    }
                }
            }
            (events, outcomes, revision)
        };
        let committed = if events.is_empty() { Ok(()) } else { self.persist(&events, revision) };
        if committed.is_ok() && !events.is_empty() {
            self.shared.state.write().apply(events, revision);
        }
        let failure = committed.err();
        for ((_, _, _, reply), outcome) in writes.into_iter().zip(outcomes) {
            let result = match outcome {
                Outcome::Done(r) => r,
                Outcome::Pending(kv) => match &failure {
                    None => Ok(kv),
                    Some(e) if is_disk_full(e) => Err(Error::Full { key: kv.key }),
                    Some(e) => Err(Error::Corrupt(format!("write of {:?} not committed: {e}", kv.key))),
                },
            };
            // The caller may have gone away; the write stands either way.
            let _ = reply.send(result);
        }
    }

    fn persist(&mut self, events: &[Event], revision: i64) -> rusqlite::Result<()> {
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO kv (key, value, create_rev, mod_rev, version) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value, create_rev = excluded.create_rev,
                     mod_rev = excluded.mod_rev, version = excluded.version",
                )?;
                let mut remove = tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?;
                let mut record = tx.prepare_cached(
                    "INSERT INTO history (rev, key, deleted, value, create_rev, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for e in events {
                    let kv = &e.kv;
                    let deleted = e.event_type == EventType::Delete;
                    if deleted {
                        remove.execute([&kv.key])?;
                    } else {
                        upsert.execute(params![
                            kv.key,
                            &kv.value[..],
                            kv.create_revision,
                            kv.mod_revision,
                            kv.version
                        ])?;
                    }
                    record.execute(params![
                        kv.mod_revision,
                        kv.key,
                        deleted,
                        &kv.value[..],
                        kv.create_revision,
                        kv.version
                    ])?;
                }
                tx.execute(
                    "INSERT INTO meta (name, value) VALUES ('revision', ?1) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    [revision],
                )?;
            }
            tx.commit()
        };
        run(&mut self.conn).inspect_err(|e| {
            if is_disk_full(e) {
                tracing::error!(error = %e, "store commit refused: the database or its disk is full");
            } else {
                tracing::error!(error = %e, "store commit failed");
            }
        })
    }

    fn compact(&mut self, revision: i64) -> Result<()> {
        let current = self.shared.state.read().revision;
        let revision = revision.min(current);
        let sql = |source| Error::Sqlite { step: "compact", source };
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute("DELETE FROM history WHERE rev <= ?1", [revision]).map_err(sql)?;
        tx.execute(
            "INSERT INTO meta (name, value) VALUES ('compacted', ?1) ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)",
            [revision],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.shared.state.write().compact(revision);
        tracing::debug!(revision, "store compacted");
        Ok(())
    }

    /// Keep history for one to two compaction periods, and never more than `max_history` revisions.
    fn maybe_compact(&mut self) {
        let (current, compacted) = {
            let s = self.shared.state.read();
            (s.revision, s.compacted)
        };
        let mut target = compacted;
        let now = Instant::now();
        match self.compaction_mark {
            Some((at, mark)) if now.duration_since(at) >= self.options.compaction_interval => {
                target = target.max(mark);
                self.compaction_mark = Some((now, current));
            }
            None => self.compaction_mark = Some((now, current)),
            _ => {}
        }
        let cap = current - self.options.max_history as i64;
        // Compact in steps of a tenth of the cap so the cap is not re-hit on every write.
        if cap > compacted + (self.options.max_history as i64 / 10).max(1) {
            target = target.max(cap);
        }
        if target > compacted {
            if let Err(e) = self.compact(target) {
                tracing::warn!(error = %e, "automatic compaction failed");
            }
        }
    }
}

/// SQLITE_FULL: no room on the disk (ENOSPC) or past `max_page_count`. The transaction is rolled back.
fn is_disk_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
}

fn check(key: &str, current: Option<&KeyValue>, precondition: Precondition) -> Result<()> {
    match (precondition, current) {
        (Precondition::None, _) => Ok(()),
        (Precondition::MustNotExist, Some(_)) => Err(Error::AlreadyExists { key: key.to_string() }),
        (Precondition::MustNotExist, None) => Ok(()),
        (Precondition::MustExist | Precondition::ModRevision(_), None) => Err(Error::NotFound { key: key.to_string() }),
        (Precondition::MustExist, Some(_)) => Ok(()),
        (Precondition::ModRevision(expected), Some(kv)) if kv.mod_revision != expected => {
            Err(Error::Conflict { key: key.to_string(), expected, actual: kv.mod_revision })
        }
        (Precondition::ModRevision(_), Some(_)) => Ok(()),
    }
}
