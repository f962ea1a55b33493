//! API server benchmark (issue 2): create throughput for 10,000 PVs, full-list latency at 10,000 objects,
//! watch delivery to 10 concurrent watchers, and the server's RSS. `kvol server` runs as its own process on
//! a temp data dir (so its RSS is its own); the client is the `kube` crate, as any Kubernetes client would be.
//!
//! Run: `cargo bench -p kvol --bench api` (env `KVOL_BENCH_PVS`, `KVOL_BENCH_CONCURRENCY` to vary).
//! Compare ratios within one run, not absolute times across machines.

// The server harness of the kvol package's tests.
#[path = "../tests/util/mod.rs"]
mod util;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::Client;
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::{machine, percentile, rss_kib};

fn pv(name: &str) -> PersistentVolume {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": { "name": name, "labels": { "bench": "kvol" } },
        "spec": {
            "capacity": { "storage": "1Gi" },
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": { "path": format!("/data/{name}") },
        }
    }))
    .expect("valid PV")
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let total = env_usize("KVOL_BENCH_PVS", 10_000);
    let concurrency = env_usize("KVOL_BENCH_CONCURRENCY", 64);
    println!("machine: {}", machine());
    let server = util::Server::start();
    let pid = server.pid();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(server.kubeconfig()).expect("read kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("kubeconfig");
    let client = Client::try_from(config).expect("client");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    println!("server RSS idle: {} MiB", rss_kib(pid) / 1024);

    // 1. Create throughput.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let pvs = pvs.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                pvs.create(&PostParams::default(), &pv(&format!("pv-{i:05}"))).await.expect("create acknowledged");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("create task"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "create: {total} PVs in {:.2} s = {:.0} acknowledged creates/s ({concurrency} concurrent clients); latency p50 {:.2} ms p99 {:.2} ms",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
    println!("server RSS after creates: {} MiB", rss_kib(pid) / 1024);

    // 2. Full list latency (raw bytes, as the server answers them; and decoded by a typed client).
    let mut raw = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let req = http::Request::get("/api/v1/persistentvolumes").body(Vec::new()).expect("request");
        let body = client.request_text(req).await.expect("list");
        raw.push(t.elapsed());
        assert!(body.len() > total * 100, "list returned {} bytes", body.len());
    }
    raw.sort();
    let mut typed = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let list = pvs.list(&ListParams::default()).await.expect("list");
        typed.push(t.elapsed());
        assert_eq!(list.items.len(), total);
    }
    typed.sort();
    println!(
        "list of {total}: p50 {:.1} ms, p99 {:.1} ms (bytes on the wire); typed decode in the client adds: p50 {:.1} ms",
        percentile(&raw, 0.5).as_secs_f64() * 1e3,
        percentile(&raw, 0.99).as_secs_f64() * 1e3,
        percentile(&typed, 0.5).as_secs_f64() * 1e3,
    );

    // 3. Watch delivery: 10 watchers from the current revision; 2,000 label updates at about 200/s.
    let watchers = 10;
    let updates = env_usize("KVOL_BENCH_UPDATES", 2_000);
    let rv = pvs
        .list_metadata(&ListParams::default().limit(1))
        .await
        .expect("list rv")
        .metadata
        .resource_version
        .unwrap_or_default();
    // For each written resourceVersion: when the write was sent and when it was acknowledged.
    let acks: Arc<parking_lot::Mutex<std::collections::HashMap<String, (Instant, Instant)>>> = Default::default();
    let mut receivers = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(watchers);
    for _ in 0..watchers {
        let pvs = pvs.clone();
        let rv = rv.clone();
        let ready = ready_tx.clone();
        receivers.push(tokio::spawn(async move {
            let mut stream = pvs.watch(&WatchParams::default().timeout(290), &rv).await.expect("watch").boxed();
            ready.send(()).await.ok();
            let mut seen = Vec::with_capacity(updates);
            while seen.len() < updates {
                match stream.next().await {
                    Some(Ok(WatchEvent::Modified(o))) => {
                        seen.push((o.metadata.resource_version.unwrap_or_default(), Instant::now()))
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => panic!("watch failed: {e}"),
                    None => break,
                }
            }
            seen
        }));
    }
    for _ in 0..watchers {
        ready_rx.recv().await;
    }
    let interval = Duration::from_micros(5_000);
    let mut tick = tokio::time::interval(interval);
    for i in 0..updates {
        tick.tick().await;
        let name = format!("pv-{:05}", i % total);
        let patch = serde_json::json!({ "metadata": { "labels": { "round": i.to_string() } } });
        let sent = Instant::now();
        let updated = pvs
            .patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
            .await
            .expect("patch");
        acks.lock().insert(updated.metadata.resource_version.unwrap_or_default(), (sent, Instant::now()));
    }
    let (mut delays, mut since_sent) = (Vec::new(), Vec::new());
    for r in receivers {
        for (rv, at) in r.await.expect("watcher") {
            if let Some((sent, acked)) = acks.lock().get(&rv) {
                delays.push(at.saturating_duration_since(*acked));
                since_sent.push(at.saturating_duration_since(*sent));
            }
        }
    }
    delays.sort();
    since_sent.sort();
    println!(
        "watch: {} deliveries to {watchers} watchers of {updates} updates at ~200/s: delay after the write's acknowledgement p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        delays.len(),
        percentile(&delays, 0.5).as_secs_f64() * 1e3,
        percentile(&delays, 0.99).as_secs_f64() * 1e3,
        delays.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    println!(
        "watch: delay since the write was sent (includes the durable commit): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&since_sent, 0.5).as_secs_f64() * 1e3,
        percentile(&since_sent, 0.99).as_secs_f64() * 1e3,
        since_sent.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    println!("server RSS at the end: {} MiB", rss_kib(pid) / 1024);
}
