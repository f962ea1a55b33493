//! Raw block CSI volumes (PV `volumeMode: Block`, container `volumeDevices`), kubelet's `csiBlockMapper`
//! and the common map/unmap steps of `operation_generator.go` and `volumepathhandler`, laid out as kubelet
//! lays them out under `<root>/plugins/kubernetes.io/csi/volumeDevices`:
//!
//! ```text
//! staging/<pv>/              NodeStageVolume target (a directory; the device phase)
//! publish/<pv>/<pod uid>     NodePublishVolume target (a file the driver puts the device on)
//! <pv>/data/vol_data.json    driver and handle, so teardown works from the disk alone
//! <pv>/dev/<pod uid>         the global map path: the published device bind-mounted once per pod
//! ```
//!
//! and `<root>/pods/<uid>/volumeDevices/kubernetes.io~csi/<pv>`, a symlink to the pod's publish path that
//! a container runtime hands the container at its `devicePath`.
//!
//! Design decisions:
//! - **The pod's link is made first and removed last.** Kubelet links after publishing; kvol links before,
//!   so that every published target has a link that reconstruction finds after a crash at any point (a
//!   dangling link until the publish is done, which no container sees: the pod is not ready yet).
//! - **The global map bind is kept** (kubelet's `MapBlockVolume` bind mount of the device into
//!   `<pv>/dev/<pod uid>`): it is the on-disk count of pods using the device, and the device phase refuses
//!   to unstage while any is left (kubelet's `GetDeviceBindMountRefs` check).
//! - **Left out:** kubelet's loop device over `<pv>/dev/<pod uid>` (`AttachFileDevice`), which only holds
//!   the device open so that a device silently detached and replaced under the same name is noticed; it
//!   would also defer the driver's own detach (`LOOP_CLR_FD` of a busy loop device is deferred), so kvol
//!   does not pin.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kvol_csi::v1::NodePublishVolumeRequest;

use super::names::{self, VolumeData};
use super::{
    attach_required, capability, csi_access_mode, csi_driver, persistent_ids, publish_context, secret_data, CsiError,
    CsiPlugin, Source, CSI_PLUGIN_NAME,
};
use crate::error::{Error, ErrorClass, Result};
use crate::host::VolumeHost;
use crate::plugin::{Mounter, MounterArgs, PodRef};
use crate::spec::VolumeSpec;

/// Maps one block CSI volume into one pod (kubelet's `SetUpDevice` for the publish half, `MapPodDevice` and
/// `MapBlockVolume`); staging is the device phase's.
pub(crate) struct CsiBlockMapper {
    plugin: CsiPlugin,
    host: Arc<dyn VolumeHost>,
    spec: VolumeSpec,
    pod: PodRef,
    driver: String,
    handle: String,
    read_only: bool,
    link: PathBuf,
}

impl CsiBlockMapper {
    pub(crate) fn new(plugin: CsiPlugin, spec: &VolumeSpec, pod: &PodRef, host: &Arc<dyn VolumeHost>) -> Result<Self> {
        let Source::Persistent { csi, .. } = Source::of(spec)? else {
            return Err(Error::InvalidSpec {
                volume: spec.name().into(),
                reason: "only persistent CSI volumes can be block volumes".into(),
            });
        };
        let (driver, handle) = persistent_ids(spec, csi)?;
        Ok(CsiBlockMapper {
            link: names::pod_device_link(host.root_dir(), &pod.uid, spec.name()),
            read_only: spec.claim_read_only() || csi.read_only == Some(true),
            driver: driver.to_string(),
            handle: handle.to_string(),
            plugin,
            host: Arc::clone(host),
            spec: spec.clone(),
            pod: pod.clone(),
        })
    }

