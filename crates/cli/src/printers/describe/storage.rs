//! Describers of the storage objects: PersistentVolume, PersistentVolumeClaim (with the pods using it),
//! StorageClass and CSINode.

use super::format::*;
use super::volumes::volume_source;
use jiff::Timestamp;
use serde_json::Value;

pub(super) fn persistent_volume(w: &mut Writer, pv: &Value) {
    w!(w, 0, "Name:\t{}\n", s(pv, "/metadata/name"));
    labels_multiline(w, "Labels", obj(pv, "/metadata/labels"));
    annotations_multiline(w, "Annotations", obj(pv, "/metadata/annotations"));
    w!(w, 0, "Finalizers:\t{}\n", go_list(pv, "/metadata/finalizers"));
    let class =
        match pv.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class").and_then(Value::as_str) {
            Some(c) => c,
            None => s(pv, "/spec/storageClassName"),
        };
    w!(w, 0, "StorageClass:\t{class}\n");
    if let Some(ts) = pv.pointer("/metadata/deletionTimestamp").and_then(Value::as_str) {
        w!(w, 0, "Status:\tTerminating (lasts {})\n", since(ts, Timestamp::now()));
    } else {
        w!(w, 0, "Status:\t{}\n", s(pv, "/status/phase"));
    }
    if obj(pv, "/spec/claimRef").is_some() {
        w!(w, 0, "Claim:\t{}/{}\n", s(pv, "/spec/claimRef/namespace"), s(pv, "/spec/claimRef/name"));
    } else {
        w!(w, 0, "Claim:\t\n");
    }
    w!(w, 0, "Reclaim Policy:\t{}\n", s(pv, "/spec/persistentVolumeReclaimPolicy"));
    w!(w, 0, "Access Modes:\t{}\n", access_modes(pv, "/spec/accessModes"));
    if let Some(mode) = pv.pointer("/spec/volumeMode").and_then(Value::as_str) {
        w!(w, 0, "VolumeMode:\t{mode}\n");
    }
    w!(w, 0, "Capacity:\t{}\n", quantity(pv, "/spec/capacity/storage"));
    node_affinity(w, pv);
    w!(w, 0, "Message:\t{}\n", s(pv, "/status/message"));
    w.w(0, "Source:\n");
    let spec = &pv["spec"];
    volume_source(w, spec, true);
}

pub(super) fn node_affinity(w: &mut Writer, pv: &Value) {
    w.w(0, "Node Affinity:\t");
    let Some(required) = obj(pv, "/spec/nodeAffinity/required") else {
        w.line("<none>");
        return;
    };
    w.line("");
    w.w(1, "Required Terms:\t");
    let terms = required.get("nodeSelectorTerms").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if terms.is_empty() {
        w.line("<none>");
        return;
    }
    w.line("");
    for (i, term) in terms.iter().enumerate() {
        w!(w, 2, "Term {i}:\t");
        let reqs = arr(term, "/matchExpressions");
        if reqs.is_empty() {
            w.line("<none>");
            continue;
        }
        for (j, req) in reqs.iter().enumerate() {
            if j != 0 {
                w.w(2, "\t");
            }
            let mut expr = format!("{} {}", s(req, "/key"), s(req, "/operator").to_lowercase());
            let values: Vec<&str> = arr(req, "/values").iter().filter_map(Value::as_str).collect();
            if !values.is_empty() {
                expr = format!("{expr} [{}]", values.join(", "));
            }
            w!(w, 0, "{expr}\n");
        }
    }
}

pub(super) fn persistent_volume_claim(w: &mut Writer, pvc: &Value, pods: &[Value]) {
    w!(w, 0, "Name:\t{}\n", s(pvc, "/metadata/name"));
    w!(w, 0, "Namespace:\t{}\n", s(pvc, "/metadata/namespace"));
    let class =
        match pvc.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class").and_then(Value::as_str) {
            Some(c) => c,
            None => s(pvc, "/spec/storageClassName"),
        };
    w!(w, 0, "StorageClass:\t{class}\n");
    if let Some(ts) = pvc.pointer("/metadata/deletionTimestamp").and_then(Value::as_str) {
        w!(w, 0, "Status:\tTerminating (lasts {})\n", since(ts, Timestamp::now()));
    } else {
        w!(w, 0, "Status:\t{}\n", s(pvc, "/status/phase"));
    }
    let volume = s(pvc, "/spec/volumeName");
    w!(w, 0, "Volume:\t{volume}\n");
    labels_multiline(w, "Labels", obj(pvc, "/metadata/labels"));
    annotations_multiline(w, "Annotations", obj(pvc, "/metadata/annotations"));
    w!(w, 0, "Finalizers:\t{}\n", go_list(pvc, "/metadata/finalizers"));
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (quantity(pvc, "/status/capacity/storage"), access_modes(pvc, "/status/accessModes"))
    };
    w!(w, 0, "Capacity:\t{capacity}\n");
    w!(w, 0, "Access Modes:\t{modes}\n");
    if let Some(mode) = pvc.pointer("/spec/volumeMode").and_then(Value::as_str) {
        w!(w, 0, "VolumeMode:\t{mode}\n");
    }
    if let Some(ds) = obj(pvc, "/spec/dataSource") {
        w.w(0, "DataSource:\n");
        if let Some(g) = ds.get("apiGroup").and_then(Value::as_str) {
            w!(w, 1, "APIGroup:\t{g}\n");
        }
        w!(w, 1, "Kind:\t{}\n", ds.get("kind").and_then(Value::as_str).unwrap_or_default());
        w!(w, 1, "Name:\t{}\n", ds.get("name").and_then(Value::as_str).unwrap_or_default());
    }
    let mut names: Vec<&str> = pods.iter().map(|p| s(p, "/metadata/name")).collect();
    names.sort();
    w.w(0, "Used By:\t");
    if names.is_empty() {
        w.line("<none>");
    }
    for (i, name) in names.iter().enumerate() {
        if i != 0 {
            w.w(0, "\t");
        }
        w!(w, 0, "{name}\n");
    }
    let conditions = arr(pvc, "/status/conditions");
    if !conditions.is_empty() {
        w.w(0, "Conditions:\n");
        w.w(1, "Type\tStatus\tLastProbeTime\tLastTransitionTime\tReason\tMessage\n");
        w.w(1, "----\t------\t-----------------\t------------------\t------\t-------\n");
        for c in conditions {
            w!(
                w,
                1,
                "{} \t{} \t{} \t{} \t{} \t{}\n",
                s(c, "/type"),
                s(c, "/status"),
                rfc1123z(s(c, "/lastProbeTime")),
                rfc1123z(s(c, "/lastTransitionTime")),
                s(c, "/reason"),
                s(c, "/message")
            );
        }
    }
}

