//! kvol-flex run for real (root, loop devices, mount(2)) through `kvol_flex::DriverCall`, in the
//! order and with the argv kubelet uses; and the seeds' bash+jq driver through the same calls.
//!
//! `cargo test -p kvol-flex-driver` (tests that need root or a tool print SKIP and pass);
//! `KVOL_FLEX_BINARY=<path>` runs them against another build (the static one).
//! The benchmark against the seeds' driver is in bench.rs.

mod util;

use std::path::Path;
use std::time::{Duration, Instant};

use kvol_flex::{Command, DriverCall, Error, VolumeSpec};
use util::*;

async fn loop_volume_end_to_end(fs_type: &str) {
    let test = format!("loop_volume_end_to_end({fs_type})");
    if skip_unless(&test, &["losetup", "blkid", &format!("mkfs.{fs_type}")]) {
        return;
    }
    let node = Node::new();
    let driver = node.install_kvol_flex("kvol", "loop");
    let spec = loop_spec(&node, "pv1", "vol1", fs_type);

    let caps = driver.init().await.unwrap();
    assert!(caps.attach, "loop is attachable");

    // Controller: attach. Node: waitforattach, mountdevice at the global path, mount into the pod.
    let device = ok(&driver, &DriverCall::attach(&spec, "node1")).await.device;
    assert!(device.starts_with("/dev/loop"), "{device}");
    assert_eq!(ok(&driver, &DriverCall::wait_for_attach(&device, &spec)).await.device, device);
    assert!(ok(&driver, &DriverCall::is_attached(&spec, "node1")).await.attached);
    let global = node.device_mount_path("kvol/loop", "pv1");
    let global_s = global.to_string_lossy().into_owned();
    ok(&driver, &DriverCall::mount_device(&global_s, &device, &spec)).await;
    let pod_dir = node.pod_dir("uid-1", "kvol/loop", "pv1");
    let pod_s = pod_dir.to_string_lossy().into_owned();
    ok(&driver, &DriverCall::mount(&pod_s, &spec, &pod("p1", "uid-1"))).await;
    let mounts = node.mounts();
    assert!(mounts.contains(&(pod_dir.clone(), fs_type.to_owned())), "{mounts:?}");
    std::fs::write(pod_dir.join("data.txt"), "written by pod 1").unwrap();

    // Every call again: all idempotent.
    assert_eq!(ok(&driver, &DriverCall::attach(&spec, "node1")).await.device, device);
    ok(&driver, &DriverCall::mount_device(&global_s, &device, &spec)).await;
    ok(&driver, &DriverCall::mount(&pod_s, &spec, &pod("p1", "uid-1"))).await;
    assert_eq!(node.mounts().len(), 2, "{:?}", node.mounts());

    // Detach is refused while the device is mounted.
    let err = driver.run(&DriverCall::detach("pv1", "node1")).await.unwrap_err();
    assert!(err.to_string().contains("still mounted"), "{err}");

    // Teardown in kubelet's order, each step twice.
    for _ in 0..2 {
        ok(&driver, &DriverCall::unmount(&pod_s)).await;
    }
    for _ in 0..2 {
        ok(&driver, &DriverCall::unmount_device(&global_s)).await;
    }
    for _ in 0..2 {
        ok(&driver, &DriverCall::detach("pv1", "node1")).await;
    }
    assert!(node.mounts().is_empty(), "{:?}", node.mounts());
    assert!(node.loops().is_empty(), "{:?}", node.loops());
    assert!(!ok(&driver, &DriverCall::is_attached(&spec, "node1")).await.attached);
    let err = driver.run(&DriverCall::wait_for_attach(&device, &spec)).await.unwrap_err();
    assert!(err.to_string().contains("not attached"), "{err}");

    // A second pod: attach and mount again; the data is there (no reformat).
    let device = ok(&driver, &DriverCall::attach(&spec, "node1")).await.device;
    let device = ok(&driver, &DriverCall::wait_for_attach(&device, &spec)).await.device;
    ok(&driver, &DriverCall::mount_device(&global_s, &device, &spec)).await;
    let pod2 = node.pod_dir("uid-2", "kvol/loop", "pv1");
    let pod2_s = pod2.to_string_lossy().into_owned();
    ok(&driver, &DriverCall::mount(&pod2_s, &spec, &pod("p2", "uid-2"))).await;
    assert_eq!(std::fs::read_to_string(pod2.join("data.txt")).unwrap(), "written by pod 1");

    // A read-only pod mount of the same device.
    let ro_spec = VolumeSpec { read_only: true, ..spec.clone() };
    let pod3 = node.pod_dir("uid-3", "kvol/loop", "pv1");
    let pod3_s = pod3.to_string_lossy().into_owned();
    ok(&driver, &DriverCall::mount(&pod3_s, &ro_spec, &pod("p3", "uid-3"))).await;
    assert_eq!(std::fs::read_to_string(pod3.join("data.txt")).unwrap(), "written by pod 1");
    let err = std::fs::write(pod3.join("x"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS), "{err}");

    for dir in [&pod3_s, &pod2_s] {
        ok(&driver, &DriverCall::unmount(dir)).await;
    }
    ok(&driver, &DriverCall::unmount_device(&global_s)).await;
    ok(&driver, &DriverCall::detach("pv1", "node1")).await;
    assert!(node.mounts().is_empty() && node.loops().is_empty());
    assert!(node.pool.join("vol1.img").exists(), "data is never deleted");
}

