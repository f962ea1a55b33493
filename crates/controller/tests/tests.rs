//! The controllers end to end: `kvol server` in-process, the controllers as API clients, objects made with
//! kubectl (the seeds' YAML where the seeds have it), and the outcome read back through the API.

mod util;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use kvol_controller::{ProvisionOptions, ProvisionedVolume, Provisioner, ProvisionerRegistry};
use kvol_runtime::Backoff;
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::{seed, Cluster, NODE};

const WAIT: Duration = Duration::from_secs(60);

fn pvs(c: &Cluster) -> Api<PersistentVolume> {
    Api::all(c.client.clone())
}

fn pvcs(c: &Cluster) -> Api<PersistentVolumeClaim> {
    Api::namespaced(c.client.clone(), "default")
}

fn pv_phase(pv: &PersistentVolume) -> &str {
    pv.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn pvc_phase(pvc: &PersistentVolumeClaim) -> &str {
    pvc.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

async fn wait_pvc_phase(c: &Cluster, name: &str, phase: &str) -> PersistentVolumeClaim {
    let api = pvcs(c);
    c.wait_for(&format!("claim {name} {phase}"), WAIT, || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok().flatten().filter(|p| pvc_phase(p) == phase) }
    })
    .await
}

async fn wait_pv_phase(c: &Cluster, name: &str, phase: &str) -> PersistentVolume {
    let api = pvs(c);
    c.wait_for(&format!("volume {name} {phase}"), WAIT, || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok().flatten().filter(|p| pv_phase(p) == phase) }
    })
    .await
}

async fn wait_pv_gone(c: &Cluster, name: &str) {
    let api = pvs(c);
    c.wait_for(&format!("volume {name} deleted"), WAIT, || {
        let api = api.clone();
        async move { matches!(api.get_opt(name).await, Ok(None)).then_some(()) }
    })
    .await
}

async fn wait_event(c: &Cluster, object: &str, reason: &str) -> (String, String, String, i32) {
    c.wait_for(&format!("event {reason} on {object}"), WAIT, || async {
        c.events_for(object).await.into_iter().find(|e| e.1 == reason)
    })
    .await
}

fn local_path_class(name: &str, policy: &str, mode: &str, default: bool) -> String {
    format!(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: {name}\n  annotations:\n    \
         storageclass.kubernetes.io/is-default-class: \"{default}\"\nprovisioner: kvol.io/local-path\n\
         reclaimPolicy: {policy}\nvolumeBindingMode: {mode}\n"
    )
}

fn claim(name: &str, class: Option<&str>, size: &str) -> String {
    let class = class.map(|c| format!("  storageClassName: \"{c}\"\n")).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n  accessModes: [ReadWriteOnce]\n\
         {class}  resources:\n    requests:\n      storage: {size}\n"
    )
}

fn host_path_pv(name: &str, path: &std::path::Path, size: &str, policy: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: {name}\nspec:\n  capacity:\n    storage: {size}\n  \
         accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: {policy}\n  storageClassName: \"\"\n  \
         hostPath:\n    path: {}\n",
        path.display()
    )
}

fn node(name: &str) -> String {
    format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    kubernetes.io/hostname: {name}\n")
}

fn pod(name: &str, claim: &str, node_name: Option<&str>) -> String {
    let node_name = node_name.map(|n| format!("  nodeName: {n}\n")).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{node_name}  containers:\n  - name: c\n    \
         image: busybox\n    volumeMounts:\n    - name: data\n      mountPath: /data\n  volumes:\n  - name: data\n    \
         persistentVolumeClaim:\n      claimName: {claim}\n"
    )
}

