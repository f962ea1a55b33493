//! The controller's loop: watches feed the caches and wake the loop; each pass computes the desired state,
//! decides, starts operations, applies their outcomes to the actual state, and writes the nodes'
//! `status.volumesAttached` (`node_status_updater.go`) — a merge patch of the status subresource that
//! touches nothing else, and only when the list changes.

use super::actual::{node_attached, node_in_use, ActualState, AttachState};
use super::desired::{self, AttachSource, DesiredState, DesiredVolume, VolumeNode};
use super::error::OperationError;
use super::names;
use super::operations::{self, Outcome};
use super::reconcile::{self, Decision, Operations, Timing};
use super::world::{ControllerHost, World};
use super::AttachDetachConfig;
use crate::cache::Cache;
use crate::error::{Error, Result};
use futures::{Stream, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use kvol_runtime::{EventType, Recorder};
use kvol_volume::PluginRegistry;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;

/// The component name on the controller's events.
pub const COMPONENT: &str = "attachdetach-controller";

/// The taint that lets a node's volumes go without waiting for their unmount.
const TAINT_OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// Which operation a task ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Attach,
    Detach,
    Verify,
}

/// A finished operation, sent back to the loop.
struct Finished {
    key: VolumeNode,
    kind: OpKind,
    outcome: Outcome,
    /// For events: the spec's name and the pods that wanted the volume when the operation started.
    spec_name: String,
    pods: Vec<Arc<Pod>>,
    /// The plugin that ran it, if a plugin did.
    plugin: Option<String>,
}

/// The loop's state; it alone changes the actual state.
pub(super) struct Controller {
    client: Client,
    world: Arc<World>,
    host: ControllerHost,
    registry: PluginRegistry,
    config: AttachDetachConfig,
    recorder: Recorder,
    actual: ActualState,
    ops: Operations,
    /// The resourceVersion of each node last looked at (its `volumesInUse` applied).
    seen_nodes: HashMap<String, Option<String>>,
    tasks: JoinSet<()>,
    done_tx: mpsc::UnboundedSender<Finished>,
    done_rx: mpsc::UnboundedReceiver<Finished>,
    wake: Arc<Notify>,
    /// The earliest end of an attacher wait.
    waits_end: Option<Instant>,
}

impl Controller {
    /// A controller over filled caches; the actual state is rebuilt from them.
    pub(super) fn new(
        client: Client,
        world: Arc<World>,
        registry: PluginRegistry,
        config: AttachDetachConfig,
        wake: Arc<Notify>,
    ) -> Self {
        let nodes = world.nodes.list();
        let actual = ActualState::rebuild(&nodes, &world.attachments.list(), |n| world.volumes.get(n));
        let seen_nodes = nodes.iter().map(|n| (n.name_any(), n.metadata.resource_version.clone())).collect();
        tracing::info!(attachments = actual.volumes.len(), nodes = nodes.len(), "attach/detach: actual state rebuilt");
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Controller {
            recorder: Recorder::start(client.clone()),
            host: ControllerHost::new(world.clone()),
            client,
            world,
            registry,
            config,
            actual,
            ops: Operations::default(),
            seen_nodes,
            tasks: JoinSet::new(),
            done_tx,
            done_rx,
            wake,
            waits_end: None,
        }
    }

    /// Reconciles until dropped.
    pub(super) async fn run(mut self) -> Result<()> {
        let mut next_sync = Instant::now() + self.config.sync_period;
        loop {
            let now = Instant::now();
            if self.waits_end.is_some_and(|end| end <= now) {
                self.waits_end = None; // over: the waiting operations note their next end when they run again
            }
            let sync = now >= next_sync;
            if sync {
                next_sync = now + self.config.sync_period;
            }
            let wake_at = self.reconcile(sync).await;
            let deadline = [next_sync].into_iter().chain(wake_at).chain(self.waits_end).min().unwrap_or(next_sync);
            // Operations waiting on an attacher are looked at again when something changes or a wait ends,
            // not merely because another operation finished.
            tokio::select! {
                _ = self.wake.notified() => self.ops.unpark_all(),
                Some(done) = self.done_rx.recv() => self.finish(done),
                _ = tokio::time::sleep_until(deadline.into()) => self.ops.unpark_all(),
            }
            // Let a burst of changes settle into one pass (kube's reconciler runs every 100 ms).
            tokio::time::sleep(self.config.loop_period).await;
            while let Ok(done) = self.done_rx.try_recv() {
                self.finish(done);
            }
            while self.tasks.try_join_next().is_some() {}
        }
    }

