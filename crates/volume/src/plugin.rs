//! The role traits of a volume type (kubelet's `pkg/volume/volume.go` and `plugins.go`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kvol_mount::FsGroupChangePolicy;

use crate::error::Result;
use crate::host::VolumeHost;
use crate::spec::VolumeSpec;

/// The pod a volume is mounted for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodRef {
    /// `metadata.uid`: names the pod's directory.
    pub uid: String,
    /// `metadata.namespace`: where ConfigMaps and Secrets are looked up.
    pub namespace: String,
    /// `metadata.name`, for messages.
    pub name: String,
}

/// Optional inputs of [`Mounter::set_up`] (kubelet's `MounterArgs`).
#[derive(Debug, Clone, Default)]
pub struct MounterArgs {
    /// `pod.spec.securityContext.fsGroup`.
    pub fs_group: Option<u32>,
    /// `pod.spec.securityContext.fsGroupChangePolicy`.
    pub fs_group_change_policy: FsGroupChangePolicy,
}

/// A volume type. Implementations are stateless and shared; per-volume work goes through the
/// [`Mounter`]/[`Unmounter`] they create.
pub trait VolumePlugin: Send + Sync {
    /// The plugin's qualified name (`kubernetes.io/empty-dir`); escaped, it names the volume's directory.
    fn name(&self) -> &'static str;

    /// Whether `spec` is of this plugin's type.
    fn can_support(&self, spec: &VolumeSpec) -> bool;

    /// The plugin's name for the volume itself (nfs: `server/path`, hostPath: the path), as kubelet's
    /// `GetVolumeName` returns it.
    fn volume_name(&self, spec: &VolumeSpec) -> Result<String>;

    /// A mounter for `spec` in `pod`.
    fn new_mounter(&self, spec: &VolumeSpec, pod: &PodRef, host: &Arc<dyn VolumeHost>) -> Result<Box<dyn Mounter>>;

    /// An unmounter for the volume named `spec_name` of the pod `pod_uid`; needs nothing but what the
    /// directory layout tells, so it works for volumes found on disk after a restart.
    fn new_unmounter(&self, spec_name: &str, pod_uid: &str, host: &Arc<dyn VolumeHost>) -> Result<Box<dyn Unmounter>>;

    /// Whether the volume's content follows an API object and must be set up again when it changes
    /// (configMap, secret), as kubelet's `RequiresRemount`.
    fn requires_remount(&self, _spec: &VolumeSpec) -> bool {
        false
    }

    /// Whether the volume puts a mount (rather than a plain directory, or nothing) at its path; the node
    /// agent uses it to verify reconstructed volumes against the mount table.
    fn is_mount_backed(&self, _spec: Option<&VolumeSpec>) -> bool {
        false
    }

    /// The usage-limit capability, for plugins whose volumes have a size limit the agent must watch.
    fn as_limited(&self) -> Option<&dyn LimitedVolume> {
        None
    }
}

/// Sets one volume up for one pod.
pub trait Mounter: Send {
    /// Where the volume is visible on the host (the source a container runtime binds).
    fn path(&self) -> PathBuf;
    /// Makes the volume ready at [`Mounter::path`]. Idempotent: a volume already set up is checked and left
    /// alone (or its content refreshed, for projected volumes). On error, nothing new is left mounted.
    fn set_up(&self, args: &MounterArgs) -> Result<()>;
    /// Whether the volume is read-only for the pod (the container runtime's bind gets `ro`).
    fn read_only(&self) -> bool {
        false
    }
}

/// Tears one volume of one pod down.
pub trait Unmounter: Send {
    /// The volume's path.
    fn path(&self) -> PathBuf;
    /// Unmounts what set-up mounted and removes the pod's directory for it. Idempotent: already gone is
    /// success. Data outside the pod directory (hostPath, local, nfs) is never touched.
    fn tear_down(&self) -> Result<()>;
}

/// A volume type with a size limit that kubelet enforces by eviction (emptyDir `sizeLimit`).
pub trait LimitedVolume: Send + Sync {
    /// Kubelet's eviction message when the volume at `path` uses more than its limit, `None` otherwise.
    fn exceeded(&self, spec: &VolumeSpec, path: &Path) -> Result<Option<String>>;
}
