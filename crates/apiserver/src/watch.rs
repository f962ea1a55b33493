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

fn error_line(e: &ApiError) -> Bytes {
    let mut out = serde_json::to_vec(&json!({ "type": "ERROR", "object": e.to_status() })).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

/// Start a watch; the returned channel yields the response body's chunks.
pub fn start(
    state: &ApiState,
    resource: &'static Resource,
    namespace: Option<&str>,
    options: ListOptions,
    watch: WatchOptions,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let store = state.store.clone();
    let prefix = resource.namespace_prefix(namespace);
    let rv = options.resource_version.clone().unwrap_or_default();
    let initial = rv.is_empty() || rv == "0" || watch.send_initial_events;
    let mut encoder =
        Encoder { resource, options, output: watch.output, include_object: watch.include_object, sent_columns: false };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let bookmark_every = state.bookmark_interval;
    let mut initial_lines: Vec<Vec<u8>> = Vec::new();
    let after = if initial {
        let range = store.range(&prefix, &RangeOptions::default()).map_err(|e| ApiError::internal(e.to_string()))?;
        for kv in &range.kvs {
            let added = Event { event_type: EventType::Put, kv: kv.clone(), prev: None };
            if let Some(line) = encoder.line(&added) {
                initial_lines.push(line);
            }
        }
        if rv.is_empty() || rv == "0" {
            range.revision
        } else {
            rv.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}")))?
                .max(range.revision)
        }
    } else {
        rv.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}")))?
    };
    let watcher = store.watch(&prefix, after);
    tokio::spawn(async move {
        for line in initial_lines {
            if tx.send(Bytes::from(line)).await.is_err() {
                return;
            }
        }
        if watch.send_initial_events && watch.bookmarks {
            let _ = tx.send(Bytes::from(encoder.bookmark(after, true))).await;
        }
        let watcher = match watcher {
            Ok(w) => w,
            Err(kvol_store::Error::Compacted { requested, compacted }) => {
                let e = ApiError::gone(format!("too old resource version: {requested} ({compacted})"));
                let _ = tx.send(error_line(&e)).await;
                return;
            }
            Err(kvol_store::Error::FutureRevision { requested, current }) => {
                let _ = tx.send(error_line(&ApiError::too_large_resource_version(requested, current))).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(error_line(&ApiError::internal(e.to_string()))).await;
                return;
            }
        };
        run(store, watcher, encoder, tx, watch.bookmarks, bookmark_every, watch.timeout, after).await;
    });
    Ok(rx)
}

#[allow(clippy::too_many_arguments)] // the watch loop's whole state, moved into its task
async fn run(
    store: Arc<dyn Store>,
    mut watcher: Watcher,
    mut encoder: Encoder,
    tx: mpsc::Sender<Bytes>,
    bookmarks: bool,
    bookmark_every: Duration,
    timeout: Duration,
    mut last_sent: i64,
) {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(bookmark_every);
    ticker.tick().await;
    loop {
        tokio::select! {
            event = watcher.next() => match event {
                Some(Ok(e)) => {
                    last_sent = e.revision();
                    if let Some(line) = encoder.line(&e) {
                        if tx.send(Bytes::from(line)).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Err(e)) => {
                    let err = ApiError::gone(format!("watch closed: {e}; too old resource version, please relist"));
                    let _ = tx.send(error_line(&err)).await;
                    return;
                }
                None => return,
            },
            _ = ticker.tick(), if bookmarks => {
                // Every event up to the store's revision is already in this watcher's channel: drain it
                // without waiting, then the bookmark may claim that revision.
                let revision = store.current_revision();
                loop {
                    match watcher.next().now_or_never() {
                        Some(Some(Ok(e))) => {
                            last_sent = e.revision();
                            if let Some(line) = encoder.line(&e) {
                                if tx.send(Bytes::from(line)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        // Fell behind: the bookmark must not claim events this watch never sent.
                        Some(Some(Err(e))) => {
                            let err = ApiError::gone(format!("watch closed: {e}; too old resource version, please relist"));
                            let _ = tx.send(error_line(&err)).await;
                            return;
                        }
                        Some(None) => return,
                        None => break,
                    }
                }
                let revision = revision.max(last_sent);
                if tx.send(Bytes::from(encoder.bookmark(revision, false))).await.is_err() {
                    return;
                }
            }
            _ = &mut deadline => return,
            _ = tx.closed() => return,
        }
    }
}