#[tokio::test]
async fn loop_volume_end_to_end_on_ext4() {
    loop_volume_end_to_end("ext4").await;
}

#[tokio::test]
async fn loop_volume_end_to_end_on_xfs() {
    loop_volume_end_to_end("xfs").await;
}

#[tokio::test]
async fn mountdevice_never_reformats_a_volume_with_another_file_system() {
    if skip_unless("mountdevice_never_reformats", &["losetup", "blkid", "mkfs.ext4"]) {
        return;
    }
    let node = Node::new();
    let driver = node.install_kvol_flex("kvol", "loop");
    let ext4 = loop_spec(&node, "pv2", "vol2", "ext4");
    let device = ok(&driver, &DriverCall::attach(&ext4, "node1")).await.device;
    let global = node.device_mount_path("kvol/loop", "pv2");
    let global_s = global.to_string_lossy().into_owned();
    ok(&driver, &DriverCall::mount_device(&global_s, &device, &ext4)).await;
    ok(&driver, &DriverCall::unmount_device(&global_s)).await;

    let xfs = VolumeSpec { fs_type: "xfs".into(), ..ext4.clone() };
    let err = driver.run(&DriverCall::mount_device(&global_s, &device, &xfs)).await.unwrap_err();
    assert!(
        err.to_string().starts_with("mountdevice command failed, status: Failure, reason: device")
            && err.to_string().contains("already has a ext4 file system, not xfs"),
        "{err}"
    );
    assert!(node.mounts().is_empty());
    // Mount before mountdevice: a clear error, nothing created.
    let pod_dir = node.root.join("pods/u/volumes/kvol~loop/pv2");
    let err = driver.run(&DriverCall::mount(&pod_dir.to_string_lossy(), &ext4, &pod("p", "u"))).await.unwrap_err();
    assert!(err.to_string().contains("mountdevice must run before mount"), "{err}");
    assert!(!pod_dir.exists());
    ok(&driver, &DriverCall::detach("pv2", "node1")).await;
}

/// Regression (issue 11, "a detach that says Success while /dev/loopN stays bound"): `detach` finds a
/// volume's file through the record its name got at attach. Two nodes sharing one state directory (two
/// agents on one machine, as the node agent's tests had) each attached a volume named `data`; the second
/// attach overwrote the first's record, so the first node's detach released the second node's device,
/// answered Success, and left its own bound. The second attach is now refused while the first is attached.
#[tokio::test]
async fn a_volume_name_recorded_for_another_attached_file_is_refused_so_detach_never_frees_the_wrong_device() {
    if skip_unless("a_volume_name_recorded_for_another_attached_file", &["losetup"]) {
        return;
    }
    let (a, b) = (Node::new(), Node::new());
    let driver_a = a.install_kvol_flex("kvol", "loop");
    b.install_kvol_flex("kvol", "loop");
    // Node b's driver with node a's state directory.
    let driver_b = kvol_flex::Driver::new(&b.plugin_dir, "kvol~loop").with_env(STATE_DIR_ENV, &a.state);
    let spec_a = loop_spec(&a, "data", "vol-a", "ext4");
    let spec_b = loop_spec(&b, "data", "vol-b", "ext4");
    ok(&driver_a, &DriverCall::attach(&spec_a, "node1")).await;
    assert_eq!(a.loops().len(), 1);

    let err = driver_b.run(&DriverCall::attach(&spec_b, "node1")).await.unwrap_err().to_string();
    assert!(err.contains("volume name data already names") && err.contains("vol-a.img"), "{err}");
    assert!(b.loops().is_empty(), "nothing attached for the refused volume: {:?}", b.loops());

    ok(&driver_a, &DriverCall::detach("data", "node1")).await;
    assert!(a.loops().is_empty(), "Success left {:?} bound", a.loops());
    // Once the first volume is detached, the name is free again.
    ok(&driver_b, &DriverCall::attach(&spec_b, "node1")).await;
    ok(&driver_b, &DriverCall::detach("data", "node1")).await;
    assert!(b.loops().is_empty(), "{:?}", b.loops());
}

