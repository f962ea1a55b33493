//! local (`pkg/volume/local/local.go`): a directory on the node, bind-mounted into the pod's volume
//! directory with `ro` when the claim is read-only and the PV's mountOptions.

use std::path::PathBuf;
use std::sync::Arc;

use kvol_mount::Mounter as HostMounter;

use super::host_path::validate_no_backsteps;
use super::names::LOCAL;
use crate::error::{Error, Result};
use crate::host::VolumeHost;
use crate::plugin::{Mounter, MounterArgs, PodRef, Unmounter, VolumePlugin};
use crate::spec::VolumeSpec;

/// The local plugin.
pub struct LocalPlugin;

fn local_path(spec: &VolumeSpec) -> Option<&str> {
    spec.pv_spec().and_then(|s| s.local.as_ref()).map(|l| l.path.as_str())
}

impl VolumePlugin for LocalPlugin {
    fn name(&self) -> &str {
        LOCAL
    }

    fn can_support(&self, spec: &VolumeSpec) -> bool {
        local_path(spec).is_some()
    }

    fn volume_name(&self, spec: &VolumeSpec) -> Result<String> {
        Ok(spec.name().to_string())
    }

    fn new_mounter(&self, spec: &VolumeSpec, pod: &PodRef, host: &Arc<dyn VolumeHost>) -> Result<Box<dyn Mounter>> {
        let global = local_path(spec)
            .ok_or_else(|| Error::InvalidSpec { volume: spec.name().into(), reason: "not a local volume".into() })?;
        Ok(Box::new(Local {
            path: host.pod_volume_dir(&pod.uid, LOCAL, spec.name()),
            volume: spec.name().to_string(),
            global: global.to_string(),
            read_only: spec.claim_read_only(),
            mount_options: spec.mount_options(),
            mounter: host.mounter(),
        }))
    }

    fn new_unmounter(&self, spec_name: &str, pod_uid: &str, host: &Arc<dyn VolumeHost>) -> Result<Box<dyn Unmounter>> {
        Ok(Box::new(Local {
            path: host.pod_volume_dir(pod_uid, LOCAL, spec_name),
            volume: spec_name.to_string(),
            global: String::new(),
            read_only: false,
            mount_options: Vec::new(),
            mounter: host.mounter(),
        }))
    }

    fn is_mount_backed(&self, _spec: Option<&VolumeSpec>) -> bool {
        true
    }
}

struct Local {
    path: PathBuf,
    volume: String,
    global: String,
    read_only: bool,
    mount_options: Vec<String>,
    mounter: Arc<dyn HostMounter>,
}

impl Mounter for Local {
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    fn set_up(&self, args: &MounterArgs) -> Result<()> {
        if self.global.is_empty() {
            return Err(Error::InvalidSpec { volume: self.volume.clone(), reason: "LocalVolume path is empty".into() });
        }
        validate_no_backsteps(&self.global)?;
        let meta = std::fs::metadata(&self.global).map_err(Error::io("stat", &self.global))?;
        if !meta.is_dir() {
            return Err(Error::InvalidSpec {
                volume: self.volume.clone(),
                reason: format!(
                    "local path {} is not a directory (block-device local volumes are not supported yet)",
                    self.global
                ),
            });
        }
        // Exact check: a bind from the same file system is invisible to the device comparison.
        match self.mounter.is_mount_point(&self.path) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let first_mount = kvol_mount::mountinfo::get_mount_refs(std::path::Path::new(&self.global))
            .map(|refs| refs.is_empty())
            .unwrap_or(true);
        super::make_dirs(&self.path)?;
        let mut options = vec!["bind".to_string()];
        if self.read_only {
            options.push("ro".into());
        }
        options.extend(self.mount_options.iter().filter(|o| !options.contains(o)).cloned().collect::<Vec<_>>());
        if let Err(err) = self.mounter.mount(&self.global, &self.path, "", &options) {
            if let Err(clean) = kvol_mount::cleanup_mount_point(self.mounter.as_ref(), &self.path) {
                tracing::warn!(path = %self.path.display(), error = %clean, "cleaning up after a failed local bind");
            }
            return Err(err.into());
        }
        // kubelet: ownership is set on the first mount only, and never on a read-only one.
        if let (Some(gid), false, true) = (args.fs_group, self.read_only, first_mount) {
            kvol_mount::set_volume_ownership(&self.path, gid, args.fs_group_change_policy, false)?;
        }
        Ok(())
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

impl Unmounter for Local {
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    fn tear_down(&self) -> Result<()> {
        Ok(kvol_mount::cleanup_mount_point(self.mounter.as_ref(), &self.path)?)
    }
}
