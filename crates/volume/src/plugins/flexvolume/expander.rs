//! The node's half of expansion (`expander.go` `NodeExpand` and its default): `expandfs <json> <device>
//! <device mount path> <new bytes> <old bytes>` for a PV whose driver says `requiresFSResize: true` (the
//! default); "Not supported" grows the file system kvol's own way (`GenericResizeFS`).

use std::path::Path;
use std::process::Command as Process;

use kvol_flex::DriverCall;

use super::errors::driver_error;
use super::FlexVolumePlugin;
use crate::error::{Error, Result};
use crate::host::VolumeHost;
use crate::plugin::{ExpandablePlugin, NodeExpandablePlugin};
use crate::spec::VolumeSpec;

impl FlexVolumePlugin {
    /// kubelet's default resize: ext2/3/4 with `resize2fs <device>`, xfs with `xfs_growfs -d <mount
    /// path>`, btrfs with `btrfs filesystem resize max <mount path>`.
    fn generic_resize(&self, volume: &str, fs_type: &str, device: &str, mount_path: &Path) -> Result<()> {
        let mount_path_s = mount_path.to_string_lossy();
        let (program, args): (&str, Vec<&str>) = match fs_type {
            "ext2" | "ext3" | "ext4" => ("resize2fs", vec![device]),
            "xfs" => ("xfs_growfs", vec!["-d", &mount_path_s]),
            "btrfs" => ("btrfs", vec!["filesystem", "resize", "max", &mount_path_s]),
            other => {
                return Err(Error::InvalidSpec {
                    volume: volume.to_owned(),
                    reason: format!(
                    "flexVolume driver {} does not support expandfs, and resize of format {other:?} is not supported",
                    self.driver_name()
                ),
                })
            }
        };
        tracing::warn!(driver = %self.driver_name(), volume, program, device, "FlexVolume: expandfs not supported by the driver; growing the file system generically");
        let out = Process::new(program).args(&args).output().map_err(Error::io("running", program))?;
        if !out.status.success() {
            let text = format!(
                "{program} {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return Err(Error::Io {
                what: "growing the file system mounted at",
                path: mount_path.to_path_buf(),
                source: std::io::Error::other(text),
            });
        }
        Ok(())
    }
}

impl NodeExpandablePlugin for FlexVolumePlugin {
    /// The device is the source of the mount at the device mount path (kubelet passes the attach's
    /// device path, which the trait does not carry; the mount table says the same), or of the pod's
    /// mount when there is no device mount path.
    fn node_expand(
        &self,
        spec: &VolumeSpec,
        volume_path: &Path,
        device_mount_path: Option<&Path>,
        new_size: i64,
        old_size: i64,
        host: &dyn VolumeHost,
    ) -> Result<()> {
        if spec.pv_spec().is_none() {
            return Err(Error::InvalidSpec {
                volume: spec.name().to_owned(),
                reason: format!("PersistentVolume not found for spec: {}", spec.name()),
            });
        }
        let source = self.source(spec)?;
        let mount_path = device_mount_path.unwrap_or(volume_path);
        let table = host.mounter().list()?;
        let real = std::fs::canonicalize(mount_path).map_err(Error::io("resolving", mount_path))?;
        let mount = kvol_mount::find_by_mount_point(&table, &real).ok_or_else(|| Error::InvalidSpec {
            volume: spec.name().to_owned(),
            reason: format!("{} is not mounted: nothing to expand", mount_path.display()),
        })?;
        let device = mount.source.clone();
        let call = DriverCall::expand_fs(
            &source.flex_spec(),
            &device,
            &device_mount_path.map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
            new_size,
            old_size,
        );
        match self.run(call) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_supported() => self.generic_resize(spec.name(), &mount.fs_type, &device, mount_path),
            Err(e) => Err(driver_error(self.driver_name(), e)),
        }
    }
}

impl ExpandablePlugin for FlexVolumePlugin {
    /// `expandvolume <json> <device mount path> <new bytes> <old bytes>` (`ExpandVolumeDevice`); "Not
    /// supported" is kubelet's default, which takes the new size as done.
    fn expand_volume(&self, spec: &VolumeSpec, new_size: i64, old_size: i64, root: &Path) -> Result<i64> {
        let source = self.source(spec)?;
        let device_mount_path = kvol_flex::discovery::device_mount_path(root, self.driver_name(), source.name);
        let call =
            DriverCall::expand_volume(&source.flex_spec(), &device_mount_path.to_string_lossy(), new_size, old_size);
        match self.run(call) {
            Ok(_) => Ok(new_size),
            Err(e) if e.is_not_supported() => {
                tracing::info!(driver = %self.driver_name(), "FlexVolume: using the default ExpandVolumeDevice (expandvolume not supported)");
                Ok(new_size)
            }
            Err(e) => Err(driver_error(self.driver_name(), e)),
        }
    }

    fn requires_fs_resize(&self) -> bool {
        self.capabilities.requires_fs_resize
    }
}
