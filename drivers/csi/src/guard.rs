//! One operation per volume (or snapshot) at a time: an RAII guard that answers ABORTED on collision.
//!
//! The spec lets a plugin refuse a second call for a volume that has a call in flight with ABORTED, and
//! the CO retries with backoff. Keys are volume ids, snapshot ids and names; a call takes every key it
//! touches at once (CreateSnapshot takes the snapshot id and its source volume id), or none.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// The set of keys with an operation in flight.
#[derive(Clone, Default)]
pub struct InFlight {
    keys: Arc<Mutex<HashSet<String>>>,
}

/// Held while an operation runs; releases its keys when dropped, also on error and panic.
#[must_use = "the keys are released as soon as the guard is dropped"]
pub struct OpGuard {
    keys: Arc<Mutex<HashSet<String>>>,
    held: Vec<String>,
}

impl InFlight {
    /// Takes all `keys`, or fails with [`Error::OperationPending`] naming the first busy one.
    pub fn try_begin(&self, keys: &[&str]) -> Result<OpGuard> {
        let mut set = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(busy) = keys.iter().find(|k| set.contains(**k)) {
            return Err(Error::OperationPending { key: (*busy).to_owned() });
        }
        let held: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        for k in &held {
            set.insert(k.clone());
        }
        Ok(OpGuard { keys: self.keys.clone(), held })
    }
}

impl Drop for OpGuard {
    fn drop(&mut self) {
        let mut set = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        for k in &self.held {
            set.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_operation_on_a_busy_volume_is_aborted_until_the_first_ends() {
        let inflight = InFlight::default();
        let first = inflight.try_begin(&["v1"]).unwrap();
        let err = inflight.try_begin(&["v2", "v1"]).err().unwrap();
        assert!(matches!(err, Error::OperationPending { ref key } if key == "v1"));
        // Nothing of the refused call is held.
        drop(inflight.try_begin(&["v2"]).unwrap());
        drop(first);
        drop(inflight.try_begin(&["v1"]).unwrap());
    }
}
