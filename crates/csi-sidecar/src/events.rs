//! core/v1 Events as client-go's recorder writes them, so `kubectl describe` shows the sidecars' work
//! under the claim, volume or attachment. Recording never blocks a worker: a writer task creates them,
//! and a repeat of the same (object, reason, message) bumps `count` instead of creating a new event.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::mpsc;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Expected progress.
    Normal,
    /// A failure.
    Warning,
}

struct Record {
    object: ObjectReference,
    type_: EventType,
    reason: &'static str,
    message: String,
}

/// Sends events to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Record>,
}

/// The `involvedObject` reference of `obj`.
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
    /// Starts the writer task; events carry `component` as their source (e.g.
    /// `csi.kvol.io_external-provisioner`).
    pub fn start(client: Client, component: String) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_events(client, component, rx));
        Recorder { tx }
    }

    /// Records an event about `obj`.
    pub fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &'static str,
        message: impl Into<String>,
    ) {
        let message = message.into();
        tracing::debug!(object = %obj.name_any(), reason, %message, "event");
        let _ = self.tx.send(Record { object: reference(obj), type_, reason, message });
    }
}

async fn write_events(client: Client, component: String, mut rx: mpsc::UnboundedReceiver<Record>) {
    // (uid, reason, message) → (event namespace, name, count)
    let mut written: HashMap<(String, &'static str, String), (String, String, i32)> = HashMap::new();
    while let Some(record) = rx.recv().await {
        let now = Time(jiff::Timestamp::now());
        let namespace = record.object.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
        let key = (record.object.uid.clone().unwrap_or_default(), record.reason, record.message.clone());
        if let Some((ns, name, count)) = written.get_mut(&key) {
            *count += 1;
            let patch = serde_json::json!({ "count": *count, "lastTimestamp": now });
            let api: Api<Event> = Api::namespaced(client.clone(), ns);
            if api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                continue;
            }
        }
        let object_name = record.object.name.clone().unwrap_or_default();
        let name = format!("{object_name}.{:x}", jiff::Timestamp::now().as_nanosecond());
        let event = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(namespace.clone()), ..Default::default() },
            involved_object: record.object,
            reason: Some(record.reason.to_owned()),
            message: Some(record.message),
            type_: Some(match record.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            source: Some(EventSource { component: Some(component.clone()), host: None }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some(component.clone()),
            reporting_instance: Some(component.clone()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if written.len() > 10_000 {
                    written.clear();
                }
                written.insert(key, (namespace, name, 1));
            }
            Err(e) => tracing::warn!(error = %e, reason = record.reason, "could not record an event"),
        }
    }
}
