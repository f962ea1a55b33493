//! A work queue with client-go's guarantees: a key waiting is queued once however often it is added, a key
//! is handed to one worker at a time (added again while processing, it is processed again afterwards), and
//! failures are retried with per-key exponential backoff.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Per-key exponential backoff: `base * 2^(failures-1)`, capped at `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first delay.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay after `failures` failures (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }
}

struct State<K> {
    queue: VecDeque<K>,
    dirty: HashSet<K>,
    processing: HashSet<K>,
    failures: HashMap<K, u32>,
    shut_down: bool,
}

/// The queue; cheap to clone.
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

    /// Queue a key (once, however often it is added before a worker takes it).
    pub fn add(&self, key: K) {
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
    pub fn add_rate_limited(&self, key: K) -> u32 {
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
    pub fn count_failure(&self, key: &K) -> u32 {
        let mut s = self.state.lock();
        let n = s.failures.entry(key.clone()).or_default();
        *n += 1;
        *n
    }

    /// How often `key` failed since it was last forgotten.
    pub fn failures(&self, key: &K) -> u32 {
        self.state.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Reset the failure count of `key`.
    pub fn forget(&self, key: &K) {
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
    pub fn done(&self, key: &K) {
        let mut s = self.state.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.clone());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// How many keys wait.
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
        q.add("a".into());
        q.add("a".into());
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await.as_deref(), Some("a"));
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_key_added_while_processing_comes_back_after_done() {
        let q = queue();
        q.add("a".into());
        let key = q.get().await.unwrap();
        q.add("a".into());
        assert!(q.is_empty(), "not handed to a second worker while the first has it");
        q.done(&key);
        assert_eq!(q.get().await.as_deref(), Some("a"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff { base: Duration::from_secs(15), max: Duration::from_secs(1000) };
        assert_eq!(b.delay(1), Duration::from_secs(15));
        assert_eq!(b.delay(2), Duration::from_secs(30));
        assert_eq!(b.delay(7), Duration::from_secs(960));
        assert_eq!(b.delay(8), Duration::from_secs(1000));
        assert_eq!(b.delay(40), Duration::from_secs(1000));
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
