//! The sidecar roles against a real kvol API server and the real kvol-csi driver on btrfs.

mod util;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Secret};
use k8s_openapi::api::storage::v1::{CSINode, StorageClass, VolumeAttachment};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use kvol_csi_sidecar::Role;
use serde_json::json;
use util::{wait_for, Cluster, DRIVER, NODE, TOPOLOGY_KEY};

const ALL_ROLES: [Role; 3] = [Role::Provisioner, Role::Attacher, Role::Resizer];

/// The node, its CSINode (as kubelet would write it after registration) and a provisioner secret.
async fn node_and_secrets(c: &Cluster) {
    c.create::<Node>(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": NODE, "labels": { TOPOLOGY_KEY: NODE, "kubernetes.io/hostname": NODE } },
    }))
    .await;
    c.create::<CSINode>(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "CSINode",
        "metadata": { "name": NODE },
        "spec": { "drivers": [{ "name": DRIVER, "nodeID": NODE, "topologyKeys": [TOPOLOGY_KEY] }] },
    }))
    .await;
    c.create::<Secret>(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "provisioner-creds", "namespace": "default" },
        "stringData": { "token": "t0ps3cret" },
    }))
    .await;
}

async fn class(c: &Cluster, name: &str, extra_params: serde_json::Value) {
    let mut params = json!({
        "csi.storage.k8s.io/provisioner-secret-name": "provisioner-creds",
        "csi.storage.k8s.io/provisioner-secret-namespace": "${pvc.namespace}",
        "csi.storage.k8s.io/node-stage-secret-name": "${pvc.name}-${pvc.annotations['team']}",
        "csi.storage.k8s.io/node-stage-secret-namespace": "${pvc.namespace}",
        "csi.storage.k8s.io/fstype": "btrfs",
    });
    params.as_object_mut().unwrap().extend(extra_params.as_object().unwrap().clone());
    c.create::<StorageClass>(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": { "name": name },
        "provisioner": DRIVER,
        "parameters": params,
        "reclaimPolicy": "Delete",
        "allowVolumeExpansion": true,
        "volumeBindingMode": "Immediate",
    }))
    .await;
}

async fn claim(c: &Cluster, name: &str, class: &str, size: &str) -> PersistentVolumeClaim {
    c.create::<PersistentVolumeClaim>(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name, "namespace": "default",
            "annotations": { "volume.kubernetes.io/storage-provisioner": DRIVER, "team": "blue" },
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "resources": { "requests": { "storage": size } },
        },
    }))
    .await
}

