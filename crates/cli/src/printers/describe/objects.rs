//! Describers of the core objects around storage: ConfigMap, Secret (sizes, never values), Namespace
//! and Node (with its non-terminated pods and their requests).

use super::format::*;
use super::Extra;
use jiff::Timestamp;
use serde_json::Value;

pub(super) fn config_map(w: &mut Writer, cm: &Value) {
    w!(w, 0, "Name:\t{}\n", s(cm, "/metadata/name"));
    w!(w, 0, "Namespace:\t{}\n", s(cm, "/metadata/namespace"));
    labels_multiline(w, "Labels", obj(cm, "/metadata/labels"));
    annotations_multiline(w, "Annotations", obj(cm, "/metadata/annotations"));
    w.w(0, "\nData\n====\n");
    if let Some(data) = obj(cm, "/data") {
        let mut keys: Vec<&String> = data.keys().collect();
        keys.sort();
        for k in keys {
            w!(w, 0, "{k}:\n----\n");
            w!(w, 0, "{}\n", data[k].as_str().unwrap_or_default());
            w.w(0, "\n");
        }
    }
    w.w(0, "\nBinaryData\n====\n");
    if let Some(data) = obj(cm, "/binaryData") {
        let mut keys: Vec<&String> = data.keys().collect();
        keys.sort();
        for k in keys {
            w!(w, 0, "{k}: {} bytes\n", decoded_len(data[k].as_str().unwrap_or_default()));
        }
    }
    w.w(0, "\n");
}

pub(super) fn decoded_len(b64: &str) -> usize {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(b64).map(|d| d.len()).unwrap_or(0)
}

pub(super) fn secret(w: &mut Writer, secret: &Value) {
    w!(w, 0, "Name:\t{}\n", s(secret, "/metadata/name"));
    w!(w, 0, "Namespace:\t{}\n", s(secret, "/metadata/namespace"));
    labels_multiline(w, "Labels", obj(secret, "/metadata/labels"));
    annotations_multiline(w, "Annotations", obj(secret, "/metadata/annotations"));
    let kind = s(secret, "/type");
    w!(w, 0, "\nType:\t{kind}\n");
    w.w(0, "\nData\n====\n");
    if let Some(data) = obj(secret, "/data") {
        let mut keys: Vec<&String> = data.keys().collect();
        keys.sort();
        for k in keys {
            let raw = data[k].as_str().unwrap_or_default();
            if k == "token" && kind == "kubernetes.io/service-account-token" {
                use base64::Engine;
                let token = base64::engine::general_purpose::STANDARD.decode(raw).unwrap_or_default();
                w!(w, 0, "{k}:\t{}\n", String::from_utf8_lossy(&token));
            } else {
                w!(w, 0, "{k}:\t{} bytes\n", decoded_len(raw));
            }
        }
    }
}

pub(super) fn namespace(w: &mut Writer, ns: &Value, extra: &Extra) {
    w!(w, 0, "Name:\t{}\n", s(ns, "/metadata/name"));
    labels_multiline(w, "Labels", obj(ns, "/metadata/labels"));
    annotations_multiline(w, "Annotations", obj(ns, "/metadata/annotations"));
    w!(w, 0, "Status:\t{}\n", s(ns, "/status/phase"));
    let conditions = arr(ns, "/status/conditions");
    if !conditions.is_empty() {
        w.w(0, "Conditions:\n");
        w.w(1, "Type\tStatus\tLastTransitionTime\tReason\tMessage\n");
        w.w(1, "----\t------\t------------------\t------\t-------\n");
        for c in conditions {
            w!(
                w,
                1,
                "{}\t{}\t{}\t{}\t{}\n",
                s(c, "/type"),
                s(c, "/status"),
                rfc1123z(s(c, "/lastTransitionTime")),
                s(c, "/reason"),
                s(c, "/message")
            );
        }
    }
    if let Some(quotas) = &extra.quotas {
        w.w(0, "\n");
        if quotas.is_empty() {
            w.w(0, "No resource quota.\n");
        } else {
            w.w(0, "Resource Quotas\n");
            for q in quotas {
                w!(w, 1, "Name:\t{}\n", s(q, "/metadata/name"));
                w.w(1, "Resource\tUsed\tHard\n");
                w.w(1, "--------\t---\t---\n");
                if let Some(hard) = obj(q, "/status/hard") {
                    let mut keys: Vec<&String> = hard.keys().collect();
                    keys.sort();
                    for k in keys {
                        let used = q.pointer(&format!("/status/used/{k}")).and_then(Value::as_str).unwrap_or("0");
                        w!(w, 1, "{k}\t{used}\t{}\n", hard[k].as_str().unwrap_or_default());
                    }
                }
            }
        }
    }
    if let Some(ranges) = &extra.limit_ranges {
        w.w(0, "\n");
        if ranges.is_empty() {
            w.w(0, "No LimitRange resource.\n");
        } else {
            w.w(
                0,
                "Resource Limits\n Type\tResource\tMin\tMax\tDefault Request\tDefault Limit\tMax Limit/Request Ratio\n",
            );
            w.w(0, " ----\t--------\t---\t---\t---------------\t-------------\t-----------------------\n");
        }
    }
}

