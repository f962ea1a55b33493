//! [`run_sidecar`]: connect to the driver, watch what the chosen roles need (queueing only the keys of
//! objects that need work), and run each role's workers until shutdown.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{StorageClass, VolumeAttachment};
use kube::api::ListParams;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};

use crate::config::{Role, SidecarConfig};
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::events::Recorder;
use crate::{attacher, provisioner, resizer};
use kvol_runtime::WorkQueue;

/// What every role's reconcile gets: the API client, the driver, the class cache and the queues.
///
/// Claims, volumes and attachments are not cached: each watch event is filtered on the spot (does
/// this object need work from a role?) and only the key is queued; the worker then reads the object
/// fresh from the API server. The steady-state memory is the class cache plus queued keys, instead of
/// a copy of every PV and claim in the cluster (what makes kubernetes-csi's sidecars need ~200 MiB per
/// 5,000 volumes), and no decision is ever made on a stale copy of an object this role just wrote.
pub struct Ctx {
    /// The API client.
    pub client: Client,
    /// The connected driver.
    pub driver: Driver,
    /// Settings.
    pub config: SidecarConfig,
    /// Events for claims.
    pub provisioner_events: Recorder,
    /// Events for VolumeAttachments.
    pub attacher_events: Recorder,
    /// Events for expansions.
    pub resizer_events: Recorder,
    /// StorageClasses (few and small: cached).
    pub classes: Store<StorageClass>,
    /// Claims to provision (`ns/name`).
    pub claim_queue: WorkQueue<String>,
    /// Volumes to delete (`name`).
    pub volume_queue: WorkQueue<String>,
    /// VolumeAttachments to attach or detach (`name`), and PVs whose attacher finalizer may go (`pv/name`).
    pub attach_queue: WorkQueue<String>,
    /// Claims to expand (`ns/name`).
    pub resize_queue: WorkQueue<String>,
}

impl Ctx {
    /// Whether `role` runs.
    pub fn runs(&self, role: Role) -> bool {
        self.config.roles.contains(&role)
    }

    /// The claim `ns/name`, read now.
    pub async fn get_claim(&self, key: &str) -> Result<Option<PersistentVolumeClaim>> {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        api.get_opt(name).await.map_err(|source| Error::Api {
            action: "reading",
            object: format!("PersistentVolumeClaim {key}"),
            source,
        })
    }

    /// The PV `name`, read now.
    pub async fn get_volume(&self, name: &str) -> Result<Option<PersistentVolume>> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        api.get_opt(name).await.map_err(|source| Error::Api {
            action: "reading",
            object: format!("PersistentVolume {name}"),
            source,
        })
    }

    /// The VolumeAttachment `name`, read now.
    pub async fn get_attachment(&self, name: &str) -> Result<Option<VolumeAttachment>> {
        let api: Api<VolumeAttachment> = Api::all(self.client.clone());
        api.get_opt(name).await.map_err(|source| Error::Api {
            action: "reading",
            object: format!("VolumeAttachment {name}"),
            source,
        })
    }

    /// The class `name` from the cache.
    pub fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.get(&ObjectRef::new(name))
    }

    /// Queues whatever work `claim` needs from the running roles.
    fn on_claim(&self, claim: &PersistentVolumeClaim) {
        if self.runs(Role::Provisioner) && provisioner::wants_claim(self, claim) {
            self.claim_queue.add(key_of(claim));
        }
        if self.runs(Role::Resizer) && resizer::wants_claim(self, claim) {
            self.resize_queue.add(key_of(claim));
        }
    }

    /// Queues whatever work `pv` needs from the running roles.
    fn on_volume(&self, pv: &PersistentVolume) {
        if self.runs(Role::Provisioner) && provisioner::wants_volume(&self.driver.name, pv) {
            self.volume_queue.add(pv.name_any());
        }
        if self.runs(Role::Attacher) && attacher::wants_volume(&self.driver.name, pv) {
            self.attach_queue.add(format!("pv/{}", pv.name_any()));
        }
    }

    /// Queues `va` if it is this driver's.
    fn on_attachment(&self, va: &VolumeAttachment) {
        if self.runs(Role::Attacher) && va.spec.attacher == self.driver.name {
            self.attach_queue.add(va.name_any());
        }
    }
}

/// `ns/name` of a namespaced object.
pub fn key_of<K: Resource>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Watches `K` cluster-wide; `on_change` sees every object listed, added or changed (not deletions:
/// a deleted object needs no work, objects with finalizers are seen while being deleted).
async fn watch<K>(client: Client, on_change: impl Fn(&K) + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let api: Api<K> = Api::all(client);
    let stream = watcher::watcher(api, watcher::Config::default().page_size(500)).default_backoff();
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => on_change(&obj),
            Ok(watcher::Event::InitDone) => tracing::info!(kind = %K::kind(&()), "initial list processed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying with backoff"),
        }
    }
}

/// Lists every `K` page by page (bounded memory) and hands each to `on_item`.
async fn relist<K>(client: &Client, on_item: impl Fn(&K)) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await.map_err(|source| Error::Api {
            action: "listing",
            object: K::kind(&()).into_owned(),
            source,
        })?;
        page.items.iter().for_each(&on_item);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// Runs `config.roles` against the driver at `config.csi_address` until `shutdown` resolves.
