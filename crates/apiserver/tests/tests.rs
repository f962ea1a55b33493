//! Integration tests of `kvol server`'s API: each test starts a real server (HTTPS, tokens, store on disk) and
//! talks to it as Kubernetes clients do, with the `kube` crate's typed API and with raw requests for input no
//! typed client would send.

mod hardening;
mod util;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use util::{api_status, eventually, Server};

// ---------------------------------------------------------------------------------------------------------
// Fixtures

fn pv(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": { "name": name },
        "spec": { "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
                  "hostPath": { "path": format!("/tmp/{name}") } }
    })
}

fn pvc(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": { "name": name },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } }
    })
}

fn cm(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name }, "data": { "k": "v" } })
}

fn pod(name: &str, node: Option<&str>) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name },
        "spec": { "containers": [ { "name": "c", "image": "busybox" } ] }
    });
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p
}

fn sc(name: &str, default: bool) -> Value {
    let mut c = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": { "name": name }, "provisioner": "kvol.io/hostpath"
    });
    if default {
        c["metadata"]["annotations"] = json!({ "storageclass.kubernetes.io/is-default-class": "true" });
    }
    c
}

fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("fixture decodes")
}

fn names<T: kube::Resource>(items: &[T]) -> Vec<String> {
    items.iter().map(|o| o.meta().name.clone().unwrap_or_default()).collect()
}

const PVS: &str = "/api/v1/persistentvolumes";
const CMS: &str = "/api/v1/namespaces/default/configmaps";
const PODS: &str = "/api/v1/namespaces/default/pods";

// ---------------------------------------------------------------------------------------------------------
// Validation through the API

struct Invalid {
    what: &'static str,
    collection: &'static str,
    body: Value,
    /// The field of one cause.
    field: &'static str,
    /// Part of the message.
    message: &'static str,
}

