//! The actual state of the world (kubelet's `cache/actual_state_of_world.go`): what is set up on this
//! host, as the agent's operations (or, after a restart, reconstruction) left it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::volume_id::VolumeId;

/// What is known of a volume's mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountState {
    /// Set up and verified by a completed operation.
    Mounted,
    /// Possibly set up: found on disk after a restart, or an operation is in flight or failed in a way that
    /// may have left something. The reconciler sets it up again (idempotently) or tears it down.
    Uncertain,
}

/// One volume of one pod on this host.
#[derive(Debug, Clone)]
pub struct ActualVolume {
    /// The on-disk identity.
    pub id: VolumeId,
    /// Where the volume is visible (the host path for hostPath).
    pub path: PathBuf,
    /// Mounted or uncertain.
    pub state: MountState,
    /// The desired generation it was set up at (0 when reconstructed).
    pub generation: u64,
    /// The pod's name for the volume, unknown for reconstructed volumes.
    pub outer_name: Option<String>,
    /// Whether the volume is read-only for the pod.
    pub read_only: bool,
    /// The unique name of the device the pod's mount uses, if its plugin has a device phase; `None` for
    /// reconstructed volumes (not known until set up again).
    pub device: Option<String>,
}

/// What is known of a device's mount at its global path (kubelet's `DeviceMountState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// Mounted at its global path by a completed MountDevice.
    Mounted,
    /// Possibly mounted: MountDevice is in flight or failed part-way, or the device was found after a
    /// restart. The reconciler mounts it again (idempotently) or unmounts it.
    Uncertain,
    /// Unmounted by a completed UnmountDevice, and still attached by the agent: the next step is its detach
    /// (never before: kubelet detaches only what UnmountDevice has released), or MountDevice again if a pod
    /// wants it meanwhile.
    Unmounted,
}

/// One device on this host: attached (if it needs attaching) and mounted at its per-node global path.
#[derive(Debug, Clone)]
pub struct ActualDevice {
    /// kubelet's unique volume name.
    pub unique_name: String,
    /// The plugin's qualified name.
    pub plugin: String,
    /// What `wait_for_attach` returned (empty for volumes that need no attach, or reconstructed ones).
    pub device_path: String,
    /// The global mount path.
    pub device_mount_path: std::path::PathBuf,
    /// Mounted, uncertain (in flight, failed part-way, or reconstructed), or unmounted but still attached.
    pub state: DeviceState,
    /// Whether this agent attached it (controller attach/detach disabled), and so must detach it.
    pub attached_by_agent: bool,
}

/// The actual state.
#[derive(Debug, Default)]
pub struct ActualState {
    volumes: BTreeMap<VolumeId, ActualVolume>,
    /// Devices by unique name.
    devices: BTreeMap<String, ActualDevice>,
    /// Pods with a directory under `<root>/pods`.
    pod_dirs: BTreeSet<String>,
    /// Pods whose subPath binds are all set up.
    subpaths_ready: BTreeSet<String>,
    /// Pods that may have subPath binds on the host.
    subpaths_present: BTreeSet<String>,
}

impl ActualState {
    /// Adds or replaces a volume.
    pub fn set(&mut self, v: ActualVolume) {
        self.pod_dirs.insert(v.id.pod_uid.clone());
        self.volumes.insert(v.id.clone(), v);
    }

    /// Removes a volume (torn down).
    pub fn remove(&mut self, id: &VolumeId) -> Option<ActualVolume> {
        self.volumes.remove(id)
    }

    /// A volume.
    pub fn get(&self, id: &VolumeId) -> Option<&ActualVolume> {
        self.volumes.get(id)
    }

    /// Every volume.
    pub fn volumes(&self) -> impl Iterator<Item = &ActualVolume> {
        self.volumes.values()
    }

    /// The volumes of one pod.
    pub fn pod_volumes<'a>(&'a self, uid: &'a str) -> impl Iterator<Item = &'a ActualVolume> + 'a {
        // Ids order by pod uid first: one range, not a scan.
        let from = VolumeId { pod_uid: uid.to_string(), plugin: String::new(), spec_name: String::new() };
        self.volumes.range(from..).map(|(_, v)| v).take_while(move |v| v.id.pod_uid == uid)
    }

    /// Adds or replaces a device.
    pub fn set_device(&mut self, d: ActualDevice) {
        self.devices.insert(d.unique_name.clone(), d);
    }

    /// Removes a device (unmounted, and detached if the agent attached it).
    pub fn remove_device(&mut self, unique_name: &str) -> Option<ActualDevice> {
        self.devices.remove(unique_name)
    }

    /// A device.
    pub fn device(&self, unique_name: &str) -> Option<&ActualDevice> {
        self.devices.get(unique_name)
    }

    /// Every device.
    pub fn devices(&self) -> impl Iterator<Item = &ActualDevice> {
        self.devices.values()
    }

    /// Whether a pod's mount may still use the device: a pod volume set up from it, or a volume of the same
    /// plugin whose device is not known (reconstructed, not yet set up or torn down again).
    pub fn device_in_use_by_pods(&self, d: &ActualDevice) -> bool {
        self.volumes.values().any(|v| match &v.device {
            Some(u) => u == &d.unique_name,
            None => v.id.plugin == d.plugin,
        })
    }

    /// Records that a pod directory exists.
    pub fn add_pod_dir(&mut self, uid: &str) {
        self.pod_dirs.insert(uid.to_string());
    }

    /// Records that a pod directory is gone.
    pub fn remove_pod_dir(&mut self, uid: &str) {
        self.pod_dirs.remove(uid);
        self.subpaths_ready.remove(uid);
        self.subpaths_present.remove(uid);
    }

    /// Pods with a directory.
    pub fn pod_dirs(&self) -> impl Iterator<Item = &String> {
        self.pod_dirs.iter()
    }

    /// Whether the pod's directory exists.
    pub fn has_pod_dir(&self, uid: &str) -> bool {
        self.pod_dirs.contains(uid)
    }

    /// Marks a pod's subPaths set up (`true`) or possibly present (`false`, before an attempt).
    pub fn set_subpaths(&mut self, uid: &str, ready: bool) {
        self.subpaths_present.insert(uid.to_string());
        if ready {
            self.subpaths_ready.insert(uid.to_string());
        } else {
            self.subpaths_ready.remove(uid);
        }
    }

    /// Marks a pod's subPaths cleaned.
    pub fn clear_subpaths(&mut self, uid: &str) {
        self.subpaths_present.remove(uid);
        self.subpaths_ready.remove(uid);
    }

    /// Whether the pod's subPaths are set up.
    pub fn subpaths_ready(&self, uid: &str) -> bool {
        self.subpaths_ready.contains(uid)
    }

    /// Whether the pod may have subPath binds.
    pub fn subpaths_present(&self, uid: &str) -> bool {
        self.subpaths_present.contains(uid)
    }
}
