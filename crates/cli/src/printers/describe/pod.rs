//! The Pod describer: containers (ports, mounts, environment, state), conditions, volumes, QoS class
//! and tolerations.

use super::format::*;
use super::volumes::volumes;
use jiff::Timestamp;
use serde_json::Value;

pub(super) fn pod(w: &mut Writer, pod: &Value) {
    w!(w, 0, "Name:\t{}\n", s(pod, "/metadata/name"));
    w!(w, 0, "Namespace:\t{}\n", s(pod, "/metadata/namespace"));
    if let Some(p) = pod.pointer("/spec/priority").and_then(Value::as_i64) {
        w!(w, 0, "Priority:\t{p}\n");
    }
    let pcn = s(pod, "/spec/priorityClassName");
    if !pcn.is_empty() {
        w!(w, 0, "Priority Class Name:\t{pcn}\n");
    }
    let rcn = s(pod, "/spec/runtimeClassName");
    if !rcn.is_empty() {
        w!(w, 0, "Runtime Class Name:\t{rcn}\n");
    }
    let sa = s(pod, "/spec/serviceAccountName");
    if !sa.is_empty() {
        w!(w, 0, "Service Account:\t{sa}\n");
    }
    let node = s(pod, "/spec/nodeName");
    if node.is_empty() {
        w.w(0, "Node:\t<none>\n");
    } else {
        w!(w, 0, "Node:\t{node}/{}\n", s(pod, "/status/hostIP"));
    }
    if let Some(t) = pod.pointer("/status/startTime").and_then(Value::as_str) {
        w!(w, 0, "Start Time:\t{}\n", rfc1123z(t));
    }
    labels_multiline(w, "Labels", obj(pod, "/metadata/labels"));
    annotations_multiline(w, "Annotations", obj(pod, "/metadata/annotations"));
    let phase = s(pod, "/status/phase");
    match pod.pointer("/metadata/deletionTimestamp").and_then(Value::as_str) {
        Some(ts) if phase != "Failed" && phase != "Succeeded" => {
            w!(w, 0, "Status:\tTerminating (lasts {})\n", since(ts, Timestamp::now()));
            w!(
                w,
                0,
                "Termination Grace Period:\t{}s\n",
                pod.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0)
            );
        }
        _ => w!(w, 0, "Status:\t{phase}\n"),
    }
    for (label, ptr) in [("Reason", "/status/reason"), ("Message", "/status/message")] {
        if !s(pod, ptr).is_empty() {
            w!(w, 0, "{label}:\t{}\n", s(pod, ptr));
        }
    }
    if let Some(t) = pod.pointer("/spec/securityContext/seccompProfile/type").and_then(Value::as_str) {
        w!(w, 0, "SeccompProfile:\t{t}\n");
        if t == "Localhost" {
            w!(w, 0, "LocalhostProfile:\t{}\n", s(pod, "/spec/securityContext/seccompProfile/localhostProfile"));
        }
    }
    w!(w, 0, "IP:\t{}\n", s(pod, "/status/podIP"));
    let ips = arr(pod, "/status/podIPs");
    if ips.is_empty() {
        w.w(0, "IPs:\t<none>\n");
    } else {
        w.w(0, "IPs:\n");
        for ip in ips {
            w!(w, 1, "IP:\t{}\n", s(ip, "/ip"));
        }
    }
    if let Some(owner) = arr(pod, "/metadata/ownerReferences").iter().find(|o| b(o, "/controller")) {
        w!(w, 0, "Controlled By:\t{}/{}\n", s(owner, "/kind"), s(owner, "/name"));
    }
    let nominated = s(pod, "/status/nominatedNodeName");
    if !nominated.is_empty() {
        w!(w, 0, "NominatedNodeName:\t{nominated}\n");
    }
    if let Some(res) = pod.pointer("/spec/resources") {
        w.w(0, "Resources:\n");
        resources(w, res, 1);
    }
    let init = arr(pod, "/spec/initContainers");
    if !init.is_empty() {
        containers(w, "Init Containers", init, arr(pod, "/status/initContainerStatuses"));
    }
    containers(w, "Containers", arr(pod, "/spec/containers"), arr(pod, "/status/containerStatuses"));
    let gates = arr(pod, "/spec/readinessGates");
    let conditions = arr(pod, "/status/conditions");
    if !gates.is_empty() {
        w.w(0, "Readiness Gates:\n  Type\tStatus\n");
        for g in gates {
            let t = s(g, "/conditionType");
            let status = conditions.iter().find(|c| s(c, "/type") == t).map(|c| s(c, "/status")).unwrap_or("<none>");
            w!(w, 1, "{t} \t{status} \n");
        }
    }
    if !conditions.is_empty() {
        w.w(0, "Conditions:\n  Type\tStatus\n");
        for c in conditions {
            w!(w, 1, "{} \t{} \n", s(c, "/type"), s(c, "/status"));
        }
    }
    volumes(w, arr(pod, "/spec/volumes"));
    w!(w, 0, "QoS Class:\t{}\n", qos_class(pod));
    labels_multiline(w, "Node-Selectors", obj(pod, "/spec/nodeSelector"));
    tolerations(w, arr(pod, "/spec/tolerations"));
}