/// The seed's PV and PVC (the seed's ReplicationController is left out: kvol serves no RCs).
fn seed_004_pv_and_pvc() -> String {
    let text = seed("004-02-persistentvolume-nfs.yaml");
    let docs: Vec<&str> = text.split("\n---\n").collect();
    format!("{}\n---\n{}\n", docs[0], docs[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_static_nfs_volume_and_claim_become_bound_on_both_sides() {
    let c = Cluster::start().await;
    c.apply(&seed_004_pv_and_pvc());
    let claim = wait_pvc_phase(&c, "nfs", "Bound").await;
    let pv = wait_pv_phase(&c, "nfs", "Bound").await;
    assert_eq!(claim.spec.as_ref().unwrap().volume_name.as_deref(), Some("nfs"));
    let claim_ref = pv.spec.as_ref().unwrap().claim_ref.as_ref().unwrap();
    assert_eq!(claim_ref.name.as_deref(), Some("nfs"));
    assert_eq!(claim_ref.uid, claim.metadata.uid);
    let ann = claim.annotations();
    assert_eq!(ann.get("pv.kubernetes.io/bind-completed").map(String::as_str), Some("yes"));
    assert_eq!(ann.get("pv.kubernetes.io/bound-by-controller").map(String::as_str), Some("yes"));
    assert_eq!(pv.annotations().get("pv.kubernetes.io/bound-by-controller").map(String::as_str), Some("yes"));
    let status = claim.status.as_ref().unwrap();
    assert_eq!(status.capacity.as_ref().unwrap()["storage"].0, "1Mi");
    assert_eq!(status.access_modes.as_deref(), Some(&["ReadWriteMany".to_string()][..]));
    assert!(claim.finalizers().contains(&"kubernetes.io/pvc-protection".to_string()));
    assert!(pv.finalizers().contains(&"kubernetes.io/pv-protection".to_string()));
    let out = c.kubectl(&["get", "pvc", "nfs"], None);
    assert!(out.contains("Bound") && out.contains("nfs"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_of_the_default_class_gets_a_local_path_volume_and_delete_removes_volume_and_data() {
    let c = Cluster::start().await;
    c.apply(&local_path_class("local", "Delete", "Immediate", true));
    c.apply(&claim("data", None, "64Mi"));
    let bound = wait_pvc_phase(&c, "data", "Bound").await;
    let claim_obj = bound;
    assert_eq!(claim_obj.spec.as_ref().unwrap().storage_class_name.as_deref(), Some("local"), "default class admitted");
    assert_eq!(
        claim_obj.annotations().get("volume.kubernetes.io/storage-provisioner").map(String::as_str),
        Some("kvol.io/local-path")
    );
    let pv_name = claim_obj.spec.as_ref().unwrap().volume_name.clone().unwrap();
    assert_eq!(pv_name, format!("pvc-{}", claim_obj.uid().unwrap()));
    let pv = wait_pv_phase(&c, &pv_name, "Bound").await;
    let spec = pv.spec.as_ref().unwrap();
    assert_eq!(pv.annotations().get("pv.kubernetes.io/provisioned-by").map(String::as_str), Some("kvol.io/local-path"));
    assert!(pv.annotations().contains_key("kvol.io/capacity-enforcement"));
    assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(spec.capacity.as_ref().unwrap()["storage"].0, "64Mi");
    let term = &spec.node_affinity.as_ref().unwrap().required.as_ref().unwrap().node_selector_terms[0];
    assert_eq!(term.match_expressions.as_ref().unwrap()[0].values.as_deref(), Some(&[NODE.to_string()][..]));
    let dir = c.local_path.join(&pv_name);
    assert_eq!(spec.host_path.as_ref().unwrap().path, dir.display().to_string());
    std::fs::write(dir.join("file"), "data").unwrap();

    let describe = c.kubectl(&["describe", "pvc", "data"], None);
    assert!(describe.contains("ProvisioningSucceeded"), "{describe}");
    assert!(describe.contains("ExternalProvisioning"), "{describe}");

    pvcs(&c).delete("data", &DeleteParams::default()).await.unwrap();
    wait_pv_gone(&c, &pv_name).await;
    assert!(!dir.exists(), "data removed with the volume");

    // hostPath volumes take no mount options: a class with some fails as Kubernetes' in-tree provisioners do.
    let mut with_options = local_path_class("opts", "Delete", "Immediate", false);
    with_options.push_str("mountOptions: [noatime]\n");
    c.apply(&with_options);
    c.apply(&claim("opts", Some("opts"), "1Mi"));
    let event = wait_event(&c, "opts", "ProvisioningFailed").await;
    assert!(event.2.contains("Mount options are not supported by the provisioner"), "{event:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_leaves_a_released_volume_and_its_data() {
    let c = Cluster::start().await;
    c.apply(&local_path_class("keep", "Retain", "Immediate", false));
    c.apply(&claim("data", Some("keep"), "10Mi"));
    let claim = wait_pvc_phase(&c, "data", "Bound").await;
    let pv_name = claim.spec.as_ref().unwrap().volume_name.clone().unwrap();
    let dir = c.local_path.join(&pv_name);
    std::fs::write(dir.join("file"), "precious").unwrap();
    pvcs(&c).delete("data", &DeleteParams::default()).await.unwrap();
    let pv = wait_pv_phase(&c, &pv_name, "Released").await;
    assert_eq!(pv.spec.as_ref().unwrap().persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pv_phase(&pvs(&c).get(&pv_name).await.unwrap()), "Released");
    assert_eq!(std::fs::read_to_string(dir.join("file")).unwrap(), "precious");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycle_scrubs_a_host_path_volume_and_makes_it_available_again() {
    let c = Cluster::start().await;
    let vol = c.path().join("recycled");
    let outside = c.path().join("outside");
    std::fs::create_dir_all(vol.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(vol.join("sub/deeper/file"), "x").unwrap();
    std::fs::write(vol.join(".hidden"), "x").unwrap();
    std::fs::write(outside.join("keep"), "keep").unwrap();
    std::os::unix::fs::symlink(&outside, vol.join("escape")).unwrap();
    c.apply(&host_path_pv("recycle-me", &vol, "1Gi", "Recycle"));
    c.apply(&claim("user", Some(""), "1Gi"));
    wait_pvc_phase(&c, "user", "Bound").await;
    pvcs(&c).delete("user", &DeleteParams::default()).await.unwrap();
    let pv = c
        .wait_for("recycled volume Available without claimRef", WAIT, || async {
            pvs(&c)
                .get_opt("recycle-me")
                .await
                .ok()
                .flatten()
                .filter(|pv| pv_phase(pv) == "Available" && pv.spec.as_ref().unwrap().claim_ref.is_none())
        })
        .await;
    assert!(!pv.annotations().contains_key("pv.kubernetes.io/bound-by-controller"));
    assert!(vol.is_dir());
    assert_eq!(std::fs::read_dir(&vol).unwrap().count(), 0, "scrubbed");
    assert_eq!(std::fs::read_to_string(outside.join("keep")).unwrap(), "keep", "the symlink was not followed");
    wait_event(&c, "recycle-me", "VolumeRecycled").await;
    // And it serves the next claim.
    c.apply(&claim("next", Some(""), "1Gi"));
    wait_pvc_phase(&c, "next", "Bound").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycling_an_nfs_volume_fails_with_a_clear_event() {
    let c = Cluster::start().await;
    c.apply(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: nfs-recycle\nspec:\n  capacity:\n    storage: 1Gi\n  \
         accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Recycle\n  storageClassName: \"\"\n  nfs:\n    \
         server: 10.0.0.1\n    path: /exports\n",
    );
    c.apply(&claim("user", Some(""), "1Gi"));
    wait_pvc_phase(&c, "user", "Bound").await;
    pvcs(&c).delete("user", &DeleteParams::default()).await.unwrap();
    wait_pv_phase(&c, "nfs-recycle", "Failed").await;
    let event = wait_event(&c, "nfs-recycle", "VolumeFailedRecycle").await;
    assert!(event.2.contains("no kernel NFS client"), "{event:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_first_consumer_claim_stays_pending_until_a_pod_uses_it() {
    let c = Cluster::start().await;
    c.apply(&node(NODE));
    c.apply(&local_path_class("late", "Delete", "WaitForFirstConsumer", false));
    c.apply(&claim("late", Some("late"), "8Mi"));
    wait_event(&c, "late", "WaitForFirstConsumer").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let pending = pvcs(&c).get("late").await.unwrap();
    assert_eq!(pvc_phase(&pending), "Pending");
    assert!(pending.spec.as_ref().unwrap().volume_name.is_none());
    assert!(pvs(&c).list(&ListParams::default()).await.unwrap().items.is_empty(), "nothing provisioned yet");

    c.apply(&pod("consumer", "late", None));
    let claim = wait_pvc_phase(&c, "late", "Bound").await;
    assert_eq!(claim.annotations().get("volume.kubernetes.io/selected-node").map(String::as_str), Some(NODE));
    let pv = pvs(&c).get(claim.spec.as_ref().unwrap().volume_name.as_deref().unwrap()).await.unwrap();
    let term =
        &pv.spec.as_ref().unwrap().node_affinity.as_ref().unwrap().required.as_ref().unwrap().node_selector_terms[0];
    assert_eq!(term.match_expressions.as_ref().unwrap()[0].values.as_deref(), Some(&[NODE.to_string()][..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_binds_the_pod_to_the_node_of_its_volumes() {
    let c = Cluster::start().await;
    c.apply(&node(NODE));
    c.apply(&local_path_class("late", "Delete", "WaitForFirstConsumer", false));
    c.apply(&claim("late", Some("late"), "8Mi"));
    c.apply(&pod("consumer", "late", None));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let placed = c
        .wait_for("pod bound to the node", WAIT, || async {
            pods.get("consumer").await.ok().filter(|p| p.spec.as_ref().unwrap().node_name.is_some())
        })
        .await;
    assert_eq!(placed.spec.as_ref().unwrap().node_name.as_deref(), Some(NODE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_binds_a_static_volume_on_the_pods_node_for_a_delayed_claim() {
    let c = Cluster::start().await;
    c.apply(&node(NODE));
    c.apply(&node("node2"));
    c.apply(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: local-static\nprovisioner: \
         kubernetes.io/no-provisioner\nvolumeBindingMode: WaitForFirstConsumer\n",
    );
    // Only node2 has a volume.
    c.apply(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: on-node2\nspec:\n  capacity:\n    storage: 1Gi\n  \
         accessModes: [ReadWriteOnce]\n  storageClassName: local-static\n  local:\n    path: /mnt/disk\n  \
         nodeAffinity:\n    required:\n      nodeSelectorTerms:\n      - matchExpressions:\n        - key: \
         kubernetes.io/hostname\n          operator: In\n          values: [node2]\n",
    );
    c.apply(&claim("static", Some("local-static"), "1Gi"));
    wait_pv_phase(&c, "on-node2", "Available").await;
    c.apply(&pod("user", "static", None));
    // node1 has no volume for the claim; node2 does: the scheduler binds that one.
    let claim = wait_pvc_phase(&c, "static", "Bound").await;
    assert_eq!(claim.spec.as_ref().unwrap().volume_name.as_deref(), Some("on-node2"));
    wait_pv_phase(&c, "on-node2", "Bound").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_pre_bound_with_volume_name_binds_only_that_volume() {
    let c = Cluster::start().await;
    let dir = c.path().to_path_buf();
    c.apply(&host_path_pv("small", &dir.join("a"), "1Gi", "Retain"));
    c.apply(&host_path_pv("chosen", &dir.join("b"), "5Gi", "Retain"));
    c.apply(&host_path_pv("tiny", &dir.join("c"), "1Mi", "Retain"));
    let mut text = claim("picky", Some(""), "1Gi");
    text.push_str("  volumeName: chosen\n");
    c.apply(&text);
    let claim = wait_pvc_phase(&c, "picky", "Bound").await;
    assert_eq!(claim.spec.as_ref().unwrap().volume_name.as_deref(), Some("chosen"));
    assert!(!claim.annotations().contains_key("pv.kubernetes.io/bound-by-controller"), "the user made this binding");
    wait_pv_phase(&c, "chosen", "Bound").await;
    assert_eq!(pv_phase(&pvs(&c).get("small").await.unwrap()), "Available");

    // A volume too small for the claim that names it: VolumeMismatch, and the claim waits.
    let mut text = claim_text_with_volume("wants-tiny", "1Gi", "tiny");
    text.push('\n');
    c.apply(&text);
    let event = wait_event(&c, "wants-tiny", "VolumeMismatch").await;
    assert_eq!(event.2, "requested PV is too small");
    assert_eq!(pvc_phase(&pvcs(&c).get("wants-tiny").await.unwrap()), "Pending");
    assert_eq!(pv_phase(&pvs(&c).get("tiny").await.unwrap()), "Available");
}

fn claim_text_with_volume(name: &str, size: &str, volume: &str) -> String {
    let mut text = claim(name, Some(""), size);
    text.push_str(&format!("  volumeName: {volume}"));
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_pre_bound_by_claim_ref_goes_to_that_claim_only() {
    let c = Cluster::start().await;
    let dir = c.path().to_path_buf();
    let mut text = host_path_pv("reserved", &dir.join("r"), "1Gi", "Retain");
    text.push_str("  claimRef:\n    namespace: default\n    name: owner\n");
    c.apply(&text);
    c.apply(&claim("intruder", Some(""), "1Gi"));
    wait_pv_phase(&c, "reserved", "Available").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pvc_phase(&pvcs(&c).get("intruder").await.unwrap()), "Pending");
    wait_event(&c, "intruder", "FailedBinding").await;
    c.apply(&claim("owner", Some(""), "1Gi"));
    let owner = wait_pvc_phase(&c, "owner", "Bound").await;
    assert_eq!(owner.spec.as_ref().unwrap().volume_name.as_deref(), Some("reserved"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_of_a_class_nobody_provisions_waits_for_the_external_provisioner() {
    let c = Cluster::start().await;
    c.apply(&seed("001-11-storageclass-fast.yaml"));
    c.apply(&seed("001-12-persistentvolumeclaim-claim1.yaml"));
    let event = wait_event(&c, "claim1", "ExternalProvisioning").await;
    assert_eq!(
        event.2,
        "Waiting for a volume to be created either by the external provisioner 'kubernetes.io/gce-pd' or manually \
         by the system administrator. If volume creation is delayed, please verify that the provisioner is running \
         and correctly registered."
    );
    let claim = pvcs(&c).get("claim1").await.unwrap();
    assert_eq!(pvc_phase(&claim), "Pending");
    assert_eq!(
        claim.annotations().get("volume.kubernetes.io/storage-provisioner").map(String::as_str),
        Some("kubernetes.io/gce-pd")
    );
    let describe = c.kubectl(&["describe", "pvc", "claim1"], None);
    assert!(describe.contains("ExternalProvisioning"), "{describe}");
}

/// Fails every time, recording when it was called.
struct Failing {
    calls: Arc<parking_lot::Mutex<Vec<Instant>>>,
}

impl Provisioner for Failing {
    fn name(&self) -> &str {
        "test.kvol.io/failing"
    }
    fn provision<'a>(&'a self, _: &'a ProvisionOptions) -> BoxFuture<'a, kvol_controller::Result<ProvisionedVolume>> {
        self.calls.lock().push(Instant::now());
        async { Err(kvol_controller::Error::Provision("backend unavailable".into())) }.boxed()
    }
    fn delete<'a>(&'a self, _: &'a PersistentVolume) -> BoxFuture<'a, kvol_controller::Result<()>> {
        async { Ok(()) }.boxed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provisioner_backs_off_and_gives_up_with_events() {
    let mut c = Cluster::server().await;
    let calls = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut registry = ProvisionerRegistry::new();
    registry.register(Arc::new(Failing { calls: calls.clone() })).unwrap();
    assert!(registry.register(Arc::new(Failing { calls: calls.clone() })).is_err(), "duplicate names refused");
    // The library's policy (15 s doubling, 15 failures) scaled down to keep the test short.
    c.start_controllers(
        |config| {
            config.provision_backoff = Backoff { base: Duration::from_millis(100), max: Duration::from_millis(400) };
            config.failed_provision_threshold = 5;
        },
        Some(registry),
    );
    c.wait_ready().await;
    c.apply(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: broken\nprovisioner: test.kvol.io/failing\n",
    );
    c.apply(&claim("doomed", Some("broken"), "1Gi"));
    let gave_up = c
        .wait_for("giving up", WAIT, || async {
            c.events_for("doomed").await.into_iter().find(|e| e.2.starts_with("Giving up"))
        })
        .await;
    assert_eq!(gave_up.1, "ProvisioningFailed");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calls = calls.lock().clone();
    assert_eq!(calls.len(), 5, "exactly the threshold of attempts, then no more");
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= Duration::from_millis(90), "backoff before the first retry: {gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(350), "backoff grows: {gaps:?}");
    let failed = c.events_for("doomed").await.into_iter().find(|e| e.2.contains("backend unavailable")).unwrap();
    assert_eq!(failed.0, "Warning");
    assert!(failed.3 >= 5, "repeats aggregated into one event's count: {failed:?}");
    assert_eq!(pvc_phase(&pvcs(&c).get("doomed").await.unwrap()), "Pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protection_keeps_a_used_claim_and_a_bound_volume_until_released() {
    let c = Cluster::start().await;
    c.apply(&node(NODE));
    let dir = c.path().join("protected");
    c.apply(&host_path_pv("guarded", &dir, "1Gi", "Retain"));
    c.apply(&claim("used", Some(""), "1Gi"));
    wait_pvc_phase(&c, "used", "Bound").await;
    c.apply(&pod("user", "used", Some(NODE)));

    // The volume is bound: deleting it leaves it Terminating.
    pvs(&c).delete("guarded", &DeleteParams::default()).await.unwrap();
    // The claim is used by a pod: deleting it leaves it Terminating.
    pvcs(&c).delete("used", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let claim = pvcs(&c).get("used").await.unwrap();
    assert!(claim.metadata.deletion_timestamp.is_some());
    assert_eq!(claim.finalizers(), &["kubernetes.io/pvc-protection".to_string()]);
    let pv = pvs(&c).get("guarded").await.unwrap();
    assert!(pv.metadata.deletion_timestamp.is_some());
    assert_eq!(pv_phase(&pv), "Bound");
    let out = c.kubectl(&["get", "pvc", "used"], None);
    assert!(out.contains("Terminating") || out.contains("Bound"), "{out}");

    // The pod goes: the claim goes, the volume is Released and, no longer bound, goes too.
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    pods.delete("user", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    c.wait_for("claim deleted", WAIT, || async { matches!(pvcs(&c).get_opt("used").await, Ok(None)).then_some(()) })
        .await;
    wait_pv_gone(&c, "guarded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_claim_whose_volume_disappears_is_lost() {
    let c = Cluster::start().await;
    c.apply(&host_path_pv("fragile", &c.path().join("f"), "1Gi", "Retain"));
    c.apply(&claim("victim", Some(""), "1Gi"));
    wait_pvc_phase(&c, "victim", "Bound").await;
    // Force the volume away (strip the finalizer first, as an administrator might).
    c.kubectl(&["patch", "pv", "fragile", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#], None);
    c.kubectl(&["delete", "pv", "fragile", "--wait=false"], None);
    // The finalizer comes back while bound; strip it again after the delete.
    let _ = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["patch", "pv", "fragile", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#])
        .output();
    let lost = wait_pvc_phase(&c, "victim", "Lost").await;
    assert!(lost.status.as_ref().unwrap().capacity.is_none());
    let event = wait_event(&c, "victim", "ClaimLost").await;
    assert_eq!(event.2, "Bound claim has lost its PersistentVolume. Data on the volume is lost!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_and_restarting_the_controllers_never_double_binds_loses_a_binding_or_leaks_a_volume() {
    let mut c = Cluster::server().await;
    c.apply(&local_path_class("local", "Delete", "Immediate", false));
    let mut yaml = String::new();
    for i in 0..60 {
        yaml.push_str(&host_path_pv(&format!("pv-{i}"), &c.path().join(format!("v{i}")), "1Gi", "Retain"));
        yaml.push_str("---\n");
        yaml.push_str(&claim(&format!("static-{i}"), Some(""), "1Gi"));
        yaml.push_str("---\n");
    }
    for i in 0..20 {
        yaml.push_str(&claim(&format!("dynamic-{i}"), Some("local"), "1Mi"));
        yaml.push_str("---\n");
    }
    c.apply(&yaml);
    // Kill at different points of the work, then let a fresh instance finish.
    for delay_ms in [30u64, 80, 150, 300] {
        c.start_controllers(|_| {}, None);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        c.kill_controllers().await;
    }
    c.start_controllers(|_| {}, None);
    c.wait_ready().await;
    let claims = c
        .wait_for("all 80 claims Bound", Duration::from_secs(60), || async {
            let list = pvcs(&c).list(&ListParams::default()).await.ok()?;
            (list.items.len() == 80 && list.items.iter().all(|p| pvc_phase(p) == "Bound")).then_some(list.items)
        })
        .await;
    let volumes = pvs(&c).list(&ListParams::default()).await.unwrap().items;
    assert_eq!(volumes.len(), 80, "60 static + 20 provisioned, no extra volume");
    let mut seen = std::collections::HashSet::new();
    for claim in &claims {
        let name = claim.spec.as_ref().unwrap().volume_name.clone().unwrap();
        assert!(seen.insert(name.clone()), "volume {name} bound twice");
        let pv = volumes.iter().find(|v| v.name_any() == name).unwrap();
        assert_eq!(pv_phase(pv), "Bound");
        assert_eq!(pv.spec.as_ref().unwrap().claim_ref.as_ref().unwrap().uid, claim.metadata.uid, "{name}");
    }
    let dirs = std::fs::read_dir(&c.local_path).unwrap().count();
    assert_eq!(dirs, 20, "one directory per provisioned volume, none leaked");
}

/// A loop-backed btrfs, unmounted and detached on drop.
struct Btrfs {
    dir: tempfile::TempDir,
    device: String,
}

impl Btrfs {
    fn make() -> Option<Btrfs> {
        let root = nix_is_root();
        if !root || which("mkfs.btrfs").is_none() || which("losetup").is_none() {
            eprintln!("skipping: needs root, losetup and mkfs.btrfs (apt-get install btrfs-progs)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        let run = |cmd: &mut std::process::Command| {
            let out = cmd.output().expect("command runs");
            assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        run(std::process::Command::new("truncate").args(["-s", "300M"]).arg(&image));
        let device = run(std::process::Command::new("losetup").args(["--find", "--show"]).arg(&image));
        let fs = Btrfs { dir, device };
        run(std::process::Command::new("mkfs.btrfs").args(["-q", &fs.device]));
        std::fs::create_dir_all(fs.mount_point()).unwrap();
        run(std::process::Command::new("mount").arg(&fs.device).arg(fs.mount_point()));
        Some(fs)
    }

    fn mount_point(&self) -> std::path::PathBuf {
        self.dir.path().join("mnt")
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.mount_point()).status();
        let _ = std::process::Command::new("losetup").args(["-d", &self.device]).status();
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:").map(|v| v.split_whitespace().next() == Some("0"))))
        .unwrap_or(false)
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join(program)).find(|p| p.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_path_on_btrfs_enforces_the_requested_capacity_with_a_qgroup() {
    let Some(fs) = Btrfs::make() else { return };
    let base = fs.mount_point().join("local-path");
    let provisioner = kvol_controller::LocalPathProvisioner::new(&base, NODE);
    let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "q", "namespace": "default", "uid": "uid-q" },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "20Mi" } } }
    }))
    .unwrap();
    let class = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "local" }, "provisioner": "kvol.io/local-path"
    }))
    .unwrap();
    let options = ProvisionOptions {
        pv_name: "pvc-uid-q".into(),
        claim,
        class,
        selected_node: None,
        selected_node_name: None,
        capacity: k8s_openapi::apimachinery::pkg::api::resource::Quantity("20Mi".into()),
    };
    let made = provisioner.provision(&options).await.unwrap();
    assert_eq!(made.annotations.get("kvol.io/capacity-enforcement").map(String::as_str), Some("btrfs-qgroup"));
    // Idempotent: provisioning again finds the same subvolume.
    provisioner.provision(&options).await.unwrap();
    let dir = base.join("pvc-uid-q");
    let result = (|| -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(dir.join("big"))?;
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..40 {
            f.write_all(&chunk)?;
            f.sync_all()?;
        }
        Ok(())
    })();
    let err = result.expect_err("writing 40 MiB into a 20 MiB volume must fail");
    assert_eq!(err.raw_os_error(), Some(122), "EDQUOT: {err}");
    let pv = kvol_controller::provision::build_volume(&options, "kvol.io/local-path", made);
    provisioner.delete(&pv).await.unwrap();
    assert!(!dir.exists(), "subvolume deleted");
    provisioner.delete(&pv).await.unwrap(); // already gone is success
}

/// KEP-3333: a claim made while there was no default class gets one when a default class appears, and
/// is then provisioned; a claim asking for no class (`""`) is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_without_a_class_gets_the_default_class_created_after_it() {
    let c = Cluster::start().await;
    c.apply(&claim("early", None, "8Mi"));
    c.apply(&claim("none", Some(""), "8Mi"));
    wait_pvc_phase(&c, "early", "Pending").await;
    c.apply(&local_path_class("late-default", "Delete", "Immediate", true));
    let bound = wait_pvc_phase(&c, "early", "Bound").await;
    assert_eq!(bound.spec.as_ref().unwrap().storage_class_name.as_deref(), Some("late-default"));
    let none = pvcs(&c).get("none").await.unwrap();
    assert_eq!(none.spec.as_ref().unwrap().storage_class_name.as_deref(), Some(""), "\"\" means no class");
    assert_eq!(pvc_phase(&none), "Pending");
}

/// A crash between making a local-path volume and creating its PV, followed by the claim's deletion
/// while the controller was down, leaves a marked directory: the restarted controller deletes it, and
/// never a volume that has a PV or a claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_abandoned_by_a_crash_during_provisioning_is_deleted_at_restart() {
    let mut c = Cluster::start().await;
    c.apply(&local_path_class("local", "Delete", "Immediate", true));
    c.apply(&claim("kept", None, "8Mi"));
    let kept = wait_pvc_phase(&c, "kept", "Bound").await;
    let kept_pv = kept.spec.as_ref().unwrap().volume_name.clone().unwrap();
    c.kill_controllers().await;
    // What the crash left: the volume directory with its in-flight mark, for a claim that is gone.
    let abandoned = c.local_path.join("pvc-00000000-dead-beef-0000-000000000000");
    std::fs::create_dir_all(&abandoned).unwrap();
    std::fs::write(abandoned.join("file"), "x").unwrap();
    let mark = c.local_path.join(".pvc-00000000-dead-beef-0000-000000000000.provisioning");
    std::fs::write(&mark, "").unwrap();
    // A marked volume whose PV exists (the crash came after the PV): kept, and its mark cleared.
    let kept_mark = c.local_path.join(format!(".{kept_pv}.provisioning"));
    std::fs::write(&kept_mark, "").unwrap();
    c.start_controllers(|_| {}, None);
    c.wait_for("the abandoned volume deleted", WAIT, || async {
        (!abandoned.exists() && !mark.exists()).then_some(())
    })
    .await;
    assert!(c.local_path.join(&kept_pv).exists(), "a volume with a PV is kept");
    assert!(!kept_mark.exists(), "and its mark cleared, so that it is never collected later");
    assert_eq!(pvc_phase(&pvcs(&c).get("kept").await.unwrap()), "Bound");
}
