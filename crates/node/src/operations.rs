//! The bodies of the reconciler's operations: blocking host work, run on the blocking pool by the
//! [`crate::manager`], each idempotent so a crash at any point is repaired by running it again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kvol_volume::{MounterArgs, PluginRegistry, PodRef, VolumeHost};

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
/// volume directory or a mount remains beneath it. Idempotent.
pub fn remove_pod_dir(mounter: &dyn kvol_mount::Mounter, root: &Path, uid: &str) -> Result<()> {
    let pod_dir = kvol_mount::paths::pod_dir(root, uid);
    let volumes = kvol_mount::paths::pod_volumes_dir(root, uid);
    let mut left = Vec::new();
    if let Ok(plugins) = std::fs::read_dir(&volumes) {
        for plugin in plugins.flatten() {
            let _ = std::fs::remove_dir(plugin.path());
            if plugin.path().exists() {
                left.extend(std::fs::read_dir(plugin.path()).into_iter().flatten().flatten().map(|e| e.path()));
            }
        }
    }
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
