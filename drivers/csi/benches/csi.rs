//! kvol-csi benchmark: NodePublish and NodeUnpublish latency of a staged volume (p50/p99 of each, and
//! of the pair), CreateVolume+DeleteVolume throughput per backend, and the driver's RSS idle and under
//! load. Prints the figures and the machine. Needs root, btrfs-progs and e2fsprogs (skips otherwise).
//!
//! Run: `cargo bench -p kvol-csi-driver --bench csi` (optionally `KVOL_BENCH_ITERS=2000`,
//! `KVOL_BENCH_CREATES=50`, and `KVOL_CSI_BIN=<path>` to measure another build of the driver).
//!
//! The client is one thread on one persistent connection, so what is measured beyond the no-op RPC
//! is the driver. A busy node's mount table (thousands of entries) can be had without touching the
//! host's: run the benchmark under `unshare -m --propagation private` after mounting that many small
//! tmpfs in the new namespace.

#[path = "../tests/util/mod.rs"]
mod util;

use std::time::{Duration, Instant};

use kvol_csi::v1::{DeleteVolumeRequest, NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest};
use util::*;

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("nproc={nproc} model=\"{model}\" kernel={}", kernel.trim())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

struct Figures {
    backend: &'static str,
    noop_p50: Duration,
    publish_p50: Duration,
    publish_p99: Duration,
    unpublish_p50: Duration,
    unpublish_p99: Duration,
    pair_p50: Duration,
    pair_p99: Duration,
    create_delete_per_s: f64,
    rss_idle_kib: u64,
    rss_load_kib: u64,
}

async fn bench_backend(kind: Kind, iters: usize, creates: usize) -> Figures {
    let fx = Fixture::with(kind, &[]).await;
    let pid = fx.pid();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_idle_kib = rss_kib(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss_idle_kib));
    // On its own thread, so that sampling never delays the client's requests.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    // A no-op RPC: the gRPC-over-unix-socket floor.
    let (mut c, mut n) = (fx.controller(), fx.node());
    let mut noop = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        n.node_get_capabilities(kvol_csi::v1::NodeGetCapabilitiesRequest {}).await.unwrap();
        noop.push(start.elapsed());
    }
    noop.sort();

    // NodePublish + NodeUnpublish of a staged volume.
    let id =
        c.create_volume(create_req("bench-pub", 64 * MIB, rwo())).await.unwrap().into_inner().volume.unwrap().volume_id;
    let staging = fx.staging("bench");
    n.node_stage_volume(stage_req(&id, &staging, rwo())).await.unwrap();
    let target = fx.target("bench-pod");
    let mut samples = Vec::with_capacity(iters);
    let mut publishes = Vec::with_capacity(iters);
    let mut unpublishes = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        n.node_publish_volume(publish_req(&id, &staging, &target, rwo(), false)).await.unwrap();
        let published = Instant::now();
        publishes.push(published - start);
        n.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: id.clone(),
            target_path: target.to_str().unwrap().into(),
        })
        .await
        .unwrap();
        unpublishes.push(published.elapsed());
        samples.push(start.elapsed());
    }
    samples.sort();
    publishes.sort();
    unpublishes.sort();
    n.node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: id.clone(),
        staging_target_path: staging.to_str().unwrap().into(),
    })
    .await
    .unwrap();

    // CreateVolume + DeleteVolume, sequentially, as one provisioner worker would.
    let start = Instant::now();
    for i in 0..creates {
        let v = c
            .create_volume(create_req(&format!("bench-{i}"), 16 * MIB, rwo()))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        c.delete_volume(DeleteVolumeRequest { volume_id: v.volume_id, ..Default::default() }).await.unwrap();
    }
    let create_delete_per_s = creates as f64 / start.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    Figures {
        backend: if kind == Kind::Btrfs { "btrfs" } else { "loop (ext4)" },
        noop_p50: percentile(&noop, 0.50),
        publish_p50: percentile(&publishes, 0.50),
        publish_p99: percentile(&publishes, 0.99),
        unpublish_p50: percentile(&unpublishes, 0.50),
        unpublish_p99: percentile(&unpublishes, 0.99),
        pair_p50: percentile(&samples, 0.50),
        pair_p99: percentile(&samples, 0.99),
        create_delete_per_s,
        rss_idle_kib,
        rss_load_kib: peak.load(std::sync::atomic::Ordering::Relaxed),
    }
}

// One client thread, one persistent connection: no client-side thread hops in what is measured.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    require!("mkfs.btrfs", "losetup", "mkfs.ext4");
    let iters: usize = std::env::var("KVOL_BENCH_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let creates: usize = std::env::var("KVOL_BENCH_CREATES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    println!("kvol-csi benchmark on {}", machine());
    println!("publish+unpublish iterations: {iters}; create+delete pairs: {creates}");
    println!(
        "{:<12} {:>14} {:>10} {:>10} {:>10} {:>10} {:>14} {:>14} {:>16} {:>12} {:>14}",
        "backend",
        "no-op RPC p50",
        "pub p50",
        "pub p99",
        "unpub p50",
        "unpub p99",
        "pub+unpub p50",
        "pub+unpub p99",
        "create+del/s",
        "RSS idle",
        "RSS under load"
    );
    for kind in [Kind::Btrfs, Kind::Loop] {
        let f = bench_backend(kind, iters, creates).await;
        println!(
            "{:<12} {:>14} {:>10} {:>10} {:>10} {:>10} {:>14} {:>14} {:>16.1} {:>8} KiB {:>10} KiB",
            f.backend,
            ms(f.noop_p50),
            ms(f.publish_p50),
            ms(f.publish_p99),
            ms(f.unpublish_p50),
            ms(f.unpublish_p99),
            ms(f.pair_p50),
            ms(f.pair_p99),
            f.create_delete_per_s,
            f.rss_idle_kib,
            f.rss_load_kib
        );
    }
}