pub(super) fn node(w: &mut Writer, node: &Value, extra: &Extra) {
    w!(w, 0, "Name:\t{}\n", s(node, "/metadata/name"));
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = obj(node, "/metadata/labels") {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/").filter(|r| !r.is_empty()) {
                roles.push(role.to_string());
            } else if k == "kubernetes.io/role" && v.as_str().is_some_and(|v| !v.is_empty()) {
                roles.push(v.as_str().unwrap_or_default().to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    w!(w, 0, "Roles:\t{}\n", if roles.is_empty() { "<none>".to_string() } else { roles.join(",") });
    labels_multiline(w, "Labels", obj(node, "/metadata/labels"));
    annotations_multiline(w, "Annotations", obj(node, "/metadata/annotations"));
    w!(w, 0, "CreationTimestamp:\t{}\n", rfc1123z(s(node, "/metadata/creationTimestamp")));
    let taints = arr(node, "/spec/taints");
    w.w(0, "Taints:\t");
    if taints.is_empty() {
        w.line("<none>");
    }
    let mut sorted: Vec<&Value> = taints.iter().collect();
    sorted.sort_by_key(|t| format!("{},{}", s(t, "/effect"), s(t, "/key")));
    for (i, t) in sorted.iter().enumerate() {
        if i != 0 {
            w.w(0, "\t");
        }
        let value = s(t, "/value");
        let text = if value.is_empty() {
            format!("{}:{}", s(t, "/key"), s(t, "/effect"))
        } else {
            format!("{}={value}:{}", s(t, "/key"), s(t, "/effect"))
        };
        w!(w, 0, "{text}\n");
    }
    w!(w, 0, "Unschedulable:\t{}\n", b(node, "/spec/unschedulable"));
    match &extra.lease {
        Some(Ok(lease)) => {
            w.w(0, "Lease:\n");
            w!(
                w,
                1,
                "HolderIdentity:\t{}\n",
                lease.pointer("/spec/holderIdentity").and_then(Value::as_str).unwrap_or("<unset>")
            );
            for (label, ptr) in [("AcquireTime", "/spec/acquireTime"), ("RenewTime", "/spec/renewTime")] {
                let t = lease.pointer(ptr).and_then(Value::as_str).map(rfc1123z).unwrap_or_else(|| "<unset>".into());
                w!(w, 1, "{label}:\t{t}\n");
            }
        }
        Some(Err(message)) => w!(w, 0, "Lease:\tFailed to get lease: {message}\n"),
        None => {}
    }
    let conditions = arr(node, "/status/conditions");
    if !conditions.is_empty() {
        w.w(0, "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n");
        w.w(1, "----\t------\t-----------------\t------------------\t------\t-------\n");
        for c in conditions {
            w!(
                w,
                1,
                "{} \t{} \t{} \t{} \t{} \t{}\n",
                s(c, "/type"),
                s(c, "/status"),
                rfc1123z(s(c, "/lastHeartbeatTime")),
                rfc1123z(s(c, "/lastTransitionTime")),
                s(c, "/reason"),
                s(c, "/message")
            );
        }
    }
    w.w(0, "Addresses:\n");
    for a in arr(node, "/status/addresses") {
        w!(w, 1, "{}:\t{}\n", s(a, "/type"), s(a, "/address"));
    }
    for (title, ptr) in [("Capacity", "/status/capacity"), ("Allocatable", "/status/allocatable")] {
        if let Some(list) = obj(node, ptr).filter(|l| !l.is_empty()) {
            w!(w, 0, "{title}:\n");
            let mut keys: Vec<&String> = list.keys().collect();
            keys.sort();
            for k in keys {
                let raw = list[k].as_str().unwrap_or_default();
                let q = kvol_api::parse_quantity(raw).map(|q| q.to_canonical()).unwrap_or_else(|_| raw.to_string());
                w!(w, 0, "  {k}:\t{q}\n");
            }
        }
    }
    w.w(0, "System Info:\n");
    for (label, key) in [
        ("Machine ID", "machineID"),
        ("System UUID", "systemUUID"),
        ("Boot ID", "bootID"),
        ("Kernel Version", "kernelVersion"),
        ("OS Image", "osImage"),
        ("Operating System", "operatingSystem"),
        ("Architecture", "architecture"),
        ("Container Runtime Version", "containerRuntimeVersion"),
        ("Kubelet Version", "kubeletVersion"),
        ("Kube-Proxy Version", "kubeProxyVersion"),
    ] {
        w!(w, 0, "  {label}:\t{}\n", s(node, &format!("/status/nodeInfo/{key}")));
    }
    if !s(node, "/spec/podCIDR").is_empty() {
        w!(w, 0, "PodCIDR:\t{}\n", s(node, "/spec/podCIDR"));
    }
    let cidrs: Vec<&str> = arr(node, "/spec/podCIDRs").iter().filter_map(Value::as_str).collect();
    if !cidrs.is_empty() {
        w!(w, 0, "PodCIDRs:\t{}\n", cidrs.join(","));
    }
    if !s(node, "/spec/providerID").is_empty() {
        w!(w, 0, "ProviderID:\t{}\n", s(node, "/spec/providerID"));
    }
    node_pods(w, node, &extra.pods, extra.now.unwrap_or_else(Timestamp::now));
}

pub(super) fn node_pods(w: &mut Writer, node: &Value, pods: &[Value], now: Timestamp) {
    let allocatable =
        obj(node, "/status/allocatable").filter(|m| !m.is_empty()).or_else(|| obj(node, "/status/capacity"));
    let alloc = |res: &str, milli: bool| -> i128 {
        allocatable
            .and_then(|a| a.get(res))
            .and_then(Value::as_str)
            .and_then(|q| kvol_api::parse_quantity(q).ok())
            .map(|q| if milli { q.milli_value() } else { q.value() })
            .unwrap_or(0)
    };
    let sum = |pod: &Value, kind: &str, res: &str| -> Option<kvol_api::ParsedQuantity> {
        let quantities: Vec<kvol_api::ParsedQuantity> = arr(pod, "/spec/containers")
            .iter()
            .filter_map(|c| c.pointer(&format!("/resources/{kind}/{res}")).and_then(Value::as_str))
            .filter_map(|q| kvol_api::parse_quantity(q).ok())
            .collect();
        add_quantities(&quantities)
    };
    let pct = |q: &Option<kvol_api::ParsedQuantity>, res: &str, milli: bool| -> (String, i128) {
        let a = alloc(res, milli);
        match q {
            Some(q) => {
                let v = if milli { q.milli_value() } else { q.value() };
                (q.to_canonical(), if a == 0 { 0 } else { v * 100 / a })
            }
            None => ("0".into(), 0),
        }
    };
    w!(w, 0, "Non-terminated Pods:\t({} in total)\n", pods.len());
    w.w(1, "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n");
    w.w(1, "---------\t----\t\t------------\t----------\t---------------\t-------------\t---\n");
    for p in pods {
        let (cr, crp) = pct(&sum(p, "requests", "cpu"), "cpu", true);
        let (cl, clp) = pct(&sum(p, "limits", "cpu"), "cpu", true);
        let (mr, mrp) = pct(&sum(p, "requests", "memory"), "memory", false);
        let (ml, mlp) = pct(&sum(p, "limits", "memory"), "memory", false);
        w!(
            w,
            1,
            "{}\t{}\t\t{cr} ({crp}%)\t{cl} ({clp}%)\t{mr} ({mrp}%)\t{ml} ({mlp}%)\t{}\n",
            s(p, "/metadata/namespace"),
            s(p, "/metadata/name"),
            since(s(p, "/metadata/creationTimestamp"), now)
        );
    }
    w.w(0, "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n");
    w.w(1, "Resource\tRequests\tLimits\n");
    w.w(1, "--------\t--------\t------\n");
    for (res, milli) in [("cpu", true), ("memory", false), ("ephemeral-storage", false)] {
        let total = |kind: &str| -> (String, i128) {
            let per_pod: Vec<kvol_api::ParsedQuantity> = pods.iter().filter_map(|p| sum(p, kind, res)).collect();
            match add_quantities(&per_pod) {
                Some(q) => {
                    let v = if milli { q.milli_value() } else { q.value() };
                    let a = alloc(res, milli);
                    (q.to_canonical(), if a == 0 { 0 } else { v * 100 / a })
                }
                None => ("0".to_string(), 0),
            }
        };
        let ((rq, rp), (lm, lp)) = (total("requests"), total("limits"));
        w!(w, 1, "{res}\t{rq} ({rp}%)\t{lm} ({lp}%)\n");
    }
}

/// The sum of `quantities` in the first one's format, as `resource.Quantity.Add` keeps it.
fn add_quantities(quantities: &[kvol_api::ParsedQuantity]) -> Option<kvol_api::ParsedQuantity> {
    let first = quantities.first()?;
    if quantities.len() == 1 {
        return Some(first.clone());
    }
    let milli: i128 = quantities.iter().map(|q| q.milli_value()).sum();
    let text = if milli % 1000 != 0 {
        format!("{milli}m")
    } else {
        let units = milli / 1000;
        match first.format() {
            kvol_api::quantity::Format::BinarySI => {
                let (mut value, mut suffix) = (units, "");
                for next in ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"] {
                    if value != 0 && value % 1024 == 0 {
                        value /= 1024;
                        suffix = next;
                    } else {
                        break;
                    }
                }
                format!("{value}{suffix}")
            }
            _ => units.to_string(),
        }
    };
    kvol_api::parse_quantity(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_container_requests_in_the_first_quantitys_format() {
        let q = |s: &str| kvol_api::parse_quantity(s).unwrap();
        assert_eq!(add_quantities(&[q("100Mi"), q("156Mi")]).unwrap().to_canonical(), "256Mi");
        assert_eq!(add_quantities(&[q("250m"), q("750m")]).unwrap().to_canonical(), "1");
        assert_eq!(add_quantities(&[q("250m"), q("500m")]).unwrap().to_canonical(), "750m");
        assert!(add_quantities(&[]).is_none());
    }
}
