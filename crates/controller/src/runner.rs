//! Starting the controllers: one watch per kind feeding its cache and the queues, the workers, and shutdown.
//! No worker starts before every cache has its first full list, so decisions never rest on half a picture.

use crate::cache::object_key;
use crate::ctx::{claim_key, claim_volume_name, Ctx};
use crate::error::{Error, Result};
use crate::events::Recorder;
use crate::index::claim_ref_key;
use crate::local_path::LocalPathProvisioner;
use crate::matching;
use crate::protection::pod_claim_names;
use crate::provision::{claim_provisioner, ProvisionerRegistry};
use crate::scheduler::is_ours;
use futures::{Stream, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use kvol_runtime::{Backoff, WorkQueue};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the controllers run.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Where `kvol.io/local-path` makes volume directories; `None` leaves the provisioner out.
    pub local_path_dir: Option<PathBuf>,
    /// This node's name (local-path provisions here).
    pub node_name: String,
    /// Workers for claims and for volumes (each).
    pub workers: usize,
    /// Workers for provisioning (the external-provisioner library's threadiness).
    pub provision_workers: usize,
    /// Provisioning retries back off from 15 s doubling to 1000 s.
    pub provision_backoff: Backoff,
    /// Give up provisioning a claim after this many failures (0: never).
    pub failed_provision_threshold: u32,
    /// Creating a provisioned PV: attempts and the pause between them.
    pub create_pv_retries: u32,
    /// See `create_pv_retries`.
    pub create_pv_interval: Duration,
    /// Retry backoff of the binder's queues (API conflicts and errors).
    pub binder_backoff: Backoff,
    /// The longest a Recycle scrub may take.
    pub recycle_timeout: Duration,
    /// Run the volume-aware scheduler.
    pub scheduler: bool,
    /// How often every claim and volume is synced again though nothing changed (the PV controller's
    /// 15 s resync), which repairs what a lost event or a failed write left behind.
    pub resync_period: Duration,
    /// Counters, shared with whoever started the controllers.
    pub metrics: Arc<Metrics>,
    /// Run the attach/detach controller too, for CSI volumes only (no FlexVolume plugins); `None`: don't.
    /// Attaching FlexVolumes needs the probed drivers: call [`crate::attach_detach::run_attach_detach`].
    pub attach_detach: Option<crate::attach_detach::AttachDetachConfig>,
}

impl ControllerConfig {
    /// Defaults: Kubernetes' and the provisioner library's timings, local-path under `dir` on `node_name`.
    pub fn new(local_path_dir: Option<PathBuf>, node_name: impl Into<String>) -> Self {
        ControllerConfig {
            local_path_dir,
            node_name: node_name.into(),
            workers: 512,
            provision_workers: 8,
            provision_backoff: Backoff { base: Duration::from_secs(15), max: Duration::from_secs(1000) },
            failed_provision_threshold: 15,
            create_pv_retries: 5,
            create_pv_interval: Duration::from_secs(10),
            binder_backoff: Backoff { base: Duration::from_millis(10), max: Duration::from_secs(30) },
            recycle_timeout: Duration::from_secs(300),
            scheduler: true,
            resync_period: Duration::from_secs(15),
            metrics: Arc::default(),
            attach_detach: None,
        }
    }
}

/// Counters the benchmark and tests read.
#[derive(Debug, Default)]
pub struct Metrics {
    /// API writes of objects (creates, updates, status updates, deletes; not events).
    pub writes: AtomicU64,
    /// Writes answered 409 Conflict.
    pub conflicts: AtomicU64,
    /// Bindings completed (claims whose status became Bound).
    pub bound: AtomicU64,
    /// Volumes provisioned.
    pub provisioned: AtomicU64,
    /// When each claim was seen Bound by the binder (key → instant).
    pub bound_at: Mutex<HashMap<String, Instant>>,
    /// Whether `bound_at` is recorded (the benchmark turns it on).
    pub record_bind_times: std::sync::atomic::AtomicBool,
    /// Set once all caches are filled and the workers run.
    pub ready: std::sync::atomic::AtomicBool,
}

