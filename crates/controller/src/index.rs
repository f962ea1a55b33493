//! The PV controller's volume index: unclaimed volumes by access-mode set, class and capacity, and pre-bound
//! volumes by the claim they name, so a claim finds its volume in O(log n) instead of scanning all of them.
//!
//! The visiting order reproduces `index.go findByClaim` + `FindMatchingVolume`: mode sets tightest first; in each,
//! a volume pre-bound to the claim wins, else the smallest candidate. The verdict on each volume is
//! [`crate::matching::check_candidate`], shared with the pure [`crate::matching::find_best_match`].

use crate::matching::{self, ClaimQuery, ModeSet, SearchScope, Verdict};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kvol_api::ParsedQuantity;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Where a volume sits in the index, kept to remove it again.
#[derive(Debug, Clone)]
struct Entry {
    modes: ModeSet,
    class: String,
    capacity: ParsedQuantity,
    claim: Option<String>,
}

/// Volumes by what claims ask for.
#[derive(Default)]
pub struct VolumeIndex {
    volumes: HashMap<String, Arc<PersistentVolume>>,
    entries: HashMap<String, Entry>,
    /// Unclaimed volumes: mode set → class → (capacity, name).
    unclaimed: BTreeMap<ModeSet, HashMap<String, BTreeSet<(ParsedQuantity, String)>>>,
    /// Volumes whose claimRef names a claim: "namespace/name" → volume names.
    by_claim: HashMap<String, BTreeSet<String>>,
    /// How many volumes have each mode set (the index keys `allPossibleMatchingAccessModes` looks at).
    mode_counts: BTreeMap<ModeSet, usize>,
}

/// The "namespace/name" key of the claim a volume's claimRef names.
pub fn claim_ref_key(volume: &PersistentVolume) -> Option<String> {
    let r = volume.spec.as_ref()?.claim_ref.as_ref()?;
    Some(format!("{}/{}", r.namespace.as_deref().unwrap_or(""), r.name.as_deref()?))
}

impl VolumeIndex {
    /// A volume by name.
    pub fn get(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes.get(name).cloned()
    }

    /// How many volumes are indexed.
    pub fn len(&self) -> usize {
        self.volumes.len()
    }

    /// Whether no volume is indexed.
    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty()
    }

    /// Every volume.
    pub fn all(&self) -> impl Iterator<Item = &Arc<PersistentVolume>> {
        self.volumes.values()
    }

    /// Add or replace a volume.
    pub fn upsert(&mut self, volume: Arc<PersistentVolume>) {
        let Some(name) = volume.metadata.name.clone() else { return };
        self.remove(&name);
        let entry = Entry {
            modes: matching::volume_modes(&volume),
            class: matching::volume_class(&volume).to_string(),
            capacity: matching::volume_capacity(&volume),
            claim: claim_ref_key(&volume),
        };
        *self.mode_counts.entry(entry.modes).or_default() += 1;
        match &entry.claim {
            Some(claim) => {
                self.by_claim.entry(claim.clone()).or_default().insert(name.clone());
            }
            None => {
                self.unclaimed
                    .entry(entry.modes)
                    .or_default()
                    .entry(entry.class.clone())
                    .or_default()
                    .insert((entry.capacity.clone(), name.clone()));
            }
        }
        self.entries.insert(name.clone(), entry);
        self.volumes.insert(name, volume);
    }

    /// Remove a volume; unknown names are ignored.
    pub fn remove(&mut self, name: &str) -> Option<Arc<PersistentVolume>> {
        let entry = self.entries.remove(name)?;
        if let Some(n) = self.mode_counts.get_mut(&entry.modes) {
            *n -= 1;
            if *n == 0 {
                self.mode_counts.remove(&entry.modes);
            }
        }
        match &entry.claim {
            Some(claim) => {
                if let Some(set) = self.by_claim.get_mut(claim) {
                    set.remove(name);
                    if set.is_empty() {
                        self.by_claim.remove(claim);
                    }
                }
            }
            None => {
                if let Some(classes) = self.unclaimed.get_mut(&entry.modes) {
                    if let Some(set) = classes.get_mut(&entry.class) {
                        set.remove(&(entry.capacity.clone(), name.to_string()));
                        if set.is_empty() {
                            classes.remove(&entry.class);
                        }
                    }
                    if classes.is_empty() {
                        self.unclaimed.remove(&entry.modes);
                    }
                }
            }
        }
        self.volumes.remove(name)
    }

    /// Drop everything (before a relist replaces it).
    pub fn clear(&mut self) {
        *self = VolumeIndex::default();
    }

    /// The volumes whose claimRef names this claim ("namespace/name").
    pub fn claimed_by(&self, claim_key: &str) -> Vec<Arc<PersistentVolume>> {
        self.by_claim
            .get(claim_key)
            .map(|names| names.iter().filter_map(|n| self.volumes.get(n).cloned()).collect())
            .unwrap_or_default()
    }

    /// The PV controller's best volume for a claim, skipping `excluded` (volumes reserved by binds in flight).
    pub fn find_best_match(
        &self,
        claim: &PersistentVolumeClaim,
        excluded: &HashSet<String>,
        delay_binding: bool,
    ) -> Result<Option<Arc<PersistentVolume>>, String> {
        let query = ClaimQuery::new(claim)?;
        let scope = SearchScope { node: None, excluded: Some(excluded), delay_binding };
        let claim_key = format!(
            "{}/{}",
            claim.metadata.namespace.as_deref().unwrap_or(""),
            claim.metadata.name.as_deref().unwrap_or("")
        );
        let pre_bound = self.claimed_by(&claim_key);
        for set in matching::matching_mode_sets(matching::claim_modes(claim), self.mode_counts.keys().copied()) {
            for volume in pre_bound.iter().filter(|v| matching::volume_modes(v) == set) {
                match matching::check_candidate(&query, volume, scope) {
                    Verdict::PreBound => return Ok(Some(volume.clone())),
                    Verdict::PreBoundElsewhere => return Ok(None),
                    Verdict::Skip | Verdict::Candidate => {}
                }
            }
            if delay_binding {
                continue;
            }
            let Some(candidates) = self.unclaimed.get(&set).and_then(|classes| classes.get(query.class)) else {
                continue;
            };
            let from = (query.request.clone(), String::new());
            for (_, name) in candidates.range(from..) {
                let Some(volume) = self.volumes.get(name) else { continue };
                if matching::check_candidate(&query, volume, scope) == Verdict::Candidate {
                    return Ok(Some(volume.clone()));
                }
            }
        }
        Ok(None)
    }
}
