//! csi (`pkg/volume/csi`): kubelet's CSI volume plugin, the node side. A PersistentVolume with
//! `spec.csi`, or an inline `volumes[].csi` (an ephemeral volume, allowed when the driver's CSIDriver
//! lists `Ephemeral` in `volumeLifecycleModes`), is staged once per node (NodeStageVolume at
//! `<root>/plugins/kubernetes.io/csi/<driver>/<sha256(handle)>/globalmount`, when the driver has
//! STAGE_UNSTAGE_VOLUME) and published into each pod (NodePublishVolume at
//! `<root>/pods/<uid>/volumes/kubernetes.io~csi/<name>/mount`). A `vol_data.json` beside both paths records
//! the driver and the handle, as kubelet writes it, so teardown works from the disk alone after a restart.
//! A PV with `volumeMode: Block` is staged and published under `<root>/plugins/kubernetes.io/csi/volumeDevices`
//! instead and linked into the pod at `<root>/pods/<uid>/volumeDevices/kubernetes.io~csi/<name>` (see
//! `block.rs`).
//!
//! Design decisions: the drivers come from a shared [`CsiDrivers`] registry that the agent's plugin
//! watcher fills (kubelet's plugin registration), each with one lazily connected channel that reconnects
//! when the driver restarts. Plugin methods are synchronous and run on the blocking pool; they call the
//! drivers on the agent's runtime through a [`tokio::runtime::Handle`], every call bounded by a timeout. A
//! call that times out, or that the driver answers with a code after which it may still be working
//! (kubelet's `isFinalError`: Cancelled, DeadlineExceeded, Unavailable, ResourceExhausted, Aborted), is
//! reported as *uncertain*, so the agent checks and repeats or undoes it.

mod attacher;
mod block;
mod client;
mod device;
mod drivers;
mod error;
mod expand;
mod mounter;
mod names;
mod stats;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{CSIPersistentVolumeSource, CSIVolumeSource, PersistentVolumeSpec};
use k8s_openapi::api::storage::v1::CSIDriver;
use kvol_csi::v1::volume_capability::{access_mode::Mode, AccessMode, AccessType, BlockVolume, MountVolume};
use kvol_csi::v1::VolumeCapability;
use tokio::runtime::Handle;

pub use drivers::{highest_supported_version, CsiDrivers, DriverInfo, NodeCapabilities, RegistrationEvent};
pub use error::CsiError;
pub use names::{
    attachment_name, block_data_dir, block_global_map_path, block_publish_dir, block_publish_path, block_staging_path,
    block_volume_dir, device_mount_path, ephemeral_volume_handle, pod_device_link, pod_mount_path, split_unique_name,
    unique_name, VolumeData, VOL_DATA_FILE,
};
pub use stats::{volume_stats, VolumeStats};

use crate::error::{Error, Result};
use crate::host::VolumeHost;
use crate::plugin::{DeviceVolumePlugin, Mounter, PodRef, Unmounter, VolumePlugin};
use crate::spec::VolumeSpec;

/// The plugin's qualified name (`CSIPluginName`).
pub const CSI_PLUGIN_NAME: &str = "kubernetes.io/csi";

/// Kubelet's `csiTimeout`: how long one driver call may take.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// How long `wait_for_attach` polls the VolumeAttachment. Kubelet now looks once and lets the operation
/// be retried; a short wait spares a retry when the attacher is about to finish.
pub const DEFAULT_ATTACH_WAIT: Duration = Duration::from_secs(10);

/// `volumeLifecycleMode` values.
const PERSISTENT: &str = "Persistent";
const EPHEMERAL: &str = "Ephemeral";

/// Pod information keys kubelet adds to the volume context when the CSIDriver has `podInfoOnMount`.
pub mod pod_info_keys {
    /// The pod's name.
    pub const POD_NAME: &str = "csi.storage.k8s.io/pod.name";
    /// The pod's namespace.
    pub const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
    /// The pod's uid.
    pub const POD_UID: &str = "csi.storage.k8s.io/pod.uid";
    /// The pod's service account.
    pub const SERVICE_ACCOUNT_NAME: &str = "csi.storage.k8s.io/serviceAccount.name";
    /// `"true"` for an inline ephemeral volume, `"false"` otherwise.
    pub const EPHEMERAL: &str = "csi.storage.k8s.io/ephemeral";
}

