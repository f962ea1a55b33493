//! Pod validation (`ValidatePodCreate`, `ValidatePodSpec`, `ValidatePodUpdate`), concentrating on what the
//! storage system depends on: volumes and their sources, volume mounts and devices, and the container fields
//! every pod has. Fields kvol does not act on (probes, security contexts, affinity beyond node selectors) get
//! kube's light checks or none.

use super::meta::{invalid_each, validate_node_selector, validate_object_meta, validate_object_meta_update, NameRule};
use super::pv::{
    set_sources, validate_csi_driver_name, validate_flex, validate_host_path, validate_nfs, validate_pvc_spec,
};
use super::syntax::{dns1123_label, dns1123_subdomain, has_backsteps, is_abs, qualified_name};
use super::{json_diff, json_of, pruned, Validate};
use crate::field::{ErrorList, FieldError, FieldPath};
use k8s_openapi::api::core::v1 as core;
use std::collections::{BTreeMap, BTreeSet};

/// Pod volume source fields, in kube's order.
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
];

const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// kube's pod-update message; the diff follows it on the next lines.
pub const POD_UPDATE_MESSAGE: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn validate_mode(mode: Option<i32>, path: &FieldPath) -> ErrorList {
    match mode {
        Some(m) if !(0..=0o777).contains(&m) => vec![FieldError::invalid(path, m, FILE_MODE_MSG)],
        _ => vec![],
    }
}

/// A relative path inside a volume: not absolute, no `..` element, not starting with `..`
/// (`validateLocalNonReservedPath`).
fn validate_local_path(p: &str, path: &FieldPath, reserved: bool) -> ErrorList {
    let mut errs = ErrorList::new();
    if is_abs(p) {
        errs.push(FieldError::invalid(path, p, "must be a relative path"));
    }
    if has_backsteps(p) {
        errs.push(FieldError::invalid(path, p, "must not contain '..'"));
    }
    if reserved && p.starts_with("..") {
        errs.push(FieldError::invalid(path, p, "must not start with '..'"));
    }
    errs
}

fn validate_items(items: &[core::KeyToPath], path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    for (i, item) in items.iter().enumerate() {
        let p = path.index(i);
        if item.key.is_empty() {
            errs.push(FieldError::required(&p.child("key"), ""));
        }
        if item.path.is_empty() {
            errs.push(FieldError::required(&p.child("path"), ""));
        } else {
            errs.extend(validate_local_path(&item.path, &p.child("path"), true));
        }
        errs.extend(validate_mode(item.mode, &p.child("mode")));
    }
    errs
}

