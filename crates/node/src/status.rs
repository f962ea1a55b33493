//! What the agent tells the API server about pods: the volumes-ready condition and phase, kubelet's
//! events, the final deletion of terminating pods once their volumes are gone, and emptyDir evictions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, Client};
use tokio::sync::mpsc;

use crate::actual::MountState;
use crate::manager::{Manager, PodEvent};

/// The pod condition the agent maintains: whether all the pod's volumes are set up. Kubelet has no such
/// condition (its containers say it); kvol has no containers to run, so it reports volumes directly.
pub const VOLUMES_READY: &str = "kvol.io/VolumesReady";

/// What was last written for a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reported {
    ready: bool,
    message: String,
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// An event kubelet would write about `object` (in `namespace`), from node `node`.
pub fn kubelet_event(
    node: &str,
    namespace: &str,
    object: ObjectReference,
    type_: &str,
    reason: &str,
    message: String,
) -> Event {
    let ts = now();
    let suffix = format!("{:x}", jiff::Timestamp::now().as_nanosecond());
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{suffix}", object.name.as_deref().unwrap_or(node))),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        involved_object: object,
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some(type_.into()),
        source: Some(EventSource { component: Some("kubelet".into()), host: Some(node.to_string()) }),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node.to_string()),
        first_timestamp: Some(ts.clone()),
        last_timestamp: Some(ts),
        count: Some(1),
        ..Default::default()
    }
}

/// Writes events as they come.
pub async fn event_writer(client: Client, node: String, mut rx: mpsc::UnboundedReceiver<PodEvent>) {
    while let Some(e) = rx.recv().await {
        let events: Api<Event> = Api::namespaced(client.clone(), &e.pod.namespace);
        let object = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(e.pod.name.clone()),
            namespace: Some(e.pod.namespace.clone()),
            uid: Some(e.pod.uid.clone()),
            ..Default::default()
        };
        let event = kubelet_event(&node, &e.pod.namespace, object, e.type_, e.reason, e.message.clone());
        if let Err(err) = events.create(&PostParams::default(), &event).await {
            tracing::warn!(pod = %e.pod.name, reason = e.reason, "writing an event failed: {err}");
        }
    }
}

/// The status loop: on every wake-up (an operation finished) or each second, writes changed pod
/// conditions, reports mount timeouts and deletes terminating pods whose volumes are gone.
pub async fn status_loop(manager: Arc<Manager>, client: Client) {
    let mut reported: HashMap<String, Reported> = HashMap::new();
    let mut timed_out: HashMap<String, std::time::Instant> = HashMap::new();
    let mut next_full = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = manager.status_wake.notified() => {}
            _ = tokio::time::sleep_until(next_full) => {}
        }
        // Changed pods at once; every pod each second (mount timeouts, forgotten pods).
        let full = tokio::time::Instant::now() >= next_full;
        let dirty = manager.take_status_dirty();
        let uids: Vec<String> = if full {
            next_full = tokio::time::Instant::now() + Duration::from_secs(1);
            let all: std::collections::HashSet<String> =
                manager.desired.lock().pods().map(|p| p.pod_ref.uid.clone()).collect();
            reported.retain(|uid, _| all.contains(uid));
            timed_out.retain(|uid, _| all.contains(uid));
            all.into_iter().collect()
        } else {
            dirty.into_iter().collect()
        };
        let mut updates = Vec::new();
        for uid in &uids {
            let Some(status) = manager.pod_volume_status(uid) else { continue };
            let message = if status.ready {
                String::new()
            } else {
                status.message(status.last_error.as_deref().unwrap_or("waiting for volumes to be set up"))
            };
            let want = Reported { ready: status.ready, message };
            let quiet = !status.ready && status.in_progress;
            if !quiet && reported.get(uid) != Some(&want) {
                updates.push((status.pod.clone(), want.clone()));
                reported.insert(uid.clone(), want);
            }
            if !status.ready && status.first_seen.elapsed() >= manager.config.mount_timeout {
                let due = timed_out.get(uid).is_none_or(|t| t.elapsed() >= manager.config.mount_timeout);
                if due {
                    timed_out.insert(uid.clone(), std::time::Instant::now());
                    manager.event(PodEvent {
                        pod: status.pod.clone(),
                        type_: "Warning",
                        reason: "FailedMount",
                        message: status.message("timed out waiting for the condition"),
                    });
                }
            }
        }
        futures::stream::iter(updates)
            .for_each_concurrent(32, |(pod, want)| {
                let client = client.clone();
                async move {
                    if let Err(err) = write_pod_status(&client, &pod, want.ready, &want.message).await {
                        tracing::warn!(pod = %pod.name, "updating pod status failed: {err}");
                    }
                }
            })
            .await;
        if manager.config.delete_terminated_pods && manager.desired.lock().terminating().next().is_some() {
            delete_torn_down(&manager, &client).await;
        }
    }
}