fn capacity(pv: &PersistentVolume) -> String {
    pv.spec.as_ref().unwrap().capacity.as_ref().unwrap()["storage"].0.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisions_attaches_expands_and_deletes_a_volume_through_the_api() {
    require_driver!();
    let mut c = Cluster::with_driver().await;
    node_and_secrets(&c).await;
    class(&c, "kvol", json!({})).await;
    c.start_sidecar(util::test_config(&c.socket, &ALL_ROLES));
    let pvc = claim(&c, "data", "kvol", "64Mi").await;
    let pv_name = format!("pvc-{}", pvc.uid().unwrap());

    // Provisioning: CreateVolume, then a PV pre-bound to the claim.
    let pvs: Api<PersistentVolume> = Api::all(c.client.clone());
    let pv = wait_for(30, "the provisioned PV", || async { pvs.get_opt(&pv_name).await.unwrap() }).await;
    let spec = pv.spec.clone().unwrap();
    let csi = spec.csi.clone().unwrap();
    assert_eq!(csi.driver, DRIVER);
    assert!(!csi.volume_handle.is_empty());
    assert_eq!(csi.fs_type.as_deref(), Some("btrfs"));
    assert_eq!(csi.volume_attributes.as_ref().unwrap()["csi.kvol.io/backend"], "btrfs");
    let stage = csi.node_stage_secret_ref.clone().unwrap();
    assert_eq!(
        (stage.name.as_deref(), stage.namespace.as_deref()),
        (Some("data-blue"), Some("default")),
        "template resolved"
    );
    assert_eq!(capacity(&pv), "64Mi");
    let claim_ref = spec.claim_ref.clone().unwrap();
    assert_eq!((claim_ref.name.as_deref(), claim_ref.uid.as_deref()), (Some("data"), pvc.uid().as_deref()));
    assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(spec.storage_class_name.as_deref(), Some("kvol"));
    assert_eq!(pv.annotations()["pv.kubernetes.io/provisioned-by"], DRIVER);
    assert_eq!(pv.annotations()["volume.kubernetes.io/provisioner-deletion-secret-name"], "provisioner-creds");
    assert!(pv.finalizers().contains(&"external-provisioner.volume.kubernetes.io/finalizer".to_string()));
    let term = &spec.node_affinity.unwrap().required.unwrap().node_selector_terms[0];
    let expr = &term.match_expressions.as_ref().unwrap()[0];
    assert_eq!((expr.key.as_str(), expr.values.clone().unwrap()), (TOPOLOGY_KEY, vec![NODE.to_string()]));
    assert!(c.driver_volumes().await.contains(&csi.volume_handle), "the driver has the volume");
    let events = wait_for(10, "ProvisioningSucceeded", || async {
        let ev = c.events("default", "data").await;
        ev.iter().any(|e| e.0 == "ProvisioningSucceeded").then_some(ev)
    })
    .await;
    assert!(events.iter().any(|e| e.0 == "Provisioning"), "{events:?}");

    // Bind as the PV controller would (it does not run here).
    c.patch::<PersistentVolumeClaim>(Some("default"), "data", json!({ "spec": { "volumeName": pv_name } }), false)
        .await;
    c.patch::<PersistentVolumeClaim>(
        Some("default"),
        "data",
        json!({ "status": { "phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": { "storage": "64Mi" } } }),
        true,
    )
    .await;
    c.patch::<PersistentVolume>(None, &pv_name, json!({ "status": { "phase": "Bound" } }), true).await;

    // Attaching: ControllerPublishVolume, status and finalizers.
    c.create::<VolumeAttachment>(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
        "metadata": { "name": "va-1" },
        "spec": { "attacher": DRIVER, "nodeName": NODE, "source": { "persistentVolumeName": pv_name } },
    }))
    .await;
    let vas: Api<VolumeAttachment> = Api::all(c.client.clone());
    let va = wait_for(20, "the attachment", || async {
        let va = vas.get("va-1").await.unwrap();
        va.status.as_ref().is_some_and(|s| s.attached).then_some(va)
    })
    .await;
    let status = va.status.clone().unwrap();
    assert_eq!(status.attachment_metadata.unwrap()["csi.kvol.io/node"], NODE);
    assert!(status.attach_error.is_none());
    assert!(va.finalizers().contains(&"external-attacher/csi-kvol-io".to_string()));
    let pv = pvs.get(&pv_name).await.unwrap();
    assert!(pv.finalizers().contains(&"external-attacher/csi-kvol-io".to_string()), "{:?}", pv.finalizers());

    // Expanding: ControllerExpandVolume, PV and claim capacity (btrfs needs no node step).
    c.patch::<PersistentVolumeClaim>(
        Some("default"),
        "data",
        json!({ "spec": { "resources": { "requests": { "storage": "128Mi" } } } }),
        false,
    )
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), "default");
    let grown = wait_for(20, "the claim's new capacity", || async {
        let pvc = claims.get("data").await.unwrap();
        let cap = pvc.status.as_ref()?.capacity.as_ref()?.get("storage")?.0.clone();
        (cap == "128Mi").then_some(pvc)
    })
    .await;
    assert_eq!(capacity(&pvs.get(&pv_name).await.unwrap()), "128Mi");
    let conditions = grown.status.unwrap().conditions.unwrap_or_default();
    assert!(conditions.is_empty(), "{conditions:?}");
    wait_for(10, "VolumeResizeSuccessful", || async {
        c.events("default", "data").await.iter().any(|e| e.0 == "VolumeResizeSuccessful").then_some(())
    })
    .await;

    // Detaching: deleting the attachment unpublishes, then its finalizer goes.
    vas.delete("va-1", &DeleteParams::default()).await.unwrap();
    wait_for(20, "the attachment to go", || async { vas.get_opt("va-1").await.unwrap().is_none().then_some(()) }).await;

    // Deleting: the claim goes, the PV is Released → DeleteVolume, finalizers off, PV gone.
    claims.delete("data", &DeleteParams::default()).await.unwrap();
    c.patch::<PersistentVolume>(None, &pv_name, json!({ "status": { "phase": "Released" } }), true).await;
    wait_for(30, "the PV to be deleted", || async { pvs.get_opt(&pv_name).await.unwrap().is_none().then_some(()) })
        .await;
    assert!(!c.driver_volumes().await.contains(&csi.volume_handle), "DeleteVolume was called");
    c.stop_sidecar().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_create_volume_backs_off_records_events_and_gives_up_at_the_threshold() {
    require_driver!();
    let mut c = Cluster::with_driver().await;
    node_and_secrets(&c).await;
    // kvol-csi refuses parameters it does not know with INVALID_ARGUMENT.
    class(&c, "bad", json!({ "bogus": "1" })).await;
    let mut config = util::test_config(&c.socket, &[Role::Provisioner]);
    config.failed_provision_threshold = 3;
    config.provision_backoff =
        kvol_csi_sidecar::Backoff { base: Duration::from_millis(200), max: Duration::from_secs(1) };
    c.start_sidecar(config);
    let started = std::time::Instant::now();
    let pvc = claim(&c, "broken", "bad", "64Mi").await;
    // 1 try + 3 retries (200, 400, 800 ms apart), then given up.
    let (message, count) = wait_for(20, "4 ProvisioningFailed", || async {
        let ev = c.events("default", "broken").await;
        ev.into_iter().find(|e| e.0 == "ProvisioningFailed" && e.2 >= 4).map(|e| (e.1, e.2))
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(1400), "retries were backed off: {:?}", started.elapsed());
    assert!(message.contains("InvalidArgument") && message.contains("bogus"), "{message}");
    assert!(message.contains("StorageClass \"bad\""), "{message}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after: Vec<_> =
        c.events("default", "broken").await.into_iter().filter(|e| e.0 == "ProvisioningFailed").collect();
    assert_eq!(after[0].2, count, "no retries after giving up: {after:?}");
    let pvs: Api<PersistentVolume> = Api::all(c.client.clone());
    assert!(pvs.get_opt(&format!("pvc-{}", pvc.uid().unwrap())).await.unwrap().is_none());
    assert!(c.driver_volumes().await.is_empty());
    c.stop_sidecar().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_larger_than_the_pool_fails_and_a_restart_never_makes_a_second_pv() {
    require_driver!();
    let mut c = Cluster::with_driver().await;
    node_and_secrets(&c).await;
    class(&c, "kvol", json!({})).await;
    c.start_sidecar(util::test_config(&c.socket, &[Role::Provisioner]));
    claim(&c, "huge", "kvol", "64Gi").await;
    let pvc = claim(&c, "small", "kvol", "32Mi").await;
    let pvs: Api<PersistentVolume> = Api::all(c.client.clone());
    let pv_name = format!("pvc-{}", pvc.uid().unwrap());
    wait_for(30, "the small claim's PV", || async { pvs.get_opt(&pv_name).await.unwrap() }).await;
    let message = wait_for(20, "ProvisioningFailed for the huge claim", || async {
        c.events("default", "huge").await.into_iter().find(|e| e.0 == "ProvisioningFailed").map(|e| e.1)
    })
    .await;
    assert!(message.contains("CreateVolume"), "{message}");
    // Restart: the caches are synced before any work, so the claim is seen as provisioned.
    c.stop_sidecar().await;
    c.start_sidecar(util::test_config(&c.socket, &[Role::Provisioner]));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ours: Vec<_> = pvs
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).and_then(|r| r.name.as_deref()) == Some("small"))
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(c.driver_volumes().await.len(), 1);
    c.stop_sidecar().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registrar_answers_kubelet_and_exits_when_registration_fails() {
    require_driver!();
    let c = Cluster::with_driver().await;
    let registry = c.dir.path().join("plugins_registry");
    let mut config = kvol_csi_sidecar::RegistrarConfig::new(
        format!("unix://{}", c.socket.display()),
        "/var/lib/kubelet/plugins/csi.kvol.io/csi.sock",
    );
    config.plugin_registration_path = registry.clone();
    let registrar = tokio::spawn(kvol_csi_sidecar::run_registrar(config, std::future::pending()));
    let socket = registry.join("csi.kvol.io-reg.sock");
    let channel =
        wait_for(10, "the registration socket", || async { kvol_csi::connect(socket.to_str().unwrap()).await.ok() })
            .await;
    let mut kubelet = kvol_csi::pluginregistration::registration_client::RegistrationClient::new(channel);
    let info = kubelet.get_info(kvol_csi::pluginregistration::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.r#type, "CSIPlugin");
    assert_eq!(info.name, DRIVER);
    assert_eq!(info.endpoint, "/var/lib/kubelet/plugins/csi.kvol.io/csi.sock");
    assert_eq!(info.supported_versions, ["1.0.0"]);
    kubelet
        .notify_registration_status(kvol_csi::pluginregistration::RegistrationStatus {
            plugin_registered: false,
            error: "version mismatch".into(),
        })
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), registrar).await.expect("registrar exits").unwrap();
    let err = result.unwrap_err().to_string();
    assert!(err.contains("version mismatch"), "{err}");
    assert!(!socket.exists(), "the registration socket is removed");
}

// ---------------------------------------------------------------- memory figure

/// Volumes (PV + claim pairs) for the memory figure; `SIDECAR_MEMORY_VOLUMES` overrides it.
fn memory_volumes() -> usize {
    std::env::var("SIDECAR_MEMORY_VOLUMES").ok().and_then(|n| n.parse().ok()).unwrap_or(5000)
}

/// The sidecar process for `memory_with_5000_volumes`: runs only when that test starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started as a child process by memory_with_5000_volumes"]
async fn memory_child() {
    let (Ok(kubeconfig), Ok(socket)) =
        (std::env::var("SIDECAR_CHILD_KUBECONFIG"), std::env::var("SIDECAR_CHILD_SOCKET"))
    else {
        return;
    };
    let _ = tracing_subscriber::fmt().with_env_filter("info").with_writer(std::io::stderr).try_init();
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let config = util::test_config(std::path::Path::new(&socket), &ALL_ROLES);
    kvol_csi_sidecar::run_sidecar(client, config, std::future::pending()).await.unwrap();
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Prints the sidecar process's RSS with 5,000 PVs and 5,000 claims in its caches (all three roles).
/// Run: `cargo test -p kvol-csi-sidecar --test tests -- --ignored memory_with_5000_volumes --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run on demand"]
async fn memory_with_5000_volumes() {
    require_driver!();
    let c = Cluster::with_driver().await;
    class(&c, "kvol", json!({})).await;
    let started = std::time::Instant::now();
    let volumes = memory_volumes();
    // Bound static pairs: the provisioner and resizer watch them, nothing needs doing.
    let client = c.client.clone();
    futures::stream::iter(0..volumes)
        .map(|i| {
            let client = client.clone();
            async move {
                let pv: PersistentVolume = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "PersistentVolume",
                    "metadata": {
                        "name": format!("pv-{i:05}"),
                        "annotations": { "pv.kubernetes.io/provisioned-by": DRIVER },
                        "finalizers": ["external-provisioner.volume.kubernetes.io/finalizer"],
                    },
                    "spec": {
                        "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "kvol",
                        "claimRef": { "kind": "PersistentVolumeClaim", "namespace": "default", "name": format!("claim-{i:05}") },
                        "csi": { "driver": DRIVER, "volumeHandle": format!("btrfs-{i:05}"), "fsType": "btrfs",
                                 "volumeAttributes": { "csi.kvol.io/backend": "btrfs" } },
                        "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [
                            { "key": TOPOLOGY_KEY, "operator": "In", "values": [NODE] }] }] } },
                    },
                }))
                .unwrap();
                let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": { "name": format!("claim-{i:05}"), "namespace": "default",
                                  "annotations": { "volume.kubernetes.io/storage-provisioner": DRIVER,
                                                   "pv.kubernetes.io/bind-completed": "yes" } },
                    "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": "kvol",
                              "volumeName": format!("pv-{i:05}"),
                              "resources": { "requests": { "storage": "1Gi" } } },
                }))
                .unwrap();
                Api::<PersistentVolume>::all(client.clone()).create(&PostParams::default(), &pv).await.unwrap();
                Api::<PersistentVolumeClaim>::namespaced(client, "default").create(&PostParams::default(), &pvc).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    eprintln!("created {volumes} PVs + {volumes} claims in {:?}", started.elapsed());

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "memory_child", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("SIDECAR_CHILD_KUBECONFIG", &c.kubeconfig)
        .env("SIDECAR_CHILD_SOCKET", &c.socket)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            // Claims, volumes and attachments listed and filtered.
            if line.contains("initial list processed") {
                let _ = tx.send(());
            }
        }
    });
    let synced_at = std::time::Instant::now();
    let synced = (0..3).all(|_| rx.recv_timeout(Duration::from_secs(120)).is_ok());
    let sync_time = synced_at.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss, hwm) = (rss_kib(pid, "VmRSS:"), rss_kib(pid, "VmHWM:"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(synced, "the sidecar did not process its initial lists");
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!(
        "csi-sidecar (provisioner+attacher+resizer) with {volumes} PVs + {volumes} claims: \
         initial lists processed in {sync_time:?}; RSS {:.1} MiB (peak {:.1} MiB) on {cpus} CPUs; \
         kubernetes-csi: ~200 MiB per sidecar at 5,000 volumes",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_volume_id_is_reported_as_a_driver_bug_and_drivers_without_publish_are_attached_without_a_call() {
    let mut c = Cluster::server().await;
    let fake = util::fake::Fake { name: "fake.csi.example.com".into(), calls: Default::default() };
    let calls = fake.calls.clone();
    let _stop = util::fake::serve(&c.socket, fake);
    c.create::<StorageClass>(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": { "name": "fake" }, "provisioner": "fake.csi.example.com",
    }))
    .await;
    c.create::<PersistentVolumeClaim>(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": { "name": "c1", "namespace": "default" },
        "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": "fake",
                  "resources": { "requests": { "storage": "1Gi" } } },
    }))
    .await;
    c.create::<PersistentVolume>(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": { "name": "static" },
        "spec": { "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
                  "csi": { "driver": "fake.csi.example.com", "volumeHandle": "v1" } },
    }))
    .await;
    c.create::<VolumeAttachment>(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
        "metadata": { "name": "va-fake" },
        "spec": { "attacher": "fake.csi.example.com", "nodeName": "nowhere", "source": { "persistentVolumeName": "static" } },
    }))
    .await;
    c.start_sidecar(util::test_config(&c.socket, &[Role::Provisioner, Role::Attacher]));

    let message = wait_for(20, "ProvisioningFailed", || async {
        c.events("default", "c1").await.into_iter().find(|e| e.0 == "ProvisioningFailed").map(|e| e.1)
    })
    .await;
    assert!(message.contains("driver bug") && message.contains("volume_id is empty"), "{message}");
    let vas: Api<VolumeAttachment> = Api::all(c.client.clone());
    wait_for(20, "the trivial attachment", || async {
        vas.get("va-fake").await.unwrap().status.is_some_and(|s| s.attached).then_some(())
    })
    .await;
    assert_eq!(
        calls.publish.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no ControllerPublish without the capability"
    );
    assert!(calls.create.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let pvs: Api<PersistentVolume> = Api::all(c.client.clone());
    assert_eq!(pvs.list(&Default::default()).await.unwrap().items.len(), 1, "no PV for a volume without an id");
    vas.delete("va-fake", &DeleteParams::default()).await.unwrap();
    wait_for(20, "the attachment to go", || async { vas.get_opt("va-fake").await.unwrap().is_none().then_some(()) })
        .await;
    c.stop_sidecar().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_first_consumer_claims_are_provisioned_only_for_their_selected_node() {
    require_driver!();
    let mut c = Cluster::with_driver().await;
    node_and_secrets(&c).await;
    c.create::<StorageClass>(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": { "name": "late" }, "provisioner": DRIVER, "volumeBindingMode": "WaitForFirstConsumer",
    }))
    .await;
    c.start_sidecar(util::test_config(&c.socket, &[Role::Provisioner]));
    let pvc = claim(&c, "late", "late", "32Mi").await;
    let pv_name = format!("pvc-{}", pvc.uid().unwrap());
    let pvs: Api<PersistentVolume> = Api::all(c.client.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(pvs.get_opt(&pv_name).await.unwrap().is_none(), "not provisioned before a node is selected");
    assert!(c.driver_volumes().await.is_empty());
    c.patch::<PersistentVolumeClaim>(
        Some("default"),
        "late",
        json!({ "metadata": { "annotations": { "volume.kubernetes.io/selected-node": NODE } } }),
        false,
    )
    .await;
    let pv = wait_for(30, "the PV after node selection", || async { pvs.get_opt(&pv_name).await.unwrap() }).await;
    let affinity = pv.spec.unwrap().node_affinity.unwrap().required.unwrap();
    let expr = &affinity.node_selector_terms[0].match_expressions.as_ref().unwrap()[0];
    assert_eq!((expr.key.as_str(), expr.values.clone().unwrap()), (TOPOLOGY_KEY, vec![NODE.to_string()]));
    c.stop_sidecar().await;
}
