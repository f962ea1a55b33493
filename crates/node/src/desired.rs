//! The desired state of the world (kubelet's `cache/desired_state_of_world.go`): the volumes the pods bound
//! to this node need, as the populator last saw them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kvol_volume::{MounterArgs, PodRef, VolumePlugin, VolumeSpec};

use crate::volume_id::VolumeId;

/// The API object a projected volume follows, so its change can trigger a remount.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ObjectRef {
    /// A ConfigMap in the pod's namespace.
    ConfigMap(String),
    /// A Secret in the pod's namespace.
    Secret(String),
}

/// The device phase a volume needs before its pod mount (attach, then the per-node device mount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredDevice {
    /// kubelet's unique volume name: keys the device in both states and in node status.
    pub unique_name: String,
    /// Whether it must be attached first (by the controller, or by the agent itself).
    pub requires_attach: bool,
}

/// One volume one pod needs.
#[derive(Clone)]
pub struct DesiredVolume {
    /// The on-disk identity.
    pub id: VolumeId,
    /// The pod's name for the volume (`pod.spec.volumes[].name`).
    pub outer_name: String,
    /// The spec the plugin mounts (the PV for a claim).
    pub spec: VolumeSpec,
    /// The plugin.
    pub plugin: Arc<dyn VolumePlugin>,
    /// Bumped when the followed object changes; a mounted volume set up at an older generation is set up
    /// again (kubelet's remount of configMap/secret volumes).
    pub generation: u64,
    /// The followed object, if any.
    pub object: Option<ObjectRef>,
    /// The device phase, for plugins that have one (filled in by the populator).
    pub device: Option<DesiredDevice>,
}

/// One pod's desired volumes.
#[derive(Clone)]
pub struct DesiredPod {
    /// The pod as last seen.
    pub pod: Arc<Pod>,
    /// uid, namespace, name.
    pub pod_ref: PodRef,
    /// fsGroup and its policy.
    pub args: MounterArgs,
    /// Volumes by the pod's volume name.
    pub volumes: BTreeMap<String, DesiredVolume>,
    /// Volumes that could not be resolved (claim not bound, no plugin), by the pod's volume name.
    pub errors: BTreeMap<String, String>,
    /// When the agent first wanted this pod's volumes, for the mount timeout and the benchmark.
    pub first_seen: Instant,
}

impl DesiredPod {
    /// Whether any container mounts part of a volume (subPath or subPathExpr).
    pub fn has_subpaths(&self) -> bool {
        crate::subpath::subpath_mounts(&self.pod).next().is_some()
    }
}

/// The desired state. `populated` turns true once the first complete list of pods has been processed:
/// before that nothing is torn down.
#[derive(Default)]
pub struct DesiredState {
    pods: HashMap<String, DesiredPod>,
    /// Pods being deleted: `uid → (namespace, name)`, deleted for good once their volumes are gone.
    terminating: HashMap<String, (String, String)>,
    populated: bool,
}

impl DesiredState {
    /// Sets a pod's desired volumes, keeping the generations and first-seen time already known.
    pub fn set_pod(&mut self, mut pod: DesiredPod) {
        if let Some(old) = self.pods.get(&pod.pod_ref.uid) {
            pod.first_seen = old.first_seen;
            for (name, v) in pod.volumes.iter_mut() {
                if let Some(o) = old.volumes.get(name) {
                    v.generation = o.generation;
                }
            }
        }
        self.terminating.remove(&pod.pod_ref.uid);
        self.pods.insert(pod.pod_ref.uid.clone(), pod);
    }

    /// Removes a pod; `terminating` keeps it for final deletion once its volumes are torn down.
    pub fn remove_pod(&mut self, uid: &str, terminating: Option<(String, String)>) {
        self.pods.remove(uid);
        match terminating {
            Some(t) => {
                self.terminating.insert(uid.to_string(), t);
            }
            None => {
                self.terminating.remove(uid);
            }
        }
    }

