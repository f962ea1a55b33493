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

    /// `range` as of `revision`: the current entries with every later change under `prefix` undone from the
    /// history (each key's first change after `revision` carries the entry it replaced). A page costs the
    /// history after `revision` plus the page itself (and a count of what follows it), never a copy of the
    /// whole prefix, so paging through a large collection at one revision stays linear.
    pub fn range_at(&self, prefix: &str, options: &RangeOptions, revision: i64) -> Result<RangeResult> {
        if revision > self.revision {
            return Err(Error::FutureRevision { requested: revision, current: self.revision });
        }
        if revision == self.revision {
            return Ok(self.range(prefix, options));
        }
        if revision < self.compacted {
            return Err(Error::Compacted { requested: revision, compacted: self.compacted });
        }
        let gone = || Error::Compacted { requested: revision, compacted: self.compacted.max(revision) };
        let start = self.history.partition_point(|e| e.revision() <= revision);
        // Every key under `prefix` changed after `revision`, with the entry it had then (None: it did not exist).
        let mut before: BTreeMap<&str, Option<&KeyValue>> = BTreeMap::new();
        for e in self.history.range(start..).filter(|e| e.kv.key.starts_with(prefix)) {
            if before.contains_key(e.kv.key.as_str()) {
                continue;
            }
            let prev = match (e.event_type, e.prev.as_ref()) {
                (_, Some(prev)) if prev.version > 0 => Some(prev),
                (EventType::Put, None) if e.kv.version == 1 => None,
                // The entry this change replaced predates the history reloaded at startup.
                _ => return Err(gone()),
            };
            before.insert(e.kv.key.as_str(), prev);
        }
        let lower: Bound<&str> = match options.start_after.as_deref() {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let unchanged = self
            .kvs
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| !before.contains_key(k.as_str()))
            .map(|(_, v)| v);
        let restored = before.range::<&str, _>((lower, Bound::Unbounded)).filter_map(|(_, v)| *v);
        let mut merged = MergeByKey { a: unchanged.peekable(), b: restored.peekable() };
        let limit = options.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let kvs: Vec<KeyValue> = merged.by_ref().take(limit).cloned().collect();
        Ok(RangeResult { kvs, revision, remaining: merged.count() })
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

/// Two key-ordered runs of entries with no key in common, as one key-ordered run.
struct MergeByKey<'a, A: Iterator<Item = &'a KeyValue>, B: Iterator<Item = &'a KeyValue>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<'a, A: Iterator<Item = &'a KeyValue>, B: Iterator<Item = &'a KeyValue>> Iterator for MergeByKey<'a, A, B> {
    type Item = &'a KeyValue;

    fn next(&mut self) -> Option<&'a KeyValue> {
        match (self.a.peek(), self.b.peek()) {
            (Some(a), Some(b)) if b.key < a.key => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn put(state: &mut State, key: &str, value: &str) {
        let revision = state.revision + 1;
        let prev = state.kvs.get(key).cloned();
        let kv = KeyValue {
            key: key.into(),
            value: Bytes::from(value.to_string()),
            create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
            mod_revision: revision,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
        };
        state.apply(vec![Event { event_type: EventType::Put, kv, prev }], revision);
    }

    fn delete(state: &mut State, key: &str) {
        let revision = state.revision + 1;
        let prev = state.kvs.get(key).cloned().expect("deleting an existing key");
        let kv = KeyValue { mod_revision: revision, ..prev.clone() };
        state.apply(vec![Event { event_type: EventType::Delete, kv, prev: Some(prev) }], revision);
    }

    fn keys_and_values(r: &RangeResult) -> Vec<(String, String)> {
        r.kvs.iter().map(|kv| (kv.key.clone(), String::from_utf8_lossy(&kv.value).to_string())).collect()
    }

    #[test]
    fn a_range_at_an_earlier_revision_undoes_later_changes() {
        let mut s = State::new(16);
        put(&mut s, "/p/a", "a1");
        put(&mut s, "/p/b", "b1");
        put(&mut s, "/p/c", "c1");
        let then = s.revision;
        let before = keys_and_values(&s.range("/p/", &RangeOptions::default()));
        put(&mut s, "/p/a", "a2");
        delete(&mut s, "/p/b");
        put(&mut s, "/p/bb", "new");
        put(&mut s, "/q/x", "other prefix");
        let at = s.range_at("/p/", &RangeOptions::default(), then).unwrap();
        assert_eq!(keys_and_values(&at), before);
        assert_eq!(at.revision, then);
        assert_eq!(at.kvs[0].mod_revision, 1, "the old entry, with its old revision");
        let page = s.range_at("/p/", &RangeOptions { start_after: Some("/p/a".into()), limit: Some(1) }, then).unwrap();
        assert_eq!(keys_and_values(&page), vec![("/p/b".to_string(), "b1".to_string())]);
        assert_eq!(page.remaining, 1);
        assert!(matches!(
            s.range_at("/p/", &RangeOptions::default(), s.revision + 1),
            Err(Error::FutureRevision { .. })
        ));
        s.compact(then + 1);
        assert!(matches!(s.range_at("/p/", &RangeOptions::default(), then), Err(Error::Compacted { .. })));
    }

    #[test]
    fn paging_at_an_earlier_revision_walks_every_entry_once_in_key_order() {
        let mut s = State::new(16);
        for key in ["/p/a", "/p/c", "/p/e", "/p/g"] {
            put(&mut s, key, "old");
        }
        let then = s.revision;
        let whole = keys_and_values(&s.range("/p/", &RangeOptions::default()));
        // Deleted, created, updated and re-created keys interleave with the unchanged ones.
        delete(&mut s, "/p/c");
        put(&mut s, "/p/b", "new");
        put(&mut s, "/p/g", "new");
        put(&mut s, "/p/d", "new");
        delete(&mut s, "/p/a");
        put(&mut s, "/p/a", "again");
        for page in 1..=5 {
            let mut seen = Vec::new();
            let mut start_after = None;
            loop {
                let options = RangeOptions { start_after: start_after.clone(), limit: Some(page) };
                let r = s.range_at("/p/", &options, then).unwrap();
                assert!(r.kvs.len() <= page);
                seen.extend(keys_and_values(&r));
                if r.remaining == 0 {
                    break;
                }
                start_after = r.kvs.last().map(|kv| kv.key.clone());
            }
            assert_eq!(seen, whole, "pages of {page}");
        }
    }
}
