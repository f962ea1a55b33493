//! Table-driven tests for the three patch types. Each case is a sentence naming the behaviour, an
//! original object, a patch body and the wanted object (or the wanted HTTP status of the error).

use serde_json::{json, Value};

use super::{apply_patch, PatchError, PatchType};

struct Case {
    name: &'static str,
    kind: &'static str,
    ty: PatchType,
    original: Value,
    patch: Value,
    /// The patched object, or the status code of the error.
    want: Result<Value, u16>,
}

fn smp(name: &'static str, kind: &'static str, original: Value, patch: Value, want: Value) -> Case {
    Case { name, kind, ty: PatchType::StrategicMerge, original, patch, want: Ok(want) }
}

fn smp_err(name: &'static str, kind: &'static str, original: Value, patch: Value, status: u16) -> Case {
    Case { name, kind, ty: PatchType::StrategicMerge, original, patch, want: Err(status) }
}

fn run(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in cases {
        let body = serde_json::to_vec(&case.patch).unwrap_or_default();
        let got = apply_patch(case.kind, &case.original, &body, case.ty).map_err(|e| e.status_code());
        if got != case.want {
            failures.push(format!("{}:\n  want {}\n  got  {}", case.name, show(&case.want), show(&got)));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

fn show(r: &Result<Value, u16>) -> String {
    match r {
        Ok(v) => v.to_string(),
        Err(code) => format!("error {code}"),
    }
}

fn pod_with_containers(containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
}

#[test]
fn strategic_merge_patch_cases() {
    run(vec![
        smp(
            "nested maps merge recursively",
            "ConfigMap",
            json!({"metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"x": "1"}}),
            json!({"metadata": {"labels": {"b": "2"}}, "data": {"y": "2"}}),
            json!({"metadata": {"name": "c", "labels": {"a": "1", "b": "2"}}, "data": {"x": "1", "y": "2"}}),
        ),
        smp(
            "null deletes a key",
            "ConfigMap",
            json!({"metadata": {"name": "c", "labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"a": null}}}),
            json!({"metadata": {"name": "c", "labels": {"b": "2"}}}),
        ),
        smp(
            "null for an absent key changes nothing",
            "ConfigMap",
            json!({"metadata": {"name": "c"}}),
            json!({"metadata": {"labels": null}, "data": null}),
            json!({"metadata": {"name": "c"}}),
        ),
        smp(
            "a new nested map drops its nulls",
            "ConfigMap",
            json!({"metadata": {"name": "c"}}),
            json!({"metadata": {"annotations": {"a": "1", "b": null}}}),
            json!({"metadata": {"name": "c", "annotations": {"a": "1"}}}),
        ),
        smp(
            "scalars are replaced",
            "PersistentVolume",
            json!({"spec": {"persistentVolumeReclaimPolicy": "Retain", "capacity": {"storage": "1Gi"}}}),
            json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"}}),
            json!({"spec": {"persistentVolumeReclaimPolicy": "Delete", "capacity": {"storage": "1Gi"}}}),
        ),
        smp(
            "a value of another type replaces the original",
            "ConfigMap",
            json!({"data": {"x": "1"}}),
            json!({"data": "oops"}),
            json!({"data": "oops"}),
        ),
        smp(
            "lists without a strategy are replaced",
            "PersistentVolume",
            json!({"spec": {"mountOptions": ["hard", "nfsvers=4.1"]}}),
            json!({"spec": {"mountOptions": ["soft"]}}),
            json!({"spec": {"mountOptions": ["soft"]}}),
        ),
        smp(
            "pod tolerations have no strategy and are replaced",
            "Pod",
            json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}]}}),
            json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}),
            json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}),
        ),
        smp(
            "primitive merge lists append and deduplicate",
            "PersistentVolumeClaim",
            json!({"metadata": {"finalizers": ["kubernetes.io/pvc-protection"]}}),
            json!({"metadata": {"finalizers": ["example.com/keep", "kubernetes.io/pvc-protection"]}}),
            json!({"metadata": {"finalizers": ["example.com/keep", "kubernetes.io/pvc-protection"]}}),
        ),
        smp(
            "deleteFromPrimitiveList removes items from a merge list",
            "PersistentVolume",
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
            json!({"metadata": {"finalizers": ["a", "c"]}}),
        ),
        smp(
            "deleteFromPrimitiveList for an absent list is a no-op",
            "PersistentVolume",
            json!({"metadata": {"name": "pv"}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
            json!({"metadata": {"name": "pv"}}),
        ),
        smp(
            "setElementOrder orders a primitive merge list",
            "Pod",
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["b", "c", "a"], "finalizers": ["c"]}}),
            json!({"metadata": {"finalizers": ["b", "c", "a"]}}),
        ),
        smp(
            "merge lists of maps update the element with the same key",
            "Pod",
            pod_with_containers(json!([{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}])),
            json!({"spec": {"containers": [{"name": "b", "image": "y:2"}]}}),
            pod_with_containers(json!([{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:2"}])),
        ),
        smp(
            "merge lists of maps put a new key before the live elements, as kube does",
            "Pod",
            pod_with_containers(json!([{"name": "a", "image": "x:1"}])),
            json!({"spec": {"containers": [{"name": "c", "image": "z:1"}]}}),
            pod_with_containers(json!([{"name": "c", "image": "z:1"}, {"name": "a", "image": "x:1"}])),
        ),
        smp(
            "patch delete removes the element with the key",
            "Pod",
            pod_with_containers(json!([{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}])),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
            pod_with_containers(json!([{"name": "b", "image": "y:1"}])),
        ),
        smp(
            "patch replace in a list replaces the whole list",
            "Pod",
            pod_with_containers(json!([{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}])),
            json!({"spec": {"containers": [{"name": "z", "image": "z:1"}, {"$patch": "replace"}]}}),
            pod_with_containers(json!([{"name": "z", "image": "z:1"}])),
        ),
        smp(
            "patch replace in a map replaces the map",
            "ConfigMap",
            json!({"metadata": {"name": "c"}, "data": {"x": "1", "y": "2"}}),
            json!({"data": {"$patch": "replace", "z": "3"}}),
            json!({"metadata": {"name": "c"}, "data": {"z": "3"}}),
        ),
        smp(
            "patch delete in a map empties the map",
            "ConfigMap",
            json!({"metadata": {"name": "c"}, "data": {"x": "1"}}),
            json!({"data": {"$patch": "delete"}}),
            json!({"metadata": {"name": "c"}, "data": {}}),
        ),
        smp(
            "directives in a map the original lacks are processed, not copied",
            "ConfigMap",
            json!({"metadata": {"name": "c"}}),
            json!({"metadata": {"labels": {"$patch": "replace", "a": "1"}}}),
            json!({"metadata": {"name": "c", "labels": {"a": "1"}}}),
        ),
        smp(
            "nested merge lists merge by their own key",
            "Pod",
            pod_with_containers(
                json!([{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]),
            ),
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}]}]}}),
            pod_with_containers(json!([{"name": "a", "env": [
                {"name": "X", "value": "1"}, {"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}
            ]}])),
        ),
        smp(
            "volume mounts merge by mount path",
            "Pod",
            pod_with_containers(json!([{"name": "a", "volumeMounts": [{"name": "v", "mountPath": "/data"}]}])),
            json!({"spec": {"containers": [{"name": "a", "volumeMounts": [{"name": "w", "mountPath": "/data", "readOnly": true}]}]}}),
            pod_with_containers(
                json!([{"name": "a", "volumeMounts": [{"name": "w", "mountPath": "/data", "readOnly": true}]}]),
            ),
        ),
        smp(
            "container ports merge by container port",
            "Pod",
            pod_with_containers(json!([{"name": "a", "ports": [{"containerPort": 80}]}])),
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]}]}}),
            pod_with_containers(
                json!([{"name": "a", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]}]),
            ),
        ),
        smp(
            "retainKeys clears a volume's old source",
            "Pod",
            json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}),
            json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/srv"}}]}}),
            json!({"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/srv"}}]}}),
        ),
        smp(
            "owner references merge by uid",
            "ConfigMap",
            json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a", "kind": "Pod", "apiVersion": "v1"}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b", "kind": "Pod", "apiVersion": "v1"}]}}),
            json!({"metadata": {"ownerReferences": [
                {"uid": "2", "name": "b", "kind": "Pod", "apiVersion": "v1"},
                {"uid": "1", "name": "a", "kind": "Pod", "apiVersion": "v1"}
            ]}}),
        ),
        smp(
            "pod conditions merge by type",
            "Pod",
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}}),
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}}),
        ),
        smp(
            "node addresses merge by type",
            "Node",
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}}),
            json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}}),
            json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.1"}]}}),
        ),
        smp(
            "node volumesAttached has no strategy and is replaced",
            "Node",
            json!({"status": {"volumesAttached": [{"name": "a", "devicePath": "/dev/a"}]}}),
            json!({"status": {"volumesAttached": [{"name": "b", "devicePath": "/dev/b"}]}}),
            json!({"status": {"volumesAttached": [{"name": "b", "devicePath": "/dev/b"}]}}),
        ),
        smp(
            "csinode drivers merge by name",
            "CSINode",
            json!({"spec": {"drivers": [{"name": "a.csi", "nodeID": "n1"}]}}),
            json!({"spec": {"drivers": [{"name": "b.csi", "nodeID": "n1"}]}}),
            json!({"spec": {"drivers": [{"name": "b.csi", "nodeID": "n1"}, {"name": "a.csi", "nodeID": "n1"}]}}),
        ),
        smp(
            "pvc status conditions merge by type",
            "PersistentVolumeClaim",
            json!({"status": {"phase": "Bound", "conditions": [{"type": "Resizing", "status": "True"}]}}),
            json!({"status": {"conditions": [{"type": "FileSystemResizePending", "status": "True"}]}}),
            json!({"status": {"phase": "Bound", "conditions": [
                {"type": "FileSystemResizePending", "status": "True"}, {"type": "Resizing", "status": "True"}
            ]}}),
        ),
        smp(
            "unknown kinds replace lists even where pods would merge",
            "Widget",
            json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "a"}]}}),
            json!({"metadata": {"finalizers": ["b"]}, "spec": {"containers": [{"name": "b"}]}}),
            json!({"metadata": {"finalizers": ["b"]}, "spec": {"containers": [{"name": "b"}]}}),
        ),
        smp(
            "setElementOrder orders the patched elements and keeps a server-only element before its live successor",
            "Pod",
            pod_with_containers(json!([{"name": "a"}, {"name": "sidecar"}, {"name": "b"}])),
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}], "containers": [{"name": "b", "image": "b:2"}]}}),
            pod_with_containers(json!([{"name": "sidecar"}, {"name": "b", "image": "b:2"}, {"name": "a"}])),
        ),
        smp(
            "a null patch changes nothing",
            "ConfigMap",
            json!({"metadata": {"name": "c"}}),
            Value::Null,
            json!({"metadata": {"name": "c"}}),
        ),
        smp_err(
            "an unknown patch directive is a bad request",
            "ConfigMap",
            json!({"data": {"x": "1"}}),
            json!({"data": {"$patch": "explode"}}),
            400,
        ),
        smp_err(
            "merge as a list directive is a bad request",
            "Pod",
            pod_with_containers(json!([{"name": "a"}])),
            json!({"spec": {"containers": [{"$patch": "merge"}]}}),
            400,
        ),
        smp_err(
            "a patch key outside retainKeys is a bad request",
            "Pod",
            json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}),
            json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name"], "hostPath": {"path": "/srv"}}]}}),
            400,
        ),
        smp_err(
            "retainKeys that is not a list is a bad request",
            "Pod",
            json!({"spec": {}}),
            json!({"spec": {"$retainKeys": "name"}}),
            400,
        ),
        smp_err(
            "a list element without its merge key cannot merge",
            "Pod",
            pod_with_containers(json!([{"name": "a"}])),
            json!({"spec": {"containers": [{"image": "x"}]}}),
            422,
        ),
        smp_err(
            "lists of lists are refused",
            "Pod",
            json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": [["b"]]}}),
            422,
        ),
        smp_err(
            "a setElementOrder list that contradicts the patch list is a bad request",
            "Pod",
            pod_with_containers(json!([{"name": "a"}, {"name": "b"}])),
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "b", "image": "b"}]}}),
            400,
        ),
        smp_err(
            "a deleteFromPrimitiveList key without a field is a bad request",
            "Pod",
            json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
            400,
        ),
        smp_err(
            "a patch that is not an object is a bad request",
            "Pod",
            json!({"metadata": {"name": "p"}}),
            json!(["a"]),
            400,
        ),
    ]);
}

