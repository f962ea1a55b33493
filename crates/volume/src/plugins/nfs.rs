//! nfs (`pkg/volume/nfs/nfs.go`): `server:path` mounted with type nfs at the pod's volume directory,
//! with the PV's mountOptions and `ro` when read-only. On a failed mount the directory is unmounted (if the
//! mount half happened) and removed, so nothing is left behind.

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::NFSVolumeSource;
use kvol_mount::Mounter as HostMounter;

use super::names::NFS;
use crate::error::{Error, Result};
use crate::host::VolumeHost;
use crate::plugin::{Mounter, MounterArgs, PodRef, Unmounter, VolumePlugin};
use crate::spec::VolumeSpec;

/// The nfs plugin.
pub struct NfsPlugin;

/// The nfs source and whether it is read-only (the inline flag, or the claim's).
fn source(spec: &VolumeSpec) -> Option<(&NFSVolumeSource, bool)> {
    match spec {
        VolumeSpec::Inline(v) => v.nfs.as_ref().map(|s| (s, s.read_only.unwrap_or(false))),
        VolumeSpec::Persistent { read_only, .. } => {
            spec.pv_spec().and_then(|s| s.nfs.as_ref()).map(|s| (s, *read_only))
        }
    }
}

impl VolumePlugin for NfsPlugin {
    fn name(&self) -> &str {
        NFS
    }

    fn can_support(&self, spec: &VolumeSpec) -> bool {
        source(spec).is_some()
    }

    /// kubelet's `GetVolumeName`: `server/path`.
    fn volume_name(&self, spec: &VolumeSpec) -> Result<String> {
        let (s, _) = source(spec)
            .ok_or_else(|| Error::InvalidSpec { volume: spec.name().into(), reason: "not an nfs volume".into() })?;
        Ok(format!("{}/{}", s.server, s.path))
    }

    fn new_mounter(&self, spec: &VolumeSpec, pod: &PodRef, host: &Arc<dyn VolumeHost>) -> Result<Box<dyn Mounter>> {
        let (s, read_only) = source(spec)
            .ok_or_else(|| Error::InvalidSpec { volume: spec.name().into(), reason: "not an nfs volume".into() })?;
        Ok(Box::new(Nfs {
            path: host.pod_volume_dir(&pod.uid, NFS, spec.name()),
            server: s.server.clone(),
            export: s.path.clone(),
            read_only,
            mount_options: spec.mount_options(),
            mounter: host.mounter(),
        }))
    }

    fn new_unmounter(&self, spec_name: &str, pod_uid: &str, host: &Arc<dyn VolumeHost>) -> Result<Box<dyn Unmounter>> {
        Ok(Box::new(Nfs {
            path: host.pod_volume_dir(pod_uid, NFS, spec_name),
            server: String::new(),
            export: String::new(),
            read_only: false,
            mount_options: Vec::new(),
            mounter: host.mounter(),
        }))
    }

    fn is_mount_backed(&self, _spec: Option<&VolumeSpec>) -> bool {
        true
    }
}

struct Nfs {
    path: PathBuf,
    server: String,
    export: String,
    read_only: bool,
    mount_options: Vec<String>,
    mounter: Arc<dyn HostMounter>,
}

impl Nfs {
    /// The mount options: the PV's, then `ro` (kubelet's `JoinMountOptions`, duplicates dropped).
    fn options(&self) -> Vec<String> {
        let mut options = self.mount_options.clone();
        if self.read_only && !options.iter().any(|o| o == "ro") {
            options.push("ro".into());
        }
        options
    }
}

impl Mounter for Nfs {
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    fn set_up(&self, _args: &MounterArgs) -> Result<()> {
        // Exact check: a bind from the same file system is invisible to the device comparison.
        match self.mounter.is_mount_point(&self.path) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        super::make_dirs(&self.path)?;
        let source = format!("{}:{}", self.server, self.export);
        if let Err(err) = self.mounter.mount(&source, &self.path, "nfs", &self.options()) {
            // kubelet: unmount if the mount half happened, then remove the directory; keep the mount's error.
            if let Err(clean) = kvol_mount::cleanup_mount_point(self.mounter.as_ref(), &self.path) {
                tracing::warn!(path = %self.path.display(), error = %clean, "cleaning up after a failed nfs mount");
            }
            return Err(err.into());
        }
        Ok(())
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

impl Unmounter for Nfs {
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    fn tear_down(&self) -> Result<()> {
        Ok(kvol_mount::cleanup_mount_point(self.mounter.as_ref(), &self.path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kvol_mount::{FakeMounter, StepKind};

    fn pv() -> VolumeSpec {
        VolumeSpec::Persistent {
            pv: Box::new(PersistentVolume {
                metadata: ObjectMeta { name: Some("nfs".into()), ..Default::default() },
                spec: Some(PersistentVolumeSpec {
                    nfs: Some(NFSVolumeSource { server: "10.244.1.4".into(), path: "/".into(), read_only: None }),
                    mount_options: Some(vec!["hard".into(), "nfsvers=4.1".into()]),
                    ..Default::default()
                }),
                status: None,
            }),
            read_only: true,
        }
    }

    fn nfs(fake: &Arc<FakeMounter>, dir: &std::path::Path) -> Nfs {
        let (s, ro) = source(&pv()).map(|(s, ro)| (s.clone(), ro)).unwrap();
        Nfs {
            path: dir.join("kubernetes.io~nfs/nfs"),
            server: s.server,
            export: s.path,
            read_only: ro,
            mount_options: pv().mount_options(),
            mounter: fake.clone(),
        }
    }

    #[test]
    fn names_the_volume_server_slash_path() {
        assert_eq!(NfsPlugin.volume_name(&pv()).unwrap(), "10.244.1.4//");
    }

    #[test]
    fn mounts_server_colon_path_with_the_pv_options_and_ro() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(FakeMounter::new());
        let n = nfs(&fake, dir.path());
        n.set_up(&MounterArgs::default()).unwrap();
        assert_eq!(
            fake.calls()[0],
            kvol_mount::FakeCall::Mount {
                source: "10.244.1.4:/".into(),
                target: n.path.clone(),
                fstype: "nfs".into(),
                options: vec!["hard".into(), "nfsvers=4.1".into(), "ro".into()],
            }
        );
        // Idempotent through the mount table: a second set-up mounts nothing.
        n.set_up(&MounterArgs::default()).unwrap();
        assert_eq!(fake.calls().len(), 1);
        n.tear_down().unwrap();
        assert!(!n.path.exists());
    }

    #[test]
    fn a_failed_mount_leaves_no_directory() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(FakeMounter::new());
        fake.fail_at(StepKind::Helper, None, libc::ENODEV);
        let n = nfs(&fake, dir.path());
        n.set_up(&MounterArgs::default()).unwrap_err();
        assert!(!n.path.exists());
    }
}
