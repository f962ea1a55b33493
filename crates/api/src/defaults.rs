//! Defaulting as kube-apiserver does it (`pkg/apis/core/v1/defaults.go`, `pkg/apis/storage/v1/defaults.go`).
//!
//! Defaults run on every decoded create and update body, before validation, so a client that leaves a field
//! out stores exactly what it would store in Kubernetes (and `kubectl apply` computes the same diffs).
//! Only unset fields are touched; applying defaults twice changes nothing.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::storage::v1 as storage;
use std::collections::BTreeMap;

/// Fill in the fields kube-apiserver defaults on create and update.
pub trait ApplyDefaults {
    /// Set every defaulted field that is unset.
    fn apply_defaults(&mut self);
}

/// The mode kube gives configMap, secret, projected and downwardAPI files (0644).
pub const DEFAULT_FILE_MODE: i32 = 0o644;

fn set<T>(field: &mut Option<T>, value: T) {
    if field.is_none() {
        *field = Some(value);
    }
}

fn set_str(field: &mut Option<String>, value: &str) {
    if field.as_deref().unwrap_or("").is_empty() {
        *field = Some(value.to_string());
    }
}

impl ApplyDefaults for core::PersistentVolume {
    fn apply_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        set_str(&mut spec.persistent_volume_reclaim_policy, "Retain");
        set_str(&mut spec.volume_mode, "Filesystem");
        default_pv_sources(spec);
        let status = self.status.get_or_insert_with(Default::default);
        set_str(&mut status.phase, "Pending");
    }
}

fn default_pv_sources(spec: &mut core::PersistentVolumeSpec) {
    if let Some(hp) = spec.host_path.as_mut() {
        set(&mut hp.type_, String::new());
    }
    if let Some(i) = spec.iscsi.as_mut() {
        set_str(&mut i.iscsi_interface, "default");
    }
    if let Some(r) = spec.rbd.as_mut() {
        set_str(&mut r.pool, "rbd");
        set_str(&mut r.user, "admin");
        set_str(&mut r.keyring, "/etc/ceph/keyring");
    }
    if let Some(a) = spec.azure_disk.as_mut() {
        set_str(&mut a.caching_mode, "ReadWrite");
        set_str(&mut a.fs_type, "ext4");
        set(&mut a.read_only, false);
        set_str(&mut a.kind, "Shared");
    }
}

impl ApplyDefaults for core::PersistentVolumeClaim {
    fn apply_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        set_str(&mut spec.volume_mode, "Filesystem");
        let status = self.status.get_or_insert_with(Default::default);
        set_str(&mut status.phase, "Pending");
    }
}

/// kube's image-tag rule: `:latest` or no tag (and no digest) pulls Always, anything else IfNotPresent.
pub fn default_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = match last.rsplit_once(':') {
        Some((_, t)) => t,
        None if digest => "",
        None => "latest",
    };
    if tag == "latest" {
        "Always"
    } else {
        "IfNotPresent"
    }
}

fn default_container(c: &mut core::Container) {
    if c.image_pull_policy.as_deref().unwrap_or("").is_empty() {
        c.image_pull_policy = Some(default_pull_policy(c.image.as_deref().unwrap_or("")).to_string());
    }
    set_str(&mut c.termination_message_path, "/dev/termination-log");
    set_str(&mut c.termination_message_policy, "File");
    for p in c.ports.iter_mut().flatten() {
        set_str(&mut p.protocol, "TCP");
    }
    // Requests default to limits for every limited resource (`SetDefaults_Pod`).
    if let Some(r) = c.resources.as_mut() {
        if let Some(limits) = r.limits.clone().filter(|l| !l.is_empty()) {
            let requests = r.requests.get_or_insert_with(BTreeMap::new);
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
        }
    }
    for probe in [&mut c.liveness_probe, &mut c.readiness_probe, &mut c.startup_probe].into_iter().flatten() {
        set(&mut probe.timeout_seconds, 1);
        set(&mut probe.period_seconds, 10);
        set(&mut probe.success_threshold, 1);
        set(&mut probe.failure_threshold, 3);
        if let Some(h) = probe.http_get.as_mut() {
            set_str(&mut h.path, "/");
            set_str(&mut h.scheme, "HTTP");
        }
    }
    for e in c.env.iter_mut().flatten() {
        if let Some(f) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            set_str(&mut f.api_version, "v1");
        }
    }
}

