//! Per-call cost of kvol-flex vs the seeds' bash+jq driver, both run through
//! `kvol_flex::Driver::run` (what kvol's flexVolume plugin calls): `init`, and `mount` +
//! `unmount` of a bind-style volume.
//!
//! `cargo test --release -p kvol-flex-driver --test bench -- --ignored --nocapture`
//! (it builds the static kvol-flex first, into target/flex-static, and prints the command;
//! `BENCH_CALLS=<n>` sets the calls per driver and schedule, 200 by default).
//!
//! The seed's script is used unchanged except its one `mount -t nfs` line, which becomes
//! `mount --bind ${SHARE} ${MNTPATH}` (the share is a local directory) since there is no kernel
//! NFS client here. kvol-flex's `loop` driver `mount` does more work (it finds the loop device
//! in sysfs and its global mount in mountinfo before the bind).
//!
//! kvol-flex is measured as shipped: static (musl), built by [`build_static_kvol_flex`]. The
//! glibc build cargo tests everything else with is measured alongside: every glibc program pays
//! ld.so and glibc's start-up (cpuid probing of cache sizes, trapped by the hypervisor on VMs),
//! which is most of an `init` call; bash pays it too.
//!
//! Two schedules, both from this one run, both sharing the machine's load evenly:
//! - **runs**: each driver makes runs of [`RUN`] consecutive calls, drivers taking turns. This
//!   is the usual per-call cost (what `hyperfine` measures): a call after calls of its own kind.
//! - **alternating**: drivers take turns call by call, so every kvol-flex call directly follows
//!   a bash call. Bash's 1.6 ms evicts the caller's and the kernel's exec path from the CPU
//!   caches, and the next call pays to bring them back: a fixed cost of a few dozen
//!   microseconds that weighs on the short call, not on bash.

mod util;

use std::path::Path;
use std::time::{Duration, Instant};

use kvol_flex::{Driver, DriverCall, VolumeSpec};
use util::*;

/// Consecutive calls of one driver in the `runs` schedule.
const RUN: usize = 10;

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("nproc={nproc}, cpu={cpu}, kernel={}", kernel.trim())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Schedule {
    Runs,
    Alternating,
}

/// One driver's unit of work: calls made in order, each timed.
struct Subject<'a> {
    driver: &'a Driver,
    calls: Vec<DriverCall>,
    /// Each call must succeed (all but the floor, whose output is not a status).
    must_succeed: bool,
}

