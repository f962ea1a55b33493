//! What the API knows of this node's CSI drivers (kubelet's `nodeinfomanager`): the `CSINode` object named
//! after the node (`spec.drivers[]`: name, nodeID, topologyKeys, allocatable.count), the node annotation
//! `csi.volume.kubernetes.io/nodeid` (a JSON map driver → nodeID) and the driver's topology labels on the
//! Node. Every update reads the object fresh and writes it back with its `resourceVersion`, retrying with
//! backoff on a conflict (another driver registering at the same time, the node status updater).
//!
//! As kubelet, uninstalling a driver removes its CSINode entry and its node ID but leaves the topology
//! labels: another driver may report the same key, and volumes' node affinity may rely on it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::{CSINode, CSINodeDriver, CSINodeSpec, VolumeNodeResources};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PostParams;
use kube::{Api, Client};

/// The node annotation holding each driver's node ID.
pub const NODE_ID_ANNOTATION: &str = "csi.volume.kubernetes.io/nodeid";

/// Why an update of the node's CSI information failed (after its retries).
#[derive(Debug, thiserror::Error)]
pub enum CsiNodeError {
    /// A request to the API server failed.
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The driver reported no node ID.
    #[error("error adding CSI driver node info: driverNodeID must not be empty")]
    EmptyNodeId,
    /// A topology label the driver reports is already on the Node with another value.
    #[error("detected topology value collision: driver reported {key:?}:{value:?} but existing label is {key:?}:{existing:?}")]
    TopologyCollision { key: String, value: String, existing: String },
    /// The node annotation is not a JSON map of strings.
    #[error("failed to parse node's {NODE_ID_ANNOTATION:?} annotation value ({value:?}): {source}")]
    Annotation {
        value: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Result with [`CsiNodeError`].
pub type Result<T, E = CsiNodeError> = std::result::Result<T, E>;

fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> CsiNodeError {
    let what = what.into();
    move |source| CsiNodeError::Api { what, source }
}

fn is_status(err: &CsiNodeError, code: u16) -> bool {
    matches!(err, CsiNodeError::Api { source: kube::Error::Api(s), .. } if s.code == code)
}

/// Kubelet's `updateBackoff`: 4 steps from 10 ms, factor 5 (about 1.3 s in all); one more attempt here.
const ATTEMPTS: u32 = 5;

async fn with_retries<T, F, Fut>(what: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut pause = Duration::from_millis(10);
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Ok(v) => return Ok(v),
            // A collision or a malformed annotation does not go away by retrying.
            Err(
                e @ (CsiNodeError::TopologyCollision { .. }
                | CsiNodeError::Annotation { .. }
                | CsiNodeError::EmptyNodeId),
            ) => return Err(e),
            Err(e) if tries >= ATTEMPTS => return Err(e),
            Err(e) => {
                tracing::debug!(what, error = %e, "retrying");
                tokio::time::sleep(pause).await;
                pause *= 5;
            }
        }
    }
}

/// The driver → node ID map of the node annotation.
pub fn node_ids(node: &Node) -> Result<BTreeMap<String, String>> {
    let Some(value) = node.metadata.annotations.as_ref().and_then(|a| a.get(NODE_ID_ANNOTATION)) else {
        return Ok(BTreeMap::new());
    };
    if value.is_empty() {
        return Ok(BTreeMap::new());
    }
    serde_json::from_str(value).map_err(|source| CsiNodeError::Annotation { value: value.clone(), source })
}

/// Sets `driver`'s node ID in the annotation and adds the topology labels; whether anything changed.
fn install_on_node(node: &mut Node, driver: &str, node_id: &str, topology: &BTreeMap<String, String>) -> Result<bool> {
    let mut ids = node_ids(node)?;
    let labels = node.metadata.labels.get_or_insert_with(BTreeMap::new);
    for (key, value) in topology {
        if let Some(existing) = labels.get(key).filter(|v| *v != value) {
            return Err(CsiNodeError::TopologyCollision {
                key: key.clone(),
                value: value.clone(),
                existing: existing.clone(),
            });
        }
    }
    let mut changed = false;
    for (key, value) in topology {
        changed |= labels.insert(key.clone(), value.clone()).as_ref() != Some(value);
    }
    if ids.get(driver).map(String::as_str) != Some(node_id) {
        ids.insert(driver.to_string(), node_id.to_string());
        let json = serde_json::to_string(&ids).expect("a map of strings serializes");
        node.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(NODE_ID_ANNOTATION.into(), json);
        changed = true;
    }
    Ok(changed)
}

