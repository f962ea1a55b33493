//! Reconstruction after a restart (KEP-3756): every volume directory under `<root>/pods/*/volumes`, and
//! every raw block volume's device link under `<root>/pods/*/volumeDevices`, goes into the actual state as
//! *uncertain*, with nothing read from the API server. The reconciler then sets wanted ones up again
//! (set-up is idempotent and checks the host) and tears down the others, the latter only once the desired
//! state is populated.

use std::path::Path;

use kvol_volume::{PluginRegistry, VolumeHost};

use crate::actual::{ActualDevice, ActualState, ActualVolume, DeviceState, MountState};
use crate::error::{Error, Result};
use crate::volume_id::VolumeId;

/// What reconstruction found that it could not take over.
#[derive(Debug, Default)]
pub struct Report {
    /// Volumes found (and added as uncertain).
    pub volumes: usize,
    /// Device mounts found (and added as uncertain).
    pub devices: usize,
    /// Volume directories of plugins this agent does not have; their pods' directories stay.
    pub unknown: Vec<std::path::PathBuf>,
}

/// Scans `root` into `actual`: pod volumes, then the device mounts of plugins with a device phase. A mount
/// point that is stale (its file system gone) still counts: the teardown unmounts it. `attached_by_agent`
/// says whether devices found are the agent's to detach (controller attach/detach disabled).
pub fn reconstruct(
    root: &Path,
    registry: &PluginRegistry,
    host: &dyn VolumeHost,
    attached_by_agent: bool,
    actual: &mut ActualState,
) -> Result<Report> {
    let mut report = Report::default();
    for plugin in registry.all() {
        let Some(device) = plugin.as_device() else { continue };
        match device.find_device_mounts(host) {
            Ok(found) => {
                for d in found {
                    tracing::info!(volume = %d.unique_name, path = %d.device_mount_path.display(), "reconstructed device mount (uncertain)");
                    actual.set_device(ActualDevice {
                        unique_name: d.unique_name,
                        plugin: d.plugin,
                        device_path: String::new(),
                        device_mount_path: d.device_mount_path,
                        state: DeviceState::Uncertain,
                        attached_by_agent,
                    });
                    report.devices += 1;
                }
            }
            Err(e) => tracing::warn!(plugin = %plugin.name(), "finding device mounts: {e}"),
        }
    }
    let pods = kvol_mount::paths::pods_dir(root);
    let entries = match std::fs::read_dir(&pods) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(source) => return Err(Error::ReadDir { path: pods, source }),
    };
    for pod in entries.flatten() {
        if !pod.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let uid = pod.file_name().to_string_lossy().into_owned();
        actual.add_pod_dir(&uid);
        let subpaths = kvol_mount::paths::pod_volume_subpaths_dir(root, &uid);
        if std::fs::read_dir(&subpaths).is_ok_and(|mut d| d.next().is_some()) {
            actual.set_subpaths(&uid, false);
        }
        // Mounted volumes under `volumes/`, raw block volumes (their device links) under `volumeDevices/`:
        // both are torn down by the plugin's unmounter, which tells them apart on disk.
        let volumes = kvol_mount::paths::pod_volumes_dir(root, &uid);
        let devices = kvol_mount::paths::pod_dir(root, &uid).join(kvol_mount::paths::VOLUME_DEVICES_DIR);
        let plugins = [volumes, devices].into_iter().filter_map(|dir| std::fs::read_dir(dir).ok()).flatten();
        for plugin_dir in plugins.flatten() {
            let plugin_name = kvol_mount::paths::unescape_qualified_name(&plugin_dir.file_name().to_string_lossy());
            let Ok(names) = std::fs::read_dir(plugin_dir.path()) else { continue };
            for volume in names.flatten() {
                let spec_name = volume.file_name().to_string_lossy().into_owned();
                if registry.find_by_name(&plugin_name).is_err() {
                    tracing::warn!(path = %volume.path().display(), "volume of an unknown plugin, leaving it alone");
                    report.unknown.push(volume.path());
                    continue;
                }
                tracing::info!(pod = %uid, plugin = %plugin_name, volume = %spec_name, "reconstructed volume (uncertain)");
                actual.set(ActualVolume {
                    id: VolumeId { pod_uid: uid.clone(), plugin: plugin_name.clone(), spec_name },
                    path: volume.path(),
                    state: MountState::Uncertain,
                    generation: 0,
                    outer_name: None,
                    read_only: false,
                    device: None,
                });
                report.volumes += 1;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_every_volume_directory_as_uncertain() {
        let root = tempfile::tempdir().unwrap();
        let v = kvol_mount::paths::pod_volume_dir(root.path(), "u1", "kubernetes.io/empty-dir", "cache");
        std::fs::create_dir_all(&v).unwrap();
        std::fs::create_dir_all(kvol_mount::paths::pod_dir(root.path(), "u2")).unwrap();
        let odd = kvol_mount::paths::pod_volume_dir(root.path(), "u3", "example.com/odd", "x");
        std::fs::create_dir_all(&odd).unwrap();
        let registry = PluginRegistry::with(kvol_volume::all_plugins()).unwrap();
        let mut actual = ActualState::default();
        let host = crate::host::AgentHost::new(
            root.path().to_path_buf(),
            std::sync::Arc::new(kvol_mount::FakeMounter::default()),
            None,
            None,
        );
        let report = reconstruct(root.path(), &registry, &host, false, &mut actual).unwrap();
        assert_eq!(report.volumes, 1);
        assert_eq!(report.unknown, vec![odd]);
        let got: Vec<_> = actual.volumes().collect();
        assert_eq!(got[0].id.to_string(), "kubernetes.io/empty-dir/u1-cache");
        assert_eq!(got[0].state, MountState::Uncertain);
        assert_eq!(actual.pod_dirs().count(), 3);
    }

    #[test]
    fn adds_block_volume_device_links_as_uncertain_even_dangling() {
        // Any registered plugin will do: the scan does not look at volume types.
        let root = tempfile::tempdir().unwrap();
        let devices = kvol_mount::paths::pod_volume_devices_dir(root.path(), "u1", "kubernetes.io/empty-dir");
        std::fs::create_dir_all(&devices).unwrap();
        let link = devices.join("raw");
        std::os::unix::fs::symlink(root.path().join("publish/raw/u1"), &link).unwrap();
        let odd = kvol_mount::paths::pod_volume_devices_dir(root.path(), "u2", "example.com/odd").join("x");
        std::fs::create_dir_all(odd.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink("/dev/null", &odd).unwrap();
        let registry = PluginRegistry::with(kvol_volume::all_plugins()).unwrap();
        let mut actual = ActualState::default();
        let host = crate::host::AgentHost::new(
            root.path().to_path_buf(),
            std::sync::Arc::new(kvol_mount::FakeMounter::default()),
            None,
            None,
        );
        let report = reconstruct(root.path(), &registry, &host, false, &mut actual).unwrap();
        assert_eq!(report.volumes, 1);
        assert_eq!(report.unknown, vec![odd]);
        let got: Vec<_> = actual.volumes().collect();
        assert_eq!(got[0].id.to_string(), "kubernetes.io/empty-dir/u1-raw");
        assert_eq!(got[0].path, link);
        assert_eq!(got[0].state, MountState::Uncertain);
    }
}
