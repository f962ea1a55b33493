//! The bodies of the reconciler's operations: blocking host work, run on the blocking pool by the
//! [`crate::manager`], each idempotent so a crash at any point is repaired by running it again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kvol_volume::{MounterArgs, PluginRegistry, PodRef, VolumeHost};

use crate::actual::{ActualDevice, DeviceState};
use crate::desired::DesiredVolume;
use crate::error::{Error, Result};
use crate::volume_id::VolumeId;

/// Creates the pod's directories (kubelet's `makePodDataDirs`: the pod dir, `volumes`, `plugins`).
pub fn make_pod_dirs(root: &Path, uid: &str) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    for dir in [kvol_mount::paths::pod_volumes_dir(root, uid), kvol_mount::paths::pod_dir(root, uid).join("plugins")] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&dir)
            .map_err(|source| Error::RemovePodDir { path: dir.clone(), source })?;
    }
    Ok(())
}

/// Sets a volume up; returns its path and whether it is read-only.
pub fn mount(
    host: &Arc<dyn VolumeHost>,
    volume: &DesiredVolume,
    pod: &PodRef,
    args: &MounterArgs,
) -> std::result::Result<(PathBuf, bool), kvol_volume::Error> {
    make_pod_dirs(host.root_dir(), &pod.uid)
        .map_err(|e| kvol_volume::Error::InvalidSpec { volume: volume.outer_name.clone(), reason: e.to_string() })?;
    let mounter = volume.plugin.new_mounter(&volume.spec, pod, host)?;
    mounter.set_up(args)?;
    Ok((mounter.path(), mounter.read_only()))
}

/// Tears a volume down, then removes its plugin directory if that is now empty.
pub fn unmount(host: &Arc<dyn VolumeHost>, registry: &PluginRegistry, id: &VolumeId) -> Result<()> {
    let plugin = registry.find_by_name(&id.plugin)?;
    plugin.new_unmounter(&id.spec_name, &id.pod_uid, host)?.tear_down()?;
    let plugin_dir = kvol_mount::paths::pod_volumes_dir(host.root_dir(), &id.pod_uid)
        .join(kvol_mount::paths::escape_qualified_name(&id.plugin));
    let _ = std::fs::remove_dir(plugin_dir);
    Ok(())
}

/// Removes the directory of a pod that is gone (kubelet's `cleanupOrphanedPodDirs`): refused while a
/// volume directory, a block volume's device link or a mount remains beneath it. Idempotent.
pub fn remove_pod_dir(mounter: &dyn kvol_mount::Mounter, root: &Path, uid: &str) -> Result<()> {
    let pod_dir = kvol_mount::paths::pod_dir(root, uid);
    let mut left = volumes_left(&kvol_mount::paths::pod_volumes_dir(root, uid));
    left.extend(volumes_left(&pod_dir.join(kvol_mount::paths::VOLUME_DEVICES_DIR)));
    if !left.is_empty() {
        return Err(Error::OrphanVolumesPresent { uid: uid.into(), paths: left });
    }
    if !pod_dir.exists() {
        return Ok(());
    }
    // statx per entry rather than the whole mount table: this runs once per pod.
    let mounted = if kvol_volume::mount_root::is_mount_root(mounter, &pod_dir)? {
        Some(pod_dir.clone())
    } else {
        kvol_volume::mount_root::find_mount_beneath(mounter, &pod_dir)?
    };
    if let Some(path) = mounted {
        return Err(Error::OrphanVolumesPresent { uid: uid.into(), paths: vec![path] });
    }
    match std::fs::remove_dir_all(&pod_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::RemovePodDir { path: pod_dir, source: e }),
        _ => Ok(()),
    }
}

