//! The actual state of the world (`cache/actual_state_of_world.go`): which volume is attached to which
//! node, whether the node still has it mounted, and what the node's `status.volumesAttached` must say.
//!
//! It is rebuilt at start from every Node's `status.volumesAttached` (what the controller itself reported
//! before) and every VolumeAttachment (an attach that may have been in flight), so a restart neither attaches
//! a volume again nor forgets one.

use super::desired::VolumeNode;
use super::names;
use k8s_openapi::api::core::v1::{AttachedVolume as NodeAttachedVolume, Node, PersistentVolume};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

/// Where an attachment stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachState {
    /// Attached, and confirmed; `device_path` as the attach reported it ("" for CSI).
    Attached {
        /// The device path recorded in the node's status.
        device_path: String,
    },
    /// May or may not be attached: an attach failed or is still in progress (a VolumeAttachment not yet
    /// attached), or a detach failed. Attached again when desired, detached when not.
    Uncertain,
    /// Removed from the node's status, detach running (a VolumeAttachment being deleted).
    Detaching,
}

/// One volume on one node.
#[derive(Debug, Clone)]
pub struct AttachedVolume {
    /// Where it stands.
    pub state: AttachState,
    /// Whether the node lists it in `status.volumesInUse`; assumed until the node says otherwise.
    pub mounted_by_node: bool,
    /// When the controller first found it no longer desired (the unmount wait counts from here).
    pub detach_requested_at: Option<Instant>,
    /// Since when an attach or detach has been waiting for the CSI driver's attacher.
    pub waiting_since: Option<Instant>,
    /// Whether the node's `status.volumesAttached` must list it.
    pub reported: bool,
    /// The plugin that attached it, when known (after a restart only the unique name is).
    pub plugin: Option<String>,
}

impl AttachedVolume {
    fn new(state: AttachState) -> Self {
        let reported = matches!(state, AttachState::Attached { .. });
        AttachedVolume {
            state,
            mounted_by_node: true,
            detach_requested_at: None,
            waiting_since: None,
            reported,
            plugin: None,
        }
    }
}

/// Every attachment the controller knows of.
#[derive(Debug, Default)]
pub struct ActualState {
    /// The attachments.
    pub volumes: BTreeMap<VolumeNode, AttachedVolume>,
    /// Nodes whose `status.volumesAttached` may differ from what must be reported.
    pub dirty_nodes: BTreeSet<String>,
}

impl ActualState {
    /// Rebuilds the state from the nodes' statuses and the VolumeAttachments: what a node lists is
    /// attached; a VolumeAttachment of a CSI PersistentVolume not listed there is uncertain (it is attached
    /// again if still desired, which adopts it, and detached otherwise). `mounted_by_node` comes from each
    /// node's `status.volumesInUse`.
    pub fn rebuild(
        nodes: &[Arc<Node>],
        attachments: &[Arc<VolumeAttachment>],
        volume: impl Fn(&str) -> Option<Arc<PersistentVolume>>,
    ) -> Self {
        let mut state = ActualState::default();
        for node in nodes {
            let name = node.name_any();
            for attached in node.status.as_ref().and_then(|s| s.volumes_attached.as_deref()).unwrap_or(&[]) {
                let entry = AttachedVolume::new(AttachState::Attached { device_path: attached.device_path.clone() });
                state.volumes.insert(VolumeNode::new(attached.name.as_str(), name.as_str()), entry);
            }
        }
        for attachment in attachments {
            let Some(pv_name) = attachment.spec.source.persistent_volume_name.as_deref() else { continue };
            let Some(pv) = volume(pv_name) else { continue };
            let Some(csi) = pv.spec.as_ref().and_then(|s| s.csi.as_ref()) else { continue };
            let unique = names::csi_unique_name(&csi.driver, &csi.volume_handle);
            let key = VolumeNode::new(unique, attachment.spec.node_name.as_str());
            state.volumes.entry(key).or_insert_with(|| AttachedVolume::new(AttachState::Uncertain));
        }
        for node in nodes {
            state.set_in_use(&node.name_any(), node_in_use(node));
        }
        state
    }

