//! The desired state of the world (`cache/desired_state_of_world.go` plus its populator): which volume must
//! be attached to which node, computed afresh from the caches, with the pods that need it.
//!
//! A pod counts once it is bound to a node that exists and until it has finished (Succeeded or Failed) or is
//! gone; a pod being deleted still counts, since its node may still have the volume mounted. A volume counts
//! when it needs the controller's attach:
//! - a PersistentVolume with `spec.csi` (reached through a bound claim) whose CSIDriver says
//!   `attachRequired: true` or does not exist (kubelet then requires the attach too);
//! - a PersistentVolume or inline volume whose plugin in the registry is attachable for it (a FlexVolume
//!   driver whose `init` reported `attach: true`).
//!
//! Inline CSI volumes (ephemeral) are never attached. A FlexVolume whose driver is not in the registry (not
//! probed yet, or removed) is kept rather than forgotten: it starts no attach, but an existing attachment
//! of it is not detached on the strength of a registry that cannot see it.

use super::names;
use super::world::World;
use crate::cache::object_key;
use crate::protection::pod_is_terminated;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, Pod, Volume};
use kube::ResourceExt;
use kvol_api::names::ANN_CONTROLLER_MANAGED_ATTACH;
use kvol_volume::{VolumeHost, VolumePlugin, VolumeSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

/// A volume on a node: the key of both states.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VolumeNode {
    /// kubelet's unique volume name.
    pub volume: String,
    /// The node's name.
    pub node: String,
}

impl VolumeNode {
    /// The key of `volume` on `node`.
    pub fn new(volume: impl Into<String>, node: impl Into<String>) -> Self {
        VolumeNode { volume: volume.into(), node: node.into() }
    }
}

impl fmt::Display for VolumeNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} on node {:?}", self.volume, self.node)
    }
}

/// How a desired volume is attached.
#[derive(Clone)]
pub enum AttachSource {
    /// Through a VolumeAttachment that the CSI driver's attacher acts on.
    Csi {
        /// The CSI driver.
        driver: String,
        /// `spec.csi.volumeHandle`.
        handle: String,
        /// The PersistentVolume.
        pv: String,
    },
    /// By the plugin's own [`kvol_volume::AttachablePlugin`].
    Plugin {
        /// The plugin.
        plugin: Arc<dyn VolumePlugin>,
        /// The volume.
        spec: VolumeSpec,
    },
    /// A FlexVolume whose driver is not in the registry: kept, never attached.
    PluginMissing {
        /// `flexVolume.driver`.
        driver: String,
    },
}

impl fmt::Debug for AttachSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachSource::Csi { driver, handle, pv } => {
                f.debug_struct("Csi").field("driver", driver).field("handle", handle).field("pv", pv).finish()
            }
            AttachSource::Plugin { plugin, spec } => {
                f.debug_struct("Plugin").field("plugin", &plugin.name()).field("spec", &spec.name()).finish()
            }
            AttachSource::PluginMissing { driver } => f.debug_struct("PluginMissing").field("driver", driver).finish(),
        }
    }
}

/// One volume that must be attached to one node.
#[derive(Debug, Clone)]
pub struct DesiredVolume {
    /// How to attach it.
    pub source: AttachSource,
    /// The spec's name (the PV's name, or the pod's volume name) for messages, as kubelet's `Spec.Name()`.
    pub spec_name: String,
    /// Whether it may be attached to several nodes at once (`util.IsMultiAttachAllowed`).
    pub multi_attach: bool,
    /// The pods on the node that use it (they get the attach events).
    pub pods: Vec<Arc<Pod>>,
}

/// Everything that must be attached, by volume and node.
#[derive(Debug, Default)]
pub struct DesiredState {
    /// The volumes.
    pub volumes: BTreeMap<VolumeNode, DesiredVolume>,
    /// Pod volumes that could not be looked at (unbound claim, missing PV…), for the log.
    pub problems: Vec<String>,
    /// Nodes whose agent attaches by itself (see [`is_managed`]): the controller leaves them alone.
    pub unmanaged_nodes: BTreeSet<String>,
}

impl DesiredState {
    /// Whether `key` is desired.
    pub fn contains(&self, key: &VolumeNode) -> bool {
        self.volumes.contains_key(key)
    }

