//! The reconciler (kubelet's `reconciler/reconciler.go`): diffs the desired and the actual state and says
//! which operations to run. It does no I/O; the [`crate::manager`] dispatches what it returns.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kvol_volume::{MounterArgs, PodRef};

use crate::actual::{ActualState, DeviceState, MountState};
use crate::desired::{DesiredPod, DesiredState, DesiredVolume};
use crate::volume_id::VolumeId;

/// One operation on the host.
#[derive(Clone)]
pub enum Operation {
    /// Set a volume up (also for uncertain volumes, and to refresh a projected volume).
    Mount { volume: DesiredVolume, pod: PodRef, args: MounterArgs },
    /// Tear a volume down.
    Unmount { id: VolumeId },
    /// Bind a pod's subPaths, once all its volumes are mounted.
    SetUpSubpaths { pod: Arc<Pod>, volume_paths: BTreeMap<String, PathBuf> },
    /// Unbind a gone pod's subPaths, before its volumes are torn down.
    CleanSubpaths { uid: String },
    /// Remove a gone pod's directory once its volumes are torn down (orphaned pod cleanup).
    RemovePodDir { uid: String },
    /// Attach (when the agent attaches) or wait for the controller's attach, then mount the device at its
    /// per-node global path, for `volume` of `pod` (kubelet's WaitForAttach + MountDevice).
    MountDevice { volume: DesiredVolume, pod: PodRef },
    /// Unmount a device no pod uses any more from its global path (kubelet's UnmountDevice).
    UnmountDevice { unique_name: String },
    /// Detach a device the agent attached, once UnmountDevice has succeeded (kubelet's DetachVolume with
    /// controller attach/detach disabled).
    Detach { unique_name: String },
}

/// The executor key of a device: shared by every pod using it, so its operations never overlap.
pub fn device_key(unique_name: &str) -> String {
    format!("device/{unique_name}")
}

impl Operation {
    /// The executor key: one operation per volume, and one per pod for the per-pod steps.
    pub fn key(&self) -> String {
        match self {
            Operation::Mount { volume, .. } => volume.id.to_string(),
            Operation::Unmount { id } => id.to_string(),
            Operation::SetUpSubpaths { pod, .. } => {
                format!("pod/{}/subpaths", pod.metadata.uid.as_deref().unwrap_or_default())
            }
            Operation::CleanSubpaths { uid } => format!("pod/{uid}/subpaths"),
            Operation::RemovePodDir { uid } => format!("pod/{uid}/dir"),
            Operation::MountDevice { volume, .. } => {
                device_key(volume.device.as_ref().map(|d| d.unique_name.as_str()).unwrap_or_default())
            }
            Operation::UnmountDevice { unique_name } | Operation::Detach { unique_name } => device_key(unique_name),
        }
    }

    /// The operation's name, which owns the backoff of its key when it fails (see [`crate::executor`]).
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Mount { .. } => "mount",
            Operation::Unmount { .. } => "unmount",
            Operation::SetUpSubpaths { .. } => "set up subpaths",
            Operation::CleanSubpaths { .. } => "clean subpaths",
            Operation::RemovePodDir { .. } => "remove pod dir",
            Operation::MountDevice { .. } => "mount device",
            Operation::UnmountDevice { .. } => "unmount device",
            Operation::Detach { .. } => "detach",
        }
    }

    /// The pod the operation is for.
    pub fn pod_uid(&self) -> &str {
        match self {
            Operation::Mount { volume, .. } => &volume.id.pod_uid,
            Operation::Unmount { id } => &id.pod_uid,
            Operation::SetUpSubpaths { pod, .. } => pod.metadata.uid.as_deref().unwrap_or_default(),
            Operation::CleanSubpaths { uid } | Operation::RemovePodDir { uid } => uid,
            Operation::MountDevice { pod, .. } => &pod.uid,
            Operation::UnmountDevice { .. } | Operation::Detach { .. } => "",
        }
    }
}

/// Which pods a pass looks at.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Every pod of both states (the periodic pass).
    All,
    /// Only these pods (a pass woken by changes to them).
    Pods(&'a HashSet<String>),
}

