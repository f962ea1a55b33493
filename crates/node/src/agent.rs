//! The agent: wires the populator, the reconciler, the status loop and the node heartbeat together.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::storage::v1::CSIDriver;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};
use kvol_volume::plugins::csi::{CsiDrivers, CsiPlugin, RegistrationEvent};
use kvol_volume::PluginRegistry;
use tokio::task::JoinSet;

use crate::actual::ActualState;
use crate::config::AgentConfig;
use crate::desired::ObjectRef;
use crate::error::{Error, Result};
use crate::host::AgentHost;
use crate::manager::Manager;

/// What the agent's embedder hears about (the CSI drivers registering on this node: `kvol server` starts
/// their controller roles).
#[derive(Clone, Default)]
pub struct AgentHooks {
    /// Called for every CSI driver registration and unregistration on this node.
    pub on_csi_registration: Option<Arc<dyn Fn(RegistrationEvent) + Send + Sync>>,
}

/// Runs the node agent for `config.node_name` until `shutdown` resolves, mounting with `mount(2)`.
/// Mounts stay in place when it stops: a restarted agent reconstructs them.
pub async fn run_agent(client: Client, config: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    run_agent_with(client, config, Arc::new(kvol_mount::RealMounter::new()), shutdown).await
}

/// [`run_agent`] with a given mount layer (a `FakeMounter` with fail points in tests).
pub async fn run_agent_with(
    client: Client,
    config: AgentConfig,
    mounter: Arc<dyn kvol_mount::Mounter>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    run_agent_hooked(client, config, mounter, AgentHooks::default(), shutdown).await
}

/// [`run_agent_with`], telling `hooks` what happens.
pub async fn run_agent_hooked(
    client: Client,
    config: AgentConfig,
    mounter: Arc<dyn kvol_mount::Mounter>,
    hooks: AgentHooks,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let root = config.root_dir.clone();
    std::fs::create_dir_all(kvol_mount::paths::pods_dir(&root))
        .map_err(|source| Error::ReadDir { path: root.clone(), source })?;
    let mut registry = PluginRegistry::with(kvol_volume::all_plugins())?;
    let csi_drivers = CsiDrivers::new();
    registry.register(Arc::new(CsiPlugin::new(Arc::clone(&csi_drivers), tokio::runtime::Handle::current())))?;

    let mut tasks = JoinSet::new();
    if let Some(dir) = &config.volume_plugin_dir {
        crate::flex::start(
            dir.clone(),
            config.flex_limits.clone(),
            &config.flex_env,
            &mut registry,
            client.clone(),
            config.node_name.clone(),
            &mut tasks,
        )
        .await?;
    }
    let (cm_store, cm_writer) = reflector::store::<ConfigMap>();
    let (secret_store, secret_writer) = reflector::store::<Secret>();
    let (csi_driver_store, csi_driver_writer) = reflector::store::<CSIDriver>();
    let host: Arc<dyn kvol_volume::VolumeHost> = Arc::new(
        AgentHost::new(root.clone(), Arc::clone(&mounter), Some(cm_store.clone()), Some(secret_store.clone()))
            .with_api(
                config.node_name.clone(),
                client.clone(),
                tokio::runtime::Handle::current(),
                csi_driver_store.clone(),
            ),
    );

    // Reconstruction uses the disk only, before anything is read from the API server.
    let mut actual = ActualState::default();
    let report = crate::reconstruct::reconstruct(
        &root,
        &registry,
        host.as_ref(),
        !config.controller_attach_detach,
        &mut actual,
    )?;
    tracing::info!(volumes = report.volumes, devices = report.devices, unknown = report.unknown.len(), root = %root.display(), "reconstructed the actual state");

    let read_only = match config.read_only_address {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address).await.map_err(|source| Error::ReadOnlyServer { address, source })?,
        ),
        None => None,
    };
    let endpoint = read_only.as_ref().and_then(|l| l.local_addr().ok());
    crate::node_status::register(&client, &config.node_name, config.controller_attach_detach, endpoint).await?;

    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let manager = Manager::new(config.clone(), registry, host, mounter, actual, events_tx);

    {
        let m = Arc::clone(&manager);
        let api: Api<ConfigMap> = Api::all(client.clone());
        let stream = reflector::reflector(cm_writer, watcher(api, watcher::Config::default()).default_backoff());
        tasks.spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o)) = ev {
                    let ns = o.metadata.namespace.clone().unwrap_or_default();
                    m.object_changed(&ns, &ObjectRef::ConfigMap(o.metadata.name.clone().unwrap_or_default()));
                }
            }
        });
    }
    {
        let m = Arc::clone(&manager);
        let api: Api<Secret> = Api::all(client.clone());
        let stream = reflector::reflector(secret_writer, watcher(api, watcher::Config::default()).default_backoff());
        tasks.spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o)) = ev {
                    let ns = o.metadata.namespace.clone().unwrap_or_default();
                    m.object_changed(&ns, &ObjectRef::Secret(o.metadata.name.clone().unwrap_or_default()));
                }
            }
        });
    }
    {
        let api: Api<CSIDriver> = Api::all(client.clone());
        let stream =
            reflector::reflector(csi_driver_writer, watcher(api, watcher::Config::default()).default_backoff());
        tasks.spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while stream.next().await.is_some() {}
        });
    }
    // ConfigMap, Secret and CSIDriver lookups must not answer "not found" from an empty cache.
    let ready = async {
        let _ = cm_store.wait_until_ready().await;
        let _ = secret_store.wait_until_ready().await;
        let _ = csi_driver_store.wait_until_ready().await;
    };
    if tokio::time::timeout(std::time::Duration::from_secs(30), ready).await.is_err() {
        return Err(Error::Watch("ConfigMap/Secret/CSIDriver caches did not sync in 30s".into()));
    }

    {
        let on_change = hooks.on_csi_registration.clone();
        let watcher = crate::plugin_watcher::run_plugin_watcher(
            client.clone(),
            config.node_name.clone(),
            root.clone(),
            Arc::clone(&csi_drivers),
            move |event| {
                if let Some(hook) = &on_change {
                    hook(event);
                }
            },
            std::future::pending(),
        );
        tasks.spawn(async move {
            if let Err(e) = watcher.await {
                tracing::error!("the CSI plugin watcher stopped: {e}");
            }
        });
    }
    if let Some(listener) = read_only {
        tracing::info!(address = ?endpoint, "serving /healthz and /stats/summary");
        tasks.spawn(crate::server::serve(listener, Arc::clone(&manager)));
    }
    tasks.spawn(crate::status::event_writer(client.clone(), config.node_name.clone(), events_rx));
    tasks.spawn(crate::status::status_loop(Arc::clone(&manager), client.clone()));
    tasks.spawn(crate::status::usage_loop(Arc::clone(&manager), client.clone()));
    tasks.spawn(reconciler_loop(Arc::clone(&manager)));
    tasks.spawn(crate::node_status::volumes_in_use_loop(Arc::clone(&manager), client.clone()));
    tasks.spawn(crate::volume_stats::volume_stats_loop(Arc::clone(&manager), Arc::clone(&csi_drivers)));
    tasks.spawn(crate::expand::expansion_loop(Arc::clone(&manager), client.clone(), std::time::Duration::from_secs(1)));
    tasks.spawn(populator_loop(Arc::clone(&manager), client.clone()));
    {
        let client = client.clone();
        let node = config.node_name.clone();
        let period = config.heartbeat_period;
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                if let Err(e) = crate::node_status::heartbeat(&client, &node).await {
                    tracing::warn!("node heartbeat failed: {e}");
                }
            }
        });
    }

    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => tracing::info!("node agent stopping"),
        Some(res) = tasks.join_next() => tracing::error!(?res, "a node agent loop ended"),
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Passes over changed pods as soon as something changes, and over every pod each period (kubelet's
/// `reconcilerLoopSleepPeriod`), which also retries what backed off.
async fn reconciler_loop(manager: Arc<Manager>) {
    let period = manager.config.reconcile_period;
    let mut next_full = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_full {
            manager.reconcile_all();
            next_full = tokio::time::Instant::now() + period;
        } else {
            manager.reconcile_dirty();
        }
        tokio::select! {
            _ = manager.wake.notified() => {}
            _ = tokio::time::sleep_until(next_full) => {}
        }
    }
}

