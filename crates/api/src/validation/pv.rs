//! PersistentVolume and PersistentVolumeClaim validation (`ValidatePersistentVolume`,
//! `ValidatePersistentVolumeClaim` and their `...Update` forms in `pkg/apis/core/validation`).
//!
//! Which volume sources an object sets is read from its JSON form: the source fields are a long, flat list of
//! optional members, and counting JSON keys in kube's order gives kube's "more than 1 volume type" error on
//! the same field kube names, without a 22-arm `if let` ladder per kind.

use super::meta::{
    invalid_each, validate_label_selector, validate_node_selector, validate_object_meta, validate_object_meta_update,
    NameRule,
};
use super::syntax::{dns1123_label, dns1123_subdomain, has_backsteps, is_abs};
use super::{json_of, Validate};
use crate::field::{ErrorList, FieldError, FieldPath};
use crate::quantity::{parse, ParsedQuantity};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

/// The access modes kube supports, sorted as kube lists them.
pub const ACCESS_MODES: &[&str] = &["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"];
/// The volume modes of PVs and PVCs.
pub const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
/// The reclaim policies of PVs.
pub const RECLAIM_POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
/// The mount-options annotation kube still honours and checks.
pub const MOUNT_OPTIONS_ANNOTATION: &str = "volume.beta.kubernetes.io/mount-options";

/// PV source fields in the order kube checks them.
const PV_SOURCES: &[&str] = &[
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "hostPath",
    "glusterfs",
    "flocker",
    "nfs",
    "rbd",
    "quobyte",
    "cinder",
    "cephfs",
    "flexVolume",
    "iscsi",
    "fc",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

/// Sources whose plugins take mount options (kube's `checkMountOption`).
const MOUNT_OPTION_SOURCES: &[&str] = &[
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "nfs",
    "rbd",
    "quobyte",
    "iscsi",
    "cinder",
    "cephfs",
    "azureFile",
    "vsphereVolume",
    "azureDisk",
    "photonPersistentDisk",
    "fc",
    "storageos",
    "csi",
];

/// Access modes: at least one, each supported, and ReadWriteOncePod alone.
pub(crate) fn validate_access_modes(modes: &[String], path: &FieldPath, required_detail: &str) -> ErrorList {
    let mut errs = ErrorList::new();
    if modes.is_empty() {
        errs.push(FieldError::required(path, required_detail));
    }
    for m in modes {
        if !ACCESS_MODES.contains(&m.as_str()) {
            errs.push(FieldError::not_supported(path, m.as_str(), ACCESS_MODES));
        }
    }
    if modes.len() > 1 && modes.iter().any(|m| m == "ReadWriteOncePod") {
        errs.push(FieldError::forbidden(path, "may not use ReadWriteOncePod with other access modes"));
    }
    errs
}

/// A quantity that must parse and be above zero (`ValidatePositiveQuantityValue`).
pub(crate) fn positive_quantity(q: &Quantity, path: &FieldPath) -> (ErrorList, Option<ParsedQuantity>) {
    match parse(q) {
        Err(e) => (vec![FieldError::invalid(path, q.0.as_str(), e.to_string())], None),
        Ok(p) if p.is_zero() || p.is_negative() => {
            (vec![FieldError::invalid(path, p.to_canonical(), "must be greater than zero")], Some(p))
        }
        Ok(p) => (vec![], Some(p)),
    }
}

/// A quantity that must parse and not be negative (`ValidateNonnegativeQuantity`).
pub(crate) fn nonnegative_quantity(q: &Quantity, path: &FieldPath) -> ErrorList {
    match parse(q) {
        Err(e) => vec![FieldError::invalid(path, q.0.as_str(), e.to_string())],
        Ok(p) if p.is_negative() => {
            vec![FieldError::invalid(path, p.to_canonical(), "must be greater than or equal to 0")]
        }
        Ok(_) => vec![],
    }
}

/// A storage class name (`ValidateClassName`), when set.
pub(crate) fn validate_class_name(name: Option<&str>, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        invalid_each(&mut errs, path, n, dns1123_subdomain(n));
    }
    errs
}

/// A CSI driver name as PVs, VolumeAttachments and CSINodes carry it (`ValidateCSIDriverName`).
pub(crate) fn validate_csi_driver_name(name: &str, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    if name.is_empty() {
        errs.push(FieldError::required(path, ""));
        return errs;
    }
    if name.len() > 63 {
        errs.push(FieldError::too_long(path, 63));
    }
    invalid_each(&mut errs, path, name, dns1123_subdomain(&name.to_lowercase()));
    errs
}

