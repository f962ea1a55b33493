//! The attach/detach controller end to end against a real `kvol server` (in-process, no controllers, no node
//! agent): the test plays the node agent (`status.volumesInUse`) and the CSI attacher (VolumeAttachment
//! `status.attached`), and a recording FlexVolume plugin stands in for a driver.

mod util;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{CSIDriver, VolumeAttachment};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kvol_controller::attach_detach::{names, run_attach_detach, AttachDetachConfig};
use kvol_volume::{AttachablePlugin, Mounter, PluginRegistry, PodRef, Unmounter, VolumeHost, VolumePlugin, VolumeSpec};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use util::Cluster;

const WAIT: Duration = Duration::from_secs(30);
/// How long "nothing happens" is watched for: many of the controller's 100 ms passes.
const QUIET: Duration = Duration::from_millis(1500);

/// A running controller and the way to stop it.
struct Running {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

fn start(client: &Client, registry: PluginRegistry) -> Running {
    start_with(client, registry, AttachDetachConfig::default())
}

fn start_with(client: &Client, registry: PluginRegistry, config: AttachDetachConfig) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let client = client.clone();
    let handle = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        run_attach_detach(client, registry, config, shutdown).await.expect("attach/detach");
    });
    Running { stop, handle }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.handle.await.expect("controller task");
    }
}

async fn create<K>(api: Api<K>, value: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).expect("object");
    api.create(&PostParams::default(), &object).await.expect("create")
}

/// A node, a claim bound to `pv` (whose source is `source`), and a pod using the claim on the node.
async fn bound_pod(client: &Client, node: &str, pv: &str, source: Value) {
    create(Api::<Node>::all(client.clone()), json!({"metadata": {"name": node}})).await;
    let claim: PersistentVolumeClaim = create(
        Api::namespaced(client.clone(), "default"),
        json!({
            "metadata": {"name": "c1", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": pv},
        }),
    )
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let bound = json!({"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}});
    claims.patch_status("c1", &PatchParams::default(), &Patch::Merge(&bound)).await.expect("claim status");
    let mut spec = json!({
        "capacity": {"storage": "1Gi"},
        "accessModes": ["ReadWriteOnce"],
        "claimRef": {"namespace": "default", "name": "c1", "uid": claim.metadata.uid},
    });
    for (k, v) in source.as_object().unwrap() {
        spec[k] = v.clone();
    }
    create(Api::<PersistentVolume>::all(client.clone()), json!({"metadata": {"name": pv}, "spec": spec})).await;
    create(
        Api::<Pod>::namespaced(client.clone(), "default"),
        json!({
            "metadata": {"name": "p1", "namespace": "default"},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "c1"}}],
            },
        }),
    )
    .await;
}

async fn volumes_attached(client: &Client, node: &str) -> Vec<(String, String)> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.get_status(node).await.expect("node");
    let list = node.status.and_then(|s| s.volumes_attached).unwrap_or_default();
    list.into_iter().map(|v| (v.name, v.device_path)).collect()
}