    /// The steps after NodePublishVolume: the target must be a block device, bound into the global map
    /// path. Their failures are uncertain ([`CsiError::BlockMap`]): the volume is published.
    fn map(&self, publish: &Path) -> Result<()> {
        let failure = |path: &Path, reason: String| CsiError::BlockMap {
            volume: self.spec.name().into(),
            path: path.to_path_buf(),
            reason,
        };
        let device = std::fs::metadata(publish).map_err(|e| failure(publish, format!("stat: {e}")))?;
        if !device.file_type().is_block_device() {
            return Err(failure(publish, "NodePublishVolume did not put a block device there".into()).into());
        }
        let global_ref = names::block_global_map_path(self.host.root_dir(), self.spec.name()).join(&self.pod.uid);
        bind_device(self.host.mounter().as_ref(), publish, device.rdev(), &global_ref)
            .map_err(|e| failure(&global_ref, e.to_string()))?;
        Ok(())
    }
}

impl Mounter for CsiBlockMapper {
    /// The pod's device link, `<root>/pods/<uid>/volumeDevices/kubernetes.io~csi/<pv>`.
    fn path(&self) -> PathBuf {
        self.link.clone()
    }

    /// Writes `vol_data.json`, links the pod to its publish path, NodePublishVolume (a block capability,
    /// the staging path when the driver stages), checks that a block device is there and binds it into the
    /// global map path. Every step checks first, so a repeat verifies. A final error of the driver removes
    /// the link again; an uncertain one leaves it for the agent to unmap.
    fn set_up(&self, _args: &MounterArgs) -> Result<()> {
        let host = self.host.as_ref();
        let root = host.root_dir();
        let source = Source::of(&self.spec)?;
        let Source::Persistent { csi, .. } = &source else {
            return Err(Error::InvalidSpec {
                volume: self.spec.name().into(),
                reason: "not a persistent volume".into(),
            });
        };
        let object = csi_driver(host, &self.driver)?;
        let client = self.plugin.client(&self.driver)?;
        let caps = client.capabilities(&self.handle)?;
        let context = publish_context(host, &self.driver, &self.handle, attach_required(object.as_ref()))?;
        let secrets = match &csi.node_publish_secret_ref {
            Some(r) => {
                secret_data(host, r.namespace.as_deref().unwrap_or_default(), r.name.as_deref().unwrap_or_default())?
            }
            None => HashMap::new(),
        };

        let data_dir = names::block_data_dir(root, self.spec.name());
        super::super::make_dirs(&data_dir)?;
        VolumeData::for_block(self.spec.name(), &self.driver, &self.handle, host.node_name()).save(&data_dir)?;
        let publish = names::block_publish_path(root, self.spec.name(), &self.pod.uid);
        ensure_link(&publish, &self.link)?;
        super::super::make_dirs(publish.parent().expect("a publish path has a parent"))?;

        let staging = if caps.stage_unstage {
            names::block_staging_path(root, self.spec.name()).to_string_lossy().into_owned()
        } else {
            String::new()
        };
        let request = NodePublishVolumeRequest {
            volume_id: self.handle.clone(),
            publish_context: context,
            staging_target_path: staging,
            target_path: publish.to_string_lossy().into_owned(),
            volume_capability: Some(capability(
                true,
                String::new(),
                Vec::new(),
                String::new(),
                csi_access_mode(source.access_mode(), &caps),
            )),
            readonly: self.read_only,
            secrets,
            volume_context: source.attributes(),
        };
        if let Err(err) = client.publish(request) {
            if err.class() != ErrorClass::Uncertain {
                if let Err(clean) = remove_leftovers(host.mounter().as_ref(), &publish, &self.link) {
                    tracing::warn!(path = %publish.display(), error = %clean, "cleaning up after a failed NodePublishVolume");
                }
            }
            return Err(err.into());
        }
        self.map(&publish)
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

/// Whether anything of a block mapping of `spec_name` into pod `pod_uid` is on disk: its link, its
/// publish target or its global map file.
pub(crate) fn is_mapped(root: &Path, spec_name: &str, pod_uid: &str) -> bool {
    [
        names::pod_device_link(root, pod_uid, spec_name),
        names::block_publish_path(root, spec_name, pod_uid),
        names::block_global_map_path(root, spec_name).join(pod_uid),
    ]
    .iter()
    .any(|p| std::fs::symlink_metadata(p).is_ok())
}

/// Unmaps a block volume from a pod (kubelet's `UnmapPodDevice` and `UnmapBlockVolume`), knowing only what
/// `volumeDevices/<pv>/data/vol_data.json` says: NodeUnpublishVolume (always, as kubelet: a publish that
/// timed out may still finish), the global map bind, then the link and its empty plugin directory.
/// Idempotent: what is gone is skipped. Without `vol_data.json` the driver cannot be called: leftovers that
/// are not mounted are removed, a mounted publish target is an error.
pub(crate) fn unmap(plugin: &CsiPlugin, host: &dyn VolumeHost, spec_name: &str, pod_uid: &str) -> Result<()> {
    let root = host.root_dir();
    let mounter = host.mounter();
    let publish = names::block_publish_path(root, spec_name, pod_uid);
    match VolumeData::load(&names::block_data_dir(root, spec_name))? {
        Some(data) => {
            plugin.client(&data.driver_name)?.unpublish(&data.volume_handle, &publish.to_string_lossy())?;
        }
        None => tracing::info!(volume = spec_name, pod = pod_uid, "no vol_data.json: nothing to unpublish"),
    }
    let link = names::pod_device_link(root, pod_uid, spec_name);
    let global_ref = names::block_global_map_path(root, spec_name).join(pod_uid);
    unbind_file(mounter.as_ref(), &global_ref)?;
    remove_leftovers(mounter.as_ref(), &publish, &link)?;
    if let Some(dir) = link.parent() {
        // The plugin's directory of the pod's devices goes with its last link.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

/// The device phase of a block volume (kubelet's `stageVolumeForBlock`): `vol_data.json` in
/// `volumeDevices/<pv>/data`, then NodeStageVolume at the staging directory when the driver stages.
pub(crate) fn stage(
    client: &super::client::DriverClient,
    spec: &VolumeSpec,
    driver: &str,
    request: kvol_csi::v1::NodeStageVolumeRequest,
    stage_unstage: bool,
    host: &dyn VolumeHost,
) -> Result<()> {
    let root = host.root_dir();
    let data_dir = names::block_data_dir(root, spec.name());
    super::super::make_dirs(&data_dir)?;
    VolumeData::for_block(spec.name(), driver, &request.volume_id, host.node_name()).save(&data_dir)?;
    if !stage_unstage {
        tracing::debug!(volume = %request.volume_id, "STAGE_UNSTAGE_VOLUME capability not set: skipping NodeStageVolume");
        return Ok(());
    }
    let staging = PathBuf::from(&request.staging_target_path);
    super::super::make_dirs(&staging)?;
    if let Err(err) = client.stage(request) {
        if err.class() != ErrorClass::Uncertain {
            // Only the empty directory made above; the data stays for the pods that may have it mapped.
            let _ = std::fs::remove_dir(&staging);
        }
        return Err(err.into());
    }
    Ok(())
}

/// Undoes the device phase of a block volume (kubelet's `TearDownDevice` and `cleanupOrphanDeviceFiles`):
/// refuses while a pod's device file is left in the global map path, NodeUnstageVolume when the driver
/// stages and the staging directory exists, then removes the staging directory, the publish directory
/// and `volumeDevices/<pv>` with `vol_data.json`. Idempotent.
pub(crate) fn unstage(plugin: &CsiPlugin, host: &dyn VolumeHost, staging: &Path) -> Result<()> {
    let root = host.root_dir();
    let spec_name = staging.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let global = names::block_global_map_path(root, &spec_name);
    let refs = device_files(&global)?;
    if !refs.is_empty() {
        return Err(CsiError::BlockInUse { volume: spec_name, paths: refs }.into());
    }
    let data_dir = names::block_data_dir(root, &spec_name);
    match VolumeData::load(&data_dir)? {
        Some(data) if std::fs::symlink_metadata(staging).is_ok() => {
            let client = plugin.client(&data.driver_name)?;
            if client.capabilities(&data.volume_handle)?.stage_unstage {
                client.unstage(&data.volume_handle, &staging.to_string_lossy())?;
            }
        }
        Some(_) => tracing::debug!(path = %staging.display(), "no staging directory: nothing to unstage"),
        None => tracing::info!(path = %staging.display(), "no vol_data.json: nothing to unstage"),
    }
    let mounter = host.mounter();
    if std::fs::symlink_metadata(staging).is_ok() {
        if crate::mount_root::is_mount_root(mounter.as_ref(), staging)? {
            return Err(kvol_mount::Error::StillMounted { path: staging.to_path_buf() }.into());
        }
        if let Some(path) = crate::mount_root::find_mount_beneath(mounter.as_ref(), staging)? {
            return Err(kvol_mount::Error::StillMounted { path }.into());
        }
        remove_all(staging)?;
    }
    let publish_dir = names::block_publish_dir(root, &spec_name);
    if let Err(e) = std::fs::remove_dir(&publish_dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %publish_dir.display(), error = %e, "publish directory of an unstaged block volume left");
        }
    }
    // Leftover files of binds that never happened (not device files: checked above).
    if let Ok(entries) = std::fs::read_dir(&global) {
        for entry in entries.flatten() {
            unbind_file(mounter.as_ref(), &entry.path())?;
        }
    }
    remove_dir_if_there(&global)?;
    VolumeData::remove(&data_dir)?;
    remove_dir_if_there(&data_dir)?;
    remove_dir_if_there(&names::block_volume_dir(root, &spec_name))
}

/// Whether `path` is a block volume's staging path (`…/csi/volumeDevices/staging/<pv>`).
pub(crate) fn is_staging_path(root: &Path, path: &Path) -> bool {
    path.parent() == Some(&kvol_mount::paths::volume_devices_dir(root, CSI_PLUGIN_NAME).join(names::BLOCK_STAGING))
}

/// The staged (or being staged) block volumes on disk: every `volumeDevices/<pv>/data/vol_data.json`.
pub(crate) fn find_staged(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let base = kvol_mount::paths::volume_devices_dir(root, CSI_PLUGIN_NAME);
    let entries = match std::fs::read_dir(&base) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("reading", &base)(e)),
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == names::BLOCK_STAGING || name == names::BLOCK_PUBLISH {
            continue;
        }
        let dir = entry.path().join(names::BLOCK_DATA);
        match VolumeData::load(&dir) {
            Ok(Some(data)) if !data.driver_name.is_empty() && !data.volume_handle.is_empty() => {
                found.push((
                    names::unique_name(&data.driver_name, &data.volume_handle),
                    names::block_staging_path(root, &name),
                ));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "skipping unreadable vol_data.json"),
        }
    }
    Ok(found)
}

