//! A pod's flexVolume: `mount <dir> <json>` and `unmount <dir>` (`mounter.go`, `unmounter.go` and their
//! defaults).

use std::path::PathBuf;
use std::sync::Arc;

use kvol_flex::discovery::device_mount_path;
use kvol_flex::{DriverCall, MountArgs, PodInfo};

use super::errors::{clean_up_failed_mount, driver_error};
use super::{FlexSource, FlexVolumePlugin};
use crate::error::{Error, Result};
use crate::host::VolumeHost;
use crate::mount_root::is_mount_root;
use crate::plugin::{Mounter, MounterArgs, PodRef, Unmounter};
use crate::spec::VolumeSpec;

/// Sets a flexVolume up in one pod's volume directory.
pub(super) struct FlexMounter {
    plugin: Arc<FlexVolumePlugin>,
    spec: VolumeSpec,
    pod: PodRef,
    path: PathBuf,
    read_only: bool,
    host: Arc<dyn VolumeHost>,
}

impl FlexMounter {
    pub(super) fn new(
        plugin: Arc<FlexVolumePlugin>,
        source: &FlexSource<'_>,
        spec: &VolumeSpec,
        pod: &PodRef,
        host: &Arc<dyn VolumeHost>,
    ) -> Self {
        FlexMounter {
            path: host.pod_volume_dir(&pod.uid, plugin.driver_name(), spec.name()),
            plugin,
            spec: spec.clone(),
            pod: pod.clone(),
            read_only: source.read_only,
            host: Arc::clone(host),
        }
    }

    fn source(&self) -> Result<FlexSource<'_>> {
        self.plugin.source(&self.spec)
    }

    /// `spec.serviceAccountName` of the pod; `PodRef` does not carry it, so it is read through the host.
    /// Empty (with a log line) when the host cannot tell, rather than failing the mount over it.
    fn service_account_name(&self) -> String {
        match self.host.pod(&self.pod.namespace, &self.pod.name) {
            Ok(Some(pod)) => pod.spec.and_then(|s| s.service_account_name).unwrap_or_default(),
            Ok(None) => String::new(),
            Err(e) => {
                tracing::debug!(pod = %self.pod.name, error = %e, "FlexVolume: pod not readable; kubernetes.io/serviceAccount.name left empty");
                String::new()
            }
        }
    }

    /// The driver's `mount`, or kubelet's default when the driver does not support it.
    fn mount(&self, args: &MounterArgs) -> Result<()> {
        let source = self.source()?;
        let secrets = source.secrets(&self.pod.namespace, self.host.as_ref())?;
        let mount_args = MountArgs {
            pod: PodInfo {
                name: self.pod.name.clone(),
                namespace: self.pod.namespace.clone(),
                uid: self.pod.uid.clone(),
                service_account_name: self.service_account_name(),
            },
            secrets,
            fs_group: args.fs_group.map(i64::from),
        };
        let call = DriverCall::mount(&self.path.to_string_lossy(), &source.flex_spec(), &mount_args);
        match self.plugin.run(call) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_supported() => self.bind_device_mount(&source),
            Err(e) => Err(driver_error(self.plugin.driver_name(), e)),
        }
    }

    /// kubelet's `mounterDefaults.SetUpAt`: bind the volume's device mount path onto the pod's directory.
    /// Only an attachable driver has a device mount path to bind.
    fn bind_device_mount(&self, source: &FlexSource<'_>) -> Result<()> {
        if !self.plugin.capabilities.attach {
            return Err(Error::InvalidSpec {
                volume: self.spec.name().to_owned(),
                reason: format!(
                    "flexVolume driver {} answered \"Not supported\" to mount and is not attachable, so there is no device mount to bind",
                    self.plugin.driver_name()
                ),
            });
        }
        let volume_name = self.plugin.volume_name_of(source)?;
        let global = device_mount_path(self.host.root_dir(), self.plugin.driver_name(), &volume_name);
        tracing::warn!(driver = %self.plugin.driver_name(), target = %self.path.display(), source = %global.display(), "FlexVolume: mount not supported by the driver; bind-mounting the device mount path");
        self.host.mounter().mount(&global.to_string_lossy(), &self.path, "", &["bind".to_owned()])?;
        Ok(())
    }
}

impl Mounter for FlexMounter {
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// kubelet's `SetUpAt`: mount only once (an existing mount point is success), create the directory
    /// (0750), run the driver's `mount` with the pod, secrets and fsGroup in the options, and on success
    /// apply the fsGroup unless the volume is read-only or the driver said `fsGroup: false`. On failure
    /// nothing is left mounted and the directory is removed; the error carries the driver's message.
    fn set_up(&self, args: &MounterArgs) -> Result<()> {
        let mounter = self.host.mounter();
        match is_mount_root(mounter.as_ref(), &self.path) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                super::super::make_dirs(&self.path)?
            }
            Err(e) => return Err(e),
        }
        if let Err(err) = self.mount(args) {
            return Err(clean_up_failed_mount(mounter.as_ref(), &self.path, err));
        }
        if let (Some(gid), false, true) = (args.fs_group, self.read_only, self.plugin.capabilities.fs_group) {
            // kubelet ignores a failure here too: the volume is mounted, and a retry would see it
            // mounted and return before reaching this point.
            if let Err(e) = kvol_mount::set_volume_ownership(&self.path, gid, args.fs_group_change_policy, false) {
                tracing::warn!(path = %self.path.display(), error = %e, "FlexVolume: applying the pod's fsGroup failed");
            }
        }
        Ok(())
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

/// Tears a flexVolume down in one pod's volume directory.
pub(super) struct FlexUnmounter {
    plugin: Arc<FlexVolumePlugin>,
    path: PathBuf,
    host: Arc<dyn VolumeHost>,
}

impl FlexUnmounter {
    pub(super) fn new(
        plugin: Arc<FlexVolumePlugin>,
        spec_name: &str,
        pod_uid: &str,
        host: &Arc<dyn VolumeHost>,
    ) -> Self {
        FlexUnmounter {
            path: host.pod_volume_dir(pod_uid, plugin.driver_name(), spec_name),
            plugin,
            host: Arc::clone(host),
        }
    }
}

impl Unmounter for FlexUnmounter {
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// kubelet's `TearDownAt`: nothing to do when the directory is gone; otherwise the driver's
    /// `unmount <dir>` (a plain unmount when it is not supported), then the directory is removed unless
    /// the driver removed it. Idempotent.
    fn tear_down(&self) -> Result<()> {
        match std::fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            // A corrupted mount (a dead FUSE server) cannot be stat'ed: the driver still gets to unmount it.
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "FlexVolume: checking the volume directory")
            }
            Ok(_) => {}
        }
        match self.plugin.run(DriverCall::unmount(&self.path.to_string_lossy())) {
            Ok(_) => {}
            Err(e) if e.is_not_supported() => {
                kvol_mount::cleanup_mount_point(self.host.mounter().as_ref(), &self.path)?;
            }
            Err(e) => return Err(driver_error(self.plugin.driver_name(), e)),
        }
        match std::fs::remove_dir(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing", &self.path)(e)),
            _ => Ok(()),
        }
    }
}
