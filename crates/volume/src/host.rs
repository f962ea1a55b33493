//! What plugins get from the node agent: the root directory, the mounter, and read access to the API
//! objects a volume projects (kubelet's `VolumeHost`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};

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

    /// `<root>/pods/<uid>/volumes/<escaped plugin>/<volume>`.
    fn pod_volume_dir(&self, pod_uid: &str, plugin: &str, volume: &str) -> PathBuf {
        kvol_mount::paths::pod_volume_dir(self.root_dir(), pod_uid, plugin, volume)
    }
}