/// A detach while something holds the loop device open: the kernel releases it only when the holder closes
/// it, so the driver waits for that and fails clearly rather than answer Success with the device bound.
#[tokio::test]
async fn a_detach_of_a_held_loop_device_fails_clearly_and_succeeds_once_it_is_released() {
    if skip_unless("a_detach_of_a_held_loop_device", &["losetup"]) {
        return;
    }
    let node = Node::new();
    let driver = node.install_kvol_flex("kvol", "loop");
    let spec = loop_spec(&node, "pv1", "vol1", "ext4");
    let device = ok(&driver, &DriverCall::attach(&spec, "node1")).await.device;
    let holder = std::fs::File::open(&device).unwrap();
    let err = driver.run(&DriverCall::detach("pv1", "node1")).await.unwrap_err().to_string();
    assert!(err.contains(&format!("loop device {device} is still bound to")) && err.contains("held open"), "{err}");
    assert_eq!(node.loops(), std::slice::from_ref(&device), "still bound, its detach pending");
    assert!(!ok(&driver, &DriverCall::is_attached(&spec, "node1")).await.attached, "a pending detach is not attached");
    drop(holder);
    ok(&driver, &DriverCall::detach("pv1", "node1")).await;
    assert!(node.loops().is_empty(), "{:?}", node.loops());
}

#[tokio::test]
async fn loop_errors_name_the_missing_option() {
    let node = Node::new();
    let driver = node.install_kvol_flex("kvol", "loop");
    let spec = VolumeSpec { name: "pv".into(), ..Default::default() };
    let err = driver.run(&DriverCall::attach(&spec, "node1")).await.unwrap_err();
    assert_eq!(err.to_string(), "attach command failed, status: Failure, reason: missing option \"volumeID\"");
    // getvolumename is not implemented: kubelet's default (the spec name) applies, remembered.
    assert!(driver.run(&DriverCall::get_volume_name(&spec)).await.unwrap_err().is_not_supported());
    assert_eq!(driver.unsupported_commands(), [Command::GetVolumeName]);
}

#[tokio::test]
async fn kvol_flex_nfs_mount_fails_cleanly_without_a_kernel_nfs_client() {
    if skip_unless("kvol_flex_nfs_mount_fails_cleanly", &["mount"]) {
        return;
    }
    let node = Node::new();
    let driver = node.install_kvol_flex("k8s", "nfs");
    let caps = driver.init().await.unwrap();
    assert!(!caps.attach);
    let spec = VolumeSpec {
        name: "test".into(),
        fs_type: "nfs".into(),
        read_only: false,
        options: [("server".to_owned(), "127.0.0.1".to_owned()), ("share".to_owned(), "export".to_owned())].into(),
    };
    // The pod dir as kubelet passes it, whether or not it exists yet.
    for create_first in [false, true] {
        let pod_dir = node.root.join("pods/uid-1/volumes/k8s~nfs/test");
        if create_first {
            std::fs::create_dir_all(&pod_dir).unwrap();
        }
        let call = DriverCall::mount(&pod_dir.to_string_lossy(), &spec, &pod("nginx-nfs", "uid-1"));
        let started = Instant::now();
        let err = driver.run(&call.timeout(Duration::from_secs(60))).await.unwrap_err();
        eprintln!("kvol-flex nfs mount: {err} ({:?})", started.elapsed());
        let text = err.to_string();
        assert!(matches!(err, Error::Failed { .. }), "{text}");
        assert!(
            text.starts_with("mount command failed, status: Failure, reason: mount -t nfs -o rw 127.0.0.1:/export")
                && text.contains("mount.nfs"),
            "{text}"
        );
        assert!(node.mounts().is_empty());
        assert_eq!(pod_dir.exists(), create_first, "no directory changes");
    }
    // Unmount of a dir that is not mounted succeeds.
    ok(&driver, &DriverCall::unmount(&node.root.join("nothing").to_string_lossy())).await;
    assert!(driver.run(&DriverCall::attach(&spec, "n")).await.unwrap_err().is_not_supported());
}

/// A wrapper that records each call's argv as a JSON array line, then runs the real driver.
fn recording_wrapper(real: &Path, record: &Path) -> String {
    format!(
        "#!/bin/bash\njq -cn '$ARGS.positional' --args \"$@\" >> '{}'\nexec '{}' \"$@\"\n",
        record.display(),
        real.display()
    )
}

