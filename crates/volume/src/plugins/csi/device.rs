//! The node's device phase of a CSI volume (kubelet's `csiAttacher` as a `DeviceMounter`): wait for the
//! VolumeAttachment, NodeStageVolume at the global path, NodeUnstageVolume there. Inline ephemeral volumes
//! are never attached nor staged: every step is a no-op for them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kvol_csi::v1::NodeStageVolumeRequest;

use super::block;
use super::mounter::remove_mount_dir;
use super::names::{self, VolumeData};
use super::{
    attach_required, capability, csi_access_mode, csi_driver, persistent_ids, publish_context, secret_data, CsiPlugin,
    Source, CSI_PLUGIN_NAME,
};
use crate::error::{Error, ErrorClass, Result};
use crate::host::VolumeHost;
use crate::plugin::{DeviceMountRef, DeviceVolumePlugin};
use crate::spec::VolumeSpec;

impl DeviceVolumePlugin for CsiPlugin {
    /// `kubernetes.io/csi/<driver>^<handle>`; an inline volume, which is never attached or staged,
    /// `kubernetes.io/csi/<driver>^<volume name>`.
    fn unique_name(&self, spec: &VolumeSpec, _host: &dyn VolumeHost) -> Result<String> {
        match Source::of(spec)? {
            Source::Persistent { csi, .. } => {
                let (driver, handle) = persistent_ids(spec, csi)?;
                Ok(names::unique_name(driver, handle))
            }
            Source::Ephemeral { csi } => Ok(names::unique_name(&csi.driver, spec.name())),
        }
    }

    /// Per the CSIDriver's `attachRequired` (no CSIDriver object: attach, as kubelet); inline never.
    fn requires_attach(&self, spec: &VolumeSpec, host: &dyn VolumeHost) -> Result<bool> {
        match Source::of(spec)? {
            Source::Persistent { csi, .. } => Ok(attach_required(csi_driver(host, &csi.driver)?.as_ref())),
            Source::Ephemeral { .. } => Ok(false),
        }
    }

    /// Polls the VolumeAttachment `csi-<sha256(handle + driver + node)>` until `status.attached` (returns
    /// its name, kubelet's "device path" of a CSI volume), its `attachError` (fails with its message), its
    /// deletion, or the plugin's attach wait.
    fn wait_for_attach(&self, spec: &VolumeSpec, _device_path: &str, host: &dyn VolumeHost) -> Result<String> {
        let Source::Persistent { csi, .. } = Source::of(spec)? else { return Ok(String::new()) };
        let (driver, handle) = persistent_ids(spec, csi)?;
        if !attach_required(csi_driver(host, driver)?.as_ref()) {
            return Ok(String::new());
        }
        let name = names::attachment_name(handle, driver, host.node_name());
        super::attacher::wait_attached(host, &name, handle, self.config.attach_wait)?;
        Ok(name)
    }

    fn device_mount_path(&self, spec: &VolumeSpec, host: &dyn VolumeHost) -> Result<PathBuf> {
        let source = Source::of(spec)?;
        match source {
            Source::Persistent { csi, .. } => {
                let (driver, handle) = persistent_ids(spec, csi)?;
                if source.is_block() {
                    // kubelet's block staging path (`getStagingPath`), keyed by the PV's name.
                    return Ok(names::block_staging_path(host.root_dir(), spec.name()));
                }
                Ok(names::device_mount_path(host.root_dir(), driver, handle))
            }
            // Never created: inline volumes have no device phase (kubelet's CanDeviceMount is false).
            Source::Ephemeral { csi } => Ok(kvol_mount::paths::plugin_dir(host.root_dir(), CSI_PLUGIN_NAME)
                .join(&csi.driver)
                .join("ephemeral")
                .join(kvol_mount::paths::escape_qualified_name(spec.name()))
                .join(names::GLOBAL_MOUNT)),
        }
    }

