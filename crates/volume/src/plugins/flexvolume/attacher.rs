//! The device phase and attach/detach of an attachable driver (`attacher.go`, `detacher.go` and their
//! defaults): `waitforattach`, `mountdevice`, `unmountdevice` on the node; `attach`, `isattached`,
//! `detach` in the controller (or in the agent when the controller does not attach).

use std::path::{Path, PathBuf};

use kvol_flex::discovery::device_mount_path;
use kvol_flex::DriverCall;

use super::errors::{clean_up_failed_mount, driver_error, uncleaned_driver_error};
use super::{FlexSource, FlexVolumePlugin};
use crate::error::{Error, Result};
use crate::host::VolumeHost;
use crate::mount_root::is_mount_root;
use crate::plugin::{AttachablePlugin, DeviceMountRef, DeviceVolumePlugin};
use crate::spec::VolumeSpec;

/// kubelet's `FormatAndMount` file system when the spec names none.
const DEFAULT_FS_TYPE: &str = "ext4";

/// Whether `path` is mounted, for teardown: a missing path is `None`, a corrupted mount counts as mounted.
fn mounted_for_teardown(mounter: &dyn kvol_mount::Mounter, path: &Path) -> Result<Option<bool>> {
    match is_mount_root(mounter, path) {
        Ok(m) => Ok(Some(m)),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(Error::Io { source, .. }) if kvol_mount::is_corrupted_mount_error(&source) => Ok(Some(true)),
        Err(e) => Err(e),
    }
}

impl FlexVolumePlugin {
    /// kubelet's `attacherDefaults.MountDevice`: format the device if it holds nothing (never when
    /// read-only), then mount it with the spec's file system (ext4 when none) and `ro`/`rw`.
    fn format_and_mount(
        &self,
        source: &FlexSource<'_>,
        device_path: &str,
        device_mount_path: &Path,
        host: &dyn VolumeHost,
    ) -> Result<()> {
        let fs_type = if source.fs_type.is_empty() { DEFAULT_FS_TYPE } else { source.fs_type };
        tracing::warn!(driver = %self.driver_name(), device = device_path, path = %device_mount_path.display(), "FlexVolume: mountdevice not supported by the driver; formatting (if empty) and mounting the device");
        if !source.read_only {
            kvol_mount::mkfs_if_unformatted(Path::new(device_path), fs_type)?;
        }
        let rw = if source.read_only { "ro" } else { "rw" };
        host.mounter().mount(device_path, device_mount_path, fs_type, &[rw.to_owned()])?;
        Ok(())
    }
}

impl DeviceVolumePlugin for FlexVolumePlugin {
    /// `flexvolume-<vendor>/<driver>/<volume name>` (kubelet's `GetUniqueVolumeNameFromSpec`).
    fn unique_name(&self, spec: &VolumeSpec, _host: &dyn VolumeHost) -> Result<String> {
        Ok(format!("{}/{}", self.plugin_name(), self.volume_name_of(&self.source(spec)?)?))
    }

    fn requires_attach(&self, _spec: &VolumeSpec, _host: &dyn VolumeHost) -> Result<bool> {
        Ok(true)
    }

    /// `waitforattach <device> <json>` under its own limit (ten minutes by default); the driver's
    /// `device` is the answer. Not supported: the device path given.
    fn wait_for_attach(&self, spec: &VolumeSpec, device_path: &str, _host: &dyn VolumeHost) -> Result<String> {
        let source = self.source(spec)?;
        match self.run(DriverCall::wait_for_attach(device_path, &source.flex_spec())) {
            Ok(status) => Ok(status.device),
            Err(e) if e.is_not_supported() => Ok(device_path.to_owned()),
            Err(e) => Err(uncleaned_driver_error(self.driver_name(), e)),
        }
    }

    /// `<root>/plugins/kubernetes.io/flexvolume/<vendor>/<driver>/mounts/<volume name>`.
    fn device_mount_path(&self, spec: &VolumeSpec, host: &dyn VolumeHost) -> Result<PathBuf> {
        let name = self.volume_name_of(&self.source(spec)?)?;
        Ok(device_mount_path(host.root_dir(), self.driver_name(), &name))
    }