#[tokio::test]
async fn the_seeds_bash_jq_nfs_driver_runs_unchanged_with_kubelets_argv() {
    if skip_unless("the_seeds_bash_jq_nfs_driver", &["jq", "findmnt", "mount"]) {
        return;
    }
    let node = Node::new();
    let real = node.tmp.path().join("seed-nfs");
    std::fs::copy(SEED_NFS, &real).unwrap();
    std::fs::set_permissions(&real, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let record = node.tmp.path().join("calls.jsonl");
    node.install_script("k8s~nfs", "nfs", &recording_wrapper(&real, &record));
    let driver = kvol_flex::Driver::new(&node.plugin_dir, "k8s~nfs");
    assert_eq!(driver.plugin_name(), "flexvolume-k8s/nfs");

    // The seeds' nginx-nfs pod volume.
    let spec = VolumeSpec {
        name: "test".into(),
        fs_type: "nfs".into(),
        read_only: false,
        options: [("server".to_owned(), "172.16.0.25".to_owned()), ("share".to_owned(), "dws_nas_scratch".to_owned())]
            .into(),
    };
    let caps = driver.init().await.unwrap();
    assert!(!caps.attach && caps.fs_group && !caps.supports_metrics, "{caps:?}: defaults kept");

    let pod_dir = node.pod_dir("3fd57144-7306-4a24-a706-43fdfd32f6ab", "k8s/nfs", "test");
    let pod_s = pod_dir.to_string_lossy().into_owned();
    let call = DriverCall::mount(&pod_s, &spec, &pod("nginx-nfs", "3fd57144-7306-4a24-a706-43fdfd32f6ab"));
    let err = driver.run(&call.clone().timeout(Duration::from_secs(60))).await.unwrap_err();
    eprintln!("seed nfs driver mount: {err}");
    assert_eq!(
        err.to_string(),
        format!(
            "mount command failed, status: Failure, reason: Failed to mount 172.16.0.25:dws_nas_scratch at {pod_s}"
        )
    );
    ok(&driver, &DriverCall::unmount(&pod_s)).await;
    assert!(driver.run(&DriverCall::attach(&spec, "node1")).await.unwrap_err().is_not_supported());
    assert!(driver.run(&DriverCall::attach(&spec, "node1")).await.unwrap_err().is_not_supported());
    assert!(node.mounts().is_empty());

    let calls: Vec<Vec<String>> =
        std::fs::read_to_string(&record).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for c in &calls {
        eprintln!("recorded argv: {c:?}");
    }
    assert_eq!(calls.len(), 4, "init, mount, unmount, attach once (then remembered)");
    assert_eq!(calls[0], ["init"]);
    assert_eq!(calls[1], call.args());
    assert_eq!(calls[1][..2], ["mount".to_owned(), pod_s.clone()]);
    let options: std::collections::BTreeMap<String, String> = serde_json::from_str(&calls[1][2]).unwrap();
    let keys: Vec<&str> = options.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "kubernetes.io/fsType",
            "kubernetes.io/pod.name",
            "kubernetes.io/pod.namespace",
            "kubernetes.io/pod.uid",
            "kubernetes.io/pvOrVolumeName",
            "kubernetes.io/readwrite",
            "kubernetes.io/serviceAccount.name",
            "server",
            "share"
        ]
    );
    assert_eq!(options["kubernetes.io/pod.name"], "nginx-nfs");
    assert_eq!(options["kubernetes.io/readwrite"], "rw");
    assert_eq!(calls[2], ["unmount", &pod_s]);
    assert_eq!(calls[3][0], "attach");
    assert_eq!(calls[3][2], "node1");
}

