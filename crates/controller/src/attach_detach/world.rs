//! The objects the attach/detach controller watches, each kind in a local cache fed by its own watch, and
//! the read-only [`VolumeHost`] plugins get from the controller.

use crate::cache::Cache;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::storage::v1::{CSIDriver, VolumeAttachment};
use kvol_volume::VolumeHost;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Local copies of everything the controller reads.
#[derive(Default)]
pub struct World {
    /// Pods by `namespace/name`.
    pub pods: Cache<Pod>,
    /// Claims by `namespace/name`.
    pub claims: Cache<PersistentVolumeClaim>,
    /// PersistentVolumes by name.
    pub volumes: Cache<PersistentVolume>,
    /// Nodes by name.
    pub nodes: Cache<Node>,
    /// CSIDrivers by name.
    pub drivers: Cache<CSIDriver>,
    /// VolumeAttachments by name.
    pub attachments: Cache<VolumeAttachment>,
}

/// The controller's [`VolumeHost`]: plugins asked for a unique name or an attach get the CSIDriver and
/// VolumeAttachment caches, and nothing that touches this machine. The controller never mounts; the
/// mounter is an in-memory fake so that a plugin that tried would change nothing on the host.
pub struct ControllerHost {
    world: Arc<World>,
    root: PathBuf,
    mounter: Arc<dyn kvol_mount::Mounter>,
}

impl ControllerHost {
    /// A host reading from `world`.
    pub fn new(world: Arc<World>) -> Self {
        ControllerHost {
            world,
            root: PathBuf::from("/nonexistent/kvol-attach-detach-controller"),
            mounter: Arc::new(kvol_mount::FakeMounter::new()),
        }
    }
}

fn unavailable(resource: &'static str, namespace: &str, name: &str) -> kvol_volume::Error {
    kvol_volume::Error::ObjectUnavailable {
        resource,
        namespace: namespace.into(),
        name: name.into(),
        reason: "the attach/detach controller does not read this kind".into(),
    }
}

impl VolumeHost for ControllerHost {
    fn root_dir(&self) -> &Path {
        &self.root
    }

    fn mounter(&self) -> Arc<dyn kvol_mount::Mounter> {
        Arc::clone(&self.mounter)
    }

    fn config_map(&self, namespace: &str, name: &str) -> kvol_volume::Result<Option<ConfigMap>> {
        Err(unavailable("configmaps", namespace, name))
    }

    fn secret(&self, namespace: &str, name: &str) -> kvol_volume::Result<Option<Secret>> {
        Err(unavailable("secrets", namespace, name))
    }

    fn csi_driver(&self, name: &str) -> kvol_volume::Result<Option<CSIDriver>> {
        Ok(self.world.drivers.get(name).map(|d| (*d).clone()))
    }

    fn volume_attachment(&self, name: &str) -> kvol_volume::Result<Option<VolumeAttachment>> {
        Ok(self.world.attachments.get(name).map(|a| (*a).clone()))
    }
}
