//! The whole product driven as a user drives it: one `kvol server` (API server, controllers,
//! attach/detach controller and node agent in one process), kvol's real drivers (`kvol-flex`'s loop
//! driver, the seeds' bash+jq nfs driver, `kvol-csi` on a btrfs pool with `kvol csi-registrar`), and the
//! real kubectl. What is checked is what a user sees: objects through kubectl, and the host (mountinfo,
//! loop devices, btrfs subvolumes, writes into the pod's volume directory).
//!
//! Root only, and they need the storage tools and the driver binaries (`cargo build -p kvol
//! -p kvol-flex-driver -p kvol-csi-driver`); otherwise each test says SKIPPED and why. Every process,
//! mount and loop device a test makes lives under the server's temp dir and is released by Drop guards
//! ([`Server`]'s and [`CsiDriver`]'s), also when the test fails; a failure prints the work dir and the
//! logs of the server and the drivers.

mod util;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use util::{mount_points_under, Server, NODE};

/// How long any one state change may take (the slowest: a CSI operation behind the 1.5 s test delay,
/// retried after a crash).
const DEADLINE: Duration = Duration::from_secs(40);
const MIB: usize = 1 << 20;
const CSI_DRIVER: &str = "csi.kvol.io";

// ---------------------------------------------------------------- skipping

/// Why these tests cannot run here, if they cannot.
fn skip_reason(tools: &[&str], binaries: &[&str]) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (mounts and loop devices)".into());
    }
    if util::kubectl().is_none() {
        return Some("/usr/bin/kubectl is not installed".into());
    }
    for tool in tools {
        if !["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|d| Path::new(d).join(tool).exists()) {
            return Some(format!("{tool} is missing (apt-get install btrfs-progs e2fsprogs util-linux jq)"));
        }
    }
    for binary in binaries {
        if !built(binary).exists() {
            return Some(format!(
                "{} is not built (cargo build -p kvol-flex-driver -p kvol-csi-driver)",
                built(binary).display()
            ));
        }
    }
    None
}

/// Returns from the calling test with a SKIPPED message when it cannot run here.
macro_rules! require {
    (tools: [$($tool:expr),*], binaries: [$($bin:expr),*], $test:expr) => {
        if let Some(reason) = skip_reason(&[$($tool),*], &[$($bin),*]) {
            eprintln!("SKIPPED {}: {reason}", $test);
            return;
        }
    };
}

/// A binary of this workspace's build, beside `kvol`.
fn built(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_kvol")).with_file_name(name)
}

// ---------------------------------------------------------------- kubectl and polling

/// `kubectl ARGS`, expected to succeed; its stdout.
fn kubectl(server: &Server, args: &[&str]) -> String {
    server.kubectl(args).expect("kubectl is installed").stdout()
}

/// `kubectl get KIND NAME -o jsonpath=PATH`; `None` when the object does not exist.
fn get(server: &Server, kind: &str, name: &str, path: &str) -> Option<String> {
    let run = server.kubectl(&["get", kind, name, "-o", &format!("jsonpath={path}")]).expect("kubectl").run();
    if run.success {
        Some(run.stdout)
    } else {
        assert!(run.stderr.contains("NotFound"), "kubectl get {kind} {name}: {}", run.stderr);
        None
    }
}

/// `kubectl apply -f` of `yaml`, written to `<work dir>/<name>.yaml`.
fn apply(server: &Server, name: &str, yaml: &str) {
    let file = server.write(&format!("{name}.yaml"), yaml);
    kubectl(server, &["apply", "-f", &file.to_string_lossy()]);
}

/// Polls `check` every 100 ms until it gives a value; panics after [`DEADLINE`] with `what` and the
/// last observation `check` recorded in `seen`.
#[track_caller]
fn wait_for<T>(what: &str, check: impl FnMut(&mut String) -> Option<T>) -> T {
    wait_for_within(DEADLINE, what, check)
}

/// [`wait_for`] with its own time limit.
#[track_caller]
fn wait_for_within<T>(limit: Duration, what: &str, mut check: impl FnMut(&mut String) -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    let mut seen = String::new();
    loop {
        if let Some(value) = check(&mut seen) {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}; last seen: {seen}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[track_caller]
fn wait_pod_running(server: &Server, pod: &str) -> String {
    wait_for(&format!("pod {pod} to be Running"), |seen| {
        *seen = get(server, "pod", pod, "{.status.phase} {.status.conditions}").unwrap_or_default();
        seen.starts_with("Running").then(|| get(server, "pod", pod, "{.metadata.uid}").unwrap_or_default())
    })
}

/// Deletes a pod without waiting, then waits until the agent has torn it down and it is gone.
#[track_caller]
fn delete_pod(server: &Server, pod: &str) {
    kubectl(server, &["delete", "pod", pod, "--wait=false"]);
    wait_pod_gone(server, pod);
}

#[track_caller]
fn wait_pod_gone(server: &Server, pod: &str) {
    wait_for(&format!("pod {pod} to be gone"), |seen| match get(server, "pod", pod, "{.status.phase}") {
        Some(phase) => {
            *seen = format!("phase {phase}");
            None
        }
        None => Some(()),
    });
}

/// The node's `volumesAttached` names and `volumesInUse`.
fn node_volumes(server: &Server) -> (Vec<String>, Vec<String>) {
    let words = |path: &str| -> Vec<String> {
        get(server, "node", NODE, path).unwrap_or_default().split_whitespace().map(str::to_owned).collect()
    };
    (words("{.status.volumesAttached[*].name}"), words("{.status.volumesInUse[*]}"))
}

// ---------------------------------------------------------------- the host

/// One line of `/proc/self/mountinfo`.
#[derive(Debug)]
struct Mount {
    /// The mounted directory of the source file system (`/volumes/<id>` for a btrfs subvolume).
    root: String,
    point: PathBuf,
    fs_type: String,
    source: String,
}

fn mounts() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            Some(Mount {
                root: fields.get(3)?.replace("\\040", " "),
                point: PathBuf::from(fields.get(4)?.replace("\\040", " ")),
                fs_type: fields.get(dash + 1)?.to_string(),
                source: fields.get(dash + 2)?.to_string(),
            })
        })
        .collect()
}

fn mounts_at(path: &Path) -> Vec<Mount> {
    mounts().into_iter().filter(|m| m.point == path).collect()
}

/// The loop devices backed by `file` (`losetup -j`).
fn loop_devices_of(file: &Path) -> Vec<String> {
    let out = Command::new("losetup").arg("-j").arg(file).output().expect("losetup");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split(':').next()).map(str::to_owned).collect()
}

/// Runs a tool, expecting success; its stdout.
fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256_hex(text: &str) -> String {
    let mut child = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("sha256sum");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("writing to sha256sum");
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("a digest").to_owned()
}

/// Writes `bytes` bytes to `path` and syncs; the OS error if that failed.
fn write_bytes(path: &Path, bytes: usize) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    let chunk = vec![0x5au8; MIB];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        file.write_all(&chunk[..n])?;
        left -= n;
    }
    file.sync_all()
}

