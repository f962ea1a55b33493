//! Kubelet's plugin watcher and CSI registration handler (`pkg/kubelet/pluginmanager` and
//! `csi_plugin.go`'s `RegistrationHandler`): drivers announce themselves with a registration socket in
//! `<root>/plugins_registry` (node-driver-registrar serves kubelet's `pluginregistration.v1` there); for
//! each socket the watcher calls GetInfo, validates it (type `CSIPlugin`, a supported 1.x version), asks
//! the driver's endpoint NodeGetInfo, records the driver in the CSINode object and the Node (see
//! [`crate::csinode`]), registers it in the shared [`CsiDrivers`] the CSI volume plugin calls drivers from,
//! and answers NotifyRegistrationStatus. A socket that goes away (or is replaced: the driver restarted)
//! unregisters its driver.
//!
//! Design decision: desired state (the sockets in the directory) against actual state (the sockets
//! registered), reconciled on every inotify event in the directory and at least once a second (kubelet's
//! plugin manager reconciles every second too). The rescan also finds sockets in subdirectories, and
//! sockets created while inotify was not watching; a socket whose registration failed is retried with
//! exponential backoff (0.5 s doubling to 1 min; a socket is often seen between its bind and its listen), or at once when it is recreated. Names starting with `.`
//! are ignored, as kubelet does.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kvol_csi::pluginregistration::{registration_client::RegistrationClient, InfoRequest, RegistrationStatus};
use kvol_csi::v1::{node_client::NodeClient, NodeGetInfoRequest};
use kvol_volume::plugins::csi::{CsiDrivers, DriverInfo, RegistrationEvent, DEFAULT_CALL_TIMEOUT};
use tonic::transport::Channel;

use crate::csinode::CsiNodeUpdater;

/// The registration directory under the root (`plugins_registry`).
pub const PLUGINS_REGISTRY_DIR: &str = "plugins_registry";
/// The plugin type the CSI handler serves.
pub const CSI_PLUGIN_TYPE: &str = "CSIPlugin";

/// Kubelet's `dialTimeoutDuration`.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Kubelet's GetInfo timeout.
const GET_INFO_TIMEOUT: Duration = Duration::from_secs(1);
/// Kubelet's `notifyTimeoutDuration`.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the directory is rescanned without an event.
const RESYNC: Duration = Duration::from_secs(1);
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// `<root>/plugins_registry`.
pub fn registry_dir(root: &Path) -> PathBuf {
    root.join(PLUGINS_REGISTRY_DIR)
}

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum PluginWatcherError {
    /// Creating the registration directory failed.
    #[error("creating plugin registration directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A socket file's identity: a recreated socket (a restarted registrar) is a new plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SocketId {
    dev: u64,
    ino: u64,
    ctime_ns: i128,
}

struct Registered {
    id: SocketId,
    info: DriverInfo,
}

struct Failed {
    id: SocketId,
    retry_at: Instant,
    backoff: Duration,
}

/// The sockets under `dir` (recursively, a few levels deep), skipping names that start with `.`.
fn scan(dir: &Path) -> BTreeMap<PathBuf, SocketId> {
    let mut found = BTreeMap::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else { continue };
            if meta.file_type().is_socket() {
                let id = SocketId {
                    dev: meta.dev(),
                    ino: meta.ino(),
                    ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
                };
                found.insert(entry.path(), id);
            } else if meta.is_dir() && depth < 4 {
                stack.push((entry.path(), depth + 1));
            }
        }
    }
    found
}

/// Watches `<root>/plugins_registry` (created 0750) and (un)registers CSI drivers in `drivers`, the
/// CSINode object and the Node named `node_name`, until `shutdown` resolves. `on_change` hears every
/// registration and unregistration. Registrations are kept at shutdown (the drivers still run; a restarted
/// agent finds their sockets again).
pub async fn run_plugin_watcher(
    client: kube::Client,
    node_name: String,
    root: PathBuf,
    drivers: Arc<CsiDrivers>,
    on_change: impl Fn(RegistrationEvent) + Send + Sync + 'static,
    shutdown: impl Future<Output = ()>,
) -> Result<(), PluginWatcherError> {
    let dir = registry_dir(&root);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(&dir)
        .map_err(|source| PluginWatcherError::CreateDir { path: dir.clone(), source })?;
    let mut events = match watch(&dir) {
        Ok(stream) => Some(stream),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "no inotify watch on the plugin registry; rescanning every second");
            None
        }
    };
    let mut watcher = Watcher {
        updater: CsiNodeUpdater::new(client, node_name),
        drivers,
        on_change: Box::new(on_change),
        registered: HashMap::new(),
        failed: HashMap::new(),
    };
    tracing::info!(dir = %dir.display(), "plugin watcher started");
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(RESYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        watcher.reconcile(&dir).await;
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {}
            event = next_event(&mut events) => {
                if event.is_none() {
                    tracing::warn!("inotify stream ended; rescanning every second");
                    events = None;
                }
            }
        }
    }
    tracing::info!("plugin watcher stopped");
    Ok(())
}

