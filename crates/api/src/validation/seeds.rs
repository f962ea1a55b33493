//! The seeds' v1 examples (`/work/shared/seeds/*.txt`), transcribed from their YAML: after defaulting, each must
//! validate clean, as kube-apiserver accepts them. The seeds have no ConfigMap manifest; the one below is the
//! `log-config` map their configMap pod mounts.

use super::Validate;
use crate::defaults::ApplyDefaults;
use crate::quantity::Quantities;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::storage::v1 as storage;
use serde_json::{json, Value};

fn clean<T: Validate + ApplyDefaults + Quantities + serde::de::DeserializeOwned>(name: &str, v: Value) {
    let mut obj: T = serde_json::from_value(v).unwrap_or_else(|e| panic!("{name}: does not decode: {e}"));
    assert_eq!(obj.check_quantities(), Ok(()), "{name}");
    obj.apply_defaults();
    let errs = obj.validate();
    assert!(errs.is_empty(), "{name}: {}", errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "));
}

fn with_namespace(mut v: Value) -> Value {
    if v["metadata"].get("namespace").is_none() {
        v["metadata"]["namespace"] = json!("default");
    }
    v
}

#[test]
fn the_seed_persistent_volumes_validate_clean() {
    clean::<core::PersistentVolume>(
        "pv with nfs and claimRef",
        json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {
                "annotations": {"pv.kubernetes.io/provisioned-by": "fuseim.pri/ifs"},
                "creationTimestamp": "2018-07-12T06:46:48Z",
                "name": "default-test-web-0-pvc-58cf5ec1-859f-11e8-bb61-005056b83985",
                "resourceVersion": "100163256",
                "selfLink": "/api/v1/persistentvolumes/default-test-web-0-pvc-58cf5ec1-859f-11e8-bb61-005056b83985",
                "uid": "59796ba3-859f-11e8-9c50-c81f66bcff65"
            },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "capacity": {"storage": "2Gi"},
                "volumeMode": "Filesystem",
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "test-web-0", "namespace": "default",
                             "resourceVersion": "100163248", "uid": "58cf5ec1-859f-11e8-bb61-005056b83985"},
                "nfs": {"path": "/data/nfs-storage/default-test-web-0-pvc-58cf5ec1-859f-11e8-bb61-005056b83985", "server": "172.16.201.54"},
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": "managed-nfs-storage",
                "mountOptions": ["hard", "nfsvers=4.1"]
            },
            "status": {"phase": "Bound"}
        }),
    );
    clean::<core::PersistentVolume>(
        "pv-flex-nfs",
        json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "pv-flex-nfs"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "flexVolume": {"driver": "k8s/nfs", "fsType": "nfs", "options": {"server": "192.168.0.170", "share": "export"}}
            }
        }),
    );
    clean::<core::PersistentVolume>(
        "static nfs pv",
        json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "nfs"},
            "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteMany"], "nfs": {"server": "10.244.1.4", "path": "/"}}
        }),
    );
}

#[test]
fn the_seed_claims_validate_clean() {
    clean::<core::PersistentVolumeClaim>(
        "myclaim",
        with_namespace(json!({
            "kind": "PersistentVolumeClaim", "apiVersion": "v1",
            "metadata": {"name": "myclaim"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "volumeMode": "Filesystem",
                "resources": {"requests": {"storage": "8Gi"}},
                "storageClassName": "slow",
                "selector": {"matchLabels": {"release": "stable"},
                             "matchExpressions": [{"key": "environment", "operator": "In", "values": ["dev"]}]}
            }
        })),
    );
    clean::<core::PersistentVolumeClaim>(
        "claim1",
        with_namespace(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "claim1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast", "resources": {"requests": {"storage": "30Gi"}}}
        })),
    );
    clean::<core::PersistentVolumeClaim>(
        "nfs claim",
        with_namespace(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "nfs"},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "resources": {"requests": {"storage": "1Mi"}}}
        })),
    );
}

#[test]
fn the_seed_storage_classes_validate_clean() {
    for (name, kind) in [("slow", "pd-standard"), ("fast", "pd-ssd")] {
        clean::<storage::StorageClass>(
            name,
            json!({
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": name},
                "provisioner": "kubernetes.io/gce-pd",
                "parameters": {"type": kind}
            }),
        );
    }
    // The storage.k8s.io/v3 examples are refused for their version by the server; their bodies are valid v1.
    clean::<storage::StorageClass>(
        "standard (v3 body)",
        json!({
            "kind": "StorageClass", "metadata": {"name": "standard"},
            "provisioner": "kubernetes.io/aws-ebs", "parameters": {"type": "gp2"}, "reclaimPolicy": "Retain", "mountOptions": ["debug"]
        }),
    );
}

#[test]
fn the_seed_config_map_validates_clean() {
    clean::<core::ConfigMap>(
        "log-config",
        with_namespace(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "log-config"},
            "data": {"log_level": "INFO"}
        })),
    );
}