impl Metrics {
    pub(crate) fn record_bound(&self, claim: &PersistentVolumeClaim) {
        if self.record_bind_times.load(Ordering::Relaxed) {
            let mut map = self.bound_at.lock();
            if map.insert(claim_key(claim), Instant::now()).is_none() {
                self.bound.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            self.bound.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Run all controllers with the built-in provisioners until `shutdown` resolves.
pub async fn run_controllers(
    client: Client,
    config: ControllerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let mut registry = ProvisionerRegistry::new();
    if let Some(dir) = &config.local_path_dir {
        registry.register(Arc::new(LocalPathProvisioner::new(dir.clone(), config.node_name.clone())))?;
    }
    run_controllers_with(client, config, registry, shutdown).await
}

/// Run all controllers with the given provisioners until `shutdown` resolves.
pub async fn run_controllers_with(
    client: Client,
    config: ControllerConfig,
    registry: ProvisionerRegistry,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let ctx = Arc::new(Ctx {
        recorder: Recorder::start(client.clone()),
        metrics: config.metrics.clone(),
        volumes: Default::default(),
        claims: Default::default(),
        classes: Default::default(),
        pods: Default::default(),
        nodes: Default::default(),
        claim_queue: WorkQueue::new(config.binder_backoff),
        volume_queue: WorkQueue::new(config.binder_backoff),
        provision_queue: WorkQueue::new(config.provision_backoff),
        pod_queue: WorkQueue::new(config.binder_backoff),
        class_wakeups: WorkQueue::new(config.binder_backoff),
        registry: Arc::new(registry),
        reserved: Default::default(),
        volume_locks: Default::default(),
        operations: Default::default(),
        provision_retry_at: Default::default(),
        provision_given_up: Default::default(),
        client,
        config,
    });
    tracing::info!(provisioners = ?ctx.registry.names(), "starting storage controllers");
    let mut tasks = tokio::task::JoinSet::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<&'static str>(8);
    let mut kinds = 4;
    tasks.spawn(watch_loop::<PersistentVolume>(ctx.clone(), "persistentvolumes", ready_tx.clone(), on_volume));
    tasks.spawn(watch_loop::<PersistentVolumeClaim>(ctx.clone(), "persistentvolumeclaims", ready_tx.clone(), on_claim));
    tasks.spawn(watch_loop::<StorageClass>(ctx.clone(), "storageclasses", ready_tx.clone(), on_class));
    tasks.spawn(watch_loop::<Pod>(ctx.clone(), "pods", ready_tx.clone(), on_pod));
    if ctx.config.scheduler {
        kinds += 1;
        tasks.spawn(watch_loop::<Node>(ctx.clone(), "nodes", ready_tx.clone(), on_node));
    }
    drop(ready_tx);
    if let Some(config) = ctx.config.attach_detach.clone() {
        let registry = kvol_volume::PluginRegistry::new();
        let client = ctx.client.clone();
        // Stopped with the other tasks (`abort_all`), so it needs no shutdown signal of its own.
        tasks.spawn(crate::attach_detach::run_attach_detach(client, registry, config, std::future::pending()));
    }
    tokio::pin!(shutdown);
    for _ in 0..kinds {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = ready_rx.recv() => if let Some(kind) = r { tracing::debug!(kind, "cache filled") },
            Some(r) = tasks.join_next() => return r.unwrap_or_else(|e| Err(Error::Watch { what: "watch task", message: e.to_string() })),
        }
    }
    // Everything listed: look at every object once.
    ctx.volume_queue.add_all(ctx.volumes.list().iter().map(|v| v.name_any()));
    ctx.claim_queue.add_all(ctx.claims.list().iter().map(|c| claim_key(c)));
    ctx.provision_queue.add_all(ctx.claims.list().iter().map(|c| claim_key(c)));
    if ctx.config.scheduler {
        ctx.pod_queue.add_all(ctx.pods.list().iter().filter(|p| is_ours(p)).map(|p| object_key(&**p)));
    }
    let workers = ctx.config.workers.max(1);
    for _ in 0..workers {
        tasks.spawn(worker(
            ctx.clone(),
            ctx.claim_queue.clone(),
            |ctx, key| Box::pin(async move { ctx.sync_claim(&key).await }),
            false,
        ));
        tasks.spawn(worker(
            ctx.clone(),
            ctx.volume_queue.clone(),
            |ctx, key| Box::pin(async move { ctx.sync_volume(&key).await }),
            false,
        ));
    }
    for _ in 0..ctx.config.provision_workers.max(1) {
        tasks.spawn(worker(
            ctx.clone(),
            ctx.provision_queue.clone(),
            |ctx, key| Box::pin(async move { ctx.sync_provision(&key).await }),
            true,
        ));
    }
    if ctx.config.scheduler {
        tasks.spawn(worker(
            ctx.clone(),
            ctx.pod_queue.clone(),
            |ctx, key| Box::pin(async move { ctx.sync_pod(&key).await }),
            false,
        ));
    }
    tasks.spawn(worker(
        ctx.clone(),
        ctx.class_wakeups.clone(),
        |ctx, class| {
            Box::pin(async move {
                wake_claims_of_class(&ctx, &class);
                Ok(())
            })
        },
        false,
    ));
    {
        let ctx = ctx.clone();
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(ctx.config.resync_period).await;
                ctx.claim_queue.add_all(ctx.claims.list().iter().map(|c| claim_key(c)));
                ctx.volume_queue.add_all(ctx.volumes.list().iter().map(|v| v.name_any()));
            }
        });
    }
    {
        // What a crash in the middle of provisioning left: at start, then now and then.
        let ctx = ctx.clone();
        tasks.spawn(async move {
            loop {
                ctx.collect_abandoned_volumes().await;
                tokio::time::sleep(Duration::from_secs(600)).await;
            }
        });
    }
    ctx.metrics.ready.store(true, Ordering::SeqCst);
    tracing::info!(volumes = ctx.volumes.list().len(), claims = ctx.claims.len(), "storage controllers running");
    let result = tokio::select! {
        _ = &mut shutdown => Ok(()),
        Some(r) = tasks.join_next() => r.unwrap_or_else(|e| Err(Error::Watch { what: "controller task", message: e.to_string() })),
    };
    for q in [&ctx.claim_queue, &ctx.volume_queue, &ctx.provision_queue, &ctx.pod_queue, &ctx.class_wakeups] {
        q.shut_down();
    }
    tasks.abort_all();
    result
}

