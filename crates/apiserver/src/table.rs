//! Server-side printing: objects rendered as `meta.k8s.io/v1` `Table`s with kubectl's columns.
//!
//! `kubectl get` (default flags) asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints
//! whatever columns and cells the server returns, so the columns of `kubectl get pv` are decided
//! here, not in kubectl. This module reproduces kube-apiserver's printers
//! (`pkg/printers/internalversion/printers.go`) for the kinds kvol serves, cell for cell, including
//! the `<none>`/`<unset>`/`<unknown>` placeholders and the AGE format of
//! `apimachinery/pkg/util/duration.HumanDuration`. Like kube-apiserver, the server always produces
//! the wide cells; kubectl hides columns with priority > 0 unless `-o wide`, and upper-cases the
//! column names itself ("Access Modes" prints as ACCESS MODES).
//!
//! Objects are read as `serde_json::Value` so that a malformed or partial object still prints
//! (missing fields become the placeholders kube uses) and nothing here can panic.

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Map, Value};

/// One column of a Table, as `metav1.TableColumnDefinition`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Column title as kube sends it ("Access Modes"); kubectl upper-cases it.
    pub name: &'static str,
    /// OpenAPI type of the cells: `string`, `integer`, `boolean`, `date`.
    pub type_: &'static str,
    /// `name` for the column holding the object name, else empty.
    pub format: &'static str,
    /// What the column shows.
    pub description: &'static str,
    /// 0 for default columns, 1 for columns kubectl shows only with `-o wide`.
    pub priority: i32,
}

/// What each row's `object` holds, per the `includeObject` query parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// No `object` in the rows.
    None,
    /// A `PartialObjectMetadata` with the object's metadata (kubectl's default).
    #[default]
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// The value of the `includeObject` query parameter (`None`, `Metadata`, `Object`).
    pub fn from_query(value: &str) -> Option<IncludeObject> {
        match value {
            "None" => Some(IncludeObject::None),
            "Metadata" | "" => Some(IncludeObject::Metadata),
            "Object" => Some(IncludeObject::Object),
            _ => None,
        }
    }
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { name, type_, format: "", description, priority: 0 }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { name, type_, format: "", description, priority: 1 }
}

const fn name_col() -> Column {
    Column { name: "Name", type_: "string", format: "name", description: NAME_DESC, priority: 0 }
}

const fn age_col() -> Column {
    col("Age", "string", AGE_DESC)
}