#[test]
fn the_seed_pods_validate_clean() {
    let pods = [
        (
            "emptyDir test-pd",
            json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "test-pd"},
                "spec": {"containers": [{"image": "k8s.gcr.io/test-webserver", "name": "test-container",
                                         "volumeMounts": [{"mountPath": "/cache", "name": "cache-volume"}]}],
                         "volumes": [{"name": "cache-volume", "emptyDir": {}}]}
            }),
        ),
        (
            "hostPath test-pd",
            json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "test-pd"},
                "spec": {"containers": [{"image": "k8s.gcr.io/test-webserver", "name": "test-container",
                                         "volumeMounts": [{"mountPath": "/test-pd", "name": "test-volume"}]}],
                         "volumes": [{"name": "test-volume", "hostPath": {"path": "/data", "type": "Directory"}}]}
            }),
        ),
        (
            "hosts file",
            json!({
                "metadata": {"name": "hosts"},
                "spec": {"containers": [{"name": "c", "image": "busybox",
                                         "volumeMounts": [{"mountPath": "/etc/hosts", "name": "hosts", "readOnly": true}]}],
                         "volumes": [{"hostPath": {"path": "/etc/hosts", "type": "FileOrCreate"}, "name": "hosts"}]}
            }),
        ),
        (
            "configmap-pod",
            json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "configmap-pod"},
                "spec": {"containers": [{"name": "test", "image": "busybox",
                                         "volumeMounts": [{"name": "config-vol", "mountPath": "/etc/config"}]}],
                         "volumes": [{"name": "config-vol", "configMap": {"name": "log-config",
                                                                          "items": [{"key": "log_level", "path": "log_level"}]}}]}
            }),
        ),
        (
            "cephfs",
            json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cephfs"},
                "spec": {"containers": [{"name": "cephfs-rw", "image": "kubernetes/pause",
                                         "volumeMounts": [{"mountPath": "/mnt/cephfs", "name": "cephfs"}]}],
                         "volumes": [{"name": "cephfs", "cephfs": {"monitors": ["10.16.154.78:6789", "10.16.154.82:6789", "10.16.154.83:6789"],
                                                                   "user": "admin", "secretFile": "/etc/ceph/admin.secret", "readOnly": true}}]}
            }),
        ),
        (
            "mypod",
            json!({
                "kind": "Pod", "apiVersion": "v1", "metadata": {"name": "mypod"},
                "spec": {"containers": [{"name": "myfrontend", "image": "dockerfile/nginx",
                                         "volumeMounts": [{"mountPath": "/var/www/html", "name": "mypd"}]}],
                         "volumes": [{"name": "mypd", "persistentVolumeClaim": {"claimName": "myclaim"}}]}
            }),
        ),
        (
            "nginx-nfs flex",
            json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nginx-nfs", "namespace": "default"},
                "spec": {"containers": [{"name": "nginx-nfs", "image": "nginx", "volumeMounts": [{"name": "test", "mountPath": "/data"}],
                                         "ports": [{"containerPort": 80}]}],
                         "volumes": [{"name": "test", "flexVolume": {"driver": "k8s/nfs", "fsType": "nfs",
                                                                     "options": {"server": "172.16.0.25", "share": "dws_nas_scratch"}}}]}
            }),
        ),
        (
            "nginx lvm flex",
            json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nginx", "namespace": "default"},
                "spec": {"containers": [{"name": "nginx", "image": "nginx", "volumeMounts": [{"name": "test", "mountPath": "/data"}],
                                         "ports": [{"containerPort": 80}]}],
                         "volumes": [{"name": "test", "flexVolume": {"driver": "kubernetes.io/lvm", "fsType": "ext4",
                                                                     "options": {"volumeID": "vol1", "size": "1000m", "volumegroup": "kube_vg"}}}]}
            }),
        ),
    ];
    for (name, pod) in pods {
        clean::<core::Pod>(name, with_namespace(pod));
    }
}

fn exercise<T>(name: &str)
where
    T: Validate + ApplyDefaults + Quantities + crate::strategy::PrepareForCreate + Default + Clone,
{
    let mut empty = T::default();
    let _ = empty.check_quantities();
    assert!(!empty.validate().is_empty(), "{name}: an empty object has no name, so it is invalid");
    empty.apply_defaults();
    empty.prepare_for_create();
    let _ = empty.validate_update(&T::default());
}

#[test]
fn empty_objects_of_every_kind_are_refused_without_panicking() {
    exercise::<core::PersistentVolume>("pv");
    exercise::<core::PersistentVolumeClaim>("pvc");
    exercise::<core::Pod>("pod");
    exercise::<core::ConfigMap>("configmap");
    exercise::<core::Secret>("secret");
    exercise::<core::Node>("node");
    exercise::<core::Namespace>("namespace");
    exercise::<core::Event>("event");
    exercise::<storage::StorageClass>("storageclass");
    exercise::<storage::VolumeAttachment>("volumeattachment");
    exercise::<storage::CSIDriver>("csidriver");
    exercise::<storage::CSINode>("csinode");
}