#[test]
fn json_and_merge_patch_cases() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x": "1"}});
    run(vec![
        Case {
            name: "json patch adds, replaces and removes",
            kind: "ConfigMap",
            ty: PatchType::Json,
            original: cm.clone(),
            patch: json!([
                {"op": "add", "path": "/data/y", "value": "2"},
                {"op": "replace", "path": "/data/x", "value": "9"},
                {"op": "remove", "path": "/metadata/name"}
            ]),
            want: Ok(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}, "data": {"x": "9", "y": "2"}})),
        },
        Case {
            name: "json patch test that holds lets the patch apply",
            kind: "ConfigMap",
            ty: PatchType::Json,
            original: cm.clone(),
            patch: json!([{"op": "test", "path": "/data/x", "value": "1"}, {"op": "add", "path": "/data/z", "value": "3"}]),
            want: Ok(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x": "1", "z": "3"}}),
            ),
        },
        Case {
            name: "json patch test failure is unprocessable",
            kind: "ConfigMap",
            ty: PatchType::Json,
            original: cm.clone(),
            patch: json!([{"op": "test", "path": "/data/x", "value": "2"}]),
            want: Err(422),
        },
        Case {
            name: "json patch on a missing path is unprocessable",
            kind: "ConfigMap",
            ty: PatchType::Json,
            original: cm.clone(),
            patch: json!([{"op": "remove", "path": "/spec/nothing"}]),
            want: Err(422),
        },
        Case {
            name: "json patch that is not a list is a bad request",
            kind: "ConfigMap",
            ty: PatchType::Json,
            original: cm.clone(),
            patch: json!({"op": "add"}),
            want: Err(400),
        },
        Case {
            name: "json patch with an unknown op is a bad request",
            kind: "ConfigMap",
            ty: PatchType::Json,
            original: cm.clone(),
            patch: json!([{"op": "frobnicate", "path": "/data"}]),
            want: Err(400),
        },
        Case {
            name: "json patch replacing the whole object with a list is unprocessable",
            kind: "ConfigMap",
            ty: PatchType::Json,
            original: cm.clone(),
            patch: json!([{"op": "replace", "path": "", "value": [1]}]),
            want: Err(422),
        },
        Case {
            name: "merge patch merges maps, deletes with null and replaces lists",
            kind: "Pod",
            ty: PatchType::Merge,
            original: json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}, "finalizers": ["x"]}}),
            patch: json!({"metadata": {"labels": {"a": null, "c": "3"}, "finalizers": ["y"]}}),
            want: Ok(json!({"metadata": {"name": "p", "labels": {"b": "2", "c": "3"}, "finalizers": ["y"]}})),
        },
        Case {
            name: "merge patch that is a scalar is a bad request",
            kind: "Pod",
            ty: PatchType::Merge,
            original: cm.clone(),
            patch: json!(5),
            want: Err(400),
        },
        Case {
            name: "merge patch that is a list replaces the document and is unprocessable",
            kind: "Pod",
            ty: PatchType::Merge,
            original: cm.clone(),
            patch: json!([{"a": 1}]),
            want: Err(422),
        },
    ]);
}