    /// Kubelet's `MountDevice`: writes `vol_data.json` beside `device_mount_path` (kept even when the
    /// driver does not stage, since `unmount_device` needs it), then NodeStageVolume when the driver has
    /// STAGE_UNSTAGE_VOLUME, with the VolumeAttachment's `attachmentMetadata` as publish context, the
    /// capability (block for volumeMode Block, else mount with fsType and mountOptions), the volume
    /// attributes and the `nodeStageSecretRef` secrets. A block volume keeps its `vol_data.json` in
    /// `volumeDevices/<pv>/data` and is staged at `volumeDevices/staging/<pv>` (kubelet's block layout).
    /// The driver answers OK for a volume already staged there, so a repeat verifies it.
    fn mount_device(
        &self,
        spec: &VolumeSpec,
        _device_path: &str,
        device_mount_path: &Path,
        host: &dyn VolumeHost,
    ) -> Result<()> {
        let source = Source::of(spec)?;
        let Source::Persistent { csi, .. } = &source else { return Ok(()) };
        let (driver, handle) = persistent_ids(spec, csi)?;
        let client = self.client(driver)?;
        let caps = client.capabilities(handle)?;
        let object = csi_driver(host, driver)?;
        let context = publish_context(host, driver, handle, attach_required(object.as_ref()))?;
        let secrets = match (&csi.node_stage_secret_ref, caps.stage_unstage) {
            (Some(r), true) => {
                secret_data(host, r.namespace.as_deref().unwrap_or_default(), r.name.as_deref().unwrap_or_default())?
            }
            _ => HashMap::new(),
        };
        if source.is_block() {
            let request = NodeStageVolumeRequest {
                volume_id: handle.to_string(),
                publish_context: context,
                staging_target_path: device_mount_path.to_string_lossy().into_owned(),
                volume_capability: Some(capability(
                    true,
                    String::new(),
                    Vec::new(),
                    String::new(),
                    csi_access_mode(source.access_mode(), &caps),
                )),
                secrets,
                volume_context: source.attributes(),
            };
            return block::stage(&client, spec, driver, request, caps.stage_unstage, host);
        }
        super::super::make_dirs(device_mount_path)?;
        let data_dir = device_mount_path.parent().expect("a device mount path has a parent");
        VolumeData::for_device(driver, handle).save(data_dir)?;
        if !caps.stage_unstage {
            tracing::debug!(volume = handle, "STAGE_UNSTAGE_VOLUME capability not set: skipping NodeStageVolume");
            return Ok(());
        }
        let request = NodeStageVolumeRequest {
            volume_id: handle.to_string(),
            publish_context: context,
            staging_target_path: device_mount_path.to_string_lossy().into_owned(),
            volume_capability: Some(capability(
                source.is_block(),
                source.fs_type(),
                spec.mount_options(),
                String::new(),
                csi_access_mode(source.access_mode(), &caps),
            )),
            secrets,
            volume_context: source.attributes(),
        };
        if let Err(err) = client.stage(request) {
            if err.class() != ErrorClass::Uncertain {
                if let Err(clean) = remove_mount_dir(host.mounter().as_ref(), device_mount_path) {
                    tracing::warn!(path = %device_mount_path.display(), error = %clean, "cleaning up after a failed NodeStageVolume");
                }
            }
            return Err(err.into());
        }
        Ok(())
    }

    /// Kubelet's `UnmountDevice`: NodeUnstageVolume (when the driver stages), then removes the global
    /// directory and `vol_data.json`. No `vol_data.json` means nothing was staged: success. A block
    /// volume's staging path is unstaged only once no pod's device is left in its global map path.
    fn unmount_device(&self, _unique_name: &str, device_mount_path: &Path, host: &dyn VolumeHost) -> Result<()> {
        if block::is_staging_path(host.root_dir(), device_mount_path) {
            return block::unstage(self, host, device_mount_path);
        }
        let data_dir = device_mount_path.parent().expect("a device mount path has a parent");
        let Some(data) = VolumeData::load(data_dir)? else {
            tracing::debug!(path = %device_mount_path.display(), "no vol_data.json: nothing to unstage");
            return Ok(());
        };
        let client = self.client(&data.driver_name)?;
        if client.capabilities(&data.volume_handle)?.stage_unstage {
            client.unstage(&data.volume_handle, &device_mount_path.to_string_lossy())?;
        }
        remove_mount_dir(host.mounter().as_ref(), device_mount_path)
    }

    /// Every `<root>/plugins/kubernetes.io/csi/<driver>/<hash>/vol_data.json` (and kubelet's older
    /// `pv/<name>/vol_data.json`), and every block volume's `volumeDevices/<pv>/data/vol_data.json`: the
    /// global paths staged, or about to be, before a restart.
    fn find_device_mounts(&self, host: &dyn VolumeHost) -> Result<Vec<DeviceMountRef>> {
        let base = kvol_mount::paths::plugin_dir(host.root_dir(), CSI_PLUGIN_NAME);
        let mut found = Vec::new();
        let drivers = match std::fs::read_dir(&base) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(Error::io("reading", &base)(e)),
        };
        for driver_dir in drivers.flatten() {
            if driver_dir.file_name() == kvol_mount::paths::VOLUME_DEVICES_DIR {
                continue; // Block volumes, found below.
            }
            let Ok(volumes) = std::fs::read_dir(driver_dir.path()) else { continue };
            for volume_dir in volumes.flatten() {
                let dir = volume_dir.path();
                match VolumeData::load(&dir) {
                    Ok(Some(data)) if !data.driver_name.is_empty() && !data.volume_handle.is_empty() => {
                        found.push(DeviceMountRef {
                            plugin: CSI_PLUGIN_NAME.to_string(),
                            unique_name: names::unique_name(&data.driver_name, &data.volume_handle),
                            device_mount_path: dir.join(names::GLOBAL_MOUNT),
                        });
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "skipping unreadable vol_data.json"),
                }
            }
        }
        for (unique_name, device_mount_path) in block::find_staged(host.root_dir())? {
            found.push(DeviceMountRef { plugin: CSI_PLUGIN_NAME.to_string(), unique_name, device_mount_path });
        }
        found.sort_by(|a, b| a.device_mount_path.cmp(&b.device_mount_path));
        Ok(found)
    }
}