type EventStream = inotify::EventStream<Vec<u8>>;

fn watch(dir: &Path) -> std::io::Result<EventStream> {
    use inotify::{Inotify, WatchMask};
    let inotify = Inotify::init()?;
    inotify.watches().add(
        dir,
        WatchMask::CREATE | WatchMask::DELETE | WatchMask::MOVED_TO | WatchMask::MOVED_FROM | WatchMask::DELETE_SELF,
    )?;
    inotify.into_event_stream(vec![0u8; 4096])
}

/// The next inotify event; pending forever without a stream (the tick drives the loop then).
async fn next_event(events: &mut Option<EventStream>) -> Option<()> {
    match events {
        Some(stream) => match stream.next().await {
            Some(Ok(_)) => Some(()),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "reading inotify events");
                None
            }
            None => None,
        },
        None => std::future::pending().await,
    }
}

struct Watcher {
    updater: CsiNodeUpdater,
    drivers: Arc<CsiDrivers>,
    on_change: Box<dyn Fn(RegistrationEvent) + Send + Sync>,
    registered: HashMap<PathBuf, Registered>,
    failed: HashMap<PathBuf, Failed>,
}

impl Watcher {
    async fn reconcile(&mut self, dir: &Path) {
        let current = scan(dir);
        let gone: Vec<PathBuf> = self
            .registered
            .iter()
            .filter(|(path, r)| current.get(*path) != Some(&r.id))
            .map(|(path, _)| path.clone())
            .collect();
        for path in gone {
            let r = self.registered.remove(&path).expect("listed above");
            self.unregister(&path, r.info).await;
        }
        self.failed.retain(|path, f| current.get(path) == Some(&f.id));
        let now = Instant::now();
        for (path, id) in current {
            if self.registered.contains_key(&path) || self.failed.get(&path).is_some_and(|f| now < f.retry_at) {
                continue;
            }
            match self.register(&path).await {
                Ok(info) => {
                    self.failed.remove(&path);
                    (self.on_change)(RegistrationEvent::Registered(info.clone()));
                    self.registered.insert(path, Registered { id, info });
                }
                Err(message) => {
                    let backoff = self.failed.get(&path).map_or(FIRST_RETRY, |f| (f.backoff * 2).min(MAX_RETRY));
                    tracing::warn!(socket = %path.display(), retry_in = ?backoff, "{message}");
                    self.failed.insert(path, Failed { id, retry_at: Instant::now() + backoff, backoff });
                }
            }
        }
    }

    /// Kubelet's `DeRegisterPlugin`: forgets the driver unless another socket registered it since.
    async fn unregister(&mut self, socket: &Path, info: DriverInfo) {
        tracing::info!(driver = %info.name, socket = %socket.display(), "registration socket gone: unregistering");
        if self.drivers.get(&info.name).is_some_and(|d| d.endpoint != info.endpoint) {
            return;
        }
        self.drivers.unregister(&info.name);
        if let Err(e) = self.updater.uninstall_driver(&info.name).await {
            tracing::warn!(driver = %info.name, error = %e, "removing the driver from CSINode and the Node");
        }
        (self.on_change)(RegistrationEvent::Unregistered { name: info.name });
    }