type SyncFn = fn(Arc<Ctx>, String) -> futures::future::BoxFuture<'static, Result<()>>;

/// Run syncs off a queue. `owns_failures`: the sync counts its failures itself (provisioning, which keeps the
/// count across successes of the sync call, as the library's "Done but not Forget" does).
async fn worker(ctx: Arc<Ctx>, queue: WorkQueue<String>, sync: SyncFn, owns_failures: bool) -> Result<()> {
    while let Some(key) = queue.get().await {
        match sync(ctx.clone(), key.clone()).await {
            Ok(()) if owns_failures => {}
            Ok(()) => queue.forget(&key),
            Err(e) => {
                if e.is_conflict() || matches!(e, Error::VolumeTaken { .. }) {
                    tracing::debug!(%key, error = %e, "retrying");
                } else {
                    tracing::warn!(%key, error = %e, "sync failed; retrying");
                }
                queue.add_rate_limited(key.clone());
            }
        }
        queue.done(&key);
    }
    Ok(())
}

/// Claims of a class that are still waiting for a volume get another look.
fn wake_claims_of_class(ctx: &Ctx, class: &str) {
    // A new default class is also for the claims that have no class at all (retroactive default class).
    let is_default =
        ctx.classes.get(class).is_some_and(|c| kvol_api::names::is_default_class(c.metadata.annotations.as_ref()));
    let waiting = ctx.claims.filter(|c| {
        let no_class = c.spec.as_ref().is_some_and(|s| s.storage_class_name.is_none());
        (matching::claim_class(c) == class || (is_default && no_class))
            && claim_volume_name(c).is_empty()
            && c.metadata.deletion_timestamp.is_none()
    });
    ctx.claim_queue.add_all(waiting.iter().map(|c| claim_key(c)));
}

type Handler<K> = fn(&Arc<Ctx>, Change<K>);

/// One observed change.
enum Change<K> {
    /// Added or modified (the new version).
    Applied(K),
    /// Deleted (the last version).
    Deleted(K),
    /// A full list replaced the cache.
    Relisted(Vec<K>),
}

async fn watch_loop<K>(
    ctx: Arc<Ctx>,
    what: &'static str,
    ready: tokio::sync::mpsc::Sender<&'static str>,
    handler: Handler<K>,
) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let api: Api<K> = Api::all(ctx.client.clone());
    let stream = watcher::watcher(api, watcher::Config::default().page_size(2000)).default_backoff();
    let mut stream: std::pin::Pin<Box<dyn Stream<Item = Result<Event<K>, watcher::Error>> + Send>> = Box::pin(stream);
    let mut buffer: Vec<K> = Vec::new();
    let mut first = true;
    loop {
        match stream.try_next().await {
            Ok(Some(Event::Init)) => buffer.clear(),
            Ok(Some(Event::InitApply(obj))) => buffer.push(obj),
            Ok(Some(Event::InitDone)) => {
                handler(&ctx, Change::Relisted(std::mem::take(&mut buffer)));
                if first {
                    first = false;
                    let _ = ready.send(what).await;
                }
            }
            Ok(Some(Event::Apply(obj))) => handler(&ctx, Change::Applied(obj)),
            Ok(Some(Event::Delete(obj))) => handler(&ctx, Change::Deleted(obj)),
            Ok(None) => return Err(Error::Watch { what, message: "stream ended".into() }),
            Err(e) => tracing::warn!(what, error = %e, "watch failed; the watcher retries with backoff"),
        }
    }
}