#[test]
fn malformed_bodies_are_bad_requests_for_every_patch_type() {
    for ty in [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge] {
        let err = apply_patch("Pod", &json!({}), b"{not json", ty).err();
        assert_eq!(err.map(|e| e.status_code()), Some(400), "{ty:?}");
    }
}

#[test]
fn json_patch_errors_carry_kube_wording_and_the_go_detail() {
    let err = apply_patch(
        "ConfigMap",
        &json!({"metadata": {"name": "c"}}),
        br#"[{"op":"test","path":"/metadata/name","value":"d"}]"#,
        PatchType::Json,
    )
    .err();
    let Some(err) = err else { panic!("test op should fail") };
    assert_eq!(err.to_string(), "the server rejected our request due to an error in our request");
    assert_eq!(err.reason(), "Invalid");
    assert_eq!(err.detail(), Some("testing value /metadata/name failed: test failed"));
}

#[test]
fn json_patch_with_too_many_operations_is_too_large() {
    let ops: Vec<Value> =
        (0..=super::MAX_JSON_PATCH_OPERATIONS).map(|_| json!({"op": "test", "path": "", "value": {}})).collect();
    let body = serde_json::to_vec(&ops).unwrap_or_default();
    let err = apply_patch("Pod", &json!({}), &body, PatchType::Json).err();
    assert!(matches!(err, Some(PatchError::TooManyOperations { count: 10_001, .. })));
    assert_eq!(err.map(|e| e.status_code()), Some(413));
}