/// Settings of the CSI plugin.
#[derive(Debug, Clone, Copy)]
pub struct CsiConfig {
    /// Limit of one driver call (default [`DEFAULT_CALL_TIMEOUT`]).
    pub call_timeout: Duration,
    /// How long `wait_for_attach` waits for `status.attached` (default [`DEFAULT_ATTACH_WAIT`]).
    pub attach_wait: Duration,
}

impl Default for CsiConfig {
    fn default() -> Self {
        CsiConfig { call_timeout: DEFAULT_CALL_TIMEOUT, attach_wait: DEFAULT_ATTACH_WAIT }
    }
}

/// The CSI volume plugin (`kubernetes.io/csi`).
#[derive(Clone)]
pub struct CsiPlugin {
    drivers: Arc<CsiDrivers>,
    runtime: Handle,
    config: CsiConfig,
}

impl CsiPlugin {
    /// The plugin over the shared driver registry; driver calls run on `runtime` (the agent's).
    pub fn new(drivers: Arc<CsiDrivers>, runtime: Handle) -> CsiPlugin {
        CsiPlugin { drivers, runtime, config: CsiConfig::default() }
    }

    /// The same plugin with other settings.
    pub fn with_config(mut self, config: CsiConfig) -> CsiPlugin {
        self.config = config;
        self
    }

    /// The registry this plugin calls drivers from.
    pub fn drivers(&self) -> &Arc<CsiDrivers> {
        &self.drivers
    }

    fn client(&self, driver: &str) -> Result<client::DriverClient> {
        Ok(client::DriverClient::new(&self.drivers, driver, &self.runtime, self.config.call_timeout)?)
    }
}

/// A CSI volume in a spec: a PV's source, or a pod's inline (ephemeral) source.
enum Source<'a> {
    Persistent { csi: &'a CSIPersistentVolumeSource, pv: &'a PersistentVolumeSpec },
    Ephemeral { csi: &'a CSIVolumeSource },
}

impl<'a> Source<'a> {
    fn of(spec: &'a VolumeSpec) -> Result<Source<'a>> {
        if let Some(pv) = spec.pv_spec() {
            if let Some(csi) = pv.csi.as_ref() {
                return Ok(Source::Persistent { csi, pv });
            }
        }
        if let Some(csi) = spec.inline().and_then(|v| v.csi.as_ref()) {
            return Ok(Source::Ephemeral { csi });
        }
        Err(Error::InvalidSpec { volume: spec.name().into(), reason: "volume source not found in volume.Spec".into() })
    }

    fn attributes(&self) -> HashMap<String, String> {
        let attrs = match self {
            Source::Persistent { csi, .. } => csi.volume_attributes.as_ref(),
            Source::Ephemeral { csi } => csi.volume_attributes.as_ref(),
        };
        attrs.map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
    }

    fn fs_type(&self) -> String {
        match self {
            Source::Persistent { csi, .. } => csi.fs_type.clone().unwrap_or_default(),
            Source::Ephemeral { csi } => csi.fs_type.clone().unwrap_or_default(),
        }
    }

    fn mode(&self) -> &'static str {
        match self {
            Source::Persistent { .. } => PERSISTENT,
            Source::Ephemeral { .. } => EPHEMERAL,
        }
    }

    /// The PV's first access mode (kubelet's choice), `ReadWriteOnce` for inline volumes.
    fn access_mode(&self) -> &'a str {
        match self {
            Source::Persistent { pv, .. } => {
                pv.access_modes.as_ref().and_then(|m| m.first()).map(String::as_str).unwrap_or("ReadWriteOnce")
            }
            Source::Ephemeral { .. } => "ReadWriteOnce",
        }
    }

    fn is_block(&self) -> bool {
        matches!(self, Source::Persistent { pv, .. } if pv.volume_mode.as_deref() == Some("Block"))
    }
}

/// Checks the handle and driver of a PV source (kubelet's `makeDeviceMountPath` checks).
fn persistent_ids<'a>(spec: &VolumeSpec, csi: &'a CSIPersistentVolumeSource) -> Result<(&'a str, &'a str)> {
    if csi.driver.is_empty() {
        return Err(Error::InvalidSpec {
            volume: spec.name().into(),
            reason: "csi source driver name is empty".into(),
        });
    }
    if csi.volume_handle.is_empty() {
        return Err(Error::InvalidSpec {
            volume: spec.name().into(),
            reason: "csi source volume handle is empty".into(),
        });
    }
    Ok((&csi.driver, &csi.volume_handle))
}

