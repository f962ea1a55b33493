//! The volume manager (kubelet's `volume_manager.go`): owns both states of the world and the executor,
//! runs the reconciler's plan on the blocking pool, and records each operation's outcome.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvol_volume::{ErrorClass, PluginRegistry, PodRef, VolumeHost};
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify, Semaphore};

use crate::actual::{ActualDevice, ActualState, ActualVolume, DeviceState, MountState};
use crate::config::AgentConfig;
use crate::desired::{DesiredState, DesiredVolume, ObjectRef};
use crate::executor::Executor;
use crate::reconciler::{plan, Operation, Scope};

/// An event for a pod (kubelet's recorder): `Warning FailedMount …`.
#[derive(Debug, Clone)]
pub struct PodEvent {
    /// The pod.
    pub pod: PodRef,
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    /// `FailedMount`, `Evicted`…
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

/// The last mount error of one volume, and when an event for it was last emitted.
#[derive(Debug, Clone)]
pub struct MountError {
    /// kubelet's text: `MountVolume.SetUp failed for volume "x" : …`.
    pub message: String,
    emitted: Instant,
}

/// Counters for the benchmark and the logs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Mount operations that succeeded.
    pub mounts: u64,
    /// Unmount operations that succeeded.
    pub unmounts: u64,
    /// Operations that failed.
    pub failures: u64,
}

/// Shared by the agent's loops.
pub struct Manager {
    /// Settings.
    pub config: AgentConfig,
    /// The plugins.
    pub registry: PluginRegistry,
    /// What plugins get.
    pub host: Arc<dyn VolumeHost>,
    /// The mount layer.
    pub mounter: Arc<dyn kvol_mount::Mounter>,
    /// Desired state (lock before `actual` when taking both).
    pub desired: Mutex<DesiredState>,
    /// Actual state.
    pub actual: Mutex<ActualState>,
    /// One operation per volume.
    pub executor: Executor,
    /// Wakes the reconciler.
    pub wake: Notify,
    /// Wakes the status loop.
    pub status_wake: Notify,
    /// Last mount errors by pod uid and the pod's volume name.
    pub errors: Mutex<HashMap<String, BTreeMap<String, MountError>>>,
    /// Counters.
    pub stats: Mutex<Stats>,
    /// Bounds the operations running at once on the blocking pool.
    permits: Arc<Semaphore>,
    /// Pods changed since the reconciler's last pass.
    dirty: Mutex<HashSet<String>>,
    /// Pods changed since the status loop's last pass.
    status_dirty: Mutex<HashSet<String>>,
    /// The devices node status last reported in use: a device the controller attaches is mounted only once
    /// it is reported, so that the controller never detaches a volume being mounted (kubelet's rule).
    pub reported_in_use: Mutex<std::collections::BTreeSet<String>>,
    /// Wakes the in-use reporter.
    pub in_use_wake: Notify,
    /// The latest stats of published CSI volumes (NodeGetVolumeStats) and of volumes measured with statfs,
    /// by volume (served in `/stats/summary`).
    pub volume_stats: Mutex<HashMap<crate::volume_id::VolumeId, crate::volume_stats::Measured>>,
    /// When the agent started (the summary's node `startTime`).
    pub started: jiff::Timestamp,
    events: mpsc::UnboundedSender<PodEvent>,
}

/// Operations running at once: they are short host syscalls, so a few per core keep the machine busy
/// without a thread (and a malloc arena) per volume in a burst.
const MAX_CONCURRENT_OPERATIONS: usize = 8;

/// How often the same FailedMount message is repeated for one volume.
const EVENT_REPEAT: Duration = Duration::from_secs(30);