/// The set source fields of a PV spec (or a pod volume), in `order`.
pub(crate) fn set_sources<'a>(json: &Value, order: &[&'a str]) -> Vec<&'a str> {
    order.iter().copied().filter(|k| json.get(*k).is_some_and(|v| !v.is_null())).collect()
}

/// hostPath `path` and `type` (`validateHostPathVolumeSource`).
pub(crate) fn validate_host_path(hp: &core::HostPathVolumeSource, path: &FieldPath) -> ErrorList {
    const TYPES: &[&str] =
        &["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"];
    let mut errs = ErrorList::new();
    if hp.path.is_empty() {
        errs.push(FieldError::required(&path.child("path"), ""));
        return errs;
    }
    if has_backsteps(&hp.path) {
        errs.push(FieldError::invalid(&path.child("path"), hp.path.as_str(), "must not contain '..'"));
    }
    if let Some(t) = hp.type_.as_deref() {
        if !TYPES.contains(&t) {
            errs.push(FieldError::not_supported(&path.child("type"), t, TYPES));
        }
    }
    errs
}

/// nfs `server` and an absolute `path` (`validateNFSVolumeSource`).
pub(crate) fn validate_nfs(nfs: &core::NFSVolumeSource, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    if nfs.server.is_empty() {
        errs.push(FieldError::required(&path.child("server"), ""));
    }
    if nfs.path.is_empty() {
        errs.push(FieldError::required(&path.child("path"), ""));
    } else if !is_abs(&nfs.path) {
        errs.push(FieldError::invalid(&path.child("path"), nfs.path.as_str(), "must be an absolute path"));
    }
    errs
}

/// Flex driver name and reserved option keys (`validateFlexVolumeSource`).
pub(crate) fn validate_flex(
    driver: &str,
    options: Option<&std::collections::BTreeMap<String, String>>,
    path: &FieldPath,
) -> ErrorList {
    let mut errs = ErrorList::new();
    if driver.is_empty() {
        errs.push(FieldError::required(&path.child("driver"), ""));
    }
    for k in options.into_iter().flat_map(|o| o.keys()) {
        let lower = k.to_lowercase();
        if lower.starts_with("kubernetes.io/") || lower.contains(".kubernetes.io/") {
            errs.push(FieldError::invalid(
                &path.child("options").key(k),
                k.as_str(),
                "kubernetes.io and subdomains are reserved for FlexVolume system options",
            ));
        }
    }
    errs
}

fn validate_secret_ref(r: Option<&core::SecretReference>, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    if let Some(r) = r {
        match r.name.as_deref().unwrap_or("") {
            "" => errs.push(FieldError::required(&path.child("name"), "")),
            n => invalid_each(&mut errs, &path.child("name"), n, dns1123_subdomain(n)),
        }
        match r.namespace.as_deref().unwrap_or("") {
            "" => errs.push(FieldError::required(&path.child("namespace"), "")),
            n => invalid_each(&mut errs, &path.child("namespace"), n, dns1123_label(n)),
        }
    }
    errs
}