fn invalid_cases() -> Vec<Invalid> {
    let mut no_capacity = pv("no-capacity");
    no_capacity["spec"].as_object_mut().unwrap().remove("capacity");
    let mut two_sources = pv("two-sources");
    two_sources["spec"]["nfs"] = json!({ "server": "s", "path": "/p" });
    let mut no_source = pv("no-source");
    no_source["spec"].as_object_mut().unwrap().remove("hostPath");
    let mut bad_mode = pv("bad-mode");
    bad_mode["spec"]["accessModes"] = json!(["Sometimes"]);
    let mut no_modes = pvc("no-modes");
    no_modes["spec"]["accessModes"] = json!([]);
    let mut bad_volume_mode = pvc("bad-volume-mode");
    bad_volume_mode["spec"]["volumeMode"] = json!("Sideways");
    let mut dup_volumes = pod("dup-volumes", None);
    dup_volumes["spec"]["volumes"] = json!([{ "name": "v", "emptyDir": {} }, { "name": "v", "emptyDir": {} }]);
    let mut missing_mount = pod("missing-mount", None);
    missing_mount["spec"]["containers"][0]["volumeMounts"] = json!([{ "name": "nope", "mountPath": "/data" }]);
    let mut bad_host_path_type = pod("bad-hostpath-type", None);
    bad_host_path_type["spec"]["volumes"] = json!([{ "name": "h", "hostPath": { "path": "/x", "type": "Dir" } }]);
    let mut two_pod_sources = pod("two-pod-sources", None);
    two_pod_sources["spec"]["volumes"] = json!([{ "name": "h", "hostPath": { "path": "/x" }, "emptyDir": {} }]);
    let mut no_provisioner = sc("no-provisioner", false);
    no_provisioner.as_object_mut().unwrap().remove("provisioner");
    let mut bad_reclaim = sc("bad-reclaim", false);
    bad_reclaim["reclaimPolicy"] = json!("Shred");
    let mut bad_binding = sc("bad-binding", false);
    bad_binding["volumeBindingMode"] = json!("Later");
    let bad_key = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "bad-key" },
                          "data": { "a/b": "x" } });
    let bad_secret_key = json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "bad-key" },
                                 "data": { "a b": "eA==" } });
    let bad_taint = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n1" },
                            "spec": { "taints": [{ "key": "k", "effect": "Sometimes" }] } });
    let bad_namespace = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "Not_A_Label" } });
    let bad_event = json!({ "apiVersion": "v1", "kind": "Event", "metadata": { "name": "e1" },
                            "involvedObject": { "kind": "Pod", "name": "p", "namespace": "default" },
                            "type": "Loud", "reason": "R" });
    let no_attacher = json!({ "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
                              "metadata": { "name": "va1" },
                              "spec": { "attacher": "", "nodeName": "n1", "source": { "persistentVolumeName": "pv1" } } });
    let no_va_source = json!({ "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
                               "metadata": { "name": "va2" },
                               "spec": { "attacher": "kvol.io", "nodeName": "n1", "source": {} } });
    let bad_driver = json!({ "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
                             "metadata": { "name": "kvol.io" }, "spec": { "fsGroupPolicy": "Sometimes" } });
    let bad_csinode = json!({ "apiVersion": "storage.k8s.io/v1", "kind": "CSINode", "metadata": { "name": "n1" },
                              "spec": { "drivers": [{ "name": "kvol.io", "nodeID": "" }] } });
    let bad_name = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "Bad_Name" } });
    let bad_label = json!({ "apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": { "name": "bad-label", "labels": { "app": "no spaces" } } });
    let bad_finalizer = json!({ "apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": { "name": "bad-finalizer", "finalizers": ["not a finalizer!"] } });
    let long_name = "a".repeat(254);
    let too_long = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": long_name } });
    vec![
        Invalid {
            what: "PV without capacity",
            collection: PVS,
            body: no_capacity,
            field: "spec.capacity",
            message: "spec.capacity: Required value",
        },
        Invalid {
            what: "PV with two sources",
            collection: PVS,
            body: two_sources,
            field: "spec.nfs",
            message: "may not specify more than 1 volume type",
        },
        Invalid {
            what: "PV without a source",
            collection: PVS,
            body: no_source,
            field: "spec",
            message: "must specify a volume type",
        },
        Invalid {
            what: "PV with a bad access mode",
            collection: PVS,
            body: bad_mode,
            field: "spec.accessModes",
            message: "Unsupported value: \"Sometimes\"",
        },
        Invalid {
            what: "PVC without access modes",
            collection: "/api/v1/namespaces/default/persistentvolumeclaims",
            body: no_modes,
            field: "spec.accessModes",
            message: "at least 1 access mode is required",
        },
        Invalid {
            what: "PVC with a bad volumeMode",
            collection: "/api/v1/namespaces/default/persistentvolumeclaims",
            body: bad_volume_mode,
            field: "spec.volumeMode",
            message: "Unsupported value: \"Sideways\"",
        },
        Invalid {
            what: "Pod with duplicate volume names",
            collection: PODS,
            body: dup_volumes,
            field: "spec.volumes[1].name",
            message: "Duplicate value: \"v\"",
        },
        Invalid {
            what: "Pod mounting a missing volume",
            collection: PODS,
            body: missing_mount,
            field: "spec.containers[0].volumeMounts[0].name",
            message: "Not found: \"nope\"",
        },
        Invalid {
            what: "Pod with a bad hostPath type",
            collection: PODS,
            body: bad_host_path_type,
            field: "spec.volumes[0].hostPath.type",
            message: "Unsupported value: \"Dir\"",
        },
        Invalid {
            what: "Pod volume with two sources",
            collection: PODS,
            body: two_pod_sources,
            field: "spec.volumes[0].emptyDir",
            message: "may not specify more than 1 volume type",
        },
        Invalid {
            what: "StorageClass without provisioner",
            collection: "/apis/storage.k8s.io/v1/storageclasses",
            body: no_provisioner,
            field: "provisioner",
            message: "provisioner: Required value",
        },
        Invalid {
            what: "StorageClass with a bad reclaimPolicy",
            collection: "/apis/storage.k8s.io/v1/storageclasses",
            body: bad_reclaim,
            field: "reclaimPolicy",
            message: "Unsupported value: \"Shred\"",
        },
        Invalid {
            what: "StorageClass with a bad volumeBindingMode",
            collection: "/apis/storage.k8s.io/v1/storageclasses",
            body: bad_binding,
            field: "volumeBindingMode",
            message: "Unsupported value: \"Later\"",
        },
        Invalid {
            what: "ConfigMap with a bad key",
            collection: CMS,
            body: bad_key,
            field: "data[a/b]",
            message: "a valid config key must consist of",
        },
        Invalid {
            what: "Secret with a bad key",
            collection: "/api/v1/namespaces/default/secrets",
            body: bad_secret_key,
            field: "data[a b]",
            message: "a valid config key must consist of",
        },
        Invalid {
            what: "ConfigMap with a bad name",
            collection: CMS,
            body: bad_name,
            field: "metadata.name",
            message: "a lowercase RFC 1123 subdomain",
        },
        Invalid {
            what: "ConfigMap with a bad label value",
            collection: CMS,
            body: bad_label,
            field: "metadata.labels",
            message: "Invalid value: \"no spaces\"",
        },
        Invalid {
            what: "ConfigMap with a bad finalizer",
            collection: CMS,
            body: bad_finalizer,
            field: "metadata.finalizers",
            message: "Invalid value: \"not a finalizer!\"",
        },
        Invalid {
            what: "ConfigMap with a 254-character name",
            collection: CMS,
            body: too_long,
            field: "metadata.name",
            message: "must be no more than 253 characters",
        },
        Invalid {
            what: "Node with a bad taint effect",
            collection: "/api/v1/nodes",
            body: bad_taint,
            field: "spec.taints[0].effect",
            message: "Unsupported value: \"Sometimes\"",
        },
        Invalid {
            what: "Namespace with a bad name",
            collection: "/api/v1/namespaces",
            body: bad_namespace,
            field: "metadata.name",
            message: "a lowercase RFC 1123 label",
        },
        Invalid {
            what: "Event with a bad type",
            collection: "/api/v1/namespaces/default/events",
            body: bad_event,
            field: "type",
            message: "Unsupported value: \"Loud\"",
        },
        Invalid {
            what: "VolumeAttachment without attacher",
            collection: "/apis/storage.k8s.io/v1/volumeattachments",
            body: no_attacher,
            field: "spec.attacher",
            message: "Required value",
        },
        Invalid {
            what: "VolumeAttachment without a source",
            collection: "/apis/storage.k8s.io/v1/volumeattachments",
            body: no_va_source,
            field: "spec.source",
            message: "Required value",
        },
        Invalid {
            what: "CSIDriver with a bad fsGroupPolicy",
            collection: "/apis/storage.k8s.io/v1/csidrivers",
            body: bad_driver,
            field: "spec.fsGroupPolicy",
            message: "Unsupported value: \"Sometimes\"",
        },
        Invalid {
            what: "CSINode driver without nodeID",
            collection: "/apis/storage.k8s.io/v1/csinodes",
            body: bad_csinode,
            field: "spec.drivers[0].nodeID",
            message: "Required value",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_objects_of_every_kind_are_refused_with_422_naming_the_field() {
    let server = Server::start().await;
    let mut failures = Vec::new();
    for case in invalid_cases() {
        let a = server.json("POST", case.collection, &case.body).await;
        if a.code != 422 {
            failures.push(format!("{}: expected 422, got {a:?}", case.what));
            continue;
        }
        let s = a.status();
        let message = s["message"].as_str().unwrap_or_default();
        if s["reason"] != "Invalid" {
            failures.push(format!("{}: reason {} is not Invalid", case.what, s["reason"]));
        }
        if !message.contains(case.field) || !message.contains(case.message) {
            failures.push(format!("{}: message {message:?} lacks {:?} or {:?}", case.what, case.field, case.message));
        }
        let causes: Vec<&str> =
            s["details"]["causes"].as_array().into_iter().flatten().filter_map(|c| c["field"].as_str()).collect();
        if !causes.contains(&case.field) {
            failures.push(format!("{}: causes {causes:?} lack the field {:?}", case.what, case.field));
        }
        let name = case.body["metadata"]["name"].as_str().unwrap_or_default();
        if s["details"]["name"] != name {
            failures.push(format!("{}: details.name is {} not {name:?}", case.what, s["details"]["name"]));
        }
    }
    server.assert_alive().await;
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        invalid_cases().len(),
        failures.join("\n")
    );
}

/// kube-apiserver names the missing request `spec.resources[storage]` (`ValidatePersistentVolumeClaimSpec`:
/// `fldPath.Child("resources").Key(string(core.ResourceStorage))`), and clients match on that text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_without_a_storage_request_is_refused_naming_spec_resources_storage_as_kube_does() {
    let server = Server::start().await;
    let mut no_request = pvc("no-request");
    no_request["spec"]["resources"] = json!({});
    let a = server.json("POST", "/api/v1/namespaces/default/persistentvolumeclaims", &no_request).await;
    let s = a.assert_failure(
        422,
        "PersistentVolumeClaim \"no-request\" is invalid: spec.resources[storage]: Required value",
    );
    assert_eq!(s["details"]["causes"][0]["field"], "spec.resources[storage]");
    let mut zero = pvc("zero");
    zero["spec"]["resources"]["requests"]["storage"] = json!("0");
    let a = server.json("POST", "/api/v1/namespaces/default/persistentvolumeclaims", &zero).await;
    a.assert_failure(422, "spec.resources[storage]: Invalid value: \"0\": must be greater than zero");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_updates_are_refused_and_leave_the_object_unchanged() {
    let server = Server::start().await;
    let classes: Api<StorageClass> = Api::all(server.client.clone());
    let created = classes.create(&PostParams::default(), &typed(sc("fast", false))).await.unwrap();
    let mut changed = created.clone();
    changed.provisioner = "kvol.io/other".into();
    let s = api_status(classes.replace("fast", &PostParams::default(), &changed).await);
    assert_eq!(s.code, 422, "{s:?}");
    assert!(s.message.contains("provisioner: Forbidden: updates to provisioner are forbidden."), "{}", s.message);
    let pvs: Api<PersistentVolume> = Api::all(server.client.clone());
    let pv1 = pvs.create(&PostParams::default(), &typed(pv("pv1"))).await.unwrap();
    let mut bad = pv1.clone();
    bad.spec.as_mut().unwrap().access_modes = Some(vec!["Sometimes".into()]);
    let s = api_status(pvs.replace("pv1", &PostParams::default(), &bad).await);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
    let now = pvs.get("pv1").await.unwrap();
    assert_eq!(now.metadata.resource_version, pv1.metadata.resource_version);
    assert_eq!(classes.get("fast").await.unwrap().provisioner, "kvol.io/hostpath");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_are_applied_on_create() {
    let server = Server::start().await;
    let pvs: Api<PersistentVolume> = Api::all(server.client.clone());
    let pv1 = pvs.create(&PostParams::default(), &typed(pv("pv1"))).await.unwrap();
    let spec = pv1.spec.unwrap();
    assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
    assert_eq!(spec.volume_mode.as_deref(), Some("Filesystem"));
    assert_eq!(pv1.metadata.generation, Some(1));
    assert!(pv1.metadata.uid.is_some() && pv1.metadata.creation_timestamp.is_some());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(server.client.clone(), "default");
    let c = claims.create(&PostParams::default(), &typed(pvc("c1"))).await.unwrap();
    assert_eq!(c.spec.unwrap().volume_mode.as_deref(), Some("Filesystem"));
    let classes: Api<StorageClass> = Api::all(server.client.clone());
    let class = classes.create(&PostParams::default(), &typed(sc("fast", false))).await.unwrap();
    assert_eq!(class.reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(class.volume_binding_mode.as_deref(), Some("Immediate"));
}

// ---------------------------------------------------------------------------------------------------------
// Watch

/// The next non-bookmark event, within `secs` seconds.
async fn next_event<K, S>(stream: &mut S, secs: u64) -> WatchEvent<K>
where
    S: futures::Stream<Item = Result<WatchEvent<K>, kube::Error>> + Unpin,
{
    loop {
        let e = tokio::time::timeout(Duration::from_secs(secs), stream.next())
            .await
            .unwrap_or_else(|_| panic!("no watch event within {secs} s"))
            .expect("the watch stream ended")
            .expect("watch event decodes");
        if !matches!(e, WatchEvent::Bookmark(_)) {
            return e;
        }
    }
}

fn event_summary(e: &WatchEvent<ConfigMap>) -> (String, String) {
    match e {
        WatchEvent::Added(o) => ("ADDED".into(), o.metadata.name.clone().unwrap_or_default()),
        WatchEvent::Modified(o) => ("MODIFIED".into(), o.metadata.name.clone().unwrap_or_default()),
        WatchEvent::Deleted(o) => ("DELETED".into(), o.metadata.name.clone().unwrap_or_default()),
        WatchEvent::Bookmark(b) => ("BOOKMARK".into(), b.metadata.resource_version.clone()),
        WatchEvent::Error(s) => ("ERROR".into(), format!("{} {}", s.code, s.message)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumed_from_a_resource_version_sees_exactly_the_later_events() {
    let server = Server::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    cms.create(&PostParams::default(), &typed(cm("a"))).await.unwrap();
    let b = cms.create(&PostParams::default(), &typed(cm("b"))).await.unwrap();
    let from = b.metadata.resource_version.clone().unwrap();
    cms.create(&PostParams::default(), &typed(cm("c"))).await.unwrap();
    let mut a = cms.get("a").await.unwrap();
    a.data = Some([("k".to_string(), "changed".to_string())].into());
    let a = cms.replace("a", &PostParams::default(), &a).await.unwrap();
    cms.delete("b", &DeleteParams::default()).await.unwrap();
    let mut stream = cms.watch(&WatchParams::default().disable_bookmarks(), &from).await.unwrap().boxed();
    let mut seen = Vec::new();
    let mut revisions = Vec::new();
    for _ in 0..3 {
        let e = next_event(&mut stream, 5).await;
        if let WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) = &e {
            revisions.push(o.metadata.resource_version.clone().unwrap().parse::<i64>().unwrap());
        }
        seen.push(event_summary(&e));
    }
    let expect = |t: &str, n: &str| (t.to_string(), n.to_string());
    assert_eq!(seen, vec![expect("ADDED", "c"), expect("MODIFIED", "a"), expect("DELETED", "b")]);
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "revisions not increasing: {revisions:?}");
    assert!(revisions[0] > from.parse::<i64>().unwrap());
    assert_eq!(revisions[1].to_string(), a.metadata.resource_version.unwrap());
    // Nothing else is pending: the next event is the one made now.
    cms.create(&PostParams::default(), &typed(cm("d"))).await.unwrap();
    assert_eq!(event_summary(&next_event(&mut stream, 5).await), expect("ADDED", "d"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_without_a_resource_version_starts_with_the_current_objects() {
    let server = Server::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    for n in ["x", "y"] {
        cms.create(&PostParams::default(), &typed(cm(n))).await.unwrap();
    }
    let mut stream = cms.watch(&WatchParams::default().disable_bookmarks(), "0").await.unwrap().boxed();
    let mut added = BTreeSet::new();
    for _ in 0..2 {
        match next_event(&mut stream, 5).await {
            WatchEvent::Added(o) => added.insert(o.metadata.name.unwrap()),
            other => panic!("expected ADDED, got {:?}", event_summary(&other)),
        };
    }
    assert_eq!(added, BTreeSet::from(["x".to_string(), "y".to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmarks_arrive_every_interval_and_their_resource_version_never_goes_backwards() {
    let server = Server::start_with(|c| c.bookmark_interval = Duration::from_secs(1)).await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let first = cms.create(&PostParams::default(), &typed(cm("w0"))).await.unwrap();
    let from = first.metadata.resource_version.unwrap();
    let mut stream = cms.watch(&WatchParams::default(), &from).await.unwrap().boxed();
    let writer = {
        let cms = cms.clone();
        tokio::spawn(async move {
            for i in 1..=12 {
                cms.create(&PostParams::default(), &typed(cm(&format!("w{i}")))).await.unwrap();
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let mut last: i64 = from.parse().unwrap();
    let mut bookmarks = 0;
    let mut events = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(4500);
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, stream.next()).await {
        let (kind, rv) = match e.expect("event decodes") {
            WatchEvent::Bookmark(b) => ("bookmark", b.metadata.resource_version),
            WatchEvent::Added(o) => ("added", o.metadata.resource_version.unwrap()),
            other => panic!("unexpected {:?}", event_summary_any(&other)),
        };
        let rv: i64 = rv.parse().expect("numeric resourceVersion");
        assert!(rv >= last, "{kind} at {rv} after {last}: the resourceVersion went backwards");
        if kind == "bookmark" {
            bookmarks += 1;
        } else {
            events += 1;
            assert!(rv > last, "event at {rv} not after {last}");
        }
        last = rv;
    }
    writer.await.unwrap();
    assert!(bookmarks >= 3, "only {bookmarks} bookmarks in 4.5 s with a 1 s interval");
    assert_eq!(events, 12, "every create arrives once");
}

fn event_summary_any<K: kube::Resource>(e: &WatchEvent<K>) -> String {
    match e {
        WatchEvent::Added(o) => format!("ADDED {:?}", o.meta().name),
        WatchEvent::Modified(o) => format!("MODIFIED {:?}", o.meta().name),
        WatchEvent::Deleted(o) => format!("DELETED {:?}", o.meta().name),
        WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
        WatchEvent::Error(s) => format!("ERROR {} {}", s.code, s.message),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_compacted_revision_gets_410_gone() {
    let server = Server::start_with(|c| c.store.max_history = 5).await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let first = cms.create(&PostParams::default(), &typed(cm("old"))).await.unwrap();
    let from = first.metadata.resource_version.unwrap();
    for i in 0..30 {
        cms.create(&PostParams::default(), &typed(cm(&format!("c{i}")))).await.unwrap();
    }
    let mut stream = eventually(10, "the history to be compacted", || {
        let cms = cms.clone();
        let from = from.clone();
        async move {
            let mut s = cms.watch(&WatchParams::default().disable_bookmarks(), &from).await.unwrap().boxed();
            match tokio::time::timeout(Duration::from_secs(5), s.next()).await {
                Ok(Some(Ok(WatchEvent::Error(status)))) => Some((status, s)),
                _ => None,
            }
        }
    })
    .await;
    let (status, ref mut rest) = stream;
    assert_eq!(status.code, 410, "{status:?}");
    assert_eq!(status.reason, "Expired", "{status:?}");
    assert!(status.message.contains("too old resource version"), "{}", status.message);
    // The stream ends after the error.
    let next = tokio::time::timeout(Duration::from_secs(5), rest.next()).await.expect("the watch ends");
    assert!(next.is_none(), "more after the 410: {next:?}");
    // A list still works and a watch from its revision is fine.
    let list = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 31);
    let rv = list.metadata.resource_version.unwrap();
    let mut s = cms.watch(&WatchParams::default().disable_bookmarks(), &rv).await.unwrap().boxed();
    cms.create(&PostParams::default(), &typed(cm("after"))).await.unwrap();
    assert_eq!(event_summary(&next_event(&mut s, 5).await), ("ADDED".to_string(), "after".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continue_token_from_a_compacted_revision_gets_410_gone() {
    let server = Server::start_with(|c| c.store.max_history = 5).await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    for i in 0..5 {
        cms.create(&PostParams::default(), &typed(cm(&format!("p{i}")))).await.unwrap();
    }
    let page = cms.list(&ListParams::default().limit(2)).await.unwrap();
    let token = page.metadata.continue_.clone().expect("a continue token");
    for i in 0..30 {
        cms.create(&PostParams::default(), &typed(cm(&format!("q{i}")))).await.unwrap();
    }
    let s = eventually(10, "the continue token to expire", || {
        let cms = cms.clone();
        let token = token.clone();
        async move {
            match cms.list(&ListParams::default().limit(2).continue_token(&token)).await {
                Err(kube::Error::Api(s)) => Some(s),
                _ => None,
            }
        }
    })
    .await;
    assert_eq!((s.code, s.reason.as_str()), (410, "Expired"), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_leaving_a_label_selector_is_deleted_from_the_watch() {
    let server = Server::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let wp = WatchParams::default().labels("app=web").disable_bookmarks();
    let mut stream = cms.watch(&wp, "0").await.unwrap().boxed();
    let mut other = cm("other");
    other["metadata"]["labels"] = json!({ "app": "db" });
    cms.create(&PostParams::default(), &typed(other)).await.unwrap();
    let mut web = cm("web");
    web["metadata"]["labels"] = json!({ "app": "web" });
    cms.create(&PostParams::default(), &typed(web)).await.unwrap();
    assert_eq!(event_summary(&next_event(&mut stream, 5).await), ("ADDED".into(), "web".into()));
    // A change that keeps the label: MODIFIED.
    let patch = json!({ "data": { "k": "v2" } });
    cms.patch("web", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    assert_eq!(event_summary(&next_event(&mut stream, 5).await), ("MODIFIED".into(), "web".into()));
    // Leaving the selector: DELETED, carrying the new state.
    let patch = json!({ "metadata": { "labels": { "app": "cache" } } });
    cms.patch("web", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    match next_event(&mut stream, 5).await {
        WatchEvent::Deleted(o) => assert_eq!(o.metadata.labels.unwrap()["app"], "cache"),
        other => panic!("expected DELETED, got {:?}", event_summary(&other)),
    }
    // Entering it: ADDED.
    let patch = json!({ "metadata": { "labels": { "app": "web" } } });
    cms.patch("other", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    assert_eq!(event_summary(&next_event(&mut stream, 5).await), ("ADDED".into(), "other".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_leaving_a_field_selector_is_deleted_from_the_watch() {
    let server = Server::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client.clone(), "default");
    let wp = WatchParams::default().fields("status.phase=Pending").disable_bookmarks();
    let mut stream = pods.watch(&wp, "0").await.unwrap().boxed();
    pods.create(&PostParams::default(), &typed(pod("p1", None))).await.unwrap();
    match next_event(&mut stream, 5).await {
        WatchEvent::Added(p) => assert_eq!(p.metadata.name.as_deref(), Some("p1")),
        other => panic!("expected ADDED, got {}", event_summary_any(&other)),
    }
    let status = json!({ "status": { "phase": "Running" } });
    pods.patch_status("p1", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&status)).await.unwrap();
    match next_event(&mut stream, 5).await {
        WatchEvent::Deleted(p) => assert_eq!(p.status.unwrap().phase.as_deref(), Some("Running")),
        other => panic!("expected DELETED, got {}", event_summary_any(&other)),
    }
    // A field selector on spec.nodeName works for lists too.
    pods.create(&PostParams::default(), &typed(pod("bound", Some("n1")))).await.unwrap();
    let on_n1 = pods.list(&ListParams::default().fields("spec.nodeName=n1")).await.unwrap();
    assert_eq!(names(&on_n1.items), vec!["bound"]);
    let s = api_status(pods.list(&ListParams::default().fields("spec.colour=red")).await);
    assert_eq!(s.code, 400);
    assert!(s.message.contains("field label not supported: spec.colour"), "{}", s.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_runtime_watcher_converges_on_the_list() {
    use kube::runtime::{reflector, watcher, WatchStreamExt};
    let server = Server::start_with(|c| c.bookmark_interval = Duration::from_secs(1)).await;
    let pvs: Api<PersistentVolume> = Api::all(server.client.clone());
    for i in 0..5 {
        pvs.create(&PostParams::default(), &typed(pv(&format!("pv{i}")))).await.unwrap();
    }
    let (reader, writer) = reflector::store();
    let stream =
        reflector(writer, watcher(pvs.clone(), watcher::Config::default())).default_backoff().touched_objects();
    let driver = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                panic!("watcher error: {e}");
            }
        }
    });
    reader.wait_until_ready().await.expect("the reflector becomes ready");
    for i in 5..10 {
        pvs.create(&PostParams::default(), &typed(pv(&format!("pv{i}")))).await.unwrap();
    }
    pvs.delete("pv0", &DeleteParams::default()).await.unwrap();
    pvs.delete("pv7", &DeleteParams::default()).await.unwrap();
    let patch = json!({ "metadata": { "labels": { "touched": "yes" } } });
    pvs.patch("pv3", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    let listed = pvs.list(&ListParams::default()).await.unwrap();
    let want: BTreeSet<(String, String)> = listed
        .items
        .iter()
        .map(|p| (p.metadata.name.clone().unwrap(), p.metadata.resource_version.clone().unwrap()))
        .collect();
    assert_eq!(want.len(), 8);
    eventually(10, "the reflector to match the list", || {
        let have: BTreeSet<(String, String)> = reader
            .state()
            .iter()
            .map(|p| (p.metadata.name.clone().unwrap(), p.metadata.resource_version.clone().unwrap()))
            .collect();
        let done = have == want;
        async move { done.then_some(()) }
    })
    .await;
    driver.abort();
}

// ---------------------------------------------------------------------------------------------------------
// Optimistic concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_with_a_stale_resource_version_gets_409_conflict() {
    let server = Server::start().await;
    let pvs: Api<PersistentVolume> = Api::all(server.client.clone());
    let stale = pvs.create(&PostParams::default(), &typed(pv("pv1"))).await.unwrap();
    let mut fresh = stale.clone();
    fresh.metadata.labels = Some([("a".to_string(), "1".to_string())].into());
    pvs.replace("pv1", &PostParams::default(), &fresh).await.unwrap();
    let mut late = stale.clone();
    late.metadata.labels = Some([("a".to_string(), "2".to_string())].into());
    let s = api_status(pvs.replace("pv1", &PostParams::default(), &late).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        s.message,
        "Operation cannot be fulfilled on persistentvolumes \"pv1\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(pvs.get("pv1").await.unwrap().metadata.labels.unwrap()["a"], "1");
    // A patch pinning the stale version is refused the same way.
    let patch = json!({ "metadata": { "resourceVersion": stale.metadata.resource_version, "labels": { "a": "3" } } });
    let s = api_status(pvs.patch("pv1", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await);
    assert_eq!(s.code, 409, "{s:?}");
    // A delete with a stale precondition too.
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: stale.metadata.resource_version.clone(),
            uid: None,
        }),
        ..Default::default()
    };
    let s = api_status(pvs.delete("pv1", &dp).await);
    assert_eq!(s.code, 409, "{s:?}");
    pvs.get("pv1").await.expect("still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_updates_from_one_version_exactly_one_wins() {
    let server = Server::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let base = cms.create(&PostParams::default(), &typed(cm("race"))).await.unwrap();
    for round in 0..3 {
        let base = cms.get("race").await.unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let cms = cms.clone();
                let mut mine = base.clone();
                mine.data = Some([("k".to_string(), format!("{round}-{i}"))].into());
                tokio::spawn(async move { (i, cms.replace("race", &PostParams::default(), &mine).await) })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            let (i, r) = t.await.unwrap();
            match r {
                Ok(_) => winners.push(i),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => panic!("writer {i}: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let now = cms.get("race").await.unwrap();
        assert_eq!(now.data.unwrap()["k"], format!("{round}-{}", winners[0]));
    }
    let _ = base;
}

// ---------------------------------------------------------------------------------------------------------
// Finalizers and graceful deletion

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_with_finalizers_is_marked_on_delete_and_goes_when_the_last_finalizer_is_removed() {
    let server = Server::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let mut held = cm("held");
    held["metadata"]["finalizers"] = json!(["kvol.io/a", "kvol.io/b"]);
    cms.create(&PostParams::default(), &typed(held)).await.unwrap();
    let answer = cms.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = answer.left().expect("a delete held by finalizers answers the object");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(0));
    let now = cms.get("held").await.expect("kept while finalizers remain");
    assert!(now.metadata.deletion_timestamp.is_some());
    // Deleting again changes nothing.
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    assert_eq!(cms.get("held").await.unwrap().metadata.deletion_timestamp, now.metadata.deletion_timestamp);
    // Other changes are still allowed, adding a finalizer is not.
    let mut more = cms.get("held").await.unwrap();
    more.metadata.finalizers.as_mut().unwrap().push("kvol.io/c".into());
    let s = api_status(cms.replace("held", &PostParams::default(), &more).await);
    assert_eq!(s.code, 422, "{s:?}");
    assert!(s.message.contains("no new finalizers can be added if the object is being deleted"), "{}", s.message);
    // Removing one finalizer keeps it; removing the last deletes it.
    let mut one = cms.get("held").await.unwrap();
    one.metadata.finalizers = Some(vec!["kvol.io/b".into()]);
    cms.replace("held", &PostParams::default(), &one).await.unwrap();
    assert!(cms.get("held").await.is_ok());
    let mut none = cms.get("held").await.unwrap();
    none.metadata.finalizers = None;
    cms.replace("held", &PostParams::default(), &none).await.unwrap();
    let s = api_status(cms.get("held").await);
    assert_eq!(s.code, 404);
    assert_eq!(s.message, "configmaps \"held\" not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_the_finalized_object_deleted() {
    let server = Server::start().await;
    let pvs: Api<PersistentVolume> = Api::all(server.client.clone());
    let mut held = pv("held");
    held["metadata"]["finalizers"] = json!(["kubernetes.io/pv-protection"]);
    let created = pvs.create(&PostParams::default(), &typed(held)).await.unwrap();
    let mut stream = pvs
        .watch(&WatchParams::default().disable_bookmarks(), created.metadata.resource_version.as_deref().unwrap())
        .await
        .unwrap()
        .boxed();
    pvs.delete("held", &DeleteParams::default()).await.unwrap();
    match next_event(&mut stream, 5).await {
        WatchEvent::Modified(p) => assert!(p.metadata.deletion_timestamp.is_some()),
        other => panic!("expected MODIFIED, got {}", event_summary_any(&other)),
    }
    let patch = json!({ "metadata": { "finalizers": null } });
    pvs.patch("held", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    match next_event(&mut stream, 5).await {
        WatchEvent::Deleted(p) => assert_eq!(p.metadata.name.as_deref(), Some("held")),
        other => panic!("expected DELETED, got {}", event_summary_any(&other)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_bound_to_a_node_is_deleted_gracefully_and_an_unbound_one_at_once() {
    let server = Server::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client.clone(), "default");
    for (name, node) in [("bound", Some("n1")), ("unbound", None), ("forced", Some("n1"))] {
        pods.create(&PostParams::default(), &typed(pod(name, node))).await.unwrap();
    }
    let r = pods.delete("bound", &DeleteParams::default()).await.unwrap();
    let marked = r.left().expect("a graceful delete answers the pod");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    assert!(pods.get("bound").await.unwrap().metadata.deletion_timestamp.is_some());
    let r = pods.delete("unbound", &DeleteParams::default()).await.unwrap();
    assert!(r.is_right(), "an unbound pod is deleted at once");
    assert_eq!(api_status(pods.get("unbound").await).code, 404);
    pods.delete("forced", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    assert_eq!(api_status(pods.get("forced").await).code, 404);
    // A negative grace period is the shortest graceful one, as in kube.
    pods.create(&PostParams::default(), &typed(pod("negative", Some("n1")))).await.unwrap();
    let a = server.request("DELETE", "/api/v1/namespaces/default/pods/negative?gracePeriodSeconds=-5", None, "").await;
    assert_eq!(a.code, 200, "{a:?}");
    assert_eq!(a.json()["metadata"]["deletionGracePeriodSeconds"], 1, "{a:?}");
    // The node agent ends the grace period with a delete of grace 0.
    pods.delete("bound", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    assert_eq!(api_status(pods.get("bound").await).code, 404);
}

// ---------------------------------------------------------------------------------------------------------
// Default StorageClass admission

async fn claim_class(server: &Server, name: &str, class: Option<&str>) -> Option<String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(server.client.clone(), "default");
    let mut c = pvc(name);
    if let Some(class) = class {
        c["spec"]["storageClassName"] = json!(class);
    }
    let created = claims.create(&PostParams::default(), &typed(c)).await.unwrap();
    created.spec.unwrap().storage_class_name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_get_the_default_storage_class_and_the_newest_default_wins() {
    let server = Server::start().await;
    let classes: Api<StorageClass> = Api::all(server.client.clone());
    assert_eq!(claim_class(&server, "none-yet", None).await, None, "no default class: nothing is set");
    classes.create(&PostParams::default(), &typed(sc("plain", false))).await.unwrap();
    assert_eq!(claim_class(&server, "not-default", None).await, None, "a class that is not default is not used");
    classes.create(&PostParams::default(), &typed(sc("b-old", true))).await.unwrap();
    assert_eq!(claim_class(&server, "one", None).await.as_deref(), Some("b-old"));
    // Creation times have second precision: the next default must be a second newer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    classes.create(&PostParams::default(), &typed(sc("c-new", true))).await.unwrap();
    assert_eq!(claim_class(&server, "two", None).await.as_deref(), Some("c-new"), "the newest default wins");
    assert_eq!(claim_class(&server, "explicit", Some("plain")).await.as_deref(), Some("plain"));
    assert_eq!(claim_class(&server, "empty", Some("")).await.as_deref(), Some(""), "an explicit \"\" is kept");
    // Two defaults created in the same second: the first by name wins.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (y, x) = loop {
        let now = jiff::Timestamp::now();
        if now.subsec_nanosecond() > 700_000_000 {
            tokio::time::sleep(Duration::from_millis(350)).await;
            continue;
        }
        let y = classes.create(&PostParams::default(), &typed(sc("y-tie", true))).await.unwrap();
        let x = classes.create(&PostParams::default(), &typed(sc("x-tie", true))).await.unwrap();
        if y.metadata.creation_timestamp == x.metadata.creation_timestamp {
            break (y, x);
        }
        classes.delete("y-tie", &DeleteParams::default()).await.unwrap();
        classes.delete("x-tie", &DeleteParams::default()).await.unwrap();
    };
    assert!(y.metadata.creation_timestamp > classes.get("c-new").await.unwrap().metadata.creation_timestamp);
    assert_eq!(claim_class(&server, "tie", None).await.as_deref(), Some("x-tie"));
    let _ = x;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_beta_class_annotation_counts_as_a_class() {
    let server = Server::start().await;
    let classes: Api<StorageClass> = Api::all(server.client.clone());
    classes.create(&PostParams::default(), &typed(sc("default", true))).await.unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(server.client.clone(), "default");
    let mut c = pvc("beta");
    c["metadata"]["annotations"] = json!({ "volume.beta.kubernetes.io/storage-class": "gold" });
    let created = claims.create(&PostParams::default(), &typed(c)).await.unwrap();
    assert_eq!(created.spec.unwrap().storage_class_name, None);
}

// ---------------------------------------------------------------------------------------------------------
// Names, namespaces, lists

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_name_gives_unique_names_with_the_prefix() {
    let server = Server::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let mut seen = BTreeSet::new();
    for _ in 0..5 {
        let body = json!({ "metadata": { "generateName": "gen-" }, "data": { "a": "b" } });
        let created = cms.create(&PostParams::default(), &typed(body)).await.unwrap();
        let name = created.metadata.name.unwrap();
        assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
        assert!(seen.insert(name));
    }
    // A name wins over generateName.
    let body = json!({ "metadata": { "name": "fixed", "generateName": "gen-" } });
    assert_eq!(cms.create(&PostParams::default(), &typed(body)).await.unwrap().metadata.name.unwrap(), "fixed");
    // Neither: 422 naming metadata.name.
    let a = server.json("POST", CMS, &json!({ "metadata": {} })).await;
    let s = a.assert_failure(422, "metadata.name: Required value: name or generateName is required");
    assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_in_a_missing_namespace_gets_404_naming_the_namespace() {
    let server = Server::start().await;
    let a = server.json("POST", "/api/v1/namespaces/nope/configmaps", &cm("x")).await;
    let s = a.assert_failure(404, "namespaces \"nope\" not found");
    assert_eq!(s["reason"], "NotFound");
    assert_eq!(s["message"], "namespaces \"nope\" not found");
    // A body namespace that differs from the URL's is refused.
    let mut other = cm("y");
    other["metadata"]["namespace"] = json!("kube-system");
    server.json("POST", CMS, &other).await.assert_failure(400, "does not match the namespace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_across_namespaces_include_every_namespace() {
    let server = Server::start().await;
    let namespaces: Api<Namespace> = Api::all(server.client.clone());
    for ns in ["team-a", "team-b"] {
        let body = json!({ "metadata": { "name": ns } });
        namespaces.create(&PostParams::default(), &typed(body)).await.unwrap();
        let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), ns);
        cms.create(&PostParams::default(), &typed(cm("settings"))).await.unwrap();
    }
    let all: Api<ConfigMap> = Api::all(server.client.clone());
    let listed = all.list(&ListParams::default()).await.unwrap();
    let found: BTreeSet<(String, String)> = listed
        .items
        .iter()
        .map(|c| (c.metadata.namespace.clone().unwrap(), c.metadata.name.clone().unwrap()))
        .collect();
    assert!(found.contains(&("team-a".into(), "settings".into())), "{found:?}");
    assert!(found.contains(&("team-b".into(), "settings".into())), "{found:?}");
    let only_a: Api<ConfigMap> = Api::namespaced(server.client.clone(), "team-a");
    assert_eq!(names(&only_a.list(&ListParams::default()).await.unwrap().items), vec!["settings"]);
    let selected = all.list(&ListParams::default().fields("metadata.namespace=team-b")).await.unwrap();
    assert_eq!(selected.items.len(), 1);
    assert_eq!(selected.items[0].metadata.namespace.as_deref(), Some("team-b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_with_limit_and_continue_returns_every_object_exactly_once() {
    let server = Server::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    for i in 0..25 {
        cms.create(&PostParams::default(), &typed(cm(&format!("cm-{i:02}")))).await.unwrap();
    }
    for (what, selector) in [("plain", None), ("with a selector", Some("metadata.namespace=default"))] {
        let mut seen = Vec::new();
        let mut pages = Vec::new();
        let mut token: Option<String> = None;
        let mut first_rv = None;
        loop {
            let mut lp = ListParams::default().limit(10);
            if let Some(s) = selector {
                lp = lp.fields(s);
            }
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = cms.list(&lp).await.unwrap();
            pages.push(page.items.len());
            seen.extend(names(&page.items));
            let rv = first_rv.get_or_insert(page.metadata.resource_version.clone());
            assert_eq!(*rv, page.metadata.resource_version, "{what}: every page is read at the first page's revision");
            if selector.is_none() && page.metadata.continue_.is_some() {
                let remaining = page.metadata.remaining_item_count.expect("remainingItemCount");
                assert_eq!(remaining as usize, 25 - seen.len(), "{what}");
            }
            // Changes between pages do not show in later pages: they are after the list's revision.
            if pages.len() == 1 {
                cms.create(&PostParams::default(), &typed(cm(&format!("late-{}", what.len())))).await.unwrap();
                cms.delete("cm-24", &DeleteParams::default()).await.unwrap();
                let patch = json!({ "data": { "k": "changed" } });
                cms.patch("cm-23", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
            }
            if let Some(c) = page.items.iter().find(|c| c.metadata.name.as_deref() == Some("cm-23")) {
                assert_eq!(c.data.as_ref().unwrap()["k"], "v", "{what}: cm-23 as of the first page");
            }
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        assert_eq!(pages, vec![10, 10, 5], "{what}");
        let unique: BTreeSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), 25, "{what}: duplicates in {seen:?}");
        assert!(seen.iter().all(|n| n.starts_with("cm-")), "{what}: {seen:?}");
        assert!(seen.contains(&"cm-24".to_string()), "{what}: an object deleted after the first page is still listed");
        // Undo the changes for the next pass.
        cms.delete(&format!("late-{}", what.len()), &DeleteParams::default()).await.unwrap();
        cms.create(&PostParams::default(), &typed(cm("cm-24"))).await.unwrap();
        let patch = json!({ "data": { "k": "v" } });
        cms.patch("cm-23", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------------------
// Authentication, files, restart

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_token_or_with_a_bad_one_get_401() {
    let server = Server::start().await;
    for token in [None, Some("not-a-token")] {
        let client = server.client_with_token(token).await;
        for path in ["/api/v1/persistentvolumes", "/api", "/version"] {
            let a = util::send(&client, "GET", path, None, Vec::new()).await;
            assert_eq!(a.code, 401, "{token:?} {path}: {a:?}");
            let s = a.status();
            assert_eq!(s["reason"], "Unauthorized");
        }
        let a = util::send(&client, "POST", CMS, Some("application/json"), cm("x").to_string().into_bytes()).await;
        assert_eq!(a.code, 401);
    }
    assert_eq!(server.get(CMS).await.json()["items"], json!([]), "the refused create wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unix_socket_works_without_a_token() {
    let server = Server::start().await;
    server.json("POST", CMS, &cm("via-tls")).await;
    let (code, body) =
        util::unix_request(&server.socket(), "GET", "/api/v1/namespaces/default/configmaps/via-tls").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"via-tls\""), "{body}");
    let mode = std::fs::metadata(server.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubeconfig_and_token_file_are_private() {
    let server = Server::start().await;
    for file in ["kubeconfig", "tokens.csv"] {
        let mode = std::fs::metadata(server.data_dir.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} mode {mode:o}");
    }
    let dir_mode = std::fs::metadata(&server.data_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
}

/// Issue 17, defect 8: the store's files were 0644 and `pki/` 0755 (only the data directory's 0700 protected
/// them). They are private, and a data directory from an older kvol is tightened at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_files_and_pki_are_private_also_after_an_older_kvol() {
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let server = Server::start().await;
    server.json("POST", CMS, &cm("written")).await;
    let data = server.data_dir.clone();
    let private = [(data.join("kvol.db"), 0o600), (data.join("kvol.db-wal"), 0o600), (data.join("pki"), 0o700)];
    for (path, want) in &private {
        assert_eq!(mode(path), *want, "{}", path.display());
    }
    let dir = server.stop();
    for (path, _) in &private {
        if path.exists() {
            let loose = if path.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(loose)).unwrap();
        }
    }
    let server = Server::start_in(dir, |_| {}).await;
    assert_eq!(server.get(&format!("{CMS}/written")).await.code, 200);
    server.json("POST", CMS, &cm("again")).await;
    for (path, want) in &private {
        assert_eq!(mode(path), *want, "{} after a restart", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_survive_a_restart_and_stopping_removes_the_kubeconfig_and_socket() {
    let server = Server::start().await;
    let pvs: Api<PersistentVolume> = Api::all(server.client.clone());
    let created = pvs.create(&PostParams::default(), &typed(pv("keep"))).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    cms.create(&PostParams::default(), &typed(cm("keep"))).await.unwrap();
    cms.delete("keep", &DeleteParams::default()).await.unwrap();
    let token = server.token();
    let data_dir = server.data_dir.clone();
    let dir = server.stop();
    assert!(!data_dir.join("kubeconfig").exists(), "kubeconfig left after stop");
    assert!(!data_dir.join("kvol.sock").exists(), "socket left after stop");
    let server = Server::start_in(dir, |_| {}).await;
    assert_eq!(server.token(), token, "the admin token is kept");
    let pvs: Api<PersistentVolume> = Api::all(server.client.clone());
    let again = pvs.get("keep").await.unwrap();
    assert_eq!(again.metadata.uid, created.metadata.uid);
    assert_eq!(again.metadata.resource_version, created.metadata.resource_version);
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    assert_eq!(api_status(cms.get("keep").await).code, 404, "the delete survives too");
    // The revision goes on from where it was.
    let next = pvs.create(&PostParams::default(), &typed(pv("next"))).await.unwrap();
    let rv = |p: &PersistentVolume| p.metadata.resource_version.clone().unwrap().parse::<i64>().unwrap();
    assert!(rv(&next) > rv(&again));
}

// ---------------------------------------------------------------------------------------------------------
// Bad input

struct Bad {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    code: u16,
    message: &'static str,
}

fn bad_inputs() -> Vec<Bad> {
    let json = |v: Value| serde_json::to_vec(&v).unwrap();
    let mut wrong_type = pv("wrong-type");
    wrong_type["spec"]["capacity"] = json!(5);
    let mut bad_quantity = pv("bad-quantity");
    bad_quantity["spec"]["capacity"]["storage"] = json!("1Gx");
    let mut strict = pv("strict");
    strict["spec"]["foo"] = json!(1);
    let mut bad_name = pv("Not_DNS");
    bad_name["metadata"]["name"] = json!("Not_DNS");
    let mut wrong_version = pv("wrong-version");
    wrong_version["apiVersion"] = json!("storage.k8s.io/v3");
    let mut wrong_kind = pv("wrong-kind");
    wrong_kind["kind"] = json!("Pod");
    let mut other_name = cm("other-name");
    other_name["metadata"]["resourceVersion"] = json!("1");
    let mut stale = cm("target");
    stale["metadata"]["resourceVersion"] = json!("1");
    let mut big = cm("big");
    big["data"]["k"] = json!("x".repeat(3 * 1024 * 1024 + 10));
    let mut bad_pod_quantity = pod("bad-limits", None);
    bad_pod_quantity["spec"]["containers"][0]["resources"] = json!({ "limits": { "memory": "lots" } });
    let mut wrong_nested = pod("wrong-nested", None);
    wrong_nested["spec"]["containers"][0]["ports"] = json!([{ "containerPort": "eighty" }]);
    vec![
        Bad {
            what: "malformed JSON",
            method: "POST",
            path: PVS,
            content_type: Some("application/json"),
            body: b"{\"apiVersion\": \"v1\", ".to_vec(),
            code: 400,
            message: "JSON",
        },
        Bad {
            what: "malformed YAML",
            method: "POST",
            path: PVS,
            content_type: Some("application/yaml"),
            body: b"apiVersion: v1\nkind: [PersistentVolume\n  metadata: {".to_vec(),
            code: 400,
            message: "YAML",
        },
        Bad {
            what: "YAML that is not an object",
            method: "POST",
            path: PVS,
            content_type: Some("application/yaml"),
            body: b"- a\n- b\n".to_vec(),
            code: 400,
            message: "cannot be handled as a PersistentVolume",
        },
        Bad {
            what: "a JSON string",
            method: "POST",
            path: CMS,
            content_type: Some("application/json"),
            body: b"\"hello\"".to_vec(),
            code: 400,
            message: "cannot be handled as a ConfigMap",
        },
        Bad {
            what: "an empty body",
            method: "POST",
            path: CMS,
            content_type: Some("application/json"),
            body: Vec::new(),
            code: 400,
            message: "JSON",
        },
        Bad {
            what: "binary garbage",
            method: "POST",
            path: CMS,
            content_type: Some("application/json"),
            body: vec![0xff, 0x00, 0xfe, 0x7b],
            code: 400,
            message: "JSON",
        },
        Bad {
            what: "a wrong type",
            method: "POST",
            path: PVS,
            content_type: Some("application/json"),
            body: json(wrong_type),
            code: 400,
            message: "spec.capacity",
        },
        Bad {
            what: "a wrong nested type",
            method: "POST",
            path: PODS,
            content_type: Some("application/json"),
            body: json(wrong_nested),
            code: 400,
            message: "spec.containers[0].ports[0].containerPort",
        },
        Bad {
            what: "an unknown field, strict",
            method: "POST",
            path: "/api/v1/persistentvolumes?fieldValidation=Strict",
            content_type: Some("application/json"),
            body: json(strict),
            code: 400,
            message: "strict decoding error: unknown field \"spec.foo\"",
        },
        Bad {
            what: "a bad fieldValidation",
            method: "POST",
            path: "/api/v1/persistentvolumes?fieldValidation=Loose",
            content_type: Some("application/json"),
            body: json(pv("loose")),
            code: 400,
            message: "fieldValidation",
        },
        Bad {
            what: "an invalid quantity",
            method: "POST",
            path: PVS,
            content_type: Some("application/json"),
            body: json(bad_quantity),
            code: 400,
            message: "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        },
        Bad {
            what: "an invalid pod quantity",
            method: "POST",
            path: PODS,
            content_type: Some("application/json"),
            body: json(bad_pod_quantity),
            code: 400,
            message: "quantities must match the regular expression",
        },
        Bad {
            what: "a name that is not DNS-1123",
            method: "POST",
            path: PVS,
            content_type: Some("application/json"),
            body: json(bad_name),
            code: 422,
            message: "metadata.name: Invalid value: \"Not_DNS\"",
        },
        Bad {
            what: "a body over 3 MiB",
            method: "POST",
            path: CMS,
            content_type: Some("application/json"),
            body: json(big),
            code: 413,
            message: "too large",
        },
        Bad {
            what: "a wrong apiVersion",
            method: "POST",
            path: PVS,
            content_type: Some("application/json"),
            body: json(wrong_version),
            code: 400,
            message: "storage.k8s.io/v3",
        },
        Bad {
            what: "a wrong kind",
            method: "POST",
            path: PVS,
            content_type: Some("application/json"),
            body: json(wrong_kind),
            code: 400,
            message: "Pod",
        },
        Bad {
            what: "a PUT whose name differs from the URL",
            method: "PUT",
            path: "/api/v1/namespaces/default/configmaps/target",
            content_type: Some("application/json"),
            body: json(other_name),
            code: 400,
            message: "does not match the name on the URL",
        },
        Bad {
            what: "a stale resourceVersion",
            method: "PUT",
            path: "/api/v1/namespaces/default/configmaps/target",
            content_type: Some("application/json"),
            body: json(stale),
            code: 409,
            message: "the object has been modified",
        },
        Bad {
            what: "an unknown media type",
            method: "POST",
            path: CMS,
            content_type: Some("application/x-www-form-urlencoded"),
            body: b"a=b".to_vec(),
            code: 415,
            message: "application/x-www-form-urlencoded",
        },
        Bad {
            what: "an unknown patch type",
            method: "PATCH",
            path: "/api/v1/namespaces/default/configmaps/target",
            content_type: Some("text/plain"),
            body: b"{}".to_vec(),
            code: 415,
            message: "text/plain",
        },
        Bad {
            what: "a malformed JSON patch",
            method: "PATCH",
            path: "/api/v1/namespaces/default/configmaps/target",
            content_type: Some("application/json-patch+json"),
            body: b"[{\"op\": \"jump\"}]".to_vec(),
            code: 400,
            message: "",
        },
        Bad {
            what: "a patch that breaks the type",
            method: "PATCH",
            path: "/api/v1/namespaces/default/configmaps/target",
            content_type: Some("application/merge-patch+json"),
            body: b"{\"data\": 7}".to_vec(),
            code: 400,
            message: "data",
        },
        Bad {
            what: "an unknown resource",
            method: "GET",
            path: "/api/v1/widgets",
            content_type: None,
            body: Vec::new(),
            code: 404,
            message: "could not find the requested resource",
        },
        Bad {
            what: "an unknown group version",
            method: "POST",
            path: "/apis/storage.k8s.io/v3/storageclasses",
            content_type: Some("application/json"),
            body: json(sc("v3", false)),
            code: 404,
            message: "could not find the requested resource",
        },
        Bad {
            what: "a bad label selector",
            method: "GET",
            path: "/api/v1/persistentvolumes?labelSelector=a%20in%20(",
            content_type: None,
            body: Vec::new(),
            code: 400,
            message: "",
        },
        Bad {
            what: "a bad continue token",
            method: "GET",
            path: "/api/v1/persistentvolumes?limit=1&continue=%%%",
            content_type: None,
            body: Vec::new(),
            code: 400,
            message: "continue",
        },
        Bad {
            what: "a bad resourceVersion to watch from",
            method: "GET",
            path: "/api/v1/persistentvolumes?watch=true&resourceVersion=abc",
            content_type: None,
            body: Vec::new(),
            code: 400,
            message: "abc",
        },
        Bad {
            what: "a malformed DeleteOptions",
            method: "DELETE",
            path: "/api/v1/namespaces/default/configmaps/target",
            content_type: Some("application/json"),
            body: b"{nope".to_vec(),
            code: 400,
            message: "DeleteOptions",
        },
        Bad {
            what: "a method the path does not support",
            method: "PUT",
            path: PVS,
            content_type: Some("application/json"),
            body: json(pv("x")),
            code: 405,
            message: "PUT",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_status_naming_the_problem_and_never_crashes_the_server() {
    let server = Server::start().await;
    server.json("POST", CMS, &cm("target")).await;
    let mut failures = Vec::new();
    for case in bad_inputs() {
        let a = server.request(case.method, case.path, case.content_type, case.body.clone()).await;
        if a.code != case.code {
            failures.push(format!("{}: expected {}, got {a:?}", case.what, case.code));
            continue;
        }
        let v: Value = match serde_json::from_slice(&a.body) {
            Ok(v) => v,
            Err(_) => {
                failures.push(format!("{}: not a Status: {a:?}", case.what));
                continue;
            }
        };
        if v["kind"] != "Status" || v["code"] != case.code || v["status"] != "Failure" {
            failures.push(format!("{}: not a failure Status with code {}: {a:?}", case.what, case.code));
        }
        let message = v["message"].as_str().unwrap_or_default();
        if message.is_empty() || !message.contains(case.message) {
            failures.push(format!("{}: message {message:?} lacks {:?}", case.what, case.message));
        }
        server.assert_alive().await;
    }
    // Nothing bad was stored.
    let pvs = server.get(PVS).await.json();
    assert_eq!(pvs["items"], json!([]), "a refused PV was stored");
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), bad_inputs().len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_get_a_warning_header_unless_strict_or_ignored() {
    let server = Server::start().await;
    let mut body = pv("warned");
    body["spec"]["foo"] = json!(1);
    body["metadata"]["colour"] = json!("red");
    let a = server.json("POST", PVS, &body).await;
    assert_eq!(a.code, 201, "{a:?}");
    let warnings = a.warnings().join("\n");
    assert!(
        warnings.contains("unknown field \\\"spec.foo\\\"") || warnings.contains("unknown field \"spec.foo\""),
        "{warnings}"
    );
    assert!(warnings.contains("metadata.colour"), "{warnings}");
    assert!(a.json()["spec"].get("foo").is_none(), "the unknown field is dropped");
    body["metadata"]["name"] = json!("ignored");
    let a = server.json("POST", "/api/v1/persistentvolumes?fieldValidation=Ignore", &body).await;
    assert_eq!(a.code, 201, "{a:?}");
    assert!(a.warnings().is_empty(), "{:?}", a.warnings());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_bodies_are_accepted() {
    let server = Server::start().await;
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: \"1\"\n";
    let a = server.request("POST", CMS, Some("application/yaml"), yaml).await;
    assert_eq!(a.code, 201, "{a:?}");
    assert_eq!(a.json()["data"]["a"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_without_a_resource_version_is_unconditional_and_a_garbage_one_is_refused() {
    let server = Server::start().await;
    server.json("POST", CMS, &cm("u")).await;
    let mut body = cm("u");
    body["data"]["k"] = json!("w");
    let a = server.json("PUT", "/api/v1/namespaces/default/configmaps/u", &body).await;
    assert_eq!(a.code, 200, "{a:?}");
    body["metadata"]["resourceVersion"] = json!("abc");
    let a = server.json("PUT", "/api/v1/namespaces/default/configmaps/u", &body).await;
    assert!(a.code == 400 || a.code == 409, "{a:?}");
    a.status();
    let a = server.json("PUT", "/api/v1/namespaces/default/configmaps/missing", &cm("missing")).await;
    a.assert_failure(404, "configmaps \"missing\" not found");
}

// ---------------------------------------------------------------------------------------------------------
// Property test of request decoding

mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    /// Every resource's collection and one item path.
    const TARGETS: &[(&str, &str)] = &[
        ("/api/v1/persistentvolumes", "/api/v1/persistentvolumes/fz"),
        ("/api/v1/namespaces/default/persistentvolumeclaims", "/api/v1/namespaces/default/persistentvolumeclaims/fz"),
        ("/api/v1/namespaces/default/pods", "/api/v1/namespaces/default/pods/fz"),
        ("/api/v1/namespaces/default/configmaps", "/api/v1/namespaces/default/configmaps/fz"),
        ("/api/v1/namespaces/default/secrets", "/api/v1/namespaces/default/secrets/fz"),
        ("/api/v1/nodes", "/api/v1/nodes/fz"),
        ("/api/v1/namespaces", "/api/v1/namespaces/fz"),
        ("/api/v1/namespaces/default/events", "/api/v1/namespaces/default/events/fz"),
        ("/apis/storage.k8s.io/v1/storageclasses", "/apis/storage.k8s.io/v1/storageclasses/fz"),
        ("/apis/storage.k8s.io/v1/volumeattachments", "/apis/storage.k8s.io/v1/volumeattachments/fz"),
        ("/apis/storage.k8s.io/v1/csidrivers", "/apis/storage.k8s.io/v1/csidrivers/fz"),
        ("/apis/storage.k8s.io/v1/csinodes", "/apis/storage.k8s.io/v1/csinodes/fz"),
    ];

    /// A valid object for each target, named `fz`.
    fn valid(i: usize) -> Value {
        match i {
            0 => pv("fz"),
            1 => pvc("fz"),
            2 => pod("fz", Some("n1")),
            3 => cm("fz"),
            4 => json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "fz" }, "data": { "a": "eA==" } }),
            5 => json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "fz" },
                         "status": { "capacity": { "cpu": "2" } } }),
            6 => json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "fz" } }),
            7 => json!({ "apiVersion": "v1", "kind": "Event", "metadata": { "name": "fz" },
                         "involvedObject": { "kind": "Pod", "name": "p", "namespace": "default" },
                         "type": "Normal", "reason": "R", "message": "m" }),
            8 => sc("fz", true),
            9 => json!({ "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment", "metadata": { "name": "fz" },
                         "spec": { "attacher": "kvol.io", "nodeName": "n1", "source": { "persistentVolumeName": "pv1" } } }),
            10 => json!({ "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": { "name": "fz" },
                          "spec": { "attachRequired": true } }),
            _ => json!({ "apiVersion": "storage.k8s.io/v1", "kind": "CSINode", "metadata": { "name": "fz" },
                         "spec": { "drivers": [{ "name": "kvol.io", "nodeID": "n1" }] } }),
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            prop_oneof![
                Just("1Gi"),
                Just("1Gx"),
                Just("-1"),
                Just("ReadWriteOnce"),
                Just("v1"),
                Just("fz"),
                Just("PersistentVolume"),
                Just("/tmp/x"),
                Just(""),
                Just("add"),
                Just("replace"),
                Just("remove"),
                Just("test"),
                Just("move"),
                Just("/metadata/name"),
                Just("/spec"),
                Just("/metadata/finalizers/-"),
                Just("/metadata/resourceVersion"),
                Just("/status/phase"),
                Just("$patch"),
                Just("delete")
            ]
            .prop_map(Value::from),
        ];
        let key = prop_oneof![
            Just("apiVersion".to_string()),
            Just("kind".to_string()),
            Just("metadata".to_string()),
            Just("spec".to_string()),
            Just("status".to_string()),
            Just("name".to_string()),
            Just("data".to_string()),
            Just("capacity".to_string()),
            Just("storage".to_string()),
            Just("finalizers".to_string()),
            Just("resourceVersion".to_string()),
            Just("op".to_string()),
            Just("path".to_string()),
            Just("value".to_string()),
            Just("from".to_string()),
            Just("$patch".to_string()),
            Just("gracePeriodSeconds".to_string()),
            "[a-zA-Z]{1,8}",
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A mutation of a valid object: one path replaced by an arbitrary value (or removed).
    fn mutate(mut obj: Value, choice: usize, replacement: Value, remove: bool) -> Value {
        let mut paths = Vec::new();
        collect_paths(&obj, &mut Vec::new(), &mut paths);
        let path = &paths[choice % paths.len()];
        let mut at = &mut obj;
        for (n, step) in path.iter().enumerate() {
            let last = n + 1 == path.len();
            match step {
                Step::Key(k) => {
                    let Some(map) = at.as_object_mut() else { break };
                    if last {
                        if remove {
                            map.remove(k);
                        } else {
                            map.insert(k.clone(), replacement.clone());
                        }
                        break;
                    }
                    at = map.get_mut(k).expect("collected path");
                }
                Step::Index(i) => {
                    let Some(list) = at.as_array_mut() else { break };
                    if last {
                        if remove {
                            list.remove(*i);
                        } else {
                            list[*i] = replacement.clone();
                        }
                        break;
                    }
                    at = &mut list[*i];
                }
            }
        }
        obj
    }

    #[derive(Clone, Debug)]
    enum Step {
        Key(String),
        Index(usize),
    }

    fn collect_paths(v: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    prefix.push(Step::Key(k.clone()));
                    out.push(prefix.clone());
                    collect_paths(child, prefix, out);
                    prefix.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    prefix.push(Step::Index(i));
                    out.push(prefix.clone());
                    collect_paths(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => {}
        }
    }

    #[derive(Debug, Clone)]
    enum Input {
        Json(Value),
        Bytes(Vec<u8>),
        Mutated { replacement: Value, choice: usize, remove: bool },
    }

    fn arb_input() -> impl Strategy<Value = (usize, bool, Input, u8, bool)> {
        let input = prop_oneof![
            arb_json().prop_map(Input::Json),
            prop::collection::vec(any::<u8>(), 0..256).prop_map(Input::Bytes),
            (arb_json(), any::<usize>(), any::<bool>()).prop_map(|(replacement, choice, remove)| Input::Mutated {
                replacement,
                choice,
                remove
            }),
        ];
        // Content 0-2: a body to create or replace; 3-5: a patch; 6: DeleteOptions.
        (0..TARGETS.len(), any::<bool>(), input, 0u8..7, prop::bool::weighted(0.2))
    }

    fn check(a: &util::Answer, what: &str) -> Result<(), TestCaseError> {
        // The one 5xx kube-apiserver gives for client input: a list or watch from a resourceVersion the
        // store has not reached (client-go relists on its ResourceVersionTooLarge cause).
        let too_large =
            a.code == 504 && String::from_utf8_lossy(&a.body).contains("Timeout: Too large resource version");
        prop_assert!(a.code < 500 || too_large, "{what}: server error {a:?}");
        if a.code >= 400 {
            let v: Value =
                serde_json::from_slice(&a.body).map_err(|_| TestCaseError::fail(format!("{what}: {a:?}")))?;
            prop_assert_eq!(&v["kind"], "Status", "{}: {:?}", what, a);
            prop_assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: no message: {a:?}");
        } else {
            prop_assert!((200..300).contains(&a.code), "{what}: {a:?}");
        }
        Ok(())
    }

    fn arb_query_value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z=!,()<> .\\-/0-9]{0,16}",
            Just("app in (a,b)".to_string()),
            Just("!app".to_string()),
            Just("metadata.name=x".to_string()),
            Just("spec.nodeName!=".to_string()),
            Just("a=b=c".to_string()),
            ".{0,8}",
        ]
    }

    #[test]
    fn arbitrary_list_queries_get_a_2xx_or_a_4xx_status_and_never_a_5xx() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let server = runtime.block_on(Server::start());
        runtime.block_on(server.json("POST", CMS, &cm("listed")));
        let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(300);
        let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
        let keys = prop_oneof![
            Just("labelSelector"),
            Just("fieldSelector"),
            Just("limit"),
            Just("continue"),
            Just("resourceVersion"),
            Just("resourceVersionMatch"),
            Just("includeObject"),
            Just("timeoutSeconds")
        ];
        let accept = prop_oneof![
            Just(None),
            Just(Some("application/json")),
            Just(Some("application/json;as=Table;v=v1;g=meta.k8s.io")),
            Just(Some("application/vnd.kubernetes.protobuf")),
            Just(Some("text/html")),
            Just(Some(";;,,=")),
        ];
        let strategy = (0..TARGETS.len(), prop::collection::vec((keys, arb_query_value()), 0..4), accept);
        let result = runner.run(&strategy, |(target, params, accept)| {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
                .finish();
            let path = format!("{}?{query}", TARGETS[target].0);
            let mut builder = http::Request::builder().method("GET").uri(&path);
            if let Some(a) = accept {
                builder = builder.header(http::header::ACCEPT, a);
            }
            let request = builder.body(kube::client::Body::from(Vec::new())).unwrap();
            let a = runtime.block_on(async {
                use http_body_util::BodyExt;
                let response = server.client.send(request).await.expect("an answer");
                let (parts, body) = response.into_parts();
                let body = body.collect().await.expect("body").to_bytes().to_vec();
                util::Answer { code: parts.status.as_u16(), headers: parts.headers, body }
            });
            check(&a, &path)
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        runtime.block_on(server.assert_alive());
    }

    #[test]
    fn arbitrary_bodies_get_a_2xx_or_a_4xx_status_and_never_a_5xx() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let server = runtime.block_on(Server::start());
        // The item PUT targets exist, so updates reach the merge-and-validate path.
        for (i, (collection, _)) in TARGETS.iter().enumerate() {
            let a = runtime.block_on(server.json("POST", collection, &valid(i)));
            assert_eq!(a.code, 201, "seeding {collection}: {a:?}");
        }
        let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1000);
        let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
        let codes = std::cell::RefCell::new(std::collections::BTreeMap::<(&str, u16), usize>::new());
        let result = runner.run(&arb_input(), |(target, put, input, content, subresource)| {
            let (collection, item) = TARGETS[target];
            let body = match &input {
                Input::Json(v) => serde_json::to_vec(v).unwrap(),
                Input::Bytes(b) => b.clone(),
                Input::Mutated { replacement, choice, remove } => {
                    let mut base = valid(target);
                    if !put {
                        base["metadata"]["name"] = json!("fz-new");
                    }
                    serde_json::to_vec(&mutate(base, *choice, replacement.clone(), *remove)).unwrap()
                }
            };
            let content_type = match content {
                0 | 1 => "application/json",
                2 => "application/yaml",
                3 => "application/merge-patch+json",
                4 => "application/strategic-merge-patch+json",
                5 => "application/json-patch+json",
                _ => "application/json",
            };
            let status = format!("{item}/status");
            let (method, path) = match (put, content) {
                (_, 3..=5) if subresource => ("PATCH", status.as_str()),
                (_, 3..=5) => ("PATCH", item),
                (_, 6) => ("DELETE", item),
                (true, _) if subresource => ("PUT", status.as_str()),
                (true, _) => ("PUT", item),
                (false, _) => ("POST", collection),
            };
            let a = runtime.block_on(server.request(method, path, Some(content_type), body.clone()));
            *codes.borrow_mut().entry((method, a.code)).or_default() += 1;
            check(&a, &format!("{method} {path} {content_type} {}", String::from_utf8_lossy(&body)))?;
            if method == "DELETE" && a.code == 200 {
                // Put the target back (a graceful or finalized delete may keep it, answering 409).
                let again = runtime.block_on(server.json("POST", collection, &valid(target)));
                prop_assert!(again.code == 201 || again.code == 409, "{again:?}");
            }
            if a.code == 201 {
                // Created something: remove it so the next create of the same name gets that far again.
                if let Some(name) = serde_json::from_slice::<Value>(&a.body)
                    .ok()
                    .and_then(|v| v["metadata"]["name"].as_str().map(str::to_string))
                {
                    if name != "fz" {
                        let del = runtime.block_on(server.request(
                            "DELETE",
                            &format!("{collection}/{name}?gracePeriodSeconds=0"),
                            None,
                            Vec::new(),
                        ));
                        prop_assert!(del.code < 500, "{del:?}");
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        eprintln!("answers by method and code: {:?}", codes.borrow());
        runtime.block_on(server.assert_alive());
        // Every stored object still decodes as its kind.
        for (collection, _) in TARGETS {
            let a = runtime.block_on(server.get(collection));
            assert_eq!(a.code, 200, "{collection}: {a:?}");
        }
        drop(server);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Watch edge cases, raw

fn watch_lines(a: &util::Answer) -> Vec<Value> {
    assert_eq!(a.code, 200, "{a:?}");
    String::from_utf8_lossy(&a.body)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("watch line {l:?} is not JSON: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_future_resource_version_gets_kubes_too_large_error_not_an_internal_one() {
    let server = Server::start().await;
    let a =
        server.get("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=999999&timeoutSeconds=2").await;
    let lines = watch_lines(&a);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["type"], "ERROR");
    let status = &lines[0]["object"];
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 504, "{status}");
    assert_eq!(status["reason"], "Timeout", "{status}");
    assert!(status["message"].as_str().unwrap().starts_with("Timeout: Too large resource version: 999999"), "{status}");
    assert_eq!(status["details"]["causes"][0]["reason"], "ResourceVersionTooLarge", "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_list_watch_sends_initial_events_then_the_initial_events_end_bookmark() {
    let server = Server::start().await;
    for n in ["s1", "s2"] {
        server.json("POST", CMS, &cm(n)).await;
    }
    let a = server
        .get("/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1")
        .await;
    let lines = watch_lines(&a);
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(&types[..3], &["ADDED", "ADDED", "BOOKMARK"], "{lines:?}");
    assert_eq!(lines[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    let bookmark_rv: i64 = lines[2]["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    for l in &lines[..2] {
        let rv: i64 = l["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
        assert!(rv <= bookmark_rv);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_runtime_watcher_with_streaming_lists_converges_too() {
    use kube::runtime::{reflector, watcher, WatchStreamExt};
    let server = Server::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    for i in 0..5 {
        cms.create(&PostParams::default(), &typed(cm(&format!("c{i}")))).await.unwrap();
    }
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(cms.clone(), watcher::Config::default().streaming_lists()))
        .default_backoff()
        .touched_objects();
    let driver = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                panic!("watcher error: {e}");
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), reader.wait_until_ready()).await.expect("ready in 10 s").unwrap();
    cms.delete("c0", &DeleteParams::default()).await.unwrap();
    cms.create(&PostParams::default(), &typed(cm("c9"))).await.unwrap();
    let want: BTreeSet<String> = names(&cms.list(&ListParams::default()).await.unwrap().items).into_iter().collect();
    eventually(10, "the reflector to match the list", || {
        let have: BTreeSet<String> = reader.state().iter().map(|c| c.metadata.name.clone().unwrap()).collect();
        let done = have == want;
        async move { done.then_some(()) }
    })
    .await;
    driver.abort();
}

/// A watcher that falls behind the write stream is dropped with 410 (so it relists); before that, no bookmark
/// may claim a revision whose events it did not send: a client resuming from that bookmark would miss them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_falls_behind_ends_with_410_and_no_bookmark_skips_events() {
    let server = Server::start_with(|c| {
        c.store.watch_buffer = 16;
        c.bookmark_interval = Duration::from_millis(1000);
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let from =
        cms.create(&PostParams::default(), &typed(cm("start"))).await.unwrap().metadata.resource_version.unwrap();
    let big = "x".repeat(10 * 1024);
    let (writers_done, done) = tokio::sync::watch::channel(false);
    let watchers: Vec<_> = (0..3)
        .map(|_| {
            let cms = cms.clone();
            let from = from.clone();
            let mut done = done.clone();
            tokio::spawn(async move {
                let mut stream = cms.watch(&WatchParams::default(), &from).await.unwrap().boxed();
                // Do not read until the writes are over: the server's buffers fill and its watch falls behind.
                let _ = done.wait_for(|d| *d).await;
                let mut seen: Vec<(String, i64, String)> = Vec::new();
                // Bookmarks keep coming: stop after 3 s without anything else.
                let mut quiet_since = tokio::time::Instant::now();
                while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(3), stream.next()).await {
                    if quiet_since.elapsed() > Duration::from_secs(3) {
                        break;
                    }
                    if !matches!(e, Ok(WatchEvent::Bookmark(_))) {
                        quiet_since = tokio::time::Instant::now();
                    }
                    match e {
                        Ok(WatchEvent::Added(o)) => seen.push((
                            "ADDED".into(),
                            o.metadata.resource_version.unwrap().parse().unwrap(),
                            o.metadata.name.unwrap(),
                        )),
                        Ok(WatchEvent::Bookmark(b)) => {
                            seen.push(("BOOKMARK".into(), b.metadata.resource_version.parse().unwrap(), String::new()))
                        }
                        Ok(WatchEvent::Error(s)) => {
                            assert_eq!(s.code, 410, "{s:?}");
                            seen.push(("ERROR".into(), 0, String::new()));
                            break;
                        }
                        Ok(other) => panic!("unexpected {}", event_summary_any(&other)),
                        Err(e) => panic!("watch stream: {e}"),
                    }
                }
                seen
            })
        })
        .collect();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let cms = cms.clone();
            let big = big.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..250 {
                    let mut c = cm(&format!("w{w}-{i}"));
                    c["data"]["big"] = json!(big);
                    let created = cms.create(&PostParams::default(), &typed(c)).await.unwrap();
                    acked.push((
                        created.metadata.resource_version.unwrap().parse::<i64>().unwrap(),
                        created.metadata.name.unwrap(),
                    ));
                }
                acked
            })
        })
        .collect();
    let mut acked: Vec<(i64, String)> = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    writers_done.send(true).unwrap();
    for (n, w) in watchers.into_iter().enumerate() {
        let seen = w.await.unwrap();
        let mut delivered = BTreeSet::new();
        for (kind, rv, name) in &seen {
            match kind.as_str() {
                "ADDED" => {
                    delivered.insert(name.clone());
                }
                "BOOKMARK" => {
                    let skipped: Vec<&String> =
                        acked.iter().filter(|(r, nm)| r <= rv && !delivered.contains(nm)).map(|(_, nm)| nm).collect();
                    assert!(
                        skipped.is_empty(),
                        "watch {n}: bookmark at {rv} skips {} events, e.g. {:?}",
                        skipped.len(),
                        &skipped[..skipped.len().min(5)]
                    );
                }
                _ => {}
            }
        }
        let ended_with_error = seen.last().is_some_and(|(k, _, _)| k == "ERROR");
        eprintln!("watch {n}: {} events, ended with an error: {ended_with_error}", seen.len());
        if !ended_with_error {
            assert_eq!(delivered.len(), acked.len(), "watch {n} ended quietly but missed events");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Patches, subresources, dry run

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategic_merge_patch_merges_containers_by_name() {
    let server = Server::start().await;
    let mut p = pod("smp", None);
    p["spec"]["containers"] = json!([{ "name": "a", "image": "busybox:1" }, { "name": "b", "image": "busybox:1" }]);
    server.json("POST", PODS, &p).await;
    let patch = json!({ "metadata": { "labels": { "x": "y" } }, "spec": { "containers": [{ "name": "b", "image": "busybox:2" }] } });
    let a = server
        .request(
            "PATCH",
            "/api/v1/namespaces/default/pods/smp",
            Some("application/strategic-merge-patch+json"),
            patch.to_string(),
        )
        .await;
    assert_eq!(a.code, 200, "{a:?}");
    let v = a.json();
    let containers: Vec<(String, String)> = v["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["image"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(containers, vec![("a".into(), "busybox:1".into()), ("b".into(), "busybox:2".into())]);
    assert_eq!(v["metadata"]["labels"]["x"], "y");
    // A JSON patch whose test fails is refused, and changes nothing.
    let patch = json!([{ "op": "test", "path": "/metadata/labels/x", "value": "z" }, { "op": "remove", "path": "/metadata/labels" }]);
    let a = server
        .request("PATCH", "/api/v1/namespaces/default/pods/smp", Some("application/json-patch+json"), patch.to_string())
        .await;
    assert!(a.code == 422 || a.code == 400 || a.code == 409, "{a:?}");
    a.status();
    assert_eq!(server.get("/api/v1/namespaces/default/pods/smp").await.json()["metadata"]["labels"]["x"], "y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_main_resource_updates_each_keep_the_other_part() {
    let server = Server::start().await;
    let pvs: Api<PersistentVolume> = Api::all(server.client.clone());
    let created = pvs.create(&PostParams::default(), &typed(pv("parts"))).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    // A status update cannot change the spec.
    let mut s = created.clone();
    s.status.get_or_insert_with(Default::default).phase = Some("Available".into());
    s.spec.as_mut().unwrap().capacity =
        Some([("storage".to_string(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("5Gi".into()))].into());
    let after_status = pvs.replace_status("parts", &PostParams::default(), &s).await.unwrap();
    assert_eq!(after_status.status.as_ref().unwrap().phase.as_deref(), Some("Available"));
    assert_eq!(after_status.spec.as_ref().unwrap().capacity.as_ref().unwrap()["storage"].0, "1Gi");
    assert_eq!(after_status.metadata.generation, Some(1), "a status change does not bump the generation");
    // A main update cannot change the status; a spec change bumps the generation.
    let mut m = after_status.clone();
    m.status.as_mut().unwrap().phase = Some("Failed".into());
    m.spec.as_mut().unwrap().storage_class_name = Some("gold".into());
    let after_main = pvs.replace("parts", &PostParams::default(), &m).await.unwrap();
    assert_eq!(after_main.status.as_ref().unwrap().phase.as_deref(), Some("Available"));
    assert_eq!(after_main.spec.as_ref().unwrap().storage_class_name.as_deref(), Some("gold"));
    assert_eq!(after_main.metadata.generation, Some(2));
    // A label change alone does not bump it.
    let mut l = after_main.clone();
    l.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
    assert_eq!(pvs.replace("parts", &PostParams::default(), &l).await.unwrap().metadata.generation, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing() {
    let server = Server::start().await;
    let pvs: Api<PersistentVolume> = Api::all(server.client.clone());
    let dry = PostParams { dry_run: true, ..Default::default() };
    let answered = pvs.create(&dry, &typed(pv("dry"))).await.unwrap();
    assert_eq!(answered.metadata.name.as_deref(), Some("dry"));
    assert_eq!(api_status(pvs.get("dry").await).code, 404);
    let real = pvs.create(&PostParams::default(), &typed(pv("real"))).await.unwrap();
    let mut changed = real.clone();
    changed.metadata.labels = Some([("dry".to_string(), "run".to_string())].into());
    pvs.replace("real", &dry, &changed).await.unwrap();
    let dp = DeleteParams { dry_run: true, ..Default::default() };
    pvs.delete("real", &dp).await.unwrap();
    let now = pvs.get("real").await.unwrap();
    assert_eq!(now.metadata.labels, None);
    assert_eq!(now.metadata.resource_version, real.metadata.resource_version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_one_name_sees_only_that_object() {
    let server = Server::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let mut stream =
        cms.watch(&WatchParams::default().fields("metadata.name=one").disable_bookmarks(), "0").await.unwrap().boxed();
    for n in ["other", "one", "another"] {
        cms.create(&PostParams::default(), &typed(cm(n))).await.unwrap();
    }
    cms.delete("other", &DeleteParams::default()).await.unwrap();
    cms.delete("one", &DeleteParams::default()).await.unwrap();
    assert_eq!(event_summary(&next_event(&mut stream, 5).await), ("ADDED".into(), "one".into()));
    assert_eq!(event_summary(&next_event(&mut stream, 5).await), ("DELETED".into(), "one".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_collection_deletes_only_the_selected_objects() {
    let server = Server::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    for (n, app) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
        let mut c = cm(n);
        c["metadata"]["labels"] = json!({ "app": app });
        cms.create(&PostParams::default(), &typed(c)).await.unwrap();
    }
    cms.delete_collection(&DeleteParams::default(), &ListParams::default().labels("app=a")).await.unwrap();
    assert_eq!(names(&cms.list(&ListParams::default()).await.unwrap().items), vec!["b1"]);
}

/// After a restart the store reloads its history from disk; the change a resumed watch replays must still
/// know what the object was before, or an object that left a selector is never reported DELETED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumed_across_a_restart_still_sees_an_object_leave_its_selector() {
    let tweak = |c: &mut kvol_apiserver::ServerConfig| c.store.max_history = 20;
    let server = Server::start_with(tweak).await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let mut web = cm("web");
    web["metadata"]["labels"] = json!({ "app": "web" });
    cms.create(&PostParams::default(), &typed(web)).await.unwrap();
    // Enough other writes that the history of the create is compacted away.
    for i in 0..40 {
        cms.create(&PostParams::default(), &typed(cm(&format!("filler-{i}")))).await.unwrap();
    }
    let from = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let patch = json!({ "metadata": { "labels": { "app": "db" } } });
    cms.patch("web", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    let server = Server::start_in(server.stop(), tweak).await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let mut selected =
        cms.watch(&WatchParams::default().labels("app=web").disable_bookmarks(), &from).await.unwrap().boxed();
    assert_eq!(event_summary(&next_event(&mut selected, 5).await), ("DELETED".into(), "web".into()));
    let mut all = cms.watch(&WatchParams::default().disable_bookmarks(), &from).await.unwrap().boxed();
    assert_eq!(event_summary(&next_event(&mut all, 5).await), ("MODIFIED".into(), "web".into()));
}

/// kube-apiserver reads `timeoutSeconds=0` as "no timeout given" (the server's default), not "end now": a
/// client sending 0 must not get a watch that closes at once and reconnect in a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_with_timeout_seconds_zero_stays_open() {
    let server = Server::start().await;
    let request = server.get("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0&timeoutSeconds=0");
    let ended = tokio::time::timeout(Duration::from_secs(2), request).await;
    assert!(ended.is_err(), "the watch ended at once: {:?}", ended.ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_without_a_resource_version_all_apply_and_none_is_lost() {
    let server = Server::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    cms.create(&PostParams::default(), &typed(cm("patched"))).await.unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let cms = cms.clone();
            tokio::spawn(async move {
                let patch =
                    json!({ "metadata": { "labels": { format!("l{i}"): "x" } }, "data": { format!("k{i}"): "v" } });
                cms.patch("patched", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("an unpinned patch retries its conflicts");
    }
    let now = cms.get("patched").await.unwrap();
    assert_eq!(now.metadata.labels.unwrap().len(), 12);
    assert_eq!(now.data.unwrap().len(), 13);
}

/// A PUT without a resourceVersion is an unconditional update: kube-apiserver retries it on its own
/// conflicts (`GuaranteedUpdate`), so concurrent ones all succeed and the last one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unconditional_updates_all_succeed() {
    let server = Arc::new(Server::start().await);
    server.json("POST", CMS, &cm("unconditional")).await;
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let server = server.clone();
            tokio::spawn(async move {
                let mut body = cm("unconditional");
                body["data"] = json!({ "writer": i.to_string() });
                server.json("PUT", "/api/v1/namespaces/default/configmaps/unconditional", &body).await
            })
        })
        .collect();
    for t in tasks {
        let a = t.await.unwrap();
        assert_eq!(a.code, 200, "{a:?}");
    }
}

/// Deleting an object that another client keeps updating still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_succeeds_while_the_object_is_being_updated() {
    let server = Server::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    cms.create(&PostParams::default(), &typed(cm("busy"))).await.unwrap();
    let updaters: Vec<_> = (0..6)
        .map(|i| {
            let cms = cms.clone();
            tokio::spawn(async move {
                for n in 0.. {
                    let patch = json!({ "data": { format!("u{i}"): n.to_string() } });
                    if cms
                        .patch("busy", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    cms.delete("busy", &DeleteParams::default()).await.expect("an unconditional delete retries its conflicts");
    for u in updaters {
        u.await.unwrap();
    }
    assert_eq!(api_status(cms.get("busy").await).code, 404);
}

/// Two servers on one data directory would each keep their own revision over one database, and the second
/// would take over the first's kubeconfig and socket: the second must refuse to start and touch nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_directory_refuses_to_start_and_leaves_the_first_alone() {
    let server = Server::start().await;
    let kubeconfig_before = std::fs::read_to_string(server.data_dir.join("kubeconfig")).unwrap();
    let config = kvol_apiserver::ServerConfig::new(server.data_dir.clone(), "127.0.0.1:0".parse().unwrap());
    let second =
        tokio::time::timeout(Duration::from_secs(15), kvol_apiserver::run(config, std::future::pending())).await;
    let error = second.expect("the second server gives up").expect_err("the second server must not run");
    let chain = {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    };
    assert!(chain.contains("another kvol server"), "{chain}");
    assert_eq!(std::fs::read_to_string(server.data_dir.join("kubeconfig")).unwrap(), kubeconfig_before);
    let (code, body) = util::unix_request(&server.socket(), "GET", "/api/v1/namespaces/default/configmaps").await;
    assert_eq!(code, 200, "the first server's socket still answers: {body}");
    let a = server.json("POST", CMS, &cm("still-works")).await;
    assert_eq!(a.code, 201, "{a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_deletes_its_contents_then_the_namespace() {
    let server = Server::start().await;
    let namespaces: Api<Namespace> = Api::all(server.client.clone());
    namespaces.create(&PostParams::default(), &typed(json!({ "metadata": { "name": "doomed" } }))).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "doomed");
    let mut held = cm("held");
    held["metadata"]["finalizers"] = json!(["kvol.test/hold"]);
    cms.create(&PostParams::default(), &typed(held)).await.unwrap();
    cms.create(&PostParams::default(), &typed(cm("plain"))).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client.clone(), "doomed");
    pods.create(&PostParams::default(), &typed(pod("p", None))).await.unwrap();
    namespaces.delete("doomed", &DeleteParams::default()).await.unwrap();
    let ns = namespaces.get("doomed").await.unwrap();
    assert!(ns.metadata.deletion_timestamp.is_some());
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    // No new content in a terminating namespace.
    let s = api_status(cms.create(&PostParams::default(), &typed(cm("late"))).await);
    assert_eq!(s.code, 403, "{s:?}");
    assert!(s.message.contains("because it is being terminated"), "{}", s.message);
    eventually(10, "the plain contents to go", || {
        let (cms, pods) = (cms.clone(), pods.clone());
        async move {
            let gone = matches!(cms.get("plain").await, Err(kube::Error::Api(s)) if s.code == 404)
                && matches!(pods.get("p").await, Err(kube::Error::Api(s)) if s.code == 404);
            gone.then_some(())
        }
    })
    .await;
    // The namespace waits for the finalizer of what is left.
    assert!(namespaces.get("doomed").await.is_ok());
    let patch = json!({ "metadata": { "finalizers": null } });
    cms.patch("held", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    eventually(10, "the namespace to go", || {
        let namespaces = namespaces.clone();
        async move { matches!(namespaces.get("doomed").await, Err(kube::Error::Api(s)) if s.code == 404).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_socket_and_plain_http_on_the_tls_port_leave_the_server_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start().await;
    for garbage in
        [&b"NOT HTTP AT ALL\r\n\r\n"[..], b"\x00\x01\x02\xff\xfe", b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"]
    {
        let mut s = tokio::net::UnixStream::connect(server.socket()).await.unwrap();
        let _ = s.write_all(garbage).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    }
    let address = server
        .kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .expect("server address in the kubeconfig")
        .to_string();
    for garbage in [&b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n"[..], b"\x16\x03\x01\x00\x05hello", b""] {
        let mut s = tokio::net::TcpStream::connect(&address).await.unwrap();
        let _ = s.write_all(garbage).await;
        let _ = s.shutdown().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    }
    server.assert_alive().await;
    let (code, _) = util::unix_request(&server.socket(), "GET", "/version").await;
    assert_eq!(code, 200);
}

// ---------------------------------------------------------------------------------------------------------
// Node proxy

/// A stand-in kubelet on 127.0.0.1: `/stats/summary` answers JSON echoing the query, `/healthz` answers `ok`.
/// Serves until the test's runtime ends.
async fn fake_kubelet() -> u16 {
    use axum::extract::RawQuery;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/stats/summary",
            get(|RawQuery(query): RawQuery| async move {
                axum::Json(json!({ "node": { "nodeName": "n1" }, "query": query.unwrap_or_default() }))
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the fake kubelet");
    let port = listener.local_addr().expect("fake kubelet address").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// A port nothing listens on (bound, then released).
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding a probe port");
    listener.local_addr().expect("probe address").port()
}

/// Create a node whose status lists a Hostname before its InternalIP and reports `port` as its kubelet's.
async fn node_with_kubelet(server: &Server, name: &str, port: Option<u16>) {
    let created = server
        .json("POST", "/api/v1/nodes", &json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name } }))
        .await;
    assert_eq!(created.code, 201, "{created:?}");
    let mut status = json!({ "addresses": [
        { "type": "Hostname", "address": "no-such-host.invalid" },
        { "type": "InternalIP", "address": "127.0.0.1" },
    ] });
    if let Some(port) = port {
        status["daemonEndpoints"] = json!({ "kubeletEndpoint": { "Port": port } });
    }
    let patched = server.json("PATCH", &format!("/api/v1/nodes/{name}/status"), &json!({ "status": status })).await;
    assert_eq!(patched.code, 200, "{patched:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_proxy_forwards_to_the_kubelet_port_the_node_reports_or_the_path_names() {
    let server = Server::start().await;
    let kubelet = fake_kubelet().await;
    node_with_kubelet(&server, "n1", Some(kubelet)).await;
    let a = server.get("/api/v1/nodes/n1/proxy/stats/summary?only_cpu_and_memory=true&x=a%20b").await;
    assert_eq!(a.code, 200, "{a:?}");
    assert_eq!(a.headers[http::header::CONTENT_TYPE], "application/json", "{a:?}");
    assert_eq!(a.json(), json!({ "node": { "nodeName": "n1" }, "query": "only_cpu_and_memory=true&x=a%20b" }));
    let a = server.request("HEAD", "/api/v1/nodes/n1/proxy/stats/summary", None, Vec::new()).await;
    assert_eq!((a.code, a.body.len()), (200, 0), "{a:?}");
    // `<name>:<port>` overrides the port the node reports.
    node_with_kubelet(&server, "stale", Some(closed_port().await)).await;
    let a = server.get(&format!("/api/v1/nodes/stale:{kubelet}/proxy/healthz")).await;
    assert_eq!((a.code, a.body.as_slice()), (200, &b"ok"[..]), "{a:?}");
    // The kubelet's own answers pass through, errors included.
    let a = server.get("/api/v1/nodes/n1/proxy/no/such/path").await;
    assert_eq!(a.code, 404, "{a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_proxy_failures_answer_with_kubes_statuses() {
    let server = Server::start().await;
    let a = server.get("/api/v1/nodes/ghost/proxy/stats/summary").await;
    assert_eq!(a.assert_failure(404, r#"nodes "ghost" not found"#)["reason"], "NotFound");
    node_with_kubelet(&server, "portless", None).await;
    let a = server.get("/api/v1/nodes/portless/proxy/healthz").await;
    let s = a.assert_failure(503, r#"node "portless" reports no kubelet port"#);
    assert_eq!(s["reason"], "ServiceUnavailable");
    let closed = closed_port().await;
    node_with_kubelet(&server, "down", Some(closed)).await;
    let a = server.get("/api/v1/nodes/down/proxy/healthz").await;
    let s = a.assert_failure(503, &format!("http://127.0.0.1:{closed}/healthz: "));
    assert!(s["message"].as_str().unwrap().starts_with("error trying to reach service: "), "{a:?}");
    let a = server.request("POST", "/api/v1/nodes/down/proxy/healthz", None, Vec::new()).await;
    assert_eq!(a.assert_failure(405, "POST")["reason"], "MethodNotAllowed");
    let a = server.get("/api/v1/nodes/down:http/proxy/healthz").await;
    a.assert_failure(400, r#"invalid node request "down:http""#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_may_proxy_only_to_its_own_kubelet() {
    let server = Server::start().await;
    let kubelet = fake_kubelet().await;
    node_with_kubelet(&server, "n1", Some(kubelet)).await;
    node_with_kubelet(&server, "n2", Some(kubelet)).await;
    let token = server.node_token("n1").await;
    let n1 = server.client_with_token(Some(&token)).await;
    let own = util::send(&n1, "GET", "/api/v1/nodes/n1/proxy/healthz", None, Vec::new()).await;
    assert_eq!(own.code, 200, "{own:?}");
    let other = util::send(&n1, "GET", "/api/v1/nodes/n2/proxy/healthz", None, Vec::new()).await;
    other.assert_failure(403, "node 'n1' may proxy only to its own kubelet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_raw_reads_a_nodes_stats_summary_through_the_proxy() {
    let kubectl = std::path::Path::new("/usr/bin/kubectl");
    if !kubectl.exists() {
        eprintln!("skipped: {} is not installed", kubectl.display());
        return;
    }
    let server = Server::start().await;
    node_with_kubelet(&server, "n1", Some(fake_kubelet().await)).await;
    let kubeconfig = server.data_dir.join("kubeconfig");
    let output = tokio::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "--raw", "/api/v1/nodes/n1/proxy/stats/summary"])
        .output()
        .await
        .expect("running kubectl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "kubectl failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    let body: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert_eq!(body["node"]["nodeName"], "n1", "{body}");
}

// ---------------------------------------------------------------------------------------------------------
// Issue 17: hardening under abuse

/// Issue 17, defect 8: with its disk full the server answered 500 `corrupt store: …`. It answers 507 saying
/// the store is full, naming the object, and keeps everything it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_store_full_and_loses_nothing() {
    let dir = tempfile::Builder::new().prefix("kvol-apiserver-test-").tempdir().unwrap();
    let Some(_tmpfs) = util::Tmpfs::mount(&dir.path().join("data"), "6m") else { return };
    let server = Server::start_in(dir, |_| {}).await;
    let data: String = "x".repeat(256 * 1024);
    let mut created = Vec::new();
    let refused = loop {
        assert!(created.len() < 100, "6 MiB held {} configmaps of 256 KiB", created.len());
        let name = format!("big-{}", created.len());
        let a = server.json("POST", CMS, &json!({"metadata": {"name": name}, "data": {"d": data}})).await;
        if a.code != 201 {
            break (name, a);
        }
        created.push(name);
    };
    let (name, a) = refused;
    let s = a.assert_failure(507, &format!(r#"configmaps "{name}" was not written: the store is full"#));
    assert!(!s["message"].as_str().unwrap_or("").contains("corrupt"), "{s}");
    server.assert_alive().await;
    assert_eq!(server.get(&format!("{CMS}/{name}")).await.code, 404, "the refused object is not there");
    for name in &created {
        let a = server.get(&format!("{CMS}/{name}")).await;
        assert_eq!(a.code, 200, "{name}: {a:?}");
        assert_eq!(a.json()["data"]["d"].as_str().map(str::len), Some(data.len()), "{name}");
    }
}

/// Issue 17, defect 4: a node credential created other Nodes and CSINodes through `generateName` (the create
/// was authorized by `metadata.name`, and none counted as the node's own), and could label itself with a role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_creates_only_its_own_node_and_csinode_and_may_not_give_itself_a_role() {
    let server = Server::start().await;
    let token = server.node_token("vm").await;
    let vm = server.client_with_token(Some(&token)).await;
    let yaml = "apiVersion: v1\nkind: Node\nmetadata:\n  generateName: evil-\n";
    let a = util::send(&vm, "POST", "/api/v1/nodes", Some("application/yaml"), yaml.into()).await;
    a.assert_failure(403, r#"is forbidden: User "system:node:vm" cannot create resource "nodes""#);
    a.assert_failure(403, r#"node "vm" is not allowed to modify node "evil-"#);
    let csinode = json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSINode", "metadata": {"generateName": "x-"},
                         "spec": {"drivers": []}});
    let a = util::send(
        &vm,
        "POST",
        "/apis/storage.k8s.io/v1/csinodes",
        Some("application/json"),
        csinode.to_string().into(),
    )
    .await;
    a.assert_failure(403, "can only access CSINode with the same name as the requesting node");
    // A name in a field selector is no name for a create either.
    let a = util::send(
        &vm,
        "POST",
        "/api/v1/nodes?fieldSelector=metadata.name%3Dvm",
        Some("application/yaml"),
        yaml.into(),
    )
    .await;
    assert_eq!(a.code, 403, "{a:?}");
    let nodes = server.get("/api/v1/nodes").await.json();
    assert_eq!(nodes["items"].as_array().map(Vec::len), Some(0), "nothing was created: {nodes}");

    let own = |labels: Value| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "vm", "labels": labels}});
    let a = util::send(
        &vm,
        "POST",
        "/api/v1/nodes",
        Some("application/json"),
        own(json!({"node-role.kubernetes.io/control-plane": ""})).to_string().into(),
    )
    .await;
    a.assert_failure(
        403,
        r#"nodes "vm" is forbidden: node "vm" is not allowed to set the following labels: node-role.kubernetes.io/control-plane"#,
    );
    let kubelet_labels = json!({"kubernetes.io/hostname": "vm", "kubernetes.io/os": "linux", "example.com/rack": "r1"});
    let a = util::send(&vm, "POST", "/api/v1/nodes", Some("application/json"), own(kubelet_labels).to_string().into())
        .await;
    assert_eq!(a.code, 201, "a node registers itself with kubelet's labels: {a:?}");
    let patch = json!({"metadata": {"labels": {"node-restriction.kubernetes.io/pool": "secure"}}});
    let a =
        util::send(&vm, "PATCH", "/api/v1/nodes/vm", Some("application/merge-patch+json"), patch.to_string().into())
            .await;
    a.assert_failure(
        403,
        r#"nodes "vm" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/pool"#,
    );
    // The admin may set a role; the node keeps it through its own updates but may not remove it.
    let role = json!({"metadata": {"labels": {"node-role.kubernetes.io/worker": ""}}});
    assert_eq!(server.json("PATCH", "/api/v1/nodes/vm", &role).await.code, 200);
    let mine = json!({"metadata": {"labels": {"example.com/rack": "r2"}}});
    let a = util::send(&vm, "PATCH", "/api/v1/nodes/vm", Some("application/merge-patch+json"), mine.to_string().into())
        .await;
    assert_eq!(a.code, 200, "{a:?}");
    let drop_role = json!({"metadata": {"labels": {"node-role.kubernetes.io/worker": null}}});
    let a = util::send(
        &vm,
        "PATCH",
        "/api/v1/nodes/vm",
        Some("application/merge-patch+json"),
        drop_role.to_string().into(),
    )
    .await;
    a.assert_failure(403, "is not allowed to modify labels: node-role.kubernetes.io/worker");
}

/// Issue 17, defect 7: `fieldValidation=Strict` accepted duplicate fields (`{"metadata":{"name":"sd","name":
/// "sd2"}}` created `sd2`). Strict refuses them with kube's words, Warn warns, Ignore keeps the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_fields_are_refused_when_strict_warned_by_default_and_ignored_when_asked() {
    let server = Server::start().await;
    let body =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"sd","name":"sd2"},"data":{"a":"1","a":"2"}}"#;
    let post = |query: &'static str, ct: &'static str, body: &'static str| {
        let path = format!("{CMS}{query}");
        let server = &server;
        async move { server.request("POST", &path, Some(ct), body).await }
    };
    let a = post("?fieldValidation=Strict", "application/json", body).await;
    a.assert_failure(
        400,
        r#"ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: duplicate field "metadata.name", duplicate field "data.a""#,
    );
    assert_eq!(server.get(&format!("{CMS}/sd2")).await.code, 404, "nothing was created");
    let a = post("", "application/json", body).await;
    assert_eq!(a.code, 201, "{a:?}");
    let warnings = a.warnings().join("\n");
    assert!(warnings.contains(r#"duplicate field \"metadata.name\""#), "{warnings}");
    assert!(warnings.contains(r#"duplicate field \"data.a\""#), "{warnings}");
    assert_eq!((a.json()["metadata"]["name"].clone(), a.json()["data"]["a"].clone()), (json!("sd2"), json!("2")));
    let ignored = r#"{"metadata":{"name":"x","name":"ignored"}}"#;
    let a = post("?fieldValidation=Ignore", "application/json", ignored).await;
    assert_eq!(a.code, 201, "{a:?}");
    assert!(a.warnings().is_empty(), "{:?}", a.warnings());
    assert_eq!(a.json()["metadata"]["name"], "ignored", "the last one wins");
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n  name: y2\n";
    let a = post("?fieldValidation=Strict", "application/yaml", yaml).await;
    a.assert_failure(400, r#"strict decoding error: duplicate field "metadata.name""#);
    let a = post("?fieldValidation=Ignore", "application/yaml", yaml).await;
    assert_eq!(a.code, 201, "{a:?}");
    assert_eq!(a.json()["metadata"]["name"], "y2");
    // An update is judged the same way.
    let put = r#"{"metadata":{"name":"sd2","name":"sd2"},"data":{}}"#;
    let a = server.request("PUT", &format!("{CMS}/sd2?fieldValidation=Strict"), Some("application/json"), put).await;
    a.assert_failure(400, r#"duplicate field "metadata.name""#);
}

fn continue_token(v: &str, rv: i64, start: &str) -> String {
    use base64::Engine;
    let json = json!({"v": v, "rv": rv, "start": start}).to_string();
    base64::engine::general_purpose::URL_SAFE.encode(json)
}

/// Issue 17, defect 8: lists ignored `resourceVersionMatch=Exact` and invalid `resourceVersion`/`limit`
/// values, and a continue token naming no usable revision listed nothing with 200. They get kube-apiserver's
/// answers now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_options_are_validated_and_exact_lists_that_revision() {
    let server = Server::start().await;
    let a = server.json("POST", CMS, &json!({"metadata": {"name": "a"}, "data": {"v": "1"}})).await;
    let first = a.json()["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    server.json("POST", CMS, &json!({"metadata": {"name": "b"}})).await;
    assert_eq!(server.json("PATCH", &format!("{CMS}/a"), &json!({"data": {"v": "2"}})).await.code, 200);

    let exact = server.get(&format!("{CMS}?resourceVersion={first}&resourceVersionMatch=Exact")).await;
    assert_eq!(exact.code, 200, "{exact:?}");
    let list = exact.json();
    assert_eq!(list["metadata"]["resourceVersion"], first.as_str(), "{list}");
    let items: Vec<(Value, Value)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["metadata"]["name"].clone(), i["data"]["v"].clone()))
        .collect();
    assert_eq!(items, vec![(json!("a"), json!("1"))], "the list as it was at {first}");
    let later = server.get(&format!("{CMS}?resourceVersion={first}&resourceVersionMatch=NotOlderThan")).await;
    assert_eq!(later.json()["items"].as_array().map(Vec::len), Some(2), "{later:?}");

    struct Case {
        query: String,
        code: u16,
        message: &'static str,
    }
    let cases = [
        Case {
            query: "resourceVersion=abc".into(),
            code: 400,
            message: r#"invalid resource version: resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing "abc": invalid syntax"#,
        },
        Case { query: "limit=abc".into(), code: 400, message: r#"strconv.ParseInt: parsing "abc": invalid syntax"# },
        Case {
            query: "resourceVersionMatch=Exact".into(),
            code: 422,
            message: r#"ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"#,
        },
        Case {
            query: "resourceVersionMatch=Newest&resourceVersion=1".into(),
            code: 422,
            message: r#"resourceVersionMatch: Unsupported value: "Newest": supported values: "Exact", "NotOlderThan", """#,
        },
        Case {
            query: "resourceVersionMatch=Exact&resourceVersion=999999".into(),
            code: 504,
            message: "Too large resource version: 999999",
        },
        Case {
            query: "watch=true&resourceVersionMatch=NotOlderThan&resourceVersion=1".into(),
            code: 422,
            message: "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        },
        Case {
            query: "watch=true&sendInitialEvents=true".into(),
            code: 422,
            message: "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        },
        Case {
            query: format!("limit=1&continue={}", continue_token("meta.k8s.io/v1", 0, "a")),
            code: 400,
            message: "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        },
        Case {
            query: format!("limit=1&continue={}", continue_token("meta.k8s.io/v9", 2, "a")),
            code: 400,
            message: r#"continue key is not valid: server does not recognize this encoded version "meta.k8s.io/v9""#,
        },
        Case {
            query: format!("limit=1&resourceVersion=2&continue={}", continue_token("meta.k8s.io/v1", 2, "a")),
            code: 400,
            message: "specifying resource version is not allowed when using continue",
        },
    ];
    for c in cases {
        let a = server.get(&format!("{CMS}?{}", c.query)).await;
        assert_eq!(a.code, c.code, "{}: {a:?}", c.query);
        let message = a.status()["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains(c.message), "{}: {message:?} does not contain {:?}", c.query, c.message);
    }
}

/// Issue 17, defect 8: a 422 repeated every invalid value in full (20,000 bad labels in 1.4 MB made a 22 MB
/// answer). Identical errors are listed once, at most 100 are listed, and long values are cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_20000_bad_labels_gets_a_small_422_naming_the_field() {
    let server = Server::start().await;
    let labels: serde_json::Map<String, Value> =
        (0..20_000).map(|i| (format!("bad key {i:05} {}", "x".repeat(40)), json!("ok"))).collect();
    let body = json!({"metadata": {"name": "many", "labels": labels}});
    let request_bytes = body.to_string().len();
    let a = server.json("POST", CMS, &body).await;
    let s = a.assert_failure(422, r#"ConfigMap "many" is invalid: [metadata.labels: Invalid value: "bad key 00000"#);
    assert!(a.body.len() < 100 * 1024, "a {request_bytes}-byte request got a {}-byte answer", a.body.len());
    let message = s["message"].as_str().unwrap_or_default();
    assert!(message.ends_with("more errors]"), "{}", &message[message.len().saturating_sub(80)..]);
    let causes = s["details"]["causes"].as_array().cloned().unwrap_or_default();
    assert!(!causes.is_empty() && causes.len() <= 100, "{} causes", causes.len());
    assert!(causes.iter().all(|c| c["field"] == "metadata.labels"), "{causes:?}");

    let long = json!({"metadata": {"name": "long", "labels": {"a": "v ".repeat(50_000)}}});
    let a = server.json("POST", CMS, &long).await;
    let s = a.assert_failure(422, r#"metadata.labels: Invalid value: "v v v"#);
    assert!(s["message"].as_str().unwrap_or_default().contains("(truncated, 100000 bytes)"), "{s}");
    assert!(a.body.len() < 8 * 1024, "{} bytes", a.body.len());
}