    /// Records which of `node`'s volumes it reports in use (`SetVolumesMountedByNode`).
    pub fn set_in_use(&mut self, node: &str, in_use: &[String]) {
        for (key, volume) in self.volumes.iter_mut() {
            if key.node == node {
                volume.mounted_by_node = in_use.contains(&key.volume);
            }
        }
    }

    /// What `node`'s `status.volumesAttached` must list, sorted by name.
    pub fn reported_for(&self, node: &str) -> Vec<NodeAttachedVolume> {
        self.volumes
            .iter()
            .filter(|(key, v)| key.node == node && v.reported)
            .filter_map(|(key, v)| match &v.state {
                AttachState::Attached { device_path } => {
                    Some(NodeAttachedVolume { name: key.volume.clone(), device_path: device_path.clone() })
                }
                _ => None,
            })
            .collect()
    }

    /// The nodes other than `except` where `volume` is attached or still detaching.
    pub fn other_nodes_holding(&self, volume: &str, except: &str) -> Vec<String> {
        self.volumes
            .iter()
            .filter(|(key, v)| {
                key.volume == volume
                    && key.node != except
                    && matches!(v.state, AttachState::Attached { .. } | AttachState::Detaching)
            })
            .map(|(key, _)| key.node.clone())
            .collect()
    }

    /// Marks a node's status for rewriting.
    pub fn mark_dirty(&mut self, node: &str) {
        self.dirty_nodes.insert(node.to_string());
    }
}

/// A node's `status.volumesInUse`.
pub fn node_in_use(node: &Node) -> &[String] {
    node.status.as_ref().and_then(|s| s.volumes_in_use.as_deref()).unwrap_or(&[])
}

/// A node's `status.volumesAttached`, sorted by name.
pub fn node_attached(node: &Node) -> Vec<NodeAttachedVolume> {
    let mut list = node.status.as_ref().and_then(|s| s.volumes_attached.clone()).unwrap_or_default();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, attached: &[(&str, &str)], in_use: &[&str]) -> Arc<Node> {
        let attached: Vec<_> = attached.iter().map(|(n, d)| json!({"name": n, "devicePath": d})).collect();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "status": {"volumesAttached": attached, "volumesInUse": in_use},
            }))
            .unwrap(),
        )
    }

    fn csi_pv(name: &str, driver: &str, handle: &str) -> Arc<PersistentVolume> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"csi": {"driver": driver, "volumeHandle": handle}},
            }))
            .unwrap(),
        )
    }

    fn attachment(name: &str, pv: &str, node: &str) -> Arc<VolumeAttachment> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"attacher": "csi.kvol.io", "nodeName": node, "source": {"persistentVolumeName": pv}},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn rebuilds_attached_volumes_from_node_status_and_in_flight_ones_from_attachments() {
        let nodes = [
            node("n1", &[("flexvolume-k8s/loop/v1", "/dev/loop3")], &["flexvolume-k8s/loop/v1"]),
            node("n2", &[("kubernetes.io/csi/csi.kvol.io^h1", "")], &[]),
        ];
        let pvs = [csi_pv("pv1", "csi.kvol.io", "h1"), csi_pv("pv2", "csi.kvol.io", "h2")];
        let attachments =
            [attachment("a1", "pv1", "n2"), attachment("a2", "pv2", "n1"), attachment("a3", "gone", "n1")];
        let state = ActualState::rebuild(&nodes, &attachments, |n| pvs.iter().find(|p| p.name_any() == n).cloned());
        let flex = &state.volumes[&VolumeNode::new("flexvolume-k8s/loop/v1", "n1")];
        assert_eq!(flex.state, AttachState::Attached { device_path: "/dev/loop3".into() });
        assert!(flex.mounted_by_node && flex.reported);
        let csi = &state.volumes[&VolumeNode::new("kubernetes.io/csi/csi.kvol.io^h1", "n2")];
        assert_eq!(csi.state, AttachState::Attached { device_path: String::new() }, "the node status wins");
        assert!(!csi.mounted_by_node);
        let in_flight = &state.volumes[&VolumeNode::new("kubernetes.io/csi/csi.kvol.io^h2", "n1")];
        assert_eq!(in_flight.state, AttachState::Uncertain);
        assert!(!in_flight.reported);
        assert_eq!(state.volumes.len(), 3, "an attachment of a missing PV is skipped");
        assert_eq!(state.reported_for("n1").len(), 1);
    }
}
