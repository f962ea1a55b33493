//! Controller benchmarks, run on demand (they are `#[ignore]`d):
//!
//! ```text
//! cargo build --release -p kvol
//! cargo test --release -p kvol-controller --test bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! `kvol server` runs as its own process (`KVOL_BENCH_SERVER`, default `target/release/kvol`) so the
//! controllers' RSS is measured apart from the server's; the controllers run in this process, as they would in
//! `kvol controller`. Sizes: `KVOL_BENCH_PAIRS` (default 10000), `KVOL_BENCH_DYNAMIC` (default 1000).
//! Compare ratios within one run, not absolute times across machines.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use kvol_controller::{ControllerConfig, Metrics};
use kvol_testkit::{machine, percentile, rss_kib};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_binary() -> PathBuf {
    if let Ok(p) = std::env::var("KVOL_BENCH_SERVER") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/kvol")
}

fn start_server() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let binary = server_binary();
    let child = Command::new(&binary)
        .args(["server", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        // The controllers under test run in their own process: the server must not run its own copy.
        .args(["--no-controllers", "--no-agent"])
        .env("KVOL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {} (build it: cargo build --release -p kvol): {e}", binary.display()));
    let kubeconfig = dir.path().join("data/kubeconfig");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kubeconfig.exists() {
        assert!(Instant::now() < deadline, "kvol server did not become ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, dir }
}

async fn client(server: &Server) -> Client {
    let kc = kube::config::Kubeconfig::read_from(server.dir.path().join("data/kubeconfig")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

/// User + system CPU seconds a process used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of /proc/pid/stat; here indices 11 and 12 after the comm.
    (ticks(11) + ticks(12)) / 100.0
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pv(i: usize) -> PersistentVolume {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": { "name": format!("bench-pv-{i:05}") },
        "spec": {
            "capacity": { "storage": "1Gi" },
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": { "path": format!("/tmp/kvol-bench/{i}") }
        }
    }))
    .unwrap()
}

fn pvc(name: String, class: &str, size: &str) -> PersistentVolumeClaim {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "resources": { "requests": { "storage": size } }
        }
    }))
    .unwrap()
}

/// The controllers, in a child process (this test binary, running [`controller_process`]) so their RSS and
/// CPU are their own. The child writes its counters to `<dir>/metrics` every 50 ms.
struct Controllers {
    child: Child,
    metrics_file: PathBuf,
}