    /// One pass; returns when a wait ends at the latest.
    async fn reconcile(&mut self, sync: bool) -> Option<Instant> {
        let now = Instant::now();
        let out_of_service = self.observe_nodes();
        let plugins = self.registry.all();
        let desired = desired::compute(&self.world, &plugins, &self.host);
        for problem in &desired.problems {
            tracing::debug!("attach/detach: {problem}");
        }
        let timing = Timing { max_wait_for_unmount: self.config.max_wait_for_unmount };
        let plan = reconcile::decide(&desired, &mut self.actual, &mut self.ops, &out_of_service, timing, now);
        let mut detaches = Vec::new();
        for decision in plan.decisions {
            match decision {
                Decision::Attach(key) => match desired.volumes.get(&key) {
                    Some(want) => self.start_attach(key, want.clone()),
                    None => self.ops.finish(&key),
                },
                Decision::Detach { key, force } => {
                    let Some(volume) = self.actual.volumes.get_mut(&key) else {
                        self.ops.finish(&key);
                        continue;
                    };
                    if volume.state == AttachState::Detaching {
                        self.start_detach(key);
                    } else {
                        // Off the node's status first, so the node mounts it no more (kube's reconciler).
                        volume.reported = false;
                        self.actual.mark_dirty(&key.node);
                        detaches.push((key, force));
                    }
                }
                Decision::MultiAttachError { key, others } => self.report_multi_attach(&desired, &key, &others),
            }
        }
        let failed = self.write_node_statuses().await;
        let mut latest: HashMap<String, Option<Vec<String>>> = HashMap::new();
        for (key, force) in detaches {
            // kube's verifyVolumeIsSafeToDetach: the node as the API server has it now, not as the watch last
            // delivered it. The agent lists a device in volumesInUse before it mounts it (and after the write
            // above it finds it gone from volumesAttached and mounts nothing), so a detach that has read the node
            // after its own write never races a mount.
            let in_use = if force || failed.contains(&key.node) {
                None
            } else {
                if !latest.contains_key(&key.node) {
                    let fresh = self.latest_in_use(&key.node).await;
                    latest.insert(key.node.clone(), fresh);
                }
                latest[&key.node].clone()
            };
            let Some(volume) = self.actual.volumes.get_mut(&key) else {
                self.ops.finish(&key);
                continue;
            };
            if failed.contains(&key.node) {
                volume.reported = matches!(volume.state, AttachState::Attached { .. });
                self.ops.finish(&key);
                continue;
            }
            if !force && in_use.as_ref().is_none_or(|list| list.contains(&key.volume)) {
                match &in_use {
                    Some(_) => tracing::info!(volume = %key, "not detaching: the node reports the volume in use"),
                    None => tracing::warn!(volume = %key, "not detaching: the node's volumesInUse could not be read"),
                }
                volume.mounted_by_node = in_use.is_some();
                volume.reported = matches!(volume.state, AttachState::Attached { .. });
                self.actual.mark_dirty(&key.node);
                self.ops.finish(&key);
                continue;
            }
            if force {
                tracing::warn!(volume = %key, max_wait = ?self.config.max_wait_for_unmount,
                    "detaching a volume the node still reports in use: the wait for its unmount is over");
            } else {
                tracing::info!(volume = %key, "detaching");
            }
            volume.state = AttachState::Detaching;
            volume.waiting_since = None;
            self.start_detach(key);
        }
        if sync {
            self.verify_attached(&desired);
        }
        let retry_status = (!failed.is_empty()).then(|| now + std::time::Duration::from_secs(1));
        [plan.next_wake, retry_status].into_iter().flatten().min()
    }

