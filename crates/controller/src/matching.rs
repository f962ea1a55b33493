//! Which PersistentVolume a claim gets: Kubernetes' `FindMatchingVolume` (`component-helpers/storage/volume/
//! pv_helpers.go`) and the PV controller's access-mode index (`pkg/controller/volume/persistentvolume/index.go`),
//! as pure functions over `k8s-openapi` objects.
//!
//! The controller does not call [`find_best_match`] on every volume; its [`crate::index::VolumeIndex`] visits
//! candidates in the same order and asks [`check_candidate`] about each, so both share one predicate.

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeSpec,
};
use kvol_api::selector::Selector;
use kvol_api::ParsedQuantity;
use std::collections::{BTreeMap, HashSet};

/// The beta annotation that named a class before `storageClassName` existed; Kubernetes still reads it.
const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// A claim's storage class, `""` when none (`GetPersistentVolumeClaimClass`).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    if let Some(class) = claim.metadata.annotations.as_ref().and_then(|a| a.get(ANN_BETA_STORAGE_CLASS)) {
        return class;
    }
    claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("")
}

/// A volume's storage class, `""` when none (`GetPersistentVolumeClass`).
pub fn volume_class(volume: &PersistentVolume) -> &str {
    if let Some(class) = volume.metadata.annotations.as_ref().and_then(|a| a.get(ANN_BETA_STORAGE_CLASS)) {
        return class;
    }
    volume.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("")
}

/// The storage a claim requests (zero when it requests none).
pub fn claim_request(claim: &PersistentVolumeClaim) -> ParsedQuantity {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| kvol_api::quantity::parse(q).ok())
        .unwrap_or_else(zero)
}

/// A volume's storage capacity (zero when it has none or it does not parse).
pub fn volume_capacity(volume: &PersistentVolume) -> ParsedQuantity {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| kvol_api::quantity::parse(q).ok())
        .unwrap_or_else(zero)
}

fn zero() -> ParsedQuantity {
    kvol_api::parse_quantity("0").expect("0 is a quantity")
}

/// Access modes as a bit set, so "superset of" is one `&`.
pub type ModeSet = u8;

/// The bit of one access mode; unknown modes get their own bit so they never match a known one.
fn mode_bit(mode: &str) -> ModeSet {
    match mode {
        "ReadWriteOnce" => 1,
        "ReadOnlyMany" => 2,
        "ReadWriteMany" => 4,
        "ReadWriteOncePod" => 8,
        _ => 16,
    }
}

/// The access modes of a list, as a set.
pub fn mode_set(modes: Option<&Vec<String>>) -> ModeSet {
    modes.map(|m| m.iter().fold(0, |acc, mode| acc | mode_bit(mode))).unwrap_or(0)
}

/// A volume's access modes.
pub fn volume_modes(volume: &PersistentVolume) -> ModeSet {
    mode_set(volume.spec.as_ref().and_then(|s| s.access_modes.as_ref()))
}

/// A claim's access modes.
pub fn claim_modes(claim: &PersistentVolumeClaim) -> ModeSet {
    mode_set(claim.spec.as_ref().and_then(|s| s.access_modes.as_ref()))
}

/// Whether the volume offers every mode the claim asks for (`CheckAccessModes`).
pub fn check_access_modes(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
    let wanted = claim_modes(claim);
    volume_modes(volume) & wanted == wanted
}

/// Whether claim and volume disagree on volumeMode; unset means Filesystem (`CheckVolumeModeMismatches`).
pub fn volume_mode_mismatch(claim: Option<&PersistentVolumeClaimSpec>, volume: Option<&PersistentVolumeSpec>) -> bool {
    let requested = claim.and_then(|s| s.volume_mode.as_deref()).unwrap_or("Filesystem");
    let offered = volume.and_then(|s| s.volume_mode.as_deref()).unwrap_or("Filesystem");
    requested != offered
}