fn default_volume(v: &mut core::Volume) {
    let json = serde_json::to_value(&*v).unwrap_or_default();
    let has_source = json.as_object().is_some_and(|m| m.iter().any(|(k, val)| k != "name" && !val.is_null()));
    if !has_source {
        v.empty_dir = Some(core::EmptyDirVolumeSource::default());
    }
    if let Some(hp) = v.host_path.as_mut() {
        set(&mut hp.type_, String::new());
    }
    if let Some(s) = v.secret.as_mut() {
        set(&mut s.default_mode, DEFAULT_FILE_MODE);
    }
    if let Some(c) = v.config_map.as_mut() {
        set(&mut c.default_mode, DEFAULT_FILE_MODE);
    }
    if let Some(d) = v.downward_api.as_mut() {
        set(&mut d.default_mode, DEFAULT_FILE_MODE);
        for item in d.items.iter_mut().flatten() {
            if let Some(f) = item.field_ref.as_mut() {
                set_str(&mut f.api_version, "v1");
            }
        }
    }
    if let Some(p) = v.projected.as_mut() {
        set(&mut p.default_mode, DEFAULT_FILE_MODE);
        for s in p.sources.iter_mut().flatten() {
            if let Some(t) = s.service_account_token.as_mut() {
                set(&mut t.expiration_seconds, 3600);
            }
            for item in s.downward_api.iter_mut().flat_map(|d| d.items.iter_mut().flatten()) {
                if let Some(f) = item.field_ref.as_mut() {
                    set_str(&mut f.api_version, "v1");
                }
            }
        }
    }
    if let Some(i) = v.iscsi.as_mut() {
        set_str(&mut i.iscsi_interface, "default");
    }
    if let Some(r) = v.rbd.as_mut() {
        set_str(&mut r.pool, "rbd");
        set_str(&mut r.user, "admin");
        set_str(&mut r.keyring, "/etc/ceph/keyring");
    }
    if let Some(e) = v.ephemeral.as_mut().and_then(|e| e.volume_claim_template.as_mut()) {
        set_str(&mut e.spec.volume_mode, "Filesystem");
    }
}

impl ApplyDefaults for core::Pod {
    fn apply_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        set_str(&mut spec.dns_policy, "ClusterFirst");
        set_str(&mut spec.restart_policy, "Always");
        set(&mut spec.termination_grace_period_seconds, 30);
        set_str(&mut spec.scheduler_name, "default-scheduler");
        set(&mut spec.security_context, core::PodSecurityContext::default());
        set(&mut spec.enable_service_links, true);
        let host_network = spec.host_network == Some(true);
        for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
            default_container(c);
            if host_network {
                for p in c.ports.iter_mut().flatten() {
                    set(&mut p.host_port, p.container_port);
                }
            }
        }
        for v in spec.volumes.iter_mut().flatten() {
            default_volume(v);
        }
        for t in spec.tolerations.iter_mut().flatten() {
            if t.operator.as_deref().unwrap_or("").is_empty() {
                t.operator = Some("Equal".into());
            }
        }
    }
}

impl ApplyDefaults for core::Secret {
    fn apply_defaults(&mut self) {
        set_str(&mut self.type_, "Opaque");
    }
}

impl ApplyDefaults for core::Namespace {
    fn apply_defaults(&mut self) {
        // Since 1.21 every namespace carries its own name as a label.
        if let Some(name) = self.metadata.name.clone().filter(|n| !n.is_empty()) {
            self.metadata.labels.get_or_insert_with(BTreeMap::new).insert("kubernetes.io/metadata.name".into(), name);
        }
        let spec = self.spec.get_or_insert_with(Default::default);
        if spec.finalizers.as_ref().is_none_or(Vec::is_empty) {
            spec.finalizers = Some(vec!["kubernetes".to_string()]);
        }
        let status = self.status.get_or_insert_with(Default::default);
        set_str(&mut status.phase, "Active");
    }
}

impl ApplyDefaults for core::Node {
    fn apply_defaults(&mut self) {
        if let Some(status) = self.status.as_mut() {
            if status.allocatable.is_none() {
                status.allocatable = status.capacity.clone();
            }
        }
    }
}

impl ApplyDefaults for core::ConfigMap {
    fn apply_defaults(&mut self) {}
}

impl ApplyDefaults for core::Event {
    fn apply_defaults(&mut self) {}
}

impl ApplyDefaults for storage::StorageClass {
    fn apply_defaults(&mut self) {
        set_str(&mut self.reclaim_policy, "Delete");
        set_str(&mut self.volume_binding_mode, "Immediate");
    }
}

impl ApplyDefaults for storage::CSIDriver {
    fn apply_defaults(&mut self) {
        let s = &mut self.spec;
        set(&mut s.attach_required, true);
        set(&mut s.pod_info_on_mount, false);
        set(&mut s.storage_capacity, false);
        set(&mut s.requires_republish, false);
        set(&mut s.se_linux_mount, false);
        set_str(&mut s.fs_group_policy, "ReadWriteOnceWithFSType");
        if s.volume_lifecycle_modes.as_ref().is_none_or(Vec::is_empty) {
            s.volume_lifecycle_modes = Some(vec!["Persistent".to_string()]);
        }
    }
}

impl ApplyDefaults for storage::VolumeAttachment {
    fn apply_defaults(&mut self) {
        if let Some(spec) = self.spec.source.inline_volume_spec.as_mut() {
            default_pv_sources(spec);
        }
    }
}

