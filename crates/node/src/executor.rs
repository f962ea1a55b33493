//! One operation per volume at a time, with exponential backoff after failures (kubelet's
//! `nestedpendingoperations`: 500 ms doubling to 2m2s). As there, the backoff belongs to the operation
//! that failed: a different operation on the same key (the teardown of a mount that kept failing, once
//! its pod is deleted) starts at once instead of waiting out the failed one's backoff.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kvol_runtime::Backoff;
use parking_lot::Mutex;

/// kubelet's `initialDurationBeforeRetry`.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// kubelet's `maxDurationBeforeRetry`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(122);

#[derive(Debug, Default)]
struct Pending {
    running: bool,
    /// The operation that runs or last failed on the key.
    operation: &'static str,
    failures: u32,
    retry_at: Option<Instant>,
}

/// Why an operation was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Another operation on the same key is running.
    Running,
    /// The key failed recently; retry after the instant.
    BackingOff(Instant),
}

/// The pending-operations table. Keys are strings: a volume's unique name, or `pod/<uid>/…` for per-pod
/// steps.
#[derive(Debug, Default)]
pub struct Executor {
    ops: Mutex<HashMap<String, Pending>>,
}

/// The backoff after `failures` consecutive failures.
pub fn backoff(failures: u32) -> Duration {
    Backoff { base: INITIAL_BACKOFF, max: MAX_BACKOFF }.delay(failures)
}

impl Executor {
    /// Claims `key` for `operation`, unless an operation is running on it or the same operation failed
    /// there recently; the backoff of a different operation is forgotten.
    pub fn try_start(&self, key: &str, operation: &'static str, now: Instant) -> Result<(), Refused> {
        let mut ops = self.ops.lock();
        let p = ops.entry(key.to_string()).or_default();
        if p.running {
            return Err(Refused::Running);
        }
        if p.operation != operation {
            *p = Pending { operation, ..Pending::default() };
        }
        if let Some(at) = p.retry_at.filter(|at| *at > now) {
            return Err(Refused::BackingOff(at));
        }
        p.running = true;
        Ok(())
    }

    /// Releases `key`: success forgets it, failure sets the next retry time, which it returns.
    pub fn finish(&self, key: &str, ok: bool, now: Instant) -> Option<Instant> {
        let mut ops = self.ops.lock();
        if ok {
            ops.remove(key);
            return None;
        }
        let p = ops.entry(key.to_string()).or_default();
        p.running = false;
        p.failures += 1;
        let at = now + backoff(p.failures);
        p.retry_at = Some(at);
        Some(at)
    }

    /// Whether an operation on `key` is running.
    pub fn is_running(&self, key: &str) -> bool {
        self.ops.lock().get(key).is_some_and(|p| p.running)
    }

    /// Whether any operation on a key starting with `prefix` is running.
    pub fn any_running(&self, prefix: &str) -> bool {
        self.ops.lock().iter().any(|(k, p)| p.running && k.starts_with(prefix))
    }

    /// Forgets the backoff of `key` (the desired state changed, so the next attempt may succeed).
    pub fn reset(&self, key: &str) {
        let mut ops = self.ops.lock();
        if ops.get(key).is_some_and(|p| !p.running) {
            ops.remove(key);
        }
    }

    /// Number of operations running.
    pub fn running(&self) -> usize {
        self.ops.lock().values().filter(|p| p.running).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_one_operation_per_key_at_a_time() {
        let e = Executor::default();
        let now = Instant::now();
        e.try_start("v", "mount", now).unwrap();
        assert_eq!(e.try_start("v", "mount", now), Err(Refused::Running));
        e.try_start("w", "mount", now).unwrap();
        e.finish("v", true, now);
        e.try_start("v", "mount", now).unwrap();
    }

    #[test]
    fn backs_off_exponentially_up_to_kubelets_maximum() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(30), MAX_BACKOFF);
        let e = Executor::default();
        let now = Instant::now();
        e.try_start("v", "mount", now).unwrap();
        let at = e.finish("v", false, now).unwrap();
        assert_eq!(e.try_start("v", "mount", now), Err(Refused::BackingOff(at)));
        e.try_start("v", "mount", at).unwrap();
    }

    #[test]
    fn a_different_operation_on_a_key_does_not_wait_for_the_failed_ones_backoff() {
        let e = Executor::default();
        let mut now = Instant::now();
        let mut retry_at = now;
        for _ in 0..8 {
            now = retry_at;
            e.try_start("pod/u/subpaths", "set up subpaths", now).unwrap();
            retry_at = e.finish("pod/u/subpaths", false, now).unwrap();
        }
        assert_eq!(retry_at - now, Duration::from_secs(64));
        assert_eq!(e.try_start("pod/u/subpaths", "set up subpaths", now), Err(Refused::BackingOff(retry_at)));
        // The pod was deleted: its teardown starts now, not two minutes later.
        e.try_start("pod/u/subpaths", "clean subpaths", now).unwrap();
        assert_eq!(e.try_start("pod/u/subpaths", "set up subpaths", now), Err(Refused::Running));
        let at = e.finish("pod/u/subpaths", false, now).unwrap();
        assert_eq!(at, now + INITIAL_BACKOFF, "the teardown's own backoff starts from the beginning");
    }
}
