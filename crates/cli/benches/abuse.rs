//! The API server under abuse, as a process of its own (`kvol server --no-controllers --no-agent`):
//!
//! 1. a flood of 20,000 hostile connection attempts (idle TCP, and TLS with half-sent request headers),
//!    while an authenticated client keeps asking: its latency (p50/p99/max, each request on a new TLS
//!    connection) and failures, the server's RSS and open descriptors;
//! 2. 1,000 watches from `resourceVersion=0` on 10,000 PVs, read to the end, then 1,000 that never read:
//!    the server's RSS before, at its peak, and after the watchers went;
//! 3. 10 watchers that never read while 150 ConfigMaps of 900 KB are written: RSS before, peak and after.
//!
//! Run: `cargo bench -p kvol --bench abuse` (as root is not needed). Env: `KVOL_ABUSE_ATTEMPTS`,
//! `KVOL_ABUSE_WATCHERS`, `KVOL_ABUSE_OBJECTS`. Compare figures within one run.

#[path = "../tests/util/mod.rs"]
mod util;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use util::{machine, percentile};

fn rss_mib(pid: u32) -> u64 {
    util::rss_kib(pid) / 1024
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The highest RSS of `pid` while the returned flag stays false, sampled every 50 ms.
fn sample_peak(pid: u32) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut peak = 0;
        while !flag.load(Ordering::Relaxed) {
            peak = peak.max(rss_mib(pid));
            std::thread::sleep(Duration::from_millis(50));
        }
        peak
    });
    (stop, handle)
}

/// RSS once it has settled (no change of more than 1 MiB over a second, or 15 s).
fn settled_rss(pid: u32) -> u64 {
    let mut last = rss_mib(pid);
    for _ in 0..15 {
        std::thread::sleep(Duration::from_secs(1));
        let now = rss_mib(pid);
        if now.abs_diff(last) <= 1 {
            return now;
        }
        last = now;
    }
    last
}

struct Target {
    addr: String,
    token: String,
    tls: tokio_rustls::TlsConnector,
}

impl Target {
    fn new(server: &util::Server) -> Target {
        use base64::Engine;
        let kubeconfig = std::fs::read_to_string(server.kubeconfig()).expect("kubeconfig");
        let field = |name: &str| {
            kubeconfig.lines().find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string())).expect(name)
        };
        let pem = base64::engine::general_purpose::STANDARD.decode(field("certificate-authority-data:")).expect("CA");
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert.expect("CA PEM")).expect("CA");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Target {
            addr: server.addr.clone(),
            token: field("token:"),
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    async fn connect(&self) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(&self.addr).await?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        self.tls.connect(name, tcp).await
    }

    fn get(&self, path: &str) -> Vec<u8> {
        format!(
            "GET {path} HTTP/1.1\r\nHost: kvol\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            self.token
        )
        .into_bytes()
    }

    /// One authenticated GET on a new connection: its latency, or why it failed.
    async fn timed_get(&self, path: &str) -> Result<Duration, String> {
        let started = Instant::now();
        let attempt = async {
            let mut conn = self.connect().await.map_err(|e| format!("connect: {e}"))?;
            conn.write_all(&self.get(path)).await.map_err(|e| format!("write: {e}"))?;
            let mut out = Vec::new();
            let _ = conn.read_to_end(&mut out).await;
            if out.starts_with(b"HTTP/1.1 200") {
                Ok(started.elapsed())
            } else {
                Err(format!("answer: {}", String::from_utf8_lossy(&out[..out.len().min(80)])))
            }
        };
        tokio::time::timeout(Duration::from_secs(30), attempt).await.map_err(|_| "no answer in 30 s".to_string())?
    }
}

