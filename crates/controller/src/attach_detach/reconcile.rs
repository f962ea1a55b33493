//! The reconciler's decisions (`reconciler/reconciler.go`): diff the desired and the actual state and say
//! what to start. No I/O here; the controller carries the decisions out.
//!
//! Detaches come first, so a volume moving to another node is released before it is attached there. A
//! volume no longer desired on a node is detached only once the node no longer lists it in
//! `status.volumesInUse`, or once `max_wait_for_unmount` has passed since the detach was first wanted (the
//! node may be gone for good), or at once on a node tainted `node.kubernetes.io/out-of-service`. A volume
//! that may be attached to one node only (a ReadWriteOnce PV) is not attached to a second node while the
//! first still has it: the pods get a `Multi-Attach error` event instead, once.

use super::actual::{ActualState, AttachState};
use super::desired::{AttachSource, DesiredState, VolumeNode};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// One thing to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Attach the desired volume.
    Attach(VolumeNode),
    /// Detach the volume: first drop it from the node's status (unless already detaching), then detach.
    /// `force`: the node still reports it in use but the wait is over.
    Detach {
        /// The volume and node.
        key: VolumeNode,
        /// Whether this overrides the node's `volumesInUse`.
        force: bool,
    },
    /// Tell the pods the volume is held by another node.
    MultiAttachError {
        /// The volume and the node that wants it.
        key: VolumeNode,
        /// The nodes that have it.
        others: Vec<String>,
    },
}

/// What to start now, and when to look again at the latest.
#[derive(Debug, Default)]
pub struct Plan {
    /// The decisions, detaches first.
    pub decisions: Vec<Decision>,
    /// The earliest moment a wait ends (a backoff, the unmount wait, an attacher's timeout).
    pub next_wake: Option<Instant>,
}

impl Plan {
    fn wake_at(&mut self, at: Instant) {
        self.next_wake = Some(self.next_wake.map_or(at, |w| w.min(at)));
    }
}

/// Operations running and failures backing off, per volume and node (kube's `nestedpendingoperations` and
/// `exponentialbackoff`): one operation per volume and node; an attach of a volume that allows one node
/// excludes every other operation on that volume.
#[derive(Debug, Default)]
pub struct Operations {
    running: HashMap<String, Vec<(String, bool)>>,
    failures: HashMap<VolumeNode, (u32, Instant)>,
    multi_attach_reported: BTreeSet<VolumeNode>,
    parked: BTreeSet<VolumeNode>,
}

impl Operations {
    /// Whether an operation on `key` would collide with a running (or parked) one.
    pub fn is_running(&self, key: &VolumeNode, exclusive: bool) -> bool {
        self.running.get(&key.volume).is_some_and(|ops| {
            ops.iter().any(|(node, other_exclusive)| *node == key.node || exclusive || *other_exclusive)
        })
    }

    /// Until when `key` backs off after failures.
    pub fn retry_at(&self, key: &VolumeNode) -> Option<Instant> {
        self.failures.get(key).map(|(_, at)| *at)
    }

    /// Records an operation start.
    pub fn start(&mut self, key: &VolumeNode, exclusive: bool) {
        self.running.entry(key.volume.clone()).or_default().push((key.node.clone(), exclusive));
    }

    /// Records an operation end.
    pub fn finish(&mut self, key: &VolumeNode) {
        if let Some(ops) = self.running.get_mut(&key.volume) {
            if let Some(i) = ops.iter().position(|(node, _)| *node == key.node) {
                ops.remove(i);
            }
            if ops.is_empty() {
                self.running.remove(&key.volume);
            }
        }
    }

    /// Keeps the operation on `key` running, though its task has ended, until [`Operations::unpark_all`]:
    /// it waits for someone else (the CSI attacher), so trying again before anything changed is pointless,
    /// and meanwhile it excludes what it excluded while it ran (kube's attacher holds the operation while it
    /// waits).
    pub fn park(&mut self, key: &VolumeNode) {
        self.parked.insert(key.clone());
    }

    /// Ends every parked operation (something changed, or a wait ended), so it is decided again.
    pub fn unpark_all(&mut self) {
        for key in std::mem::take(&mut self.parked) {
            self.finish(&key);
        }
    }

    /// Counts a failure; the next try waits `base * 2^(n-1)` up to `max`. Returns the failure count.
    pub fn failed(&mut self, key: &VolumeNode, backoff: &kvol_runtime::Backoff, now: Instant) -> u32 {
        let n = self.failures.get(key).map_or(0, |(n, _)| *n) + 1;
        self.failures.insert(key.clone(), (n, now + backoff.delay(n)));
        n
    }