    /// The pods on `nodes` that use `volume`.
    pub fn pods_on_nodes(&self, volume: &str, nodes: &[String]) -> Vec<Arc<Pod>> {
        nodes
            .iter()
            .filter_map(|n| self.volumes.get(&VolumeNode::new(volume, n.as_str())))
            .flat_map(|d| d.pods.iter().cloned())
            .collect()
    }
}

/// What one pod volume resolves to.
enum Resolved {
    /// Nothing to attach.
    NotAttachable,
    /// Attach this (unique name, source, spec name, multi-attach).
    Attach(String, AttachSource, String, bool),
}

/// Computes the desired state from the caches and the registry's current plugins.
pub fn compute(world: &World, plugins: &[Arc<dyn VolumePlugin>], host: &dyn VolumeHost) -> DesiredState {
    let unmanaged_nodes = world.nodes.filter(|n| !is_managed(n)).iter().map(|n| n.name_any()).collect();
    let mut state = DesiredState { unmanaged_nodes, ..Default::default() };
    let mut pods = world.pods.list();
    pods.sort_by_key(|p| object_key(&**p));
    for pod in pods {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty()) else {
            continue;
        };
        if pod_is_terminated(&pod) || world.nodes.get(node).is_none() || state.unmanaged_nodes.contains(node) {
            continue;
        }
        let Some(volumes) = pod.spec.as_ref().and_then(|s| s.volumes.as_ref()) else { continue };
        for volume in volumes {
            match resolve(world, plugins, host, &pod, volume) {
                Ok(Resolved::NotAttachable) => {}
                Ok(Resolved::Attach(unique, source, spec_name, multi_attach)) => {
                    let entry = state.volumes.entry(VolumeNode::new(unique, node)).or_insert_with(|| DesiredVolume {
                        source,
                        spec_name,
                        multi_attach,
                        pods: Vec::new(),
                    });
                    if !entry.pods.iter().any(|p| p.metadata.uid == pod.metadata.uid) {
                        entry.pods.push(pod.clone());
                    }
                }
                Err(problem) => {
                    state.problems.push(format!("pod {} volume {:?}: {problem}", object_key(&*pod), volume.name))
                }
            }
        }
    }
    state
}

/// Whether the controller attaches for `node`. kubelet annotates the nodes it leaves attaching to the
/// controller with `volumes.kubernetes.io/controller-managed-attach-detach: "true"` and the controller
/// manages only those; kvol's agent does not annotate, so here a node is managed unless the annotation says
/// something other than `"true"` (an agent that attaches by itself should set it to `"false"`).
pub fn is_managed(node: &Node) -> bool {
    node.annotations().get(ANN_CONTROLLER_MANAGED_ATTACH).is_none_or(|v| v == "true")
}

/// The claim a pod volume names: a `persistentVolumeClaim`, or a generic ephemeral volume's `<pod>-<volume>`
/// claim, with the pod's read-only flag.
fn claim_of(pod: &Pod, volume: &Volume) -> Option<(String, bool)> {
    if let Some(source) = &volume.persistent_volume_claim {
        return Some((source.claim_name.clone(), source.read_only.unwrap_or(false)));
    }
    volume.ephemeral.as_ref().map(|_| (format!("{}-{}", pod.name_any(), volume.name), false))
}