/// A watch from `resourceVersion=0` on `path`, read until `expected` ADDED events arrived (or never read).
async fn watch_reading(target: Arc<Target>, path: String, expected: usize) -> Result<usize, String> {
    let mut conn = target.connect().await.map_err(|e| e.to_string())?;
    conn.write_all(&target.get(&path)).await.map_err(|e| e.to_string())?;
    let needle = b"\"type\":\"ADDED\"";
    let (mut seen, mut tail) = (0usize, Vec::new());
    let mut buf = vec![0u8; 64 * 1024];
    while seen < expected {
        let n = conn.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("closed after {seen} events"));
        }
        tail.extend_from_slice(&buf[..n]);
        seen += tail.windows(needle.len()).filter(|w| *w == needle).count();
        let keep = tail.len().saturating_sub(needle.len() - 1);
        tail.drain(..keep);
    }
    Ok(seen)
}

async fn create_pvs(client: &kube::Client, total: usize) {
    use k8s_openapi::api::core::v1::PersistentVolume;
    let pvs: kube::Api<PersistentVolume> = kube::Api::all(client.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (pvs, next) = (pvs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
                    "apiVersion": "v1", "kind": "PersistentVolume", "metadata": { "name": format!("pv-{i:05}") },
                    "spec": { "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
                              "hostPath": { "path": format!("/data/pv-{i:05}") } }
                }))
                .expect("PV");
                pvs.create(&Default::default(), &pv).await.expect("create");
            }
        }));
    }
    for t in tasks {
        t.await.expect("creator");
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let attempts = env_usize("KVOL_ABUSE_ATTEMPTS", 20_000);
    let watchers = env_usize("KVOL_ABUSE_WATCHERS", 1_000);
    let objects = env_usize("KVOL_ABUSE_OBJECTS", 10_000);
    println!("machine: {}", machine());
    let server = util::Server::start();
    let pid = server.pid();
    let target = Arc::new(Target::new(&server));
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig"),
            &Default::default(),
        )
        .await
        .expect("kubeconfig"),
    )
    .expect("client");

    // 1. The flood.
    println!("server idle: RSS {} MiB, {} open descriptors", rss_mib(pid), open_fds(pid));
    let attempted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let flooding = Arc::new(AtomicBool::new(true));
    let (peak_stop, peak) = sample_peak(pid);
    let mut attackers = Vec::new();
    for kind in 0..4 {
        let (target, attempted, refused) = (target.clone(), attempted.clone(), refused.clone());
        attackers.push(tokio::spawn(async move {
            // Each attacker holds up to 2,500 connections, dropping its oldest as it opens more.
            let mut held = std::collections::VecDeque::new();
            while attempted.fetch_add(1, Ordering::Relaxed) < attempts as u64 {
                let conn: Option<Box<dyn std::any::Any + Send>> = if kind == 0 {
                    // TLS done, request headers half-sent.
                    match target.connect().await {
                        Ok(mut tls) => {
                            let _ = tls.write_all(b"GET /api HTTP/1.1\r\nHost: kvol\r\n").await;
                            Some(Box::new(tls))
                        }
                        Err(_) => None,
                    }
                } else {
                    TcpStream::connect(&target.addr).await.ok().map(|s| Box::new(s) as Box<dyn std::any::Any + Send>)
                };
                match conn {
                    Some(c) => held.push_back(c),
                    None => drop(refused.fetch_add(1, Ordering::Relaxed)),
                }
                if held.len() > 2_500 {
                    held.pop_front();
                }
            }
            held.len()
        }));
    }
    let prober = {
        let (target, flooding) = (target.clone(), flooding.clone());
        tokio::spawn(async move {
            let (mut latencies, mut failures) = (Vec::new(), Vec::new());
            while flooding.load(Ordering::Relaxed) {
                match target.timed_get("/api/v1/namespaces").await {
                    Ok(d) => latencies.push(d),
                    Err(e) => failures.push(e),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (latencies, failures)
        })
    };
    let started = Instant::now();
    let mut still_held = 0;
    for a in attackers {
        still_held += a.await.expect("attacker");
    }
    let flood_time = started.elapsed();
    let during_fds = open_fds(pid);
    let during_rss = rss_mib(pid);
    flooding.store(false, Ordering::Relaxed);
    let (mut latencies, failures) = prober.await.expect("prober");
    peak_stop.store(true, Ordering::Relaxed);
    let peak_rss = peak.join().expect("sampler");
    latencies.sort();
    println!(
        "flood: {} connection attempts in {:.1} s ({} refused or failed on the client side), {still_held} still held at the end; the server had {during_fds} descriptors open, RSS {during_rss} MiB (peak {peak_rss} MiB)",
        attempted.load(Ordering::Relaxed).min(attempts as u64),
        flood_time.as_secs_f64(),
        refused.load(Ordering::Relaxed),
    );
    println!(
        "flood: authenticated GET /api/v1/namespaces on a new TLS connection each: {} answered, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} failed{}",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        failures.len(),
        failures.first().map(|f| format!(" (first: {f})")).unwrap_or_default(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("after the flood: RSS {} MiB, {} open descriptors", settled_rss(pid), open_fds(pid));

    // 2. Watches from resourceVersion=0.
    let t = Instant::now();
    create_pvs(&client, objects).await;
    println!("created {objects} PVs in {:.1} s", t.elapsed().as_secs_f64());
    let before = settled_rss(pid);
    let path = "/api/v1/persistentvolumes?watch=1&resourceVersion=0&timeoutSeconds=600".to_string();
    let (peak_stop, peak) = sample_peak(pid);
    let t = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..watchers {
        readers.push(tokio::spawn(watch_reading(target.clone(), path.clone(), objects)));
    }
    let mut complete = 0;
    let mut errors = Vec::new();
    for r in readers {
        match r.await.expect("reader") {
            Ok(_) => complete += 1,
            Err(e) => errors.push(e),
        }
    }
    let elapsed = t.elapsed();
    peak_stop.store(true, Ordering::Relaxed);
    let peak_rss = peak.join().expect("sampler");
    let after = settled_rss(pid);
    println!(
        "{watchers} reading watches from rv=0 on {objects} PVs: {complete} got every object in {:.1} s ({} failed{}); server RSS before {before} MiB, peak {peak_rss} MiB (+{} MiB), after {after} MiB ({:+.1}%)",
        elapsed.as_secs_f64(),
        errors.len(),
        errors.first().map(|e| format!(": {e}")).unwrap_or_default(),
        peak_rss.saturating_sub(before),
        (after as f64 - before as f64) * 100.0 / before.max(1) as f64,
    );
    let before = after;
    let mut idle = Vec::new();
    for _ in 0..watchers {
        let mut conn = target.connect().await.expect("connect");
        conn.write_all(&target.get(&path)).await.expect("watch");
        idle.push(conn);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let holding = settled_rss(pid);
    drop(idle);
    let after = settled_rss(pid);
    println!(
        "{watchers} watches from rv=0 that never read: server RSS before {before} MiB, while held {holding} MiB (+{} MiB), after {after} MiB ({:+.1}%)",
        holding.saturating_sub(before),
        (after as f64 - before as f64) * 100.0 / before.max(1) as f64,
    );

    // 3. Slow watchers and big objects.
    let before = settled_rss(pid);
    let mut stalled = Vec::new();
    for _ in 0..10 {
        let mut conn = target.connect().await.expect("connect");
        conn.write_all(&target.get("/api/v1/namespaces/default/configmaps?watch=1")).await.expect("watch");
        stalled.push(conn);
    }
    let (peak_stop, peak) = sample_peak(pid);
    let value = "x".repeat(900 * 1000);
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client.clone(), "default");
    for i in 0..150 {
        let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": format!("big-{i}") }, "data": { "v": value }
        }))
        .expect("ConfigMap");
        cms.create(&Default::default(), &cm).await.expect("create");
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    let holding = rss_mib(pid);
    peak_stop.store(true, Ordering::Relaxed);
    let peak_rss = peak.join().expect("sampler");
    let closed = server.log().matches("Forcing watcher close due to unresponsiveness").count();
    drop(stalled);
    let after = settled_rss(pid);
    println!(
        "10 watchers that never read, 150 ConfigMaps of 900 KB: server RSS before {before} MiB, peak {peak_rss} MiB (+{} MiB), 8 s later {holding} MiB, after the watchers went {after} MiB; {closed} watchers closed for unresponsiveness",
        peak_rss.saturating_sub(before),
    );
}