/// The columns kube-apiserver serves for `kind`, wide ones included. Unknown kinds get Name, Age.
pub fn columns(kind: &str) -> Vec<Column> {
    match kind {
        "PersistentVolume" => vec![
            name_col(),
            col("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity."),
            col("Access Modes", "string", "accessModes contains all ways the volume can be mounted."),
            col("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
            col("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
            col("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
            col("StorageClass", "string", "StorageClass of the pv"),
            col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
            col("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
            age_col(),
            wide("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
        ],
        "PersistentVolumeClaim" => vec![
            name_col(),
            col("Status", "string", "phase represents the current phase of PersistentVolumeClaim."),
            col("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim."),
            col("Capacity", "string", "capacity represents the actual resources of the underlying volume."),
            col("Access Modes", "string", "accessModes contains the actual access modes the volume backing the PVC has."),
            col("StorageClass", "string", "StorageClass of the pvc"),
            col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
            age_col(),
            wide("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim."),
        ],
        "StorageClass" => vec![
            name_col(),
            col("Provisioner", "string", "provisioner indicates the type of the provisioner."),
            col("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
            col("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
            col("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
            age_col(),
        ],
        "Pod" => vec![
            name_col(),
            col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", "string", "The aggregate status of the containers in this pod."),
            col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            age_col(),
            wide("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
            wide("Node", "string", "NodeName indicates in which node this pod is scheduled."),
            wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods."),
            wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness."),
        ],
        "ConfigMap" => vec![
            name_col(),
            col("Data", "string", "Data contains the configuration data."),
            age_col(),
        ],
        "Secret" => vec![
            name_col(),
            col("Type", "string", "Used to facilitate programmatic handling of secret data."),
            col("Data", "string", "Data contains the secret data."),
            age_col(),
        ],
        "Node" => vec![
            name_col(),
            col("Status", "string", "The status of the node"),
            col("Roles", "string", "The roles of the node"),
            age_col(),
            col("Version", "string", "Kubelet Version reported by the node."),
            wide("Internal-IP", "string", "List of addresses reachable to the node."),
            wide("External-IP", "string", "List of addresses reachable to the node."),
            wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        "Namespace" => vec![
            name_col(),
            col("Status", "string", "The status of the namespace"),
            age_col(),
        ],
        "Event" => vec![
            col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
            col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
            col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            col("Object", "string", "The object that this event is about."),
            wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
            wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
            col("Message", "string", "A human-readable description of the status of this operation."),
            wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
            wide("Count", "string", "The number of times this event has occurred."),
            Column { name: "Name", type_: "string", format: "name", description: NAME_DESC, priority: 1 },
        ],
        "VolumeAttachment" => vec![
            name_col(),
            Column { name: "Attacher", type_: "string", format: "name", description: "attacher indicates the name of the volume driver that MUST handle this request.", priority: 0 },
            col("PV", "string", "persistentVolumeName represents the name of the persistent volume to attach."),
            col("Node", "string", "nodeName represents the node that the volume should be attached to."),
            col("Attached", "boolean", "attached indicates the volume is successfully attached."),
            age_col(),
        ],
        "CSIDriver" => vec![
            name_col(),
            col("AttachRequired", "boolean", "attachRequired indicates this CSI volume driver requires an attach operation."),
            col("PodInfoOnMount", "boolean", "podInfoOnMount indicates this CSI volume driver requires additional pod information during mount operations."),
            col("StorageCapacity", "boolean", "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity that the driver deployment will report."),
            col("TokenRequests", "string", "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication."),
            col("RequiresRepublish", "boolean", "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect any possible change in the mounted volume."),
            col("Modes", "string", "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports."),
            age_col(),
        ],
        "CSINode" => vec![
            name_col(),
            col("Drivers", "integer", "Drivers indicates the number of CSI drivers registered on the node"),
            age_col(),
        ],
        _ => vec![name_col(), age_col()],
    }
}

/// The cells of one object's row, in [`columns`] order, computed as kube's printers compute them;
/// `now` is the reference time for ages.
pub fn cells(kind: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    match kind {
        "PersistentVolume" => persistent_volume(obj, now),
        "PersistentVolumeClaim" => persistent_volume_claim(obj, now),
        "StorageClass" => storage_class(obj, now),
        "Pod" => pod(obj, now),
        "ConfigMap" => {
            let n = len(&obj["data"]) + len(&obj["binaryData"]);
            vec![name(obj), json!(n), age(obj, now)]
        }
        "Secret" => vec![name(obj), json!(text(&obj["type"])), json!(len(&obj["data"])), age(obj, now)],
        "Node" => node(obj, now),
        "Namespace" => vec![name(obj), json!(text(&obj["status"]["phase"])), age(obj, now)],
        "Event" => event(obj, now),
        "VolumeAttachment" => {
            let spec = &obj["spec"];
            vec![
                name(obj),
                json!(text(&spec["attacher"])),
                json!(text(&spec["source"]["persistentVolumeName"])),
                json!(text(&spec["nodeName"])),
                json!(obj["status"]["attached"].as_bool().unwrap_or(false)),
                age(obj, now),
            ]
        }
        "CSIDriver" => csi_driver(obj, now),
        "CSINode" => vec![name(obj), json!(len(&obj["spec"]["drivers"])), age(obj, now)],
        _ => vec![name(obj), age(obj, now)],
    }
}

/// A complete `meta.k8s.io/v1` Table of `items` (objects of `kind`). `metadata` is left empty for
/// the caller to fill with the list's `resourceVersion` (and `continue`).
pub fn table(kind: &str, items: &[Value], now: Timestamp, include_object: IncludeObject) -> Value {
    let column_definitions: Vec<Value> = columns(kind)
        .into_iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.type_,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut row = Map::new();
            row.insert("cells".to_string(), Value::Array(cells(kind, item, now)));
            if let Some(conditions) = row_conditions(kind, item) {
                row.insert("conditions".to_string(), conditions);
            }
            match include_object {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    let metadata = item.get("metadata").cloned().unwrap_or_else(|| json!({}));
                    row.insert(
                        "object".to_string(),
                        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata}),
                    );
                }
                IncludeObject::Object => {
                    row.insert("object".to_string(), item.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

/// kube's row conditions: completed pods are marked so clients may hide them.
fn row_conditions(kind: &str, obj: &Value) -> Option<Value> {
    if kind != "Pod" {
        return None;
    }
    let (reason, message) = match text(&obj["status"]["phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

/// `duration.HumanDuration`: ~2-3 significant figures ("45s", "3m2s", "2d3h", "3y12d"); a small
/// negative skew reads "0s" and a larger one "<invalid>".
pub fn human_duration(d: SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

// ---- field access that never fails ----

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn len(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    }
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn or_placeholder(s: &str, placeholder: &str) -> Value {
    json!(if s.is_empty() { placeholder } else { s })
}

fn name(obj: &Value) -> Value {
    json!(text(&obj["metadata"]["name"]))
}

fn timestamp(v: &Value) -> Option<Timestamp> {
    v.as_str().and_then(|s| s.parse::<Timestamp>().ok())
}

/// `translateTimestampSince`: the age of a timestamp, `<unknown>` when it is unset.
fn since(ts: Option<Timestamp>, now: Timestamp) -> String {
    match ts {
        Some(ts) => human_duration(now.duration_since(ts)),
        None => "<unknown>".to_string(),
    }
}

fn age(obj: &Value, now: Timestamp) -> Value {
    json!(since(timestamp(&obj["metadata"]["creationTimestamp"]), now))
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj["metadata"]["annotations"].get(key).and_then(Value::as_str)
}

/// `helper.GetAccessModesAsString`: fixed order, duplicates collapsed.
fn access_modes(v: &Value) -> String {
    let modes = items(v);
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
        .iter()
        .filter(|(mode, _)| has(mode))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

/// A quantity cell: as stored; a missing quantity prints as Go's zero `Quantity`, "0".
fn quantity(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "0".to_string(),
    }
}

const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

// ---- per-kind printers ----

fn persistent_volume(obj: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &obj["spec"];
    let claim = match spec.get("claimRef") {
        Some(r) if r.is_object() => format!("{}/{}", text(&r["namespace"]), text(&r["name"])),
        _ => String::new(),
    };
    let phase =
        if obj["metadata"]["deletionTimestamp"].is_string() { "Terminating" } else { text(&obj["status"]["phase"]) };
    // helper.GetPersistentVolumeClass: the beta annotation wins over the field.
    let class = annotation(obj, BETA_STORAGE_CLASS_ANNOTATION).unwrap_or_else(|| text(&spec["storageClassName"]));
    vec![
        name(obj),
        json!(quantity(&spec["capacity"]["storage"])),
        json!(access_modes(&spec["accessModes"])),
        json!(text(&spec["persistentVolumeReclaimPolicy"])),
        json!(phase),
        json!(claim),
        json!(class),
        or_placeholder(text(&spec["volumeAttributesClassName"]), "<unset>"),
        json!(text(&obj["status"]["reason"])),
        age(obj, now),
        or_placeholder(text(&spec["volumeMode"]), "<unset>"),
    ]
}

fn persistent_volume_claim(obj: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &obj["spec"];
    let phase =
        if obj["metadata"]["deletionTimestamp"].is_string() { "Terminating" } else { text(&obj["status"]["phase"]) };
    let volume = text(&spec["volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (quantity(&obj["status"]["capacity"]["storage"]), access_modes(&obj["status"]["accessModes"]))
    };
    // helper.GetPersistentVolumeClaimClass: the beta annotation wins over the field.
    let class = annotation(obj, BETA_STORAGE_CLASS_ANNOTATION).unwrap_or_else(|| text(&spec["storageClassName"]));
    vec![
        name(obj),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(class),
        or_placeholder(text(&spec["volumeAttributesClassName"]), "<unset>"),
        age(obj, now),
        or_placeholder(text(&spec["volumeMode"]), "<unset>"),
    ]
}

fn storage_class(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut class_name = text(&obj["metadata"]["name"]).to_string();
    // storageutil.IsDefaultAnnotation: the GA or the beta annotation, exactly "true".
    let is_default = annotation(obj, "storageclass.kubernetes.io/is-default-class") == Some("true")
        || annotation(obj, "storageclass.beta.kubernetes.io/is-default-class") == Some("true");
    if is_default {
        class_name.push_str(" (default)");
    }
    vec![
        json!(class_name),
        json!(text(&obj["provisioner"])),
        json!(obj["reclaimPolicy"].as_str().unwrap_or("Delete")),
        json!(obj["volumeBindingMode"].as_str().unwrap_or("Immediate")),
        json!(obj["allowVolumeExpansion"].as_bool().unwrap_or(false)),
        age(obj, now),
    ]
}

fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// `printPod`: READY, STATUS (with kube's reason derivation), RESTARTS, AGE, then the wide cells.
fn pod(obj: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &obj["spec"];
    let status = &obj["status"];
    let init_containers = items(&spec["initContainers"]);
    let is_restartable_init = |container_name: &str| {
        init_containers.iter().any(|c| text(&c["name"]) == container_name && text(&c["restartPolicy"]) == "Always")
    };

    let mut restarts = 0;
    let mut restartable_init_restarts = 0;
    let mut total = items(&spec["containers"]).len();
    let mut ready = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_restartable_init_restart: Option<Timestamp> = None;

    let phase = text(&status["phase"]);
    let mut reason = phase.to_string();
    if !text(&status["reason"]).is_empty() {
        reason = text(&status["reason"]).to_string();
    }
    for condition in items(&status["conditions"]) {
        if text(&condition["type"]) == "PodScheduled" && text(&condition["reason"]) == "SchedulingGated" {
            reason = "SchedulingGated".to_string();
        }
    }
    total += init_containers.iter().filter(|c| text(&c["restartPolicy"]) == "Always").count();

    let mut initializing = false;
    let init_statuses = items(&status["initContainerStatuses"]);
    for (i, container) in init_statuses.iter().enumerate() {
        let restart_count = int(&container["restartCount"]);
        restarts += restart_count;
        let finished = timestamp(&container["lastState"]["terminated"]["finishedAt"]);
        last_restart = later(last_restart, finished);
        let restartable = is_restartable_init(text(&container["name"]));
        if restartable {
            restartable_init_restarts += restart_count;
            last_restartable_init_restart = later(last_restartable_init_restart, finished);
        }
        let terminated = container["state"]["terminated"].as_object();
        let waiting = container["state"]["waiting"].as_object();
        match (terminated, waiting) {
            (Some(t), _) if t.get("exitCode").and_then(Value::as_i64).unwrap_or(0) == 0 => continue,
            _ if restartable && container["started"].as_bool() == Some(true) => {
                if container["ready"].as_bool() == Some(true) {
                    ready += 1;
                }
                continue;
            }
            (Some(t), _) => {
                let t_reason = t.get("reason").and_then(Value::as_str).unwrap_or_default();
                reason = if !t_reason.is_empty() {
                    format!("Init:{t_reason}")
                } else if let Some(signal) = t.get("signal").and_then(Value::as_i64).filter(|s| *s != 0) {
                    format!("Init:Signal:{signal}")
                } else {
                    format!("Init:ExitCode:{}", t.get("exitCode").and_then(Value::as_i64).unwrap_or(0))
                };
            }
            (None, Some(w))
                if !w.get("reason").and_then(Value::as_str).unwrap_or_default().is_empty()
                    && w.get("reason").and_then(Value::as_str) != Some("PodInitializing") =>
            {
                reason = format!("Init:{}", w.get("reason").and_then(Value::as_str).unwrap_or_default());
            }
            _ => reason = format!("Init:{i}/{}", init_containers.len()),
        }
        initializing = true;
        break;
    }

    let condition_true = |kind: &str| {
        items(&status["conditions"])
            .iter()
            .find(|c| text(&c["type"]) == kind)
            .is_some_and(|c| text(&c["status"]) == "True")
    };
    if !initializing || condition_true("Initialized") {
        restarts = restartable_init_restarts;
        last_restart = last_restartable_init_restart;
        let mut has_running = false;
        for container in items(&status["containerStatuses"]).iter().rev() {
            restarts += int(&container["restartCount"]);
            last_restart = later(last_restart, timestamp(&container["lastState"]["terminated"]["finishedAt"]));
            let state = &container["state"];
            let waiting_reason = text(&state["waiting"]["reason"]);
            let terminated = state["terminated"].as_object();
            if state["waiting"].is_object() && !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                let t_reason = t.get("reason").and_then(Value::as_str).unwrap_or_default();
                reason = if !t_reason.is_empty() {
                    t_reason.to_string()
                } else if let Some(signal) = t.get("signal").and_then(Value::as_i64).filter(|s| *s != 0) {
                    format!("Signal:{signal}")
                } else {
                    format!("ExitCode:{}", t.get("exitCode").and_then(Value::as_i64).unwrap_or(0))
                };
            } else if container["ready"].as_bool() == Some(true) && state["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        // A completed container next to a running one: report the pod as running (or not ready).
        if reason == "Completed" && has_running {
            reason = if condition_true("Ready") { "Running" } else { "NotReady" }.to_string();
        }
    }

    let deleting = obj["metadata"]["deletionTimestamp"].is_string();
    if deleting && text(&status["reason"]) == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(ts) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(ts), now)),
        _ => restarts.to_string(),
    };

    let pod_ip = items(&status["podIPs"]).first().map(|ip| text(&ip["ip"])).unwrap_or_default();
    let gates = items(&spec["readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_count = gates
            .iter()
            .filter(|gate| {
                let wanted = text(&gate["conditionType"]);
                items(&status["conditions"])
                    .iter()
                    .find(|c| text(&c["type"]) == wanted)
                    .is_some_and(|c| text(&c["status"]) == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };

    vec![
        name(obj),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        age(obj, now),
        or_placeholder(pod_ip, "<none>"),
        or_placeholder(text(&spec["nodeName"]), "<none>"),
        or_placeholder(text(&status["nominatedNodeName"]), "<none>"),
        json!(readiness_gates),
    ]
}

/// `printNode`: STATUS from the Ready condition (+ SchedulingDisabled), ROLES from role labels.
fn node(obj: &Value, now: Timestamp) -> Vec<Value> {
    let status = &obj["status"];
    // The last Ready condition wins, as in Go's condition map.
    let ready = items(&status["conditions"]).iter().rev().find(|c| text(&c["type"]) == "Ready");
    let mut states = vec![match ready {
        Some(c) if text(&c["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if obj["spec"]["unschedulable"].as_bool() == Some(true) {
        states.push("SchedulingDisabled");
    }

    let mut roles: Vec<&str> = Vec::new();
    if let Some(labels) = obj["metadata"]["labels"].as_object() {
        for (key, value) in labels {
            if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role);
                }
            } else if key == "kubernetes.io/role" && !text(value).is_empty() {
                roles.push(text(value));
            }
        }
    }
    roles.sort_unstable();
    roles.dedup();

    let address = |kind: &str| {
        items(&status["addresses"])
            .iter()
            .find(|a| text(&a["type"]) == kind)
            .map(|a| json!(text(&a["address"])))
            .unwrap_or_else(|| json!("<none>"))
    };
    let info = &status["nodeInfo"];
    vec![
        name(obj),
        json!(states.join(",")),
        or_placeholder(&roles.join(","), "<none>"),
        age(obj, now),
        json!(text(&info["kubeletVersion"])),
        address("InternalIP"),
        address("ExternalIP"),
        or_placeholder(text(&info["osImage"]), "<unknown>"),
        or_placeholder(text(&info["kernelVersion"]), "<unknown>"),
        or_placeholder(text(&info["containerRuntimeVersion"]), "<unknown>"),
    ]
}

/// `printEvent`, wide cells included: LAST SEEN falls back to FIRST SEEN, then to the event time;
/// a series overrides both the last time and the count.
fn event(obj: &Value, now: Timestamp) -> Vec<Value> {
    let first_seen = match timestamp(&obj["firstTimestamp"]) {
        Some(ts) => since(Some(ts), now),
        None => since(timestamp(&obj["eventTime"]), now),
    };
    let mut last_seen = match timestamp(&obj["lastTimestamp"]) {
        Some(ts) => since(Some(ts), now),
        None => first_seen.clone(),
    };
    let mut count = int(&obj["count"]);
    if obj["series"].is_object() {
        last_seen = since(timestamp(&obj["series"]["lastObservedTime"]), now);
        count = int(&obj["series"]["count"]);
    } else if count == 0 {
        // Singleton events of the events.k8s.io API carry no count.
        count = 1;
    }

    let involved = &obj["involvedObject"];
    let kind = text(&involved["kind"]).to_lowercase();
    let target = if text(&involved["name"]).is_empty() { kind } else { format!("{kind}/{}", text(&involved["name"])) };

    let first_non_empty = |a: &str, b: &'static str| -> String {
        let a_val = text(&obj["source"][a]);
        if a_val.is_empty() {
            text(&obj[b]).to_string()
        } else {
            a_val.to_string()
        }
    };
    let component = first_non_empty("component", "reportingComponent");
    let instance = first_non_empty("host", "reportingInstance");
    let source = if instance.is_empty() { component } else { format!("{component}, {instance}") };

    vec![
        json!(last_seen),
        json!(text(&obj["type"])),
        json!(text(&obj["reason"])),
        json!(target),
        json!(text(&involved["fieldPath"])),
        json!(source),
        json!(text(&obj["message"]).trim()),
        json!(first_seen),
        json!(count),
        name(obj),
    ]
}

fn csi_driver(obj: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &obj["spec"];
    let flag = |key: &str, default: bool| json!(spec[key].as_bool().unwrap_or(default));
    let token_requests = match spec["tokenRequests"].as_array() {
        Some(requests) => requests.iter().map(|t| text(&t["audience"])).collect::<Vec<_>>().join(","),
        None => "<unset>".to_string(),
    };
    let modes = items(&spec["volumeLifecycleModes"]).iter().map(text).collect::<Vec<_>>().join(",");
    vec![
        name(obj),
        flag("attachRequired", true),
        flag("podInfoOnMount", false),
        flag("storageCapacity", false),
        json!(token_requests),
        flag("requiresRepublish", false),
        or_placeholder(&modes, "<none>"),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-05-10T12:00:00Z".parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// A creation timestamp `secs` seconds before [`now`].
    fn ago(secs: i64) -> String {
        now().checked_sub(SignedDuration::from_secs(secs)).unwrap_or(Timestamp::UNIX_EPOCH).to_string()
    }

    struct Case {
        name: &'static str,
        kind: &'static str,
        object: Value,
        want: Value,
    }

    fn run(cases: Vec<Case>) {
        let mut failures = Vec::new();
        for case in cases {
            let got = Value::Array(cells(case.kind, &case.object, now()));
            if got != case.want {
                failures.push(format!("{}:\n  want {}\n  got  {}", case.name, case.want, got));
            }
            let n = columns(case.kind).len();
            if n != got.as_array().map_or(0, Vec::len) {
                failures.push(format!("{}: {} columns but {} cells", case.name, n, got));
            }
        }
        assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
    }

    #[test]
    fn human_duration_matches_kube_at_each_boundary() {
        let cases: &[(i64, &str)] = &[
            (-5, "<invalid>"),
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (182, "3m2s"),
            (599, "9m59s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60 * 25, "3h25m"),
            (8 * 3600 - 1, "7h59m"),
            (8 * 3600, "8h"),
            (48 * 3600 - 1, "47h"),
            (48 * 3600, "2d"),
            (51 * 3600, "2d3h"),
            (8 * 86400 - 1, "7d23h"),
            (8 * 86400, "8d"),
            (730 * 86400 - 1, "729d"),
            (730 * 86400, "2y"),
            (742 * 86400, "2y12d"),
            (8 * 365 * 86400, "8y"),
            (20 * 365 * 86400, "20y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(SignedDuration::from_secs(*secs)), *want, "{secs}s");
        }
        // Go truncates toward zero: -1.5s is "0s".
        assert_eq!(human_duration(SignedDuration::from_millis(-1500)), "0s");
    }

    #[test]
    fn column_titles_match_kubectl_for_each_kind() {
        let titles = |kind: &str, priority: i32| {
            columns(kind)
                .iter()
                .filter(|c| c.priority <= priority)
                .map(|c| c.name.to_uppercase())
                .collect::<Vec<_>>()
                .join(" | ")
        };
        assert_eq!(titles("PersistentVolume", 0), "NAME | CAPACITY | ACCESS MODES | RECLAIM POLICY | STATUS | CLAIM | STORAGECLASS | VOLUMEATTRIBUTESCLASS | REASON | AGE");
        assert_eq!(titles("PersistentVolume", 1), "NAME | CAPACITY | ACCESS MODES | RECLAIM POLICY | STATUS | CLAIM | STORAGECLASS | VOLUMEATTRIBUTESCLASS | REASON | AGE | VOLUMEMODE");
        assert_eq!(
            titles("PersistentVolumeClaim", 0),
            "NAME | STATUS | VOLUME | CAPACITY | ACCESS MODES | STORAGECLASS | VOLUMEATTRIBUTESCLASS | AGE"
        );
        assert_eq!(
            titles("StorageClass", 0),
            "NAME | PROVISIONER | RECLAIMPOLICY | VOLUMEBINDINGMODE | ALLOWVOLUMEEXPANSION | AGE"
        );
        assert_eq!(titles("Pod", 0), "NAME | READY | STATUS | RESTARTS | AGE");
        assert_eq!(
            titles("Pod", 1),
            "NAME | READY | STATUS | RESTARTS | AGE | IP | NODE | NOMINATED NODE | READINESS GATES"
        );
        assert_eq!(titles("ConfigMap", 0), "NAME | DATA | AGE");
        assert_eq!(titles("Secret", 0), "NAME | TYPE | DATA | AGE");
        assert_eq!(titles("Node", 0), "NAME | STATUS | ROLES | AGE | VERSION");
        assert_eq!(titles("Node", 1), "NAME | STATUS | ROLES | AGE | VERSION | INTERNAL-IP | EXTERNAL-IP | OS-IMAGE | KERNEL-VERSION | CONTAINER-RUNTIME");
        assert_eq!(titles("Namespace", 0), "NAME | STATUS | AGE");
        assert_eq!(titles("Event", 0), "LAST SEEN | TYPE | REASON | OBJECT | MESSAGE");
        assert_eq!(titles("VolumeAttachment", 0), "NAME | ATTACHER | PV | NODE | ATTACHED | AGE");
        assert_eq!(titles("CSIDriver", 0), "NAME | ATTACHREQUIRED | PODINFOONMOUNT | STORAGECAPACITY | TOKENREQUESTS | REQUIRESREPUBLISH | MODES | AGE");
        assert_eq!(titles("CSINode", 0), "NAME | DRIVERS | AGE");
        assert_eq!(titles("Widget", 1), "NAME | AGE");
        for kind in ["PersistentVolume", "Pod", "Widget"] {
            assert_eq!(columns(kind)[0].format, "name", "{kind}");
        }
    }

    #[test]
    fn cells_match_kube_printers() {
        run(vec![
            Case {
                name: "a bound pv abbreviates access modes in kube's order and names its claim",
                kind: "PersistentVolume",
                object: json!({
                    "metadata": {"name": "pv1", "creationTimestamp": ago(3 * 86400 + 4 * 3600)},
                    "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
                             "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "slow",
                             "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
                    "status": {"phase": "Bound"}
                }),
                want: json!([
                    "pv1",
                    "5Gi",
                    "RWO,RWX",
                    "Retain",
                    "Bound",
                    "default/data",
                    "slow",
                    "<unset>",
                    "",
                    "3d4h",
                    "Filesystem"
                ]),
            },
            Case {
                name: "a pv being deleted is Terminating and unset fields get placeholders",
                kind: "PersistentVolume",
                object: json!({
                    "metadata": {"name": "pv2", "creationTimestamp": ago(30), "deletionTimestamp": ago(1),
                                 "annotations": {"volume.beta.kubernetes.io/storage-class": "beta"}},
                    "spec": {"accessModes": ["ReadWriteOncePod", "ReadOnlyMany"], "storageClassName": "ignored"},
                    "status": {"phase": "Released", "reason": "Reclaiming"}
                }),
                want: json!([
                    "pv2",
                    "0",
                    "ROX,RWOP",
                    "",
                    "Terminating",
                    "",
                    "beta",
                    "<unset>",
                    "Reclaiming",
                    "30s",
                    "<unset>"
                ]),
            },
            Case {
                name: "a bound pvc shows the volume's capacity and modes",
                kind: "PersistentVolumeClaim",
                object: json!({
                    "metadata": {"name": "data", "creationTimestamp": ago(182)},
                    "spec": {"volumeName": "pv1", "storageClassName": "slow", "volumeMode": "Block",
                             "resources": {"requests": {"storage": "1Gi"}}, "volumeAttributesClassName": "gold"},
                    "status": {"phase": "Bound", "capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"]}
                }),
                want: json!(["data", "Bound", "pv1", "5Gi", "RWO", "slow", "gold", "3m2s", "Block"]),
            },
            Case {
                name: "a pending pvc leaves volume capacity and modes empty",
                kind: "PersistentVolumeClaim",
                object: json!({
                    "metadata": {"name": "wait", "creationTimestamp": ago(5)},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                    "status": {"phase": "Pending"}
                }),
                want: json!(["wait", "Pending", "", "", "", "", "<unset>", "5s", "<unset>"]),
            },
            Case {
                name: "the default storage class is marked and defaults fill unset fields",
                kind: "StorageClass",
                object: json!({
                    "metadata": {"name": "standard", "creationTimestamp": ago(600),
                                 "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                    "provisioner": "kvol.io/hostpath"
                }),
                want: json!(["standard (default)", "kvol.io/hostpath", "Delete", "Immediate", false, "10m"]),
            },
            Case {
                name: "a storage class with every field set prints them",
                kind: "StorageClass",
                object: json!({
                    "metadata": {"name": "fast", "creationTimestamp": ago(60),
                                 "annotations": {"storageclass.kubernetes.io/is-default-class": "false"}},
                    "provisioner": "csi.kvol.io", "reclaimPolicy": "Retain",
                    "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true
                }),
                want: json!(["fast", "csi.kvol.io", "Retain", "WaitForFirstConsumer", true, "60s"]),
            },
            Case {
                name: "a running pod counts ready containers and its last restart",
                kind: "Pod",
                object: json!({
                    "metadata": {"name": "web", "creationTimestamp": ago(7200)},
                    "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
                    "status": {"phase": "Running", "podIPs": [{"ip": "10.1.0.5"}], "conditions": [{"type": "Ready", "status": "False"}],
                               "containerStatuses": [
                                   {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
                                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(300)}}},
                                   {"name": "b", "ready": false, "restartCount": 0, "state": {"running": {}}}
                               ]}
                }),
                want: json!(["web", "1/2", "Running", "2 (5m ago)", "120m", "10.1.0.5", "n1", "<none>", "<none>"]),
            },
            Case {
                name: "a waiting container's reason becomes the pod status",
                kind: "Pod",
                object: json!({
                    "metadata": {"name": "bad", "creationTimestamp": ago(40)},
                    "spec": {"containers": [{"name": "a"}], "readinessGates": [{"conditionType": "example.com/ok"}]},
                    "status": {"phase": "Pending", "conditions": [{"type": "example.com/ok", "status": "True"}],
                               "containerStatuses": [{"name": "a", "ready": false, "restartCount": 0,
                                                      "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}
                }),
                want: json!(["bad", "0/1", "ImagePullBackOff", "0", "40s", "<none>", "<none>", "<none>", "1/1"]),
            },
            Case {
                name: "a pod being deleted is Terminating",
                kind: "Pod",
                object: json!({
                    "metadata": {"name": "bye", "creationTimestamp": ago(90), "deletionTimestamp": ago(0)},
                    "spec": {"containers": [{"name": "a"}]},
                    "status": {"phase": "Running"}
                }),
                want: json!(["bye", "0/1", "Terminating", "0", "90s", "<none>", "<none>", "<none>", "<none>"]),
            },
            Case {
                name: "a pod in its init containers shows Init progress",
                kind: "Pod",
                object: json!({
                    "metadata": {"name": "init", "creationTimestamp": ago(10)},
                    "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]},
                    "status": {"phase": "Pending", "initContainerStatuses": [
                        {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
                        {"name": "i2", "restartCount": 0, "state": {"running": {}}}
                    ]}
                }),
                want: json!(["init", "0/1", "Init:1/2", "0", "10s", "<none>", "<none>", "<none>", "<none>"]),
            },
            Case {
                name: "a failed init container shows its exit code",
                kind: "Pod",
                object: json!({
                    "metadata": {"name": "initfail", "creationTimestamp": ago(10)},
                    "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]},
                    "status": {"phase": "Pending", "initContainerStatuses": [
                        {"name": "i1", "restartCount": 3, "state": {"terminated": {"exitCode": 2}}}
                    ]}
                }),
                want: json!(["initfail", "0/1", "Init:ExitCode:2", "3", "10s", "<none>", "<none>", "<none>", "<none>"]),
            },
            Case {
                name: "a succeeded pod shows the terminated reason",
                kind: "Pod",
                object: json!({
                    "metadata": {"name": "job", "creationTimestamp": ago(3600)},
                    "spec": {"containers": [{"name": "a"}]},
                    "status": {"phase": "Succeeded", "containerStatuses": [
                        {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
                    ]}
                }),
                want: json!(["job", "0/1", "Completed", "0", "60m", "<none>", "<none>", "<none>", "<none>"]),
            },
            Case {
                name: "a configmap counts data and binary data",
                kind: "ConfigMap",
                object: json!({"metadata": {"name": "cfg", "creationTimestamp": ago(86400 * 3)}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}),
                want: json!(["cfg", 3, "3d"]),
            },
            Case {
                name: "a secret shows its type and key count",
                kind: "Secret",
                object: json!({"metadata": {"name": "s", "creationTimestamp": ago(120)}, "type": "Opaque", "data": {"k": "dg=="}}),
                want: json!(["s", "Opaque", 1, "2m"]),
            },
            Case {
                name: "a ready control-plane node lists its roles and wide details",
                kind: "Node",
                object: json!({
                    "metadata": {"name": "n1", "creationTimestamp": ago(86400 * 400),
                                 "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge", "node-role.kubernetes.io/": "x"}},
                    "spec": {"unschedulable": true},
                    "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                               "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "n1"}],
                               "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0", "containerRuntimeVersion": ""}}
                }),
                want: json!([
                    "n1",
                    "Ready,SchedulingDisabled",
                    "control-plane,edge",
                    "400d",
                    "v1.32.0",
                    "192.168.1.10",
                    "<none>",
                    "Debian GNU/Linux 12 (bookworm)",
                    "6.1.0",
                    "<unknown>"
                ]),
            },
            Case {
                name: "a node without conditions or roles is Unknown with none",
                kind: "Node",
                object: json!({"metadata": {"name": "n2"}}),
                want: json!([
                    "n2",
                    "Unknown",
                    "<none>",
                    "<unknown>",
                    "",
                    "<none>",
                    "<none>",
                    "<unknown>",
                    "<unknown>",
                    "<unknown>"
                ]),
            },
            Case {
                name: "a namespace shows its phase",
                kind: "Namespace",
                object: json!({"metadata": {"name": "default", "creationTimestamp": ago(3 * 3600 + 1500)}, "status": {"phase": "Active"}}),
                want: json!(["default", "Active", "3h25m"]),
            },
            Case {
                name: "an event prints as kube prints events",
                kind: "Event",
                object: json!({
                    "metadata": {"name": "data.17c3", "creationTimestamp": ago(400)},
                    "involvedObject": {"kind": "PersistentVolumeClaim", "name": "data", "namespace": "default"},
                    "reason": "ProvisioningSucceeded", "type": "Normal", "message": "  Successfully provisioned volume pv-1\n",
                    "firstTimestamp": ago(400), "lastTimestamp": ago(65), "count": 3,
                    "source": {"component": "persistentvolume-controller"}
                }),
                want: json!([
                    "65s",
                    "Normal",
                    "ProvisioningSucceeded",
                    "persistentvolumeclaim/data",
                    "",
                    "persistentvolume-controller",
                    "Successfully provisioned volume pv-1",
                    "6m40s",
                    3,
                    "data.17c3"
                ]),
            },
            Case {
                name: "a new-style event falls back to its event time, series and reporting fields",
                kind: "Event",
                object: json!({
                    "metadata": {"name": "e2"},
                    "involvedObject": {"kind": "Node"},
                    "reason": "Rebooted", "type": "Warning", "message": "m",
                    "eventTime": ago(90), "series": {"count": 7, "lastObservedTime": ago(10)},
                    "reportingComponent": "kubelet", "reportingInstance": "n1"
                }),
                want: json!(["10s", "Warning", "Rebooted", "node", "", "kubelet, n1", "m", "90s", 7, "e2"]),
            },
            Case {
                name: "a volume attachment shows attacher pv node and attached",
                kind: "VolumeAttachment",
                object: json!({
                    "metadata": {"name": "csi-123", "creationTimestamp": ago(15)},
                    "spec": {"attacher": "csi.kvol.io", "nodeName": "n1", "source": {"persistentVolumeName": "pv1"}},
                    "status": {"attached": true}
                }),
                want: json!(["csi-123", "csi.kvol.io", "pv1", "n1", true, "15s"]),
            },
            Case {
                name: "a csi driver with defaults prints kube's defaults and placeholders",
                kind: "CSIDriver",
                object: json!({"metadata": {"name": "csi.kvol.io", "creationTimestamp": ago(60)}, "spec": {}}),
                want: json!(["csi.kvol.io", true, false, false, "<unset>", false, "<none>", "60s"]),
            },
            Case {
                name: "a csi driver with every field set prints them",
                kind: "CSIDriver",
                object: json!({"metadata": {"name": "d", "creationTimestamp": ago(60)},
                               "spec": {"attachRequired": false, "podInfoOnMount": true, "storageCapacity": true, "requiresRepublish": true,
                                        "tokenRequests": [{"audience": "a"}, {"audience": "b"}], "volumeLifecycleModes": ["Persistent", "Ephemeral"]}}),
                want: json!(["d", false, true, true, "a,b", true, "Persistent,Ephemeral", "60s"]),
            },
            Case {
                name: "a csinode counts its drivers",
                kind: "CSINode",
                object: json!({"metadata": {"name": "n1", "creationTimestamp": ago(60)}, "spec": {"drivers": [{"name": "a"}, {"name": "b"}]}}),
                want: json!(["n1", 2, "60s"]),
            },
            Case {
                name: "an unknown kind prints name and age",
                kind: "Widget",
                object: json!({"metadata": {"name": "w", "creationTimestamp": ago(1)}}),
                want: json!(["w", "1s"]),
            },
            Case {
                name: "garbage prints placeholders instead of failing",
                kind: "Pod",
                object: json!("not an object"),
                want: json!(["", "0/0", "", "0", "<unknown>", "<none>", "<none>", "<none>", "<none>"]),
            },
        ]);
    }

    #[test]
    fn table_carries_column_definitions_rows_and_partial_metadata() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "done", "namespace": "default", "creationTimestamp": ago(5)},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Succeeded"}
        });
        let t = table("Pod", std::slice::from_ref(&pod), now(), IncludeObject::Metadata);
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(
            t["columnDefinitions"][0],
            json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DESC, "priority": 0})
        );
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
        assert_eq!(t["rows"][0]["cells"][0], "done");
        assert_eq!(
            t["rows"][0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": {"name": "done", "namespace": "default", "creationTimestamp": ago(5)}})
        );
        assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Succeeded");

        let full = table("Pod", std::slice::from_ref(&pod), now(), IncludeObject::Object);
        assert_eq!(full["rows"][0]["object"], pod);
        let none = table("ConfigMap", &[json!({"metadata": {"name": "c"}})], now(), IncludeObject::None);
        assert_eq!(none["rows"][0].get("object"), None);
        assert_eq!(none["rows"][0].get("conditions"), None);
        assert_eq!(table("Pod", &[], now(), IncludeObject::Metadata)["rows"], json!([]));
    }

    #[test]
    fn include_object_parses_the_query_values() {
        assert_eq!(IncludeObject::from_query("None"), Some(IncludeObject::None));
        assert_eq!(IncludeObject::from_query("Metadata"), Some(IncludeObject::Metadata));
        assert_eq!(IncludeObject::from_query("Object"), Some(IncludeObject::Object));
        assert_eq!(IncludeObject::from_query("Everything"), None);
    }
}
