//! flexVolume (`pkg/volume/flexvolume`): volumes served by an out-of-tree executable in the plugin
//! directory (`--volume-plugin-dir`), one [`FlexVolumePlugin`] per driver, found and refreshed while the
//! agent (or the controller) runs by the [`FlexVolumeProber`].
//!
//! The exec protocol itself (argv, the options JSON, reading a driver's answer, "Not supported"
//! bookkeeping, time limits) is `kvol-flex`'s; this module is kubelet's side of it: which call to make
//! when, and what to do when the driver does not support it (`*-defaults.go`):
//!
//! | call | on "Not supported" |
//! |---|---|
//! | `getvolumename` | the spec's name (kubelet ignores the answer in every case) |
//! | `attach` | device path `""` |
//! | `waitforattach` | the device path given |
//! | `isattached` | attached |
//! | `mountdevice` | kvol formats (only an empty device) and mounts the device itself; no device: nothing |
//! | `detach` | success |
//! | `unmountdevice` | a plain unmount |
//! | `mount` | a bind mount of the device mount path (attachable drivers) |
//! | `unmount` | a plain unmount |
//! | `expandfs` | kvol grows the file system itself (resize2fs, xfs_growfs, btrfs) |
//!
//! Plugin methods are synchronous (the node agent runs them on tokio's blocking pool) while
//! [`kvol_flex::Driver`] is async: each plugin keeps a [`tokio::runtime::Handle`] of a multi-thread
//! runtime and blocks on the call (see [`FlexVolumePlugin::run`]).
//!
//! Where kvol differs from kubelet: every call has a time limit ([`FlexConfig::limits`]); a failed
//! `mount`/`mountdevice` is cleaned up (unmounted, its empty directory removed) so nothing is left
//! mounted; and a driver whose `init` fails on an update is unloaded rather than kept in its old state.

mod attacher;
mod errors;
mod expander;
mod mounter;
mod prober;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kvol_flex::discovery::{device_mount_path, plugin_name};
use kvol_flex::{CallLimits, Command, Driver, DriverCall, DriverCapabilities, DriverStatus};
use tokio::runtime::{Handle, RuntimeFlavor};

pub use errors::flex_error;
pub use prober::{FlexVolumeProber, ProbeReport};

use crate::error::{Error, Result};
use crate::host::VolumeHost;
use crate::plugin::{
    AttachablePlugin, DeviceVolumePlugin, Mounter, NodeExpandablePlugin, PodRef, Unmounter, VolumePlugin,
};
use crate::spec::VolumeSpec;

/// How flexVolume drivers are found and run (the agent's `--volume-plugin-dir`, the controller's
/// `--flex-volume-plugin-dir`).
#[derive(Debug, Clone)]
pub struct FlexConfig {
    /// The plugin directory: `<dir>/<vendor~driver>/<driver>`. Created (0755) when missing.
    pub plugin_dir: PathBuf,
    /// Per-call time limits; a driver still running when its limit passes is killed with its whole
    /// process group and the call fails with a timeout.
    pub limits: CallLimits,
    /// Extra environment variables for every driver call (drivers otherwise inherit kvol's).
    pub env: Vec<(OsString, OsString)>,
    /// How long the prober waits after the first change in the plugin directory before it reads
    /// the changes, so that an installation (mkdir, write, chmod, rename) is seen as one update and
    /// `init` does not run on a half-written driver.
    pub settle: Duration,
}

impl FlexConfig {
    /// The defaults for `plugin_dir`: [`FlexConfig::default_limits`], no extra environment, 200 ms
    /// settle time.
    pub fn new(plugin_dir: impl Into<PathBuf>) -> Self {
        FlexConfig {
            plugin_dir: plugin_dir.into(),
            limits: Self::default_limits(),
            env: Vec::new(),
            settle: Duration::from_millis(200),
        }
    }