fn resolve(
    world: &World,
    plugins: &[Arc<dyn VolumePlugin>],
    host: &dyn VolumeHost,
    pod: &Pod,
    volume: &Volume,
) -> Result<Resolved, String> {
    let Some((claim_name, read_only)) = claim_of(pod, volume) else {
        if volume.csi.is_some() {
            return Ok(Resolved::NotAttachable); // CSI ephemeral volumes are never attached
        }
        return resolve_plugin(plugins, host, VolumeSpec::Inline(Box::new(volume.clone())), true);
    };
    let namespace = pod.namespace().unwrap_or_default();
    let Some(claim) = world.claims.get(&format!("{namespace}/{claim_name}")) else {
        return Err(format!("persistentvolumeclaim {namespace}/{claim_name} not found"));
    };
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    let pv_name = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("");
    if phase != "Bound" || pv_name.is_empty() {
        return Err(format!(
            "PVC {namespace}/{claim_name} has non-bound phase ({phase:?}) or empty pvc.Spec.VolumeName ({pv_name:?})"
        ));
    }
    let Some(pv) = world.volumes.get(pv_name) else {
        return Err(format!("persistentvolume {pv_name:?} not found"));
    };
    let claim_ref_uid = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).map(|r| r.uid.clone().unwrap_or_default());
    match claim_ref_uid {
        None => return Err(format!("found PV object {pv_name:?} but it has a nil pv.Spec.ClaimRef")),
        Some(uid) if claim.metadata.uid.as_ref().is_some_and(|c| *c != uid) => {
            return Err(format!("found PV object {pv_name:?} but its ClaimRef.UID {uid:?} is not the claim's"));
        }
        Some(_) => {}
    }
    let multi_attach = multi_attach_allowed(&pv);
    if let Some(csi) = pv.spec.as_ref().and_then(|s| s.csi.as_ref()) {
        let attach_required = world.drivers.get(&csi.driver).is_none_or(|d| d.spec.attach_required != Some(false));
        if !attach_required {
            return Ok(Resolved::NotAttachable);
        }
        let unique = names::csi_unique_name(&csi.driver, &csi.volume_handle);
        let source = AttachSource::Csi {
            driver: csi.driver.clone(),
            handle: csi.volume_handle.clone(),
            pv: pv_name.to_string(),
        };
        return Ok(Resolved::Attach(unique, source, pv_name.to_string(), multi_attach));
    }
    resolve_plugin(plugins, host, VolumeSpec::Persistent { pv: Box::new((*pv).clone()), read_only }, multi_attach)
}

/// The FlexVolume driver a spec names, if it is a flexVolume.
fn flex_driver(spec: &VolumeSpec) -> Option<&str> {
    match spec {
        VolumeSpec::Inline(v) => v.flex_volume.as_ref().map(|f| f.driver.as_str()),
        VolumeSpec::Persistent { pv, .. } => {
            pv.spec.as_ref().and_then(|s| s.flex_volume.as_ref()).map(|f| f.driver.as_str())
        }
    }
}

fn resolve_plugin(
    plugins: &[Arc<dyn VolumePlugin>],
    host: &dyn VolumeHost,
    spec: VolumeSpec,
    multi_attach: bool,
) -> Result<Resolved, String> {
    let matches: Vec<&Arc<dyn VolumePlugin>> = plugins.iter().filter(|p| p.can_support(&spec)).collect();
    let plugin = match matches.as_slice() {
        [one] => Arc::clone(one),
        [] => {
            return Ok(match flex_driver(&spec) {
                Some(driver) => {
                    let unique = names::flex_unique_name(driver, spec.name());
                    let source = AttachSource::PluginMissing { driver: driver.to_string() };
                    Resolved::Attach(unique, source, spec.name().to_string(), multi_attach)
                }
                None => Resolved::NotAttachable,
            });
        }
        many => {
            let names: Vec<&str> = many.iter().map(|p| p.name()).collect();
            return Err(format!("multiple volume plugins matched: {}", names.join(",")));
        }
    };
    let Some(attachable) = plugin.as_attachable() else { return Ok(Resolved::NotAttachable) };
    if !attachable.is_attachable(&spec) {
        return Ok(Resolved::NotAttachable);
    }
    let unique = match plugin.as_device() {
        Some(device) => device.unique_name(&spec, host).map_err(|e| e.to_string())?,
        None => {
            let volume_name = attachable.volume_name_for_attach(&spec).map_err(|e| e.to_string())?;
            names::flex_unique_name(flex_driver(&spec).unwrap_or(plugin.name()), &volume_name)
        }
    };
    let spec_name = spec.name().to_string();
    Ok(Resolved::Attach(unique, AttachSource::Plugin { plugin, spec }, spec_name, multi_attach))
}