fn validate_pv_source(spec: &core::PersistentVolumeSpec, source: &str, path: &FieldPath) -> ErrorList {
    let p = path.child(source);
    let mut errs = ErrorList::new();
    let required = |errs: &mut ErrorList, field: &str, empty: bool| {
        if empty {
            errs.push(FieldError::required(&p.child(field), ""));
        }
    };
    match source {
        "hostPath" => errs.extend(spec.host_path.as_ref().map(|s| validate_host_path(s, &p)).unwrap_or_default()),
        "nfs" => errs.extend(spec.nfs.as_ref().map(|s| validate_nfs(s, &p)).unwrap_or_default()),
        "local" => {
            if let Some(l) = &spec.local {
                if l.path.is_empty() {
                    errs.push(FieldError::required(&p.child("path"), ""));
                } else {
                    if !is_abs(&l.path) {
                        errs.push(FieldError::invalid(&p.child("path"), l.path.as_str(), "must be an absolute path"));
                    }
                    if has_backsteps(&l.path) {
                        errs.push(FieldError::invalid(&p.child("path"), l.path.as_str(), "must not contain '..'"));
                    }
                }
            }
        }
        "flexVolume" => {
            if let Some(f) = &spec.flex_volume {
                errs.extend(validate_flex(&f.driver, f.options.as_ref(), &p));
                errs.extend(validate_secret_ref(f.secret_ref.as_ref(), &p.child("secretRef")));
            }
        }
        "csi" => {
            if let Some(c) = &spec.csi {
                errs.extend(validate_csi_driver_name(&c.driver, &p.child("driver")));
                required(&mut errs, "volumeHandle", c.volume_handle.is_empty());
                for (field, r) in [
                    ("controllerPublishSecretRef", &c.controller_publish_secret_ref),
                    ("controllerExpandSecretRef", &c.controller_expand_secret_ref),
                    ("nodePublishSecretRef", &c.node_publish_secret_ref),
                    ("nodeStageSecretRef", &c.node_stage_secret_ref),
                    ("nodeExpandSecretRef", &c.node_expand_secret_ref),
                ] {
                    errs.extend(validate_secret_ref(r.as_ref(), &p.child(field)));
                }
            }
        }
        "cephfs" => {
            if let Some(c) = &spec.cephfs {
                required(&mut errs, "monitors", c.monitors.is_empty());
            }
        }
        "rbd" => {
            if let Some(r) = &spec.rbd {
                required(&mut errs, "monitors", r.monitors.is_empty());
                required(&mut errs, "image", r.image.is_empty());
            }
        }
        "iscsi" => {
            if let Some(i) = &spec.iscsi {
                required(&mut errs, "targetPortal", i.target_portal.is_empty());
                required(&mut errs, "iqn", i.iqn.is_empty());
                if !(0..=255).contains(&i.lun) {
                    errs.push(FieldError::invalid(&p.child("lun"), i.lun, "must be between 0 and 255, inclusive"));
                }
            }
        }
        "glusterfs" => {
            if let Some(g) = &spec.glusterfs {
                required(&mut errs, "endpoints", g.endpoints.is_empty());
                required(&mut errs, "path", g.path.is_empty());
            }
        }
        "gcePersistentDisk" => {
            if let Some(g) = &spec.gce_persistent_disk {
                required(&mut errs, "pdName", g.pd_name.is_empty());
            }
        }
        "awsElasticBlockStore" => {
            if let Some(a) = &spec.aws_elastic_block_store {
                required(&mut errs, "volumeID", a.volume_id.is_empty());
            }
        }
        "cinder" => {
            if let Some(c) = &spec.cinder {
                required(&mut errs, "volumeID", c.volume_id.is_empty());
            }
        }
        "azureDisk" => {
            if let Some(a) = &spec.azure_disk {
                required(&mut errs, "diskName", a.disk_name.is_empty());
                required(&mut errs, "diskURI", a.disk_uri.is_empty());
            }
        }
        "azureFile" => {
            if let Some(a) = &spec.azure_file {
                required(&mut errs, "secretName", a.secret_name.is_empty());
                required(&mut errs, "shareName", a.share_name.is_empty());
            }
        }
        _ => {}
    }
    errs
}