    /// Kubelet's `GenerateRegisterPluginFunc` with the CSI handler; the error is what was logged and, when
    /// the plugin could be reached, sent back in NotifyRegistrationStatus.
    async fn register(&self, socket: &Path) -> Result<DriverInfo, String> {
        let socket_str = socket.to_string_lossy().into_owned();
        let channel = tokio::time::timeout(DIAL_TIMEOUT, kvol_csi::connect(&socket_str))
            .await
            .map_err(|_| format!("RegisterPlugin error -- dial failed at socket {socket_str}: timed out"))?
            .map_err(|e| format!("RegisterPlugin error -- dial failed at socket {socket_str}: {e}"))?;
        let mut client = RegistrationClient::new(channel);
        let mut request = tonic::Request::new(InfoRequest {});
        request.set_timeout(GET_INFO_TIMEOUT);
        let info = tokio::time::timeout(GET_INFO_TIMEOUT, client.get_info(request))
            .await
            .map_err(|_| "timed out".to_string())
            .and_then(|r| r.map_err(|s| s.message().to_string()))
            .map_err(|e| {
                format!("RegisterPlugin error -- failed to get plugin info using RPC GetInfo at socket {socket_str}, err: {e}")
            })?
            .into_inner();
        if info.r#type != CSI_PLUGIN_TYPE {
            let message = format!(
                "RegisterPlugin error -- no handler registered for plugin type: {} at socket {socket_str}",
                info.r#type
            );
            return Err(notify(&mut client, false, message).await);
        }
        let endpoint = if info.endpoint.is_empty() { socket_str.clone() } else { info.endpoint.clone() };
        let version = match self.drivers.validate(&info.name, &info.supported_versions) {
            Ok(v) => v,
            Err(e) => {
                let message = format!("RegisterPlugin error -- plugin validation failed with err: {e}");
                return Err(notify(&mut client, false, message).await);
            }
        };
        tracing::info!(driver = %info.name, endpoint, "registering CSI driver");
        let registered = match self.install(&info.name, &endpoint, version).await {
            Ok(registered) => registered,
            Err(e) => {
                let message = format!("RegisterPlugin error -- plugin registration failed with err: {e}");
                return Err(notify(&mut client, false, message).await);
            }
        };
        let status = notify(&mut client, true, String::new()).await;
        if !status.is_empty() {
            // The driver is usable; only its registrar did not hear it (kubelet keeps it registered too).
            tracing::warn!(driver = %info.name, "{status}");
        }
        Ok(registered)
    }

    /// Kubelet's CSI `RegisterPlugin`: NodeGetInfo on the driver's endpoint, the CSINode and Node, then the
    /// driver registry.
    async fn install(&self, name: &str, endpoint: &str, version: (u64, u64, u64)) -> Result<DriverInfo, String> {
        let channel: Channel = tokio::time::timeout(DIAL_TIMEOUT, kvol_csi::connect(endpoint))
            .await
            .map_err(|_| format!("connecting to {endpoint}: timed out"))?
            .map_err(|e| format!("connecting to {endpoint}: {e}"))?;
        let mut request = tonic::Request::new(NodeGetInfoRequest {});
        request.set_timeout(DEFAULT_CALL_TIMEOUT);
        let node_info = tokio::time::timeout(DEFAULT_CALL_TIMEOUT, NodeClient::new(channel).node_get_info(request))
            .await
            .map_err(|_| format!("NodeGetInfo did not answer within {DEFAULT_CALL_TIMEOUT:?}"))?
            .map_err(|s| format!("NodeGetInfo: rpc error: code = {:?} desc = {}", s.code(), s.message()))?
            .into_inner();
        let topology: BTreeMap<String, String> =
            node_info.accessible_topology.map(|t| t.segments.into_iter().collect()).unwrap_or_default();
        self.updater
            .install_driver(name, &node_info.node_id, node_info.max_volumes_per_node, &topology)
            .await
            .map_err(|e| e.to_string())?;
        let info = DriverInfo {
            name: name.to_string(),
            endpoint: endpoint.to_string(),
            version,
            node_id: node_info.node_id,
            max_volumes_per_node: node_info.max_volumes_per_node,
            topology,
        };
        self.drivers.register(info.clone()).map_err(|e| e.to_string())?;
        Ok(info)
    }
}

/// NotifyRegistrationStatus; returns `message`, extended with the notification's own failure if any.
async fn notify(client: &mut RegistrationClient<Channel>, registered: bool, message: String) -> String {
    let mut request = tonic::Request::new(RegistrationStatus { plugin_registered: registered, error: message.clone() });
    request.set_timeout(NOTIFY_TIMEOUT);
    match tokio::time::timeout(NOTIFY_TIMEOUT, client.notify_registration_status(request)).await {
        Ok(Ok(_)) => message,
        Ok(Err(s)) => format!("{message} (NotifyRegistrationStatus failed: {})", s.message()),
        Err(_) => format!("{message} (NotifyRegistrationStatus timed out)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_sockets_in_subdirectories_and_skips_dot_files_and_plain_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let _a = std::os::unix::net::UnixListener::bind(dir.path().join("a-reg.sock")).unwrap();
        let _b = std::os::unix::net::UnixListener::bind(dir.path().join("sub/b-reg.sock")).unwrap();
        let _hidden = std::os::unix::net::UnixListener::bind(dir.path().join(".hidden.sock")).unwrap();
        std::fs::write(dir.path().join("plain.sock"), "").unwrap();
        let found: Vec<PathBuf> = scan(dir.path()).into_keys().collect();
        assert_eq!(found, vec![dir.path().join("a-reg.sock"), dir.path().join("sub/b-reg.sock")]);
    }
}
