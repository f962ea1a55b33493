//! Watch: a stream of `{"type": ..., "object": ...}` lines from a resourceVersion, with kube-apiserver's
//! semantics: initial ADDED events when no version is given, selector-aware ADDED/MODIFIED/DELETED
//! transitions, bookmarks, an ERROR event with 410 Expired for a compacted version, and a timeout.

use crate::codec::Output;
use crate::read::{selected, ListOptions};
use crate::registry::answer;
use crate::status::ApiError;
use crate::table::IncludeObject;
use crate::ApiState;
use bytes::Bytes;
use futures::FutureExt;
use kvol_api::Resource;
use kvol_store::{Event, EventType, KeyValue, RangeOptions, Store, Watcher};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Watch parameters beyond the list options.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `timeoutSeconds`, or the server's default.
    pub timeout: Duration,
    /// `sendInitialEvents`.
    pub send_initial_events: bool,
    /// Table or JSON objects.
    pub output: Output,
    /// What a Table row carries.
    pub include_object: IncludeObject,
    /// The watcher's byte budget.
    pub budget: WatchBudget,
}

struct Encoder {
    resource: &'static Resource,
    options: ListOptions,
    output: Output,
    include_object: IncludeObject,
    sent_columns: bool,
}

impl Encoder {
    fn decode(kv: &KeyValue) -> Option<Value> {
        serde_json::from_slice(&answer(kv)).ok()
    }

    /// One watch line, or `None` when the change is invisible through the selectors.
    fn line(&mut self, event: &Event) -> Option<Vec<u8>> {
        let filters = self.options.filters();
        let kind = self.resource.kind;
        let (event_type, object) = match event.event_type {
            EventType::Delete => {
                let v = if filters || self.output != Output::Json { Some(Self::decode(&event.kv)?) } else { None };
                if filters && !selected(kind, v.as_ref()?, &self.options) {
                    return None;
                }
                ("DELETED", v)
            }
            EventType::Put if !filters => ("", None),
            EventType::Put => {
                let now = Self::decode(&event.kv)?;
                // A previous entry whose value is unknown (compacted before a restart) may have been selected:
                // better a DELETED the client can ignore than a departure it never hears of.
                let before = event
                    .prev
                    .as_ref()
                    .is_some_and(|p| Self::decode(p).is_none_or(|p| selected(kind, &p, &self.options)));
                match (before, selected(kind, &now, &self.options)) {
                    (false, false) => return None,
                    (false, true) => ("ADDED", Some(now)),
                    (true, true) => ("MODIFIED", Some(now)),
                    (true, false) => ("DELETED", Some(now)),
                }
            }
        };
        let event_type = match (event_type, event.event_type) {
            ("", _) if event.prev.is_none() => "ADDED",
            ("", _) => "MODIFIED",
            (t, _) => t,
        };
        self.encode(event_type, &event.kv, object)
    }

    fn encode(&mut self, event_type: &str, kv: &KeyValue, object: Option<Value>) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(kv.value.len() + 48);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(event_type.as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        if self.output == Output::Table {
            let obj = match object {
                Some(o) => o,
                None => Self::decode(kv)?,
            };
            let mut table =
                crate::table::table(self.resource.kind, &[obj], jiff::Timestamp::now(), self.include_object);
            if self.sent_columns {
                table["columnDefinitions"] = json!([]);
            }
            self.sent_columns = true;
            table["metadata"] = json!({ "resourceVersion": kv.mod_revision.to_string() });
            serde_json::to_writer(&mut out, &table).ok()?;
        } else if self.output == Output::Metadata {
            let obj = match object {
                Some(o) => o,
                None => Self::decode(kv)?,
            };
            serde_json::to_writer(&mut out, &crate::codec::partial_object_metadata(&obj)).ok()?;
        } else {
            match object {
                Some(o) => serde_json::to_writer(&mut out, &o).ok()?,
                None => out.extend_from_slice(&answer(kv)),
            }
        }
        out.extend_from_slice(b"}\n");
        Some(out)
    }