/// A PV spec (`ValidatePersistentVolumeSpec`); `inline` is set for a VolumeAttachment's inline spec, which
/// kube checks without capacity, access modes or reclaim policy.
pub fn validate_pv_spec(spec: &core::PersistentVolumeSpec, path: &FieldPath, inline: bool) -> ErrorList {
    let mut errs = ErrorList::new();
    let modes = spec.access_modes.as_deref().unwrap_or(&[]);
    let capacity = spec.capacity.as_ref().filter(|c| !c.is_empty());
    if inline {
        if capacity.is_some() {
            errs.push(FieldError::forbidden(
                &path.child("capacity"),
                "may not be specified in the context of inline volumes",
            ));
        }
        if !modes.is_empty() {
            errs.push(FieldError::forbidden(
                &path.child("accessModes"),
                "may not be specified in the context of inline volumes",
            ));
        }
    } else {
        errs.extend(validate_access_modes(modes, &path.child("accessModes"), ""));
        match capacity {
            None => errs.push(FieldError::required(&path.child("capacity"), "")),
            Some(cap) => {
                if !cap.contains_key("storage") || cap.len() > 1 {
                    let keys: Vec<&str> = cap.keys().map(String::as_str).collect();
                    errs.push(FieldError::not_supported(&path.child("capacity"), keys.join(","), &["storage"]));
                }
                for (k, q) in cap {
                    errs.extend(positive_quantity(q, &path.child("capacity").key(k)).0);
                }
            }
        }
    }
    if let Some(policy) = spec.persistent_volume_reclaim_policy.as_deref().filter(|p| !p.is_empty()) {
        if inline {
            errs.push(FieldError::forbidden(
                &path.child("persistentVolumeReclaimPolicy"),
                "may not be specified in the context of inline volumes",
            ));
        } else if !RECLAIM_POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported(
                &path.child("persistentVolumeReclaimPolicy"),
                policy,
                RECLAIM_POLICIES,
            ));
        }
    }
    errs.extend(validate_class_name(spec.storage_class_name.as_deref(), &path.child("storageClassName")));
    if let Some(mode) = spec.volume_mode.as_deref() {
        if !VOLUME_MODES.contains(&mode) {
            errs.push(FieldError::not_supported(&path.child("volumeMode"), mode, VOLUME_MODES));
        }
    }
    let has_affinity = match &spec.node_affinity {
        None => false,
        Some(a) => {
            let p = path.child("nodeAffinity");
            match &a.required {
                Some(req) => errs.extend(validate_node_selector(req, &p.child("required"))),
                None => errs.push(FieldError::required(&p.child("required"), "must specify required node constraints")),
            }
            true
        }
    };
    if let Some(r) = &spec.claim_ref {
        let p = path.child("claimRef");
        match r.name.as_deref().unwrap_or("") {
            "" => errs.push(FieldError::required(&p.child("name"), "")),
            n => invalid_each(&mut errs, &p.child("name"), n, dns1123_subdomain(n)),
        }
        match r.namespace.as_deref().unwrap_or("") {
            "" => errs.push(FieldError::required(&p.child("namespace"), "")),
            n => invalid_each(&mut errs, &p.child("namespace"), n, dns1123_label(n)),
        }
    }
    let json = json_of(spec);
    let sources = set_sources(&json, PV_SOURCES);
    match sources.as_slice() {
        [] => errs.push(FieldError::required(path, "must specify a volume type")),
        [first, rest @ ..] => {
            errs.extend(validate_pv_source(spec, first, path));
            for extra in rest {
                errs.push(FieldError::forbidden(&path.child(extra), "may not specify more than 1 volume type"));
            }
        }
    }
    if spec.local.is_some() && !has_affinity && !inline {
        errs.push(FieldError::required(&path.child("nodeAffinity"), "Local volume requires node affinity"));
    }
    if let (Some(hp), Some("Recycle")) = (&spec.host_path, spec.persistent_volume_reclaim_policy.as_deref()) {
        if hp.path.trim_end_matches('/').is_empty() && !hp.path.is_empty() {
            errs.push(FieldError::forbidden(
                &path.child("persistentVolumeReclaimPolicy"),
                "may not be 'recycle' for a hostPath mount of '/'",
            ));
        }
    }
    let supports_options = sources.first().is_some_and(|s| MOUNT_OPTION_SOURCES.contains(s));
    if !supports_options && !sources.is_empty() && spec.mount_options.as_ref().is_some_and(|m| !m.is_empty()) {
        errs.push(FieldError::forbidden(
            &path.child("mountOptions"),
            "may not specify mount options for this volume type",
        ));
    }
    errs
}