    /// The node's `status.volumesInUse` read from the API server (a node that is gone uses nothing); `None`
    /// when it cannot be read.
    async fn latest_in_use(&self, node: &str) -> Option<Vec<String>> {
        let api: Api<Node> = Api::all(self.client.clone());
        match api.get_status(node).await {
            Ok(node) => Some(node_in_use(&node).to_vec()),
            Err(kube::Error::Api(s)) if s.code == 404 => Some(Vec::new()),
            Err(e) => {
                tracing::warn!(%node, error = %e, "reading the node before a detach failed");
                None
            }
        }
    }

    /// Applies nodes' `volumesInUse` when a node changed, marks nodes whose `volumesAttached` differs from
    /// what must be reported, and returns the nodes tainted out-of-service.
    fn observe_nodes(&mut self) -> BTreeSet<String> {
        let mut out_of_service = BTreeSet::new();
        let nodes = self.world.nodes.list();
        for node in &nodes {
            let name = node.name_any();
            let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[]);
            if taints.iter().any(|t| t.key == TAINT_OUT_OF_SERVICE) {
                out_of_service.insert(name.clone());
            }
            let version = node.metadata.resource_version.clone();
            if self.seen_nodes.get(&name) == Some(&version) {
                continue;
            }
            self.actual.set_in_use(&name, node_in_use(node));
            if node_attached(node) != self.actual.reported_for(&name) {
                self.actual.mark_dirty(&name);
            }
            self.seen_nodes.insert(name, version);
        }
        if self.seen_nodes.len() > nodes.len() {
            self.seen_nodes.retain(|name, _| self.world.nodes.get(name).is_some());
        }
        out_of_service
    }

    /// Writes `status.volumesAttached` of every dirty node; returns the nodes whose write failed.
    async fn write_node_statuses(&mut self) -> BTreeSet<String> {
        let mut failed = BTreeSet::new();
        for node in std::mem::take(&mut self.actual.dirty_nodes) {
            let want = self.actual.reported_for(&node);
            let Some(current) = self.world.nodes.get(&node) else { continue }; // gone: nothing to write
            if node_attached(&current) == want {
                continue;
            }
            let list = if want.is_empty() { serde_json::Value::Null } else { serde_json::json!(want) };
            let patch = serde_json::json!({ "status": { "volumesAttached": list } });
            let api: Api<Node> = Api::all(self.client.clone());
            match api.patch_status(&node, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(written) => {
                    tracing::debug!(%node, attached = ?want.iter().map(|v| &v.name).collect::<Vec<_>>(), "node status updated");
                    self.world.nodes.apply(written);
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    self.world.nodes.delete(&node);
                }
                Err(e) => {
                    tracing::warn!(%node, error = %e, "updating the node's volumesAttached failed; retrying");
                    failed.insert(node.clone());
                    self.actual.mark_dirty(&node);
                }
            }
        }
        failed
    }

    /// Runs an operation that `decide` (or, for checks, the caller) recorded as running.
    fn spawn(&mut self, key: VolumeNode, kind: OpKind, want: Option<&DesiredVolume>, op: OpFuture) {
        let (spec_name, pods, plugin) = match want {
            Some(w) => {
                let plugin = match &w.source {
                    AttachSource::Plugin { plugin, .. } => Some(plugin.name().to_string()),
                    _ => None,
                };
                (w.spec_name.clone(), w.pods.clone(), plugin)
            }
            None => (String::new(), Vec::new(), self.actual.volumes.get(&key).and_then(|v| v.plugin.clone())),
        };
        let done = self.done_tx.clone();
        self.tasks.spawn(async move {
            let outcome = op.await;
            let _ = done.send(Finished { key, kind, outcome, spec_name, pods, plugin });
        });
    }

    fn start_attach(&mut self, key: VolumeNode, want: DesiredVolume) {
        let node = key.node.clone();
        let op: OpFuture = match &want.source {
            AttachSource::Csi { driver, handle, pv } => {
                let (client, world) = (self.client.clone(), self.world.clone());
                let (driver, handle, pv) = (driver.clone(), handle.clone(), pv.clone());
                Box::pin(async move { operations::attach_csi(client, world, &driver, &handle, &pv, &node).await })
            }
            AttachSource::Plugin { plugin, spec } => {
                Box::pin(operations::attach_plugin(plugin.clone(), spec.clone(), node))
            }
            AttachSource::PluginMissing { .. } => return self.ops.finish(&key),
        };
        self.spawn(key, OpKind::Attach, Some(&want), op);
    }

    fn start_detach(&mut self, key: VolumeNode) {
        let node = key.node.clone();
        let unique = key.volume.clone();
        let op: OpFuture = if names::split_csi_unique_name(&unique).is_some() {
            let (client, world) = (self.client.clone(), self.world.clone());
            Box::pin(async move { operations::detach_csi(client, world, &unique, &node).await })
        } else {
            let hint = self.actual.volumes.get(&key).and_then(|v| v.plugin.clone());
            Box::pin(operations::detach_plugin(self.registry.clone(), hint, unique, node))
        };
        self.spawn(key, OpKind::Detach, None, op);
    }

    /// Asks attachable plugins whether the volumes they attached still are (the periodic sync).
    fn verify_attached(&mut self, desired: &DesiredState) {
        let checks: Vec<(VolumeNode, DesiredVolume)> = self
            .actual
            .volumes
            .iter()
            .filter(|(_, v)| matches!(v.state, AttachState::Attached { .. }))
            .filter_map(|(key, _)| desired.volumes.get(key).map(|w| (key.clone(), w.clone())))
            .filter(|(key, w)| matches!(w.source, AttachSource::Plugin { .. }) && !self.ops.is_running(key, false))
            .collect();
        for (key, want) in checks {
            let AttachSource::Plugin { plugin, spec } = &want.source else { continue };
            let op: OpFuture = Box::pin(operations::verify_plugin(plugin.clone(), spec.clone(), key.node.clone()));
            self.ops.start(&key, false);
            self.spawn(key, OpKind::Verify, Some(&want), op);
        }
    }

    /// Applies a finished operation.
    fn finish(&mut self, done: Finished) {
        let Finished { key, kind, outcome, spec_name, pods, plugin } = done;
        tracing::trace!(volume = %key, ?kind, ?outcome, "operation finished");
        let now = Instant::now();
        let outcome = self.check_wait(&key, outcome, now);
        if matches!(outcome, Outcome::AttachWaiting | Outcome::DetachWaiting) {
            self.ops.park(&key);
        } else {
            self.ops.finish(&key);
        }
        match outcome {
            Outcome::Attached { device_path } => {
                let volume = self.actual.volumes.entry(key.clone()).or_insert_with(new_uncertain);
                volume.state = AttachState::Attached { device_path };
                volume.reported = true;
                volume.waiting_since = None;
                volume.plugin = plugin.or(volume.plugin.take());
                self.actual.mark_dirty(&key.node);
                self.ops.succeeded(&key);
                tracing::info!(volume = %key, "AttachVolume.Attach succeeded");
                // kubelet's message, trailing space included (`generateVolumeMsg` with an empty suffix).
                let message = format!("AttachVolume.Attach succeeded for volume {spec_name:?} ");
                self.event_to(&pods, EventType::Normal, "SuccessfulAttachVolume", &message);
            }
            Outcome::AttachWaiting => {
                let volume = self.actual.volumes.entry(key.clone()).or_insert_with(new_uncertain);
                volume.state = AttachState::Uncertain;
                volume.plugin = plugin.or(volume.plugin.take());
            }
            Outcome::AttachFailed(error) => {
                let volume = self.actual.volumes.entry(key.clone()).or_insert_with(new_uncertain);
                volume.state = AttachState::Uncertain;
                volume.waiting_since = None;
                volume.plugin = plugin.or(volume.plugin.take());
                let failures = self.ops.failed(&key, &self.config.backoff, now);
                tracing::warn!(volume = %key, failures, error = %error, "AttachVolume.Attach failed");
                let message = format!("AttachVolume.Attach failed for volume {spec_name:?} : {error}");
                self.event_to(&pods, EventType::Warning, "FailedAttachVolume", &message);
            }
            Outcome::Detached => {
                self.actual.volumes.remove(&key);
                self.actual.mark_dirty(&key.node);
                self.ops.succeeded(&key);
                tracing::info!(volume = %key, "DetachVolume.Detach succeeded");
            }
            Outcome::DetachWaiting => {}
            Outcome::DetachFailed(error) => {
                if let Some(volume) = self.actual.volumes.get_mut(&key) {
                    volume.state = AttachState::Uncertain;
                    volume.reported = false;
                    volume.waiting_since = None;
                }
                let failures = self.ops.failed(&key, &self.config.backoff, now);
                tracing::warn!(volume = %key, failures, error = %error, "DetachVolume.Detach failed");
            }
            Outcome::NotAttached => {
                if self.actual.volumes.get(&key).is_some_and(|v| matches!(v.state, AttachState::Attached { .. })) {
                    tracing::warn!(volume = %key, "the volume is no longer attached; marking it detached");
                    self.actual.volumes.remove(&key);
                    self.actual.mark_dirty(&key.node);
                }
            }
            Outcome::Verified => {}
        }
    }

    /// Turns a CSI attach or detach that has waited on the attacher for longer than `csi_timeout` into a
    /// failure (kube's attacher gives up after two minutes, and the operation is retried with backoff).
    fn check_wait(&mut self, key: &VolumeNode, outcome: Outcome, now: Instant) -> Outcome {
        let operation = match outcome {
            Outcome::AttachWaiting => "attach",
            Outcome::DetachWaiting => "detach",
            other => return other,
        };
        let Some(volume) = self.actual.volumes.get_mut(key) else {
            // An attach that has just created its VolumeAttachment: start counting.
            if operation == "attach" {
                let mut volume = new_uncertain();
                volume.waiting_since = Some(now);
                self.actual.volumes.insert(key.clone(), volume);
                self.note_wait_end(now + self.config.csi_timeout);
            }
            return outcome;
        };
        let since = *volume.waiting_since.get_or_insert(now);
        let end = since + self.config.csi_timeout;
        if now < end {
            self.note_wait_end(end);
            return outcome;
        }
        volume.waiting_since = None;
        let (driver, handle) = names::split_csi_unique_name(&key.volume).unwrap_or(("unknown", &key.volume));
        let error = OperationError::Timeout { driver: driver.to_string(), operation, handle: handle.to_string() };
        if operation == "attach" {
            Outcome::AttachFailed(error)
        } else {
            Outcome::DetachFailed(error)
        }
    }

    fn note_wait_end(&mut self, end: Instant) {
        self.waits_end = Some(self.waits_end.map_or(end, |w| w.min(end)));
    }

    /// `Multi-Attach error` events (`reportMultiAttachError`): each pod learns which pods of its own namespace
    /// hold the volume elsewhere, and only how many in other namespaces.
    fn report_multi_attach(&self, desired: &DesiredState, key: &VolumeNode, others: &[String]) {
        let Some(want) = desired.volumes.get(key) else { return };
        let holders = desired.pods_on_nodes(&key.volume, others);
        tracing::info!(volume = %key, attached_to = ?others, "Multi-Attach error: volume is already exclusively attached");
        for pod in &want.pods {
            let detail = multi_attach_detail(pod.namespace().as_deref(), &holders);
            let message = format!("Multi-Attach error for volume {:?} {detail}", want.spec_name);
            self.recorder.event(&**pod, EventType::Warning, "FailedAttachVolume", message, COMPONENT);
        }
    }

    fn event_to(&self, pods: &[Arc<Pod>], kind: EventType, reason: &'static str, message: &str) {
        for pod in pods {
            self.recorder.event(&**pod, kind, reason, message, COMPONENT);
        }
    }
}