/// The CSI access mode for a Kubernetes one (kubelet's `asCSIAccessModeV1` and, for drivers with
/// SINGLE_NODE_MULTI_WRITER, `asSingleNodeMultiWriterCapableCSIAccessModeV1`).
fn csi_access_mode(mode: &str, caps: &NodeCapabilities) -> Mode {
    match (mode, caps.single_node_multi_writer) {
        ("ReadWriteOnce", true) => Mode::SingleNodeMultiWriter,
        ("ReadWriteOncePod", true) => Mode::SingleNodeSingleWriter,
        ("ReadWriteOnce" | "ReadWriteOncePod", false) => Mode::SingleNodeWriter,
        ("ReadOnlyMany", _) => Mode::MultiNodeReaderOnly,
        ("ReadWriteMany", _) => Mode::MultiNodeMultiWriter,
        _ => Mode::Unknown,
    }
}

/// The volume capability of a call: block, or mount with the fsType, mount flags and mount group.
fn capability(
    block: bool,
    fs_type: String,
    mount_flags: Vec<String>,
    mount_group: String,
    mode: Mode,
) -> VolumeCapability {
    let access_type = if block {
        AccessType::Block(BlockVolume {})
    } else {
        AccessType::Mount(MountVolume { fs_type, mount_flags, volume_mount_group: mount_group })
    };
    VolumeCapability { access_type: Some(access_type), access_mode: Some(AccessMode { mode: mode as i32 }) }
}

/// The data of Secret `namespace/name` as strings (kubelet's `getCredentialsFromSecret`).
fn secret_data(host: &dyn VolumeHost, namespace: &str, name: &str) -> Result<HashMap<String, String>> {
    let secret = host
        .secret(namespace, name)?
        .ok_or_else(|| Error::ObjectNotFound { resource: "secrets", name: format!("{namespace}/{name}") })?;
    let mut out: HashMap<String, String> = HashMap::new();
    for (k, v) in secret.data.unwrap_or_default() {
        out.insert(k, String::from_utf8_lossy(&v.0).into_owned());
    }
    for (k, v) in secret.string_data.unwrap_or_default() {
        out.entry(k).or_insert(v);
    }
    Ok(out)
}

/// The driver's CSIDriver object, `None` when there is none.
fn csi_driver(host: &dyn VolumeHost, driver: &str) -> Result<Option<CSIDriver>> {
    host.csi_driver(driver)
}

/// Kubelet's `skipAttach` inverted: attach unless the CSIDriver says `attachRequired: false`; no CSIDriver
/// object means attach.
fn attach_required(object: Option<&CSIDriver>) -> bool {
    object.is_none_or(|d| d.spec.attach_required != Some(false))
}

/// The `publish_context` of a call: the VolumeAttachment's `attachmentMetadata`, when the driver attaches.
fn publish_context(host: &dyn VolumeHost, driver: &str, handle: &str, attach: bool) -> Result<HashMap<String, String>> {
    if !attach {
        return Ok(HashMap::new());
    }
    let name = attachment_name(handle, driver, host.node_name());
    let va = host.volume_attachment(&name)?.ok_or_else(|| CsiError::Attach {
        attachment: name.clone(),
        volume: handle.into(),
        reason: "no VolumeAttachment found".into(),
    })?;
    Ok(va.status.and_then(|s| s.attachment_metadata).unwrap_or_default().into_iter().collect())
}

/// Kubelet's `supportsVolumeLifecycleMode`: without a CSIDriver only persistent volumes; with one, the
/// modes it lists (`Persistent` when it lists none, the API default).
fn check_lifecycle_mode(object: Option<&CSIDriver>, driver: &str, mode: &str) -> Result<(), CsiError> {
    let modes: Vec<String> = object
        .and_then(|d| d.spec.volume_lifecycle_modes.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec![PERSISTENT.to_string()]);
    match object {
        None if mode == PERSISTENT => Ok(()),
        None => Err(CsiError::Driver {
            driver: driver.into(),
            reason: format!("volume mode {mode:?} not supported by driver {driver} (no CSIDriver object)"),
        }),
        Some(_) if modes.iter().any(|m| m == mode) => Ok(()),
        Some(_) => Err(CsiError::Driver {
            driver: driver.into(),
            reason: format!("volume mode {mode:?} not supported by driver {driver} (only supports {modes:?})"),
        }),
    }
}

