//! What plugins get from the node agent: the root directory, the mounter, and read access to the API
//! objects a volume projects (kubelet's `VolumeHost`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::storage::v1::{CSIDriver, VolumeAttachment};

use crate::error::Result;

/// The node agent's side of the plugin contract. Object getters return `Ok(None)` when the object does not
/// exist and an error when that cannot be known yet.
pub trait VolumeHost: Send + Sync {
    /// The agent's root directory (`/var/lib/kubelet` for kubelet).
    fn root_dir(&self) -> &Path;
    /// The mount layer.
    fn mounter(&self) -> Arc<dyn kvol_mount::Mounter>;
    /// A ConfigMap by namespace and name.
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>>;
    /// A Secret by namespace and name.
    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>>;

    /// The node this host is (`--node-name`); empty where no node is known (the controller's host).
    fn node_name(&self) -> &str {
        ""
    }

    /// A CSIDriver object by name (its `attachRequired`, `podInfoOnMount`, `fsGroupPolicy`…).
    fn csi_driver(&self, name: &str) -> Result<Option<CSIDriver>> {
        Err(unavailable("csidrivers", "", name))
    }

    /// A VolumeAttachment by name, read now (the CSI plugin waits on its `status.attached`).
    fn volume_attachment(&self, name: &str) -> Result<Option<VolumeAttachment>> {
        Err(unavailable("volumeattachments", "", name))
    }

    /// Creates `attachment`, or returns the VolumeAttachment of that name when one exists already (kubelet's
    /// attacher adopts it on AlreadyExists). Only the node agent's own attach (controller attach/detach off)
    /// writes attachments.
    fn create_volume_attachment(&self, attachment: &VolumeAttachment) -> Result<VolumeAttachment> {
        Err(unavailable("volumeattachments", "", attachment.metadata.name.as_deref().unwrap_or_default()))
    }

    /// Deletes the VolumeAttachment `name`: `Ok(Some(_))` with what is left while a finalizer (its attacher's)
    /// holds it, `Ok(None)` once it is gone. Already gone is success.
    fn delete_volume_attachment(&self, name: &str) -> Result<Option<VolumeAttachment>> {
        Err(unavailable("volumeattachments", "", name))
    }

    /// The device path this node's `status.volumesAttached` records for `unique_name`, read now; `None`
    /// while the controller has not attached it.
    fn attached_device_path(&self, unique_name: &str) -> Result<Option<String>> {
        Err(unavailable("nodes", "", unique_name))
    }

    /// A pod by namespace and name (for the pod information some drivers ask for).
    fn pod(&self, namespace: &str, name: &str) -> Result<Option<Pod>> {
        Err(unavailable("pods", namespace, name))
    }

    /// `<root>/pods/<uid>/volumes/<escaped plugin>/<volume>`.
    fn pod_volume_dir(&self, pod_uid: &str, plugin: &str, volume: &str) -> PathBuf {
        kvol_mount::paths::pod_volume_dir(self.root_dir(), pod_uid, plugin, volume)
    }
}

fn unavailable(resource: &'static str, namespace: &str, name: &str) -> crate::Error {
    crate::Error::ObjectUnavailable {
        resource,
        namespace: namespace.into(),
        name: name.into(),
        reason: "this host has no API access".into(),
    }
}