impl Drop for Controllers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Controllers {
    fn start(server: &Server, local_path: Option<PathBuf>) -> Controllers {
        let metrics_file = server.dir.path().join("metrics");
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["controller_process", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
            .env("KVOL_BENCH_CHILD_KUBECONFIG", server.dir.path().join("data/kubeconfig"))
            .env("KVOL_BENCH_CHILD_METRICS", &metrics_file)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(dir) = local_path {
            cmd.env("KVOL_BENCH_CHILD_LOCAL_PATH", dir);
        }
        let child = cmd.spawn().expect("start the controller process");
        let c = Controllers { child, metrics_file };
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.counters()[3] == 0 {
            assert!(Instant::now() < deadline, "controllers did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        c
    }

    /// writes, conflicts, bound, ready
    fn counters(&self) -> [u64; 4] {
        let text = std::fs::read_to_string(&self.metrics_file).unwrap_or_default();
        let mut out = [0; 4];
        for (i, v) in text.split_whitespace().take(4).enumerate() {
            out[i] = v.parse().unwrap_or(0);
        }
        out
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Not a benchmark: the controller process the benchmarks start (does nothing when run directly).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "started by the benchmarks"]
async fn controller_process() {
    let Ok(kubeconfig) = std::env::var("KVOL_BENCH_CHILD_KUBECONFIG") else { return };
    let metrics_file = PathBuf::from(std::env::var("KVOL_BENCH_CHILD_METRICS").unwrap());
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    let client = Client::try_from(config).unwrap();
    let local_path = std::env::var("KVOL_BENCH_CHILD_LOCAL_PATH").ok().map(PathBuf::from);
    let mut config = ControllerConfig::new(local_path, "node1");
    let metrics = Arc::new(Metrics::default());
    config.metrics = metrics.clone();
    config.workers = env_usize("KVOL_BENCH_WORKERS", 512);
    config.provision_workers = env_usize("KVOL_BENCH_PROVISION_WORKERS", 16);
    tokio::spawn(async move {
        loop {
            let line = format!(
                "{} {} {} {}",
                metrics.writes.load(Ordering::Relaxed),
                metrics.conflicts.load(Ordering::Relaxed),
                metrics.bound.load(Ordering::Relaxed),
                u64::from(metrics.ready.load(Ordering::Relaxed))
            );
            let tmp = metrics_file.with_extension("tmp");
            let _ = std::fs::write(&tmp, line);
            let _ = std::fs::rename(&tmp, &metrics_file);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    kvol_controller::run_controllers(client, config, futures::future::pending()).await.expect("controllers");
}

/// Watch claims and note when each is first seen Bound, until `n` are.
fn observe_bindings(client: Client, n: usize) -> tokio::task::JoinHandle<HashMap<String, Instant>> {
    use kube::runtime::watcher;
    tokio::spawn(async move {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client, "default");
        let mut seen = HashMap::new();
        let mut stream = Box::pin(watcher::watcher(api, watcher::Config::default()));
        while seen.len() < n {
            let Some(Ok(event)) = stream.next().await else { continue };
            let claim = match event {
                watcher::Event::Apply(c) | watcher::Event::InitApply(c) => c,
                _ => continue,
            };
            if claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") {
                let key = format!("default/{}", claim.metadata.name.clone().unwrap_or_default());
                seen.entry(key).or_insert_with(Instant::now);
            }
        }
        seen
    })
}

struct Report {
    name: String,
    n: usize,
    created: Duration,
    all_bound: Duration,
    latencies: Vec<Duration>,
    writes: u64,
    conflicts: u64,
    rss_before: u64,
    rss_after: u64,
    server_rss: u64,
    cpu_self: f64,
    cpu_server: f64,
}

impl Report {
    fn print(&mut self) {
        self.latencies.sort();
        println!("\n== {} ==", self.name);
        println!("machine: {}", machine());
        println!("claims: {}", self.n);
        println!("creating all objects took: {:.2} s", self.created.as_secs_f64());
        println!(
            "all Bound after: {:.2} s from the first create ({:.0} bindings/s)",
            self.all_bound.as_secs_f64(),
            self.n as f64 / self.all_bound.as_secs_f64()
        );
        println!(
            "bind latency (claim created -> seen Bound through a watch): p50 {:.3} s, p99 {:.3} s, max {:.3} s",
            percentile(&self.latencies, 0.50).as_secs_f64(),
            percentile(&self.latencies, 0.99).as_secs_f64(),
            self.latencies.last().copied().unwrap_or_default().as_secs_f64()
        );
        println!(
            "controller API writes: {} ({:.2} per binding), 409 conflicts: {}",
            self.writes,
            self.writes as f64 / self.n as f64,
            self.conflicts
        );
        println!(
            "controller process RSS: {:.1} MiB when started, {:.1} MiB at the end; kvol server RSS: {:.1} MiB",
            self.rss_before as f64 / 1024.0,
            self.rss_after as f64 / 1024.0,
            self.server_rss as f64 / 1024.0
        );
        println!("CPU used during the run: controllers {:.1} s, kvol server {:.1} s", self.cpu_self, self.cpu_server);
    }
}

async fn verify_all_bound(client: &Client, n: usize) {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let list = api.list(&ListParams::default()).await.unwrap();
    let bound =
        list.items.iter().filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")).count();
    assert_eq!(bound, n, "claims Bound as read back through the API");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run on demand with --ignored --nocapture"]
async fn bench_static_pairs_bound_end_to_end() {
    let n = env_usize("KVOL_BENCH_PAIRS", 10_000);
    let server = start_server();
    let client = client(&server).await;
    let controllers = Controllers::start(&server, None);
    let me = controllers.pid();
    let rss_before = rss_kib(me);
    let observed = observe_bindings(client.clone(), n);
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let cpu_start = (cpu_seconds(me), cpu_seconds(server.child.id()));
    let start = Instant::now();
    let created_at: HashMap<String, Instant> = futures::stream::iter(0..n * 2)
        .map(|j| {
            let (pvs, pvcs) = (pvs.clone(), pvcs.clone());
            async move {
                let i = j / 2;
                if j % 2 == 0 {
                    pvs.create(&PostParams::default(), &pv(i)).await.expect("create PV");
                    None
                } else {
                    let name = format!("bench-pvc-{i:05}");
                    pvcs.create(&PostParams::default(), &pvc(name.clone(), "", "1Gi")).await.expect("create PVC");
                    Some((format!("default/{name}"), Instant::now()))
                }
            }
        })
        .buffer_unordered(64)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    let created = start.elapsed();
    let bound_at = tokio::time::timeout(Duration::from_secs(600), observed).await.expect("all Bound").unwrap();
    let all_bound = bound_at.values().max().map(|t| *t - start).unwrap_or_default();
    verify_all_bound(&client, n).await;
    std::thread::sleep(Duration::from_millis(200)); // the child writes its counters every 50 ms
    let [writes, conflicts, _, _] = controllers.counters();
    let latencies =
        created_at.iter().filter_map(|(k, c)| bound_at.get(k).map(|b| b.saturating_duration_since(*c))).collect();
    let mut report = Report {
        name: format!("{n} static PV/PVC pairs, created at once"),
        n,
        created,
        all_bound,
        latencies,
        writes,
        conflicts,
        rss_before,
        rss_after: rss_kib(me),
        server_rss: rss_kib(server.child.id()),
        cpu_self: cpu_seconds(me) - cpu_start.0,
        cpu_server: cpu_seconds(server.child.id()) - cpu_start.1,
    };
    report.print();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run on demand with --ignored --nocapture"]
async fn bench_dynamically_provisioned_claims() {
    let n = env_usize("KVOL_BENCH_DYNAMIC", 1_000);
    let server = start_server();
    let client = client(&server).await;
    let local = server.dir.path().join("local-path");
    let classes: Api<k8s_openapi::api::storage::v1::StorageClass> = Api::all(client.clone());
    let class = serde_json::from_value(serde_json::json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": { "name": "local" },
        "provisioner": "kvol.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"
    }))
    .unwrap();
    classes.create(&PostParams::default(), &class).await.unwrap();
    let controllers = Controllers::start(&server, Some(local.clone()));
    let me = controllers.pid();
    let rss_before = rss_kib(me);
    let observed = observe_bindings(client.clone(), n);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let cpu_start = (cpu_seconds(me), cpu_seconds(server.child.id()));
    let start = Instant::now();
    let created_at: HashMap<String, Instant> = futures::stream::iter(0..n)
        .map(|i| {
            let pvcs = pvcs.clone();
            async move {
                let name = format!("dyn-{i:05}");
                pvcs.create(&PostParams::default(), &pvc(name.clone(), "local", "16Mi")).await.expect("create PVC");
                (format!("default/{name}"), Instant::now())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let created = start.elapsed();
    let bound_at = tokio::time::timeout(Duration::from_secs(600), observed).await.expect("all Bound").unwrap();
    let all_bound = bound_at.values().max().map(|t| *t - start).unwrap_or_default();
    verify_all_bound(&client, n).await;
    std::thread::sleep(Duration::from_millis(200)); // the child writes its counters every 50 ms
    let [writes, conflicts, _, _] = controllers.counters();
    assert_eq!(std::fs::read_dir(&local).unwrap().count(), n, "one directory per claim");
    let latencies =
        created_at.iter().filter_map(|(k, c)| bound_at.get(k).map(|b| b.saturating_duration_since(*c))).collect();
    let mut report = Report {
        name: format!("{n} dynamically provisioned claims (kvol.io/local-path)"),
        n,
        created,
        all_bound,
        latencies,
        writes,
        conflicts,
        rss_before,
        rss_after: rss_kib(me),
        server_rss: rss_kib(server.child.id()),
        cpu_self: cpu_seconds(me) - cpu_start.0,
        cpu_server: cpu_seconds(server.child.id()) - cpu_start.1,
    };
    report.print();
}