/// Times `n` units of every subject under `schedule`; returns, per subject, per call of its
/// unit, the samples.
async fn measure(subjects: &[Subject<'_>], schedule: Schedule, n: usize) -> Vec<Vec<Vec<Duration>>> {
    let mut samples: Vec<Vec<Vec<Duration>>> =
        subjects.iter().map(|s| vec![Vec::with_capacity(n); s.calls.len()]).collect();
    let per_turn = if schedule == Schedule::Runs { RUN } else { 1 };
    for _ in 0..n.div_ceil(per_turn) {
        for (subject, samples) in subjects.iter().zip(samples.iter_mut()) {
            for _ in 0..per_turn {
                for (call, samples) in subject.calls.iter().zip(samples.iter_mut()) {
                    let t = Instant::now();
                    let result = subject.driver.run(call).await;
                    samples.push(t.elapsed());
                    if let (true, Err(e)) = (subject.must_succeed, result) {
                        panic!("{} {:?}: {e}", subject.driver.executable().display(), call.args());
                    }
                }
            }
        }
    }
    samples
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn mean(v: &[Duration]) -> Duration {
    v.iter().sum::<Duration>() / v.len() as u32
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ratio(seed: Duration, kvol: Duration) -> f64 {
    seed.as_secs_f64() / kvol.as_secs_f64()
}

#[tokio::test]
#[ignore = "benchmark: run with --ignored --nocapture, preferably --release"]
async fn bench_kvol_flex_vs_seed_bash_driver() {
    if skip_unless("bench", &["jq", "findmnt", "mount", "losetup", "mkfs.ext4"]) {
        return;
    }
    let n: usize = std::env::var("BENCH_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let static_exe = match build_static_kvol_flex() {
        Ok(exe) => Some(exe),
        Err(e) => {
            eprintln!("NOTE: the static kvol-flex could not be built ({e}); only the glibc build is measured");
            None
        }
    };
    let node = Node::new();
    // Drivers run with this process's environment, as kvol runs them: no variable per call (a
    // `Command::env` makes std copy the whole environment at every spawn). kvol-flex finds its
    // state dir there. This test binary holds only this test: nothing else reads the
    // environment while it is set.
    std::env::set_var(STATE_DIR_ENV, &node.state);

    // The seed's driver, bind variant.
    let seed = std::fs::read_to_string(SEED_NFS).unwrap();
    let nfs_line = "\tmount -t nfs ${NFS_SERVER}:/${SHARE} ${MNTPATH} &> /dev/null\n";
    assert_eq!(seed.matches(nfs_line).count(), 1);
    let bind = seed.replace(nfs_line, "\tmount --bind ${SHARE} ${MNTPATH} &> /dev/null\n");
    node.install_script("k8s~bind", "bind", &bind);
    let bash = Driver::new(&node.plugin_dir, "k8s~bind");
    let share = node.tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let bash_spec = VolumeSpec {
        name: "test".into(),
        fs_type: "nfs".into(),
        read_only: false,
        options: [
            ("server".to_owned(), "127.0.0.1".to_owned()),
            ("share".to_owned(), share.to_string_lossy().into_owned()),
        ]
        .into(),
    };

    // kvol-flex loop, both builds (vendors kvol and glibc) sharing one state dir: attached and
    // device-mounted once; the benchmark times pod mounts.
    let mut builds: Vec<(&str, &str)> = Vec::new();
    if let Some(exe) = &static_exe {
        node.install_kvol_flex_binary(exe, "kvol", "loop");
        builds.push(("static", "kvol"));
    }
    node.install_kvol_flex_binary(Path::new(KVOL_FLEX), "glibc", "loop");
    builds.push(("glibc", "glibc"));
    let kvols: Vec<Driver> =
        builds.iter().map(|(_, vendor)| Driver::new(&node.plugin_dir, &format!("{vendor}~loop"))).collect();
    let loop_spec = loop_spec(&node, "pv1", "vol1", "ext4");
    let first = &kvols[0];
    let device = ok(first, &DriverCall::attach(&loop_spec, "node1")).await.device;
    let global = node.device_mount_path(&format!("{}/loop", builds[0].1), "pv1");
    ok(first, &DriverCall::mount_device(&global.to_string_lossy(), &device, &loop_spec)).await;

    let floor = Driver::from_executable("floor/echo", "/bin/echo");
    let bash_dir = node.pod_dir("uid-b", "k8s/bind", "test").to_string_lossy().into_owned();
    fn mount_unmount<'a>(driver: &'a Driver, dir: &str, spec: &VolumeSpec) -> Subject<'a> {
        let calls = vec![DriverCall::mount(dir, spec, &pod("bench", "uid-b")), DriverCall::unmount(dir)];
        Subject { driver, calls, must_succeed: true }
    }
    fn init(driver: &Driver) -> Subject<'_> {
        Subject { driver, calls: vec![DriverCall::init()], must_succeed: true }
    }

    // Warm up (page cache, jq's first run).
    measure(&[init(&bash), init(&kvols[0])], Schedule::Alternating, 5).await;

    let init_subjects: Vec<Subject> =
        [&bash].into_iter().chain(&kvols).map(init).chain([Subject { must_succeed: false, ..init(&floor) }]).collect();
    let kvol_dirs: Vec<String> = builds
        .iter()
        .map(|(_, vendor)| node.pod_dir("uid-b", &format!("{vendor}/loop"), "pv1").to_string_lossy().into_owned())
        .collect();
    let mount_subjects: Vec<Subject> = std::iter::once(mount_unmount(&bash, &bash_dir, &bash_spec))
        .chain(kvols.iter().zip(&kvol_dirs).map(|(k, dir)| mount_unmount(k, dir, &loop_spec)))
        .collect();

    println!("FlexVolume driver per-call cost, {n} calls per driver and schedule, through kvol_flex::Driver::run");
    println!("machine: {}", machine());
    for schedule in [Schedule::Runs, Schedule::Alternating] {
        let inits = measure(&init_subjects, schedule, n).await;
        let mounts = measure(&mount_subjects, schedule, n).await;
        assert_eq!(node.mounts().len(), 1, "only the global mount is left: {:?}", node.mounts());
        match schedule {
            Schedule::Runs => println!("\n== schedule: runs of {RUN} calls of one driver, drivers taking turns =="),
            Schedule::Alternating => {
                println!("\n== schedule: alternating call by call (each kvol-flex call right after a bash call) ==")
            }
        }
        for (i, (build, _)) in builds.iter().enumerate() {
            println!("kvol-flex {build}: {}", kvols[i].executable().display());
            println!(
                "{:<16} {:>12} {:>12} {:>7} | {:>12} {:>12} {:>7}",
                "call", "seed median", "kvol median", "ratio", "seed mean", "kvol mean", "ratio"
            );
            let rows = [("init", &inits[0][0], &inits[1 + i][0]), ("mount (bind)", &mounts[0][0], &mounts[1 + i][0])];
            let rows = rows.into_iter().chain([("unmount", &mounts[0][1], &mounts[1 + i][1])]);
            for (name, seed, kvol) in rows {
                let (bm, km) = (median(seed), median(kvol));
                let (ba, ka) = (mean(seed), mean(kvol));
                println!(
                    "{name:<16} {:>10.0}us {:>10.0}us {:>6.1}x | {:>10.0}us {:>10.0}us {:>6.1}x",
                    us(bm),
                    us(km),
                    ratio(bm, km),
                    us(ba),
                    us(ka),
                    ratio(ba, ka)
                );
            }
        }
        println!(
            "spawn floor: /bin/echo (a glibc program): median {:.0}us",
            us(median(&inits[init_subjects.len() - 1][0]))
        );
    }

    ok(first, &DriverCall::unmount_device(&global.to_string_lossy())).await;
    ok(first, &DriverCall::detach("pv1", "node1")).await;
}
