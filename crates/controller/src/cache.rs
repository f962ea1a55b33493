//! Local copies of the objects the controllers watch, fed by `kube`'s watcher, and updated with the objects the
//! controllers themselves wrote, so the next step never works from a version older than its own last write
//! (the PV controller's "space shuttle style" caches). A watch event older than what the cache holds is ignored.

use crate::index::VolumeIndex;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::ResourceExt;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

/// Whether `new` is at least as recent as `old`. Resource versions are opaque to clients, but both kvol's store
/// and etcd use increasing integers, which is what Kubernetes' own controller compares too; anything else is
/// treated as newer.
pub fn is_newer_or_same(new: Option<&str>, old: Option<&str>) -> bool {
    match (new.and_then(|v| v.parse::<u64>().ok()), old.and_then(|v| v.parse::<u64>().ok())) {
        (Some(n), Some(o)) => n >= o,
        _ => true,
    }
}

/// Whether an object is deleted for good: deletionTimestamp set and no finalizer left.
pub fn is_gone<K: kube::Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some() && obj.meta().finalizers.as_ref().is_none_or(|f| f.is_empty())
}

/// "namespace/name", or "name" for cluster-scoped objects.
pub fn object_key<K: kube::Resource>(obj: &K) -> String {
    match obj.meta().namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", obj.name_any()),
        _ => obj.name_any(),
    }
}

/// Objects of one kind by key.
pub struct Cache<K> {
    objects: RwLock<HashMap<String, Arc<K>>>,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Cache { objects: RwLock::new(HashMap::new()) }
    }
}

impl<K: kube::Resource + Clone> Cache<K> {
    /// An object by key.
    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.objects.read().get(key).cloned()
    }

    /// Store an object unless the cache holds a newer version; returns whether it was stored. An object that
    /// is being deleted and has no finalizer left is gone (the reply to the write that removed its last
    /// finalizer may arrive after the watch's DELETE): it is dropped, never stored.
    pub fn apply(&self, obj: K) -> bool {
        let key = object_key(&obj);
        let mut objects = self.objects.write();
        if is_gone(&obj) {
            objects.remove(&key);
            return false;
        }
        if let Some(old) = objects.get(&key) {
            if !is_newer_or_same(obj.meta().resource_version.as_deref(), old.meta().resource_version.as_deref()) {
                return false;
            }
        }
        objects.insert(key, Arc::new(obj));
        true
    }

    /// Forget an object.
    pub fn delete(&self, key: &str) -> Option<Arc<K>> {
        self.objects.write().remove(key)
    }

    /// Replace everything (after a relist).
    pub fn replace_all(&self, objs: Vec<K>) {
        let map = objs.into_iter().map(|o| (object_key(&o), Arc::new(o))).collect();
        *self.objects.write() = map;
    }

    /// Every object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.objects.read().values().cloned().collect()
    }

    /// Objects matching a predicate.
    pub fn filter(&self, f: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        self.objects.read().values().filter(|o| f(o)).cloned().collect()
    }

    /// How many objects are held.
    pub fn len(&self) -> usize {
        self.objects.read().len()
    }

    /// Whether no object is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The PersistentVolumes, with the matching index.
#[derive(Default)]
pub struct VolumeCache {
    index: RwLock<VolumeIndex>,
}

impl VolumeCache {
    /// A volume by name.
    pub fn get(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.index.read().get(name)
    }

    /// Store a volume unless a newer version is held; returns whether it was stored (see [`Cache::apply`]).
    pub fn apply(&self, pv: PersistentVolume) -> bool {
        let mut index = self.index.write();
        if is_gone(&pv) {
            index.remove(&pv.name_any());
            return false;
        }
        if let Some(old) = index.get(&pv.name_any()) {
            if !is_newer_or_same(pv.metadata.resource_version.as_deref(), old.metadata.resource_version.as_deref()) {
                return false;
            }
        }
        index.upsert(Arc::new(pv));
        true
    }

    /// Forget a volume.
    pub fn delete(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.index.write().remove(name)
    }

    /// Replace everything (after a relist).
    pub fn replace_all(&self, pvs: Vec<PersistentVolume>) {
        let mut index = self.index.write();
        index.clear();
        for pv in pvs {
            index.upsert(Arc::new(pv));
        }
    }

    /// Read access to the index.
    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, VolumeIndex> {
        self.index.read()
    }

    /// Every volume.
    pub fn list(&self) -> Vec<Arc<PersistentVolume>> {
        self.index.read().all().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::fixtures::{pv, PvExt};

    #[test]
    fn the_reply_to_the_write_that_removed_the_last_finalizer_does_not_resurrect_the_object() {
        let cache = VolumeCache::default();
        cache.apply(pv("a"));
        let mut gone = pv("a").deleting();
        gone.metadata.finalizers = Some(vec![]);
        assert!(!cache.apply(gone));
        assert!(cache.get("a").is_none());
    }

    #[test]
    fn an_older_watch_event_does_not_replace_a_newer_write() {
        let cache = VolumeCache::default();
        let mut newer = pv("a");
        newer.metadata.resource_version = Some("10".into());
        let mut older = pv("a");
        older.metadata.resource_version = Some("9".into());
        older.status.as_mut().unwrap().phase = Some("Pending".into());
        assert!(cache.apply(newer));
        assert!(!cache.apply(older));
        assert_eq!(cache.get("a").unwrap().metadata.resource_version.as_deref(), Some("10"));
    }
}
