//! emptyDir (`pkg/volume/emptydir/empty_dir.go`): a directory in the pod's directory, or a tmpfs for
//! `medium: Memory`, removed with the pod.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kvol_mount::Mounter as HostMounter;

use super::names::EMPTY_DIR;
use crate::error::{Error, Result};
use crate::host::VolumeHost;
use crate::plugin::{LimitedVolume, Mounter, MounterArgs, PodRef, Unmounter, VolumePlugin};
use crate::spec::VolumeSpec;

/// kubelet's `emptyDirMessageFmt` (eviction_manager/helpers.go), trailing space included.
pub const EMPTY_DIR_EVICTION_MESSAGE: &str = "Usage of EmptyDir volume {volume:?} exceeds the limit {limit:?}. ";

/// The emptyDir plugin.
pub struct EmptyDirPlugin;

/// Where an emptyDir lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// A directory on the root's file system.
    Disk,
    /// A tmpfs.
    Memory,
}

/// The medium and size limit of an emptyDir source.
pub fn medium_and_limit(spec: &VolumeSpec) -> Result<(Medium, Option<u64>)> {
    let source = spec.inline().and_then(|v| v.empty_dir.as_ref()).ok_or_else(|| Error::InvalidSpec {
        volume: spec.name().to_string(),
        reason: "not an emptyDir volume".into(),
    })?;
    let medium = match source.medium.as_deref().unwrap_or("") {
        "" => Medium::Disk,
        "Memory" => Medium::Memory,
        other => {
            return Err(Error::InvalidSpec {
                volume: spec.name().into(),
                reason: format!("unsupported medium {other:?}"),
            })
        }
    };
    let limit = match &source.size_limit {
        None => None,
        Some(q) => {
            let parsed = kvol_api::parse_quantity(&q.0).map_err(|e| Error::InvalidSpec {
                volume: spec.name().into(),
                reason: format!("sizeLimit {:?}: {e}", q.0),
            })?;
            u64::try_from(parsed.value()).ok().filter(|v| *v > 0)
        }
    };
    Ok((medium, limit))
}

impl VolumePlugin for EmptyDirPlugin {
    fn name(&self) -> &str {
        EMPTY_DIR
    }

    fn can_support(&self, spec: &VolumeSpec) -> bool {
        spec.inline().is_some_and(|v| v.empty_dir.is_some())
    }

    fn volume_name(&self, spec: &VolumeSpec) -> Result<String> {
        Ok(spec.name().to_string())
    }

    fn new_mounter(&self, spec: &VolumeSpec, pod: &PodRef, host: &Arc<dyn VolumeHost>) -> Result<Box<dyn Mounter>> {
        let (medium, size_limit) = medium_and_limit(spec)?;
        Ok(Box::new(EmptyDir {
            path: host.pod_volume_dir(&pod.uid, EMPTY_DIR, spec.name()),
            medium,
            size_limit,
            mounter: host.mounter(),
        }))
    }

    fn new_unmounter(&self, spec_name: &str, pod_uid: &str, host: &Arc<dyn VolumeHost>) -> Result<Box<dyn Unmounter>> {
        Ok(Box::new(EmptyDir {
            path: host.pod_volume_dir(pod_uid, EMPTY_DIR, spec_name),
            medium: Medium::Disk,
            size_limit: None,
            mounter: host.mounter(),
        }))
    }

    fn is_mount_backed(&self, spec: Option<&VolumeSpec>) -> bool {
        spec.and_then(|s| medium_and_limit(s).ok()).is_some_and(|(m, _)| m == Medium::Memory)
    }

    fn as_limited(&self) -> Option<&dyn LimitedVolume> {
        Some(self)
    }
}