/// Whether a PV may be attached to several nodes (`util.IsMultiAttachAllowed`): no access modes, or one of
/// ReadWriteMany / ReadOnlyMany. Inline volumes always may.
pub fn multi_attach_allowed(pv: &PersistentVolume) -> bool {
    let modes = pv.spec.as_ref().and_then(|s| s.access_modes.as_deref()).unwrap_or(&[]);
    modes.is_empty() || modes.iter().any(|m| m == "ReadWriteMany" || m == "ReadOnlyMany")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach_detach::world::ControllerHost;
    use kvol_volume::{AttachablePlugin, Mounter, PodRef, Unmounter};
    use serde_json::{json, Value};

    /// A FlexVolume driver that attaches (or not), without a device phase.
    struct FakeFlex {
        driver: &'static str,
        attachable: bool,
    }

    impl VolumePlugin for FakeFlex {
        fn name(&self) -> &str {
            self.driver
        }
        fn can_support(&self, spec: &VolumeSpec) -> bool {
            flex_driver(spec) == Some(self.driver)
        }
        fn volume_name(&self, spec: &VolumeSpec) -> kvol_volume::Result<String> {
            Ok(spec.name().to_string())
        }
        fn new_mounter(
            &self,
            _: &VolumeSpec,
            _: &PodRef,
            _: &Arc<dyn VolumeHost>,
        ) -> kvol_volume::Result<Box<dyn Mounter>> {
            Err(kvol_volume::Error::NoPlugin("fake".into()))
        }
        fn new_unmounter(&self, _: &str, _: &str, _: &Arc<dyn VolumeHost>) -> kvol_volume::Result<Box<dyn Unmounter>> {
            Err(kvol_volume::Error::NoPlugin("fake".into()))
        }
        fn as_attachable(&self) -> Option<&dyn AttachablePlugin> {
            self.attachable.then_some(self as &dyn AttachablePlugin)
        }
    }

    impl AttachablePlugin for FakeFlex {
        fn is_attachable(&self, _: &VolumeSpec) -> bool {
            true
        }
        fn volume_name_for_attach(&self, spec: &VolumeSpec) -> kvol_volume::Result<String> {
            Ok(spec.name().to_string())
        }
        fn attach(&self, _: &VolumeSpec, _: &str) -> kvol_volume::Result<String> {
            Ok("/dev/fake".into())
        }
        fn is_attached(&self, _: &VolumeSpec, _: &str) -> kvol_volume::Result<bool> {
            Ok(true)
        }
        fn detach(&self, _: &str, _: &str) -> kvol_volume::Result<()> {
            Ok(())
        }
    }

    fn pod(name: &str, node: Option<&str>, phase: &str, volumes: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}], "volumes": volumes},
            "status": {"phase": phase},
        })
    }

    fn claim_volume(name: &str, claim: &str) -> Value {
        json!({"name": name, "persistentVolumeClaim": {"claimName": claim}})
    }

    fn claim(name: &str, pv: Option<&str>) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"volumeName": pv},
            "status": {"phase": if pv.is_some() { "Bound" } else { "Pending" }},
        })
    }

    fn pv(name: &str, claim: &str, source: Value, modes: &[&str]) -> Value {
        let mut spec = json!({
            "accessModes": modes,
            "claimRef": {"namespace": "default", "name": claim, "uid": format!("uid-{claim}")},
        });
        for (k, v) in source.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!({"metadata": {"name": name}, "spec": spec})
    }

    fn csi(driver: &str, handle: &str) -> Value {
        json!({"csi": {"driver": driver, "volumeHandle": handle}})
    }

    fn flex(driver: &str) -> Value {
        json!({"flexVolume": {"driver": driver}})
    }

    fn world(objects: &[(&str, Value)]) -> Arc<World> {
        let world = World::default();
        for (kind, value) in objects {
            let v = value.clone();
            match *kind {
                "pod" => {
                    let _ = world.pods.apply(serde_json::from_value(v).unwrap());
                }
                "claim" => {
                    let _ = world.claims.apply(serde_json::from_value(v).unwrap());
                }
                "pv" => {
                    let _ = world.volumes.apply(serde_json::from_value(v).unwrap());
                }
                "node" => {
                    let meta = if v.is_string() { json!({"name": v}) } else { v };
                    let _ = world.nodes.apply(serde_json::from_value(json!({"metadata": meta})).unwrap());
                }
                "driver" => {
                    let _ = world.drivers.apply(serde_json::from_value(v).unwrap());
                }
                other => panic!("unknown kind {other}"),
            }
        }
        Arc::new(world)
    }

    fn driver(name: &str, attach_required: Option<bool>) -> Value {
        json!({"metadata": {"name": name}, "spec": {"attachRequired": attach_required}})
    }

    struct Case {
        name: &'static str,
        objects: Vec<(&'static str, Value)>,
        /// (unique name, node, pods, multi-attach)
        want: Vec<(&'static str, &'static str, Vec<&'static str>, bool)>,
    }

    const CSI_UNIQUE: &str = "kubernetes.io/csi/csi.kvol.io^vol-1";

    #[test]
    fn computes_which_volumes_each_node_needs_attached() {
        let csi_pod = |name: &'static str, node: Option<&'static str>, phase: &'static str| {
            ("pod", pod(name, node, phase, json!([claim_volume("data", "c1")])))
        };
        let bound_csi = || {
            vec![
                ("node", json!("n1")),
                ("claim", claim("c1", Some("pv1"))),
                ("pv", pv("pv1", "c1", csi("csi.kvol.io", "vol-1"), &["ReadWriteOnce"])),
            ]
        };
        let with = |mut base: Vec<(&'static str, Value)>, more: Vec<(&'static str, Value)>| {
            base.extend(more);
            base
        };
        let cases = vec![
            Case {
                name: "a CSI volume whose driver requires attach is desired on the pod's node",
                objects: with(
                    bound_csi(),
                    vec![("driver", driver("csi.kvol.io", Some(true))), csi_pod("p1", Some("n1"), "Running")],
                ),
                want: vec![(CSI_UNIQUE, "n1", vec!["p1"], false)],
            },
            Case {
                name: "a CSI volume whose CSIDriver is missing is attached (kubelet requires it too)",
                objects: with(bound_csi(), vec![csi_pod("p1", Some("n1"), "Pending")]),
                want: vec![(CSI_UNIQUE, "n1", vec!["p1"], false)],
            },
            Case {
                name: "a CSI volume whose driver needs no attach is not",
                objects: with(
                    bound_csi(),
                    vec![("driver", driver("csi.kvol.io", Some(false))), csi_pod("p1", Some("n1"), "Running")],
                ),
                want: vec![],
            },
            Case {
                name: "an unscheduled pod, a finished pod and a pod on a missing node need nothing",
                objects: with(
                    bound_csi(),
                    vec![
                        csi_pod("p1", None, "Pending"),
                        csi_pod("p2", Some("n1"), "Succeeded"),
                        csi_pod("p3", Some("n1"), "Failed"),
                        csi_pod("p4", Some("gone"), "Running"),
                    ],
                ),
                want: vec![],
            },
            Case {
                name: "a node whose agent attaches by itself is left alone",
                objects: vec![
                    ("claim", claim("c1", Some("pv1"))),
                    ("pv", pv("pv1", "c1", csi("csi.kvol.io", "vol-1"), &["ReadWriteOnce"])),
                    ("node", json!({"name": "n1", "annotations": {ANN_CONTROLLER_MANAGED_ATTACH: "false"}})),
                    csi_pod("p1", Some("n1"), "Running"),
                ],
                want: vec![],
            },
            Case {
                name: "two pods sharing a volume on one node make one entry with both pods",
                objects: with(
                    bound_csi(),
                    vec![csi_pod("p1", Some("n1"), "Running"), csi_pod("p2", Some("n1"), "Running")],
                ),
                want: vec![(CSI_UNIQUE, "n1", vec!["p1", "p2"], false)],
            },
            Case {
                name: "an unbound claim attaches nothing",
                objects: vec![
                    ("node", json!("n1")),
                    ("claim", claim("c1", None)),
                    ("pod", pod("p1", Some("n1"), "Pending", json!([claim_volume("data", "c1")]))),
                ],
                want: vec![],
            },
            Case {
                name: "a PV bound to another claim (uid) attaches nothing",
                objects: vec![
                    ("node", json!("n1")),
                    (
                        "claim",
                        json!({"metadata": {"name": "c1", "namespace": "default", "uid": "other"},
                               "spec": {"volumeName": "pv1"}, "status": {"phase": "Bound"}}),
                    ),
                    ("pv", pv("pv1", "c1", csi("csi.kvol.io", "vol-1"), &["ReadWriteOnce"])),
                    csi_pod("p1", Some("n1"), "Running"),
                ],
                want: vec![],
            },
            Case {
                name: "an inline CSI volume is never attached",
                objects: vec![
                    ("node", json!("n1")),
                    (
                        "pod",
                        pod("p1", Some("n1"), "Running", json!([{"name": "eph", "csi": {"driver": "csi.kvol.io"}}])),
                    ),
                ],
                want: vec![],
            },
            Case {
                name: "an inline flexVolume of an attachable driver is desired under the flexvolume- name",
                objects: vec![
                    ("node", json!("n1")),
                    (
                        "pod",
                        pod(
                            "p1",
                            Some("n1"),
                            "Running",
                            json!([{"name": "disk", "flexVolume": {"driver": "k8s/fake"}}]),
                        ),
                    ),
                ],
                want: vec![("flexvolume-k8s/fake/disk", "n1", vec!["p1"], true)],
            },
            Case {
                name: "a flexVolume PV is desired under the PV's name, single-node when ReadWriteOnce",
                objects: vec![
                    ("node", json!("n1")),
                    ("claim", claim("c1", Some("pv1"))),
                    ("pv", pv("pv1", "c1", flex("k8s/fake"), &["ReadWriteOnce"])),
                    ("pod", pod("p1", Some("n1"), "Running", json!([claim_volume("data", "c1")]))),
                ],
                want: vec![("flexvolume-k8s/fake/pv1", "n1", vec!["p1"], false)],
            },
            Case {
                name: "a driver without attach, and volumes of other kinds, need nothing",
                objects: vec![
                    ("node", json!("n1")),
                    (
                        "pod",
                        pod(
                            "p1",
                            Some("n1"),
                            "Running",
                            json!([{"name": "m", "flexVolume": {"driver": "k8s/mountonly"}}, {"name": "e", "emptyDir": {}}]),
                        ),
                    ),
                ],
                want: vec![],
            },
        ];
        let plugins: Vec<Arc<dyn VolumePlugin>> = vec![
            Arc::new(FakeFlex { driver: "k8s/fake", attachable: true }),
            Arc::new(FakeFlex { driver: "k8s/mountonly", attachable: false }),
        ];
        for case in cases {
            let world = world(&case.objects);
            let host = ControllerHost::new(world.clone());
            let state = compute(&world, &plugins, &host);
            let got: Vec<(String, String, Vec<String>, bool)> = state
                .volumes
                .iter()
                .map(|(k, v)| {
                    let mut pods: Vec<String> = v.pods.iter().map(|p| p.name_any()).collect();
                    pods.sort();
                    (k.volume.clone(), k.node.clone(), pods, v.multi_attach)
                })
                .collect();
            let want: Vec<(String, String, Vec<String>, bool)> = case
                .want
                .iter()
                .map(|(v, n, p, m)| (v.to_string(), n.to_string(), p.iter().map(|s| s.to_string()).collect(), *m))
                .collect();
            assert_eq!(got, want, "{}", case.name);
        }
    }

    #[test]
    fn a_flex_volume_whose_driver_is_not_probed_is_kept_but_never_attached() {
        let world = world(&[
            ("node", json!("n1")),
            ("pod", pod("p1", Some("n1"), "Running", json!([{"name": "disk", "flexVolume": {"driver": "k8s/later"}}]))),
        ]);
        let host = ControllerHost::new(world.clone());
        let state = compute(&world, &[], &host);
        let want = &state.volumes[&VolumeNode::new("flexvolume-k8s/later/disk", "n1")];
        assert!(matches!(&want.source, AttachSource::PluginMissing { driver } if driver == "k8s/later"));
    }

    #[test]
    fn problems_name_the_pod_and_volume() {
        let world = world(&[
            ("node", json!("n1")),
            ("pod", pod("p1", Some("n1"), "Running", json!([claim_volume("data", "missing")]))),
        ]);
        let host = ControllerHost::new(world.clone());
        let state = compute(&world, &[], &host);
        assert!(state.volumes.is_empty());
        assert_eq!(
            state.problems,
            vec!["pod default/p1 volume \"data\": persistentvolumeclaim default/missing not found"]
        );
    }
}