/// Puts an executable at `path` the way an installer does (written aside under a dot name, then
/// renamed), so the prober never runs a half-written driver.
fn install_driver_script(path: &Path, source: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("driver dir");
    let tmp = path.with_file_name(".installing");
    std::fs::copy(source, &tmp).expect("copying the driver");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::rename(&tmp, path).expect("renaming the driver into place");
}

// ---------------------------------------------------------------- 1. FlexVolume loop

fn loop_pod(name: &str, pool: &Path) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeName: {NODE}
  containers: [{{name: c, image: busybox, volumeMounts: [{{name: vol, mountPath: /data}}]}}]
  volumes:
  - name: vol
    flexVolume:
      driver: kvol/loop
      fsType: ext4
      options: {{volumeID: img1, size: 64Mi, pool: {}}}
",
        pool.display()
    )
}

/// `kvol-flex install --vendor kvol --driver loop --dir <plugin dir>`.
fn install_loop_driver(server: &Server) {
    let install = Command::new(built("kvol-flex"))
        .args(["install", "--vendor", "kvol", "--driver", "loop", "--dir"])
        .arg(server.plugin_dir())
        .output()
        .expect("kvol-flex install");
    assert!(install.status.success(), "kvol-flex install: {}", String::from_utf8_lossy(&install.stdout));
}

#[test]
fn flexvolume_loop_is_attached_by_the_controller_keeps_its_data_and_is_detached_after_the_last_pod() {
    require!(tools: ["losetup", "mkfs.ext4", "blkid"], binaries: ["kvol-flex"], "flexvolume loop");
    let server = Server::start_with(&[]);
    // Installed while the server runs: the agent and the attach/detach controller find it by inotify.
    install_loop_driver(&server);
    let pool = server.dir().join("pool");
    let image = pool.join("img1.img");
    let root = server.root_dir();
    let device_mount = root.join("plugins/kubernetes.io/flexvolume/kvol/loop/mounts/vol");
    let unique_name = "flexvolume-kvol/loop/vol";

    apply(&server, "p1", &loop_pod("p1", &pool));
    let uid = wait_pod_running(&server, "p1");
    let (attached, in_use) = node_volumes(&server);
    assert!(attached.iter().any(|n| n == unique_name), "volumesAttached {attached:?} lacks {unique_name}");
    assert!(in_use.iter().any(|n| n == unique_name), "volumesInUse {in_use:?} lacks {unique_name}");
    let devices = loop_devices_of(&image);
    assert_eq!(devices.len(), 1, "one loop device backs {}: {devices:?}", image.display());
    let global = mounts_at(&device_mount);
    assert_eq!(global.len(), 1, "one device mount at {}: {global:?}", device_mount.display());
    assert_eq!((global[0].fs_type.as_str(), global[0].source.as_str()), ("ext4", devices[0].as_str()));
    let pod_dir = root.join(format!("pods/{uid}/volumes/kvol~loop/vol"));
    assert_eq!(mounts_at(&pod_dir).len(), 1, "the pod's volume {} is mounted once", pod_dir.display());
    std::fs::write(pod_dir.join("kept"), "written by the first pod\n").expect("writing into the volume");
    let describe = kubectl(&server, &["describe", "pod", "p1"]);
    assert!(
        describe.contains("SuccessfulAttachVolume")
            && describe.contains("attachdetach-controller")
            && describe.contains("AttachVolume.Attach succeeded for volume \"vol\""),
        "kubectl describe pod p1 shows the controller's attach:\n{describe}"
    );

    // Delete and recreate: a new pod sees the same file system.
    delete_pod(&server, "p1");
    apply(&server, "p1", &loop_pod("p1", &pool));
    let uid2 = wait_pod_running(&server, "p1");
    assert_ne!(uid, uid2, "a new pod");
    let pod_dir2 = root.join(format!("pods/{uid2}/volumes/kvol~loop/vol"));
    let kept = std::fs::read_to_string(pod_dir2.join("kept")).expect("the file from the first pod");
    assert_eq!(kept, "written by the first pod\n");

    // After the last pod: unmounted, detached, and the node says so; the data file stays.
    delete_pod(&server, "p1");
    wait_for("the volume to be unmounted and detached", |seen| {
        let (attached, in_use) = node_volumes(&server);
        let left = mount_points_under(&root);
        let devices = loop_devices_of(&image);
        *seen =
            format!("mounts {left:?}, loop devices {devices:?}, volumesAttached {attached:?}, volumesInUse {in_use:?}");
        (left.is_empty() && devices.is_empty() && attached.is_empty() && in_use.is_empty()).then_some(())
    });
    assert!(image.exists(), "detach keeps the data file {}", image.display());
    assert!(!root.join(format!("pods/{uid2}")).exists(), "the pod's directory is removed");
}

#[test]
fn flexvolume_loop_is_attached_by_the_agent_itself_when_controller_attach_detach_is_off() {
    require!(tools: ["losetup", "mkfs.ext4", "blkid"], binaries: ["kvol-flex"], "flexvolume loop, agent attach");
    let server = Server::start_with(&["--enable-controller-attach-detach=false"]);
    install_loop_driver(&server);
    let pool = server.dir().join("pool");
    let image = pool.join("img1.img");
    let root = server.root_dir();

    apply(&server, "p1", &loop_pod("p1", &pool));
    let uid = wait_pod_running(&server, "p1");
    assert_eq!(loop_devices_of(&image).len(), 1, "the agent attached {}", image.display());
    let pod_dir = root.join(format!("pods/{uid}/volumes/kvol~loop/vol"));
    assert_eq!(mounts_at(&pod_dir).len(), 1, "the pod's volume {} is mounted once", pod_dir.display());
    let managed =
        get(&server, "node", NODE, r"{.metadata.annotations.volumes\.kubernetes\.io/controller-managed-attach-detach}");
    assert_ne!(managed.as_deref(), Some("true"), "the node does not ask the controller to attach");
    // The agent attached and mounted without waiting for a report (only a controller's attach needs one):
    // its next node status write (every 500 ms) lists the device.
    let attached = wait_for("the node to report the device in use", |seen| {
        let (attached, in_use) = node_volumes(&server);
        *seen = format!("volumesAttached {attached:?}, volumesInUse {in_use:?}");
        (in_use == ["flexvolume-kvol/loop/vol"]).then_some(attached)
    });
    assert!(attached.is_empty(), "volumesAttached is the controller's, and it attached nothing: {attached:?}");
    let describe = kubectl(&server, &["describe", "pod", "p1"]);
    assert!(!describe.contains("SuccessfulAttachVolume"), "the controller attached nothing:\n{describe}");

    delete_pod(&server, "p1");
    wait_for("the agent to unmount and detach", |seen| {
        let left = mount_points_under(&root);
        let devices = loop_devices_of(&image);
        *seen = format!("mounts {left:?}, loop devices {devices:?}");
        (left.is_empty() && devices.is_empty()).then_some(())
    });
}

