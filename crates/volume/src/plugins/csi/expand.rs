//! Kubelet's `NodeExpand` for CSI (`csi_expander.go`): NodeExpandVolume on the node after the resizer grew
//! the volume, with the new size, the volume's publish path, the staging path when the driver stages, the
//! capability and the `nodeExpandSecretRef` secrets. A driver without the node EXPAND_VOLUME capability
//! needs no node step, which is success.

use std::collections::HashMap;
use std::path::Path;

use kvol_csi::v1::{CapacityRange, NodeExpandVolumeRequest};

use super::{capability, csi_access_mode, persistent_ids, secret_data, CsiPlugin, Source};
use crate::error::Result;
use crate::host::VolumeHost;
use crate::plugin::NodeExpandablePlugin;
use crate::spec::VolumeSpec;

impl NodeExpandablePlugin for CsiPlugin {
    fn node_expand(
        &self,
        spec: &VolumeSpec,
        volume_path: &Path,
        device_mount_path: Option<&Path>,
        new_size: i64,
        _old_size: i64,
        host: &dyn VolumeHost,
    ) -> Result<()> {
        let source = Source::of(spec)?;
        let Source::Persistent { csi, .. } = &source else { return Ok(()) };
        let (driver, handle) = persistent_ids(spec, csi)?;
        let client = self.client(driver)?;
        let caps = client.capabilities(handle)?;
        if !caps.expand {
            tracing::debug!(volume = handle, "driver has no node EXPAND_VOLUME capability: nothing to do on the node");
            return Ok(());
        }
        let secrets = match &csi.node_expand_secret_ref {
            Some(r) => {
                secret_data(host, r.namespace.as_deref().unwrap_or_default(), r.name.as_deref().unwrap_or_default())?
            }
            None => HashMap::new(),
        };
        let staging = match (caps.stage_unstage, device_mount_path) {
            (true, Some(path)) => path.to_string_lossy().into_owned(),
            _ => String::new(),
        };
        let request = NodeExpandVolumeRequest {
            volume_id: handle.to_string(),
            volume_path: volume_path.to_string_lossy().into_owned(),
            capacity_range: Some(CapacityRange { required_bytes: new_size, limit_bytes: 0 }),
            staging_target_path: staging,
            volume_capability: Some(capability(
                source.is_block(),
                source.fs_type(),
                spec.mount_options(),
                String::new(),
                csi_access_mode(source.access_mode(), &caps),
            )),
            secrets,
        };
        Ok(client.expand(request)?)
    }
}