/// Plays the node agent: sets `status.volumesInUse`.
async fn set_in_use(client: &Client, node: &str, volumes: &[&str]) {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({"status": {"volumesInUse": if volumes.is_empty() { Value::Null } else { json!(volumes) }}});
    nodes.patch_status(node, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("volumesInUse");
}

async fn delete_pod(client: &Client) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.delete("p1", &DeleteParams::default().grace_period(0)).await.expect("delete pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_csi_volume_is_attached_through_a_volume_attachment_and_detached_once_unmounted() {
    let cluster = Cluster::server().await;
    let client = cluster.client.clone();
    create(
        Api::<CSIDriver>::all(client.clone()),
        json!({"metadata": {"name": "csi.kvol.io"}, "spec": {"attachRequired": true}}),
    )
    .await;
    bound_pod(&client, "n1", "pv1", json!({"csi": {"driver": "csi.kvol.io", "volumeHandle": "vol-1"}})).await;
    let controller = start(&client, PluginRegistry::new());

    let unique = "kubernetes.io/csi/csi.kvol.io^vol-1";
    let name = names::attachment_name("vol-1", "csi.kvol.io", "n1");
    assert_eq!(name.len(), 68);
    let attachments: Api<VolumeAttachment> = Api::all(client.clone());
    let va = cluster
        .wait_for("the VolumeAttachment", WAIT, || {
            let api = attachments.clone();
            let name = name.clone();
            async move { api.get_opt(&name).await.ok().flatten() }
        })
        .await;
    assert_eq!(va.spec.attacher, "csi.kvol.io");
    assert_eq!(va.spec.node_name, "n1");
    assert_eq!(va.spec.source.persistent_volume_name.as_deref(), Some("pv1"));
    tokio::time::sleep(QUIET).await;
    assert!(volumes_attached(&client, "n1").await.is_empty(), "not reported before the attacher attached it");

    // The attacher attaches it.
    let attached = json!({"status": {"attached": true}});
    attachments.patch_status(&name, &PatchParams::default(), &Patch::Merge(&attached)).await.expect("attach");
    cluster
        .wait_for("volumesAttached to list the volume", WAIT, || {
            let client = client.clone();
            async move {
                (volumes_attached(&client, "n1").await == vec![(unique.to_string(), String::new())]).then_some(())
            }
        })
        .await;
    let events = cluster
        .wait_for("the SuccessfulAttachVolume event", WAIT, || async {
            let events = cluster.events_for("p1").await;
            events.iter().any(|(_, reason, _, _)| reason == "SuccessfulAttachVolume").then_some(events)
        })
        .await;
    let (kind, _, message, _) = events.iter().find(|e| e.1 == "SuccessfulAttachVolume").unwrap();
    assert_eq!(kind, "Normal");
    assert_eq!(message.trim_end(), "AttachVolume.Attach succeeded for volume \"pv1\"");

    // The node mounts it; the pod goes; nothing is detached while the node uses it.
    set_in_use(&client, "n1", &[unique]).await;
    delete_pod(&client).await;
    tokio::time::sleep(QUIET).await;
    assert!(attachments.get_opt(&name).await.unwrap().is_some(), "detached while in use");
    assert_eq!(volumes_attached(&client, "n1").await.len(), 1);

    // Unmounted: off the node's status at once; the VolumeAttachment is deleted and stays until its attacher
    // (here: the test) has detached it and removed its finalizer.
    let finalizer = json!({"metadata": {"finalizers": ["external-attacher/csi-kvol-io"]}});
    attachments.patch(&name, &PatchParams::default(), &Patch::Merge(&finalizer)).await.expect("finalizer");
    set_in_use(&client, "n1", &[]).await;
    cluster
        .wait_for("volumesAttached to be empty", WAIT, || {
            let client = client.clone();
            async move { volumes_attached(&client, "n1").await.is_empty().then_some(()) }
        })
        .await;
    cluster
        .wait_for("the VolumeAttachment to be deleted", WAIT, || {
            let api = attachments.clone();
            let name = name.clone();
            async move { api.get_opt(&name).await.ok().flatten().filter(|va| va.metadata.deletion_timestamp.is_some()) }
        })
        .await;
    let no_finalizer = json!({"metadata": {"finalizers": null}});
    attachments.patch(&name, &PatchParams::default(), &Patch::Merge(&no_finalizer)).await.expect("finalizer off");
    cluster
        .wait_for("the VolumeAttachment to go", WAIT, || {
            let api = attachments.clone();
            let name = name.clone();
            async move { matches!(api.get_opt(&name).await, Ok(None)).then_some(()) }
        })
        .await;
    assert!(volumes_attached(&client, "n1").await.is_empty());
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attacher_that_never_answers_times_the_attach_out() {
    let cluster = Cluster::server().await;
    let client = cluster.client.clone();
    bound_pod(&client, "n1", "pv1", json!({"csi": {"driver": "csi.kvol.io", "volumeHandle": "vol-3"}})).await;
    let config = AttachDetachConfig { csi_timeout: Duration::from_secs(1), ..Default::default() };
    let controller = start_with(&client, PluginRegistry::new(), config);
    let message = cluster
        .wait_for("the FailedAttachVolume event", WAIT, || async {
            let events = cluster.events_for("p1").await;
            events.into_iter().find(|e| e.1 == "FailedAttachVolume").map(|e| e.2)
        })
        .await;
    assert_eq!(
        message,
        "AttachVolume.Attach failed for volume \"pv1\" : timed out waiting for external-attacher of csi.kvol.io CSI \
         driver to attach volume vol-3"
    );
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attach_error_of_the_csi_attacher_becomes_a_failed_attach_event() {
    let cluster = Cluster::server().await;
    let client = cluster.client.clone();
    // No CSIDriver object: kubelet then requires the attach, and so does the controller.
    bound_pod(&client, "n1", "pv1", json!({"csi": {"driver": "csi.kvol.io", "volumeHandle": "vol-9"}})).await;
    let controller = start(&client, PluginRegistry::new());
    let name = names::attachment_name("vol-9", "csi.kvol.io", "n1");
    let attachments: Api<VolumeAttachment> = Api::all(client.clone());
    cluster
        .wait_for("the VolumeAttachment", WAIT, || {
            let api = attachments.clone();
            let name = name.clone();
            async move { api.get_opt(&name).await.ok().flatten() }
        })
        .await;
    let failed = json!({"status": {"attached": false, "attachError": {"message": "rpc error: code = NotFound desc = no such disk"}}});
    attachments.patch_status(&name, &PatchParams::default(), &Patch::Merge(&failed)).await.expect("attach error");
    let message = cluster
        .wait_for("the FailedAttachVolume event", WAIT, || async {
            let events = cluster.events_for("p1").await;
            events.into_iter().find(|e| e.1 == "FailedAttachVolume" && e.0 == "Warning").map(|e| e.2)
        })
        .await;
    assert_eq!(
        message,
        "AttachVolume.Attach failed for volume \"pv1\" : rpc error: code = NotFound desc = no such disk"
    );
    assert!(volumes_attached(&client, "n1").await.is_empty());
    controller.stop().await;
}

/// A FlexVolume driver `kvol.test/fake` that attaches everything and records each call.
struct RecordingFlex {
    calls: Arc<Mutex<Vec<String>>>,
}

const FLEX_DRIVER: &str = "kvol.test/fake";

fn flex_source(spec: &VolumeSpec) -> Option<&str> {
    match spec {
        VolumeSpec::Inline(v) => v.flex_volume.as_ref().map(|f| f.driver.as_str()),
        VolumeSpec::Persistent { pv, .. } => {
            pv.spec.as_ref().and_then(|s| s.flex_volume.as_ref()).map(|f| f.driver.as_str())
        }
    }
}

impl VolumePlugin for RecordingFlex {
    fn name(&self) -> &str {
        FLEX_DRIVER
    }
    fn can_support(&self, spec: &VolumeSpec) -> bool {
        flex_source(spec) == Some(FLEX_DRIVER)
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

impl AttachablePlugin for RecordingFlex {
    fn is_attachable(&self, _: &VolumeSpec) -> bool {
        true
    }
    fn volume_name_for_attach(&self, spec: &VolumeSpec) -> kvol_volume::Result<String> {
        Ok(spec.name().to_string())
    }
    fn attach(&self, spec: &VolumeSpec, node: &str) -> kvol_volume::Result<String> {
        self.calls.lock().push(format!("attach {} {node}", spec.name()));
        Ok(format!("/dev/fake-{}", spec.name()))
    }
    fn is_attached(&self, _: &VolumeSpec, _: &str) -> kvol_volume::Result<bool> {
        Ok(true)
    }
    fn detach(&self, volume: &str, node: &str) -> kvol_volume::Result<()> {
        self.calls.lock().push(format!("detach {volume} {node}"));
        Ok(())
    }
}

fn recording_registry() -> (PluginRegistry, Arc<Mutex<Vec<String>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let plugin: Arc<dyn VolumePlugin> = Arc::new(RecordingFlex { calls: calls.clone() });
    (PluginRegistry::with([plugin]).expect("registry"), calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flex_volume_is_attached_by_its_driver_and_a_restart_neither_attaches_nor_forgets_it() {
    let cluster = Cluster::server().await;
    let client = cluster.client.clone();
    bound_pod(&client, "n1", "pv-flex", json!({"flexVolume": {"driver": FLEX_DRIVER}})).await;
    let unique = "flexvolume-kvol.test/fake/pv-flex";
    let want = vec![(unique.to_string(), "/dev/fake-pv-flex".to_string())];

    let (registry, calls) = recording_registry();
    let controller = start(&client, registry);
    cluster
        .wait_for("volumesAttached to list the flex volume", WAIT, || {
            let (client, want) = (client.clone(), want.clone());
            async move { (volumes_attached(&client, "n1").await == want).then_some(()) }
        })
        .await;
    assert_eq!(*calls.lock(), vec!["attach pv-flex n1"]);
    controller.stop().await;

    // A new controller takes the attachment over from the node's status: no second attach, no detach.
    let (registry, calls) = recording_registry();
    let controller = start(&client, registry);
    tokio::time::sleep(QUIET).await;
    assert!(calls.lock().is_empty(), "after a restart: {:?}", calls.lock());
    assert_eq!(volumes_attached(&client, "n1").await, want);

    // In use on the node, the pod goes: the volume stays.
    set_in_use(&client, "n1", &[unique]).await;
    delete_pod(&client).await;
    tokio::time::sleep(QUIET).await;
    assert!(calls.lock().is_empty(), "detached while in use: {:?}", calls.lock());
    assert_eq!(volumes_attached(&client, "n1").await, want);
    controller.stop().await;

    // Unmounted while no controller runs: the next one detaches it knowing nothing but the unique name.
    set_in_use(&client, "n1", &[]).await;
    let (registry, calls) = recording_registry();
    let controller = start(&client, registry);
    cluster
        .wait_for("volumesAttached to be empty", WAIT, || {
            let client = client.clone();
            async move { volumes_attached(&client, "n1").await.is_empty().then_some(()) }
        })
        .await;
    cluster
        .wait_for("the detach", WAIT, || {
            let calls = calls.clone();
            async move { (!calls.lock().is_empty()).then_some(()) }
        })
        .await;
    assert_eq!(*calls.lock(), vec!["detach pv-flex n1"]);
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_controllers_starts_the_csi_attach_detach_controller_when_configured() {
    let mut cluster = Cluster::server().await;
    let client = cluster.client.clone();
    bound_pod(&client, "n1", "pv1", json!({"csi": {"driver": "csi.kvol.io", "volumeHandle": "vol-2"}})).await;
    cluster.start_controllers(|c| c.attach_detach = Some(AttachDetachConfig::default()), None);
    cluster.wait_ready().await;
    let name = names::attachment_name("vol-2", "csi.kvol.io", "n1");
    let attachments: Api<VolumeAttachment> = Api::all(client.clone());
    let va = cluster
        .wait_for("the VolumeAttachment", WAIT, || {
            let api = attachments.clone();
            let name = name.clone();
            async move { api.get_opt(&name).await.ok().flatten() }
        })
        .await;
    assert_eq!(va.spec.source.persistent_volume_name.as_deref(), Some("pv1"));
}

/// A FlexVolume driver script that attaches, logging its argv.
const DRIVER_SCRIPT: &str = r#"#!/bin/sh
echo "$@" >> "$(dirname "$0")/calls.log"
case "$1" in
  init) echo '{"status": "Success", "capabilities": {"attach": true}}' ;;
  attach) echo '{"status": "Success", "device": "/dev/kvol-test0"}' ;;
  detach|isattached) echo '{"status": "Success", "attached": true}' ;;
  *) echo '{"status": "Not supported"}' ;;
esac
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_probed_flex_driver_attaches_an_inline_volume_and_detaches_it_when_the_pod_goes() {
    use kvol_volume::plugins::flexvolume::{FlexConfig, FlexVolumeProber};
    use std::os::unix::fs::PermissionsExt;

    let cluster = Cluster::server().await;
    let client = cluster.client.clone();
    let plugin_dir = cluster.path().join("flex");
    let driver_dir = plugin_dir.join("kvol.test~script");
    std::fs::create_dir_all(&driver_dir).unwrap();
    let exe = driver_dir.join("script");
    std::fs::write(&exe, DRIVER_SCRIPT).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let prober = FlexVolumeProber::new(FlexConfig::new(&plugin_dir), None).await.expect("probe");
    assert_eq!(prober.drivers(), vec!["kvol.test/script"]);
    let mut registry = PluginRegistry::new();
    registry.add_source(prober);

    create(Api::<Node>::all(client.clone()), json!({"metadata": {"name": "n1"}})).await;
    create(
        Api::<Pod>::namespaced(client.clone(), "default"),
        json!({
            "metadata": {"name": "p1", "namespace": "default"},
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "disk", "flexVolume": {"driver": "kvol.test/script", "options": {"size": "1"}}}],
            },
        }),
    )
    .await;
    let controller = start(&client, registry);
    let want = vec![("flexvolume-kvol.test/script/disk".to_string(), "/dev/kvol-test0".to_string())];
    cluster
        .wait_for("volumesAttached to list the flex volume", WAIT, || {
            let (client, want) = (client.clone(), want.clone());
            async move { (volumes_attached(&client, "n1").await == want).then_some(()) }
        })
        .await;
    let log = || std::fs::read_to_string(driver_dir.join("calls.log")).unwrap_or_default();
    let attach = log().lines().find(|l| l.starts_with("attach ")).map(str::to_string).expect("attach call");
    assert!(attach.ends_with(" n1"), "attach <json> <node>: {attach}");
    assert!(attach.contains("\"kubernetes.io/pvOrVolumeName\":\"disk\""), "{attach}");

    delete_pod(&client).await;
    cluster
        .wait_for("the detach call", WAIT, || async { log().lines().any(|l| l == "detach disk n1").then_some(()) })
        .await;
    cluster
        .wait_for("volumesAttached to be empty", WAIT, || {
            let client = client.clone();
            async move { volumes_attached(&client, "n1").await.is_empty().then_some(()) }
        })
        .await;
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_node_volume_moves_to_another_node_only_after_its_detach() {
    let cluster = Cluster::server().await;
    let client = cluster.client.clone();
    bound_pod(&client, "n1", "pv1", json!({"csi": {"driver": "csi.kvol.io", "volumeHandle": "vol-4"}})).await;
    let controller = start(&client, PluginRegistry::new());
    let attachments: Api<VolumeAttachment> = Api::all(client.clone());
    let on_n1 = names::attachment_name("vol-4", "csi.kvol.io", "n1");
    let on_n2 = names::attachment_name("vol-4", "csi.kvol.io", "n2");
    let exists = |name: String| {
        let api = attachments.clone();
        async move { api.get_opt(&name).await.ok().flatten() }
    };
    cluster.wait_for("the attachment to n1", WAIT, || exists(on_n1.clone())).await;
    let attached = json!({"status": {"attached": true}});
    attachments.patch_status(&on_n1, &PatchParams::default(), &Patch::Merge(&attached)).await.expect("attach");

    // A second pod on n2 wants the ReadWriteOnce volume.
    create(Api::<Node>::all(client.clone()), json!({"metadata": {"name": "n2"}})).await;
    create(
        Api::<Pod>::namespaced(client.clone(), "default"),
        json!({
            "metadata": {"name": "p2", "namespace": "default"},
            "spec": {
                "nodeName": "n2",
                "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "c1"}}],
            },
        }),
    )
    .await;
    let message = cluster
        .wait_for("the Multi-Attach event", WAIT, || async {
            cluster.events_for("p2").await.into_iter().find(|e| e.1 == "FailedAttachVolume").map(|e| e.2)
        })
        .await;
    assert_eq!(message, "Multi-Attach error for volume \"pv1\" Volume is already used by pod(s) p1");
    tokio::time::sleep(QUIET).await;
    assert!(exists(on_n2.clone()).await.is_none(), "attached to a second node");

    // The first pod goes (n1 has nothing mounted): detached from n1, then attached to n2.
    delete_pod(&client).await;
    cluster.wait_for("the attachment to n2", WAIT, || exists(on_n2.clone())).await;
    assert!(exists(on_n1.clone()).await.is_none(), "the attachment to n1 is gone first");
    controller.stop().await;
}