impl Manager {
    /// A manager; events go to `events`.
    pub fn new(
        config: AgentConfig,
        registry: PluginRegistry,
        host: Arc<dyn VolumeHost>,
        mounter: Arc<dyn kvol_mount::Mounter>,
        actual: ActualState,
        events: mpsc::UnboundedSender<PodEvent>,
    ) -> Arc<Self> {
        Arc::new(Manager {
            config,
            registry,
            host,
            mounter,
            desired: Mutex::new(DesiredState::default()),
            actual: Mutex::new(actual),
            executor: Executor::default(),
            wake: Notify::new(),
            status_wake: Notify::new(),
            errors: Mutex::new(HashMap::new()),
            stats: Mutex::new(Stats::default()),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_OPERATIONS)),
            dirty: Mutex::new(HashSet::new()),
            status_dirty: Mutex::new(HashSet::new()),
            reported_in_use: Mutex::new(Default::default()),
            in_use_wake: Notify::new(),
            volume_stats: Mutex::new(HashMap::new()),
            started: jiff::Timestamp::now(),
            events,
        })
    }

    /// Sends an event (dropped if the event writer is gone).
    pub fn event(&self, event: PodEvent) {
        let _ = self.events.send(event);
    }

    /// Marks a pod changed (its desired or actual state) and wakes the reconciler and the status loop, which
    /// look at changed pods only; a periodic full pass catches everything else.
    pub fn touch(&self, uid: &str) {
        self.dirty.lock().insert(uid.to_string());
        self.status_dirty.lock().insert(uid.to_string());
        self.wake.notify_one();
        self.status_wake.notify_one();
    }

    /// Takes the pods changed since the status loop last asked.
    pub fn take_status_dirty(&self) -> HashSet<String> {
        std::mem::take(&mut *self.status_dirty.lock())
    }

    /// A ConfigMap or Secret changed: volumes following it are set up again, without waiting for their
    /// backoff.
    pub fn object_changed(&self, namespace: &str, object: &ObjectRef) {
        let volumes: Vec<(String, String)> = {
            let mut desired = self.desired.lock();
            if !desired.object_changed(namespace, object) {
                return;
            }
            desired
                .pods()
                .filter(|p| p.pod_ref.namespace == namespace)
                .flat_map(|p| p.volumes.values())
                .filter(|v| v.object.as_ref() == Some(object))
                .map(|v| (v.id.to_string(), v.id.pod_uid.clone()))
                .collect()
        };
        for (key, uid) in volumes {
            self.executor.reset(&key);
            self.touch(&uid);
        }
    }

    /// One reconciler pass over every pod: plan under the locks, then dispatch without them.
    pub fn reconcile_all(self: &Arc<Self>) {
        self.dirty.lock().clear();
        let ops = {
            let desired = self.desired.lock();
            let actual = self.actual.lock();
            plan(&desired, &actual, Scope::All)
        };
        for op in ops {
            self.dispatch(op);
        }
    }

    /// One reconciler pass over the pods changed since the last pass.
    pub fn reconcile_dirty(self: &Arc<Self>) {
        let dirty = std::mem::take(&mut *self.dirty.lock());
        if dirty.is_empty() {
            return;
        }
        let ops = {
            let desired = self.desired.lock();
            let actual = self.actual.lock();
            plan(&desired, &actual, Scope::Pods(&dirty))
        };
        for op in ops {
            self.dispatch(op);
        }
    }

    /// Starts `op` unless its key is busy or backing off.
    pub fn dispatch(self: &Arc<Self>, op: Operation) {
        if let Operation::MountDevice { volume, .. } = &op {
            let needs_report = self.config.controller_attach_detach
                && volume
                    .device
                    .as_ref()
                    .is_some_and(|d| d.requires_attach && !self.reported_in_use.lock().contains(&d.unique_name));
            if needs_report {
                self.in_use_wake.notify_one();
                return;
            }
        }
        let key = op.key();
        if self.executor.try_start(&key, op.name(), Instant::now()).is_err() {
            return;
        }
        // Record the in-flight state first, so that a crash or a concurrent plan sees it as uncertain.
        let prior = match &op {
            Operation::Mount { volume, .. } => {
                let mut actual = self.actual.lock();
                let prior = actual.get(&volume.id).cloned();
                if prior.is_none() {
                    actual.set(ActualVolume {
                        id: volume.id.clone(),
                        path: std::path::PathBuf::new(),
                        state: MountState::Uncertain,
                        generation: 0,
                        outer_name: Some(volume.outer_name.clone()),
                        read_only: false,
                        device: volume.device.as_ref().map(|d| d.unique_name.clone()),
                    });
                }
                prior
            }
            Operation::MountDevice { volume, .. } => {
                if let Some(d) = &volume.device {
                    let mut actual = self.actual.lock();
                    if actual.device(&d.unique_name).is_none() {
                        actual.set_device(ActualDevice {
                            unique_name: d.unique_name.clone(),
                            plugin: volume.plugin.name().to_string(),
                            device_path: String::new(),
                            device_mount_path: std::path::PathBuf::new(),
                            state: DeviceState::Uncertain,
                            attached_by_agent: false,
                        });
                    }
                }
                None
            }
            Operation::SetUpSubpaths { pod, .. } => {
                self.actual.lock().set_subpaths(pod.metadata.uid.as_deref().unwrap_or_default(), false);
                None
            }
            _ => None,
        };
        let this = Arc::clone(self);
        let uid = op.pod_uid().to_string();
        let permits = Arc::clone(&self.permits);
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else { return };
            let _ = tokio::task::spawn_blocking(move || this.complete(op, key, uid, prior)).await;
        });
    }

    /// Runs `op` (on the blocking pool), releases its key and wakes the loops for its pod.
    fn complete(self: &Arc<Self>, op: Operation, key: String, uid: String, prior: Option<ActualVolume>) {
        let ok = self.run(&op, prior);
        if let Some(at) = self.executor.finish(&key, ok, Instant::now()) {
            // Wake the reconciler for this pod when the backoff ends rather than polling for it.
            let this = Arc::clone(self);
            let uid = uid.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    this.touch(&uid);
                });
            }
        }
        self.touch(&uid);
    }

    /// Runs one operation and records its outcome; returns whether it succeeded.
    fn run(&self, op: &Operation, prior: Option<ActualVolume>) -> bool {
        match op {
            Operation::Mount { volume, pod, args } => {
                match crate::operations::mount(&self.host, volume, pod, args) {
                    Ok((path, read_only)) => {
                        tracing::debug!(volume = %volume.id, pod = %pod.name, "MountVolume.SetUp succeeded");
                        self.actual.lock().set(ActualVolume {
                            id: volume.id.clone(),
                            path,
                            state: MountState::Mounted,
                            generation: volume.generation,
                            outer_name: Some(volume.outer_name.clone()),
                            read_only,
                            device: volume.device.as_ref().map(|d| d.unique_name.clone()),
                        });
                        if let Some(errors) = self.errors.lock().get_mut(&pod.uid) {
                            errors.remove(&volume.outer_name);
                        }
                        self.stats.lock().mounts += 1;
                        true
                    }
                    Err(err) => {
                        let message = format!("MountVolume.SetUp failed for volume {:?} : {err}", volume.outer_name);
                        tracing::warn!(volume = %volume.id, pod = %format!("{}/{}", pod.namespace, pod.name), "{message}");
                        {
                            let mut actual = self.actual.lock();
                            // Something may be left on the host (the mount, or the volume's directory):
                            // keep it uncertain so that it is set up again or torn down.
                            let dir = self.host.pod_volume_dir(&pod.uid, &volume.id.plugin, &volume.id.spec_name);
                            match (prior, err.class()) {
                                (_, ErrorClass::Uncertain) => {}
                                (None, _) if std::fs::symlink_metadata(&dir).is_ok() => {
                                    if let Some(a) = actual.get(&volume.id).cloned() {
                                        actual.set(ActualVolume { path: dir, ..a });
                                    }
                                }
                                (None, _) => {
                                    actual.remove(&volume.id);
                                }
                                (Some(p), _) => actual.set(p),
                            }
                        }
                        self.record_mount_error(pod, &volume.outer_name, message);
                        self.stats.lock().failures += 1;
                        false
                    }
                }
            }
            Operation::Unmount { id } => match crate::operations::unmount(&self.host, &self.registry, id) {
                Ok(()) => {
                    tracing::debug!(volume = %id, "UnmountVolume.TearDown succeeded");
                    self.actual.lock().remove(id);
                    self.stats.lock().unmounts += 1;
                    true
                }
                Err(err) => {
                    tracing::warn!(volume = %id, "UnmountVolume.TearDown failed: {err}");
                    self.stats.lock().failures += 1;
                    false
                }
            },
            Operation::SetUpSubpaths { pod, volume_paths } => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                match crate::subpath::set_up(self.mounter.as_ref(), &self.config.root_dir, pod, volume_paths) {
                    Ok(()) => {
                        self.actual.lock().set_subpaths(&uid, true);
                        true
                    }
                    Err(err) => {
                        let pod_ref = crate::populator::pod_ref(pod);
                        let volume = match &err {
                            crate::error::Error::SubPath { volume, .. } => volume.clone(),
                            _ => String::new(),
                        };
                        self.record_mount_error(&pod_ref, &volume, err.to_string());
                        false
                    }
                }
            }
            Operation::CleanSubpaths { uid } => {
                match crate::subpath::clean(self.mounter.as_ref(), &self.config.root_dir, uid) {
                    Ok(()) => {
                        self.actual.lock().clear_subpaths(uid);
                        true
                    }
                    Err(err) => {
                        tracing::warn!(pod = %uid, "cleaning subPaths failed: {err}");
                        false
                    }
                }
            }
            Operation::MountDevice { volume, pod } => self.run_mount_device(volume, pod),
            Operation::UnmountDevice { unique_name } => {
                let Some(device) = self.actual.lock().device(unique_name).cloned() else { return true };
                match crate::operations::unmount_device(&self.host, &self.registry, &device) {
                    Ok(()) => {
                        tracing::info!(volume = %unique_name, path = %device.device_mount_path.display(), "UnmountDevice succeeded");
                        let mut actual = self.actual.lock();
                        if device.attached_by_agent {
                            // Detached by its own operation, which may fail and be retried, or be overtaken
                            // by a pod that wants the device mounted again.
                            actual.set_device(ActualDevice { state: DeviceState::Unmounted, ..device });
                        } else {
                            actual.remove_device(unique_name);
                        }
                        true
                    }
                    Err(err) => {
                        tracing::warn!(volume = %unique_name, "UnmountDevice failed: {err}");
                        self.stats.lock().failures += 1;
                        false
                    }
                }
            }
            Operation::Detach { unique_name } => {
                let Some(device) = self.actual.lock().device(unique_name).cloned() else { return true };
                match crate::operations::detach_device(&self.host, &self.registry, &device) {
                    Ok(()) => {
                        tracing::info!(volume = %unique_name, "DetachVolume.Detach succeeded");
                        self.actual.lock().remove_device(unique_name);
                        true
                    }
                    Err(err) => {
                        tracing::warn!(volume = %unique_name, "{err}");
                        self.stats.lock().failures += 1;
                        false
                    }
                }
            }
            Operation::RemovePodDir { uid } => {
                match crate::operations::remove_pod_dir(self.mounter.as_ref(), &self.config.root_dir, uid) {
                    Ok(()) => {
                        tracing::info!(pod = %uid, "removed the pod's directory");
                        self.actual.lock().remove_pod_dir(uid);
                        self.errors.lock().remove(uid);
                        true
                    }
                    Err(err) => {
                        tracing::warn!(pod = %uid, "{err}");
                        false
                    }
                }
            }
        }
    }

    /// Runs a device mount and records its outcome: mounted, uncertain (something may be on the host: a
    /// timed-out mount, or the agent's own attach), or gone.
    fn run_mount_device(&self, volume: &DesiredVolume, pod: &PodRef) -> bool {
        let Some(wanted) = &volume.device else { return true };
        let self_attach = !self.config.controller_attach_detach && wanted.requires_attach;
        match crate::operations::mount_device(&self.host, volume, self_attach) {
            Ok(device) => {
                tracing::info!(volume = %device.unique_name, path = %device.device_mount_path.display(), device = %device.device_path, "MountDevice succeeded");
                let mut actual = self.actual.lock();
                let attached_before = actual.device(&device.unique_name).is_some_and(|d| d.attached_by_agent);
                actual.set_device(ActualDevice {
                    attached_by_agent: device.attached_by_agent || attached_before,
                    ..device
                });
                drop(actual);
                if let Some(errors) = self.errors.lock().get_mut(&pod.uid) {
                    errors.remove(&volume.outer_name);
                }
                true
            }
            Err(failure) if failure.waiting => {
                tracing::debug!(volume = %wanted.unique_name, "{}", failure.message);
                let mut actual = self.actual.lock();
                if actual.device(&wanted.unique_name).is_some_and(|d| d.device_mount_path.as_os_str().is_empty()) {
                    actual.remove_device(&wanted.unique_name);
                }
                // Not a failure: no backoff, so the next pass (100 ms) looks at node status again.
                true
            }
            Err(failure) => {
                tracing::warn!(volume = %wanted.unique_name, pod = %format!("{}/{}", pod.namespace, pod.name), "{}", failure.message);
                {
                    let mut actual = self.actual.lock();
                    let prior = actual.device(&wanted.unique_name).cloned();
                    let attached = failure.attached || prior.as_ref().is_some_and(|d| d.attached_by_agent);
                    let found_before = prior.as_ref().is_some_and(|d| !d.device_mount_path.as_os_str().is_empty());
                    if attached || failure.uncertain || found_before {
                        let path = failure
                            .device_mount_path
                            .or_else(|| prior.as_ref().map(|d| d.device_mount_path.clone()))
                            .unwrap_or_default();
                        actual.set_device(ActualDevice {
                            unique_name: wanted.unique_name.clone(),
                            plugin: volume.plugin.name().to_string(),
                            device_path: prior.map(|d| d.device_path).unwrap_or_default(),
                            device_mount_path: path,
                            state: DeviceState::Uncertain,
                            attached_by_agent: attached,
                        });
                    } else {
                        actual.remove_device(&wanted.unique_name);
                    }
                }
                self.record_mount_error(pod, &volume.outer_name, failure.message);
                self.stats.lock().failures += 1;
                false
            }
        }
    }

    /// The unique names of the devices in use on this node, sorted: those desired volumes need and those
    /// still mounted (kubelet's `volumesInUse`, which gates the controller's detach). Devices not in the list
    /// stop counting as reported.
    pub fn volumes_in_use(&self) -> Vec<String> {
        let desired = self.desired.lock();
        let actual = self.actual.lock();
        let mut names: std::collections::BTreeSet<String> = desired.devices().map(|d| d.unique_name.clone()).collect();
        names.extend(actual.devices().map(|d| d.unique_name.clone()));
        // A device no longer in use is no longer reported from now on (the write of this list may land at any
        // moment, and the controller may then detach it): a pod that wants it again waits for a write that
        // lists it again, as kubelet's per-volume `reportedInUse` does.
        self.reported_in_use.lock().retain(|name| names.contains(name));
        names.into_iter().collect()
    }

    /// Records a volume's mount error (an operation's, or the populator's) and emits a FailedMount event
    /// unless the same message was emitted within the last 30 s.
    pub fn record_mount_error(&self, pod: &PodRef, volume: &str, message: String) {
        let now = Instant::now();
        let emit = {
            let mut errors = self.errors.lock();
            let pod_errors = errors.entry(pod.uid.clone()).or_default();
            let emit = match pod_errors.get(volume) {
                Some(e) => e.message != message || now.duration_since(e.emitted) >= EVENT_REPEAT,
                None => true,
            };
            let emitted = if emit { now } else { pod_errors[volume].emitted };
            pod_errors.insert(volume.to_string(), MountError { message: message.clone(), emitted });
            emit
        };
        if emit {
            self.event(PodEvent { pod: pod.clone(), type_: "Warning", reason: "FailedMount", message });
        }
    }

    /// The volumes of a desired pod not yet mounted, and the message kubelet would give for them:
    /// `None` when all are ready.
    pub fn pod_volume_status(&self, uid: &str) -> Option<VolumeStatus> {
        let desired = self.desired.lock();
        let pod = desired.pod(uid)?;
        let actual = self.actual.lock();
        let mut unmounted = Vec::new();
        let mut unattached = Vec::new();
        // kubelet lists every volume not yet mounted as "unattached" too (for volumes that need no attach,
        // its check can never succeed), and users know the message in that form.
        let mut in_progress = true;
        for (name, v) in &pod.volumes {
            match actual.get(&v.id) {
                Some(a) if a.state == MountState::Mounted => {}
                other => {
                    in_progress &= other.is_some();
                    unmounted.push(name.clone());
                    unattached.push(name.clone());
                }
            }
        }
        for name in pod.errors.keys() {
            unmounted.push(name.clone());
            unattached.push(name.clone());
        }
        let subpaths_pending = unmounted.is_empty() && pod.has_subpaths() && !actual.subpaths_ready(uid);
        unmounted.sort();
        unattached.sort();
        let errors = self.errors.lock();
        let last_error = pod
            .errors
            .values()
            .next()
            .cloned()
            .or_else(|| errors.get(uid).and_then(|e| e.values().next().map(|e| e.message.clone())));
        let failed = !pod.errors.is_empty() || errors.get(uid).is_some_and(|e| !e.is_empty());
        Some(VolumeStatus {
            in_progress: in_progress && !failed,
            ready: unmounted.is_empty() && !subpaths_pending,
            unmounted,
            unattached,
            last_error,
            first_seen: pod.first_seen,
            pod: pod.pod_ref.clone(),
        })
    }
}