/// A FlexVolume driver (bash) without `supportsMetrics`: `mount` puts an 8 MiB tmpfs at the pod's dir.
const TMPFS_DRIVER: &str = r#"#!/bin/bash
case "$1" in
  init) echo '{"status":"Success","capabilities":{"attach":false}}' ;;
  mount) mkdir -p "$2" && mount -t tmpfs -o size=8m tmpfs "$2" && echo '{"status":"Success"}' \
           || echo '{"status":"Failure","message":"tmpfs mount failed"}' ;;
  unmount) umount "$2" && echo '{"status":"Success"}' || echo '{"status":"Failure","message":"umount failed"}' ;;
  *) echo '{"status":"Not supported"}' ;;
esac
"#;

/// The pod's entry in the node's `/stats/summary` read through the API server's node proxy, as
/// `kubectl get --raw` reads it.
fn pod_stats(server: &Server, pod: &str) -> Option<serde_json::Value> {
    let raw = server.kubectl(&["get", "--raw", &format!("/api/v1/nodes/{NODE}/proxy/stats/summary")])?.run();
    let summary: serde_json::Value = serde_json::from_str(&raw.stdout).ok()?;
    summary["pods"].as_array()?.iter().find(|p| p["podRef"]["name"] == pod).cloned()
}

#[test]
fn a_flexvolume_drivers_supports_metrics_puts_its_volume_in_the_nodes_stats_summary_and_no_other() {
    require!(tools: ["losetup", "mkfs.ext4", "blkid"], binaries: ["kvol-flex"], "flexvolume stats summary");
    let server = Server::start_with(&[]);
    install_loop_driver(&server);
    let tmpfs = server.dir().join("tmpfs-driver");
    std::fs::write(&tmpfs, TMPFS_DRIVER).expect("writing the tmpfs driver");
    install_driver_script(&server.plugin_dir().join("test~tmpfs/tmpfs"), &tmpfs);
    let pool = server.dir().join("pool");
    // kvol/loop answers init with supportsMetrics: true; test/tmpfs leaves kubelet's default, false.
    let pod = loop_pod("p1", &pool).replace(
        "volumeMounts: [{name: vol, mountPath: /data}]",
        "volumeMounts: [{name: vol, mountPath: /data}, {name: scratch, mountPath: /scratch}]",
    ) + "  - name: scratch\n    flexVolume: {driver: test/tmpfs}\n";
    apply(&server, "p1", &pod);
    let uid = wait_pod_running(&server, "p1");
    let pod_dir = server.root_dir().join(format!("pods/{uid}/volumes/kvol~loop/vol"));
    assert_eq!(mounts_at(&server.root_dir().join(format!("pods/{uid}/volumes/test~tmpfs/scratch"))).len(), 1);

    // The agent measures every 10 s; the summary then lists the loop volume with statfs figures.
    let number = |v: &serde_json::Value, key: &str| v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"));
    let first = wait_for_within(Duration::from_secs(40), "p1's volume in the stats summary", |seen| {
        let stats = pod_stats(&server, "p1")?;
        *seen = stats.to_string();
        stats["volume"].as_array().cloned()
    });
    assert_eq!(first.len(), 1, "only the driver with supportsMetrics is measured: {first:?}");
    let vol = &first[0];
    assert_eq!(vol["name"], "vol");
    assert!(vol.get("pvcRef").is_none(), "an inline volume has no claim: {vol}");
    let (capacity, used, available) =
        (number(vol, "capacityBytes"), number(vol, "usedBytes"), number(vol, "availableBytes"));
    assert!((40 << 20..=64 << 20).contains(&capacity), "ext4 on 64 MiB: capacity {capacity}");
    assert!(used > 0 && available <= capacity - used, "{vol}");
    assert_eq!(number(vol, "inodes"), number(vol, "inodesUsed") + number(vol, "inodesFree"));
    assert!(vol["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{vol}");
    let stats = pod_stats(&server, "p1").expect("p1's stats");
    assert_eq!(
        (stats["podRef"]["namespace"].as_str(), stats["podRef"]["uid"].as_str()),
        (Some("default"), Some(&*uid))
    );

    // 8 MiB written through the pod's volume shows in the next measurement.
    write_bytes(&pod_dir.join("eight-mib"), 8 << 20).expect("writing into the volume");
    wait_for_within(Duration::from_secs(40), "the 8 MiB in usedBytes", |seen| {
        let vol = pod_stats(&server, "p1")?["volume"][0].clone();
        *seen = vol.to_string();
        (vol["usedBytes"].as_u64()? >= used + (8 << 20)).then_some(())
    });

    delete_pod(&server, "p1");
    wait_for("the volumes to be torn down", |seen| {
        let left = mount_points_under(&server.root_dir());
        *seen = format!("{left:?}");
        left.is_empty().then_some(())
    });
    assert!(pod_stats(&server, "p1").is_none(), "a deleted pod leaves the summary");
}

// ---------------------------------------------------------------- 2. the seeds' nfs driver

/// The seed driver's `mount -t nfs 172.16.0.25:/dws_nas_scratch` must fail promptly, as it does on a host
/// without an NFS client in its kernel or without a route to that address; where the mount hangs instead,
/// this test times out waiting for the driver's message.
#[test]
fn the_seeds_nginx_nfs_pod_gets_failed_mount_with_the_seed_drivers_message_and_nothing_mounted() {
    require!(tools: ["jq", "bash", "findmnt"], binaries: [], "seeds' nfs driver");
    let server = Server::start_with(&[]);
    let seed_driver = util::workspace_root().join("drivers/flex/tests/fixtures/seed-nfs");
    install_driver_script(&server.plugin_dir().join("k8s~nfs/nfs"), &seed_driver);
    let seed = std::fs::read_to_string(util::seed("000-01")).expect("the seed pod");
    assert!(seed.contains("\nspec:\n"), "the seed has a spec: {seed}");
    apply(&server, "nginx-nfs", &seed.replacen("\nspec:\n", &format!("\nspec:\n  nodeName: {NODE}\n"), 1));

    let uid = wait_for("the pod's uid", |_| get(&server, "pod", "nginx-nfs", "{.metadata.uid}"));
    let dir = server.root_dir().join(format!("pods/{uid}/volumes/k8s~nfs/test"));
    let wanted = format!("Failed to mount 172.16.0.25:dws_nas_scratch at {}", dir.display());
    let describe = wait_for("a FailedMount event with the driver's message", |seen| {
        *seen = kubectl(&server, &["describe", "pod", "nginx-nfs"]);
        seen.lines().any(|l| l.contains("FailedMount") && l.contains(&wanted)).then(|| seen.clone())
    });
    assert!(describe.contains("MountVolume.SetUp failed for volume \"test\""), "{describe}");
    assert_eq!(get(&server, "pod", "nginx-nfs", "{.status.phase}").as_deref(), Some("Pending"));
    let left = mount_points_under(server.dir());
    assert!(left.is_empty(), "nothing is mounted: {left:?}");
}

// ---------------------------------------------------------------- CSI fixture

/// A btrfs pool (a 2 GiB sparse file, loop-mounted at `<server dir>/pool`), `kvol-csi` serving it and
/// `kvol csi-registrar` registering it with the server's agent. Both processes are killed on drop,
/// before the server (declared last) unmounts the pool and detaches its loop device.
struct CsiDriver {
    /// `btrfs` (a pool on a loop-mounted btrfs image) or `loop` (a plain directory of volume files).
    backend: &'static str,
    driver: Option<Child>,
    registrar: Option<Child>,
    env: Vec<(String, String)>,
    socket: PathBuf,
    pool: PathBuf,
    image: PathBuf,
    server: Server,
}

impl CsiDriver {
    /// Starts the full server, the pool, the driver (with `env`) and the registrar, and waits until the
    /// agent has registered the driver (the CSINode lists it).
    fn start(env: &[(&str, &str)]) -> CsiDriver {
        CsiDriver::start_backend("btrfs", env)
    }

    fn start_backend(backend: &'static str, env: &[(&str, &str)]) -> CsiDriver {
        CsiDriver::start_backend_with(backend, env, &[])
    }

    /// As [`CsiDriver::start_backend`], with `server_args` for `kvol server`.
    fn start_backend_with(backend: &'static str, env: &[(&str, &str)], server_args: &[&str]) -> CsiDriver {
        let server = Server::start_with(server_args);
        let dir = server.dir().to_path_buf();
        let mut csi = CsiDriver {
            backend,
            driver: None,
            registrar: None,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            socket: dir.join("csi/csi.sock"),
            pool: dir.join("pool"),
            image: dir.join("btrfs.img"),
            server,
        };
        std::fs::create_dir_all(&csi.pool).expect("pool dir");
        std::fs::create_dir_all(dir.join("csi")).expect("socket dir");
        if backend == "btrfs" {
            let image = csi.image.to_string_lossy().into_owned();
            sh("truncate", &["-s", "2G", &image]);
            sh("mkfs.btrfs", &["-q", &image]);
            sh("mount", &["-o", "loop", &image, &csi.pool.to_string_lossy()]);
        }
        csi.start_driver();
        let registry = csi.server.root_dir().join("plugins_registry");
        std::fs::create_dir_all(&registry).expect("plugins_registry");
        let log = csi.log_file("registrar.log");
        let socket = csi.socket.to_string_lossy().into_owned();
        csi.registrar = Some(
            Command::new(env!("CARGO_BIN_EXE_kvol"))
                .args(["csi-registrar", "--csi-address", &socket, "--kubelet-registration-path", &socket])
                .arg("--plugin-registration-path")
                .arg(&registry)
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log)
                .spawn()
                .expect("spawning kvol csi-registrar"),
        );
        wait_for("the agent to register the CSI driver (CSINode)", |seen| {
            *seen = get(&csi.server, "csinode", NODE, "{.spec.drivers[*].name}").unwrap_or_default();
            seen.split_whitespace().any(|d| d == CSI_DRIVER).then_some(())
        });
        csi
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        let path = self.server.dir().join(name);
        std::fs::OpenOptions::new().create(true).append(true).open(path).expect("log file")
    }

    /// Starts (or restarts) `kvol-csi` and waits until its socket answers.
    fn start_driver(&mut self) {
        let log = self.log_file("csi.log");
        let mut cmd = Command::new(built("kvol-csi"));
        cmd.arg("--endpoint")
            .arg(format!("unix://{}", self.socket.display()))
            .args(["--nodeid", NODE, "--backend", self.backend, "--pool"])
            .arg(&self.pool)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.driver = Some(cmd.spawn().expect("spawning kvol-csi"));
        wait_for("kvol-csi to listen", |seen| {
            if let Some(status) = self.driver.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("kvol-csi exited with {status}:\n{}", self.logs());
            }
            *seen = format!("no connection at {}", self.socket.display());
            std::os::unix::net::UnixStream::connect(&self.socket).ok().map(drop)
        });
    }

    /// `kill -9` of the driver, as a crash.
    fn kill_driver(&mut self) {
        if let Some(mut child) = self.driver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn registrar_running(&mut self) -> bool {
        self.registrar.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn logs(&self) -> String {
        let tail = |name: &str| {
            let text = std::fs::read_to_string(self.server.dir().join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
            lines.join("\n")
        };
        format!("--- kvol-csi log (tail):\n{}\n--- registrar log (tail):\n{}", tail("csi.log"), tail("registrar.log"))
    }

    /// The btrfs subvolumes of the pool (`btrfs subvolume list`), one path per entry.
    fn subvolumes(&self) -> Vec<String> {
        sh("btrfs", &["subvolume", "list", &self.pool.to_string_lossy()])
            .lines()
            .filter_map(|l| l.split(" path ").nth(1))
            .map(str::to_owned)
            .collect()
    }

    /// Stops the driver and the registrar, unmounts the pool, and checks that nothing the test made is
    /// left on the host: no mount under the work dir and no loop device for the pool's image.
    fn shut_down_and_check_clean(&mut self) {
        self.kill_driver();
        if let Some(mut child) = self.registrar.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let left: Vec<PathBuf> =
            mount_points_under(self.server.dir()).into_iter().filter(|p| *p != self.pool).collect();
        assert!(left.is_empty(), "mounts left besides the pool: {left:?}");
        if self.backend != "btrfs" {
            return;
        }
        sh("umount", &[&self.pool.to_string_lossy()]);
        wait_for("the pool's loop device to go (autoclear)", |seen| {
            let devices = loop_devices_of(&self.image);
            *seen = format!("{devices:?}");
            devices.is_empty().then_some(())
        });
        let left = mount_points_under(self.server.dir());
        assert!(left.is_empty(), "mounts left: {left:?}");
    }
}

impl Drop for CsiDriver {
    fn drop(&mut self) {
        self.kill_driver();
        if let Some(mut child) = self.registrar.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        // The server's own drop follows: it unmounts everything under its dir and detaches loop devices.
    }
}

const STORAGE_CLASS_AND_CLAIM: &str = "\
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: kvol-btrfs}
provisioner: csi.kvol.io
allowVolumeExpansion: true
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: c1, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: kvol-btrfs
  resources: {requests: {storage: 64Mi}}
";

fn claim_pod(name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeName: {NODE}
  containers: [{{name: c, image: busybox, volumeMounts: [{{name: data, mountPath: /data}}]}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: c1}}
"
    )
}

/// The claim `c1` once Bound: its PV's name and volume handle.
struct Bound {
    pv: String,
    handle: String,
}

#[track_caller]
fn wait_bound(server: &Server) -> Bound {
    let pv = wait_for("claim c1 to be Bound", |seen| {
        *seen = get(server, "pvc", "c1", "{.status.phase} {.spec.volumeName}").unwrap_or_default();
        let (phase, pv) = seen.split_once(' ')?;
        (phase == "Bound" && !pv.is_empty()).then(|| pv.to_owned())
    });
    let driver = get(server, "pv", &pv, "{.spec.csi.driver}").expect("the PV");
    assert_eq!(driver, CSI_DRIVER, "PV {pv} is the driver's");
    let handle = get(server, "pv", &pv, "{.spec.csi.volumeHandle}").expect("the PV");
    assert!(!handle.is_empty(), "PV {pv} has a volume handle");
    Bound { pv, handle }
}

/// Kubelet's staging path of a CSI volume.
fn staging_path(root: &Path, handle: &str) -> PathBuf {
    root.join(format!("plugins/kubernetes.io/csi/{CSI_DRIVER}/{}/globalmount", sha256_hex(handle)))
}

fn publish_path(root: &Path, pod_uid: &str, pv: &str) -> PathBuf {
    root.join(format!("pods/{pod_uid}/volumes/kubernetes.io~csi/{pv}/mount"))
}

/// Every mount of the volume's subvolume under the root dir.
fn volume_mounts(root: &Path, handle: &str) -> Vec<PathBuf> {
    mounts()
        .into_iter()
        .filter(|m| m.fs_type == "btrfs" && m.root.ends_with(&format!("/{handle}")) && m.point.starts_with(root))
        .map(|m| m.point)
        .collect()
}

/// Pod Running with the volume staged once and published once, at kubelet's paths.
#[track_caller]
fn assert_staged_and_published_once(csi: &CsiDriver, pod_uid: &str, volume: &Bound) {
    let root = csi.server.root_dir();
    let staging = staging_path(&root, &volume.handle);
    let publish = publish_path(&root, pod_uid, &volume.pv);
    let mut found = volume_mounts(&root, &volume.handle);
    found.sort();
    let mut wanted = vec![staging, publish];
    wanted.sort();
    assert_eq!(found, wanted, "exactly one staging and one publish mount of subvolume {}", volume.handle);
}

#[track_caller]
fn wait_detached(server: &Server, volume: &Bound) {
    let root = server.root_dir();
    wait_for("unpublish, unstage and detach", |seen| {
        let attachments = kubectl(server, &["get", "volumeattachments", "-o", "name"]);
        let (attached, in_use) = node_volumes(server);
        let left = volume_mounts(&root, &volume.handle);
        *seen = format!(
            "mounts {left:?}, VolumeAttachments [{}], volumesAttached {attached:?}, volumesInUse {in_use:?}",
            attachments.trim()
        );
        (left.is_empty() && attachments.trim().is_empty() && attached.is_empty() && in_use.is_empty()).then_some(())
    });
}

/// Deletes the claim and waits until the PV and the btrfs subvolume are gone (DeleteVolume).
#[track_caller]
fn delete_claim(csi: &CsiDriver, volume: &Bound) {
    kubectl(&csi.server, &["delete", "pvc", "c1", "--wait=false"]);
    wait_for("the PV and the subvolume to be deleted", |seen| {
        let pv = get(&csi.server, "pv", &volume.pv, "{.status.phase}");
        let subvolumes = csi.subvolumes();
        *seen = format!("PV {pv:?}, subvolumes {subvolumes:?}");
        (pv.is_none() && !subvolumes.iter().any(|s| s.ends_with(&volume.handle))).then_some(())
    });
}

// ---------------------------------------------------------------- 3. CSI btrfs

#[test]
fn csi_btrfs_provisions_attaches_stages_publishes_enforces_the_quota_expands_and_deletes() {
    require!(
        tools: ["mkfs.btrfs", "btrfs", "losetup", "truncate", "sha256sum"],
        binaries: ["kvol-csi"],
        "CSI btrfs flow"
    );
    let csi = CsiDriver::start(&[]);
    let server = &csi.server;
    let root = server.root_dir();

    // 1. Provisioning: a Bound claim, a PV, a subvolume.
    apply(server, "claim", STORAGE_CLASS_AND_CLAIM);
    let volume = wait_bound(server);
    assert_eq!(get(server, "pv", &volume.pv, "{.spec.capacity.storage}").as_deref(), Some("64Mi"));
    let subvolumes = csi.subvolumes();
    assert!(
        subvolumes.iter().any(|s| s.ends_with(&volume.handle)),
        "a subvolume for {}: {subvolumes:?}",
        volume.handle
    );

    // 2. A pod: attached through a VolumeAttachment, staged and published at kubelet's paths.
    apply(server, "p1", &claim_pod("p1"));
    let uid = wait_pod_running(server, "p1");
    let attachments = kubectl(
        server,
        &["get", "volumeattachments", "-o", "jsonpath={range .items[*]}{.spec.attacher} {.spec.source.persistentVolumeName} {.spec.nodeName} {.status.attached}{\"\\n\"}{end}"],
    );
    assert_eq!(attachments, format!("{CSI_DRIVER} {} {NODE} true\n", volume.pv));
    let unique_name = format!("kubernetes.io/csi/{CSI_DRIVER}^{}", volume.handle);
    let (attached, in_use) = node_volumes(server);
    assert_eq!((attached, in_use), (vec![unique_name.clone()], vec![unique_name]));
    assert_staged_and_published_once(&csi, &uid, &volume);

    // 3. The capacity is enforced: 100 MiB do not fit into 64 MiB.
    let publish = publish_path(&root, &uid, &volume.pv);
    let overfill = write_bytes(&publish.join("big"), 100 * MIB);
    assert_eq!(
        overfill.as_ref().map_err(|e| e.raw_os_error()),
        Err(Some(nix::errno::Errno::EDQUOT as i32)),
        "writing 100 MiB into a 64 MiB volume fails with EDQUOT: {overfill:?}"
    );
    std::fs::remove_file(publish.join("big")).expect("removing the partial file");
    std::fs::write(publish.join("kept"), "from p1\n").expect("writing into the volume");
    // NodeGetVolumeStats' figures reach the node's stats summary, with the claim the volume came from.
    let stats = wait_for_within(Duration::from_secs(40), "p1's CSI volume in the stats summary", |seen| {
        let stats = pod_stats(server, "p1")?;
        *seen = stats.to_string();
        stats["volume"].as_array()?.first().cloned()
    });
    assert_eq!(stats["name"], "data");
    assert_eq!(stats["pvcRef"], serde_json::json!({"name": "c1", "namespace": "default"}));
    assert_eq!(stats["capacityBytes"].as_u64(), Some(64 * MIB as u64), "the quota: {stats}");

    // 4. Pod deleted: unpublished, unstaged, detached.
    delete_pod(server, "p1");
    wait_detached(server, &volume);
    assert!(!root.join(format!("pods/{uid}")).exists(), "the pod's directory is removed");

    // 5. Expansion: the claim's capacity grows, and so does what fits.
    kubectl(server, &["patch", "pvc", "c1", "-p", r#"{"spec":{"resources":{"requests":{"storage":"128Mi"}}}}"#]);
    wait_for("the claim and the PV to have 128Mi", |seen| {
        let claim = get(server, "pvc", "c1", "{.status.capacity.storage}").unwrap_or_default();
        let pv = get(server, "pv", &volume.pv, "{.spec.capacity.storage}").unwrap_or_default();
        *seen = format!("claim {claim}, PV {pv}");
        (claim == "128Mi" && pv == "128Mi").then_some(())
    });
    apply(server, "p2", &claim_pod("p2"));
    let uid2 = wait_pod_running(server, "p2");
    assert_staged_and_published_once(&csi, &uid2, &volume);
    let publish2 = publish_path(&root, &uid2, &volume.pv);
    assert_eq!(std::fs::read_to_string(publish2.join("kept")).expect("p1's file"), "from p1\n");
    write_bytes(&publish2.join("big"), 100 * MIB).expect("100 MiB fit after the expansion to 128 MiB");

    // 6. Pod and claim deleted: the PV and the subvolume are gone.
    delete_pod(server, "p2");
    wait_detached(server, &volume);
    delete_claim(&csi, &volume);
    let left = mount_points_under(&root);
    assert!(left.is_empty(), "mounts left under the root dir: {left:?}");
}

/// With `--enable-controller-attach-detach=false` the agent attaches a CSI volume itself, as kubelet's
/// `csi_attacher.go` does: it creates the VolumeAttachment, the driver's external attacher attaches it, and
/// after the last pod the agent deletes it and waits until it is gone. The controller attaches nothing.
#[test]
fn csi_btrfs_is_attached_by_the_agent_itself_when_controller_attach_detach_is_off() {
    require!(
        tools: ["mkfs.btrfs", "btrfs", "losetup", "truncate", "sha256sum"],
        binaries: ["kvol-csi"],
        "CSI btrfs, agent attach"
    );
    let csi = CsiDriver::start_backend_with("btrfs", &[], &["--enable-controller-attach-detach=false"]);
    let server = &csi.server;
    let root = server.root_dir();
    apply(server, "claim", STORAGE_CLASS_AND_CLAIM);
    let volume = wait_bound(server);

    apply(server, "p1", &claim_pod("p1"));
    let uid = wait_pod_running(server, "p1");
    let attachments = kubectl(
        server,
        &["get", "volumeattachments", "-o", "jsonpath={range .items[*]}{.metadata.name} {.spec.attacher} {.spec.source.persistentVolumeName} {.spec.nodeName} {.status.attached}{\"\\n\"}{end}"],
    );
    let name = format!("csi-{}", sha256_hex(&format!("{}{CSI_DRIVER}{NODE}", volume.handle)));
    assert_eq!(attachments, format!("{name} {CSI_DRIVER} {} {NODE} true\n", volume.pv));
    assert_staged_and_published_once(&csi, &uid, &volume);
    let managed =
        get(server, "node", NODE, r"{.metadata.annotations.volumes\.kubernetes\.io/controller-managed-attach-detach}");
    assert_ne!(managed.as_deref(), Some("true"), "the node does not ask the controller to attach");
    let unique_name = format!("kubernetes.io/csi/{CSI_DRIVER}^{}", volume.handle);
    let (attached, in_use) = node_volumes(server);
    assert!(attached.is_empty(), "volumesAttached is the controller's, and it attached nothing: {attached:?}");
    assert_eq!(in_use, [unique_name]);
    let describe = kubectl(server, &["describe", "pod", "p1"]);
    assert!(!describe.contains("SuccessfulAttachVolume"), "the controller attached nothing:\n{describe}");
    assert!(!describe.contains("FailedMount"), "the agent attached without a failure:\n{describe}");

    delete_pod(server, "p1");
    wait_detached(server, &volume);
    assert!(!root.join(format!("pods/{uid}")).exists(), "the pod's directory is removed");
    delete_claim(&csi, &volume);
    let left = mount_points_under(&root);
    assert!(left.is_empty(), "mounts left under the root dir: {left:?}");
}

// ---------------------------------------------------------------- 4. crash convergence

#[test]
fn csi_volumes_converge_after_kill_9_of_the_server_in_stage_and_teardown_and_of_the_driver_in_publish() {
    require!(
        tools: ["mkfs.btrfs", "btrfs", "losetup", "truncate", "sha256sum"],
        binaries: ["kvol-csi"],
        "CSI crash convergence"
    );
    // Every mutating CSI call holds for 1.5 s after taking its volume's guard, so a kill lands while a
    // NodeStage, NodeUnpublish or NodePublish is in flight.
    let mut csi = CsiDriver::start(&[("KVOL_CSI_TEST_OP_DELAY_MS", "1500")]);
    let root = csi.server.root_dir();
    apply(&csi.server, "claim", STORAGE_CLASS_AND_CLAIM);
    let volume = wait_bound(&csi.server);
    let staging = staging_path(&root, &volume.handle);

    // kill -9 of the server while NodeStage is in flight: vol_data.json is written before NodeStage, the
    // mount comes 1.5 s later.
    apply(&csi.server, "p1", &claim_pod("p1"));
    wait_for("NodeStage to be in flight", |seen| {
        let mounted = !mounts_at(&staging).is_empty();
        assert!(!mounted, "staged before the kill could land; the test delay did not hold NodeStage");
        *seen = format!("no {}", staging.with_file_name("vol_data.json").display());
        staging.with_file_name("vol_data.json").exists().then_some(())
    });
    csi.server.restart();
    let uid = wait_pod_running(&csi.server, "p1");
    assert_staged_and_published_once(&csi, &uid, &volume);
    let publish = publish_path(&root, &uid, &volume.pv);
    std::fs::write(publish.join("kept"), "from p1\n").expect("write");

    // kill -9 of the server while the pod's teardown (NodeUnpublish) is in flight: the restarted agent
    // finds the mount on disk and the pod marked for deletion, finishes the teardown and deletes the pod,
    // and the controller detaches.
    kubectl(&csi.server, &["delete", "pod", "p1", "--wait=false"]);
    wait_for("p1's teardown to begin", |seen| {
        assert!(!mounts_at(&publish).is_empty(), "unpublished before the kill could land");
        *seen = get(&csi.server, "pod", "p1", "{.metadata.deletionTimestamp}").unwrap_or_default();
        (!seen.is_empty()).then_some(())
    });
    // Time for the agent to send NodeUnpublish, which the driver then holds for 1.5 s (the call leaves no
    // trace to poll for before its unmount).
    std::thread::sleep(Duration::from_millis(300));
    assert!(!mounts_at(&publish).is_empty(), "unpublished before the kill could land");
    csi.server.restart();
    wait_pod_gone(&csi.server, "p1");
    wait_detached(&csi.server, &volume);
    assert!(!root.join(format!("pods/{uid}")).exists(), "p1's directory is removed");

    // kill -9 of the driver while NodePublish is in flight, then the driver restarts on the same socket.
    // The registrar does not notice (it is not a client of the driver after start-up) and the agent's
    // registration stays: its next call reaches the new process.
    apply(&csi.server, "p2", &claim_pod("p2"));
    let uid2 = wait_for("p2's uid", |_| get(&csi.server, "pod", "p2", "{.metadata.uid}"));
    let publish2 = publish_path(&root, &uid2, &volume.pv);
    wait_for("NodePublish to be in flight", |seen| {
        assert!(mounts_at(&publish2).is_empty(), "published before the kill could land");
        *seen = format!("staging mounted: {}", !mounts_at(&staging).is_empty());
        (!mounts_at(&staging).is_empty() && publish2.with_file_name("vol_data.json").exists()).then_some(())
    });
    csi.kill_driver();
    csi.start_driver();
    wait_pod_running(&csi.server, "p2");
    assert_staged_and_published_once(&csi, &uid2, &volume);
    assert_eq!(std::fs::read_to_string(publish2.join("kept")).expect("p1's file"), "from p1\n");
    assert!(csi.registrar_running(), "the registrar survives the driver's crash:\n{}", csi.logs());
    let drivers = get(&csi.server, "csinode", NODE, "{.spec.drivers[*].name}").unwrap_or_default();
    assert_eq!(drivers, CSI_DRIVER, "the driver stays registered");

    // Everything deleted: nothing left on the host.
    delete_pod(&csi.server, "p2");
    wait_detached(&csi.server, &volume);
    delete_claim(&csi, &volume);
    csi.shut_down_and_check_clean();
}

// ---------------------------------------------------------------- regressions of bugs found here

/// The in-process CSI provisioner retries a failed DeleteVolume as external-provisioner does
/// (`--retry-interval-start=1s`, doubling up to 5 min), not with the provisioner library's 15 s. A claim
/// deleted together with its pod is released while the VolumeAttachment still exists, so the first
/// deletion is refused ("is still attached to node"); the volume must go within seconds of the detach.
#[test]
fn a_claim_deleted_with_its_pod_has_its_volume_deleted_within_seconds_of_the_detach() {
    require!(
        tools: ["mkfs.btrfs", "btrfs", "losetup", "truncate", "sha256sum"],
        binaries: ["kvol-csi"],
        "CSI deletion retry interval"
    );
    let csi = CsiDriver::start(&[]);
    let server = &csi.server;
    apply(server, "claim", STORAGE_CLASS_AND_CLAIM);
    let volume = wait_bound(server);
    apply(server, "p1", &claim_pod("p1"));
    wait_pod_running(server, "p1");
    kubectl(server, &["delete", "pod", "p1", "--wait=false"]);
    kubectl(server, &["delete", "pvc", "c1", "--wait=false"]);
    wait_pod_gone(server, "p1");
    wait_detached(server, &volume);
    wait_for_within(Duration::from_secs(5), "the PV and the subvolume to be deleted after the detach", |seen| {
        let pv = get(server, "pv", &volume.pv, "{.status.phase}");
        let subvolumes = csi.subvolumes();
        *seen = format!("PV {pv:?}, subvolumes {subvolumes:?}");
        (pv.is_none() && !subvolumes.iter().any(|s| s.ends_with(&volume.handle))).then_some(())
    });
}

/// The in-process CSI attacher's detach removes the VolumeAttachment's finalizer from the object its status
/// write returned. It used the object read before that write, whose resourceVersion precondition always
/// failed (409), so every detach retried after a backoff and called ControllerUnpublishVolume twice.
#[test]
fn a_csi_detach_removes_the_attachment_finalizer_without_a_conflict_and_a_retry() {
    require!(
        tools: ["mkfs.btrfs", "btrfs", "losetup", "truncate", "sha256sum"],
        binaries: ["kvol-csi"],
        "CSI detach finalizer"
    );
    let csi = CsiDriver::start(&[]);
    let server = &csi.server;
    apply(server, "claim", STORAGE_CLASS_AND_CLAIM);
    let volume = wait_bound(server);
    apply(server, "p1", &claim_pod("p1"));
    wait_pod_running(server, "p1");
    delete_pod(server, "p1");
    wait_detached(server, &volume);
    let retries: Vec<String> = server
        .log()
        .lines()
        .filter(|l| l.contains("removing a finalizer from VolumeAttachment"))
        .map(str::to_owned)
        .collect();
    assert!(retries.is_empty(), "the detach failed and was retried:\n{}", retries.join("\n"));
}

// ---------------------------------------------------------------- 3b. CSI loop, raw block

const BLOCK_CLASS_AND_CLAIM: &str = "\
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: kvol-loop}
provisioner: csi.kvol.io
allowVolumeExpansion: true
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: c1, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  volumeMode: Block
  storageClassName: kvol-loop
  resources: {requests: {storage: 64Mi}}
";

fn block_pod(name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeName: {NODE}
  containers: [{{name: c, image: busybox, volumeDevices: [{{name: data, devicePath: /dev/xvda}}]}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: c1}}
"
    )
}

/// The pod's device link of a CSI block volume (kubelet's `volumeDevices` layout).
fn device_link(root: &Path, pod_uid: &str, pv: &str) -> PathBuf {
    root.join(format!("pods/{pod_uid}/volumeDevices/kubernetes.io~csi/{pv}"))
}

/// The size of the block device behind `path`.
fn device_size(path: &Path) -> u64 {
    use std::io::Seek;
    let mut device = std::fs::File::open(path).expect("opening the block device");
    device.seek(std::io::SeekFrom::End(0)).expect("seeking to the device's end")
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let device = std::fs::OpenOptions::new().write(true).open(path)?;
    device.write_all_at(bytes, offset)?;
    device.sync_all()
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let device = std::fs::File::open(path).expect("opening the block device");
    let mut buf = vec![0; len];
    device.read_exact_at(&mut buf, offset).expect("reading the block device");
    buf
}

#[test]
fn csi_loop_raw_block_provisions_maps_a_device_into_the_pod_expands_and_deletes() {
    require!(tools: ["losetup", "truncate", "sha256sum"], binaries: ["kvol-csi"], "CSI loop raw block flow");
    let mut csi = CsiDriver::start_backend("loop", &[]);
    let server = &csi.server;
    let root = server.root_dir();

    // 1. A Block claim: CreateVolume makes a volume file, the PV is Block and Bound.
    apply(server, "claim", BLOCK_CLASS_AND_CLAIM);
    let volume = wait_bound(server);
    assert_eq!(get(server, "pv", &volume.pv, "{.spec.volumeMode}").as_deref(), Some("Block"));

    // 2. A pod with volumeDevices: attached, staged, published; its device link is a 64 MiB block device,
    // and `kvol mounts` hands it to a container runtime as a device.
    apply(server, "p1", &block_pod("p1"));
    let uid = wait_pod_running(server, "p1");
    let attachments = kubectl(server, &["get", "volumeattachments", "-o", "jsonpath={.items[*].status.attached}"]);
    assert_eq!(attachments, "true");
    let link = device_link(&root, &uid, &volume.pv);
    let target = std::fs::canonicalize(&link).expect("the device link resolves");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::metadata(&target).expect("target").file_type().is_block_device(),
        "{} → {}",
        link.display(),
        target.display()
    );
    assert_eq!(device_size(&link), 64 * MIB as u64);
    let kubeconfig = server.kubeconfig();
    let out = Command::new(env!("CARGO_BIN_EXE_kvol"))
        .args(["mounts", "p1", "--format", "docker", "--root-dir"])
        .arg(&root)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .output()
        .expect("kvol mounts");
    let flags = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kvol mounts: {flags} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(flags.trim(), format!("--device {}:/dev/xvda:mrw", link.display()));

    // 3. Data written through the device; nothing can be written past its end.
    write_at(&link, 1 << 20, b"block data from p1").expect("writing through the pod's device");
    let past_end = write_at(&link, 64 * MIB as u64, b"x");
    assert!(past_end.is_err(), "a write past the 64 MiB device's end fails: {past_end:?}");

    // 4. Pod deleted: unpublished, unstaged, detached; the link and the device go.
    delete_pod(server, "p1");
    wait_for("the block volume unmapped and detached", |seen| {
        let attachments = kubectl(server, &["get", "volumeattachments", "-o", "name"]);
        let (attached, in_use) = node_volumes(server);
        *seen = format!(
            "link {}, VolumeAttachments [{}], volumesAttached {attached:?}, volumesInUse {in_use:?}",
            link.exists(),
            attachments.trim()
        );
        (!link.exists() && attachments.trim().is_empty() && attached.is_empty() && in_use.is_empty()).then_some(())
    });
    assert!(mount_points_under(&root).is_empty(), "mounts left: {:?}", mount_points_under(&root));

    // 5. Expansion: the volume grows to 128Mi at once; the claim waits, as in Kubernetes, for a pod to
    // finish the resize on the node (FileSystemResizePending), then reports 128Mi.
    kubectl(server, &["patch", "pvc", "c1", "-p", r#"{"spec":{"resources":{"requests":{"storage":"128Mi"}}}}"#]);
    wait_for("the PV to have 128Mi and the claim to wait for the node", |seen| {
        let pv = get(server, "pv", &volume.pv, "{.spec.capacity.storage}").unwrap_or_default();
        let claim =
            get(server, "pvc", "c1", "{.status.capacity.storage} {.status.conditions[*].type}").unwrap_or_default();
        *seen = format!("PV {pv}, claim {claim}");
        (pv == "128Mi" && claim == "64Mi FileSystemResizePending").then_some(())
    });
    apply(server, "p2", &block_pod("p2"));
    let uid2 = wait_pod_running(server, "p2");
    wait_for("the claim to have 128Mi once the node finished", |seen| {
        *seen = get(server, "pvc", "c1", "{.status.capacity.storage}").unwrap_or_default();
        (seen == "128Mi").then_some(())
    });
    let link2 = device_link(&root, &uid2, &volume.pv);
    assert_eq!(device_size(&link2), 128 * MIB as u64);
    assert_eq!(read_at(&link2, 1 << 20, 18), b"block data from p1");

    // 6. Pod and claim deleted: the PV and the volume file are gone, nothing is left attached.
    delete_pod(server, "p2");
    wait_for("p2's device unmapped", |_| (!link2.exists()).then_some(()));
    kubectl(server, &["delete", "pvc", "c1", "--wait=false"]);
    let pool = csi.pool.clone();
    wait_for("the PV and the volume file to be deleted", |seen| {
        let pv = get(server, "pv", &volume.pv, "{.status.phase}");
        let files: Vec<String> = std::fs::read_dir(&pool)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        *seen = format!("PV {pv:?}, pool {files:?}");
        (pv.is_none() && !files.iter().any(|f| f.contains(&volume.handle))).then_some(())
    });
    let loops = sh("losetup", &["-a"]);
    assert!(!loops.contains(&*pool.to_string_lossy()), "loop devices left for the pool: {loops}");
    csi.shut_down_and_check_clean();
}

// ---------------------------------------------------------------- 1c. FlexVolume expansion

/// A FlexVolume PV grown through its claim: the expand controller runs the driver's `expandvolume`
/// (kvol-flex grows the volume file and refreshes the loop device), marks the claim
/// `FileSystemResizePending` (the driver needs a node step), and the agent grows the mounted xfs online
/// (`expandfs` is "Not supported" by kvol-flex, so kubelet's generic resize runs).
#[test]
fn a_flexvolume_pv_is_expanded_by_the_controller_and_its_file_system_grown_on_the_node() {
    require!(tools: ["losetup", "mkfs.xfs", "xfs_growfs", "blkid"], binaries: ["kvol-flex"], "flexvolume expansion");
    let server = Server::start_with(&[]);
    install_loop_driver(&server);
    let pool = server.dir().join("pool");
    let objects = format!(
        "apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: flex-loop}}
provisioner: kubernetes.io/no-provisioner
allowVolumeExpansion: true
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: flex-pv}}
spec:
  capacity: {{storage: 300Mi}}
  accessModes: [ReadWriteOnce]
  storageClassName: flex-loop
  flexVolume:
    driver: kvol/loop
    fsType: xfs
    options: {{volumeID: grow1, size: 300Mi, pool: {}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: c1, namespace: default}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: flex-loop
  resources: {{requests: {{storage: 300Mi}}}}
",
        pool.display()
    );
    apply(&server, "flex-pv", &objects);
    wait_for("claim c1 to be Bound", |seen| {
        *seen = get(&server, "pvc", "c1", "{.status.phase}").unwrap_or_default();
        (seen == "Bound").then_some(())
    });
    apply(&server, "p1", &claim_pod("p1"));
    let uid = wait_pod_running(&server, "p1");
    let volume = server.root_dir().join(format!("pods/{uid}/volumes/kvol~loop/flex-pv"));
    let size_of = |path: &Path| nix::sys::statvfs::statvfs(path).map(|s| s.blocks() * s.fragment_size()).unwrap_or(0);
    let before = size_of(&volume);
    assert!(before > 0 && before < 300 * MIB as u64, "a 300 MiB xfs: {before}");

    kubectl(&server, &["patch", "pvc", "c1", "-p", r#"{"spec":{"resources":{"requests":{"storage":"600Mi"}}}}"#]);
    wait_for("the claim to reach 600Mi", |seen| {
        let claim = get(&server, "pvc", "c1", "{.status.capacity.storage}").unwrap_or_default();
        let pv = get(&server, "pv", "flex-pv", "{.spec.capacity.storage}").unwrap_or_default();
        *seen = format!("claim {claim}, PV {pv}");
        (claim == "600Mi").then_some(())
    });
    let after = size_of(&volume);
    assert!(after > 2 * before - 32 * MIB as u64, "the mounted xfs grew online: {before} → {after}");
    let image = std::fs::metadata(pool.join("grow1.img")).map(|m| m.len()).unwrap_or(0);
    assert_eq!(image, 600 * MIB as u64, "the volume file grew");
    let describe_pvc = kubectl(&server, &["describe", "pvc", "c1"]);
    assert!(describe_pvc.contains("VolumeResizeSuccessful"), "{describe_pvc}");
    let describe_pod = kubectl(&server, &["describe", "pod", "p1"]);
    assert!(describe_pod.contains("FileSystemResizeSuccessful"), "{describe_pod}");
    delete_pod(&server, "p1");
    wait_for("everything unmounted and detached", |seen| {
        let left = mount_points_under(&server.root_dir());
        let loops = loop_devices_of(&pool.join("grow1.img"));
        *seen = format!("mounts {left:?}, loops {loops:?}");
        (left.is_empty() && loops.is_empty()).then_some(())
    });
}