    /// Two minutes per call; ten for `waitforattach` (kubelet's `waitForAttachTimeout`) and for
    /// `mountdevice`, which may format a large device.
    pub fn default_limits() -> CallLimits {
        CallLimits {
            default: Duration::from_secs(2 * 60),
            per_command: [
                (Command::WaitForAttach, Duration::from_secs(10 * 60)),
                (Command::MountDevice, Duration::from_secs(10 * 60)),
            ]
            .into(),
            after_exit: Duration::from_secs(1),
        }
    }

    /// The same configuration with `limits`.
    pub fn with_limits(mut self, limits: CallLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The same configuration with one more environment variable for drivers.
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The driver in `<plugin_dir>/<dir_name>` with this configuration's limits and environment.
    pub fn driver(&self, dir_name: &str) -> Driver {
        let mut driver = Driver::new(&self.plugin_dir, dir_name).with_limits(self.limits.clone());
        for (k, v) in &self.env {
            driver = driver.with_env(k, v);
        }
        driver
    }
}

/// One FlexVolume driver as a volume plugin (kubelet's `flexVolumePlugin`, and
/// `flexVolumeAttachablePlugin` when `init` reports `attach: true`).
///
/// Its [`VolumePlugin::name`] is the driver name `vendor/driver`, so pod volumes live in
/// `<root>/pods/<uid>/volumes/vendor~driver/<volume>` as under kubelet; its unique volume names are
/// `flexvolume-vendor/driver/<volume>`.
pub struct FlexVolumePlugin {
    driver: Arc<Driver>,
    capabilities: DriverCapabilities,
    handle: Handle,
}

impl std::fmt::Debug for FlexVolumePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlexVolumePlugin")
            .field("driver", &self.driver.name())
            .field("executable", &self.driver.executable())
            .field("capabilities", &self.capabilities)
            .finish()
    }
}

impl FlexVolumePlugin {
    /// Runs `init` on the driver in `<config.plugin_dir>/<dir_name>` and wraps it; driver calls made
    /// later through the plugin block on `handle` (a multi-thread runtime's). A failed `init` means
    /// the driver is not loaded (kubelet skips it).
    pub async fn init(config: &FlexConfig, dir_name: &str, handle: Handle) -> kvol_flex::Result<Self> {
        let driver = config.driver(dir_name);
        let capabilities = driver.init().await?;
        Ok(Self::from_driver(driver, capabilities, handle))
    }

    /// Wraps a driver whose `init` already ran and answered `capabilities`.
    pub fn from_driver(driver: Driver, capabilities: DriverCapabilities, handle: Handle) -> Self {
        FlexVolumePlugin { driver: Arc::new(driver), capabilities, handle }
    }

    /// `vendor/driver`.
    pub fn driver_name(&self) -> &str {
        self.driver.name()
    }

    /// `flexvolume-vendor/driver`: the prefix of this plugin's unique volume names.
    pub fn plugin_name(&self) -> String {
        plugin_name(self.driver.name())
    }

    /// What `init` reported.
    pub fn capabilities(&self) -> DriverCapabilities {
        self.capabilities
    }

    /// The driver (its executable, limits, the commands it does not support).
    pub fn driver(&self) -> &Driver {
        &self.driver
    }