/// The volume readiness of one pod.
#[derive(Debug, Clone)]
pub struct VolumeStatus {
    /// Every volume not yet mounted is being set up or verified (after a restart) and nothing failed:
    /// not worth a "not ready" status write that the next milliseconds would undo.
    pub in_progress: bool,
    /// All volumes (and subPaths) set up.
    pub ready: bool,
    /// The pod's names of volumes not mounted.
    pub unmounted: Vec<String>,
    /// The same list, as kubelet reports it under "unattached" for volumes that need no attach.
    pub unattached: Vec<String>,
    /// The latest error, if any.
    pub last_error: Option<String>,
    /// When the agent first wanted the pod.
    pub first_seen: Instant,
    /// The pod.
    pub pod: PodRef,
}

impl VolumeStatus {
    /// kubelet's `Unable to attach or mount volumes: unmounted volumes=[…], unattached volumes=[…]: <cause>`.
    pub fn message(&self, cause: &str) -> String {
        format!(
            "Unable to attach or mount volumes: unmounted volumes=[{}], unattached volumes=[{}]: {cause}",
            self.unmounted.join(" "),
            self.unattached.join(" ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{pod, with_device};

    fn manager(root: &std::path::Path) -> Arc<Manager> {
        let mounter: Arc<dyn kvol_mount::Mounter> = Arc::new(kvol_mount::FakeMounter::new());
        let host = Arc::new(crate::host::AgentHost::new(root.to_path_buf(), Arc::clone(&mounter), None, None));
        let registry = PluginRegistry::with(kvol_volume::all_plugins()).unwrap();
        let (events, _) = mpsc::unbounded_channel();
        Manager::new(AgentConfig::new("node", root), registry, host, mounter, ActualState::default(), events)
    }

    /// Regression (issue 11): with controller attach/detach, a device is mounted only once node status lists
    /// it in `volumesInUse`. A device that had been reported, then left the list (its last pod gone, its
    /// device unmounted), still counted as reported while the write without it was on its way, so a new pod
    /// could mount it just before that write let the controller detach it.
    #[tokio::test]
    async fn a_device_that_left_volumes_in_use_is_mounted_again_only_after_a_report_that_lists_it() {
        let root = tempfile::tempdir().unwrap();
        let m = manager(root.path());
        m.reported_in_use.lock().insert("dev".into());
        // The in-use loop computes its next write: nothing needs the device any more.
        assert!(m.volumes_in_use().is_empty());
        // A new pod wants it before (or while) that write lands.
        let p = with_device(pod("p2", &["data"]), "data", "dev");
        let volume = p.volumes["data"].clone();
        let pod_ref = p.pod_ref.clone();
        m.desired.lock().set_pod(p);
        m.dispatch(Operation::MountDevice { volume, pod: pod_ref });
        assert!(m.actual.lock().device("dev").is_none(), "MountDevice started before a report listed the device");
        assert_eq!(m.volumes_in_use(), ["dev"], "the next report lists it");
    }
}