/// The volumes left under `<dir>/<escaped plugin>/` (`volumes` or `volumeDevices` of a pod), after
/// removing the plugin directories that are empty. A dangling device link counts: its volume may still be
/// published.
fn volumes_left(dir: &Path) -> Vec<PathBuf> {
    let mut left = Vec::new();
    if let Ok(plugins) = std::fs::read_dir(dir) {
        for plugin in plugins.flatten() {
            let _ = std::fs::remove_dir(plugin.path());
            if std::fs::symlink_metadata(plugin.path()).is_ok() {
                left.extend(std::fs::read_dir(plugin.path()).into_iter().flatten().flatten().map(|e| e.path()));
            }
        }
    }
    left
}

/// Why a device operation failed, and what it may have left on the host.
#[derive(Debug)]
pub struct DeviceFailure {
    /// kubelet's text (`MountVolume.MountDevice failed for volume "x" : …`), for the pod's event.
    pub message: String,
    /// The agent attached the volume before the failure: it must detach it if nobody wants it.
    pub attached: bool,
    /// The failure may have left a mount (a timeout): the device stays uncertain.
    pub uncertain: bool,
    /// The global path, when it was known.
    pub device_mount_path: Option<PathBuf>,
    /// Nothing failed: the controller has not attached the volume yet (kubelet waits without an event).
    pub waiting: bool,
}

/// Attaches the volume (when `self_attach`: through the driver for FlexVolume, through a VolumeAttachment
/// that the driver's external attacher acts on for CSI) or finds the controller's attachment in node
/// status, waits for it on this node, and mounts it at its global path (kubelet's VerifyControllerAttachedVolume or
/// AttachVolume, then WaitForAttach and MountDevice). Idempotent.
pub fn mount_device(
    host: &Arc<dyn VolumeHost>,
    volume: &DesiredVolume,
    self_attach: bool,
) -> std::result::Result<ActualDevice, DeviceFailure> {
    let name = &volume.outer_name;
    let plugin = &volume.plugin;
    let failure = |message: String, attached: bool, err: Option<&kvol_volume::Error>| DeviceFailure {
        message,
        attached,
        uncertain: err.is_some_and(|e| e.class() == kvol_volume::ErrorClass::Uncertain),
        device_mount_path: None,
        waiting: false,
    };
    let (Some(device), Some(wanted)) = (plugin.as_device(), volume.device.as_ref()) else {
        return Err(failure(format!("volume {name:?}: plugin {} has no device phase", plugin.name()), false, None));
    };
    let unique = &wanted.unique_name;
    let mut attached = false;
    let device_path = if !wanted.requires_attach {
        String::new()
    } else if self_attach {
        if let Some(attacher) = plugin.as_attachable() {
            let path = attacher.attach(&volume.spec, host.node_name()).map_err(|e| {
                failure(format!("AttachVolume.Attach failed for volume {name:?} : {e}"), false, Some(&e))
            })?;
            attached = true;
            path
        } else if let Some(attacher) = plugin.as_node_attachable() {
            // The attachment object may exist after any failure (created, then not attached in time): the
            // agent owns it from here, and detaching what is not there is success.
            attached = true;
            attacher
                .attach(&volume.spec, host.as_ref())
                .map_err(|e| failure(format!("AttachVolume.Attach failed for volume {name:?} : {e}"), true, Some(&e)))?
        } else {
            return Err(failure(
                format!("AttachVolume.Attach failed for volume {name:?} : plugin {} cannot attach", plugin.name()),
                false,
                None,
            ));
        }
    } else {
        match host.attached_device_path(unique) {
            Ok(Some(path)) => path,
            Ok(None) => {
                return Err(DeviceFailure {
                    waiting: true,
                    ..failure(
                        format!(
                            "Volume not attached according to node status for volume {name:?} (UniqueName: {unique:?})"
                        ),
                        false,
                        None,
                    )
                })
            }
            Err(e) => {
                return Err(failure(
                    format!("VerifyControllerAttachedVolume failed for volume {name:?} : {e}"),
                    false,
                    Some(&e),
                ))
            }
        }
    };
    let device_path = device.wait_for_attach(&volume.spec, &device_path, host.as_ref()).map_err(|e| {
        failure(format!("MountVolume.WaitForAttach failed for volume {name:?} : {e}"), attached, Some(&e))
    })?;
    let device_mount_path = device.device_mount_path(&volume.spec, host.as_ref()).map_err(|e| {
        failure(format!("MountVolume.GetDeviceMountPath failed for volume {name:?} : {e}"), attached, Some(&e))
    })?;
    device.mount_device(&volume.spec, &device_path, &device_mount_path, host.as_ref()).map_err(|e| DeviceFailure {
        device_mount_path: Some(device_mount_path.clone()),
        ..failure(format!("MountVolume.MountDevice failed for volume {name:?} : {e}"), attached, Some(&e))
    })?;
    Ok(ActualDevice {
        unique_name: unique.clone(),
        plugin: plugin.name().to_string(),
        device_path,
        device_mount_path,
        state: DeviceState::Mounted,
        attached_by_agent: attached,
    })
}

