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
    /// The plugin's qualified name (`kubernetes.io/empty-dir`; a FlexVolume driver's `vendor/driver`);
    /// escaped, it names the volume's directory under the pod.
    fn name(&self) -> &str;

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

    /// Whether the agent reports the statfs usage of the volume's pod path as its stats (kubelet's
    /// `MetricsStatFS`; a FlexVolume driver's `supportsMetrics`).
    fn supports_statfs_metrics(&self) -> bool {
        false
    }

    /// The usage-limit capability, for plugins whose volumes have a size limit the agent must watch.
    fn as_limited(&self) -> Option<&dyn LimitedVolume> {
        None
    }

    /// The device phase, for plugins whose volumes are attached to the node and/or mounted once per node
    /// before pods use them (flexVolume, csi). `None` for plugins that only set volumes up per pod.
    fn as_device(&self) -> Option<&dyn DeviceVolumePlugin> {
        None
    }

    /// The node's half of volume expansion, for plugins whose volumes' file systems grow on the node after
    /// the controller grew the volume (CSI `NodeExpandVolume`).
    fn as_node_expandable(&self) -> Option<&dyn NodeExpandablePlugin> {
        None
    }

    /// The controller's half of expansion, for in-tree style plugins the controller grows volumes of
    /// (FlexVolume's `expandvolume`). CSI volumes are grown by the resizer role instead.
    fn as_expandable(&self) -> Option<&dyn ExpandablePlugin> {
        None
    }

    /// The controller's attach/detach, for plugins whose drivers attach volumes to nodes themselves
    /// (flexVolume: the driver's `attach`/`detach`). CSI attaches through VolumeAttachment objects instead.
    fn as_attachable(&self) -> Option<&dyn AttachablePlugin> {
        None
    }

    /// The node agent's own attach and detach through API objects (CSI: VolumeAttachments), used when
    /// controller attach/detach is off; plugins whose driver attaches (flexVolume) are
    /// [`VolumePlugin::as_attachable`] instead.
    fn as_node_attachable(&self) -> Option<&dyn NodeAttachablePlugin> {
        None
    }
}

/// A device mount found on disk, for reconstruction after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMountRef {
    /// The plugin's qualified name (as [`VolumePlugin::name`]).
    pub plugin: String,
    /// kubelet's unique volume name (as [`DeviceVolumePlugin::unique_name`]).
    pub unique_name: String,
    /// The global path (as [`DeviceVolumePlugin::device_mount_path`]).
    pub device_mount_path: PathBuf,
}

/// The node's device phase of a volume (kubelet's `AttachableVolumePlugin` node half plus
/// `DeviceMountableVolumePlugin`): wait until the volume is attached, mount it once per node at a global
/// path, and unmount it there when the last pod's mount of it is gone. The pod's [`Mounter`] then makes the
/// volume visible in the pod from that global path (a bind, a driver's `mount`, a CSI `NodePublishVolume`).
///
/// The node agent keys this phase by [`DeviceVolumePlugin::unique_name`], so two pods sharing a volume share
/// one device mount, and orders it: `wait_for_attach` → `mount_device` before any pod mount; pod unmounts
/// before `unmount_device`. Every method is idempotent and may block (driver calls run on the blocking pool).
pub trait DeviceVolumePlugin: Send + Sync {
    /// kubelet's unique volume name, `<plugin name>/<volume name>` (`flexvolume-k8s/loop/vol1`,
    /// `kubernetes.io/csi/<driver>^<volumeHandle>`): what node status `volumesAttached`/`volumesInUse` name.
    fn unique_name(&self, spec: &VolumeSpec, host: &dyn VolumeHost) -> Result<String>;

    /// Whether the volume must be attached to the node (and the attachment confirmed) before
    /// [`DeviceVolumePlugin::mount_device`]. False for a non-attachable flex driver or a CSI driver whose
    /// CSIDriver says `attachRequired: false`.
    fn requires_attach(&self, spec: &VolumeSpec, host: &dyn VolumeHost) -> Result<bool>;

    /// Waits (up to the plugin's limit) until the attached volume is usable on this node and returns the
    /// device path to mount. `device_path` is what attach reported (node `status.volumesAttached[].devicePath`,
    /// or the agent's own attach); empty for volumes that need no attach.
    fn wait_for_attach(&self, spec: &VolumeSpec, device_path: &str, host: &dyn VolumeHost) -> Result<String>;

