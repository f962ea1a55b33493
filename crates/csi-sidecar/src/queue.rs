//! A work queue of object keys, as client-go's rate-limited workqueue: a key is queued at most once, is
//! never processed by two workers at a time (one operation per object), and failed keys come back after
//! a per-key exponential backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// Per-key exponential backoff: `base * 2^(failures-1)`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first retry delay (kubernetes-csi: 15 s for the provisioner, 1 s for the attacher).
    pub base: Duration,
    /// The longest delay (kubernetes-csi: 1000 s for the provisioner, 5 min for the attacher).
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `failures` (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1).min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

#[derive(Default)]
struct State {
    order: VecDeque<String>,
    queued: HashSet<String>,
    active: HashSet<String>,
    /// Keys added while being processed: re-queued when done.
    again: HashSet<String>,
    failures: HashMap<String, u32>,
    closed: bool,
}

/// The queue; clone the `Arc` to share it between watchers and workers.
pub struct Queue {
    state: Mutex<State>,
    notify: Notify,
    backoff: Backoff,
}

impl Queue {
    /// An empty queue with `backoff` for failed keys.
    pub fn new(backoff: Backoff) -> Arc<Queue> {
        Arc::new(Queue { state: Mutex::default(), notify: Notify::new(), backoff })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A worker that panicked while holding the lock leaves consistent sets behind: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `key` now (no-op if already queued; re-queued after the current run if in progress).
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut s = self.lock();
        if s.closed || s.queued.contains(&key) {
            return;
        }
        if s.active.contains(&key) {
            s.again.insert(key);
            return;
        }
        s.queued.insert(key.clone());
        s.order.push_back(key);
        drop(s);
        self.notify.notify_one();
    }

    /// Queues `key` after `delay`.
    pub fn add_after(self: &Arc<Self>, key: String, delay: Duration) {
        let queue = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(queue) = queue.upgrade() {
                queue.add(key);
            }
        });
    }

    /// Counts a failure of `key` and queues it after its backoff; returns the failure count.
    pub fn add_rate_limited(self: &Arc<Self>, key: &str) -> u32 {
        let failures = {
            let mut s = self.lock();
            let n = s.failures.entry(key.to_owned()).or_insert(0);
            *n += 1;
            *n
        };
        self.add_after(key.to_owned(), self.backoff.delay(failures));
        failures
    }

    /// How often `key` failed since it was last forgotten.
    pub fn failures(&self, key: &str) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Forgets `key`'s failures (after a success, or when the object is gone).
    pub fn forget(&self, key: &str) {
        self.lock().failures.remove(key);
    }

    /// The next key to process, waiting for one; `None` once the queue is closed.
    pub async fn next(&self) -> Option<String> {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.lock();
                if s.closed {
                    return None;
                }
                if let Some(key) = s.order.pop_front() {
                    s.queued.remove(&key);
                    s.active.insert(key.clone());
                    if !s.order.is_empty() {
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// Marks `key` processed; if it was added meanwhile it is queued again.
    pub fn done(&self, key: &str) {
        let mut s = self.lock();
        s.active.remove(key);
        if s.again.remove(key) {
            drop(s);
            self.add(key.to_owned());
        }
    }

    /// Stops the queue: `next` returns `None` to every worker.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
    }

    /// Keys queued or being processed (for tests and logs).
    pub fn len(&self) -> usize {
        let s = self.lock();
        s.order.len() + s.active.len()
    }

    /// Whether nothing is queued or in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let b = Backoff { base: Duration::from_secs(15), max: Duration::from_secs(1000) };
        let got: Vec<u64> = (1..=8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(got, [15, 30, 60, 120, 240, 480, 960, 1000]);
        assert_eq!(b.delay(100).as_secs(), 1000);
    }

    #[tokio::test]
    async fn a_key_is_queued_once_and_never_processed_twice_at_a_time() {
        let q = Queue::new(Backoff { base: Duration::from_millis(1), max: Duration::from_millis(1) });
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.next().await.as_deref(), Some("a"));
        q.add("a"); // while active: deferred
        assert_eq!(q.next().await.as_deref(), Some("b"));
        q.done("b");
        q.done("a");
        assert_eq!(q.next().await.as_deref(), Some("a"));
        q.done("a");
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn failures_are_counted_until_forgotten() {
        let q = Queue::new(Backoff { base: Duration::from_millis(1), max: Duration::from_millis(5) });
        assert_eq!(q.add_rate_limited("a"), 1);
        assert_eq!(q.next().await.as_deref(), Some("a"));
        q.done("a");
        assert_eq!(q.add_rate_limited("a"), 2);
        q.forget("a");
        assert_eq!(q.failures("a"), 0);
    }
}
