//! Dynamic discovery of flexVolume drivers (kubelet's `flexVolumeProber` and the plugin manager's
//! refresh): the plugin directory is watched with inotify; a driver that appears or changes is
//! initialised (`init`) and loaded, one that fails `init` or disappears is unloaded.
//!
//! Waiting: the prober waits on the inotify descriptor in tokio's reactor rather than polling on a
//! timer, so an idle node does no work and a new driver is loaded within the settle time
//! ([`FlexConfig::settle`]) instead of after a poll interval. The settle delay after the first event
//! lets an installation (mkdir, copy, chmod, rename) finish, so `init` runs once on the complete
//! driver. The descriptor (a duplicate of the watcher's) is registered through
//! `pipe::Receiver::from_owned_fd_unchecked`, which accepts any pollable descriptor without `unsafe`
//! (tokio's `AsyncFd` constructors are now `unsafe`, and kvol forbids it); the receiver never reads, it
//! only waits for readability. If registering fails, the prober polls once a second.

use std::collections::BTreeMap;
use std::future::Future;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kvol_flex::{PluginDirWatcher, ProbeEvent, ProbeOp};
use parking_lot::{Mutex, RwLock};
use tokio::net::unix::pipe::Receiver;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::mpsc::UnboundedSender;

use super::{FlexConfig, FlexVolumePlugin};
use crate::plugin::VolumePlugin;
use crate::registry::PluginSource;

/// How often the prober looks at the plugin directory when it cannot wait on inotify.
const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// What happened to one driver at a probe, for the caller to log or turn into an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// `vendor/driver`.
    pub driver: String,
    /// The driver directory, `vendor~driver`.
    pub dir_name: String,
    /// Whether the driver appeared/changed or went away.
    pub op: ProbeOp,
    /// Why the driver is not loaded: its `init` failed (`None`: loaded, or removed).
    pub error: Option<String>,
}

/// The drivers in one plugin directory, kept loaded as the directory changes. A [`PluginSource`] for the
/// registry: lookups see the drivers loaded at that moment.
pub struct FlexVolumeProber {
    config: FlexConfig,
    handle: Handle,
    watcher: Mutex<PluginDirWatcher>,
    /// Loaded drivers by directory name.
    plugins: RwLock<BTreeMap<String, Arc<FlexVolumePlugin>>>,
    reports: Option<UnboundedSender<ProbeReport>>,
}

impl FlexVolumeProber {
    /// Creates the plugin directory if missing, starts watching it, and loads every driver present
    /// (kubelet's first `probeAll`), so they are usable before [`FlexVolumeProber::run`] starts. Drivers
    /// whose `init` fails are reported and skipped; the others load.
    ///
    /// Must run on a multi-thread tokio runtime: the plugins block on it for their driver calls.
    /// `reports`, if given, receives one [`ProbeReport`] per driver loaded, failed or removed.
    pub async fn new(
        config: FlexConfig,
        reports: Option<UnboundedSender<ProbeReport>>,
    ) -> kvol_flex::Result<Arc<Self>> {
        let handle = Handle::current();
        if handle.runtime_flavor() == RuntimeFlavor::CurrentThread {
            tracing::warn!("FlexVolume prober on a current-thread runtime: driver calls from other threads only progress while that runtime's thread is in block_on");
        }
        let mut watcher = PluginDirWatcher::new(&config.plugin_dir)?;
        let initial = watcher.probe_all()?;
        let prober = Arc::new(FlexVolumeProber {
            config,
            handle,
            watcher: Mutex::new(watcher),
            plugins: RwLock::new(BTreeMap::new()),
            reports,
        });
        for event in initial {
            prober.apply(event).await;
        }
        Ok(prober)
    }

    /// The plugin directory.
    pub fn plugin_dir(&self) -> &Path {
        &self.config.plugin_dir
    }

    /// The loaded driver named `vendor/driver`.
    pub fn plugin(&self, driver: &str) -> Option<Arc<FlexVolumePlugin>> {
        self.plugins.read().values().find(|p| p.driver_name() == driver).cloned()
    }

    /// The names (`vendor/driver`) of the loaded drivers, sorted by directory name.
    pub fn drivers(&self) -> Vec<String> {
        self.plugins.read().values().map(|p| p.driver_name().to_owned()).collect()
    }

    /// Watches the plugin directory until `shutdown` completes, loading, reloading and unloading drivers
    /// as they change.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let registered = {
            let watcher = self.watcher.lock();
            watcher.as_fd().try_clone_to_owned()
        }
        .and_then(Receiver::from_owned_fd_unchecked);
        let inotify = match registered {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::warn!(dir = %self.config.plugin_dir.display(), error = %e, "FlexVolume prober: cannot wait on inotify; polling every second");
                None
            }
        };
        loop {
            let changed = async {
                match &inotify {
                    Some(fd) => match fd.readable().await {
                        // Cleared before the watcher reads, so events arriving meanwhile wake the next
                        // round. The closure reads nothing: the events are the watcher's to read.
                        Ok(()) => {
                            let _ = fd.try_io(|| Err::<(), _>(std::io::ErrorKind::WouldBlock.into()));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "FlexVolume prober: waiting on inotify");
                            tokio::time::sleep(FALLBACK_POLL).await;
                        }
                    },
                    None => tokio::time::sleep(FALLBACK_POLL).await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = changed => {}
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(self.config.settle) => {}
            }
            self.refresh().await;
        }
    }

    /// Applies the changes seen since the last look, now. [`FlexVolumeProber::run`] calls it on every
    /// change; callers may call it to be sure a just-installed driver is loaded.
    pub async fn refresh(&self) {
        let polled = self.watcher.lock().poll();
        match polled {
            Ok(events) => {
                for event in events {
                    self.apply(event).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "FlexVolume prober: reading plugin directory changes"),
        }
    }

    async fn apply(&self, event: ProbeEvent) {
        let driver = event.driver_name();
        let error = match event.op {
            ProbeOp::AddOrUpdate => {
                match FlexVolumePlugin::init(&self.config, &event.dir_name, self.handle.clone()).await {
                    Ok(plugin) => {
                        tracing::info!(driver = %driver, capabilities = ?plugin.capabilities(), "FlexVolume: driver loaded");
                        self.plugins.write().insert(event.dir_name.clone(), Arc::new(plugin));
                        None
                    }
                    Err(e) => {
                        let unloaded = self.plugins.write().remove(&event.dir_name).is_some();
                        tracing::warn!(driver = %driver, error = %e, unloaded, "FlexVolume: driver not loaded: init failed");
                        Some(format!("FlexVolume driver {driver} not loaded: init failed: {e}"))
                    }
                }
            }
            ProbeOp::Remove => {
                if self.plugins.write().remove(&event.dir_name).is_some() {
                    tracing::info!(driver = %driver, "FlexVolume: driver removed");
                }
                None
            }
        };
        if let Some(reports) = &self.reports {
            let _ = reports.send(ProbeReport { driver, dir_name: event.dir_name, op: event.op, error });
        }
    }
}

impl PluginSource for FlexVolumeProber {
    fn plugins(&self) -> Vec<Arc<dyn VolumePlugin>> {
        self.plugins.read().values().map(|p| Arc::clone(p) as Arc<dyn VolumePlugin>).collect()
    }
}