    /// kubelet's `MountDevice`: nothing when the path is already a mount point; else the directory is
    /// created (0750) and the driver runs `mountdevice <path> <device> <json>`. Not supported: kvol formats
    /// and mounts the device itself, or does nothing when there is no device (a driver without attach).
    /// On failure nothing is left mounted and the directory is removed.
    fn mount_device(
        &self,
        spec: &VolumeSpec,
        device_path: &str,
        device_mount_path: &Path,
        host: &dyn VolumeHost,
    ) -> Result<()> {
        let source = self.source(spec)?;
        let mounter = host.mounter();
        match is_mount_root(mounter.as_ref(), device_mount_path) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                super::super::make_dirs(device_mount_path)?
            }
            Err(e) => return Err(e),
        }
        let call = DriverCall::mount_device(&device_mount_path.to_string_lossy(), device_path, &source.flex_spec());
        let result = match self.run(call) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_supported() && device_path.is_empty() => Ok(()),
            Err(e) if e.is_not_supported() => self.format_and_mount(&source, device_path, device_mount_path, host),
            Err(e) => Err(driver_error(self.driver_name(), e)),
        };
        result.map_err(|err| clean_up_failed_mount(mounter.as_ref(), device_mount_path, err))
    }

    /// kubelet's `UnmountDevice`: nothing when the path is gone; `unmountdevice <path>` when it is
    /// mounted (a corrupted mount counts), a plain unmount when that is not supported; then the directory
    /// is removed unless the driver removed it. Idempotent.
    fn unmount_device(&self, unique_name: &str, device_mount_path: &Path, host: &dyn VolumeHost) -> Result<()> {
        let mounter = host.mounter();
        match mounted_for_teardown(mounter.as_ref(), device_mount_path)? {
            None => return Ok(()),
            Some(false) => {
                tracing::debug!(volume = unique_name, path = %device_mount_path.display(), "FlexVolume: device mount path already unmounted")
            }
            Some(true) => match self.run(DriverCall::unmount_device(&device_mount_path.to_string_lossy())) {
                Ok(_) => {}
                Err(e) if e.is_not_supported() => kvol_mount::cleanup_mount_point(mounter.as_ref(), device_mount_path)?,
                Err(e) => return Err(driver_error(self.driver_name(), e)),
            },
        }
        match std::fs::remove_dir(device_mount_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing", device_mount_path)(e)),
            _ => Ok(()),
        }
    }

    /// The mount points in this driver's `mounts` directory (plain directories left behind are not
    /// device mounts), sorted by path.
    fn find_device_mounts(&self, host: &dyn VolumeHost) -> Result<Vec<DeviceMountRef>> {
        let dir = self.mounts_dir(host.root_dir());
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("reading", &dir)(e)),
        };
        let mounter = host.mounter();
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Error::io("reading", &dir))?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            let path = entry.path();
            if mounted_for_teardown(mounter.as_ref(), &path)? == Some(true) {
                found.push(DeviceMountRef {
                    plugin: self.driver_name().to_owned(),
                    unique_name: format!("{}/{name}", self.plugin_name()),
                    device_mount_path: path,
                });
            }
        }
        found.sort_by(|a, b| a.device_mount_path.cmp(&b.device_mount_path));
        Ok(found)
    }
}

impl AttachablePlugin for FlexVolumePlugin {
    fn is_attachable(&self, spec: &VolumeSpec) -> bool {
        self.capabilities.attach && crate::plugin::VolumePlugin::can_support(self, spec)
    }

    /// The spec's name (see [`crate::VolumePlugin::volume_name`]): what `detach` gets.
    fn volume_name_for_attach(&self, spec: &VolumeSpec) -> Result<String> {
        self.volume_name_of(&self.source(spec)?)
    }

    /// `attach <json> <node>` (no secrets); the driver's `device` is recorded in the node's status.
    /// Not supported: `""`. A timeout is uncertain: the volume may be attached.
    fn attach(&self, spec: &VolumeSpec, node: &str) -> Result<String> {
        let source = self.source(spec)?;
        match self.run(DriverCall::attach(&source.flex_spec(), node)) {
            Ok(status) => Ok(status.device),
            Err(e) if e.is_not_supported() => Ok(String::new()),
            Err(e) => Err(uncleaned_driver_error(self.driver_name(), e)),
        }
    }

    /// `isattached <json> <node>`. As kubelet's `VolumesAreAttached`, only a Success answer with
    /// `attached: false` says "detached": "Not supported" and failed calls count as attached, so a
    /// flaky driver never makes the controller forget an attachment.
    fn is_attached(&self, spec: &VolumeSpec, node: &str) -> Result<bool> {
        let source = self.source(spec)?;
        match self.run(DriverCall::is_attached(&source.flex_spec(), node)) {
            Ok(status) => Ok(status.attached),
            Err(e) if e.is_not_supported() => Ok(true),
            Err(e) => {
                tracing::warn!(driver = %self.driver_name(), volume = %source.name, node, error = %e, "FlexVolume: isattached failed; assuming the volume is still attached");
                Ok(true)
            }
        }
    }

    /// `detach <volume name> <node>`; not supported is success.
    fn detach(&self, volume_name: &str, node: &str) -> Result<()> {
        match self.run(DriverCall::detach(volume_name, node)) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_supported() => Ok(()),
            Err(e) => Err(uncleaned_driver_error(self.driver_name(), e)),
        }
    }
}