#[test]
fn unknown_directive_message_matches_go() {
    let err = apply_patch(
        "ConfigMap",
        &json!({"data": {}}),
        br#"{"data":{"$patch":"explode","a":"b"}}"#,
        PatchType::StrategicMerge,
    )
    .err()
    .map(|e| e.to_string());
    assert_eq!(err.as_deref(), Some("unknown patch type: explode in map: map[$patch:explode a:b]"));
}

#[test]
fn content_types_map_to_patch_types_ignoring_parameters() {
    let cases = [
        ("application/json-patch+json", Some(PatchType::Json)),
        ("application/merge-patch+json; charset=utf-8", Some(PatchType::Merge)),
        ("application/strategic-merge-patch+json", Some(PatchType::StrategicMerge)),
        ("application/apply-patch+yaml", None),
        ("application/json", None),
        ("", None),
    ];
    for (ct, want) in cases {
        assert_eq!(PatchType::from_content_type(ct), want, "{ct}");
        if let Some(ty) = want {
            assert_eq!(PatchType::from_content_type(ty.content_type()), Some(ty));
        }
    }
}

/// `kubectl apply` (client-side, kubectl 1.32) of a Pod whose container image changed, whose
/// `data` volume moved from emptyDir to hostPath, which gained a `cache` volume and lost the `cfg`
/// volume and its mount. The patch is what kubectl's three-way merge sends: the new
/// last-applied annotation, `$setElementOrder` lists, `$retainKeys` for the changed volume and
/// `$patch: delete` for removed elements. Server-owned fields (the service-account volume and
/// mount, defaulted fields, status) must survive.
#[test]
fn kubectl_apply_patch_round_trips_as_kube_applies_it() {
    let live = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "8d1c",
            "resourceVersion": "41",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}\n"}
        },
        "spec": {
            "containers": [{
                "name": "app",
                "image": "nginx:1.25",
                "imagePullPolicy": "IfNotPresent",
                "terminationMessagePath": "/dev/termination-log",
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data"},
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                    {"name": "kube-api-access-x7q2", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}
                ]
            }],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420}},
                {"name": "kube-api-access-x7q2", "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": {"path": "token"}}]}}
            ],
            "restartPolicy": "Always",
            "nodeName": "n1"
        },
        "status": {"phase": "Running"}
    });
    let last_applied = "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"annotations\":{},\"name\":\"web\",\"namespace\":\"default\"},\"spec\":{\"containers\":[{\"image\":\"nginx:1.27\",\"name\":\"app\",\"volumeMounts\":[{\"mountPath\":\"/data\",\"name\":\"data\"}]}],\"volumes\":[{\"hostPath\":{\"path\":\"/srv/data\"},\"name\":\"data\"},{\"emptyDir\":{},\"name\":\"cache\"}]}}\n";
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied}},
        "spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "$setElementOrder/volumes": [{"name": "data"}, {"name": "cache"}],
            "containers": [{
                "$setElementOrder/volumeMounts": [{"mountPath": "/data"}],
                "image": "nginx:1.27",
                "name": "app",
                "volumeMounts": [{"$patch": "delete", "mountPath": "/etc/cfg"}]
            }],
            "volumes": [
                {"$retainKeys": ["hostPath", "name"], "emptyDir": null, "hostPath": {"path": "/srv/data"}, "name": "data"},
                {"emptyDir": {}, "name": "cache"},
                {"$patch": "delete", "name": "cfg"}
            ]
        }
    });
    let want = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "8d1c",
            "resourceVersion": "41",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied}
        },
        "spec": {
            "containers": [{
                "name": "app",
                "image": "nginx:1.27",
                "imagePullPolicy": "IfNotPresent",
                "terminationMessagePath": "/dev/termination-log",
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data"},
                    {"name": "kube-api-access-x7q2", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}
                ]
            }],
            "volumes": [
                {"name": "data", "hostPath": {"path": "/srv/data"}},
                {"name": "cache", "emptyDir": {}},
                {"name": "kube-api-access-x7q2", "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": {"path": "token"}}]}}
            ],
            "restartPolicy": "Always",
            "nodeName": "n1"
        },
        "status": {"phase": "Running"}
    });
    let body = serde_json::to_vec(&patch).unwrap_or_default();
    let got = apply_patch("Pod", &live, &body, PatchType::StrategicMerge).map_err(|e| e.to_string());
    assert_eq!(got, Ok(want));
}