fn validate_volume_source(v: &core::Volume, source: &str, path: &FieldPath) -> ErrorList {
    let p = path.child(source);
    let mut errs = ErrorList::new();
    match source {
        "hostPath" => errs.extend(v.host_path.as_ref().map(|s| validate_host_path(s, &p)).unwrap_or_default()),
        "emptyDir" => {
            if let Some(e) = &v.empty_dir {
                let medium = e.medium.as_deref().unwrap_or("");
                if !(matches!(medium, "" | "Memory" | "HugePages") || medium.starts_with("HugePages-")) {
                    errs.push(FieldError::not_supported(&p.child("medium"), medium, &["", "HugePages", "Memory"]));
                }
                if let Some(limit) = &e.size_limit {
                    match crate::quantity::parse(limit) {
                        Ok(q) if !q.is_negative() => {}
                        _ => errs.push(FieldError::forbidden(
                            &p.child("sizeLimit"),
                            "SizeLimit field must be a valid resource quantity",
                        )),
                    }
                }
            }
        }
        "secret" => {
            if let Some(s) = &v.secret {
                match s.secret_name.as_deref().unwrap_or("") {
                    "" => errs.push(FieldError::required(&p.child("secretName"), "")),
                    n => invalid_each(&mut errs, &p.child("secretName"), n, dns1123_subdomain(n)),
                }
                errs.extend(validate_mode(s.default_mode, &p.child("defaultMode")));
                errs.extend(validate_items(s.items.as_deref().unwrap_or(&[]), &p.child("items")));
            }
        }
        "configMap" => {
            if let Some(c) = &v.config_map {
                match c.name.as_str() {
                    "" => errs.push(FieldError::required(&p.child("name"), "")),
                    n => invalid_each(&mut errs, &p.child("name"), n, dns1123_subdomain(n)),
                }
                errs.extend(validate_mode(c.default_mode, &p.child("defaultMode")));
                errs.extend(validate_items(c.items.as_deref().unwrap_or(&[]), &p.child("items")));
            }
        }
        "downwardAPI" => {
            if let Some(d) = &v.downward_api {
                errs.extend(validate_mode(d.default_mode, &p.child("defaultMode")));
                for (i, item) in d.items.iter().flatten().enumerate() {
                    let ip = p.child("items").index(i);
                    if item.path.is_empty() {
                        errs.push(FieldError::required(&ip.child("path"), ""));
                    } else {
                        errs.extend(validate_local_path(&item.path, &ip.child("path"), true));
                    }
                    errs.extend(validate_mode(item.mode, &ip.child("mode")));
                    match (&item.field_ref, &item.resource_field_ref) {
                        (Some(_), Some(_)) => errs.push(FieldError::invalid(
                            &ip,
                            "resource",
                            "fieldRef and resourceFieldRef can not be specified simultaneously",
                        )),
                        (None, None) => {
                            errs.push(FieldError::required(&ip, "one of fieldRef and resourceFieldRef is required"))
                        }
                        _ => {}
                    }
                }
            }
        }
        "projected" => {
            if let Some(pr) = &v.projected {
                errs.extend(validate_mode(pr.default_mode, &p.child("defaultMode")));
                for (i, src) in pr.sources.iter().flatten().enumerate() {
                    let sp = p.child("sources").index(i);
                    let set = json_of(src).as_object().map_or(0, |m| m.values().filter(|v| !v.is_null()).count());
                    if set != 1 {
                        errs.push(FieldError::forbidden(&sp, "may not specify more than 1 volume type per source"));
                    }
                    if let Some(c) = &src.config_map {
                        errs.extend(validate_items(
                            c.items.as_deref().unwrap_or(&[]),
                            &sp.child("configMap").child("items"),
                        ));
                    }
                    if let Some(s) = &src.secret {
                        errs.extend(validate_items(
                            s.items.as_deref().unwrap_or(&[]),
                            &sp.child("secret").child("items"),
                        ));
                    }
                    if let Some(t) = &src.service_account_token {
                        if t.path.is_empty() {
                            errs.push(FieldError::required(&sp.child("serviceAccountToken").child("path"), ""));
                        } else {
                            errs.extend(validate_local_path(
                                &t.path,
                                &sp.child("serviceAccountToken").child("path"),
                                true,
                            ));
                        }
                        if let Some(e) = t.expiration_seconds {
                            if e < 600 {
                                errs.push(FieldError::invalid(
                                    &sp.child("serviceAccountToken").child("expirationSeconds"),
                                    e,
                                    "may not specify a duration less than 10 minutes",
                                ));
                            }
                        }
                    }
                }
            }
        }
        "persistentVolumeClaim" => {
            if let Some(c) = &v.persistent_volume_claim {
                if c.claim_name.is_empty() {
                    errs.push(FieldError::required(&p.child("claimName"), ""));
                }
            }
        }
        "nfs" => errs.extend(v.nfs.as_ref().map(|s| validate_nfs(s, &p)).unwrap_or_default()),
        "flexVolume" => {
            if let Some(f) = &v.flex_volume {
                errs.extend(validate_flex(&f.driver, f.options.as_ref(), &p));
            }
        }
        "csi" => {
            if let Some(c) = &v.csi {
                errs.extend(validate_csi_driver_name(&c.driver, &p.child("driver")));
            }
        }
        "cephfs" if v.cephfs.as_ref().is_some_and(|c| c.monitors.is_empty()) => {
            errs.push(FieldError::required(&p.child("monitors"), ""));
        }
        "rbd" => {
            if let Some(r) = &v.rbd {
                if r.monitors.is_empty() {
                    errs.push(FieldError::required(&p.child("monitors"), ""));
                }
                if r.image.is_empty() {
                    errs.push(FieldError::required(&p.child("image"), ""));
                }
            }
        }
        "iscsi" => {
            if let Some(i) = &v.iscsi {
                if i.target_portal.is_empty() {
                    errs.push(FieldError::required(&p.child("targetPortal"), ""));
                }
                if i.iqn.is_empty() {
                    errs.push(FieldError::required(&p.child("iqn"), ""));
                }
            }
        }
        "gitRepo" => {
            if let Some(g) = &v.git_repo {
                if g.repository.is_empty() {
                    errs.push(FieldError::required(&p.child("repository"), ""));
                }
                if let Some(d) = g.directory.as_deref() {
                    errs.extend(validate_local_path(d, &p.child("directory"), false));
                }
            }
        }
        "ephemeral" => {
            if let Some(e) = &v.ephemeral {
                match &e.volume_claim_template {
                    None => errs.push(FieldError::required(&p.child("volumeClaimTemplate"), "")),
                    Some(t) => errs.extend(validate_pvc_spec(&t.spec, &p.child("volumeClaimTemplate").child("spec"))),
                }
            }
        }
        "image" if v.image.as_ref().is_some_and(|i| i.reference.as_deref().unwrap_or("").is_empty()) => {
            errs.push(FieldError::required(&p.child("reference"), ""));
        }
        _ => {}
    }
    errs
}