/// The operations that bring the actual state towards the desired one. Set-ups come first; teardown only
/// once the desired state is populated, so that nothing still wanted is unmounted after a restart.
pub fn plan(desired: &DesiredState, actual: &ActualState, scope: Scope<'_>) -> Vec<Operation> {
    let mut ops = Vec::new();
    let pods: Vec<&DesiredPod> = match scope {
        Scope::All => desired.pods().collect(),
        Scope::Pods(uids) => uids.iter().filter_map(|u| desired.pod(u)).collect(),
    };
    for pod in pods {
        let mut all_mounted = pod.errors.is_empty();
        let mut paths = BTreeMap::new();
        for v in pod.volumes.values() {
            if let Some(d) = &v.device {
                let ready = actual.device(&d.unique_name).is_some_and(|a| a.state == DeviceState::Mounted);
                if !ready {
                    all_mounted = false;
                    ops.push(Operation::MountDevice { volume: v.clone(), pod: pod.pod_ref.clone() });
                    continue;
                }
            }
            match actual.get(&v.id) {
                Some(a) if a.state == MountState::Mounted => {
                    paths.insert(v.outer_name.clone(), a.path.clone());
                    if v.plugin.requires_remount(&v.spec) && a.generation < v.generation {
                        ops.push(mount(pod, v));
                    }
                }
                _ => {
                    all_mounted = false;
                    ops.push(mount(pod, v));
                }
            }
        }
        if all_mounted && pod.has_subpaths() && !actual.subpaths_ready(&pod.pod_ref.uid) {
            ops.push(Operation::SetUpSubpaths { pod: Arc::clone(&pod.pod), volume_paths: paths });
        }
    }
    if !desired.is_populated() {
        return ops;
    }
    let uids: BTreeSet<&String> = match scope {
        Scope::All => actual.volumes().map(|a| &a.id.pod_uid).chain(actual.pod_dirs()).collect(),
        Scope::Pods(uids) => uids.iter().collect(),
    };
    for uid in uids {
        let gone = desired.pod(uid).is_none();
        let mut has_volumes = false;
        let mut cleaning = false;
        for a in actual.pod_volumes(uid) {
            has_volumes = true;
            if desired.wants(&a.id) {
                continue;
            }
            if gone && actual.subpaths_present(uid) {
                cleaning = true;
                break;
            }
            ops.push(Operation::Unmount { id: a.id.clone() });
        }
        if !gone {
            continue;
        }
        if cleaning || (!has_volumes && actual.subpaths_present(uid)) {
            ops.push(Operation::CleanSubpaths { uid: uid.clone() });
        } else if !has_volumes && actual.has_pod_dir(uid) {
            ops.push(Operation::RemovePodDir { uid: uid.clone() });
        }
    }
    // Devices last: one is unmounted only once no desired volume needs it and no pod's mount may use it, and
    // detached only once it is unmounted.
    for d in actual.devices() {
        if desired.wants_device(&d.unique_name) || actual.device_in_use_by_pods(d) {
            continue;
        }
        let unique_name = d.unique_name.clone();
        ops.push(match d.state {
            DeviceState::Unmounted => Operation::Detach { unique_name },
            DeviceState::Mounted | DeviceState::Uncertain => Operation::UnmountDevice { unique_name },
        });
    }
    ops
}

