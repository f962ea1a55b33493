//! A pod's CSI volume: NodePublishVolume into `<pod volume dir>/mount`, NodeUnpublishVolume out of it
//! (kubelet's `csiMountMgr`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kvol_csi::v1::NodePublishVolumeRequest;

use super::names::{self, VolumeData};
use super::{
    attach_required, capability, check_lifecycle_mode, csi_access_mode, csi_driver, persistent_ids, pod_info,
    publish_context, secret_data, CsiPlugin, Source, EPHEMERAL,
};
use crate::error::{Error, ErrorClass, Result};
use crate::host::VolumeHost;
use crate::plugin::{Mounter, MounterArgs, PodRef, Unmounter};
use crate::spec::VolumeSpec;

/// Sets one CSI volume up for one pod.
pub(crate) struct CsiMounter {
    plugin: CsiPlugin,
    host: Arc<dyn VolumeHost>,
    spec: VolumeSpec,
    pod: PodRef,
    driver: String,
    handle: String,
    read_only: bool,
    path: PathBuf,
}

impl CsiMounter {
    pub(crate) fn new(plugin: CsiPlugin, spec: &VolumeSpec, pod: &PodRef, host: &Arc<dyn VolumeHost>) -> Result<Self> {
        let (driver, handle, read_only) = match Source::of(spec)? {
            Source::Persistent { csi, .. } => {
                let (driver, handle) = persistent_ids(spec, csi)?;
                (driver.to_string(), handle.to_string(), spec.claim_read_only() || csi.read_only == Some(true))
            }
            Source::Ephemeral { csi } => (
                csi.driver.clone(),
                names::ephemeral_volume_handle(&pod.uid, spec.name()),
                csi.read_only.unwrap_or(false),
            ),
        };
        Ok(CsiMounter {
            path: names::pod_mount_path(host.root_dir(), &pod.uid, spec.name()),
            plugin,
            host: Arc::clone(host),
            spec: spec.clone(),
            pod: pod.clone(),
            driver,
            handle,
            read_only,
        })
    }

    /// kubelet's `supportsFSGroup`: whether kubelet (not the driver) applies fsGroup after publishing.
    fn kubelet_applies_fs_group(&self, source: &Source<'_>, policy: &str, fs_type: &str) -> bool {
        if self.read_only || policy == "None" {
            return false;
        }
        if policy == "File" {
            return true;
        }
        if fs_type.is_empty() {
            tracing::debug!(volume = %self.spec.name(), "skipping fsGroup: fsType not provided");
            return false;
        }
        match source {
            Source::Persistent { pv, .. } => {
                pv.access_modes.as_ref().is_some_and(|m| m.iter().any(|m| m == "ReadWriteOnce"))
            }
            Source::Ephemeral { .. } => true,
        }
    }
}

/// Kubelet's `removeMountDir`: when `mount_path` is not mounted, removes it, the `vol_data.json` beside it
/// and their parent. A path still mounted is left alone (and reported). Already gone is success.
pub(crate) fn remove_mount_dir(mounter: &dyn kvol_mount::Mounter, mount_path: &Path) -> Result<()> {
    match crate::mount_root::is_mount_root(mounter, mount_path) {
        Ok(true) => return Err(kvol_mount::Error::StillMounted { path: mount_path.to_path_buf() }.into()),
        Ok(false) => {}
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match std::fs::remove_dir(mount_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io("removing", mount_path)(e)),
        _ => {}
    }
    let Some(parent) = mount_path.parent() else { return Ok(()) };
    VolumeData::remove(parent)?;
    match std::fs::remove_dir(parent) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing", parent)(e)),
        _ => Ok(()),
    }
}