fn on_volume(ctx: &Arc<Ctx>, change: Change<PersistentVolume>) {
    match change {
        Change::Relisted(all) => {
            let names: Vec<String> = all.iter().map(|v| v.name_any()).collect();
            ctx.volumes.replace_all(all);
            ctx.volume_queue.add_all(names);
        }
        Change::Applied(pv) => {
            let name = pv.name_any();
            let claim = claim_ref_key(&pv);
            let available_for = (claim.is_none() && crate::ctx::volume_phase(&pv) == "Available")
                .then(|| matching::volume_class(&pv).to_string());
            if !ctx.volumes.apply(pv) {
                return; // older than what we hold
            }
            ctx.volume_queue.add(name);
            if let Some(claim) = claim {
                ctx.claim_queue.add(claim);
            }
            if let Some(class) = available_for {
                ctx.class_wakeups.add(class);
            }
        }
        Change::Deleted(pv) => {
            let name = pv.name_any();
            ctx.volumes.delete(&name);
            if let Some(claim) = claim_ref_key(&pv) {
                ctx.claim_queue.add(claim);
            }
        }
    }
}

fn on_claim(ctx: &Arc<Ctx>, change: Change<PersistentVolumeClaim>) {
    let related = |ctx: &Arc<Ctx>, claim: &PersistentVolumeClaim| {
        let key = claim_key(claim);
        let volume = claim_volume_name(claim);
        if !volume.is_empty() {
            ctx.volume_queue.add(volume.to_string());
        }
        for pv in ctx.volumes.read().claimed_by(&key) {
            ctx.volume_queue.add(pv.name_any());
        }
        if claim_provisioner(claim).is_some() && volume.is_empty() {
            ctx.provision_queue.add(key.clone());
        }
        if ctx.config.scheduler {
            let waiting = ctx.pods.filter(|p| {
                is_ours(p)
                    && p.namespace() == claim.namespace()
                    && pod_claim_names(p).iter().any(|n| Some(n) == claim.metadata.name.as_ref())
            });
            ctx.pod_queue.add_all(waiting.iter().map(|p| object_key(&**p)));
        }
    };
    match change {
        Change::Relisted(all) => {
            let keys: Vec<String> = all.iter().map(claim_key).collect();
            ctx.claims.replace_all(all);
            ctx.claim_queue.add_all(keys);
        }
        Change::Applied(claim) => {
            let key = claim_key(&claim);
            if !ctx.claims.apply(claim.clone()) {
                return;
            }
            ctx.claim_queue.add(key);
            related(ctx, &claim);
        }
        Change::Deleted(claim) => {
            ctx.claims.delete(&claim_key(&claim));
            related(ctx, &claim);
        }
    }
}

fn on_class(ctx: &Arc<Ctx>, change: Change<StorageClass>) {
    match change {
        Change::Relisted(all) => {
            let names: Vec<String> = all.iter().map(|c| c.name_any()).collect();
            ctx.classes.replace_all(all);
            for name in names {
                ctx.class_wakeups.add(name);
            }
        }
        Change::Applied(class) => {
            let name = class.name_any();
            ctx.classes.apply(class);
            ctx.class_wakeups.add(name);
        }
        Change::Deleted(class) => {
            ctx.classes.delete(&class.name_any());
        }
    }
}

fn on_pod(ctx: &Arc<Ctx>, change: Change<Pod>) {
    let related = |ctx: &Arc<Ctx>, pod: &Pod| {
        let ns = pod.namespace().unwrap_or_default();
        ctx.claim_queue.add_all(pod_claim_names(pod).into_iter().map(|n| format!("{ns}/{n}")));
        if ctx.config.scheduler && is_ours(pod) {
            ctx.pod_queue.add(object_key(pod));
        }
    };
    match change {
        Change::Relisted(all) => {
            ctx.pods.replace_all(all.clone());
            for pod in &all {
                related(ctx, pod);
            }
        }
        Change::Applied(pod) => {
            if ctx.pods.apply(pod.clone()) {
                related(ctx, &pod);
            }
        }
        Change::Deleted(pod) => {
            ctx.pods.delete(&object_key(&pod));
            related(ctx, &pod);
        }
    }
}

fn on_node(ctx: &Arc<Ctx>, change: Change<Node>) {
    match change {
        Change::Relisted(all) => ctx.nodes.replace_all(all),
        Change::Applied(node) => {
            ctx.nodes.apply(node);
        }
        Change::Deleted(node) => {
            ctx.nodes.delete(&node.name_any());
        }
    }
    let waiting = ctx.pods.filter(is_ours);
    ctx.pod_queue.add_all(waiting.iter().map(|p| object_key(&**p)));
}