/// Points `link` at `target`, replacing anything else there but a directory (kubelet's
/// `mapSymlinkDevice`). Already right is success.
fn ensure_link(target: &Path, link: &Path) -> Result<()> {
    if std::fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    super::super::make_dirs(link.parent().expect("a link has a parent"))?;
    match std::fs::remove_file(link) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io("removing", link)(e)),
        _ => {}
    }
    std::os::unix::fs::symlink(target, link).map_err(Error::io("linking", link))
}

/// Bind-mounts the device at `publish` (device number `rdev`) onto the file `global_ref` (kubelet's
/// `mapBindMountDevice`). The same device already bound there is success; another one is unbound first.
fn bind_device(mounter: &dyn kvol_mount::Mounter, publish: &Path, rdev: u64, global_ref: &Path) -> Result<()> {
    super::super::make_dirs(global_ref.parent().expect("a global map file has a parent"))?;
    match std::fs::symlink_metadata(global_ref) {
        Ok(m) if m.file_type().is_block_device() && m.rdev() == rdev => return Ok(()),
        Ok(m) if m.file_type().is_block_device() => {
            tracing::warn!(path = %global_ref.display(), "another device is bound in the global map path: rebinding");
            unbind_file(mounter, global_ref)?;
            create_file(global_ref)?;
        }
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(Error::io("binding the device onto", global_ref)(std::io::Error::other(
                "neither a file nor a device",
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_file(global_ref)?,
        Err(e) => return Err(Error::io("stat", global_ref)(e)),
    }
    mounter.mount(&publish.to_string_lossy(), global_ref, "", &["bind".to_string()])?;
    Ok(())
}

fn create_file(path: &Path) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .open(path)
        .map(drop)
        .map_err(Error::io("creating", path))
}

/// Unmounts every mount on the file `path` and removes it (kubelet's `unmapBindMountDevice`). Already gone
/// is success.
fn unbind_file(mounter: &dyn kvol_mount::Mounter, path: &Path) -> Result<()> {
    // Stacked binds need one unmount each; bounded rather than trusting the count.
    for _ in 0..8 {
        match crate::mount_root::is_mount_root(mounter, path) {
            Ok(true) => mounter.unmount(path)?,
            Ok(false) => return remove_file_if_there(path),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Err(kvol_mount::Error::StillMounted { path: path.to_path_buf() }.into())
}

/// Removes the publish target when the driver left it unmounted (a mounted one is an error: only the
/// driver unpublishes), then the pod's link.
fn remove_leftovers(mounter: &dyn kvol_mount::Mounter, publish: &Path, link: &Path) -> Result<()> {
    match crate::mount_root::is_mount_root(mounter, publish) {
        Ok(true) => return Err(kvol_mount::Error::StillMounted { path: publish.to_path_buf() }.into()),
        Ok(false) => remove_file_if_there(publish)?,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    remove_file_if_there(link)
}

fn remove_file_if_there(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing", path)(e)),
        _ => Ok(()),
    }
}

fn remove_dir_if_there(path: &Path) -> Result<()> {
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing", path)(e)),
        _ => Ok(()),
    }
}

fn remove_all(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing", path)(e)),
        _ => Ok(()),
    }
}

/// The device files under a global map path (pods that still have the volume bound).
fn device_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("reading", dir)(e)),
    };
    // lstat, not the directory entry's type: that is the type of the file under the bind mount.
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_block_device()))
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_staging_paths_and_finds_staged_volumes_by_their_data_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert!(is_staging_path(root, &names::block_staging_path(root, "pv-1")));
        assert!(!is_staging_path(root, &names::device_mount_path(root, "d", "h")));
        assert!(find_staged(root).unwrap().is_empty());
        let data = names::block_data_dir(root, "pv-1");
        std::fs::create_dir_all(&data).unwrap();
        VolumeData::for_block("pv-1", "d", "h", "n").save(&data).unwrap();
        std::fs::create_dir_all(names::block_staging_path(root, "pv-1")).unwrap();
        std::fs::create_dir_all(names::block_publish_dir(root, "pv-1")).unwrap();
        assert_eq!(
            find_staged(root).unwrap(),
            vec![(names::unique_name("d", "h"), names::block_staging_path(root, "pv-1"))]
        );
    }

    #[test]
    fn links_are_replaced_and_leftovers_removed_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("pods/u/volumeDevices/kubernetes.io~csi/pv-1");
        let publish = dir.path().join("publish/pv-1/u");
        ensure_link(Path::new("/elsewhere"), &link).unwrap();
        ensure_link(&publish, &link).unwrap();
        ensure_link(&publish, &link).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), publish);
        assert!(is_mapped(dir.path(), "pv-1", "u"), "the link alone marks the mapping");
        let mounter = kvol_mount::FakeMounter::new();
        std::fs::create_dir_all(publish.parent().unwrap()).unwrap();
        std::fs::write(&publish, "").unwrap();
        remove_leftovers(&mounter, &publish, &link).unwrap();
        remove_leftovers(&mounter, &publish, &link).unwrap();
        assert!(std::fs::symlink_metadata(&link).is_err() && !publish.exists());
        assert!(!is_mapped(dir.path(), "pv-1", "u"));
    }
}