/// What a Multi-Attach error tells a pod in `namespace`: the names of the pods of its own namespace that hold
/// the volume elsewhere, and only how many in other namespaces.
pub fn multi_attach_detail(namespace: Option<&str>, holders: &[Arc<Pod>]) -> String {
    if holders.is_empty() {
        return "Volume is already exclusively attached to one node and can't be attached to another".to_string();
    }
    let local: Vec<String> =
        holders.iter().filter(|h| h.namespace().as_deref() == namespace).map(|h| h.name_any()).collect();
    match (local.is_empty(), holders.len() - local.len()) {
        (false, 0) => format!("Volume is already used by pod(s) {}", local.join(", ")),
        (false, n) => {
            format!("Volume is already used by pod(s) {} and {n} pod(s) in different namespaces", local.join(", "))
        }
        (true, n) => format!("Volume is already used by {n} pod(s) in different namespaces"),
    }
}

type OpFuture = futures::future::BoxFuture<'static, Outcome>;

fn new_uncertain() -> super::actual::AttachedVolume {
    super::actual::AttachedVolume {
        state: AttachState::Uncertain,
        mounted_by_node: true,
        detach_requested_at: None,
        waiting_since: None,
        reported: false,
        plugin: None,
    }
}

/// Keeps one kind's cache equal to the API: replaces it on every (re)list, applies every change, and wakes
/// the loop. Reports `what` once the first list is in.
pub(super) async fn watch<K>(
    client: Client,
    world: Arc<World>,
    cache: fn(&World) -> &Cache<K>,
    what: &'static str,
    wake: Arc<Notify>,
    ready: mpsc::Sender<&'static str>,
) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let api: Api<K> = Api::all(client);
    let stream = watcher::watcher(api, watcher::Config::default().page_size(2000)).default_backoff();
    let mut stream: std::pin::Pin<Box<dyn Stream<Item = Result<Event<K>, watcher::Error>> + Send>> = Box::pin(stream);
    let mut buffer: Vec<K> = Vec::new();
    let mut first = true;
    loop {
        match stream.try_next().await {
            Ok(Some(Event::Init)) => buffer.clear(),
            Ok(Some(Event::InitApply(obj))) => buffer.push(obj),
            Ok(Some(Event::InitDone)) => {
                cache(&world).replace_all(std::mem::take(&mut buffer));
                if first {
                    first = false;
                    let _ = ready.send(what).await;
                }
                wake.notify_one();
            }
            Ok(Some(Event::Apply(obj))) => {
                cache(&world).apply(obj);
                wake.notify_one();
            }
            Ok(Some(Event::Delete(obj))) => {
                cache(&world).delete(&crate::cache::object_key(&obj));
                wake.notify_one();
            }
            Ok(None) => return Err(Error::Watch { what, message: "stream ended".into() }),
            Err(e) => tracing::warn!(what, error = %e, "watch failed; the watcher retries with backoff"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvol_volume::{AttachablePlugin, Mounter, PodRef, Unmounter, VolumeHost, VolumePlugin, VolumeSpec};

    /// An attachable plugin that only records its detaches.
    struct RecordingDetach(Arc<parking_lot::Mutex<Vec<String>>>);

    impl VolumePlugin for RecordingDetach {
        fn name(&self) -> &str {
            "kvol.test/fake"
        }
        fn can_support(&self, _: &VolumeSpec) -> bool {
            false
        }
        fn volume_name(&self, spec: &VolumeSpec) -> kvol_volume::Result<String> {
            Ok(spec.name().to_string())
        }
        fn new_mounter(
            &self,
            _: &VolumeSpec,
            _: &PodRef,
            _: &Arc<dyn VolumeHost>,
        ) -> kvol_volume::Result<Box<dyn Mounter>> {
            Err(kvol_volume::Error::NoPlugin("the controller never mounts".into()))
        }
        fn new_unmounter(&self, _: &str, _: &str, _: &Arc<dyn VolumeHost>) -> kvol_volume::Result<Box<dyn Unmounter>> {
            Err(kvol_volume::Error::NoPlugin("the controller never unmounts".into()))
        }
        fn as_attachable(&self) -> Option<&dyn AttachablePlugin> {
            Some(self)
        }
    }

    impl AttachablePlugin for RecordingDetach {
        fn is_attachable(&self, _: &VolumeSpec) -> bool {
            true
        }
        fn volume_name_for_attach(&self, spec: &VolumeSpec) -> kvol_volume::Result<String> {
            Ok(spec.name().to_string())
        }
        fn attach(&self, spec: &VolumeSpec, _: &str) -> kvol_volume::Result<String> {
            Ok(format!("/dev/fake-{}", spec.name()))
        }
        fn is_attached(&self, _: &VolumeSpec, _: &str) -> kvol_volume::Result<bool> {
            Ok(true)
        }
        fn detach(&self, volume: &str, node: &str) -> kvol_volume::Result<()> {
            self.0.lock().push(format!("detach {volume} {node}"));
            Ok(())
        }
    }

    /// Regression (issue 11): kubelet never has a device detached before its UnmountDevice succeeded, and the
    /// controller only knows that from the node's `volumesInUse`. It decided from its node cache, which a
    /// watch keeps only eventually current: a node that had just reported the volume in use (its agent then
    /// mounts it) could still have it detached. As kube's `verifyVolumeIsSafeToDetach` does, the controller
    /// now reads the node from the API server before it detaches, and waits while the node lists the volume.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_volume_the_nodes_latest_status_reports_in_use_is_not_detached_from_a_stale_cache() {
        use kube::api::PostParams;
        let dir = tempfile::tempdir().unwrap();
        let config = kvol_apiserver::ServerConfig::new(dir.path().join("data"), "127.0.0.1:0".parse().unwrap());
        let kubeconfig = config.kubeconfig_path();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            kvol_apiserver::run(config, async {
                let _ = stopped.await;
            })
            .await
            .expect("kvol server")
        });
        while !kubeconfig.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
        let client = Client::try_from(config).unwrap();

        // The node as the API server has it: the volume attached and, as its agent has just written, in use.
        let unique = "flexvolume-kvol.test/fake/pv1";
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": "n1"}})).unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
        let status = serde_json::json!({"status": {
            "volumesAttached": [{"name": unique, "devicePath": "/dev/fake-pv1"}],
            "volumesInUse": [unique],
        }});
        let fresh = nodes.patch_status("n1", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
        // The controller's cache has not seen the in-use write yet, and no pod wants the volume.
        let mut stale = fresh.clone();
        stale.status.as_mut().unwrap().volumes_in_use = None;
        let world = Arc::new(World::default());
        world.nodes.apply(stale);
        let detaches = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let plugin: Arc<dyn VolumePlugin> = Arc::new(RecordingDetach(detaches.clone()));
        let registry = PluginRegistry::with([plugin]).unwrap();
        let mut controller =
            Controller::new(client, world, registry, AttachDetachConfig::default(), Arc::new(Notify::new()));

        controller.reconcile(false).await;
        while controller.tasks.join_next().await.is_some() {}
        assert_eq!(*detaches.lock(), Vec::<String>::new(), "detached while the node reports the volume in use");
        // The next pass reports it attached again (it left volumesAttached before the check) and keeps waiting.
        controller.reconcile(false).await;
        while controller.tasks.join_next().await.is_some() {}
        assert_eq!(*detaches.lock(), Vec::<String>::new());
        let attached =
            nodes.get_status("n1").await.unwrap().status.and_then(|s| s.volumes_attached).unwrap_or_default();
        assert_eq!(attached.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), [unique], "still reported attached");
        let _ = stop.send(());
        server.await.unwrap();
    }

    fn pod(namespace: &str, name: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({"metadata": {"namespace": namespace, "name": name}})).unwrap(),
        )
    }

    #[test]
    fn a_multi_attach_error_names_only_the_pods_of_the_same_namespace() {
        let holders = [pod("a", "web-0"), pod("a", "web-1"), pod("b", "db-0")];
        assert_eq!(
            multi_attach_detail(Some("a"), &holders),
            "Volume is already used by pod(s) web-0, web-1 and 1 pod(s) in different namespaces"
        );
        assert_eq!(multi_attach_detail(Some("a"), &holders[..1]), "Volume is already used by pod(s) web-0");
        assert_eq!(
            multi_attach_detail(Some("c"), &holders),
            "Volume is already used by 3 pod(s) in different namespaces"
        );
        assert_eq!(
            multi_attach_detail(Some("a"), &[]),
            "Volume is already exclusively attached to one node and can't be attached to another"
        );
    }
}