/// Whether the volume is pre-bound or bound to this claim: name and namespace equal, and the UID too when the
/// claimRef carries one (`IsVolumeBoundToClaim`).
pub fn is_volume_bound_to_claim(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(claim_ref) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    if claim_ref.name.as_deref() != claim.metadata.name.as_deref()
        || claim_ref.namespace.as_deref().unwrap_or("") != claim.metadata.namespace.as_deref().unwrap_or("")
    {
        return false;
    }
    match claim_ref.uid.as_deref() {
        None | Some("") => true,
        Some(uid) => claim.metadata.uid.as_deref() == Some(uid),
    }
}

/// The node facts node affinity is checked against.
#[derive(Debug, Clone, Copy)]
pub struct NodeFacts<'a> {
    /// `metadata.name` (for `matchFields`).
    pub name: &'a str,
    /// The node's labels.
    pub labels: &'a BTreeMap<String, String>,
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or(&[]);
    let number = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value.and_then(number), values) else { return false };
            let Some(bound) = number(bound) else { return false };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a node satisfies a node selector: terms are ORed, a term's requirements ANDed, and an empty term
/// matches nothing (`MatchNodeSelectorTerms`).
pub fn node_selector_matches(selector: &NodeSelector, node: NodeFacts<'_>) -> bool {
    selector.node_selector_terms.iter().any(|term| {
        let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
        let fields = term.match_fields.as_deref().unwrap_or(&[]);
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        exprs.iter().all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)))
            && fields.iter().all(|r| {
                let value = (r.key == "metadata.name").then_some(node.name);
                requirement_matches(r, value)
            })
    })
}

/// Whether a volume may be used on a node (`CheckNodeAffinity`); volumes without required affinity fit anywhere.
pub fn check_node_affinity(volume: &PersistentVolume, node: NodeFacts<'_>) -> bool {
    match volume.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref()) {
        None => true,
        Some(selector) => node_selector_matches(selector, node),
    }
}

/// A claim's request, parsed once for a whole search.
pub struct ClaimQuery<'a> {
    /// The claim.
    pub claim: &'a PersistentVolumeClaim,
    /// Its storage request.
    pub request: ParsedQuantity,
    /// Its class (`""` for none).
    pub class: &'a str,
    /// Its label selector, if any.
    pub selector: Option<Selector>,
}

impl<'a> ClaimQuery<'a> {
    /// Parse a claim's request. A selector that does not parse is an error, as in Kubernetes.
    pub fn new(claim: &'a PersistentVolumeClaim) -> Result<Self, String> {
        let selector = match claim.spec.as_ref().and_then(|s| s.selector.as_ref()) {
            None => None,
            Some(ls) => Some(Selector::from_label_selector(ls).map_err(|e| {
                format!(
                    "error creating internal label selector for claim: {}/{}: {}",
                    claim.metadata.namespace.as_deref().unwrap_or(""),
                    claim.metadata.name.as_deref().unwrap_or(""),
                    e.0
                )
            })?),
        };
        Ok(ClaimQuery { claim, request: claim_request(claim), class: claim_class(claim), selector })
    }
}

/// Where a search runs: the PV controller (no node, maybe delayed) or the scheduler (a node, excluded volumes).
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchScope<'a> {
    /// The node the scheduler evaluates; `None` in the PV controller.
    pub node: Option<NodeFacts<'a>>,
    /// Volumes already taken (by other claims of the same pod, or reserved by a bind in flight).
    pub excluded: Option<&'a HashSet<String>>,
    /// The claim's class binds on first consumer: only pre-bound volumes match without a node.
    pub delay_binding: bool,
}

/// What [`check_candidate`] thinks of one volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not usable for this claim.
    Skip,
    /// Pre-bound (or bound) to this claim and usable: it wins outright.
    PreBound,
    /// Pre-bound to this claim, but its node affinity rules out the node: no volume matches at all.
    PreBoundElsewhere,
    /// Usable; the smallest such volume wins.
    Candidate,
}

