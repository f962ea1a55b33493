//! The describers of kubectl's `pkg/describe/describe.go`, for the kinds kvol serves, line for line:
//! the same labels, the same `<none>`/`<unset>` placeholders, the same per-volume-type lines, Go's `%v`
//! renderings (`[a b]`, `map[k:v]`, `nil`) and the same tabwriter alignment (minwidth 0, padding 2), so
//! `kvol describe` reads exactly like `kubectl describe`. Kinds without a kubectl describer
//! (VolumeAttachment, CSIDriver, Event) get kubectl's generic describer.
//!
//! Objects are read as `serde_json::Value`, so a partial object still describes (missing fields print
//! as Go's zero values) and nothing here can panic on server data.

use serde_json::Value;

/// Writes through a [`format::Writer`] like Go's `fmt.Fprintf(w, ...)`, at an indentation level.
macro_rules! w {
    ($w:expr, $level:expr, $($arg:tt)*) => { $w.w($level, &format!($($arg)*)) };
}

mod events;
mod format;
mod generic;
mod objects;
mod pod;
mod storage;
mod volumes;

pub use storage::pods_using_claim;

use format::Writer;
use jiff::Timestamp;

/// What a describer needs besides the object.
#[derive(Default)]
pub struct Extra {
    /// The object's events (None: events were not looked up; the section is left out).
    pub events: Option<Vec<Value>>,
    /// Pods using a claim (PVC) or running on a node (Node).
    pub pods: Vec<Value>,
    /// Node lease lookup result: Ok(lease) or Err(message).
    pub lease: Option<Result<Value, String>>,
    /// Namespace: resource quotas and limit ranges (None when the server does not serve them).
    pub quotas: Option<Vec<Value>>,
    /// See `quotas`.
    pub limit_ranges: Option<Vec<Value>>,
    /// The time ages are measured from.
    pub now: Option<Timestamp>,
}

/// Describes `object` (of `kind`) as kubectl does.
pub fn describe(kind: &str, object: &Value, extra: &Extra) -> String {
    let mut w = Writer::new();
    match kind {
        "PersistentVolume" => storage::persistent_volume(&mut w, object),
        "PersistentVolumeClaim" => storage::persistent_volume_claim(&mut w, object, &extra.pods),
        "Pod" => pod::pod(&mut w, object),
        "StorageClass" => storage::storage_class(&mut w, object),
        "ConfigMap" => objects::config_map(&mut w, object),
        "Secret" => objects::secret(&mut w, object),
        "Namespace" => objects::namespace(&mut w, object, extra),
        "Node" => objects::node(&mut w, object, extra),
        "CSINode" => storage::csi_node(&mut w, object),
        _ => generic::generic(&mut w, object),
    }
    if let Some(events) = &extra.events {
        events::describe_events(&mut w, events, extra.now.unwrap_or_else(Timestamp::now));
    }
    w.finish()
}

/// Whether kubectl's describer for `kind` shows events.
pub fn shows_events(kind: &str) -> bool {
    !matches!(kind, "Secret" | "Namespace")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn describes_an_nfs_persistent_volume_like_kubectl() {
        let pv = json!({
            "metadata": {"name": "nfs", "finalizers": ["kubernetes.io/pv-protection"]},
            "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteMany"], "nfs": {"server": "10.244.1.4", "path": "/"},
                     "persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Filesystem"},
            "status": {"phase": "Available"}
        });
        let out = describe("PersistentVolume", &pv, &Extra { events: Some(vec![]), ..Default::default() });
        let expected = "\
Name:            nfs
Labels:          <none>
Annotations:     <none>
Finalizers:      [kubernetes.io/pv-protection]
StorageClass:    
Status:          Available
Claim:           
Reclaim Policy:  Retain
Access Modes:    RWX
VolumeMode:      Filesystem
Capacity:        1Mi
Node Affinity:   <none>
Message:         
Source:
    Type:      NFS (an NFS mount that lasts the lifetime of a pod)
    Server:    10.244.1.4
    Path:      /
    ReadOnly:  false
Events:        <none>
";
        assert_eq!(out, expected);
    }
}