    /// Runs one call, blocking the calling thread until the driver answers or its limit passes.
    ///
    /// Meant for tokio's blocking pool or any thread outside a runtime; on a worker thread of a
    /// multi-thread runtime it moves the worker's other tasks away first (`block_in_place`). Must not
    /// be called from a current-thread runtime's thread, whose only thread would be blocked.
    pub fn run(&self, call: DriverCall) -> kvol_flex::Result<DriverStatus> {
        let driver = Arc::clone(&self.driver);
        let future = async move { driver.run(&call).await };
        match Handle::try_current() {
            Ok(current) if current.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.handle.block_on(future))
            }
            _ => self.handle.block_on(future),
        }
    }

    /// The `getvolumename` answer as kubelet reads it: the call runs (a driver may refuse the spec),
    /// but the name is always the spec's (PV name or pod volume name).
    fn volume_name_of(&self, source: &FlexSource<'_>) -> Result<String> {
        let spec = source.flex_spec();
        match self.run(DriverCall::get_volume_name(&spec)) {
            Ok(_) => {
                tracing::debug!(driver = %self.driver_name(), volume = %spec.name, "FlexVolume: getvolumename answered; its name is ignored, as kubelet ignores it");
                Ok(spec.name)
            }
            Err(e) if e.is_not_supported() => Ok(spec.name),
            Err(e) => Err(errors::driver_error(self.driver_name(), e)),
        }
    }

    /// The driver's source in `spec`, or an error naming the volume.
    fn source<'a>(&self, spec: &'a VolumeSpec) -> Result<FlexSource<'a>> {
        match FlexSource::of(spec) {
            Some(s) if s.driver == self.driver_name() => Ok(s),
            Some(s) => Err(Error::InvalidSpec {
                volume: spec.name().into(),
                reason: format!("flexVolume driver {:?} is not {:?}", s.driver, self.driver_name()),
            }),
            None => Err(Error::InvalidSpec { volume: spec.name().into(), reason: "not a flexVolume volume".into() }),
        }
    }

    /// `<root>/plugins/kubernetes.io/flexvolume/<vendor>/<driver>/mounts`.
    fn mounts_dir(&self, root: &Path) -> PathBuf {
        let any_volume = device_mount_path(root, self.driver_name(), "v");
        any_volume.parent().map(Path::to_path_buf).unwrap_or(any_volume)
    }
}

/// A `flexVolume` source, inline or a PV's, as kubelet reads it (`getVolumeSource`, `getReadOnly`,
/// `getSecretNameAndNamespace`).
struct FlexSource<'a> {
    /// `spec.Name()`.
    name: &'a str,
    driver: &'a str,
    fs_type: &'a str,
    /// Inline: `flexVolume.readOnly`; PV: the claim's read-only flag (kubelet's `spec.ReadOnly`).
    read_only: bool,
    options: Option<&'a BTreeMap<String, String>>,
    /// `secretRef.name` (empty: none).
    secret_name: &'a str,
    /// PV: `secretRef.namespace` (empty: the pod's); inline: always the pod's.
    secret_namespace: &'a str,
}

impl<'a> FlexSource<'a> {
    fn of(spec: &'a VolumeSpec) -> Option<Self> {
        if let Some(f) = spec.inline().and_then(|v| v.flex_volume.as_ref()) {
            return Some(FlexSource {
                name: spec.name(),
                driver: &f.driver,
                fs_type: f.fs_type.as_deref().unwrap_or(""),
                read_only: f.read_only.unwrap_or(false),
                options: f.options.as_ref(),
                secret_name: f.secret_ref.as_ref().map(|r| r.name.as_str()).unwrap_or(""),
                secret_namespace: "",
            });
        }
        let f = spec.pv_spec().and_then(|s| s.flex_volume.as_ref())?;
        Some(FlexSource {
            name: spec.name(),
            driver: &f.driver,
            fs_type: f.fs_type.as_deref().unwrap_or(""),
            read_only: spec.claim_read_only(),
            options: f.options.as_ref(),
            secret_name: f.secret_ref.as_ref().and_then(|r| r.name.as_deref()).unwrap_or(""),
            secret_namespace: f.secret_ref.as_ref().and_then(|r| r.namespace.as_deref()).unwrap_or(""),
        })
    }

    /// The protocol crate's view of the spec, for building options.
    fn flex_spec(&self) -> kvol_flex::VolumeSpec {
        kvol_flex::VolumeSpec {
            name: self.name.to_owned(),
            fs_type: self.fs_type.to_owned(),
            read_only: self.read_only,
            options: self.options.cloned().unwrap_or_default(),
        }
    }