#[test]
fn kubectl_patch_adding_a_finalizer_and_label_keeps_the_rest() {
    // `kubectl patch pvc c -p '{"metadata":{"finalizers":["example.com/x"],"labels":{"tier":"gold"}}}'`
    let pvc = json!({"metadata": {"name": "c", "finalizers": ["kubernetes.io/pvc-protection"], "labels": {"app": "db"}}, "spec": {"volumeName": "pv1"}});
    let got = apply_patch(
        "PersistentVolumeClaim",
        &pvc,
        br#"{"metadata":{"finalizers":["example.com/x"],"labels":{"tier":"gold"}}}"#,
        PatchType::StrategicMerge,
    )
    .map_err(|e| e.to_string());
    assert_eq!(
        got,
        Ok(
            json!({"metadata": {"name": "c", "finalizers": ["example.com/x", "kubernetes.io/pvc-protection"], "labels": {"app": "db", "tier": "gold"}}, "spec": {"volumeName": "pv1"}})
        )
    );
}

#[test]
fn arbitrary_bodies_never_panic() {
    let original = json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "a", "env": [{"name": "X"}]}], "volumes": [1, {"name": "v"}]}});
    let bodies: [&[u8]; 12] = [
        b"",
        b"null",
        b"[]",
        b"{}",
        br#"{"spec":{"containers":[1,2]}}"#,
        br#"{"spec":{"containers":[{"name":"a","env":[[1]]}]}}"#,
        br#"{"spec":{"volumes":[{"name":"v"}]}}"#,
        br#"{"spec":{"$setElementOrder/containers":"x"}}"#,
        br#"{"spec":{"$setElementOrder/containers":[1],"containers":[{"name":"b"}]}}"#,
        br#"{"metadata":{"$deleteFromPrimitiveList/finalizers":"a"}}"#,
        br#"{"$patch":"delete"}"#,
        br#"{"spec":{"containers":[{"$patch":"delete"}]}}"#,
    ];
    for body in bodies {
        for ty in [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge] {
            let _ = apply_patch("Pod", &original, body, ty);
        }
    }
}