/// Unmounts a device from its global path (kubelet's UnmountDevice). Idempotent.
pub fn unmount_device(host: &Arc<dyn VolumeHost>, registry: &PluginRegistry, device: &ActualDevice) -> Result<()> {
    let plugin = registry.find_by_name(&device.plugin)?;
    let Some(device_plugin) = plugin.as_device() else {
        return Err(kvol_volume::Error::NoPlugin(format!("plugin {} has no device phase", device.plugin)).into());
    };
    if !device.device_mount_path.as_os_str().is_empty() {
        device_plugin.unmount_device(&device.unique_name, &device.device_mount_path, host.as_ref())?;
    }
    Ok(())
}

/// Detaches a device the agent attached, after its UnmountDevice succeeded (kubelet's DetachVolume when
/// controller attach/detach is disabled: the driver's `detach`, or deleting the CSI VolumeAttachment and
/// waiting until it is gone). Idempotent.
pub fn detach_device(host: &Arc<dyn VolumeHost>, registry: &PluginRegistry, device: &ActualDevice) -> Result<()> {
    let plugin = registry.find_by_name(&device.plugin)?;
    let detached = if let Some(attacher) = plugin.as_attachable() {
        // The unique name is `<plugin>/<volume name>`, and a volume name never holds a `/`.
        let volume_name = device.unique_name.rsplit('/').next().unwrap_or_default();
        attacher.detach(volume_name, host.node_name())
    } else if let Some(attacher) = plugin.as_node_attachable() {
        attacher.detach(&device.unique_name, host.as_ref())
    } else {
        Ok(())
    };
    detached.map_err(|source| Error::Detach { volume: device.unique_name.clone(), source: Box::new(source) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_dir_with_a_block_volume_link_left_is_not_removed() {
        let root = tempfile::tempdir().unwrap();
        let mounter = kvol_mount::FakeMounter::new();
        make_pod_dirs(root.path(), "u").unwrap();
        let devices = kvol_mount::paths::pod_volume_devices_dir(root.path(), "u", "kubernetes.io/csi");
        std::fs::create_dir_all(&devices).unwrap();
        let link = devices.join("pv-1");
        std::os::unix::fs::symlink(root.path().join("gone"), &link).unwrap();
        match remove_pod_dir(&mounter, root.path(), "u") {
            Err(Error::OrphanVolumesPresent { paths, .. }) => assert_eq!(paths, vec![link.clone()]),
            other => panic!("removed with a dangling device link left: {other:?}"),
        }
        assert!(std::fs::symlink_metadata(&link).is_ok(), "the link is kept");
        std::fs::remove_file(&link).unwrap();
        remove_pod_dir(&mounter, root.path(), "u").unwrap();
        assert!(!kvol_mount::paths::pod_dir(root.path(), "u").exists());
        remove_pod_dir(&mounter, root.path(), "u").unwrap();
    }
}