impl Validate for core::PersistentVolume {
    fn validate(&self) -> ErrorList {
        let mut errs = validate_object_meta(&self.metadata, false, NameRule::Subdomain);
        let spec = self.spec.clone().unwrap_or_default();
        errs.extend(validate_pv_spec(&spec, &FieldPath::new("spec"), false));
        let annotated = self.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(MOUNT_OPTIONS_ANNOTATION));
        let json = json_of(&spec);
        let first = set_sources(&json, PV_SOURCES).first().copied();
        if annotated && first.is_some_and(|s| !MOUNT_OPTION_SOURCES.contains(&s)) {
            errs.push(FieldError::forbidden(
                &FieldPath::new("metadata").child("annotations").child(MOUNT_OPTIONS_ANNOTATION),
                "may not specify mount options for this volume type",
            ));
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> ErrorList {
        let mut errs = validate_object_meta_update(&self.metadata, &old.metadata);
        errs.extend(self.validate().into_iter().filter(|e| !e.field.starts_with("metadata.name")));
        let new_spec = json_of(&self.spec.clone().unwrap_or_default());
        let old_spec = json_of(&old.spec.clone().unwrap_or_default());
        let changed = PV_SOURCES.iter().any(|k| new_spec.get(*k) != old_spec.get(*k));
        if changed {
            errs.push(FieldError::forbidden(
                &FieldPath::new("spec").child("persistentvolumesource"),
                format!(
                    "spec.persistentvolumesource is immutable after creation\n{}",
                    super::json_diff(&old_spec, &new_spec, PV_SOURCES)
                ),
            ));
        }
        let mode = |s: &Value| s.get("volumeMode").cloned().unwrap_or(Value::Null);
        if mode(&new_spec) != mode(&old_spec) {
            errs.push(FieldError::invalid(
                &FieldPath::new("spec").child("volumeMode"),
                mode(&new_spec),
                "field is immutable",
            ));
        }
        let affinity = |s: &Value| s.get("nodeAffinity").cloned().unwrap_or(Value::Null);
        if !affinity(&old_spec).is_null() && affinity(&new_spec) != affinity(&old_spec) {
            errs.push(FieldError::invalid(
                &FieldPath::new("spec").child("nodeAffinity"),
                affinity(&new_spec),
                "field is immutable",
            ));
        }
        errs
    }
}

/// A PVC spec (`ValidatePersistentVolumeClaimSpec`).
pub fn validate_pvc_spec(spec: &core::PersistentVolumeClaimSpec, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    errs.extend(validate_access_modes(
        spec.access_modes.as_deref().unwrap_or(&[]),
        &path.child("accessModes"),
        "at least 1 access mode is required",
    ));
    if let Some(sel) = &spec.selector {
        errs.extend(validate_label_selector(sel, &path.child("selector")));
    }
    // kube names this field `spec.resources[storage]` (ValidatePersistentVolumeClaimSpec), not the full path.
    let storage_path = path.child("resources").key("storage");
    match spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")) {
        None => errs.push(FieldError::required(&storage_path, "")),
        Some(q) => errs.extend(positive_quantity(q, &storage_path).0),
    }
    if let Some(limits) = spec.resources.as_ref().and_then(|r| r.limits.as_ref()) {
        for (k, q) in limits {
            errs.extend(nonnegative_quantity(q, &path.child("resources").key("limits").key(k)));
        }
    }
    errs.extend(validate_class_name(spec.storage_class_name.as_deref(), &path.child("storageClassName")));
    if let Some(mode) = spec.volume_mode.as_deref() {
        if !VOLUME_MODES.contains(&mode) {
            errs.push(FieldError::not_supported(&path.child("volumeMode"), mode, VOLUME_MODES));
        }
    }
    if let Some(ds) = &spec.data_source {
        let p = path.child("dataSource");
        if ds.name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        }
        if ds.kind.is_empty() {
            errs.push(FieldError::required(&p.child("kind"), ""));
        }
        if ds.kind == "PersistentVolumeClaim" && ds.api_group.as_deref().is_some_and(|g| !g.is_empty()) {
            errs.push(FieldError::invalid(
                &p.child("apiGroup"),
                ds.api_group.clone().unwrap_or_default(),
                "must be empty for PersistentVolumeClaim",
            ));
        }
    }
    if let Some(name) = spec.volume_name.as_deref().filter(|n| !n.is_empty()) {
        invalid_each(&mut errs, &path.child("volumeName"), name, dns1123_subdomain(name));
    }
    errs
}

impl Validate for core::PersistentVolumeClaim {
    fn validate(&self) -> ErrorList {
        let mut errs = validate_object_meta(&self.metadata, true, NameRule::Subdomain);
        errs.extend(validate_pvc_spec(&self.spec.clone().unwrap_or_default(), &FieldPath::new("spec")));
        errs
    }

