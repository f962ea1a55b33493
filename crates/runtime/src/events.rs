//! core/v1 Events, as client-go's recorder writes them, so `kubectl describe` lists them under the object.
//!
//! Recording never blocks a reconcile: events go through a channel to one writer task. A repeat of the same
//! (object, source, type, reason, message) bumps `count` and `lastTimestamp` of the first event instead of
//! creating a new one, as client-go's correlator does. Events about cluster-scoped objects (PersistentVolumes)
//! live in `default`, where Kubernetes puts them.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something needs attention.
    Warning,
}

impl EventType {
    /// The name Kubernetes gives the type.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

struct Record {
    object: ObjectReference,
    type_: EventType,
    reason: &'static str,
    message: String,
    component: Arc<str>,
}

/// Sends events to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Record>,
}

/// A [`Recorder`] that reports as one component (e.g. `csi.kvol.io_external-provisioner`).
#[derive(Clone)]
pub struct Reporter {
    recorder: Recorder,
    component: Arc<str>,
}

/// How many written events are remembered for aggregation before the memory starts over.
const REMEMBERED: usize = 50_000;

impl Recorder {
    /// Start the writer task (on the current runtime).
    pub fn start(client: Client) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_events(client, rx));
        Recorder { tx }
    }

    /// Record an event about `obj` from `component` (e.g. `persistentvolume-controller`).
    pub fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &'static str,
        message: impl Into<String>,
        component: &str,
    ) {
        self.send(obj, type_, reason, message.into(), Arc::from(component));
    }

    /// This recorder, reporting as `component`.
    pub fn reporter(&self, component: impl Into<Arc<str>>) -> Reporter {
        Reporter { recorder: self.clone(), component: component.into() }
    }

    fn send<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &'static str,
        message: String,
        component: Arc<str>,
    ) {
        tracing::debug!(object = %obj.name_any(), reason, %message, "event");
        // The writer is gone only when the runtime shuts down: the event has nowhere to go.
        let _ = self.tx.send(Record { object: obj.object_ref(&()), type_, reason, message, component });
    }
}

impl Reporter {
    /// Record an event about `obj`.
    pub fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &'static str,
        message: impl Into<String>,
    ) {
        self.recorder.send(obj, type_, reason, message.into(), self.component.clone());
    }
}

/// What a previously written event is called, to aggregate repeats.
struct Written {
    name: String,
    namespace: String,
    count: i32,
}

type Correlation = (String, Arc<str>, EventType, &'static str, String);

async fn write_events(client: Client, mut rx: mpsc::UnboundedReceiver<Record>) {
    let mut written: HashMap<Correlation, Written> = HashMap::new();
    while let Some(record) = rx.recv().await {
        let now = jiff::Timestamp::now();
        let namespace = record.object.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
        let uid = record.object.uid.clone().unwrap_or_default();
        let key = (uid, record.component.clone(), record.type_, record.reason, record.message.clone());
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
        let component = record.component.to_string();
        let event = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(namespace.clone()), ..Default::default() },
            involved_object: record.object,
            reason: Some(record.reason.to_string()),
            message: Some(record.message),
            type_: Some(record.type_.as_str().to_string()),
            source: Some(EventSource { component: Some(component.clone()), host: None }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(component.clone()),
            reporting_instance: Some(component),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if written.len() > REMEMBERED {
                    written.clear();
                }
                written.insert(key, Written { name, namespace, count: 1 });
            }
            Err(e) => tracing::warn!(error = %e, reason = record.reason, "could not record an event"),
        }
    }
}