    /// The per-node global path of the volume (`<root>/plugins/kubernetes.io/flexvolume/<vendor>/<driver>/mounts/<volume>`,
    /// `<root>/plugins/kubernetes.io/csi/<driver>/<sha256(handle)>/globalmount`).
    fn device_mount_path(&self, spec: &VolumeSpec, host: &dyn VolumeHost) -> Result<PathBuf>;

    /// Mounts the device at `device_mount_path` (idempotent: a correct existing mount is success). A plugin
    /// without a per-node mount (a CSI driver without STAGE_UNSTAGE_VOLUME) does nothing.
    fn mount_device(
        &self,
        spec: &VolumeSpec,
        device_path: &str,
        device_mount_path: &Path,
        host: &dyn VolumeHost,
    ) -> Result<()>;

    /// Unmounts `device_mount_path` (idempotent: nothing there is success). The agent calls it only when no
    /// pod uses the volume any more.
    fn unmount_device(&self, unique_name: &str, device_mount_path: &Path, host: &dyn VolumeHost) -> Result<()>;

    /// The device mounts of this plugin on disk (reconstruction after a restart).
    fn find_device_mounts(&self, host: &dyn VolumeHost) -> Result<Vec<DeviceMountRef>>;
}

/// The node's half of expansion (kubelet's `NodeExpandableVolumePlugin`): the node agent calls it for a
/// mounted volume whose claim says `FileSystemResizePending`, then records the new capacity on the claim.
pub trait NodeExpandablePlugin: Send + Sync {
    /// Grows the file system of the volume mounted at `volume_path` (one pod's mount; `device_mount_path` is
    /// the per-node mount, if any) from `old_size` to `new_size` bytes. Idempotent: a file system already
    /// that large is success.
    fn node_expand(
        &self,
        spec: &VolumeSpec,
        volume_path: &Path,
        device_mount_path: Option<&Path>,
        new_size: i64,
        old_size: i64,
        host: &dyn VolumeHost,
    ) -> Result<()>;
}

/// The controller's half of expansion (Kubernetes' `ExpandableVolumePlugin`, run by the expand controller).
pub trait ExpandablePlugin: Send + Sync {
    /// Grows the volume of `spec` (a PV) from `old_size` to `new_size` bytes; returns the size it now has.
    /// `root` is where the plugin's per-node paths would be (FlexVolume passes its device mount path).
    fn expand_volume(&self, spec: &VolumeSpec, new_size: i64, old_size: i64, root: &Path) -> Result<i64>;

    /// Whether the file system must then be grown on the node (`FileSystemResizePending`).
    fn requires_fs_resize(&self) -> bool;
}

/// The controller's half of attach (kubelet's `Attacher`/`Detacher` as the attach/detach controller runs
/// them), for plugins whose driver attaches: flexVolume drivers whose `init` says `attach: true`.
pub trait AttachablePlugin: Send + Sync {
    /// Whether this volume needs the controller's attach (the driver's capability).
    fn is_attachable(&self, spec: &VolumeSpec) -> bool;

    /// The volume name used for detach: the part of the unique name after `<plugin name>/`.
    fn volume_name_for_attach(&self, spec: &VolumeSpec) -> Result<String>;

    /// Attaches the volume to `node`; returns the device path recorded in node `status.volumesAttached`.
    fn attach(&self, spec: &VolumeSpec, node: &str) -> Result<String>;

    /// Whether the volume is attached to `node` (a driver without `isattached` answers true).
    fn is_attached(&self, spec: &VolumeSpec, node: &str) -> Result<bool>;

    /// Detaches the volume named `volume_name` (see [`AttachablePlugin::volume_name_for_attach`]) from `node`.
    fn detach(&self, volume_name: &str, node: &str) -> Result<()>;
}

/// Attach and detach as kubelet runs them itself with `--enable-controller-attach-detach=false`, for plugins
/// that attach through objects the [`VolumeHost`] writes (kubelet's `csiAttacher` Attach and Detach): the
/// external attacher of the driver does the attaching, the plugin asks for it and waits. Both may block up to
/// the plugin's limit and are idempotent.
pub trait NodeAttachablePlugin: Send + Sync {
    /// Asks for the volume to be attached to the host's node and waits until it is; returns the device path
    /// to hand [`DeviceVolumePlugin::wait_for_attach`]. After an error the attachment may exist: the caller
    /// detaches it once nobody wants the volume.
    fn attach(&self, spec: &VolumeSpec, host: &dyn VolumeHost) -> Result<String>;

    /// Asks for the volume of `unique_name` (as [`DeviceVolumePlugin::unique_name`]) to be detached from the
    /// host's node and waits until it is. Not attached is success.
    fn detach(&self, unique_name: &str, host: &dyn VolumeHost) -> Result<()>;
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