/// One step of `FindMatchingVolume`'s loop, in Kubernetes' order.
pub fn check_candidate(query: &ClaimQuery<'_>, volume: &PersistentVolume, scope: SearchScope<'_>) -> Verdict {
    let name = volume.metadata.name.as_deref().unwrap_or("");
    if scope.excluded.is_some_and(|e| e.contains(name)) {
        return Verdict::Skip;
    }
    let claim = query.claim;
    let spec = volume.spec.as_ref();
    let bound_to_claim = is_volume_bound_to_claim(volume, claim);
    if spec.and_then(|s| s.claim_ref.as_ref()).is_some() && !bound_to_claim {
        return Verdict::Skip;
    }
    if volume_capacity(volume) < query.request {
        return Verdict::Skip;
    }
    if volume_mode_mismatch(claim.spec.as_ref(), spec) {
        return Verdict::Skip;
    }
    if volume.metadata.deletion_timestamp.is_some() {
        return Verdict::Skip;
    }
    let affinity_ok = scope.node.is_none_or(|node| check_node_affinity(volume, node));
    if bound_to_claim {
        return if affinity_ok { Verdict::PreBound } else { Verdict::PreBoundElsewhere };
    }
    if scope.node.is_none() && scope.delay_binding {
        return Verdict::Skip;
    }
    if volume.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Available") {
        return Verdict::Skip;
    }
    if let Some(selector) = &query.selector {
        let empty = BTreeMap::new();
        if !selector.matches(volume.metadata.labels.as_ref().unwrap_or(&empty)) {
            return Verdict::Skip;
        }
    }
    if volume_class(volume) != query.class || !affinity_ok {
        return Verdict::Skip;
    }
    if scope.node.is_some() && !check_access_modes(claim, volume) {
        return Verdict::Skip;
    }
    Verdict::Candidate
}

/// `FindMatchingVolume`: the volume pre-bound to the claim, else the smallest candidate.
pub fn find_matching_volume<'v>(
    query: &ClaimQuery<'_>,
    volumes: impl IntoIterator<Item = &'v PersistentVolume>,
    scope: SearchScope<'_>,
) -> Option<&'v PersistentVolume> {
    let mut smallest: Option<(&PersistentVolume, ParsedQuantity)> = None;
    for volume in volumes {
        match check_candidate(query, volume, scope) {
            Verdict::Skip => {}
            Verdict::PreBound => return Some(volume),
            Verdict::PreBoundElsewhere => return None,
            Verdict::Candidate => {
                let capacity = volume_capacity(volume);
                if smallest.as_ref().is_none_or(|(_, q)| *q > capacity) {
                    smallest = Some((volume, capacity));
                }
            }
        }
    }
    smallest.map(|(v, _)| v)
}

/// The access-mode sets (index keys) a claim may use, tightest first (`allPossibleMatchingAccessModes`):
/// every set that contains all requested modes, ordered by how many modes it has.
pub fn matching_mode_sets(wanted: ModeSet, present: impl IntoIterator<Item = ModeSet>) -> Vec<ModeSet> {
    let mut sets: Vec<ModeSet> = present.into_iter().filter(|set| set & wanted == wanted).collect();
    sets.sort_unstable_by_key(|set| (set.count_ones(), *set));
    sets.dedup();
    sets
}