pub(super) fn containers(w: &mut Writer, label: &str, containers: &[Value], statuses: &[Value]) {
    w!(w, 0, "{label}:{}\n", if containers.is_empty() { " <none>" } else { "" });
    for c in containers {
        let name = s(c, "/name");
        let status = statuses.iter().find(|st| s(st, "/name") == name);
        w!(w, 1, "{name}:\n");
        if let Some(st) = status {
            w!(w, 2, "Container ID:\t{}\n", s(st, "/containerID"));
        }
        w!(w, 2, "Image:\t{}\n", s(c, "/image"));
        if let Some(st) = status {
            w!(w, 2, "Image ID:\t{}\n", s(st, "/imageID"));
        }
        let ports = arr(c, "/ports");
        let port_strings = |host: bool| -> String {
            ports
                .iter()
                .map(|p| {
                    let n = if host {
                        p["hostPort"].as_i64().unwrap_or(0)
                    } else {
                        p["containerPort"].as_i64().unwrap_or(0)
                    };
                    let mut out = format!("{n}/{}", s(p, "/protocol"));
                    if !s(p, "/name").is_empty() {
                        out = format!("{out} ({})", s(p, "/name"));
                    }
                    out
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (host, one, many) in [(false, "Port", "Ports"), (true, "Host Port", "Host Ports")] {
            let text = port_strings(host);
            if text.contains(',') {
                w!(w, 2, "{many}:\t{text}\n");
            } else {
                w!(w, 2, "{one}:\t{}\n", if text.is_empty() { "<none>" } else { &text });
            }
        }
        for (title, ptr) in [("Command", "/command"), ("Args", "/args")] {
            let items = arr(c, ptr);
            if !items.is_empty() {
                w!(w, 2, "{title}:\n");
                for item in items {
                    for line in item.as_str().unwrap_or_default().split('\n') {
                        w!(w, 3, "{line}\n");
                    }
                }
            }
        }
        if let Some(st) = status {
            container_state(w, "State", &st["state"]);
            if st.pointer("/lastState/terminated").is_some() {
                container_state(w, "Last State", &st["lastState"]);
            }
            w!(w, 2, "Ready:\t{}\n", if b(st, "/ready") { "True" } else { "False" });
            w!(w, 2, "Restart Count:\t{}\n", st["restartCount"].as_i64().unwrap_or(0));
        }
        if let Some(res) = c.get("resources") {
            resources(w, res, 2);
        }
        env(w, c);
        let mut mounts: Vec<&Value> = arr(c, "/volumeMounts").iter().collect();
        w!(w, 2, "Mounts:{}\n", if mounts.is_empty() { "\t<none>" } else { "" });
        mounts.sort_by_key(|m| s(m, "/mountPath").to_string());
        for m in mounts {
            let mut flags = vec![if b(m, "/readOnly") { "ro".to_string() } else { "rw".to_string() }];
            if !s(m, "/subPath").is_empty() {
                flags.push(format!("path={:?}", s(m, "/subPath")));
            }
            w!(w, 3, "{} from {} ({})\n", s(m, "/mountPath"), s(m, "/name"), flags.join(","));
        }
        let devices = arr(c, "/volumeDevices");
        if !devices.is_empty() {
            w.w(2, "Devices:\n");
            for d in devices {
                w!(w, 3, "{} from {}\n", s(d, "/devicePath"), s(d, "/name"));
            }
        }
    }
}

pub(super) fn env(w: &mut Writer, c: &Value) {
    let env_from = arr(c, "/envFrom");
    if !env_from.is_empty() {
        w.w(2, "Environment Variables from:\n");
        for e in env_from {
            let (from, name, optional) = if e.get("configMapRef").is_some() {
                ("ConfigMap", s(e, "/configMapRef/name"), b(e, "/configMapRef/optional"))
            } else {
                ("Secret", s(e, "/secretRef/name"), b(e, "/secretRef/optional"))
            };
            let prefix = s(e, "/prefix");
            if prefix.is_empty() {
                w!(w, 3, "{name}\t{from}\tOptional: {optional}\n");
            } else {
                w!(w, 3, "{name}\t{from} with prefix '{prefix}'\tOptional: {optional}\n");
            }
        }
    }
    let vars = arr(c, "/env");
    w!(w, 2, "Environment:{}\n", if vars.is_empty() { "\t<none>" } else { "" });
    for e in vars {
        let name = s(e, "/name");
        if e.get("valueFrom").is_none() {
            for (i, line) in s(e, "/value").split('\n').enumerate() {
                if i == 0 {
                    w!(w, 3, "{name}:\t{line}\n");
                } else {
                    w!(w, 3, "\t{line}\n");
                }
            }
        } else if e.pointer("/valueFrom/fieldRef").is_some() {
            w!(
                w,
                3,
                "{name}:\t ({}:{})\n",
                s(e, "/valueFrom/fieldRef/apiVersion"),
                s(e, "/valueFrom/fieldRef/fieldPath")
            );
        } else if e.pointer("/valueFrom/resourceFieldRef").is_some() {
            w!(w, 3, "{name}:\t ({})\n", s(e, "/valueFrom/resourceFieldRef/resource"));
        } else if e.pointer("/valueFrom/secretKeyRef").is_some() {
            w!(
                w,
                3,
                "{name}:\t<set to the key '{}' in secret '{}'>\tOptional: {}\n",
                s(e, "/valueFrom/secretKeyRef/key"),
                s(e, "/valueFrom/secretKeyRef/name"),
                b(e, "/valueFrom/secretKeyRef/optional")
            );
        } else if e.pointer("/valueFrom/configMapKeyRef").is_some() {
            w!(
                w,
                3,
                "{name}:\t<set to the key '{}' of config map '{}'>\tOptional: {}\n",
                s(e, "/valueFrom/configMapKeyRef/key"),
                s(e, "/valueFrom/configMapKeyRef/name"),
                b(e, "/valueFrom/configMapKeyRef/optional")
            );
        }
    }
}

pub(super) fn container_state(w: &mut Writer, name: &str, state: &Value) {
    if let Some(r) = state.get("running") {
        w!(w, 2, "{name}:\tRunning\n");
        w!(w, 3, "Started:\t{}\n", rfc1123z(s(r, "/startedAt")));
    } else if let Some(wt) = state.get("waiting") {
        w!(w, 2, "{name}:\tWaiting\n");
        if !s(wt, "/reason").is_empty() {
            w!(w, 3, "Reason:\t{}\n", s(wt, "/reason"));
        }
    } else if let Some(t) = state.get("terminated") {
        w!(w, 2, "{name}:\tTerminated\n");
        if !s(t, "/reason").is_empty() {
            w!(w, 3, "Reason:\t{}\n", s(t, "/reason"));
        }
        if !s(t, "/message").is_empty() {
            w!(w, 3, "Message:\t{}\n", s(t, "/message"));
        }
        w!(w, 3, "Exit Code:\t{}\n", t["exitCode"].as_i64().unwrap_or(0));
        if let Some(sig) = t["signal"].as_i64().filter(|s| *s > 0) {
            w!(w, 3, "Signal:\t{sig}\n");
        }
        w!(w, 3, "Started:\t{}\n", rfc1123z(s(t, "/startedAt")));
        w!(w, 3, "Finished:\t{}\n", rfc1123z(s(t, "/finishedAt")));
    } else {
        w!(w, 2, "{name}:\tWaiting\n");
    }
}

pub(super) fn resources(w: &mut Writer, res: &Value, level: usize) {
    for (title, key) in [("Limits", "limits"), ("Requests", "requests")] {
        if let Some(m) = res.get(key).and_then(Value::as_object).filter(|m| !m.is_empty()) {
            w!(w, level, "{title}:\n");
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for k in keys {
                let raw = m[k].as_str().unwrap_or_default();
                let q = kvol_api::parse_quantity(raw).map(|q| q.to_canonical()).unwrap_or_else(|_| raw.to_string());
                w!(w, level + 1, "{k}:\t{q}\n");
            }
        }
    }
}

/// `qos.GetPodQOS`: the status' class, else computed from the containers' requests and limits.
pub(super) fn qos_class(pod: &Value) -> String {
    let status = s(pod, "/status/qosClass");
    if !status.is_empty() {
        return status.to_string();
    }
    let all: Vec<&Value> = arr(pod, "/spec/containers").iter().chain(arr(pod, "/spec/initContainers")).collect();
    let get = |c: &Value, kind: &str, res: &str| -> Option<kvol_api::ParsedQuantity> {
        c.pointer(&format!("/resources/{kind}/{res}"))
            .and_then(Value::as_str)
            .and_then(|q| kvol_api::parse_quantity(q).ok())
            .filter(|q| !q.is_zero())
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        for res in ["cpu", "memory"] {
            let (req, lim) = (get(c, "requests", res), get(c, "limits", res));
            any |= req.is_some() || lim.is_some();
            match (req, lim) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if r != l => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort".into()
    } else if guaranteed {
        "Guaranteed".into()
    } else {
        "Burstable".into()
    }
}

pub(super) fn tolerations(w: &mut Writer, tolerations: &[Value]) {
    w.w(0, "Tolerations:\t");
    if tolerations.is_empty() {
        w.line("<none>");
        return;
    }
    let mut sorted: Vec<&Value> = tolerations.iter().collect();
    sorted.sort_by_key(|t| s(t, "/key").to_string());
    for (i, t) in sorted.iter().enumerate() {
        if i != 0 {
            w.w(0, "\t");
        }
        let (key, value, effect) = (s(t, "/key"), s(t, "/value"), s(t, "/effect"));
        let mut text = key.to_string();
        if !value.is_empty() {
            text.push_str(&format!("={value}"));
        }
        if !effect.is_empty() {
            text.push_str(&format!(":{effect}"));
        }
        if s(t, "/operator") == "Exists" && value.is_empty() {
            text.push_str(if !key.is_empty() || !effect.is_empty() { " op=Exists" } else { "op=Exists" });
        }
        if let Some(secs) = t.get("tolerationSeconds").and_then(Value::as_i64) {
            text.push_str(&format!(" for {secs}s"));
        }
        w!(w, 0, "{text}\n");
    }
}