    fn validate_update(&self, old: &Self) -> ErrorList {
        let mut errs = validate_object_meta_update(&self.metadata, &old.metadata);
        errs.extend(self.validate().into_iter().filter(|e| !e.field.starts_with("metadata.name")));
        let new_spec = self.spec.clone().unwrap_or_default();
        let old_spec = old.spec.clone().unwrap_or_default();
        let mut new_clone = new_spec.clone();
        let mut old_clone = old_spec.clone();
        // volumeName may be set once.
        if old_spec.volume_name.as_deref().unwrap_or("").is_empty() {
            old_clone.volume_name = new_clone.volume_name.clone();
        }
        // A nil class may be set once (retroactive default StorageClass), unless the beta annotation names one.
        let beta = "volume.beta.kubernetes.io/storage-class";
        let old_annotated = old.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(beta));
        if !old_annotated
            && old_spec.storage_class_name.is_none()
            && new_spec.storage_class_name.as_deref().is_some_and(|s| !s.is_empty())
        {
            old_clone.storage_class_name = new_clone.storage_class_name.clone();
        }
        let bound = old.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
            || self.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if bound {
            let old_storage =
                old_clone.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")).cloned();
            if let Some(requests) = new_clone.resources.as_mut().and_then(|r| r.requests.as_mut()) {
                match old_storage {
                    Some(q) => {
                        requests.insert("storage".to_string(), q);
                    }
                    None => {
                        requests.remove("storage");
                    }
                }
            }
            new_clone.volume_attributes_class_name = old_clone.volume_attributes_class_name.clone();
        }
        let (new_json, old_json) = (json_of(&new_clone), json_of(&old_clone));
        if new_json != old_json {
            errs.push(FieldError::forbidden(
                &FieldPath::new("spec"),
                format!(
                    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                    super::json_diff(&old_json, &new_json, &[])
                ),
            ));
        }
        if bound {
            let storage = |s: &core::PersistentVolumeClaimSpec| {
                s.resources
                    .as_ref()
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|r| r.get("storage"))
                    .and_then(|q| parse(q).ok())
            };
            let status_capacity = old
                .status
                .as_ref()
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get("storage"))
                .and_then(|q| parse(q).ok());
            if let (Some(new_size), Some(old_size)) = (storage(&new_spec), storage(&old_spec)) {
                if new_size < old_size {
                    let path = FieldPath::new("spec").child("resources").child("requests").child("storage");
                    match status_capacity {
                        Some(cap) if new_size <= cap => {
                            errs.push(FieldError::forbidden(&path, "field can not be less than status.capacity"))
                        }
                        Some(_) => {}
                        None => errs.push(FieldError::forbidden(&path, "field can not be less than previous value")),
                    }
                }
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Case {
        name: &'static str,
        object: Value,
        want: Vec<&'static str>,
    }

    fn pv(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"}, "spec": spec})
    }

    fn nfs_spec() -> Value {
        json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "nfs": {"server": "10.0.0.1", "path": "/export"}})
    }

    fn with(mut base: Value, patch: Value) -> Value {
        if let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        base
    }

    fn fields(errs: &ErrorList) -> Vec<String> {
        errs.iter().map(|e| e.field.clone()).collect()
    }

    fn run<T: Validate + serde::de::DeserializeOwned>(cases: Vec<Case>) {
        for c in cases {
            let obj: T = serde_json::from_value(c.object).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            let errs = obj.validate();
            assert_eq!(fields(&errs), c.want, "{}: {errs:#?}", c.name);
        }
    }

    fn local_affinity() -> Value {
        json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}})
    }

    #[test]
    fn validates_persistent_volumes() {
        run::<core::PersistentVolume>(vec![
            Case { name: "an nfs volume is valid", object: pv(nfs_spec()), want: vec![] },
            Case {
                name: "a volume without a source needs a volume type",
                object: pv(with(nfs_spec(), json!({"nfs": null}))),
                want: vec!["spec"],
            },
            Case {
                name: "a second source is forbidden",
                object: pv(with(nfs_spec(), json!({"hostPath": {"path": "/data"}}))),
                want: vec!["spec.nfs"],
            },
            Case {
                name: "capacity is required",
                object: pv(with(nfs_spec(), json!({"capacity": null}))),
                want: vec!["spec.capacity"],
            },
            Case {
                name: "capacity needs storage only",
                object: pv(with(nfs_spec(), json!({"capacity": {"cpu": "1"}}))),
                want: vec!["spec.capacity"],
            },
            Case {
                name: "zero capacity is refused",
                object: pv(with(nfs_spec(), json!({"capacity": {"storage": "0"}}))),
                want: vec!["spec.capacity[storage]"],
            },
            Case {
                name: "access modes are required",
                object: pv(with(nfs_spec(), json!({"accessModes": null}))),
                want: vec!["spec.accessModes"],
            },
            Case {
                name: "an unknown access mode is not supported",
                object: pv(with(nfs_spec(), json!({"accessModes": ["ReadWriteSometimes"]}))),
                want: vec!["spec.accessModes"],
            },
            Case {
                name: "read write once pod stands alone",
                object: pv(with(nfs_spec(), json!({"accessModes": ["ReadWriteOncePod", "ReadOnlyMany"]}))),
                want: vec!["spec.accessModes"],
            },
            Case {
                name: "an unknown reclaim policy is not supported",
                object: pv(with(nfs_spec(), json!({"persistentVolumeReclaimPolicy": "Keep"}))),
                want: vec!["spec.persistentVolumeReclaimPolicy"],
            },
            Case {
                name: "recycle is a valid reclaim policy for volumes",
                object: pv(with(nfs_spec(), json!({"persistentVolumeReclaimPolicy": "Recycle"}))),
                want: vec![],
            },
            Case {
                name: "an unknown volume mode is refused",
                object: pv(with(nfs_spec(), json!({"volumeMode": "Raw"}))),
                want: vec!["spec.volumeMode"],
            },
            Case {
                name: "the storage class name must be a subdomain",
                object: pv(with(nfs_spec(), json!({"storageClassName": "Fast_Disks"}))),
                want: vec!["spec.storageClassName"],
            },
            Case {
                name: "nfs needs a server and an absolute path",
                object: pv(with(nfs_spec(), json!({"nfs": {"server": "", "path": "export"}}))),
                want: vec!["spec.nfs.server", "spec.nfs.path"],
            },
            Case {
                name: "hostPath may not step back",
                object: pv(with(nfs_spec(), json!({"nfs": null, "hostPath": {"path": "/data/../etc"}}))),
                want: vec!["spec.hostPath.path"],
            },
            Case {
                name: "hostPath type must be known",
                object: pv(with(nfs_spec(), json!({"nfs": null, "hostPath": {"path": "/data", "type": "Folder"}}))),
                want: vec!["spec.hostPath.type"],
            },
            Case {
                name: "recycling a hostPath of root is forbidden",
                object: pv(with(
                    nfs_spec(),
                    json!({"nfs": null, "hostPath": {"path": "/"}, "persistentVolumeReclaimPolicy": "Recycle"}),
                )),
                want: vec!["spec.persistentVolumeReclaimPolicy"],
            },
            Case {
                name: "a local volume needs node affinity",
                object: pv(with(nfs_spec(), json!({"nfs": null, "local": {"path": "/mnt/disks/a"}}))),
                want: vec!["spec.nodeAffinity"],
            },
            Case {
                name: "a local volume with node affinity is valid",
                object: pv(with(
                    nfs_spec(),
                    json!({"nfs": null, "local": {"path": "/mnt/disks/a"}, "nodeAffinity": local_affinity()}),
                )),
                want: vec![],
            },
            Case {
                name: "a local path must be absolute",
                object: pv(with(
                    nfs_spec(),
                    json!({"nfs": null, "local": {"path": "disks"}, "nodeAffinity": local_affinity()}),
                )),
                want: vec!["spec.local.path"],
            },
            Case {
                name: "node affinity needs required terms",
                object: pv(with(nfs_spec(), json!({"nodeAffinity": {}}))),
                want: vec!["spec.nodeAffinity.required"],
            },
            Case {
                name: "node affinity selectors are checked",
                object: pv(with(
                    nfs_spec(),
                    json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "Within"}]}]}}}),
                )),
                want: vec!["spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].operator"],
            },
            Case {
                name: "flexVolume needs a driver",
                object: pv(with(nfs_spec(), json!({"nfs": null, "flexVolume": {"driver": ""}}))),
                want: vec!["spec.flexVolume.driver"],
            },
            Case {
                name: "csi needs a driver and a volume handle",
                object: pv(with(nfs_spec(), json!({"nfs": null, "csi": {"driver": "", "volumeHandle": ""}}))),
                want: vec!["spec.csi.driver", "spec.csi.volumeHandle"],
            },
            Case {
                name: "a csi volume is valid",
                object: pv(with(
                    nfs_spec(),
                    json!({"nfs": null, "csi": {"driver": "csi.kvol.io", "volumeHandle": "v1"}}),
                )),
                want: vec![],
            },
            Case {
                name: "a claim ref needs a name and namespace",
                object: pv(with(nfs_spec(), json!({"claimRef": {"kind": "PersistentVolumeClaim"}}))),
                want: vec!["spec.claimRef.name", "spec.claimRef.namespace"],
            },
            Case {
                name: "mount options on hostPath are forbidden",
                object: pv(with(
                    nfs_spec(),
                    json!({"nfs": null, "hostPath": {"path": "/data"}, "mountOptions": ["ro"]}),
                )),
                want: vec!["spec.mountOptions"],
            },
            Case {
                name: "mount options on nfs are fine",
                object: pv(with(nfs_spec(), json!({"mountOptions": ["hard", "nfsvers=4.1"]}))),
                want: vec![],
            },
        ]);
    }

    fn pvc(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c", "namespace": "default"}, "spec": spec})
    }

    fn pvc_spec() -> Value {
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "8Gi"}}})
    }

    #[test]
    fn validates_persistent_volume_claims() {
        run::<core::PersistentVolumeClaim>(vec![
            Case { name: "a plain claim is valid", object: pvc(pvc_spec()), want: vec![] },
            Case {
                name: "a claim needs access modes",
                object: pvc(with(pvc_spec(), json!({"accessModes": []}))),
                want: vec!["spec.accessModes"],
            },
            Case {
                name: "a claim needs valid access modes",
                object: pvc(with(pvc_spec(), json!({"accessModes": ["RWO"]}))),
                want: vec!["spec.accessModes"],
            },
            Case {
                name: "a claim needs a storage request",
                object: pvc(with(pvc_spec(), json!({"resources": {}}))),
                want: vec!["spec.resources[storage]"],
            },
            Case {
                name: "a claim for zero bytes is refused",
                object: pvc(with(pvc_spec(), json!({"resources": {"requests": {"storage": "0"}}}))),
                want: vec!["spec.resources[storage]"],
            },
            Case {
                name: "a claim volume mode must be known",
                object: pvc(with(pvc_spec(), json!({"volumeMode": "Disk"}))),
                want: vec!["spec.volumeMode"],
            },
            Case {
                name: "a claim selector is checked",
                object: pvc(with(
                    pvc_spec(),
                    json!({"selector": {"matchExpressions": [{"key": "environment", "operator": "In"}]}}),
                )),
                want: vec!["spec.selector.matchExpressions[0].values"],
            },
            Case {
                name: "a claim without a namespace is refused",
                object: json!({"metadata": {"name": "c"}, "spec": pvc_spec()}),
                want: vec!["metadata.namespace"],
            },
        ]);
    }

    fn claim(spec: Value, phase: Option<&str>, capacity: Option<&str>) -> core::PersistentVolumeClaim {
        let mut v = pvc(spec);
        if let Some(p) = phase {
            v["status"] = json!({"phase": p});
            if let Some(c) = capacity {
                v["status"]["capacity"] = json!({"storage": c});
            }
        }
        serde_json::from_value(v).expect("claim")
    }

    #[test]
    fn allows_only_growth_and_binding_on_claim_update() {
        let old = claim(pvc_spec(), Some("Bound"), Some("8Gi"));
        let grow = claim(
            with(pvc_spec(), json!({"resources": {"requests": {"storage": "10Gi"}}})),
            Some("Bound"),
            Some("8Gi"),
        );
        assert!(grow.validate_update(&old).is_empty());
        let shrink =
            claim(with(pvc_spec(), json!({"resources": {"requests": {"storage": "4Gi"}}})), Some("Bound"), Some("8Gi"));
        let errs = shrink.validate_update(&old);
        assert_eq!(fields(&errs), vec!["spec.resources.requests.storage"]);
        assert_eq!(errs[0].detail, "field can not be less than status.capacity");
        let modes = claim(with(pvc_spec(), json!({"accessModes": ["ReadWriteMany"]})), Some("Bound"), Some("8Gi"));
        let errs = modes.validate_update(&old);
        assert_eq!(fields(&errs), vec!["spec"]);
        assert!(errs[0].detail.starts_with(
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
        ));
        let pending = claim(pvc_spec(), Some("Pending"), None);
        let pending_grow =
            claim(with(pvc_spec(), json!({"resources": {"requests": {"storage": "10Gi"}}})), Some("Pending"), None);
        assert_eq!(fields(&pending_grow.validate_update(&pending)), vec!["spec"]);
        let bind = claim(with(pvc_spec(), json!({"volumeName": "pv1"})), Some("Pending"), None);
        assert!(bind.validate_update(&pending).is_empty());
        let rebind = claim(with(pvc_spec(), json!({"volumeName": "pv2"})), Some("Pending"), None);
        assert_eq!(fields(&rebind.validate_update(&bind)), vec!["spec"]);
        let classed = claim(with(pvc_spec(), json!({"storageClassName": "fast"})), Some("Pending"), None);
        assert!(classed.validate_update(&pending).is_empty());
    }

    #[test]
    fn keeps_the_volume_source_of_a_volume() {
        let old: core::PersistentVolume = serde_json::from_value(pv(nfs_spec())).expect("pv");
        let bigger: core::PersistentVolume =
            serde_json::from_value(pv(with(nfs_spec(), json!({"capacity": {"storage": "2Gi"}})))).expect("pv");
        assert!(bigger.validate_update(&old).is_empty());
        let moved: core::PersistentVolume =
            serde_json::from_value(pv(with(nfs_spec(), json!({"nfs": {"server": "10.0.0.2", "path": "/export"}}))))
                .expect("pv");
        assert_eq!(fields(&moved.validate_update(&old)), vec!["spec.persistentvolumesource"]);
    }
}