/// Pods in `pods` that mount the claim `name`.
pub fn pods_using_claim<'a>(pods: &'a [Value], name: &str) -> Vec<&'a Value> {
    pods.iter()
        .filter(|p| {
            arr(p, "/spec/volumes").iter().any(|v| s(v, "/persistentVolumeClaim/claimName") == name && !name.is_empty())
        })
        .collect()
}

pub(super) fn storage_class(w: &mut Writer, sc: &Value) {
    let annotations = obj(sc, "/metadata/annotations");
    let is_default = annotations.is_some_and(|a| {
        ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"]
            .iter()
            .any(|k| a.get(*k).and_then(Value::as_str) == Some("true"))
    });
    w!(w, 0, "Name:\t{}\n", s(sc, "/metadata/name"));
    w!(w, 0, "IsDefaultClass:\t{}\n", if is_default { "Yes" } else { "No" });
    w!(w, 0, "Annotations:\t{}\n", format_labels(annotations));
    w!(w, 0, "Provisioner:\t{}\n", s(sc, "/provisioner"));
    w!(w, 0, "Parameters:\t{}\n", format_labels(obj(sc, "/parameters")));
    let expansion = match sc.get("allowVolumeExpansion").and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    w!(w, 0, "AllowVolumeExpansion:\t{expansion}\n");
    let options = arr(sc, "/mountOptions");
    if options.is_empty() {
        w.w(0, "MountOptions:\t<none>\n");
    } else {
        w.w(0, "MountOptions:\n");
        for o in options {
            w!(w, 1, "{}\n", o.as_str().unwrap_or_default());
        }
    }
    if let Some(p) = sc.get("reclaimPolicy").and_then(Value::as_str) {
        w!(w, 0, "ReclaimPolicy:\t{p}\n");
    }
    if let Some(m) = sc.get("volumeBindingMode").and_then(Value::as_str) {
        w!(w, 0, "VolumeBindingMode:\t{m}\n");
    }
    if let Some(terms) = sc.get("allowedTopologies").and_then(Value::as_array) {
        w.w(0, "AllowedTopologies:\t");
        if terms.is_empty() {
            w.line("<none>");
        } else {
            w.line("");
            for (i, term) in terms.iter().enumerate() {
                w!(w, 1, "Term {i}:\t");
                let reqs = arr(term, "/matchLabelExpressions");
                if reqs.is_empty() {
                    w.line("<none>");
                }
                for (j, req) in reqs.iter().enumerate() {
                    if j != 0 {
                        w.w(1, "\t");
                    }
                    let values: Vec<&str> = arr(req, "/values").iter().filter_map(Value::as_str).collect();
                    let mut expr = format!("{} in", s(req, "/key"));
                    if !values.is_empty() {
                        expr = format!("{expr} [{}]", values.join(", "));
                    }
                    w!(w, 0, "{expr}\n");
                }
            }
        }
    }
}

pub(super) fn csi_node(w: &mut Writer, csi: &Value) {
    w!(w, 0, "Name:\t{}\n", s(csi, "/metadata/name"));
    labels_multiline(w, "Labels", obj(csi, "/metadata/labels"));
    annotations_multiline(w, "Annotations", obj(csi, "/metadata/annotations"));
    w!(w, 0, "CreationTimestamp:\t{}\n", rfc1123z(s(csi, "/metadata/creationTimestamp")));
    w.w(0, "Spec:\n");
    if let Some(drivers) = csi.pointer("/spec/drivers").and_then(Value::as_array) {
        w.w(1, "Drivers:\n");
        for d in drivers {
            w!(w, 2, "{}:\n", s(d, "/name"));
            w!(w, 3, "Node ID:\t{}\n", s(d, "/nodeID"));
            if let Some(count) = d.pointer("/allocatable/count").and_then(Value::as_i64) {
                w.w(3, "Allocatables:\n");
                w!(w, 4, "Count:\t{count}\n");
            }
            if d.get("topologyKeys").is_some_and(|k| !k.is_null()) {
                w!(w, 3, "Topology Keys:\t{}\n", go_list(d, "/topologyKeys"));
            }
        }
    }
}