/// Seed 000's variant of the nfs driver: its mount records `${MNTPATH}, ${NFS_SERVER},
/// ${SHARE}` in /tmp/aaa and creates the dir instead of mounting. Run through `Driver` with
/// kubelet's argv (behind the recording wrapper, which keeps the whole argv), it shows what the
/// seed's article shows: the pod volume dir as the mount's first argument, and the volume's
/// `server` and `share` options inside the JSON, next to kubelet's own option keys.
#[tokio::test]
async fn the_seed_000_driver_records_kubelets_mount_arguments() {
    if skip_unless("the_seed_000_driver_records_kubelets_mount_arguments", &["jq"]) {
        return;
    }
    let node = Node::new();
    // The script is run as printed except for where it records: /tmp/aaa is shared by every
    // run on the machine, so the test's copy writes into its own work dir.
    let script = std::fs::read_to_string(SEED_000_ARGS).unwrap();
    let records = " >> /tmp/aaa\n";
    assert_eq!(script.matches(records).count(), 1, "one line records the arguments");
    let aaa = node.tmp.path().join("aaa");
    let real = node.tmp.path().join("seed-000-args");
    std::fs::write(&real, script.replace(records, &format!(" >> {}\n", aaa.display()))).unwrap();
    std::fs::set_permissions(&real, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let record = node.tmp.path().join("calls.jsonl");
    node.install_script("k8s~nfs", "nfs", &recording_wrapper(&real, &record));
    let driver = kvol_flex::Driver::new(&node.plugin_dir, "k8s~nfs");

    // The seed's nginx-nfs pod volume.
    let spec = VolumeSpec {
        name: "test".into(),
        fs_type: "nfs".into(),
        read_only: false,
        options: [("server".to_owned(), "172.16.0.25".to_owned()), ("share".to_owned(), "dws_nas_scratch".to_owned())]
            .into(),
    };
    let caps = driver.init().await.unwrap();
    assert!(!caps.attach, "{caps:?}");
    let uid = "3fd57144-7306-4a24-a706-43fdfd32f6ab";
    // Kubelet's pod volume dir, left for the driver to create (its `mkdir -p`).
    let pod_dir = kvol_flex::discovery::pod_volume_dir(&node.root, uid, "k8s/nfs", "test");
    let pod_s = pod_dir.to_string_lossy().into_owned();
    let call = DriverCall::mount(&pod_s, &spec, &pod("nginx-nfs", uid));
    let status = ok(&driver, &call).await;
    assert_eq!(status.status, "Success");
    assert!(pod_dir.is_dir(), "{} created", pod_dir.display());
    assert!(node.mounts().is_empty(), "nothing mounted");

    // What the seed's driver recorded.
    let recorded = std::fs::read_to_string(&aaa).unwrap();
    eprintln!("recorded by the seed's driver: {recorded:?}");
    assert_eq!(recorded, format!("{pod_s}, 172.16.0.25, dws_nas_scratch\n"));

    // The argv behind it: kubelet's, in kubelet's order.
    let calls: Vec<Vec<String>> =
        std::fs::read_to_string(&record).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0], ["init"]);
    assert_eq!(calls[1], call.args());
    assert_eq!(calls[1].len(), 3);
    assert_eq!(calls[1][..2], ["mount".to_owned(), pod_s.clone()]);
    let options: std::collections::BTreeMap<String, String> = serde_json::from_str(&calls[1][2]).unwrap();
    let keys: Vec<&str> = options.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "kubernetes.io/fsType",
            "kubernetes.io/pod.name",
            "kubernetes.io/pod.namespace",
            "kubernetes.io/pod.uid",
            "kubernetes.io/pvOrVolumeName",
            "kubernetes.io/readwrite",
            "kubernetes.io/serviceAccount.name",
            "server",
            "share"
        ]
    );
    assert_eq!(options["kubernetes.io/pod.uid"], uid);
    assert_eq!((options["server"].as_str(), options["share"].as_str()), ("172.16.0.25", "dws_nas_scratch"));
}

#[test]
fn install_is_atomic_and_idempotent() {
    let node = Node::new();
    let run = || {
        let out = std::process::Command::new(kvol_flex())
            .args(["install", "--vendor", "kvol", "--driver", "loop", "--dir"])
            .arg(&node.plugin_dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(out.stderr.is_empty());
        kvol_flex::DriverStatus::parse(&out.stdout).unwrap().message
    };
    let first = run();
    let exe = node.plugin_dir.join("kvol~loop/loop");
    assert_eq!(first, format!("installed {}", exe.display()));
    assert_eq!(run(), format!("{} is already installed", exe.display()));
    assert_eq!(std::fs::read(&exe).unwrap(), std::fs::read(kvol_flex()).unwrap());
    let names: Vec<_> =
        std::fs::read_dir(node.plugin_dir.join("kvol~loop")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["loop"], "no temp file left");
    // Installed under its driver name, the binary serves that driver.
    let out = std::process::Command::new(&exe).arg("init").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        r#"{"capabilities":{"attach":true,"fsGroup":true,"requiresFSResize":true,"selinuxRelabel":true,"supportsMetrics":true},"status":"Success"}"#
    );
    let out = std::process::Command::new(kvol_flex())
        .args(["install", "--vendor", "kvol", "--driver", "lvm", "--dir", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("unknown driver \\\"lvm\\\""), "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// Benchmark