fn mount(pod: &DesiredPod, v: &DesiredVolume) -> Operation {
    Operation::Mount { volume: v.clone(), pod: pod.pod_ref.clone(), args: pod.args.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actual::ActualVolume;
    use crate::desired::testing::{id, pod, with_device};

    fn mounted(uid: &str, name: &str, state: MountState) -> ActualVolume {
        ActualVolume {
            id: id(uid, name),
            path: PathBuf::from("/x"),
            state,
            generation: 0,
            outer_name: None,
            read_only: false,
            device: None,
        }
    }

    fn keys(ops: &[Operation]) -> Vec<String> {
        ops.iter()
            .map(|o| match o {
                Operation::Mount { volume, .. } => format!("mount {}", volume.id),
                Operation::Unmount { id } => format!("unmount {id}"),
                Operation::SetUpSubpaths { .. } => "subpaths".into(),
                Operation::CleanSubpaths { uid } => format!("clean {uid}"),
                Operation::RemovePodDir { uid } => format!("rmdir {uid}"),
                Operation::MountDevice { volume, .. } => format!("mountdevice {}", volume.id),
                Operation::UnmountDevice { unique_name } => format!("unmountdevice {unique_name}"),
                Operation::Detach { unique_name } => format!("detach {unique_name}"),
            })
            .collect()
    }

    #[test]
    fn mounts_missing_and_uncertain_volumes() {
        let mut d = DesiredState::default();
        d.set_pod(pod("p1", &["a", "b"]));
        let mut a = ActualState::default();
        a.set(mounted("p1", "a", MountState::Uncertain));
        assert_eq!(
            keys(&plan(&d, &a, Scope::All)),
            ["mount kubernetes.io/empty-dir/p1-a", "mount kubernetes.io/empty-dir/p1-b"]
        );
    }

    #[test]
    fn unmounts_nothing_before_the_desired_state_is_populated() {
        let d = DesiredState::default();
        let mut a = ActualState::default();
        a.set(mounted("gone", "a", MountState::Uncertain));
        assert!(plan(&d, &a, Scope::All).is_empty());
    }

    #[test]
    fn tears_down_volumes_of_gone_pods_then_removes_the_pod_dir() {
        let mut d = DesiredState::default();
        d.mark_populated();
        d.set_pod(pod("keep", &["a"]));
        let mut a = ActualState::default();
        a.set(mounted("keep", "a", MountState::Mounted));
        a.set(mounted("gone", "a", MountState::Mounted));
        assert_eq!(keys(&plan(&d, &a, Scope::All)), ["unmount kubernetes.io/empty-dir/gone-a"]);
        a.remove(&id("gone", "a"));
        assert_eq!(keys(&plan(&d, &a, Scope::All)), ["rmdir gone"]);
    }

    #[test]
    fn cleans_subpaths_before_unmounting() {
        let mut d = DesiredState::default();
        d.mark_populated();
        let mut a = ActualState::default();
        a.set(mounted("gone", "a", MountState::Mounted));
        a.set(mounted("gone", "b", MountState::Mounted));
        a.set_subpaths("gone", true);
        assert_eq!(keys(&plan(&d, &a, Scope::All)), ["clean gone"]);
    }

    #[test]
    fn remounts_a_projected_volume_whose_object_changed() {
        let mut d = DesiredState::default();
        let mut p = pod("p1", &["cfg"]);
        let v = p.volumes.get_mut("cfg").unwrap();
        v.plugin = Arc::new(kvol_volume::plugins::config_map::ConfigMapPlugin);
        v.generation = 1;
        d.set_pod(p);
        let mut a = ActualState::default();
        a.set(mounted("p1", "cfg", MountState::Mounted));
        assert_eq!(keys(&plan(&d, &a, Scope::All)), ["mount kubernetes.io/empty-dir/p1-cfg"]);
    }

    #[test]
    fn a_scoped_pass_plans_only_the_named_pods() {
        let mut d = DesiredState::default();
        d.mark_populated();
        d.set_pod(pod("p1", &["a"]));
        d.set_pod(pod("p2", &["a"]));
        let mut a = ActualState::default();
        a.set(mounted("gone", "a", MountState::Mounted));
        let only: HashSet<String> = ["p2".to_string()].into();
        assert_eq!(keys(&plan(&d, &a, Scope::Pods(&only))), ["mount kubernetes.io/empty-dir/p2-a"]);
        let only: HashSet<String> = ["gone".to_string()].into();
        assert_eq!(keys(&plan(&d, &a, Scope::Pods(&only))), ["unmount kubernetes.io/empty-dir/gone-a"]);
    }

    fn device(unique: &str, state: DeviceState) -> crate::actual::ActualDevice {
        crate::actual::ActualDevice {
            unique_name: unique.into(),
            plugin: "kubernetes.io/empty-dir".into(),
            device_path: "/dev/loop9".into(),
            device_mount_path: PathBuf::from("/g"),
            state,
            attached_by_agent: false,
        }
    }

    #[test]
    fn mounts_the_device_before_the_pods_volume() {
        let mut d = DesiredState::default();
        d.mark_populated();
        d.set_pod(with_device(pod("p1", &["data"]), "data", "flexvolume-k8s/loop/v1"));
        let mut a = ActualState::default();
        assert_eq!(keys(&plan(&d, &a, Scope::All)), ["mountdevice kubernetes.io/empty-dir/p1-data"]);
        a.set_device(device("flexvolume-k8s/loop/v1", DeviceState::Uncertain));
        assert_eq!(keys(&plan(&d, &a, Scope::All)), ["mountdevice kubernetes.io/empty-dir/p1-data"]);
        a.set_device(device("flexvolume-k8s/loop/v1", DeviceState::Mounted));
        assert_eq!(keys(&plan(&d, &a, Scope::All)), ["mount kubernetes.io/empty-dir/p1-data"]);
    }

    #[test]
    fn unmounts_a_device_only_after_its_last_pod_mount_is_gone() {
        let mut d = DesiredState::default();
        d.mark_populated();
        d.set_pod(with_device(pod("keep", &["data"]), "data", "shared"));
        let mut a = ActualState::default();
        a.set_device(device("shared", DeviceState::Mounted));
        let mut gone = mounted("gone", "data", MountState::Mounted);
        gone.device = Some("shared".into());
        a.set(gone);
        let mut keep = mounted("keep", "data", MountState::Mounted);
        keep.device = Some("shared".into());
        a.set(keep);
        // Still wanted by "keep": only the gone pod's mount goes.
        assert_eq!(keys(&plan(&d, &a, Scope::All)), ["unmount kubernetes.io/empty-dir/gone-data"]);
        a.remove(&id("gone", "data"));
        d.remove_pod("keep", None);
        // No longer wanted, but "keep"'s mount still uses it: its mount goes first.
        assert_eq!(keys(&plan(&d, &a, Scope::All)), ["rmdir gone", "unmount kubernetes.io/empty-dir/keep-data"]);
        a.remove(&id("keep", "data"));
        assert!(keys(&plan(&d, &a, Scope::All)).contains(&"unmountdevice shared".to_string()));
    }

    #[test]
    fn a_reconstructed_volume_of_unknown_device_holds_its_plugins_devices() {
        let mut d = DesiredState::default();
        d.mark_populated();
        let mut a = ActualState::default();
        a.set_device(device("dev", DeviceState::Uncertain));
        a.set(mounted("gone", "data", MountState::Uncertain));
        assert_eq!(keys(&plan(&d, &a, Scope::All)), ["unmount kubernetes.io/empty-dir/gone-data"]);
        a.remove(&id("gone", "data"));
        assert_eq!(keys(&plan(&d, &a, Scope::All)), ["rmdir gone", "unmountdevice dev"]);
    }

    /// Regression (issue 11): unmount and detach are two operations, and the device's state says which is
    /// next, so a detach that failed after the unmount neither leaves the device "mounted" for the next pod
    /// nor is ever run before the unmount.
    #[test]
    fn a_device_is_detached_only_once_unmounted_and_mounted_again_if_wanted_meanwhile() {
        let mut d = DesiredState::default();
        d.mark_populated();
        let mut a = ActualState::default();
        for state in [DeviceState::Mounted, DeviceState::Uncertain] {
            a.set_device(device("dev", state));
            assert_eq!(keys(&plan(&d, &a, Scope::All)), ["unmountdevice dev"], "{state:?}");
        }
        a.set_device(device("dev", DeviceState::Unmounted));
        assert_eq!(keys(&plan(&d, &a, Scope::All)), ["detach dev"]);
        d.set_pod(with_device(pod("p1", &["data"]), "data", "dev"));
        assert_eq!(keys(&plan(&d, &a, Scope::All)), ["mountdevice kubernetes.io/empty-dir/p1-data"]);
    }

    #[test]
    fn devices_are_not_unmounted_before_the_desired_state_is_populated() {
        let d = DesiredState::default();
        let mut a = ActualState::default();
        a.set_device(device("dev", DeviceState::Uncertain));
        assert!(plan(&d, &a, Scope::All).is_empty());
    }
}