    fn bookmark(&self, revision: i64, initial_events_end: bool) -> Vec<u8> {
        let mut metadata = json!({ "resourceVersion": revision.to_string() });
        if initial_events_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let object =
            json!({ "kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": metadata });
        let mut out = serde_json::to_vec(&json!({ "type": "BOOKMARK", "object": object })).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

fn error_line(e: &ApiError) -> Vec<u8> {
    let mut out = serde_json::to_vec(&json!({ "type": "ERROR", "object": e.to_status() })).unwrap_or_default();
    out.push(b'\n');
    out
}

/// How much unread output one watch may hold, and how long it may hold that much before it is closed.
#[derive(Debug, Clone, Copy)]
pub struct WatchBudget {
    /// Bytes encoded for the client but not yet taken by its connection. A line larger than this is sent
    /// alone once the watcher has nothing else pending.
    pub bytes: usize,
    /// How long a live watcher whose budget is full may go without reading before it is closed, as
    /// kube-apiserver's cacher closes a watcher whose buffer stays full ("Forcing watcher close due to
    /// unresponsiveness"). The client then watches again from its last resourceVersion, or relists.
    pub stall: Duration,
}

impl Default for WatchBudget {
    fn default() -> Self {
        // Room for a few of the largest objects the store takes (1.5 MiB, as etcd), and a stall far longer
        // than any reading client needs to drain that much.
        WatchBudget { bytes: 4 << 20, stall: Duration::from_secs(5) }
    }
}

/// One chunk of a watch body, holding its share of the watcher's budget (and of the initial-state window)
/// until the connection takes it.
struct Chunk {
    bytes: Bytes,
    _budget: Option<OwnedSemaphorePermit>,
    _window: Option<OwnedSemaphorePermit>,
}

/// How far the initial state runs ahead of the client. It is read from the store as the client takes it, so
/// a deeper buffer would only hold memory: 1,000 watches from `resourceVersion=0` hold at most this much
/// each, not the whole collection or the whole budget.
const INITIAL_WINDOW: usize = 64 * 1024;

/// A watch's response body: the lines the watch task encodes, each giving its budget back as it is taken.
pub struct WatchBody {
    rx: mpsc::UnboundedReceiver<Chunk>,
}

impl futures::Stream for WatchBody {
    type Item = Bytes;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Bytes>> {
        self.rx.poll_recv(cx).map(|chunk| chunk.map(|c| c.bytes))
    }
}

/// Why a watch stopped sending.
enum Stop {
    /// The client went away.
    Closed,
    /// The client stopped reading with its budget full.
    Stalled,
}

/// The sending side of a watch: lines go out only within the watcher's byte budget.
struct Sink {
    tx: mpsc::UnboundedSender<Chunk>,
    room: Arc<Semaphore>,
    window: Arc<Semaphore>,
    budget: WatchBudget,
}

impl Sink {
    fn new(budget: WatchBudget) -> (Sink, WatchBody) {
        let (tx, rx) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(budget.bytes.clamp(1, u32::MAX as usize)));
        let window = Arc::new(Semaphore::new(INITIAL_WINDOW));
        (Sink { tx, room, window, budget }, WatchBody { rx })
    }

    /// Send a line of the initial state, waiting for room in the initial window as long as the client is
    /// there (it is read from the store page by page as the client takes it, so waiting costs no memory).
    async fn send_initial(&self, line: Vec<u8>) -> Result<(), Stop> {
        let cost = u32::try_from(line.len().clamp(1, INITIAL_WINDOW)).unwrap_or(u32::MAX);
        let window = tokio::select! {
            permit = self.window.clone().acquire_many_owned(cost) => permit.map_err(|_| Stop::Closed)?,
            _ = self.tx.closed() => return Err(Stop::Closed),
        };
        self.send_within(line, None, Some(window)).await
    }

    /// Send `line`, waiting for room in the budget as long as the client is there.
    async fn send(&self, line: Vec<u8>) -> Result<(), Stop> {
        self.send_within(line, None, None).await
    }

    /// Send `line`, closing the watch if the client leaves its budget full for longer than the stall limit
    /// (live events: they would otherwise pile up for a client that does not read).
    async fn send_live(&self, line: Vec<u8>) -> Result<(), Stop> {
        self.send_within(line, Some(self.budget.stall), None).await
    }

    async fn send_within(
        &self,
        line: Vec<u8>,
        patience: Option<Duration>,
        window: Option<OwnedSemaphorePermit>,
    ) -> Result<(), Stop> {
        let capacity = self.budget.bytes.clamp(1, u32::MAX as usize);
        // A line larger than the whole budget waits for all of it: it then goes alone.
        let cost = u32::try_from(line.len().clamp(1, capacity)).unwrap_or(u32::MAX);
        let acquire = self.room.clone().acquire_many_owned(cost);
        let permit = tokio::select! {
            permit = async {
                match patience {
                    Some(limit) => tokio::time::timeout(limit, acquire).await.map_err(|_| Stop::Stalled),
                    None => Ok(acquire.await),
                }
            } => permit?.map_err(|_| Stop::Closed)?,
            _ = self.tx.closed() => return Err(Stop::Closed),
        };
        let chunk = Chunk { bytes: Bytes::from(line), _budget: Some(permit), _window: window };
        self.tx.send(chunk).map_err(|_| Stop::Closed)
    }

    /// Queue the last line of a watch closed for unresponsiveness, past the budget (it is small, and the
    /// client reads it after what it left unread).
    fn send_last(&self, line: Vec<u8>) {
        let _ = self.tx.send(Chunk { bytes: Bytes::from(line), _budget: None, _window: None });
    }

    /// Bytes encoded and not yet taken by the connection.
    fn unread(&self) -> usize {
        self.budget.bytes.clamp(1, u32::MAX as usize).saturating_sub(self.room.available_permits())
    }
}

/// How many entries the initial state reads from the store at a time.
const INITIAL_PAGE: usize = 500;

/// Start a watch; the returned body yields the response's chunks.
pub fn start(
    state: &ApiState,
    resource: &'static Resource,
    namespace: Option<&str>,
    options: ListOptions,
    watch: WatchOptions,
) -> Result<WatchBody, ApiError> {
    let store = state.store.clone();
    let prefix = resource.namespace_prefix(namespace);
    let rv = options.resource_version.clone().unwrap_or_default();
    let initial = rv.is_empty() || rv == "0" || watch.send_initial_events;
    let requested = match rv.as_str() {
        "" | "0" => None,
        rv => Some(rv.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}")))?),
    };
    let encoder =
        Encoder { resource, options, output: watch.output, include_object: watch.include_object, sent_columns: false };
    let (sink, body) = Sink::new(watch.budget);
    // Without initial events the watcher starts now, at the requested revision: its backlog is the history.
    let watcher = match (initial, requested) {
        (false, Some(after)) => Some(store.watch(&prefix, after)),
        _ => None,
    };
    let task =
        Watch { store, prefix, encoder, sink, bookmarks: watch.bookmarks, bookmark_every: state.bookmark_interval };
    tokio::spawn(async move {
        let mut task = task;
        let outcome = tokio::time::timeout(watch.timeout, async {
            let (watcher, after) = match watcher {
                Some(watcher) => (watcher, requested.unwrap_or_default()),
                None => {
                    let revision = task.send_initial_state().await?;
                    let after = requested.map_or(revision, |rv| rv.max(revision));
                    if watch.send_initial_events && watch.bookmarks {
                        task.sink.send(task.encoder.bookmark(after, true)).await?;
                    }
                    (task.store.watch(&task.prefix, after), after)
                }
            };
            match watcher {
                Ok(watcher) => task.follow(watcher, after).await,
                Err(e) => task.sink.send(error_line(&watch_error(e))).await,
            }
        })
        .await;
        if let Ok(Err(Stop::Stalled)) = outcome {
            let (unread, stall) = (task.sink.unread(), task.sink.budget.stall);
            tracing::warn!(
                resource = resource.plural,
                unread_bytes = unread,
                budget_bytes = task.sink.budget.bytes,
                "Forcing watcher close due to unresponsiveness"
            );
            // The client learns that it fell behind, as from a watch that fell behind the store: it relists.
            let why = format!(
                "watch closed: the client left {unread} bytes unread for {stall:?}; too old resource version, please relist"
            );
            task.sink.send_last(error_line(&ApiError::gone(why)));
        }
    });
    Ok(body)
}

/// The ERROR event for a watch the store cannot start or continue.
fn watch_error(e: kvol_store::Error) -> ApiError {
    match e {
        kvol_store::Error::Compacted { requested, compacted } => {
            ApiError::gone(format!("too old resource version: {requested} ({compacted})"))
        }
        kvol_store::Error::FutureRevision { requested, current } => {
            ApiError::too_large_resource_version(requested, current)
        }
        e => ApiError::internal(e.to_string()),
    }
}

/// One watch's state, moved into its task.
struct Watch {
    store: Arc<dyn Store>,
    prefix: String,
    encoder: Encoder,
    sink: Sink,
    bookmarks: bool,
    bookmark_every: Duration,
}

impl Watch {
    /// Send an ADDED event per object under the prefix, as of one revision, reading the store a page at a
    /// time as the client takes the events: no watcher copies the collection. Returns that revision.
    async fn send_initial_state(&mut self) -> Result<i64, Stop> {
        let mut revision = None;
        let mut start_after = None;
        loop {
            let options = RangeOptions { start_after: start_after.take(), limit: Some(INITIAL_PAGE) };
            let page = match revision {
                None => self.store.range(&self.prefix, &options),
                Some(rv) => self.store.range_at(&self.prefix, &options, rv),
            };
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    self.sink.send(error_line(&watch_error(e))).await?;
                    return Err(Stop::Closed);
                }
            };
            revision = Some(page.revision);
            for kv in &page.kvs {
                let added = Event { event_type: EventType::Put, kv: kv.clone(), prev: None };
                if let Some(line) = self.encoder.line(&added) {
                    self.sink.send_initial(line).await?;
                }
            }
            if page.remaining == 0 || page.kvs.is_empty() {
                return Ok(page.revision);
            }
            start_after = page.kvs.last().map(|kv| kv.key.clone());
        }
    }

    /// Stream changes after `last_sent`, with bookmarks, until the client goes or stalls.
    async fn follow(&mut self, mut watcher: Watcher, mut last_sent: i64) -> Result<(), Stop> {
        let mut ticker = tokio::time::interval(self.bookmark_every);
        ticker.tick().await;
        loop {
            tokio::select! {
                event = watcher.next() => match event {
                    Some(Ok(e)) => {
                        last_sent = e.revision();
                        if let Some(line) = self.encoder.line(&e) {
                            self.sink.send_live(line).await?;
                        }
                    }
                    Some(Err(e)) => return self.lagged(e).await,
                    None => return Ok(()),
                },
                _ = ticker.tick(), if self.bookmarks => {
                    // Every event up to the store's revision is already in this watcher's channel: drain it
                    // without waiting, then the bookmark may claim that revision.
                    let revision = self.store.current_revision();
                    loop {
                        match watcher.next().now_or_never() {
                            Some(Some(Ok(e))) => {
                                last_sent = e.revision();
                                if let Some(line) = self.encoder.line(&e) {
                                    self.sink.send_live(line).await?;
                                }
                            }
                            // Fell behind: the bookmark must not claim events this watch never sent.
                            Some(Some(Err(e))) => return self.lagged(e).await,
                            Some(None) => return Ok(()),
                            None => break,
                        }
                    }
                    let revision = revision.max(last_sent);
                    self.sink.send_live(self.encoder.bookmark(revision, false)).await?;
                }
                _ = self.sink.tx.closed() => return Err(Stop::Closed),
            }
        }
    }

    /// The watcher fell behind the store's broadcast: tell the client to relist.
    async fn lagged(&self, e: kvol_store::Error) -> Result<(), Stop> {
        let err = ApiError::gone(format!("watch closed: {e}; too old resource version, please relist"));
        self.sink.send_live(error_line(&err)).await
    }
}
