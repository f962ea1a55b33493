//! core/v1 Events, as client-go's recorder writes them, so `kubectl describe` lists them under the object.
//!
//! Recording never blocks a reconcile: events go through a channel to a writer task. A repeat of the same
//! (object, type, reason, message) bumps `count` and `lastTimestamp` of the first event instead of creating a
//! new one, as client-go's correlator does. PersistentVolumes are cluster-scoped; their events live in
//! `default`, where Kubernetes puts them.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::HashMap;
use tokio::sync::mpsc;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something needs attention.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

struct Record {
    object: ObjectReference,
    kind: EventType,
    reason: &'static str,
    message: String,
    component: &'static str,
}

/// Sends events to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Record>,
}

/// An object reference for an event's `involvedObject`.
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: obj.meta().name.clone(),
        namespace: obj.meta().namespace.clone(),
        uid: obj.meta().uid.clone(),
        resource_version: obj.meta().resource_version.clone(),
        field_path: None,
    }
}

impl Recorder {
    /// Start the writer task.
    pub fn start(client: Client) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_events(client, rx));
        Recorder { tx }
    }

    /// Record an event about `obj` from `component` (e.g. `persistentvolume-controller`).
    pub fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        kind: EventType,
        reason: &'static str,
        message: impl Into<String>,
        component: &'static str,
    ) {
        let message = message.into();
        tracing::debug!(object = %obj.name_any(), reason, %message, "event");
        let _ = self.tx.send(Record { object: reference(obj), kind, reason, message, component });
    }
}

/// What a previously written event is called, to aggregate repeats.
struct Written {
    name: String,
    namespace: String,
    count: i32,
}

async fn write_events(client: Client, mut rx: mpsc::UnboundedReceiver<Record>) {
    let mut written: HashMap<(String, &'static str, &'static str, String), Written> = HashMap::new();
    while let Some(record) = rx.recv().await {
        let now = jiff::Timestamp::now();
        let namespace = record.object.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
        let uid = record.object.uid.clone().unwrap_or_default();
        let key = (uid, record.kind.as_str(), record.reason, record.message.clone());
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        if let Some(prev) = written.get_mut(&key) {
            prev.count += 1;
            let patch = serde_json::json!({ "count": prev.count, "lastTimestamp": Time(now) });
            let api: Api<Event> = Api::namespaced(client.clone(), &prev.namespace);
            if api.patch(&prev.name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                continue;
            }
        }
        let object_name = record.object.name.clone().unwrap_or_default();
        let name = format!("{object_name}.{:x}", now.as_nanosecond());
        let event = Event {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: record.object,
            reason: Some(record.reason.to_string()),
            message: Some(record.message),
            type_: Some(record.kind.as_str().to_string()),
            source: Some(EventSource { component: Some(record.component.to_string()), host: None }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None,
            count: Some(1),
            reporting_component: Some(record.component.to_string()),
            reporting_instance: Some(record.component.to_string()),
            action: None,
            related: None,
            series: None,
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if written.len() > 50_000 {
                    written.clear();
                }
                written.insert(key, Written { name, namespace, count: 1 });
            }
            Err(e) => tracing::warn!(error = %e, reason = record.reason, "could not record event"),
        }
    }
}
