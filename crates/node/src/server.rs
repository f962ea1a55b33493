//! The agent's read-only HTTP endpoints (kubelet's `--read-only-port` server): `/healthz` and
//! `/stats/summary`, in kubelet's Summary API shape (`k8s.io/kubelet/pkg/apis/stats/v1alpha1`). The API
//! server reaches them through the Node's `proxy` subresource (`kubectl get --raw
//! /api/v1/nodes/<node>/proxy/stats/summary`), at the port the agent reports as the Node's kubelet endpoint.
//!
//! kvol runs no containers, so the summary has the node and, per pod, its volumes: the ones measured by the
//! volume stats loop (CSI volumes through NodeGetVolumeStats, FlexVolume volumes of drivers with
//! `supportsMetrics` through statfs), with `pvcRef` for volumes of a claim, as kubelet reports them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{json, Map, Value};

use crate::manager::Manager;
use crate::volume_stats::Measured;

/// Serves the read-only endpoints on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, manager: Arc<Manager>) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/stats/summary", get(summary_handler))
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") })
        .with_state(manager);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("the read-only server stopped: {e}");
    }
}

async fn summary_handler(State(manager): State<Arc<Manager>>) -> Json<Value> {
    Json(summary(&manager))
}

/// kubelet's `Summary`: the node, and each pod this agent serves with its measured volumes.
pub fn summary(manager: &Manager) -> Value {
    let stats = manager.volume_stats.lock().clone();
    let desired = manager.desired.lock();
    let mut pods: Vec<Value> = desired
        .pods()
        .map(|pod| {
            let mut volumes: Vec<Value> = pod
                .volumes
                .values()
                .filter_map(|v| {
                    let measured = stats.get(&v.id)?;
                    Some(volume_stats(&v.outer_name, claim_of(&pod.pod, &v.outer_name), measured))
                })
                .collect();
            volumes.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            let start = pod.pod.status.as_ref().and_then(|s| s.start_time.clone());
            let mut stats = json!({
                "podRef": { "name": pod.pod_ref.name, "namespace": pod.pod_ref.namespace, "uid": pod.pod_ref.uid },
                "startTime": start,
                "containers": [],
            });
            if !volumes.is_empty() {
                stats["volume"] = Value::Array(volumes);
            }
            stats
        })
        .collect();
    pods.sort_by(|a, b| {
        let key = |p: &Value| {
            (p["podRef"]["namespace"].as_str().map(str::to_owned), p["podRef"]["name"].as_str().map(str::to_owned))
        };
        key(a).cmp(&key(b))
    });
    json!({
        "node": { "nodeName": manager.config.node_name, "startTime": Time(manager.started) },
        "pods": pods,
    })
}

/// The claim behind the pod's volume `name`, as `(namespace, claim)`. (Generic ephemeral volumes, whose
/// claims kubelet also names, are not mounted by this agent, so they never have stats here.)
fn claim_of(pod: &k8s_openapi::api::core::v1::Pod, name: &str) -> Option<(String, String)> {
    let volume = pod.spec.as_ref()?.volumes.as_ref()?.iter().find(|v| v.name == name)?;
    let claim = volume.persistent_volume_claim.as_ref()?;
    Some((pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()), claim.claim_name.clone()))
}

/// kubelet's `VolumeStats`: `FsStats` inline, the name, `pvcRef`, and `volumeHealthStats` when the driver
/// reported the volume abnormal.
fn volume_stats(name: &str, claim: Option<(String, String)>, measured: &Measured) -> Value {
    let mut out = Map::new();
    out.insert("time".into(), json!(Time(measured.time)));
    let s = &measured.stats;
    let figures = [
        ("availableBytes", s.available_bytes),
        ("capacityBytes", s.capacity_bytes),
        ("usedBytes", s.used_bytes),
        ("inodesFree", s.inodes_free),
        ("inodes", s.inodes),
        ("inodesUsed", s.inodes_used),
    ];
    for (key, value) in figures {
        // uint64 in kubelet's API: a negative figure from a driver is left out.
        if let Some(v) = value.and_then(|v| u64::try_from(v).ok()) {
            out.insert(key.into(), json!(v));
        }
    }
    out.insert("name".into(), json!(name));
    if let Some((namespace, claim)) = claim {
        out.insert("pvcRef".into(), json!({ "name": claim, "namespace": namespace }));
    }
    if s.abnormal.is_some() {
        out.insert("volumeHealthStats".into(), json!({ "abnormal": true }));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvol_volume::plugins::csi::VolumeStats;

    fn measured(stats: VolumeStats) -> Measured {
        Measured { stats, time: "2026-11-21T06:30:00.123Z".parse().unwrap() }
    }

    #[test]
    fn volume_stats_read_as_kubelets_fs_stats_with_the_claim_and_health() {
        let m = measured(VolumeStats {
            capacity_bytes: Some(100),
            used_bytes: Some(40),
            available_bytes: Some(60),
            inodes: Some(10),
            inodes_used: Some(4),
            inodes_free: Some(6),
            abnormal: Some("disk on fire".into()),
        });
        assert_eq!(
            volume_stats("data", Some(("ns".into(), "c1".into())), &m),
            json!({
                "time": "2026-11-21T06:30:00Z",
                "availableBytes": 60, "capacityBytes": 100, "usedBytes": 40,
                "inodesFree": 6, "inodes": 10, "inodesUsed": 4,
                "name": "data",
                "pvcRef": {"name": "c1", "namespace": "ns"},
                "volumeHealthStats": {"abnormal": true},
            })
        );
    }

    #[test]
    fn missing_and_negative_figures_are_left_out_and_a_healthy_inline_volume_has_no_extras() {
        let m = measured(VolumeStats { capacity_bytes: Some(100), used_bytes: Some(-1), ..Default::default() });
        assert_eq!(
            volume_stats("scratch", None, &m),
            json!({"time": "2026-11-21T06:30:00Z", "capacityBytes": 100, "name": "scratch"})
        );
    }
}