impl ApplyDefaults for storage::CSINode {
    fn apply_defaults(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_volumes_and_claims_like_kube() {
        let mut pv: core::PersistentVolume =
            serde_json::from_value(json!({"metadata": {"name": "a"}, "spec": {"hostPath": {"path": "/x"}}}))
                .expect("pv");
        pv.apply_defaults();
        let spec = pv.spec.as_ref().expect("spec");
        assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
        assert_eq!(spec.volume_mode.as_deref(), Some("Filesystem"));
        assert_eq!(spec.host_path.as_ref().and_then(|h| h.type_.as_deref()), Some(""));
        assert_eq!(pv.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Pending"));
        let mut kept: core::PersistentVolume =
            serde_json::from_value(json!({"spec": {"persistentVolumeReclaimPolicy": "Delete", "volumeMode": "Block"}}))
                .expect("pv");
        kept.apply_defaults();
        assert_eq!(kept.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()), Some("Delete"));
        assert_eq!(kept.spec.as_ref().and_then(|s| s.volume_mode.as_deref()), Some("Block"));
        let mut pvc = core::PersistentVolumeClaim::default();
        pvc.apply_defaults();
        assert_eq!(pvc.spec.as_ref().and_then(|s| s.volume_mode.as_deref()), Some("Filesystem"));
    }

    #[test]
    fn defaults_pods_like_kube() {
        let mut pod: core::Pod = serde_json::from_value(json!({"spec": {
            "containers": [
                {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1"}}},
                {"name": "b", "image": "nginx:1.25"},
                {"name": "c", "image": "registry:5000/app"},
                {"name": "d", "image": "app@sha256:abc"},
                {"name": "e", "image": "app:latest"}
            ],
            "volumes": [{"name": "s", "secret": {"secretName": "x"}}, {"name": "c", "configMap": {"name": "x"}}, {"name": "e"}]
        }}))
        .expect("pod");
        pod.apply_defaults();
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
        assert_eq!(spec.enable_service_links, Some(true));
        assert!(spec.security_context.is_some());
        let policies: Vec<_> =
            spec.containers.iter().map(|c| c.image_pull_policy.clone().unwrap_or_default()).collect();
        assert_eq!(policies, vec!["Always", "IfNotPresent", "Always", "IfNotPresent", "Always"]);
        let a = &spec.containers[0];
        assert_eq!(a.termination_message_path.as_deref(), Some("/dev/termination-log"));
        assert_eq!(a.termination_message_policy.as_deref(), Some("File"));
        assert_eq!(a.ports.as_ref().and_then(|p| p[0].protocol.as_deref()), Some("TCP"));
        assert_eq!(
            a.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("cpu")).map(|q| q.0.as_str()),
            Some("1")
        );
        let vols = spec.volumes.as_ref().expect("volumes");
        assert_eq!(vols[0].secret.as_ref().and_then(|s| s.default_mode), Some(420));
        assert_eq!(vols[1].config_map.as_ref().and_then(|s| s.default_mode), Some(420));
        assert!(vols[2].empty_dir.is_some(), "a volume without a source becomes an emptyDir");
    }

    #[test]
    fn defaults_storage_objects_like_kube() {
        let mut sc: storage::StorageClass =
            serde_json::from_value(json!({"metadata": {"name": "a"}, "provisioner": "p"})).expect("sc");
        sc.apply_defaults();
        assert_eq!(sc.reclaim_policy.as_deref(), Some("Delete"));
        assert_eq!(sc.volume_binding_mode.as_deref(), Some("Immediate"));
        let mut d = storage::CSIDriver::default();
        d.apply_defaults();
        assert_eq!(d.spec.attach_required, Some(true));
        assert_eq!(d.spec.pod_info_on_mount, Some(false));
        assert_eq!(d.spec.requires_republish, Some(false));
        assert_eq!(d.spec.storage_capacity, Some(false));
        assert_eq!(d.spec.se_linux_mount, Some(false));
        assert_eq!(d.spec.fs_group_policy.as_deref(), Some("ReadWriteOnceWithFSType"));
        assert_eq!(d.spec.volume_lifecycle_modes, Some(vec!["Persistent".to_string()]));
        let mut s = core::Secret::default();
        s.apply_defaults();
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        let mut ns: core::Namespace = serde_json::from_value(json!({"metadata": {"name": "team"}})).expect("ns");
        ns.apply_defaults();
        assert_eq!(ns.spec.as_ref().and_then(|s| s.finalizers.clone()), Some(vec!["kubernetes".to_string()]));
        assert_eq!(
            ns.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/metadata.name")).map(String::as_str),
            Some("team")
        );
    }

    #[test]
    fn applying_defaults_twice_changes_nothing() {
        let mut pod: core::Pod =
            serde_json::from_value(json!({"spec": {"containers": [{"name": "a", "image": "nginx"}]}})).expect("pod");
        pod.apply_defaults();
        let once = pod.clone();
        pod.apply_defaults();
        assert_eq!(pod, once);
    }
}
