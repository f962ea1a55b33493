//! The in-memory side of the embedded store: current entries, recent history, and the broadcast that feeds
//! watchers. Only the writer thread mutates it, always after the change is durable.

use crate::{Error, Event, EventType, KeyValue, RangeOptions, RangeResult, Result, Watcher};
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use tokio::sync::broadcast;

pub(crate) struct State {
    pub kvs: BTreeMap<String, KeyValue>,
    pub history: VecDeque<Arc<Event>>,
    pub revision: i64,
    pub compacted: i64,
    pub events: broadcast::Sender<Arc<Event>>,
}

impl State {
    pub fn new(broadcast_capacity: usize) -> Self {
        State {
            kvs: BTreeMap::new(),
            history: VecDeque::new(),
            revision: 0,
            compacted: 0,
            events: broadcast::channel(broadcast_capacity.max(16)).0,
        }
    }

    pub fn range(&self, prefix: &str, options: &RangeOptions) -> RangeResult {
        let start = match &options.start_after {
            Some(after) if after.as_str() >= prefix => Bound::Excluded(after.clone()),
            _ => Bound::Included(prefix.to_string()),
        };
        let mut iter =
            self.kvs.range::<String, _>((start, Bound::Unbounded)).take_while(|(k, _)| k.starts_with(prefix));
        let limit = options.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let kvs: Vec<KeyValue> = iter.by_ref().take(limit).map(|(_, v)| v.clone()).collect();
        RangeResult { kvs, revision: self.revision, remaining: iter.count() }
    }

    /// Apply durable events and publish them to watchers.
    pub fn apply(&mut self, events: Vec<Event>, revision: i64) {
        for event in events {
            match event.event_type {
                EventType::Put => {
                    self.kvs.insert(event.kv.key.clone(), event.kv.clone());
                }
                EventType::Delete => {
                    self.kvs.remove(&event.kv.key);
                }
            }
            let event = Arc::new(event);
            self.history.push_back(event.clone());
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(event);
        }
        self.revision = revision;
    }

    pub fn compact(&mut self, revision: i64) {
        while self.history.front().is_some_and(|e| e.revision() <= revision) {
            self.history.pop_front();
        }
        self.compacted = self.compacted.max(revision);
    }

    /// A watcher for events under `prefix` after `after`, consistent with the state: it subscribes and copies
    /// the backlog under the same lock the writer publishes under, so no event is missed or repeated.
    pub fn watch(&self, prefix: &str, after: i64) -> Result<Watcher> {
        if after < self.compacted {
            return Err(Error::Compacted { requested: after, compacted: self.compacted });
        }
        if after > self.revision {
            return Err(Error::FutureRevision { requested: after, current: self.revision });
        }
        let rx = self.events.subscribe();
        let start = self.history.partition_point(|e| e.revision() <= after);
        let backlog: VecDeque<Arc<Event>> =
            self.history.range(start..).filter(|e| e.kv.key.starts_with(prefix)).cloned().collect();
        let prefix = prefix.to_string();
        let last = self.revision;
        let stream = futures::stream::unfold(
            (backlog, rx, prefix, last, false),
            |(mut backlog, mut rx, prefix, last, done)| async move {
                if done {
                    return None;
                }
                if let Some(e) = backlog.pop_front() {
                    return Some((Ok(e), (backlog, rx, prefix, last, false)));
                }
                loop {
                    match rx.recv().await {
                        Ok(e) if e.revision() > last && e.kv.key.starts_with(&prefix) => {
                            return Some((Ok(e), (backlog, rx, prefix, last, false)))
                        }
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            return Some((Err(Error::WatcherLagged(n)), (backlog, rx, prefix, last, true)))
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        );
        Ok(Watcher::new(Box::pin(stream)))
    }
}