/// Pod information for the volume context (kubelet's `getPodInfoAttrs`).
fn pod_info(host: &dyn VolumeHost, pod: &PodRef, ephemeral: bool) -> BTreeMap<String, String> {
    let mut info = BTreeMap::from([
        (pod_info_keys::POD_NAME.to_string(), pod.name.clone()),
        (pod_info_keys::POD_NAMESPACE.to_string(), pod.namespace.clone()),
        (pod_info_keys::POD_UID.to_string(), pod.uid.clone()),
        (pod_info_keys::EPHEMERAL.to_string(), ephemeral.to_string()),
    ]);
    match host.pod(&pod.namespace, &pod.name) {
        Ok(Some(p)) => {
            let account = p.spec.and_then(|s| s.service_account_name).unwrap_or_default();
            info.insert(pod_info_keys::SERVICE_ACCOUNT_NAME.to_string(), account);
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(pod = %pod.name, error = %e, "no service account name for the CSI volume context"),
    }
    info
}

impl VolumePlugin for CsiPlugin {
    fn name(&self) -> &str {
        CSI_PLUGIN_NAME
    }

    fn can_support(&self, spec: &VolumeSpec) -> bool {
        Source::of(spec).is_ok()
    }

    /// `<driver>^<handle>` (kubelet's `GetVolumeName`); an inline volume, which has no handle until it is
    /// in a pod, is named `<driver>^<volume name>`.
    fn volume_name(&self, spec: &VolumeSpec) -> Result<String> {
        match Source::of(spec)? {
            Source::Persistent { csi, .. } => {
                Ok(format!("{}{}{}", csi.driver, names::VOLUME_NAME_SEP, csi.volume_handle))
            }
            Source::Ephemeral { csi } => Ok(format!("{}{}{}", csi.driver, names::VOLUME_NAME_SEP, spec.name())),
        }
    }

    /// A block mapper for a PV with `volumeMode: Block` (its path is the pod's device link), a mounter
    /// otherwise.
    fn new_mounter(&self, spec: &VolumeSpec, pod: &PodRef, host: &Arc<dyn VolumeHost>) -> Result<Box<dyn Mounter>> {
        if Source::of(spec)?.is_block() {
            return Ok(Box::new(block::CsiBlockMapper::new(self.clone(), spec, pod, host)?));
        }
        Ok(Box::new(mounter::CsiMounter::new(self.clone(), spec, pod, host)?))
    }

    fn new_unmounter(&self, spec_name: &str, pod_uid: &str, host: &Arc<dyn VolumeHost>) -> Result<Box<dyn Unmounter>> {
        Ok(Box::new(mounter::CsiUnmounter::new(self.clone(), spec_name, pod_uid, host)))
    }

    fn is_mount_backed(&self, _spec: Option<&VolumeSpec>) -> bool {
        true
    }

    fn as_node_expandable(&self) -> Option<&dyn crate::plugin::NodeExpandablePlugin> {
        Some(self)
    }

    fn as_device(&self) -> Option<&dyn DeviceVolumePlugin> {
        Some(self)
    }

    fn as_node_attachable(&self) -> Option<&dyn crate::plugin::NodeAttachablePlugin> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_modes_follow_the_drivers_single_node_multi_writer_capability() {
        let plain = NodeCapabilities::default();
        let snmw = NodeCapabilities { single_node_multi_writer: true, ..Default::default() };
        assert_eq!(csi_access_mode("ReadWriteOnce", &plain), Mode::SingleNodeWriter);
        assert_eq!(csi_access_mode("ReadWriteOnce", &snmw), Mode::SingleNodeMultiWriter);
        assert_eq!(csi_access_mode("ReadWriteOncePod", &snmw), Mode::SingleNodeSingleWriter);
        assert_eq!(csi_access_mode("ReadOnlyMany", &snmw), Mode::MultiNodeReaderOnly);
        assert_eq!(csi_access_mode("ReadWriteMany", &plain), Mode::MultiNodeMultiWriter);
    }

    #[test]
    fn inline_volumes_need_a_csidriver_that_lists_ephemeral() {
        let mut object = CSIDriver::default();
        assert!(check_lifecycle_mode(None, "d", PERSISTENT).is_ok());
        assert!(check_lifecycle_mode(None, "d", EPHEMERAL).is_err());
        assert!(check_lifecycle_mode(Some(&object), "d", EPHEMERAL).is_err());
        object.spec.volume_lifecycle_modes = Some(vec![EPHEMERAL.into()]);
        assert!(check_lifecycle_mode(Some(&object), "d", EPHEMERAL).is_ok());
        assert!(check_lifecycle_mode(Some(&object), "d", PERSISTENT).is_err());
        assert!(attach_required(None));
        object.spec.attach_required = Some(false);
        assert!(!attach_required(Some(&object)));
    }
}