/// Removes `driver`'s node ID from the annotation (the annotation goes when empty); whether it changed.
fn uninstall_from_node(node: &mut Node, driver: &str) -> Result<bool> {
    let mut ids = node_ids(node)?;
    if ids.remove(driver).is_none() {
        return Ok(false);
    }
    let annotations = node.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if ids.is_empty() {
        annotations.remove(NODE_ID_ANNOTATION);
    } else {
        annotations
            .insert(NODE_ID_ANNOTATION.into(), serde_json::to_string(&ids).expect("a map of strings serializes"));
    }
    Ok(true)
}

/// The CSINode entry of a driver (kubelet's `installDriverToCSINode`): topology keys sorted, allocatable
/// count only for a positive limit (capped to i32).
pub fn driver_entry(
    driver: &str,
    node_id: &str,
    max_volumes: i64,
    topology: &BTreeMap<String, String>,
) -> CSINodeDriver {
    let keys: BTreeSet<&String> = topology.keys().collect();
    CSINodeDriver {
        name: driver.to_string(),
        node_id: node_id.to_string(),
        topology_keys: Some(keys.into_iter().cloned().collect()),
        allocatable: (max_volumes > 0)
            .then(|| VolumeNodeResources { count: Some(max_volumes.min(i64::from(i32::MAX)) as i32) }),
    }
}

/// Maintains the node's CSI information for one node.
#[derive(Clone)]
pub struct CsiNodeUpdater {
    client: Client,
    node_name: String,
}