    /// Keeps only the pods (desired or terminating) whose uid `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.pods.retain(|uid, _| keep(uid));
        self.terminating.retain(|uid, _| keep(uid));
    }

    /// Bumps the generation of every volume following `object` in `namespace`; returns whether any did.
    pub fn object_changed(&mut self, namespace: &str, object: &ObjectRef) -> bool {
        let mut any = false;
        for pod in self.pods.values_mut().filter(|p| p.pod_ref.namespace == namespace) {
            for v in pod.volumes.values_mut().filter(|v| v.object.as_ref() == Some(object)) {
                v.generation += 1;
                any = true;
            }
        }
        any
    }

    /// The desired pods.
    pub fn pods(&self) -> impl Iterator<Item = &DesiredPod> {
        self.pods.values()
    }

    /// One desired pod.
    pub fn pod(&self, uid: &str) -> Option<&DesiredPod> {
        self.pods.get(uid)
    }

    /// Pods waiting for teardown before their final deletion.
    pub fn terminating(&self) -> impl Iterator<Item = (&String, &(String, String))> {
        self.terminating.iter()
    }

    /// Forgets a terminating pod (deleted for good).
    pub fn forget_terminating(&mut self, uid: &str) {
        self.terminating.remove(uid);
    }

    /// Whether the first complete pod list has been processed.
    pub fn is_populated(&self) -> bool {
        self.populated
    }

    /// Marks the desired state complete.
    pub fn mark_populated(&mut self) {
        self.populated = true;
    }

    /// The unique names of every device a desired volume needs (kubelet's volumes "in use" on the node).
    pub fn devices(&self) -> impl Iterator<Item = &DesiredDevice> {
        self.pods.values().flat_map(|p| p.volumes.values()).filter_map(|v| v.device.as_ref())
    }

    /// Whether a desired volume needs the device `unique_name`.
    pub fn wants_device(&self, unique_name: &str) -> bool {
        self.devices().any(|d| d.unique_name == unique_name)
    }

    /// Whether `id` is desired.
    pub fn wants(&self, id: &VolumeId) -> bool {
        self.pods.get(&id.pod_uid).is_some_and(|p| p.volumes.values().any(|v| &v.id == id))
    }
}

/// Fixtures for the agent's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Volume};

    /// A pod `uid` with emptyDir volumes of these names.
    pub fn pod(uid: &str, volumes: &[&str]) -> DesiredPod {
        let plugin: Arc<dyn VolumePlugin> = Arc::new(kvol_volume::plugins::empty_dir::EmptyDirPlugin);
        DesiredPod {
            pod: Arc::new(Pod::default()),
            pod_ref: PodRef { uid: uid.into(), namespace: "default".into(), name: uid.into() },
            args: MounterArgs::default(),
            volumes: volumes
                .iter()
                .map(|n| {
                    let spec = VolumeSpec::Inline(Box::new(Volume {
                        name: n.to_string(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    }));
                    let v = DesiredVolume {
                        id: id(uid, n),
                        outer_name: n.to_string(),
                        spec,
                        plugin: plugin.clone(),
                        generation: 0,
                        object: None,
                        device: None,
                    };
                    (n.to_string(), v)
                })
                .collect(),
            errors: Default::default(),
            first_seen: Instant::now(),
        }
    }

    /// The id of volume `name` of [`pod`] `uid`.
    pub fn id(uid: &str, name: &str) -> VolumeId {
        VolumeId { pod_uid: uid.into(), plugin: "kubernetes.io/empty-dir".into(), spec_name: name.into() }
    }

    /// `p` with volume `name` needing the attached device `unique`.
    pub fn with_device(mut p: DesiredPod, name: &str, unique: &str) -> DesiredPod {
        let v = p.volumes.get_mut(name).unwrap();
        v.device = Some(crate::desired::DesiredDevice { unique_name: unique.into(), requires_attach: true });
        p
    }
}