    /// Forgets the failures of `key` (it succeeded).
    pub fn succeeded(&mut self, key: &VolumeNode) {
        self.failures.remove(key);
    }

    /// Whether a Multi-Attach error was reported for `key` (and records that it now is).
    fn report_multi_attach_once(&mut self, key: &VolumeNode) -> bool {
        self.multi_attach_reported.insert(key.clone())
    }

    /// Forgets what no longer matters: Multi-Attach reports of volumes no longer desired, failures of volumes
    /// neither desired nor attached.
    fn prune(&mut self, desired: &DesiredState, actual: &ActualState) {
        self.multi_attach_reported.retain(|k| desired.contains(k));
        self.failures.retain(|k, _| desired.contains(k) || actual.volumes.contains_key(k));
    }
}

/// The waits the decisions honour.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a volume still in use may keep a detach waiting.
    pub max_wait_for_unmount: Duration,
}

/// Decides what to start, and records each attach and detach it decides as running (so that later volumes
/// of the same pass see it; the caller ends it with [`Operations::finish`] when the operation ends, or at
/// once if it does not start it). It stamps `detach_requested_at` on attachments that are no longer desired and
/// clears it on those desired again (kube's `SetDetachRequestTime`/`ResetDetachRequestTime`).
pub fn decide(
    desired: &DesiredState,
    actual: &mut ActualState,
    ops: &mut Operations,
    out_of_service: &BTreeSet<String>,
    timing: Timing,
    now: Instant,
) -> Plan {
    let mut plan = Plan::default();
    ops.prune(desired, actual);
    for (key, volume) in actual.volumes.iter_mut() {
        if desired.unmanaged_nodes.contains(&key.node) {
            continue; // its agent attaches and detaches by itself
        }
        let wanted = desired.contains(key);
        let force = match volume.state {
            AttachState::Detaching => false,
            _ if wanted => {
                volume.detach_requested_at = None;
                continue;
            }
            _ => {
                let since = *volume.detach_requested_at.get_or_insert(now);
                let deadline = since + timing.max_wait_for_unmount;
                if volume.mounted_by_node && now < deadline && !out_of_service.contains(&key.node) {
                    plan.wake_at(deadline);
                    continue;
                }
                volume.mounted_by_node
            }
        };
        if ops.is_running(key, false) {
            continue;
        }
        if let Some(at) = ops.retry_at(key).filter(|at| *at > now) {
            plan.wake_at(at);
            continue;
        }
        ops.start(key, false);
        plan.decisions.push(Decision::Detach { key: key.clone(), force });
    }
    for (key, want) in &desired.volumes {
        if matches!(want.source, AttachSource::PluginMissing { .. }) {
            continue;
        }
        if actual.volumes.get(key).is_some_and(|v| v.state != AttachState::Uncertain) {
            continue; // attached, or detaching (attached again once that is done)
        }
        let exclusive = !want.multi_attach;
        if exclusive {
            let others = actual.other_nodes_holding(&key.volume, &key.node);
            if !others.is_empty() {
                if ops.report_multi_attach_once(key) {
                    plan.decisions.push(Decision::MultiAttachError { key: key.clone(), others });
                }
                continue;
            }
        }
        if ops.is_running(key, exclusive) {
            continue;
        }
        if let Some(at) = ops.retry_at(key).filter(|at| *at > now) {
            plan.wake_at(at);
            continue;
        }
        ops.start(key, exclusive);
        plan.decisions.push(Decision::Attach(key.clone()));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::super::actual::AttachedVolume;
    use super::super::desired::DesiredVolume;
    use super::*;
    use kvol_runtime::Backoff;

    const CSI_VOL: &str = "kubernetes.io/csi/d^h";
    const SIX_MINUTES: Duration = Duration::from_secs(360);

    fn timing() -> Timing {
        Timing { max_wait_for_unmount: SIX_MINUTES }
    }

    fn want(desired: &mut DesiredState, volume: &str, node: &str, multi_attach: bool) {
        let source = AttachSource::Csi { driver: "d".into(), handle: "h".into(), pv: "pv".into() };
        desired.volumes.insert(
            VolumeNode::new(volume, node),
            DesiredVolume { source, spec_name: "pv".into(), multi_attach, pods: Vec::new() },
        );
    }

    fn have(actual: &mut ActualState, volume: &str, node: &str, state: AttachState, in_use: bool) {
        actual.volumes.insert(
            VolumeNode::new(volume, node),
            AttachedVolume {
                state,
                mounted_by_node: in_use,
                detach_requested_at: None,
                waiting_since: None,
                reported: true,
                plugin: None,
            },
        );
    }

    fn attached() -> AttachState {
        AttachState::Attached { device_path: String::new() }
    }

    struct Case {
        name: &'static str,
        desired: Vec<(&'static str, &'static str, bool)>,
        actual: Vec<(&'static str, &'static str, AttachState, bool)>,
        want: Vec<Decision>,
    }

    #[test]
    fn decides_attaches_and_detaches() {
        let key = |n: &str| VolumeNode::new(CSI_VOL, n);
        let cases = vec![
            Case {
                name: "a desired volume not attached is attached",
                desired: vec![(CSI_VOL, "n1", false)],
                actual: vec![],
                want: vec![Decision::Attach(key("n1"))],
            },
            Case {
                name: "a desired volume already attached is left alone",
                desired: vec![(CSI_VOL, "n1", false)],
                actual: vec![(CSI_VOL, "n1", attached(), true)],
                want: vec![],
            },
            Case {
                name: "an uncertain attachment that is desired is attached again",
                desired: vec![(CSI_VOL, "n1", false)],
                actual: vec![(CSI_VOL, "n1", AttachState::Uncertain, false)],
                want: vec![Decision::Attach(key("n1"))],
            },
            Case {
                name: "a volume no longer desired and not in use is detached",
                desired: vec![],
                actual: vec![(CSI_VOL, "n1", attached(), false)],
                want: vec![Decision::Detach { key: key("n1"), force: false }],
            },
            Case {
                name: "a volume on a node its agent attaches for is not the controller's to detach",
                desired: vec![],
                actual: vec![(CSI_VOL, "self-attaching", attached(), false)],
                want: vec![],
            },
            Case {
                name: "a volume no longer desired but still in use waits",
                desired: vec![],
                actual: vec![(CSI_VOL, "n1", attached(), true)],
                want: vec![],
            },
            Case {
                name: "an uncertain attachment no longer desired is detached",
                desired: vec![],
                actual: vec![(CSI_VOL, "n1", AttachState::Uncertain, false)],
                want: vec![Decision::Detach { key: key("n1"), force: false }],
            },
            Case {
                name: "a detach in progress goes on even when the volume is desired again",
                desired: vec![(CSI_VOL, "n1", false)],
                actual: vec![(CSI_VOL, "n1", AttachState::Detaching, true)],
                want: vec![Decision::Detach { key: key("n1"), force: false }],
            },
            Case {
                name: "a single-node volume moving nodes is detached first and not attached meanwhile",
                desired: vec![(CSI_VOL, "n2", false)],
                actual: vec![(CSI_VOL, "n1", attached(), false)],
                want: vec![
                    Decision::Detach { key: key("n1"), force: false },
                    Decision::MultiAttachError { key: key("n2"), others: vec!["n1".into()] },
                ],
            },
            Case {
                name: "of two nodes wanting a single-node volume at once, one gets the attach",
                desired: vec![(CSI_VOL, "n1", false), (CSI_VOL, "n2", false)],
                actual: vec![],
                want: vec![Decision::Attach(key("n1"))],
            },
            Case {
                name: "a multi-attach volume is attached to a second node at once",
                desired: vec![(CSI_VOL, "n1", true), (CSI_VOL, "n2", true)],
                actual: vec![(CSI_VOL, "n1", attached(), true)],
                want: vec![Decision::Attach(key("n2"))],
            },
        ];
        for case in cases {
            let mut desired = DesiredState::default();
            desired.unmanaged_nodes.insert("self-attaching".into());
            for (v, n, multi) in &case.desired {
                want(&mut desired, v, n, *multi);
            }
            let mut actual = ActualState::default();
            for (v, n, state, in_use) in &case.actual {
                have(&mut actual, v, n, state.clone(), *in_use);
            }
            let plan =
                decide(&desired, &mut actual, &mut Operations::default(), &BTreeSet::new(), timing(), Instant::now());
            assert_eq!(plan.decisions, case.want, "{}", case.name);
        }
    }

    #[test]
    fn a_volume_in_use_is_force_detached_only_after_the_unmount_wait() {
        let mut actual = ActualState::default();
        have(&mut actual, CSI_VOL, "n1", attached(), true);
        let desired = DesiredState::default();
        let mut ops = Operations::default();
        let start = Instant::now();
        let none = BTreeSet::new();
        let plan = decide(&desired, &mut actual, &mut ops, &none, timing(), start);
        assert!(plan.decisions.is_empty());
        assert_eq!(plan.next_wake, Some(start + SIX_MINUTES), "wakes when the wait ends");
        let later = start + Duration::from_secs(300);
        assert!(decide(&desired, &mut actual, &mut ops, &none, timing(), later).decisions.is_empty());
        let after = start + SIX_MINUTES;
        let plan = decide(&desired, &mut actual, &mut ops, &none, timing(), after);
        assert_eq!(plan.decisions, vec![Decision::Detach { key: VolumeNode::new(CSI_VOL, "n1"), force: true }]);
    }

    #[test]
    fn the_unmount_wait_restarts_when_the_volume_is_desired_again() {
        let mut actual = ActualState::default();
        have(&mut actual, CSI_VOL, "n1", attached(), true);
        let mut ops = Operations::default();
        let none = BTreeSet::new();
        let start = Instant::now();
        decide(&DesiredState::default(), &mut actual, &mut ops, &none, timing(), start);
        let mut desired = DesiredState::default();
        want(&mut desired, CSI_VOL, "n1", false);
        decide(&desired, &mut actual, &mut ops, &none, timing(), start + Duration::from_secs(200));
        let plan = decide(&DesiredState::default(), &mut actual, &mut ops, &none, timing(), start + SIX_MINUTES);
        assert!(plan.decisions.is_empty(), "the wait counts from when the volume was last unwanted");
    }

    #[test]
    fn an_out_of_service_node_loses_its_volumes_at_once() {
        let mut actual = ActualState::default();
        have(&mut actual, CSI_VOL, "n1", attached(), true);
        let taint: BTreeSet<String> = ["n1".to_string()].into();
        let plan =
            decide(&DesiredState::default(), &mut actual, &mut Operations::default(), &taint, timing(), Instant::now());
        assert_eq!(plan.decisions, vec![Decision::Detach { key: VolumeNode::new(CSI_VOL, "n1"), force: true }]);
    }

    #[test]
    fn running_operations_and_backoff_hold_new_ones() {
        let key = VolumeNode::new(CSI_VOL, "n1");
        let mut desired = DesiredState::default();
        want(&mut desired, CSI_VOL, "n1", false);
        let mut actual = ActualState::default();
        let mut ops = Operations::default();
        let none = BTreeSet::new();
        let now = Instant::now();
        ops.start(&key, true);
        assert!(decide(&desired, &mut actual, &mut ops, &none, timing(), now).decisions.is_empty());
        assert!(ops.is_running(&VolumeNode::new(CSI_VOL, "n2"), false), "an exclusive attach holds every node");
        ops.finish(&key);
        let backoff = Backoff { base: Duration::from_millis(500), max: Duration::from_secs(122) };
        assert_eq!(ops.failed(&key, &backoff, now), 1);
        let plan = decide(&desired, &mut actual, &mut ops, &none, timing(), now);
        assert!(plan.decisions.is_empty());
        assert_eq!(plan.next_wake, Some(now + Duration::from_millis(500)));
        let plan = decide(&desired, &mut actual, &mut ops, &none, timing(), now + Duration::from_millis(500));
        assert_eq!(plan.decisions, vec![Decision::Attach(key.clone())]);
        assert!(ops.is_running(&key, true), "a decided attach counts as running");
        ops.park(&key);
        assert!(ops.is_running(&VolumeNode::new(CSI_VOL, "n2"), false), "a parked exclusive attach still excludes");
        ops.unpark_all();
        assert!(!ops.is_running(&VolumeNode::new(CSI_VOL, "n2"), false));
    }

    #[test]
    fn a_multi_attach_error_is_reported_once_per_wish() {
        let mut desired = DesiredState::default();
        want(&mut desired, CSI_VOL, "n2", false);
        let mut actual = ActualState::default();
        have(&mut actual, CSI_VOL, "n1", attached(), true);
        desired
            .volumes
            .insert(VolumeNode::new(CSI_VOL, "n1"), desired.volumes[&VolumeNode::new(CSI_VOL, "n2")].clone());
        let mut ops = Operations::default();
        let none = BTreeSet::new();
        let now = Instant::now();
        let first = decide(&desired, &mut actual, &mut ops, &none, timing(), now);
        assert_eq!(first.decisions.len(), 1);
        assert!(decide(&desired, &mut actual, &mut ops, &none, timing(), now).decisions.is_empty());
    }
}