/// Watches this node's pods and keeps the desired state in step; pods whose volumes could not all be
/// resolved (a claim not yet bound) are retried every second.
async fn populator_loop(manager: Arc<Manager>, client: Client) {
    let api: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", manager.config.node_name));
    let stream = watcher(api, config).default_backoff();
    let mut stream = std::pin::pin!(stream.into_stream());
    let mut listed: HashSet<String> = HashSet::new();
    let mut retry = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            ev = stream.try_next() => match ev {
                Ok(Some(watcher::Event::Init)) => listed.clear(),
                Ok(Some(watcher::Event::InitApply(pod))) => {
                    listed.insert(pod.metadata.uid.clone().unwrap_or_default());
                    process_pod(&manager, &client, pod).await;
                }
                Ok(Some(watcher::Event::InitDone)) => {
                    {
                        let mut desired = manager.desired.lock();
                        desired.retain(|uid| listed.contains(uid));
                        desired.mark_populated();
                    }
                    tracing::info!(pods = listed.len(), "desired state of world populated");
                    manager.reconcile_all();
                }
                Ok(Some(watcher::Event::Apply(pod))) => process_pod(&manager, &client, pod).await,
                Ok(Some(watcher::Event::Delete(pod))) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    manager.desired.lock().remove_pod(&uid, None);
                    manager.touch(&uid);
                }
                Ok(None) => return,
                Err(e) => tracing::warn!("pod watch: {e}"),
            },
            _ = retry.tick() => {
                let pending: Vec<Arc<Pod>> = manager
                    .desired
                    .lock()
                    .pods()
                    .filter(|p| !p.errors.is_empty())
                    .map(|p| Arc::clone(&p.pod))
                    .collect();
                for pod in pending {
                    process_pod(&manager, &client, (*pod).clone()).await;
                }
            }
        }
    }
}

async fn process_pod(manager: &Arc<Manager>, client: &Client, pod: Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if !crate::populator::wants_volumes(&pod) {
        let terminating = pod.metadata.deletion_timestamp.is_some().then(|| {
            let r = crate::populator::pod_ref(&pod);
            (r.namespace, r.name)
        });
        manager.desired.lock().remove_pod(&uid, terminating);
        manager.touch(&uid);
        return;
    }
    let desired = crate::populator::desired_pod(client, &manager.registry, &manager.host, Arc::new(pod)).await;
    // A volume no plugin serves (a FlexVolume driver not installed) or whose device name a driver refused
    // will not fix itself: say so at once, not only when the mount times out.
    for (volume, error) in &desired.errors {
        if !error.starts_with("error processing PVC") {
            manager.record_mount_error(&desired.pod_ref, volume, error.clone());
        }
    }
    manager.desired.lock().set_pod(desired);
    manager.touch(&uid);
}
