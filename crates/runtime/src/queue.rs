//! client-go's work queue: a key waiting is queued once however often it is added, a key
//! is handed to one worker at a time (added again while processing, it is processed again afterwards), and
//! failures are retried with per-key exponential backoff.

use crate::Backoff;
use parking_lot::Mutex;
use std::borrow::Borrow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

struct State<K> {
    queue: VecDeque<K>,
    dirty: HashSet<K>,
    processing: HashSet<K>,
    failures: HashMap<K, u32>,
    shut_down: bool,
}

/// The queue of keys; cheap to clone (clones share the queue).
pub struct WorkQueue<K> {
    state: Arc<Mutex<State<K>>>,
    notify: Arc<Notify>,
    backoff: Backoff,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue { state: self.state.clone(), notify: self.notify.clone(), backoff: self.backoff }
    }
}

impl<K: Hash + Eq + Clone + Send + 'static> WorkQueue<K> {
    /// An empty queue retrying with `backoff`.
    pub fn new(backoff: Backoff) -> Self {
        WorkQueue {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
                shut_down: false,
            })),
            notify: Arc::new(Notify::new()),
            backoff,
        }
    }

    /// Queue a key (once, however often it is added before a worker takes it; a key being processed is
    /// queued again once its worker is done).
    pub fn add(&self, key: impl Into<K>) {
        let key = key.into();
        let mut s = self.state.lock();
        if s.shut_down || s.dirty.contains(&key) {
            return;
        }
        s.dirty.insert(key.clone());
        if !s.processing.contains(&key) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Queue many keys under one lock.
    pub fn add_all(&self, keys: impl IntoIterator<Item = K>) {
        let mut s = self.state.lock();
        if s.shut_down {
            return;
        }
        let mut added = 0;
        for key in keys {
            if s.dirty.insert(key.clone()) && !s.processing.contains(&key) {
                s.queue.push_back(key);
                added += 1;
            }
        }
        drop(s);
        for _ in 0..added.min(64) {
            self.notify.notify_one();
        }
    }

    /// Queue a key after a delay.
    pub fn add_after(&self, key: K, delay: Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Count a failure of `key` and queue it again after its backoff; returns the failure count.
    pub fn add_rate_limited(&self, key: impl Into<K>) -> u32 {
        let key = key.into();
        let failures = {
            let mut s = self.state.lock();
            let n = s.failures.entry(key.clone()).or_default();
            *n += 1;
            *n
        };
        self.add_after(key, self.backoff.delay(failures));
        failures
    }

    /// Count a failure without queueing again (giving up); returns the failure count.
    pub fn count_failure(&self, key: impl Into<K>) -> u32 {
        let mut s = self.state.lock();
        let n = s.failures.entry(key.into()).or_default();
        *n += 1;
        *n
    }

    /// How often `key` failed since it was last forgotten.
    pub fn failures<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> u32
    where
        K: Borrow<Q>,
    {
        self.state.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Reset the failure count of `key` (after a success, or when its object is gone).
    pub fn forget<Q: Hash + Eq + ?Sized>(&self, key: &Q)
    where
        K: Borrow<Q>,
    {
        self.state.lock().failures.remove(key);
    }

    /// Take the next key; `None` once shut down.
    pub async fn get(&self) -> Option<K> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.state.lock();
                if s.shut_down {
                    return None;
                }
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        // Pass the wake-up on, so idle workers drain a burst together.
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// Mark `key` processed; if it was added meanwhile it is queued again.
    pub fn done<Q: Hash + Eq + ?Sized>(&self, key: &Q)
    where
        K: Borrow<Q>,
    {
        let mut s = self.state.lock();
        let Some(key) = s.processing.take(key) else { return };
        if s.dirty.contains::<K>(&key) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// How many keys wait (not counting those being processed).
    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Whether no key waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stop handing out keys; workers' `get` returns `None`.
    pub fn shut_down(&self) {
        self.state.lock().shut_down = true;
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> WorkQueue<String> {
        WorkQueue::new(Backoff { base: Duration::from_millis(5), max: Duration::from_millis(40) })
    }

    #[tokio::test]
    async fn a_key_added_twice_is_handed_out_once() {
        let q = queue();
        q.add("a");
        q.add("a");
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await.as_deref(), Some("a"));
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_key_added_while_processing_comes_back_after_done() {
        let q = queue();
        q.add("a");
        let key = q.get().await.unwrap();
        q.add("a");
        assert!(q.is_empty(), "not handed to a second worker while the first has it");
        q.done(&key);
        assert_eq!(q.get().await.as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn failures_are_counted_until_forgotten_and_keys_borrow() {
        let q = queue();
        assert_eq!(q.add_rate_limited("a"), 1);
        assert_eq!(q.get().await.as_deref(), Some("a"));
        q.done("a");
        assert_eq!(q.add_rate_limited("a"), 2);
        assert_eq!(q.failures("a"), 2);
        q.forget("a");
        assert_eq!(q.failures("a"), 0);
    }

    #[tokio::test]
    async fn keys_added_together_are_handed_out_in_order_once_each() {
        let q = queue();
        q.add_all(["a".to_string(), "b".to_string(), "a".to_string()]);
        q.add("c");
        let mut got = Vec::new();
        while !q.is_empty() {
            let key = q.get().await.unwrap();
            q.done(&key);
            got.push(key);
        }
        assert_eq!(got, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn shutting_down_releases_waiting_workers() {
        let q = queue();
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.get().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        q.shut_down();
        assert_eq!(waiter.await.unwrap(), None);
    }
}