/// Sets the volumes-ready condition and, once ready, phase Running. Retries once on a conflict.
pub async fn write_pod_status(
    client: &Client,
    pod: &kvol_volume::PodRef,
    ready: bool,
    message: &str,
) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    for attempt in 0..3 {
        let Some(mut current) = pods.get_opt(&pod.name).await? else { return Ok(()) };
        if current.metadata.uid.as_deref() != Some(pod.uid.as_str()) || current.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let status = current.status.get_or_insert_with(Default::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        let want_status = if ready { "True" } else { "False" };
        let reason = if ready { "VolumesMounted" } else { "FailedMount" };
        let changed_status = match conditions.iter_mut().find(|c| c.type_ == VOLUMES_READY) {
            Some(c) => {
                let transition = c.status != want_status;
                if transition {
                    c.last_transition_time = Some(now());
                }
                c.status = want_status.into();
                c.reason = Some(reason.into());
                c.message = (!message.is_empty()).then(|| message.to_string());
                transition
            }
            None => {
                conditions.push(PodCondition {
                    type_: VOLUMES_READY.into(),
                    status: want_status.into(),
                    reason: Some(reason.into()),
                    message: (!message.is_empty()).then(|| message.to_string()),
                    last_transition_time: Some(now()),
                    ..Default::default()
                });
                true
            }
        };
        let _ = changed_status;
        if ready && status.phase.as_deref().is_none_or(|p| p == "Pending") {
            // No containers to start: a pod whose volumes are ready is as far as kvol takes it.
            status.phase = Some("Running".into());
            status.start_time.get_or_insert_with(now);
        } else if status.phase.is_none() {
            status.phase = Some("Pending".into());
        }
        match pods.replace_status(&pod.name, &PostParams::default(), &current).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 2 => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes, with gracePeriodSeconds=0, terminating pods whose volumes and directory are gone (kubelet's
/// final step of pod termination).
async fn delete_torn_down(manager: &Arc<Manager>, client: &Client) {
    let done: Vec<(String, String, String)> = {
        let desired = manager.desired.lock();
        let actual = manager.actual.lock();
        desired
            .terminating()
            .filter(|(uid, _)| actual.pod_volumes(uid).next().is_none() && !actual.has_pod_dir(uid))
            .filter(|(uid, _)| !manager.executor.any_running(&format!("pod/{uid}/")))
            .map(|(uid, (ns, name))| (uid.clone(), ns.clone(), name.clone()))
            .collect()
    };
    futures::stream::iter(done)
        .for_each_concurrent(32, |(uid, ns, name)| async move {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                ..Default::default()
            };
            match pods.delete(&name, &params).await {
                Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), "volumes torn down, pod deleted"),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(err) => {
                    tracing::warn!(pod = %format!("{ns}/{name}"), "deleting the pod failed: {err}");
                    return;
                }
            }
            manager.desired.lock().forget_terminating(&uid);
        })
        .await;
}

/// Checks disk-backed emptyDirs against their `sizeLimit` and evicts pods over it, as kubelet's eviction
/// manager does: event `Evicted` and phase Failed with its message; the volumes are then torn down.
pub async fn usage_loop(manager: Arc<Manager>, client: Client) {
    loop {
        tokio::time::sleep(manager.config.usage_check_period).await;
        let checks: Vec<_> = {
            let desired = manager.desired.lock();
            let actual = manager.actual.lock();
            desired
                .pods()
                .flat_map(|p| p.volumes.values().map(move |v| (p.pod_ref.clone(), v)))
                .filter(|(_, v)| v.plugin.as_limited().is_some())
                .filter_map(|(pod, v)| {
                    let a = actual.get(&v.id).filter(|a| a.state == MountState::Mounted)?;
                    Some((pod, v.clone(), a.path.clone()))
                })
                .collect()
        };
        let over = tokio::task::spawn_blocking(move || {
            checks
                .into_iter()
                .filter_map(|(pod, v, path)| {
                    let msg = v.plugin.as_limited()?.exceeded(&v.spec, &path).ok()??;
                    Some((pod, msg))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (pod, message) in over {
            tracing::warn!(pod = %pod.name, "{message}");
            manager.event(PodEvent { pod: pod.clone(), type_: "Warning", reason: "Evicted", message: message.clone() });
            if let Err(err) = evict(&client, &pod, &message).await {
                tracing::warn!(pod = %pod.name, "evicting failed: {err}");
            }
        }
    }
}

async fn evict(client: &Client, pod: &kvol_volume::PodRef, message: &str) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    let Some(mut current) = pods.get_opt(&pod.name).await? else { return Ok(()) };
    if current.metadata.uid.as_deref() != Some(pod.uid.as_str()) {
        return Ok(());
    }
    let status = current.status.get_or_insert_with(Default::default);
    status.phase = Some("Failed".into());
    status.reason = Some("Evicted".into());
    status.message = Some(message.to_string());
    pods.replace_status(&pod.name, &PostParams::default(), &current).await.map(drop)
}