/// The PV controller's `findBestMatchForClaim`: volumes grouped by their exact access-mode set, groups tried
/// tightest first, [`find_matching_volume`] within each.
pub fn find_best_match<'v>(
    claim: &PersistentVolumeClaim,
    volumes: &'v [PersistentVolume],
    delay_binding: bool,
) -> Result<Option<&'v PersistentVolume>, String> {
    let query = ClaimQuery::new(claim)?;
    let scope = SearchScope { delay_binding, ..Default::default() };
    for set in matching_mode_sets(claim_modes(claim), volumes.iter().map(volume_modes)) {
        let group = volumes.iter().filter(|v| volume_modes(v) == set);
        if let Some(found) = find_matching_volume(&query, group, scope) {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Why a volume named by a claim's `volumeName` cannot serve it (`checkVolumeSatisfyClaim`), as the message
/// of the `VolumeMismatch` event.
pub fn check_volume_satisfies_claim(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Result<(), String> {
    let name = volume.metadata.name.as_deref().unwrap_or("");
    if volume.metadata.deletion_timestamp.is_some() {
        return Err(format!("the volume is marked for deletion {name:?}"));
    }
    if volume_capacity(volume) < claim_request(claim) {
        return Err("requested PV is too small".to_string());
    }
    if volume_class(volume) != claim_class(claim) {
        return Err("storageClassName does not match".to_string());
    }
    if volume_mode_mismatch(claim.spec.as_ref(), volume.spec.as_ref()) {
        return Err("incompatible volumeMode".to_string());
    }
    if !check_access_modes(claim, volume) {
        return Err("incompatible accessMode".to_string());
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Builders for test objects: `pv("a").capacity("1Gi").modes(&[RWO]).available()`.
    use k8s_openapi::api::core::v1::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, Time};

    pub const RWO: &str = "ReadWriteOnce";
    pub const ROX: &str = "ReadOnlyMany";
    pub const RWX: &str = "ReadWriteMany";
    pub const RWOP: &str = "ReadWriteOncePod";

    pub fn pv(name: &str) -> PersistentVolume {
        let mut v = PersistentVolume::default();
        v.metadata.name = Some(name.into());
        v.metadata.uid = Some(format!("uid-{name}"));
        v.spec = Some(PersistentVolumeSpec {
            capacity: Some([("storage".to_string(), Quantity("1Gi".into()))].into()),
            access_modes: Some(vec![RWO.into()]),
            ..Default::default()
        });
        v.status = Some(PersistentVolumeStatus { phase: Some("Available".into()), ..Default::default() });
        v
    }

    pub fn pvc(name: &str) -> PersistentVolumeClaim {
        let mut c = PersistentVolumeClaim::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("default".into());
        c.metadata.uid = Some(format!("uid-{name}"));
        c.spec = Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![RWO.into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), Quantity("1Gi".into()))].into()),
                ..Default::default()
            }),
            storage_class_name: Some(String::new()),
            ..Default::default()
        });
        c
    }

    pub trait PvExt: Sized {
        fn capacity(self, q: &str) -> Self;
        fn modes(self, m: &[&str]) -> Self;
        fn class(self, c: &str) -> Self;
        fn phase(self, p: &str) -> Self;
        fn block(self) -> Self;
        fn label(self, k: &str, v: &str) -> Self;
        fn claim_ref(self, ns: &str, name: &str, uid: Option<&str>) -> Self;
        fn deleting(self) -> Self;
        fn on_node(self, node: &str) -> Self;
    }

    impl PvExt for PersistentVolume {
        fn capacity(mut self, q: &str) -> Self {
            self.spec.as_mut().unwrap().capacity = Some([("storage".to_string(), Quantity(q.into()))].into());
            self
        }
        fn modes(mut self, m: &[&str]) -> Self {
            self.spec.as_mut().unwrap().access_modes = Some(m.iter().map(|s| s.to_string()).collect());
            self
        }
        fn class(mut self, c: &str) -> Self {
            self.spec.as_mut().unwrap().storage_class_name = Some(c.into());
            self
        }
        fn phase(mut self, p: &str) -> Self {
            self.status.as_mut().unwrap().phase = Some(p.into());
            self
        }
        fn block(mut self) -> Self {
            self.spec.as_mut().unwrap().volume_mode = Some("Block".into());
            self
        }
        fn label(mut self, k: &str, v: &str) -> Self {
            self.metadata.labels.get_or_insert_with(Default::default).insert(k.into(), v.into());
            self
        }
        fn claim_ref(mut self, ns: &str, name: &str, uid: Option<&str>) -> Self {
            self.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                uid: uid.map(Into::into),
                ..Default::default()
            });
            self
        }
        fn deleting(mut self) -> Self {
            self.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
            self
        }
        fn on_node(mut self, node: &str) -> Self {
            self.spec.as_mut().unwrap().node_affinity = Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".into(),
                            operator: "In".into(),
                            values: Some(vec![node.into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            });
            self
        }
    }

    pub trait PvcExt: Sized {
        fn requesting(self, q: &str) -> Self;
        fn modes(self, m: &[&str]) -> Self;
        fn class(self, c: Option<&str>) -> Self;
        fn block(self) -> Self;
        fn match_label(self, k: &str, v: &str) -> Self;
        fn match_expr(self, k: &str, op: &str, values: &[&str]) -> Self;
    }

    impl PvcExt for PersistentVolumeClaim {
        fn requesting(mut self, q: &str) -> Self {
            self.spec.as_mut().unwrap().resources.as_mut().unwrap().requests =
                Some([("storage".to_string(), Quantity(q.into()))].into());
            self
        }
        fn modes(mut self, m: &[&str]) -> Self {
            self.spec.as_mut().unwrap().access_modes = Some(m.iter().map(|s| s.to_string()).collect());
            self
        }
        fn class(mut self, c: Option<&str>) -> Self {
            self.spec.as_mut().unwrap().storage_class_name = c.map(Into::into);
            self
        }
        fn block(mut self) -> Self {
            self.spec.as_mut().unwrap().volume_mode = Some("Block".into());
            self
        }
        fn match_label(mut self, k: &str, v: &str) -> Self {
            let sel = self.spec.as_mut().unwrap().selector.get_or_insert_with(LabelSelector::default);
            sel.match_labels.get_or_insert_with(Default::default).insert(k.into(), v.into());
            self
        }
        fn match_expr(mut self, k: &str, op: &str, values: &[&str]) -> Self {
            let sel = self.spec.as_mut().unwrap().selector.get_or_insert_with(LabelSelector::default);
            sel.match_expressions.get_or_insert_with(Vec::new).push(LabelSelectorRequirement {
                key: k.into(),
                operator: op.into(),
                values: (!values.is_empty()).then(|| values.iter().map(|s| s.to_string()).collect()),
            });
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::index::VolumeIndex;
    use std::sync::Arc;

    struct Case {
        name: &'static str,
        claim: PersistentVolumeClaim,
        volumes: Vec<PersistentVolume>,
        delay_binding: bool,
        expect: Option<&'static str>,
    }

    fn case(
        name: &'static str,
        claim: PersistentVolumeClaim,
        volumes: Vec<PersistentVolume>,
        expect: Option<&'static str>,
    ) -> Case {
        Case { name, claim, volumes, delay_binding: false, expect }
    }

    fn cases() -> Vec<Case> {
        let c = || pvc("claim");
        vec![
            case("binds_the_only_volume_that_fits", c(), vec![pv("a")], Some("a")),
            case("finds_nothing_without_volumes", c(), vec![], None),
            case(
                "binds_the_smallest_volume_that_fits",
                c().requesting("1Gi"),
                vec![pv("big").capacity("10Gi"), pv("small").capacity("2Gi"), pv("mid").capacity("5Gi")],
                Some("small"),
            ),
            case("skips_volumes_smaller_than_the_request", c().requesting("5Gi"), vec![pv("a").capacity("4Gi")], None),
            case(
                "accepts_a_volume_exactly_the_requested_size",
                c().requesting("1024Mi"),
                vec![pv("a").capacity("1Gi")],
                Some("a"),
            ),
            case(
                "compares_quantities_across_units",
                c().requesting("1500M"),
                vec![pv("a").capacity("1Gi"), pv("b").capacity("2G")],
                Some("b"),
            ),
            case(
                "binds_a_claim_without_request_to_the_smallest_volume",
                {
                    let mut claim = c();
                    claim.spec.as_mut().unwrap().resources = None;
                    claim
                },
                vec![pv("a").capacity("3Gi"), pv("b").capacity("1Mi")],
                Some("b"),
            ),
            case(
                "prefers_a_volume_pre_bound_to_the_claim_over_a_smaller_one",
                c(),
                vec![pv("small").capacity("1Gi"), pv("pre").capacity("9Gi").claim_ref("default", "claim", None)],
                Some("pre"),
            ),
            case(
                "matches_a_pre_bound_volume_whose_uid_equals_the_claims",
                c(),
                vec![pv("pre").claim_ref("default", "claim", Some("uid-claim"))],
                Some("pre"),
            ),
            case(
                "skips_a_volume_pre_bound_to_an_older_claim_with_another_uid",
                c(),
                vec![pv("pre").claim_ref("default", "claim", Some("old-uid"))],
                None,
            ),
            case(
                "skips_a_volume_pre_bound_to_another_claim",
                c(),
                vec![pv("other").claim_ref("default", "someone-else", None)],
                None,
            ),
            case(
                "skips_a_volume_pre_bound_to_a_claim_of_the_same_name_in_another_namespace",
                c(),
                vec![pv("other").claim_ref("kube-system", "claim", None)],
                None,
            ),
            case(
                "binds_a_pre_bound_volume_even_in_another_class",
                c().class(Some("gold")),
                vec![pv("pre").class("silver").claim_ref("default", "claim", None)],
                Some("pre"),
            ),
            case(
                "binds_a_pre_bound_volume_even_if_its_phase_is_not_available",
                c(),
                vec![pv("pre").phase("Pending").claim_ref("default", "claim", None)],
                Some("pre"),
            ),
            case(
                "does_not_bind_a_pre_bound_volume_that_is_too_small",
                c().requesting("5Gi"),
                vec![pv("pre").capacity("1Gi").claim_ref("default", "claim", None)],
                None,
            ),
            case(
                "matches_class_empty_only_to_empty",
                c().class(Some("")),
                vec![pv("gold").class("gold"), pv("none")],
                Some("none"),
            ),
            case(
                "treats_a_claim_without_class_like_the_empty_class",
                c().class(None),
                vec![pv("gold").class("gold")],
                None,
            ),
            case(
                "binds_a_classed_claim_only_to_a_volume_of_that_class",
                c().class(Some("gold")),
                vec![
                    pv("none").capacity("1Gi"),
                    pv("silver").class("silver"),
                    pv("gold").class("gold").capacity("2Gi"),
                ],
                Some("gold"),
            ),
            case(
                "reads_the_beta_storage_class_annotation",
                {
                    let mut claim = c().class(None);
                    claim.metadata.annotations =
                        Some([(ANN_BETA_STORAGE_CLASS.to_string(), "gold".to_string())].into());
                    claim
                },
                vec![pv("gold").class("gold")],
                Some("gold"),
            ),
            case(
                "requires_every_requested_access_mode",
                c().modes(&[RWO, RWX]),
                vec![pv("rwo").modes(&[RWO]), pv("rwx").modes(&[RWX])],
                None,
            ),
            case(
                "binds_a_volume_whose_modes_are_a_superset",
                c().modes(&[ROX]),
                vec![pv("a").modes(&[RWO, ROX, RWX])],
                Some("a"),
            ),
            case(
                "prefers_the_tightest_access_mode_set_over_a_smaller_volume",
                c().modes(&[RWO]),
                vec![
                    pv("wide-small").modes(&[RWO, RWX]).capacity("1Gi"),
                    pv("tight-big").modes(&[RWO]).capacity("9Gi"),
                ],
                Some("tight-big"),
            ),
            case(
                "falls_back_to_a_wider_mode_set_when_the_tight_one_has_no_fit",
                c().modes(&[RWO]).requesting("5Gi"),
                vec![pv("tight").modes(&[RWO]).capacity("1Gi"), pv("wide").modes(&[RWO, ROX]).capacity("5Gi")],
                Some("wide"),
            ),
            case(
                "prefers_a_tight_smallest_volume_over_a_wide_pre_bound_one",
                c().modes(&[RWO]),
                vec![pv("tight").modes(&[RWO]), pv("wide-pre").modes(&[RWO, RWX]).claim_ref("default", "claim", None)],
                Some("tight"),
            ),
            case(
                "keeps_read_write_once_pod_apart_from_read_write_once",
                c().modes(&[RWOP]),
                vec![pv("rwo").modes(&[RWO])],
                None,
            ),
            case(
                "matches_any_volume_when_the_claim_lists_no_access_modes",
                c().modes(&[]),
                vec![pv("rwx").modes(&[RWX])],
                Some("rwx"),
            ),
            case("skips_a_block_volume_for_a_filesystem_claim", c(), vec![pv("block").block()], None),
            case("skips_a_filesystem_volume_for_a_block_claim", c().block(), vec![pv("fs")], None),
            case(
                "binds_a_block_volume_to_a_block_claim",
                c().block(),
                vec![pv("fs"), pv("block").block()],
                Some("block"),
            ),
            case(
                "skips_volumes_being_deleted",
                c(),
                vec![pv("deleting").deleting(), pv("alive").capacity("2Gi")],
                Some("alive"),
            ),
            case(
                "skips_a_pre_bound_volume_being_deleted",
                c(),
                vec![pv("pre").deleting().claim_ref("default", "claim", None)],
                None,
            ),
            case("skips_volumes_still_pending", c(), vec![pv("pending").phase("Pending")], None),
            case("skips_released_volumes", c(), vec![pv("released").phase("Released")], None),
            case("skips_failed_volumes", c(), vec![pv("failed").phase("Failed")], None),
            case(
                "matches_labels_of_the_selector",
                c().match_label("release", "stable"),
                vec![pv("canary").label("release", "canary"), pv("stable").label("release", "stable").capacity("5Gi")],
                Some("stable"),
            ),
            case(
                "matches_the_seeds_selector_with_labels_and_an_in_expression",
                c().match_label("release", "stable").match_expr("environment", "In", &["dev"]),
                vec![
                    pv("prod").label("release", "stable").label("environment", "prod"),
                    pv("dev").label("release", "stable").label("environment", "dev").capacity("2Gi"),
                ],
                Some("dev"),
            ),
            case(
                "honours_a_not_in_expression",
                c().match_expr("tier", "NotIn", &["slow"]),
                vec![pv("slow").label("tier", "slow"), pv("unlabelled").capacity("2Gi")],
                Some("unlabelled"),
            ),
            case(
                "honours_an_exists_expression",
                c().match_expr("zone", "Exists", &[]),
                vec![pv("nozone"), pv("zoned").label("zone", "a").capacity("3Gi")],
                Some("zoned"),
            ),
            case(
                "honours_a_does_not_exist_expression",
                c().match_expr("zone", "DoesNotExist", &[]),
                vec![pv("zoned").label("zone", "a"), pv("plain").capacity("3Gi")],
                Some("plain"),
            ),
            case(
                "ignores_the_selector_for_a_pre_bound_volume",
                c().match_label("release", "stable"),
                vec![pv("pre").claim_ref("default", "claim", None)],
                Some("pre"),
            ),
            Case {
                name: "leaves_unbound_volumes_alone_when_binding_waits_for_the_first_consumer",
                claim: c(),
                volumes: vec![pv("a")],
                delay_binding: true,
                expect: None,
            },
            Case {
                name: "still_binds_a_pre_bound_volume_when_binding_waits_for_the_first_consumer",
                claim: c(),
                volumes: vec![pv("a"), pv("pre").claim_ref("default", "claim", None)],
                delay_binding: true,
                expect: Some("pre"),
            },
        ]
    }

    #[test]
    fn find_best_match_follows_kubernetes_for_every_case() {
        let cases = cases();
        assert!(cases.len() >= 30, "at least 30 matching cases");
        for case in cases {
            let got = find_best_match(&case.claim, &case.volumes, case.delay_binding).unwrap();
            let got = got.and_then(|v| v.metadata.name.as_deref());
            assert_eq!(got, case.expect, "case {}", case.name);
        }
    }

    #[test]
    fn the_index_agrees_with_find_best_match_for_every_case() {
        for case in cases() {
            let mut index = VolumeIndex::default();
            for v in &case.volumes {
                index.upsert(Arc::new(v.clone()));
            }
            let got = index.find_best_match(&case.claim, &HashSet::new(), case.delay_binding).unwrap();
            let got = got.as_ref().and_then(|v| v.metadata.name.as_deref());
            assert_eq!(got, case.expect, "case {}", case.name);
        }
    }

    struct NodeCase {
        name: &'static str,
        volume: PersistentVolume,
        expect: bool,
    }

    #[test]
    fn node_affinity_follows_node_selector_terms() {
        use k8s_openapi::api::core::v1::*;
        let labels: BTreeMap<String, String> =
            [("kubernetes.io/hostname".to_string(), "n1".to_string()), ("cpus".to_string(), "8".to_string())].into();
        let node = NodeFacts { name: "n1", labels: &labels };
        let with_term = |exprs: Vec<(&str, &str, &[&str])>, fields: Vec<(&str, &str, &[&str])>| {
            let req = |(k, op, vals): (&str, &str, &[&str])| NodeSelectorRequirement {
                key: k.into(),
                operator: op.into(),
                values: Some(vals.iter().map(|s| s.to_string()).collect()),
            };
            let mut v = pv("v");
            v.spec.as_mut().unwrap().node_affinity = Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(exprs.into_iter().map(req).collect()),
                        match_fields: Some(fields.into_iter().map(req).collect()),
                    }],
                }),
            });
            v
        };
        let cases = [
            NodeCase { name: "a_volume_without_affinity_fits_any_node", volume: pv("v"), expect: true },
            NodeCase { name: "a_volume_pinned_to_the_node_fits", volume: pv("v").on_node("n1"), expect: true },
            NodeCase {
                name: "a_volume_pinned_to_another_node_does_not_fit",
                volume: pv("v").on_node("n2"),
                expect: false,
            },
            NodeCase {
                name: "gt_compares_numerically",
                volume: with_term(vec![("cpus", "Gt", &["4"])], vec![]),
                expect: true,
            },
            NodeCase {
                name: "lt_compares_numerically",
                volume: with_term(vec![("cpus", "Lt", &["4"])], vec![]),
                expect: false,
            },
            NodeCase {
                name: "match_fields_compare_the_node_name",
                volume: with_term(vec![], vec![("metadata.name", "In", &["n1"])]),
                expect: true,
            },
            NodeCase { name: "an_empty_term_matches_nothing", volume: with_term(vec![], vec![]), expect: false },
        ];
        for case in cases {
            assert_eq!(check_node_affinity(&case.volume, node), case.expect, "case {}", case.name);
        }
    }

    #[test]
    fn the_scheduler_path_checks_node_affinity_and_access_modes() {
        let labels: BTreeMap<String, String> = [("kubernetes.io/hostname".to_string(), "n1".to_string())].into();
        let node = NodeFacts { name: "n1", labels: &labels };
        let claim = pvc("claim").modes(&[RWX]);
        let volumes = [
            pv("elsewhere").modes(&[RWX]).on_node("n2"),
            pv("rwo-here").on_node("n1"),
            pv("here").modes(&[RWX]).on_node("n1"),
        ];
        let query = ClaimQuery::new(&claim).unwrap();
        let scope = SearchScope { node: Some(node), delay_binding: true, ..Default::default() };
        let got = find_matching_volume(&query, volumes.iter(), scope).and_then(|v| v.metadata.name.as_deref());
        assert_eq!(got, Some("here"));
        let excluded: HashSet<String> = ["here".to_string()].into();
        let scope = SearchScope { excluded: Some(&excluded), ..scope };
        assert!(find_matching_volume(&query, volumes.iter(), scope).is_none());
    }

    #[test]
    fn a_pre_bound_volume_on_another_node_means_no_match_at_all() {
        let labels: BTreeMap<String, String> = [("kubernetes.io/hostname".to_string(), "n1".to_string())].into();
        let node = NodeFacts { name: "n1", labels: &labels };
        let claim = pvc("claim");
        let volumes = [pv("free").on_node("n1"), pv("pre").on_node("n2").claim_ref("default", "claim", None)];
        let query = ClaimQuery::new(&claim).unwrap();
        let scope = SearchScope { node: Some(node), ..Default::default() };
        // Kubernetes returns at the pre-bound volume, whatever was found before it.
        let got = find_matching_volume(&query, volumes.iter().rev(), scope);
        assert!(got.is_none());
    }

    #[test]
    fn check_volume_satisfies_claim_names_the_mismatch() {
        let claim = pvc("c").requesting("2Gi");
        assert_eq!(check_volume_satisfies_claim(&pv("v"), &claim).unwrap_err(), "requested PV is too small");
        let claim = pvc("c").class(Some("gold"));
        assert_eq!(check_volume_satisfies_claim(&pv("v"), &claim).unwrap_err(), "storageClassName does not match");
        let claim = pvc("c").block();
        assert_eq!(check_volume_satisfies_claim(&pv("v"), &claim).unwrap_err(), "incompatible volumeMode");
        let claim = pvc("c").modes(&[RWX]);
        assert_eq!(check_volume_satisfies_claim(&pv("v"), &claim).unwrap_err(), "incompatible accessMode");
        assert!(check_volume_satisfies_claim(&pv("v"), &pvc("c")).is_ok());
    }
}