/// Pod volumes: unique DNS-1123-label names, exactly one source each, and that source's rules. Returns the
/// errors and the volumes by name.
pub fn validate_volumes<'a>(
    volumes: &'a [core::Volume],
    path: &FieldPath,
) -> (ErrorList, BTreeMap<&'a str, &'a core::Volume>) {
    let mut errs = ErrorList::new();
    let mut by_name = BTreeMap::new();
    for (i, v) in volumes.iter().enumerate() {
        let p = path.index(i);
        let name_path = p.child("name");
        if v.name.is_empty() {
            errs.push(FieldError::required(&name_path, ""));
        } else {
            invalid_each(&mut errs, &name_path, &v.name, dns1123_label(&v.name));
        }
        if by_name.insert(v.name.as_str(), v).is_some() {
            errs.push(FieldError::duplicate(&name_path, v.name.as_str()));
        }
        let json = json_of(v);
        match set_sources(&json, VOLUME_SOURCES).as_slice() {
            [] => errs.push(FieldError::required(&p, "must specify a volume type")),
            [first, rest @ ..] => {
                errs.extend(validate_volume_source(v, first, &p));
                for extra in rest {
                    errs.push(FieldError::forbidden(&p.child(extra), "may not specify more than 1 volume type"));
                }
            }
        }
    }
    (errs, by_name)
}

fn validate_mounts(c: &core::Container, volumes: &BTreeMap<&str, &core::Volume>, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut mount_paths = BTreeSet::new();
    let privileged = c.security_context.as_ref().and_then(|s| s.privileged).unwrap_or(false);
    let devices = c.volume_devices.as_deref().unwrap_or(&[]);
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let p = path.child("volumeMounts").index(i);
        if m.name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        } else if !volumes.contains_key(m.name.as_str()) {
            errs.push(FieldError::not_found(&p.child("name"), m.name.as_str()));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(&p.child("mountPath"), ""));
        } else if !mount_paths.insert(m.mount_path.as_str()) {
            errs.push(FieldError::invalid(&p.child("mountPath"), m.mount_path.as_str(), "must be unique"));
        }
        let sub_path = m.sub_path.as_deref().unwrap_or("");
        if !sub_path.is_empty() {
            errs.extend(validate_local_path(sub_path, &p.child("subPath"), false));
        }
        let expr = m.sub_path_expr.as_deref().unwrap_or("");
        if !expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(FieldError::invalid(
                    &p.child("subPathExpr"),
                    expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            errs.extend(validate_local_path(expr, &p.child("subPathExpr"), false));
        }
        match m.mount_propagation.as_deref() {
            None | Some("None") | Some("HostToContainer") => {}
            Some("Bidirectional") if !privileged => errs.push(FieldError::forbidden(
                &p.child("mountPropagation"),
                "Bidirectional mount propagation is available only to privileged containers",
            )),
            Some("Bidirectional") => {}
            Some(other) => errs.push(FieldError::not_supported(
                &p.child("mountPropagation"),
                other,
                &["Bidirectional", "HostToContainer", "None"],
            )),
        }
        if let Some(rro) = m.recursive_read_only.as_deref() {
            if !matches!(rro, "Disabled" | "IfPossible" | "Enabled") {
                errs.push(FieldError::not_supported(
                    &p.child("recursiveReadOnly"),
                    rro,
                    &["Disabled", "Enabled", "IfPossible"],
                ));
            }
        }
        if devices.iter().any(|d| d.device_path == m.mount_path) {
            errs.push(FieldError::invalid(
                &p.child("mountPath"),
                m.mount_path.as_str(),
                "must not already exist as a path in volumeDevices",
            ));
        }
    }
    let mut device_paths = BTreeSet::new();
    let mut device_names = BTreeSet::new();
    for (i, d) in devices.iter().enumerate() {
        let p = path.child("volumeDevices").index(i);
        if d.name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        } else if !device_names.insert(d.name.as_str()) {
            errs.push(FieldError::invalid(&p.child("name"), d.name.as_str(), "must be unique"));
        }
        match volumes.get(d.name.as_str()) {
            None if !d.name.is_empty() => errs.push(FieldError::not_found(&p.child("name"), d.name.as_str())),
            Some(v) if v.persistent_volume_claim.is_none() && v.ephemeral.is_none() => errs.push(FieldError::invalid(
                &p.child("name"),
                d.name.as_str(),
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            )),
            _ => {}
        }
        if d.device_path.is_empty() {
            errs.push(FieldError::required(&p.child("devicePath"), ""));
        } else {
            if !device_paths.insert(d.device_path.as_str()) {
                errs.push(FieldError::invalid(&p.child("devicePath"), d.device_path.as_str(), "must be unique"));
            }
            if has_backsteps(&d.device_path) {
                errs.push(FieldError::invalid(&p.child("devicePath"), d.device_path.as_str(), "must not contain '..'"));
            }
        }
        if c.volume_mounts.iter().flatten().any(|m| m.name == d.name) {
            errs.push(FieldError::invalid(&p.child("name"), d.name.as_str(), "must not already exist in volumeMounts"));
        }
    }
    errs
}