impl CsiNodeUpdater {
    /// An updater for the Node (and CSINode) named `node_name`.
    pub fn new(client: Client, node_name: impl Into<String>) -> CsiNodeUpdater {
        CsiNodeUpdater { client, node_name: node_name.into() }
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    fn csinodes(&self) -> Api<CSINode> {
        Api::all(self.client.clone())
    }

    /// Kubelet's `InstallCSIDriver`: the node annotation and topology labels, then the driver's CSINode
    /// entry (creating the CSINode, owned by the Node, if needed). Idempotent.
    pub async fn install_driver(
        &self,
        driver: &str,
        node_id: &str,
        max_volumes: i64,
        topology: &BTreeMap<String, String>,
    ) -> Result<()> {
        if node_id.is_empty() {
            return Err(CsiNodeError::EmptyNodeId);
        }
        with_retries("updating the Node's CSI annotation", || async {
            let mut node =
                self.nodes().get(&self.node_name).await.map_err(api(format!("getting node {}", self.node_name)))?;
            if install_on_node(&mut node, driver, node_id, topology)? {
                self.nodes()
                    .replace(&self.node_name, &PostParams::default(), &node)
                    .await
                    .map_err(api(format!("updating node {}", self.node_name)))?;
            }
            Ok(())
        })
        .await?;
        let entry = driver_entry(driver, node_id, max_volumes, topology);
        with_retries("updating the CSINode", || async {
            let mut csinode = match self.csinodes().get_opt(&self.node_name).await.map_err(api("getting CSINode"))? {
                Some(c) => c,
                None => self.create_csinode().await?,
            };
            let drivers = &mut csinode.spec.drivers;
            if drivers.contains(&entry) {
                return Ok(());
            }
            drivers.retain(|d| d.name != entry.name);
            drivers.push(entry.clone());
            self.csinodes()
                .replace(&self.node_name, &PostParams::default(), &csinode)
                .await
                .map_err(api(format!("updating CSINode {}", self.node_name)))?;
            Ok(())
        })
        .await
    }

    /// Kubelet's `CreateCSINode`: an empty CSINode owned by the Node. An existing one is returned as is.
    async fn create_csinode(&self) -> Result<CSINode> {
        let node = self.nodes().get(&self.node_name).await.map_err(api(format!("getting node {}", self.node_name)))?;
        let csinode = CSINode {
            metadata: ObjectMeta {
                name: Some(self.node_name.clone()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: self.node_name.clone(),
                    uid: node.metadata.uid.unwrap_or_default(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: CSINodeSpec { drivers: Vec::new() },
        };
        match self.csinodes().create(&PostParams::default(), &csinode).await.map_err(api("creating CSINode")) {
            Ok(c) => Ok(c),
            Err(e) if is_status(&e, 409) => self.csinodes().get(&self.node_name).await.map_err(api("getting CSINode")),
            Err(e) => Err(e),
        }
    }

    /// Kubelet's `UninstallCSIDriver`: the driver's CSINode entry, then its node ID in the annotation.
    /// Idempotent: nothing to remove is success.
    pub async fn uninstall_driver(&self, driver: &str) -> Result<()> {
        with_retries("removing the driver from the CSINode", || async {
            let Some(mut csinode) = self.csinodes().get_opt(&self.node_name).await.map_err(api("getting CSINode"))?
            else {
                return Ok(());
            };
            let before = csinode.spec.drivers.len();
            csinode.spec.drivers.retain(|d| d.name != driver);
            if csinode.spec.drivers.len() != before {
                self.csinodes()
                    .replace(&self.node_name, &PostParams::default(), &csinode)
                    .await
                    .map_err(api(format!("updating CSINode {}", self.node_name)))?;
            }
            Ok(())
        })
        .await?;
        with_retries("removing the driver from the Node's annotation", || async {
            let Some(mut node) = self.nodes().get_opt(&self.node_name).await.map_err(api("getting node"))? else {
                return Ok(());
            };
            if uninstall_from_node(&mut node, driver)? {
                self.nodes()
                    .replace(&self.node_name, &PostParams::default(), &node)
                    .await
                    .map_err(api(format!("updating node {}", self.node_name)))?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_annotation_maps_each_driver_to_its_node_id_and_goes_with_the_last_driver() {
        let mut node = Node::default();
        assert!(install_on_node(&mut node, "a.csi", "n-a", &topology(&[("zone", "z1")])).unwrap());
        assert!(!install_on_node(&mut node, "a.csi", "n-a", &topology(&[("zone", "z1")])).unwrap(), "no change");
        assert!(install_on_node(&mut node, "b.csi", "n-b", &BTreeMap::new()).unwrap());
        assert_eq!(
            node_ids(&node).unwrap(),
            BTreeMap::from([("a.csi".to_string(), "n-a".to_string()), ("b.csi".to_string(), "n-b".to_string())])
        );
        assert_eq!(node.metadata.labels.as_ref().unwrap()["zone"], "z1");
        let err = install_on_node(&mut node, "c.csi", "n-c", &topology(&[("zone", "z2")])).unwrap_err();
        assert!(matches!(err, CsiNodeError::TopologyCollision { .. }), "{err}");

        assert!(uninstall_from_node(&mut node, "a.csi").unwrap());
        assert!(!uninstall_from_node(&mut node, "a.csi").unwrap());
        assert!(uninstall_from_node(&mut node, "b.csi").unwrap());
        assert!(!node.metadata.annotations.as_ref().unwrap().contains_key(NODE_ID_ANNOTATION));
        assert_eq!(node.metadata.labels.as_ref().unwrap()["zone"], "z1", "labels stay, as kubelet leaves them");
    }

    #[test]
    fn csinode_entries_sort_topology_keys_and_count_only_positive_limits() {
        let e = driver_entry("d", "n", 0, &topology(&[("b", "1"), ("a", "2")]));
        assert_eq!(e.topology_keys, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(e.allocatable, None);
        let e = driver_entry("d", "n", i64::MAX, &BTreeMap::new());
        assert_eq!(e.allocatable.unwrap().count, Some(i32::MAX));
    }
}