impl Mounter for CsiMounter {
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Kubelet's `SetUpAt`: checks the CSIDriver (lifecycle mode, fsGroup policy, pod info), writes
    /// `vol_data.json`, then NodePublishVolume (which the driver answers OK when the volume is already
    /// published there, so a repeat verifies rather than fails). A final error removes what was created; an
    /// uncertain one leaves it for the agent to tear down.
    fn set_up(&self, args: &MounterArgs) -> Result<()> {
        let host = self.host.as_ref();
        let source = Source::of(&self.spec)?;
        if source.is_block() {
            return Err(Error::InvalidSpec {
                volume: self.spec.name().into(),
                reason: "volumeMode Block is set up by the CSI block mapper, not mounted".into(),
            });
        }
        let object = csi_driver(host, &self.driver)?;
        check_lifecycle_mode(object.as_ref(), &self.driver, source.mode())?;
        let policy = object
            .as_ref()
            .and_then(|d| d.spec.fs_group_policy.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "ReadWriteOnceWithFSType".into());
        let client = self.plugin.client(&self.driver)?;
        let caps = client.capabilities(&self.handle)?;

        let mut staging = String::new();
        let mut context = HashMap::new();
        let mut mount_flags = Vec::new();
        let secret_ref = match &source {
            Source::Persistent { csi, .. } => {
                if caps.stage_unstage {
                    staging = names::device_mount_path(host.root_dir(), &self.driver, &self.handle)
                        .to_string_lossy()
                        .into_owned();
                }
                context = publish_context(host, &self.driver, &self.handle, attach_required(object.as_ref()))?;
                mount_flags = self.spec.mount_options();
                csi.node_publish_secret_ref
                    .as_ref()
                    .map(|r| (r.namespace.clone().unwrap_or_default(), r.name.clone().unwrap_or_default()))
            }
            Source::Ephemeral { csi } => {
                csi.node_publish_secret_ref.as_ref().map(|r| (self.pod.namespace.clone(), r.name.clone()))
            }
        };

        let parent = self.path.parent().expect("the mount path has a parent").to_path_buf();
        super::super::make_dirs(&parent)?;
        let node = host.node_name().to_string();
        VolumeData::for_pod(self.spec.name(), &self.driver, &self.handle, &node, source.mode()).save(&parent)?;

        let secrets = match secret_ref {
            Some((namespace, name)) => secret_data(host, &namespace, &name)?,
            None => HashMap::new(),
        };
        let mut volume_context = source.attributes();
        if object.as_ref().and_then(|d| d.spec.pod_info_on_mount) == Some(true) {
            volume_context.extend(pod_info(host, &self.pod, source.mode() == EPHEMERAL));
        }
        let fs_type = source.fs_type();
        let mount_group = match (caps.volume_mount_group, args.fs_group) {
            (true, Some(gid)) => gid.to_string(),
            _ => String::new(),
        };
        let request = NodePublishVolumeRequest {
            volume_id: self.handle.clone(),
            publish_context: context,
            staging_target_path: staging,
            target_path: self.path.to_string_lossy().into_owned(),
            volume_capability: Some(capability(
                false,
                fs_type.clone(),
                mount_flags,
                mount_group,
                csi_access_mode(source.access_mode(), &caps),
            )),
            readonly: self.read_only,
            secrets,
            volume_context,
        };
        if let Err(err) = client.publish(request) {
            if err.class() != ErrorClass::Uncertain {
                if let Err(clean) = remove_mount_dir(host.mounter().as_ref(), &self.path) {
                    tracing::warn!(path = %self.path.display(), error = %clean, "cleaning up after a failed NodePublishVolume");
                }
            }
            return Err(err.into());
        }
        if let (Some(gid), false) = (args.fs_group, caps.volume_mount_group) {
            if self.kubelet_applies_fs_group(&source, &policy, &fs_type) {
                // The volume is mounted: a failure here leaves it uncertain for the agent to tear down.
                kvol_mount::set_volume_ownership(&self.path, gid, args.fs_group_change_policy, false)?;
            }
        }
        Ok(())
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

/// Tears one pod's CSI volume down, knowing only what `vol_data.json` says: a mounted volume, a mapped
/// block volume, or (never both in practice) each of them.
pub(crate) struct CsiUnmounter {
    plugin: CsiPlugin,
    host: Arc<dyn VolumeHost>,
    path: PathBuf,
    spec_name: String,
    pod_uid: String,
}

impl CsiUnmounter {
    pub(crate) fn new(plugin: CsiPlugin, spec_name: &str, pod_uid: &str, host: &Arc<dyn VolumeHost>) -> Self {
        CsiUnmounter {
            plugin,
            host: Arc::clone(host),
            path: names::pod_mount_path(host.root_dir(), pod_uid, spec_name),
            spec_name: spec_name.into(),
            pod_uid: pod_uid.into(),
        }
    }
}

impl Unmounter for CsiUnmounter {
    /// The pod's mount path, or its device link for a block volume mapped and not mounted.
    fn path(&self) -> PathBuf {
        let root = self.host.root_dir();
        let mounted_dir = self.path.parent().is_some_and(|p| std::fs::symlink_metadata(p).is_ok());
        if !mounted_dir && super::block::is_mapped(root, &self.spec_name, &self.pod_uid) {
            return names::pod_device_link(root, &self.pod_uid, &self.spec_name);
        }
        self.path.clone()
    }

    /// Kubelet's `TearDownAt`: NodeUnpublishVolume (the driver answers OK when nothing is published),
    /// then removes the mount directory, `vol_data.json` and their parent. Without `vol_data.json` the
    /// driver cannot be known: an unmounted leftover is removed, a mounted one is an error. A block
    /// volume mapped into the pod is unmapped (NodeUnpublishVolume of its publish path, the global map
    /// bind, the link).
    fn tear_down(&self) -> Result<()> {
        let root = self.host.root_dir();
        if super::block::is_mapped(root, &self.spec_name, &self.pod_uid) {
            super::block::unmap(&self.plugin, self.host.as_ref(), &self.spec_name, &self.pod_uid)?;
            if self.path.parent().is_none_or(|p| std::fs::symlink_metadata(p).is_err()) {
                return Ok(());
            }
        }
        let parent = self.path.parent().expect("the mount path has a parent");
        let mounter = self.host.mounter();
        match VolumeData::load(parent)? {
            Some(data) => {
                let client = self.plugin.client(&data.driver_name)?;
                client.unpublish(&data.volume_handle, &self.path.to_string_lossy())?;
            }
            None => tracing::info!(path = %self.path.display(), "no vol_data.json: nothing to unpublish"),
        }
        remove_mount_dir(mounter.as_ref(), &self.path)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{CSIVolumeSource, ConfigMap, Secret, Volume};
    use k8s_openapi::api::storage::v1::CSIDriver;

    use super::*;
    use crate::plugin::VolumePlugin;
    use crate::plugins::csi::CsiDrivers;

    struct Host {
        root: PathBuf,
        driver: Option<CSIDriver>,
    }

    impl VolumeHost for Host {
        fn root_dir(&self) -> &Path {
            &self.root
        }
        fn mounter(&self) -> Arc<dyn kvol_mount::Mounter> {
            Arc::new(kvol_mount::FakeMounter::new())
        }
        fn config_map(&self, _: &str, _: &str) -> Result<Option<ConfigMap>> {
            Ok(None)
        }
        fn secret(&self, _: &str, _: &str) -> Result<Option<Secret>> {
            Ok(None)
        }
        fn csi_driver(&self, _: &str) -> Result<Option<CSIDriver>> {
            Ok(self.driver.clone())
        }
    }

    fn plugin(rt: &tokio::runtime::Runtime) -> CsiPlugin {
        CsiPlugin::new(CsiDrivers::new(), rt.handle().clone())
    }

    #[test]
    fn tear_down_removes_a_leftover_without_vol_data_and_waits_for_an_unregistered_driver() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let host: Arc<dyn VolumeHost> = Arc::new(Host { root: dir.path().to_path_buf(), driver: None });
        let unmounter = plugin(&rt).new_unmounter("pv-1", "uid", &host).unwrap();
        let mount = unmounter.path();
        std::fs::create_dir_all(&mount).unwrap();
        unmounter.tear_down().unwrap();
        assert!(!mount.parent().unwrap().exists(), "leftover removed");
        unmounter.tear_down().unwrap();

        std::fs::create_dir_all(&mount).unwrap();
        VolumeData::for_pod("pv-1", "gone.csi", "h", "n", "Persistent").save(mount.parent().unwrap()).unwrap();
        let err = unmounter.tear_down().unwrap_err();
        assert_eq!(err.class(), ErrorClass::Transient, "{err}");
        assert!(err.to_string().contains("not found in the list of registered CSI drivers"), "{err}");
        assert!(mount.parent().unwrap().join(names::VOL_DATA_FILE).exists(), "kept until the driver answers");
    }

    #[test]
    fn an_inline_volume_is_refused_unless_the_csidriver_lists_ephemeral_and_nothing_is_left() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let spec = VolumeSpec::Inline(Box::new(Volume {
            name: "scratch".into(),
            csi: Some(CSIVolumeSource {
                driver: "inline.csi".into(),
                volume_attributes: Some(BTreeMap::from([("size".to_string(), "1Gi".to_string())])),
                ..Default::default()
            }),
            ..Default::default()
        }));
        let pod = PodRef { uid: "uid".into(), namespace: "ns".into(), name: "p".into() };
        let plugin = plugin(&rt);
        let device = plugin.as_device().unwrap();
        for driver in [None, Some(CSIDriver::default())] {
            let host: Arc<dyn VolumeHost> = Arc::new(Host { root: dir.path().to_path_buf(), driver });
            let mounter = plugin.new_mounter(&spec, &pod, &host).unwrap();
            let err = mounter.set_up(&MounterArgs::default()).unwrap_err();
            assert!(err.to_string().contains("not supported by driver inline.csi"), "{err}");
            assert_eq!(err.class(), ErrorClass::Transient, "the CSIDriver may change: {err}");
            assert!(!mounter.path().parent().unwrap().exists(), "nothing created");
            assert!(!device.requires_attach(&spec, host.as_ref()).unwrap(), "inline volumes never attach");
        }
    }
}