impl LimitedVolume for EmptyDirPlugin {
    fn exceeded(&self, spec: &VolumeSpec, path: &Path) -> Result<Option<String>> {
        let (medium, limit) = medium_and_limit(spec)?;
        // A tmpfs enforces its own `size=`; kubelet's eviction watches disk-backed volumes.
        let (Medium::Disk, Some(limit)) = (medium, limit) else { return Ok(None) };
        let used = disk_usage(path)?;
        if used <= limit {
            return Ok(None);
        }
        let limit_text = spec
            .inline()
            .and_then(|v| v.empty_dir.as_ref())
            .and_then(|e| e.size_limit.as_ref())
            .map(|q| q.0.clone())
            .unwrap_or_default();
        Ok(Some(eviction_message(spec.name(), &limit_text)))
    }
}

/// `Usage of EmptyDir volume "<volume>" exceeds the limit "<limit>". `
pub fn eviction_message(volume: &str, limit: &str) -> String {
    EMPTY_DIR_EVICTION_MESSAGE.replace("{volume:?}", &format!("{volume:?}")).replace("{limit:?}", &format!("{limit:?}"))
}

/// Bytes allocated under `path` (`du`'s measure: 512-byte blocks), without following symlinks or crossing
/// into other file systems.
pub fn disk_usage(path: &Path) -> Result<u64> {
    let root = std::fs::symlink_metadata(path).map_err(Error::io("measuring", path))?;
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    total += root.blocks() * 512;
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("measuring", &dir)(e)),
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.dev() != root.dev() {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(total)
}

struct EmptyDir {
    path: PathBuf,
    medium: Medium,
    size_limit: Option<u64>,
    mounter: Arc<dyn HostMounter>,
}

impl EmptyDir {
    /// kubelet's `setupDir`: the directory exists with mode 0777 whatever the umask.
    fn setup_dir(&self) -> Result<()> {
        super::make_dirs(&self.path)?;
        let meta = std::fs::metadata(&self.path).map_err(Error::io("stat", &self.path))?;
        if meta.permissions().mode() & 0o7777 != 0o777 {
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o777))
                .map_err(Error::io("chmod", &self.path))?;
        }
        Ok(())
    }
}

impl Mounter for EmptyDir {
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    fn set_up(&self, args: &MounterArgs) -> Result<()> {
        self.setup_dir()?;
        if self.medium == Medium::Memory {
            super::ensure_tmpfs(self.mounter.as_ref(), &self.path, self.size_limit)?;
            // The tmpfs root starts 1777; kubelet's setupDir after the mount makes it 0777.
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o777))
                .map_err(Error::io("chmod", &self.path))?;
        }
        if let Some(gid) = args.fs_group {
            kvol_mount::set_volume_ownership(&self.path, gid, args.fs_group_change_policy, false)?;
        }
        Ok(())
    }
}

impl Unmounter for EmptyDir {
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    fn tear_down(&self) -> Result<()> {
        // Whatever the medium was: a tmpfs at the path is unmounted first.
        super::tear_down_volume_dir(self.mounter.as_ref(), &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Volume};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn spec(medium: Option<&str>, limit: Option<&str>) -> VolumeSpec {
        VolumeSpec::Inline(Box::new(Volume {
            name: "cache".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: medium.map(Into::into),
                size_limit: limit.map(|l| Quantity(l.into())),
            }),
            ..Default::default()
        }))
    }

    #[test]
    fn reads_medium_and_size_limit() {
        assert_eq!(medium_and_limit(&spec(None, None)).unwrap(), (Medium::Disk, None));
        assert_eq!(medium_and_limit(&spec(Some("Memory"), Some("16Mi"))).unwrap(), (Medium::Memory, Some(16 << 20)));
        assert!(medium_and_limit(&spec(Some("Tape"), None)).is_err());
    }

    #[test]
    fn reports_a_disk_volume_over_its_limit_like_kubelet_eviction() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![1u8; 64 << 10]).unwrap();
        let msg = EmptyDirPlugin.exceeded(&spec(None, Some("4Ki")), dir.path()).unwrap();
        assert_eq!(msg.as_deref(), Some("Usage of EmptyDir volume \"cache\" exceeds the limit \"4Ki\". "));
        assert_eq!(EmptyDirPlugin.exceeded(&spec(None, Some("1Mi")), dir.path()).unwrap(), None);
    }
}