    /// The secret's data for `mount` (`addSecretsToOptions`): none without a `secretRef`; otherwise the
    /// secret must exist and be of type `<driver>` (kubelet's `GetSecretForPV`).
    fn secrets(&self, pod_namespace: &str, host: &dyn VolumeHost) -> Result<BTreeMap<String, Vec<u8>>> {
        let namespace = if self.secret_namespace.is_empty() { pod_namespace } else { self.secret_namespace };
        if self.secret_name.is_empty() || namespace.is_empty() {
            return Ok(BTreeMap::new());
        }
        let secret: Secret = match host.secret(namespace, self.secret_name)? {
            Some(s) => s,
            None => return Err(Error::ObjectNotFound { resource: "secret", name: self.secret_name.to_owned() }),
        };
        if secret.type_.as_deref() != Some(self.driver) {
            return Err(Error::InvalidSpec {
                volume: self.name.to_owned(),
                reason: format!(
                    "couldn't get secret {namespace}/{} err: cannot get secret of type {} (it is of type {:?})",
                    self.secret_name,
                    self.driver,
                    secret.type_.as_deref().unwrap_or("")
                ),
            });
        }
        let mut data: BTreeMap<String, Vec<u8>> =
            secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
        // The API server folds stringData into data on write, stringData winning; a store that kept
        // it separate gets the same result here.
        data.extend(secret.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())));
        Ok(data)
    }
}

impl VolumePlugin for FlexVolumePlugin {
    fn name(&self) -> &str {
        self.driver.name()
    }

    fn supports_statfs_metrics(&self) -> bool {
        self.capabilities.supports_metrics
    }

    fn as_expandable(&self) -> Option<&dyn crate::plugin::ExpandablePlugin> {
        Some(self)
    }

    /// An inline `flexVolume` or a PV's `spec.flexVolume` whose `driver` is this driver.
    fn can_support(&self, spec: &VolumeSpec) -> bool {
        FlexSource::of(spec).is_some_and(|s| s.driver == self.driver_name())
    }

    /// kubelet's `GetVolumeName`: runs `getvolumename` and uses the spec's name whatever it answers
    /// (an error other than "Not supported" is returned).
    fn volume_name(&self, spec: &VolumeSpec) -> Result<String> {
        let source = self.source(spec)?;
        self.volume_name_of(&source)
    }

    fn new_mounter(&self, spec: &VolumeSpec, pod: &PodRef, host: &Arc<dyn VolumeHost>) -> Result<Box<dyn Mounter>> {
        let source = self.source(spec)?;
        Ok(Box::new(mounter::FlexMounter::new(self.clone_handle(), &source, spec, pod, host)))
    }

    fn new_unmounter(&self, spec_name: &str, pod_uid: &str, host: &Arc<dyn VolumeHost>) -> Result<Box<dyn Unmounter>> {
        Ok(Box::new(mounter::FlexUnmounter::new(self.clone_handle(), spec_name, pod_uid, host)))
    }

    fn is_mount_backed(&self, _spec: Option<&VolumeSpec>) -> bool {
        true
    }

    /// The device phase, for drivers whose `init` says `attach: true` (the default).
    fn as_device(&self) -> Option<&dyn DeviceVolumePlugin> {
        if self.capabilities.attach {
            Some(self)
        } else {
            None
        }
    }

    /// Node-side expansion (`expandfs`), for drivers whose `init` says `requiresFSResize: true` (the
    /// default), as kubelet's `RequiresFSResize`.
    fn as_node_expandable(&self) -> Option<&dyn NodeExpandablePlugin> {
        if self.capabilities.requires_fs_resize {
            Some(self)
        } else {
            None
        }
    }

    /// The controller's attach/detach, for drivers whose `init` says `attach: true`.
    fn as_attachable(&self) -> Option<&dyn AttachablePlugin> {
        if self.capabilities.attach {
            Some(self)
        } else {
            None
        }
    }
}

impl FlexVolumePlugin {
    /// A second plugin value sharing this one's driver (and its "Not supported" memory), for the
    /// per-volume mounters, which must own what they use.
    fn clone_handle(&self) -> Arc<FlexVolumePlugin> {
        Arc::new(FlexVolumePlugin {
            driver: Arc::clone(&self.driver),
            capabilities: self.capabilities,
            handle: self.handle.clone(),
        })
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests;