fn validate_container(c: &core::Container, volumes: &BTreeMap<&str, &core::Volume>, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    if c.name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else {
        invalid_each(&mut errs, &path.child("name"), &c.name, dns1123_label(&c.name));
    }
    match c.image.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(&path.child("image"), "")),
        img if img.trim() != img => {
            errs.push(FieldError::invalid(&path.child("image"), img, "must not have leading or trailing whitespace"))
        }
        _ => {}
    }
    match c.image_pull_policy.as_deref() {
        None | Some("") => errs.push(FieldError::required(&path.child("imagePullPolicy"), "")),
        Some("Always" | "IfNotPresent" | "Never") => {}
        Some(other) => errs.push(FieldError::not_supported(
            &path.child("imagePullPolicy"),
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    match c.termination_message_policy.as_deref() {
        None | Some("") => errs.push(FieldError::required(&path.child("terminationMessagePolicy"), "")),
        Some("File" | "FallbackToLogsOnError") => {}
        Some(other) => errs.push(FieldError::not_supported(
            &path.child("terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    for (i, port) in c.ports.iter().flatten().enumerate() {
        let p = path.child("ports").index(i);
        if !(1..=65535).contains(&port.container_port) {
            errs.push(FieldError::invalid(
                &p.child("containerPort"),
                port.container_port,
                "must be between 1 and 65535, inclusive",
            ));
        }
        if let Some(h) = port.host_port {
            if h != 0 && !(1..=65535).contains(&h) {
                errs.push(FieldError::invalid(&p.child("hostPort"), h, "must be between 1 and 65535, inclusive"));
            }
        }
        match port.protocol.as_deref() {
            None | Some("") => errs.push(FieldError::required(&p.child("protocol"), "")),
            Some("TCP" | "UDP" | "SCTP") => {}
            Some(other) => errs.push(FieldError::not_supported(&p.child("protocol"), other, &["SCTP", "TCP", "UDP"])),
        }
    }
    if let Some(r) = &c.resources {
        for (kind, map) in [("limits", &r.limits), ("requests", &r.requests)] {
            for (k, q) in map.iter().flatten() {
                let p = path.child("resources").child(kind).key(k);
                errs.extend(super::pv::nonnegative_quantity(q, &p));
            }
        }
    }
    errs.extend(validate_mounts(c, volumes, path));
    errs
}

/// A pod spec (`ValidatePodSpec`), expected after defaulting.
pub fn validate_pod_spec(spec: &core::PodSpec, path: &FieldPath) -> ErrorList {
    let (mut errs, volumes) = validate_volumes(spec.volumes.as_deref().unwrap_or(&[]), &path.child("volumes"));
    if spec.containers.is_empty() {
        errs.push(FieldError::required(&path.child("containers"), ""));
    }
    let mut names = BTreeSet::new();
    for (field, list) in
        [("initContainers", spec.init_containers.as_deref().unwrap_or(&[])), ("containers", &spec.containers)]
    {
        for (i, c) in list.iter().enumerate() {
            let p = path.child(field).index(i);
            errs.extend(validate_container(c, &volumes, &p));
            if !c.name.is_empty() && !names.insert(c.name.as_str()) {
                errs.push(FieldError::duplicate(&p.child("name"), c.name.as_str()));
            }
        }
    }
    match spec.restart_policy.as_deref() {
        None | Some("") => errs.push(FieldError::required(&path.child("restartPolicy"), "")),
        Some("Always" | "OnFailure" | "Never") => {}
        Some(other) => {
            errs.push(FieldError::not_supported(&path.child("restartPolicy"), other, &["Always", "Never", "OnFailure"]))
        }
    }
    match spec.dns_policy.as_deref() {
        None | Some("") => errs.push(FieldError::required(&path.child("dnsPolicy"), "")),
        Some("ClusterFirstWithHostNet" | "ClusterFirst" | "Default") => {}
        Some("None") if spec.dns_config.is_none() => errs
            .push(FieldError::required(&path.child("dnsConfig"), "must provide `dnsConfig` when `dnsPolicy` is None")),
        Some("None") => {}
        Some(other) => errs.push(FieldError::not_supported(
            &path.child("dnsPolicy"),
            other,
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        )),
    }
    if let Some(a) = spec.active_deadline_seconds {
        if !(1..=i64::from(i32::MAX)).contains(&a) {
            errs.push(FieldError::invalid(
                &path.child("activeDeadlineSeconds"),
                a,
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    for (field, value, rule) in [
        ("nodeName", &spec.node_name, dns1123_subdomain as fn(&str) -> Vec<String>),
        ("serviceAccountName", &spec.service_account_name, dns1123_subdomain),
        ("schedulerName", &spec.scheduler_name, dns1123_subdomain),
        ("hostname", &spec.hostname, dns1123_label),
        ("subdomain", &spec.subdomain, dns1123_label),
        ("priorityClassName", &spec.priority_class_name, dns1123_subdomain),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            invalid_each(&mut errs, &path.child(field), v, rule(v));
        }
    }
    for (k, v) in spec.node_selector.iter().flatten() {
        invalid_each(&mut errs, &path.child("nodeSelector"), k, qualified_name(k));
        invalid_each(&mut errs, &path.child("nodeSelector"), v, super::syntax::label_value(v));
    }
    if let Some(req) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
    {
        let p = path.child("affinity").child("nodeAffinity").child("requiredDuringSchedulingIgnoredDuringExecution");
        errs.extend(validate_node_selector(req, &p));
    }
    for (i, t) in spec.tolerations.iter().flatten().enumerate() {
        errs.extend(validate_toleration(t, &path.child("tolerations").index(i)));
    }
    errs
}

fn validate_toleration(t: &core::Toleration, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() {
        invalid_each(&mut errs, &path.child("key"), key, qualified_name(key));
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "" | "Equal" => {
            if key.is_empty() {
                errs.push(FieldError::invalid(
                    &path.child("operator"),
                    "Equal",
                    "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                ));
            }
        }
        "Exists" => {
            if t.value.as_deref().is_some_and(|v| !v.is_empty()) {
                errs.push(FieldError::invalid(
                    &path.child("operator"),
                    t.value.clone().unwrap_or_default(),
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(&path.child("operator"), other, &["Equal", "Exists"])),
    }
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if !matches!(e, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            errs.push(FieldError::not_supported(
                &path.child("effect"),
                e,
                &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            ));
        }
    }
    errs
}

impl Validate for core::Pod {
    fn validate(&self) -> ErrorList {
        let mut errs = validate_object_meta(&self.metadata, true, NameRule::Subdomain);
        errs.extend(validate_pod_spec(&self.spec.clone().unwrap_or_default(), &FieldPath::new("spec")));
        errs
    }

    fn validate_update(&self, old: &Self) -> ErrorList {
        let mut errs = validate_object_meta_update(&self.metadata, &old.metadata);
        errs.extend(self.validate().into_iter().filter(|e| !e.field.starts_with("metadata.name")));
        let new_spec = self.spec.clone().unwrap_or_default();
        let old_spec = old.spec.clone().unwrap_or_default();
        let spec_path = FieldPath::new("spec");
        let mut munged = new_spec.clone();
        if munged.containers.len() == old_spec.containers.len() {
            for (n, o) in munged.containers.iter_mut().zip(&old_spec.containers) {
                n.image = o.image.clone();
            }
        }
        if let (Some(n), Some(o)) = (munged.init_containers.as_mut(), old_spec.init_containers.as_ref()) {
            if n.len() == o.len() {
                for (n, o) in n.iter_mut().zip(o) {
                    n.image = o.image.clone();
                }
            }
        }
        let deadline_path = spec_path.child("activeDeadlineSeconds");
        match (new_spec.active_deadline_seconds, old_spec.active_deadline_seconds) {
            (Some(n), old_deadline) => {
                if !(0..=i64::from(i32::MAX)).contains(&n) {
                    errs.push(FieldError::invalid(&deadline_path, n, "must be between 0 and 2147483647, inclusive"));
                }
                if old_deadline.is_some_and(|o| n > o) {
                    errs.push(FieldError::invalid(&deadline_path, n, "must be less than or equal to previous value"));
                }
            }
            (None, Some(_)) => errs.push(FieldError::invalid(
                &deadline_path,
                serde_json::Value::Null,
                "must not update from a positive integer to nil value",
            )),
            (None, None) => {}
        }
        munged.active_deadline_seconds = old_spec.active_deadline_seconds;
        let old_tolerations = old_spec.tolerations.as_deref().unwrap_or(&[]);
        let new_tolerations = new_spec.tolerations.as_deref().unwrap_or(&[]);
        for t in old_tolerations {
            if !new_tolerations.contains(t) {
                errs.push(FieldError::forbidden(
                    &spec_path.child("tolerations"),
                    "existing toleration can not be modified except its tolerationSeconds",
                ));
                break;
            }
        }
        munged.tolerations = old_spec.tolerations.clone();
        if old_spec.termination_grace_period_seconds.is_some_and(|g| g < 0)
            && new_spec.termination_grace_period_seconds == Some(1)
        {
            munged.termination_grace_period_seconds = old_spec.termination_grace_period_seconds;
        }
        let (m, o) = (pruned(&json_of(&munged)), pruned(&json_of(&old_spec)));
        if m != o {
            errs.push(FieldError::forbidden(&spec_path, format!("{POD_UPDATE_MESSAGE}\n{}", json_diff(&o, &m, &[]))));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::ApplyDefaults;
    use serde_json::{json, Value};

    struct Case {
        name: &'static str,
        object: Value,
        want: Vec<&'static str>,
    }

    fn pod(volumes: Value, mounts: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "volumeMounts": mounts}], "volumes": volumes}
        })
    }

    fn check(cases: Vec<Case>) {
        for c in cases {
            let mut p: core::Pod = serde_json::from_value(c.object).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            p.apply_defaults();
            let errs = p.validate();
            let got: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(got, c.want, "{}: {errs:#?}", c.name);
        }
    }

    #[test]
    fn validates_pod_volumes() {
        check(vec![
            Case {
                name: "an emptyDir pod is valid",
                object: pod(json!([{"name": "v", "emptyDir": {}}]), json!([{"name": "v", "mountPath": "/v"}])),
                want: vec![],
            },
            Case {
                name: "volume names are unique",
                object: pod(json!([{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]), json!([])),
                want: vec!["spec.volumes[1].name"],
            },
            Case {
                name: "volume names are dns labels",
                object: pod(json!([{"name": "V.x", "emptyDir": {}}]), json!([])),
                want: vec!["spec.volumes[0].name"],
            },
            Case {
                name: "a volume without a source defaults to emptyDir",
                object: pod(json!([{"name": "v"}]), json!([])),
                want: vec![],
            },
            Case {
                name: "a volume has at most one source",
                object: pod(json!([{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}]), json!([])),
                want: vec!["spec.volumes[0].emptyDir"],
            },
            Case {
                name: "hostPath types are checked",
                object: pod(json!([{"name": "v", "hostPath": {"path": "/x", "type": "Dir"}}]), json!([])),
                want: vec!["spec.volumes[0].hostPath.type"],
            },
            Case {
                name: "every hostPath type kube knows is accepted",
                object: pod(
                    json!([
                        "",
                        "DirectoryOrCreate",
                        "Directory",
                        "FileOrCreate",
                        "File",
                        "Socket",
                        "CharDevice",
                        "BlockDevice"
                    ]
                    .iter()
                    .enumerate()
                    .map(|(i, t)| json!({"name": format!("v{i}"), "hostPath": {"path": "/x", "type": t}}))
                    .collect::<Vec<_>>()),
                    json!([]),
                ),
                want: vec![],
            },
            Case {
                name: "hostPath may not step back",
                object: pod(json!([{"name": "v", "hostPath": {"path": "/a/../b"}}]), json!([])),
                want: vec!["spec.volumes[0].hostPath.path"],
            },
            Case {
                name: "emptyDir medium is checked",
                object: pod(
                    json!([{"name": "v", "emptyDir": {"medium": "Disk"}}, {"name": "w", "emptyDir": {"medium": "HugePages-2Mi"}}]),
                    json!([]),
                ),
                want: vec!["spec.volumes[0].emptyDir.medium"],
            },
            Case {
                name: "configMap items need a key and a relative path",
                object: pod(
                    json!([{"name": "v", "configMap": {"name": "cm", "items": [{"key": "", "path": "/abs"}, {"key": "k", "path": "../up"}, {"key": "k", "path": "ok", "mode": 1000}]}}]),
                    json!([]),
                ),
                want: vec![
                    "spec.volumes[0].configMap.items[0].key",
                    "spec.volumes[0].configMap.items[0].path",
                    "spec.volumes[0].configMap.items[1].path",
                    "spec.volumes[0].configMap.items[1].path",
                    "spec.volumes[0].configMap.items[2].mode",
                ],
            },
            Case {
                name: "secret volumes need a name and a sane default mode",
                object: pod(json!([{"name": "v", "secret": {"defaultMode": -1}}]), json!([])),
                want: vec!["spec.volumes[0].secret.secretName", "spec.volumes[0].secret.defaultMode"],
            },
            Case {
                name: "a claim volume needs a claim name",
                object: pod(json!([{"name": "v", "persistentVolumeClaim": {"claimName": ""}}]), json!([])),
                want: vec!["spec.volumes[0].persistentVolumeClaim.claimName"],
            },
            Case {
                name: "a flex volume needs a driver",
                object: pod(json!([{"name": "v", "flexVolume": {"driver": ""}}]), json!([])),
                want: vec!["spec.volumes[0].flexVolume.driver"],
            },
        ]);
    }

    #[test]
    fn an_undefaulted_volume_without_a_source_needs_a_volume_type() {
        let vols: Vec<core::Volume> = serde_json::from_value(json!([{"name": "v"}])).expect("volumes");
        let (errs, _) = validate_volumes(&vols, &FieldPath::new("spec").child("volumes"));
        assert_eq!(
            errs.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            vec!["spec.volumes[0]: Required value: must specify a volume type"]
        );
    }

    #[test]
    fn validates_volume_mounts_and_devices() {
        let v = json!([{"name": "v", "emptyDir": {}}]);
        check(vec![
            Case {
                name: "a mount must name a volume",
                object: pod(v.clone(), json!([{"name": "w", "mountPath": "/w"}])),
                want: vec!["spec.containers[0].volumeMounts[0].name"],
            },
            Case {
                name: "a mount needs a path",
                object: pod(v.clone(), json!([{"name": "v", "mountPath": ""}])),
                want: vec!["spec.containers[0].volumeMounts[0].mountPath"],
            },
            Case {
                name: "mount paths are unique",
                object: pod(v.clone(), json!([{"name": "v", "mountPath": "/a"}, {"name": "v", "mountPath": "/a"}])),
                want: vec!["spec.containers[0].volumeMounts[1].mountPath"],
            },
            Case {
                name: "a sub path is relative without backsteps",
                object: pod(
                    v.clone(),
                    json!([{"name": "v", "mountPath": "/a", "subPath": "/etc"}, {"name": "v", "mountPath": "/b", "subPath": "x/../../y"}]),
                ),
                want: vec!["spec.containers[0].volumeMounts[0].subPath", "spec.containers[0].volumeMounts[1].subPath"],
            },
            Case {
                name: "subPath and subPathExpr are exclusive",
                object: pod(
                    v.clone(),
                    json!([{"name": "v", "mountPath": "/a", "subPath": "x", "subPathExpr": "$(POD)"}]),
                ),
                want: vec!["spec.containers[0].volumeMounts[0].subPathExpr"],
            },
            Case {
                name: "mount propagation must be known",
                object: pod(
                    v.clone(),
                    json!([{"name": "v", "mountPath": "/a", "mountPropagation": "Sideways"}, {"name": "v", "mountPath": "/b", "mountPropagation": "Bidirectional"}, {"name": "v", "mountPath": "/c", "mountPropagation": "HostToContainer"}]),
                ),
                want: vec![
                    "spec.containers[0].volumeMounts[0].mountPropagation",
                    "spec.containers[0].volumeMounts[1].mountPropagation",
                ],
            },
            Case {
                name: "block devices need a claim volume",
                object: json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
                    "containers": [{"name": "c", "image": "i", "volumeDevices": [{"name": "v", "devicePath": "/dev/xvda"}, {"name": "b", "devicePath": "/dev/xvdb"}]}],
                    "volumes": [{"name": "v", "emptyDir": {}}, {"name": "b", "persistentVolumeClaim": {"claimName": "c"}}]}}),
                want: vec!["spec.containers[0].volumeDevices[0].name"],
            },
        ]);
    }

    #[test]
    fn validates_containers_and_pod_fields() {
        check(vec![
            Case {
                name: "a pod needs containers",
                object: json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": []}}),
                want: vec!["spec.containers"],
            },
            Case {
                name: "containers need unique names and images",
                object: json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "a", "image": "i"}, {"name": "a"}]}}),
                want: vec!["spec.containers[1].image", "spec.containers[1].name"],
            },
            Case {
                name: "restart and dns policies must be known",
                object: json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "a", "image": "i"}], "restartPolicy": "Sometimes", "dnsPolicy": "Google"}}),
                want: vec!["spec.restartPolicy", "spec.dnsPolicy"],
            },
            Case {
                name: "ports are in range",
                object: json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "a", "image": "i", "ports": [{"containerPort": 0}, {"containerPort": 80, "protocol": "HTTP"}]}]}}),
                want: vec!["spec.containers[0].ports[0].containerPort", "spec.containers[0].ports[1].protocol"],
            },
        ]);
    }

    fn typed(v: Value) -> core::Pod {
        let mut p: core::Pod = serde_json::from_value(v).expect("pod");
        p.apply_defaults();
        p
    }

    #[test]
    fn allows_only_image_deadline_and_toleration_changes_on_update() {
        let base = pod(json!([{"name": "v", "emptyDir": {}}]), json!([{"name": "v", "mountPath": "/v"}]));
        let mut base = base;
        base["spec"]["containers"][0]["image"] = json!("busybox:1");
        let old = typed(base.clone());
        let mut image = base.clone();
        image["spec"]["containers"][0]["image"] = json!("busybox:2");
        let errs = typed(image).validate_update(&old);
        assert!(errs.is_empty(), "{errs:#?}");
        let mut tol = base.clone();
        tol["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
        assert!(typed(tol).validate_update(&old).is_empty());
        let mut deadline = base.clone();
        deadline["spec"]["activeDeadlineSeconds"] = json!(30);
        let with_deadline = typed(deadline.clone());
        assert!(with_deadline.validate_update(&old).is_empty());
        deadline["spec"]["activeDeadlineSeconds"] = json!(60);
        let errs = typed(deadline).validate_update(&with_deadline);
        assert_eq!(errs.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), vec!["spec.activeDeadlineSeconds"]);
        let mut volumes = base.clone();
        volumes["spec"]["volumes"][0] = json!({"name": "v", "hostPath": {"path": "/x"}});
        let errs = typed(volumes).validate_update(&old);
        assert_eq!(errs.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), vec!["spec"]);
        assert!(errs[0].detail.starts_with(POD_UPDATE_MESSAGE));
    }
}