///
/// At start it asks the driver for its name and capabilities (GetPluginInfo, GetPluginCapabilities,
/// ControllerGetCapabilities), waiting up to `config.driver_wait` for it to answer, and refuses the
/// provisioner role for a driver without CREATE_DELETE_VOLUME. The class cache is synced before claims
/// are watched; workers read every object fresh before acting, so a restart never acts on a partial or
/// stale view (e.g. creating a second PV for a claim).
pub async fn run_sidecar(client: Client, config: SidecarConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let driver = Driver::connect(&config.csi_address, config.timeout, config.driver_wait).await?;
    tracing::info!(driver = %driver.name, version = %driver.vendor_version, caps = ?driver.caps, roles = ?config.roles, "CSI driver connected");
    if config.roles.contains(&Role::Provisioner) && !driver.caps.create_delete_volume {
        return Err(Error::Invalid {
            object: format!("driver {}", driver.name),
            reason: "the provisioner role needs the CREATE_DELETE_VOLUME controller capability".into(),
        });
    }
    let (claim_queue, volume_queue) =
        (WorkQueue::new(config.provision_backoff), WorkQueue::new(config.provision_backoff));
    let (attach_queue, resize_queue) = (WorkQueue::new(config.attach_backoff), WorkQueue::new(config.resize_backoff));
    let roles = config.roles.clone();
    let (provision, attach, resize) =
        (roles.contains(&Role::Provisioner), roles.contains(&Role::Attacher), roles.contains(&Role::Resizer));

    let mut tasks = tokio::task::JoinSet::new();
    let (classes, writer) = reflector::store::<StorageClass>();
    let class_stream = watcher::watcher(Api::<StorageClass>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    tasks.spawn(async move {
        let mut stream = std::pin::pin!(class_stream);
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                tracing::warn!(error = %e, "StorageClass watch failed; retrying with backoff");
            }
        }
    });
    let component = |role: &str| format!("{}_{role}_{}", driver.name, config.identity);
    let ctx = Arc::new(Ctx {
        provisioner_events: Recorder::start(client.clone(), component("external-provisioner")),
        attacher_events: Recorder::start(client.clone(), component("external-attacher")),
        resizer_events: Recorder::start(client.clone(), component("external-resizer")),
        client: client.clone(),
        driver,
        config,
        classes,
        claim_queue,
        volume_queue,
        attach_queue,
        resize_queue,
    });

    let mut shutdown = std::pin::pin!(shutdown);
    tokio::select! {
        _ = ctx.classes.wait_until_ready() => tracing::info!("StorageClass cache synced"),
        () = &mut shutdown => return Ok(()),
    }
    if provision || resize {
        let c = ctx.clone();
        tasks.spawn(watch::<PersistentVolumeClaim>(client.clone(), move |o| c.on_claim(o)));
    }
    if provision || attach {
        let c = ctx.clone();
        tasks.spawn(watch::<PersistentVolume>(client.clone(), move |o| c.on_volume(o)));
    }
    if attach {
        let c = ctx.clone();
        tasks.spawn(watch::<VolumeAttachment>(client.clone(), move |o| c.on_attachment(o)));
    }

    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..ctx.config.workers.max(1) {
        if provision {
            workers.spawn(work(ctx.clone(), ctx.claim_queue.clone(), provisioner::sync_claim));
            workers.spawn(work(ctx.clone(), ctx.volume_queue.clone(), provisioner::sync_volume));
        }
        if attach {
            workers.spawn(work(ctx.clone(), ctx.attach_queue.clone(), attacher::sync));
        }
        if resize {
            workers.spawn(work(ctx.clone(), ctx.resize_queue.clone(), resizer::sync));
        }
    }
    // Periodic resync, as the informers' resync period does: relist and filter again.
    let resync_ctx = ctx.clone();
    tasks.spawn(async move {
        let ctx = resync_ctx;
        let mut tick = tokio::time::interval(ctx.config.resync);
        tick.tick().await;
        loop {
            tick.tick().await;
            let mut result = Ok(());
            if provision || resize {
                result = result.and(relist::<PersistentVolumeClaim>(&ctx.client, |o| ctx.on_claim(o)).await);
            }
            if provision || attach {
                result = result.and(relist::<PersistentVolume>(&ctx.client, |o| ctx.on_volume(o)).await);
            }
            if attach {
                result = result.and(relist::<VolumeAttachment>(&ctx.client, |o| ctx.on_attachment(o)).await);
            }
            if let Err(e) = result {
                tracing::warn!(error = %e, "resync failed");
            }
        }
    });
    tracing::info!("sidecar running");
    shutdown.await;
    for q in [&ctx.claim_queue, &ctx.volume_queue, &ctx.attach_queue, &ctx.resize_queue] {
        q.shut_down();
    }
    tasks.abort_all();
    while workers.join_next().await.is_some() {}
    tracing::info!("sidecar stopped");
    Ok(())
}

/// A worker: takes keys from `queue` and runs `sync` on them, one at a time.
async fn work<F, Fut>(ctx: Arc<Ctx>, queue: WorkQueue<String>, sync: F)
where
    F: Fn(Arc<Ctx>, String) -> Fut,
    Fut: Future<Output = ()>,
{
    while let Some(key) = queue.get().await {
        sync(ctx.clone(), key.clone()).await;
        queue.done(&key);
    }
}
