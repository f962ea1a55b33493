//! The plugin against small bash drivers in a temp plugin dir (root: some tests mount tmpfs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvol_flex::{parse_options_json, Command, ProbeOp};

use super::testing::*;
use super::*;
use crate::plugin::{DeviceMountRef, MounterArgs};
use crate::registry::PluginRegistry;
use crate::ErrorClass;

/// `init` answers `init_json`; `mount` mkdirs; every other call is Not supported.
fn mount_only_driver(init_json: &str) -> String {
    format!(
        r#"case "$1" in
  init) echo '{init_json}';;
  mount) mkdir -p "$2"; echo '{{"status":"Success"}}';;
  unmount) echo '{{"status":"Success"}}';;
  *) echo '{{"status":"Not supported"}}';;
esac"#
    )
}

/// Implements every call; mountdevice and mount put a tmpfs at their target.
const FULL_DRIVER: &str = r#"case "$1" in
  init) echo '{"status":"Success"}';;
  getvolumename) echo '{"status":"Success","volumeName":"ignored"}';;
  attach) echo '{"status":"Success","device":"/dev/fake0"}';;
  waitforattach) echo "{\"status\":\"Success\",\"device\":\"$2\"}";;
  isattached) echo '{"status":"Success","attached":false}';;
  mountdevice) mount -t tmpfs tmpfs "$2" && echo '{"status":"Success"}';;
  mount) mkdir -p "$2" && mount -t tmpfs tmpfs "$2" && echo '{"status":"Success"}';;
  unmount|unmountdevice) umount "$2"; echo '{"status":"Success"}';;
  detach|expandfs) echo '{"status":"Success"}';;
  *) echo '{"status":"Not supported"}';;
esac"#;

#[test]
fn init_then_mount_gets_kubelets_argv_and_options() {
    let node = Node::new();
    node.install("k8s~cifs", &mount_only_driver(r#"{"status":"Success","capabilities":{"attach":false}}"#));
    let plugin = node.plugin("k8s~cifs");
    assert_eq!(plugin.name(), "k8s/cifs");
    assert_eq!(plugin.plugin_name(), "flexvolume-k8s/cifs");
    assert!(plugin.as_device().is_none() && plugin.as_attachable().is_none(), "attach: false");

    node.host
        .secrets
        .lock()
        .insert(("default".into(), "creds".into()), secret("k8s/cifs", &[("password", b"s3cr et")]));
    node.host.pods.lock().insert(("default".into(), "nginx-flex".into()), pod("builder"));
    let spec = persistent(
        "pv-cifs",
        "k8s/cifs",
        &[("share", "//srv/data"), ("kubernetes.io/pod.name", "user-wins")],
        Some(("", "creds")),
        true,
    );
    assert!(plugin.can_support(&spec));
    assert!(!plugin.can_support(&persistent("pv", "k8s/other", &[], None, false)));
    assert!(!plugin.can_support(&inline("x", "k8s/cifsx", &[])));
    assert_eq!(plugin.volume_name(&spec).unwrap(), "pv-cifs", "Not supported: the spec name");

    let mounter = plugin.new_mounter(&spec, &pod_ref(), &node.host()).unwrap();
    let dir = node.host.root.join("pods/uid-1/volumes/k8s~cifs/pv-cifs");
    assert_eq!(mounter.path(), dir);
    assert!(mounter.read_only(), "a PV's read-only flag is the claim's");
    mounter.set_up(&MounterArgs { fs_group: Some(2000), ..Default::default() }).unwrap();
    assert!(dir.is_dir());

    let calls = node.calls();
    assert_eq!(calls[0], ["init"]);
    assert_eq!(calls[1][0], "getvolumename");
    let mount = &node.calls_of("mount")[0];
    assert_eq!(mount.len(), 3, "{mount:?}");
    assert_eq!(mount[1], dir.to_string_lossy());
    let options = parse_options_json(&mount[2]).unwrap();
    let expected: BTreeMap<String, String> = [
        ("kubernetes.io/fsType", "xfs"),
        ("kubernetes.io/mounterArgs.FsGroup", "2000"),
        ("kubernetes.io/pod.name", "user-wins"),
        ("kubernetes.io/pod.namespace", "default"),
        ("kubernetes.io/pod.uid", "uid-1"),
        ("kubernetes.io/pvOrVolumeName", "pv-cifs"),
        ("kubernetes.io/readwrite", "ro"),
        ("kubernetes.io/secret/password", "czNjciBldA=="),
        ("kubernetes.io/serviceAccount.name", "builder"),
        ("share", "//srv/data"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(options, expected);

    // Mounted already (a tmpfs stands in for the driver's mount): set-up calls nothing.
    if can_mount("init_then_mount_gets_kubelets_argv_and_options (remount part)") {
        nix::mount::mount(Some("tmpfs"), &dir, Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>).unwrap();
        mounter.set_up(&MounterArgs::default()).unwrap();
        assert_eq!(node.calls_of("mount").len(), 1, "mount only once");
        nix::mount::umount(&dir).unwrap();
    }

    // Teardown: `unmount <dir>`, then the directory goes; again: nothing to do.
    let unmounter = plugin.new_unmounter("pv-cifs", "uid-1", &node.host()).unwrap();
    assert_eq!(unmounter.path(), dir);
    unmounter.tear_down().unwrap();
    assert!(!dir.exists());
    assert_eq!(node.calls_of("unmount"), [vec!["unmount".to_owned(), dir.to_string_lossy().into_owned()]]);
    unmounter.tear_down().unwrap();
    assert_eq!(node.calls_of("unmount").len(), 1, "a missing directory is not passed to the driver");
}

#[test]
fn the_pods_fs_group_is_applied_unless_the_driver_or_the_volume_says_no() {
    use std::os::unix::fs::MetadataExt;
    if !can_mount("the_pods_fs_group_is_applied") {
        return;
    }
    struct Case {
        init: &'static str,
        read_only: bool,
        owned: bool,
    }
    let cases = [
        Case { init: r#"{"status":"Success"}"#, read_only: false, owned: true },
        Case { init: r#"{"status":"Success","capabilities":{"fsGroup":false}}"#, read_only: false, owned: false },
        Case { init: r#"{"status":"Success"}"#, read_only: true, owned: false },
    ];
    for case in cases {
        let node = Node::new();
        node.install("k8s~dir", &mount_only_driver(case.init));
        let plugin = node.plugin("k8s~dir");
        let spec = persistent("pv", "k8s/dir", &[], None, case.read_only);
        let mounter = plugin.new_mounter(&spec, &pod_ref(), &node.host()).unwrap();
        mounter.set_up(&MounterArgs { fs_group: Some(4321), ..Default::default() }).unwrap();
        let options = parse_options_json(&node.calls_of("mount")[0][2]).unwrap();
        assert_eq!(options["kubernetes.io/mounterArgs.FsGroup"], "4321", "passed to the driver in every case");
        let gid = std::fs::metadata(mounter.path()).unwrap().gid();
        assert_eq!(gid == 4321, case.owned, "{} read_only={}", case.init, case.read_only);
    }
}

#[test]
fn an_inline_secret_must_exist_and_be_of_the_drivers_type() {
    let node = Node::new();
    node.install("k8s~cifs", &mount_only_driver(r#"{"status":"Success","capabilities":{"attach":false}}"#));
    let plugin = node.plugin("k8s~cifs");
    let spec = inline_with_secret("data", "k8s/cifs", "creds");
    let mounter = plugin.new_mounter(&spec, &pod_ref(), &node.host()).unwrap();

    let err = mounter.set_up(&MounterArgs::default()).unwrap_err();
    assert!(err.to_string().contains("creds"), "{err}");
    node.host.secrets.lock().insert(("default".into(), "creds".into()), secret("Opaque", &[("k", b"v")]));
    let err = mounter.set_up(&MounterArgs::default()).unwrap_err();
    assert!(err.to_string().contains("cannot get secret of type k8s/cifs"), "{err}");
    assert!(node.calls_of("mount").is_empty(), "the driver is not called without its secret");
    assert!(!mounter.path().exists(), "the directory is removed after a failure");

    node.host.secrets.lock().insert(("default".into(), "creds".into()), secret("k8s/cifs", &[("k", b"v")]));
    mounter.set_up(&MounterArgs::default()).unwrap();
    let options = parse_options_json(&node.calls_of("mount")[0][2]).unwrap();
    assert_eq!(options["kubernetes.io/secret/k"], "dg==");
    assert_eq!(options["kubernetes.io/serviceAccount.name"], "", "no pod known: empty");
    assert!(!options.contains_key("kubernetes.io/mounterArgs.FsGroup"));
}

#[test]
fn a_failed_mount_leaves_nothing_mounted_and_carries_the_drivers_message() {
    if !can_mount("a_failed_mount_leaves_nothing_mounted") {
        return;
    }
    let node = Node::new();
    node.install(
        "k8s~nfs",
        r#"case "$1" in
  init) echo '{"status":"Success","capabilities":{"attach":false}}';;
  mount) mkdir -p "$2"; mount -t tmpfs tmpfs "$2"; echo '{"status":"Failure","message":"mount.nfs: access denied by server"}'; exit 1;;
  *) echo '{"status":"Not supported"}';;
esac"#,
    );
    let plugin = node.plugin("k8s~nfs");
    let mounter = plugin.new_mounter(&inline("test", "k8s/nfs", &[]), &pod_ref(), &node.host()).unwrap();
    let err = mounter.set_up(&MounterArgs::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "flexVolume driver k8s/nfs: mount command failed, status: Failure, reason: mount.nfs: access denied by server"
    );
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(matches!(flex_error(&err), Some(kvol_flex::Error::Failed { command: Command::Mount, .. })), "{err:?}");
    assert!(node.mounts().is_empty(), "{:?}", node.mounts());
    assert!(!mounter.path().exists());
}

#[test]
fn driver_bugs_and_garbage_output_fail_with_a_clear_error() {
    struct Case {
        body: &'static str,
        expect: &'static str,
    }
    let cases = [
        // Kubelet: an exec error wins over a Success status ("driver bug").
        Case { body: r#"echo '{"status":"Success"}'; exit 3"#, expect: "driver bug" },
        Case { body: "echo 'Segmentation fault'", expect: "printed no valid JSON status" },
        Case { body: "echo 'Segmentation fault'", expect: "Segmentation fault" },
        Case { body: r#"echo '{"status":"Exploded"}'"#, expect: "mount command failed, status: Exploded" },
    ];
    for case in cases {
        let node = Node::new();
        let body = format!(
            r#"case "$1" in
  init) echo '{{"status":"Success","capabilities":{{"attach":false}}}}';;
  mount) {};;
  *) echo '{{"status":"Not supported"}}';;
esac"#,
            case.body
        );
        node.install("k8s~bad", &body);
        let plugin = node.plugin("k8s~bad");
        let mounter = plugin.new_mounter(&inline("v", "k8s/bad", &[]), &pod_ref(), &node.host()).unwrap();
        let err = mounter.set_up(&MounterArgs::default()).unwrap_err();
        assert!(err.to_string().contains(case.expect), "{}: {err}", case.body);
        assert!(!mounter.path().exists(), "{}", case.body);
    }
}

#[test]
fn a_hanging_driver_is_killed_at_its_limit() {
    let mut node = Node::new();
    node.config.limits = FlexConfig::default_limits()
        .with(Command::Mount, Duration::from_millis(300))
        .with(Command::Attach, Duration::from_millis(300));
    node.install(
        "k8s~hang",
        r#"case "$1" in
  init) echo '{"status":"Success"}';;
  mount|attach) sleep 30 & echo $! > "$STATE/pid.$1"; wait;;
  *) echo '{"status":"Not supported"}';;
esac"#,
    );
    let plugin = node.plugin("k8s~hang");
    let spec = inline("v", "k8s/hang", &[]);
    let mounter = plugin.new_mounter(&spec, &pod_ref(), &node.host()).unwrap();
    let started = Instant::now();
    let err = mounter.set_up(&MounterArgs::default()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let text = err.to_string();
    assert!(text.contains("timeout") && text.contains("process group was killed"), "{text}");
    assert_eq!(err.class(), ErrorClass::Transient, "cleaned up after: nothing is left mounted");
    assert!(!mounter.path().exists());
    let pid: i32 = std::fs::read_to_string(node.tmp.path().join("pid.mount")).unwrap().trim().parse().unwrap();
    let gone = eventually(Duration::from_secs(3), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
    });
    assert!(gone, "the driver's child {pid} was killed with its process group");

    // Attach has nothing to clean up after: a timeout leaves it uncertain.
    let err = plugin.as_attachable().unwrap().attach(&spec, "node1").unwrap_err();
    assert_eq!(err.class(), ErrorClass::Uncertain, "{err}");
    assert!(err.to_string().contains("killed with its process group"), "{err}");
}

#[test]
fn not_supported_calls_fall_back_to_kubelets_defaults() {
    if !can_mount("not_supported_calls_fall_back_to_kubelets_defaults") {
        return;
    }
    let node = Node::new();
    node.install(
        "k8s~lazy",
        r#"case "$1" in
  init) echo '{"status":"Success"}';;
  *) echo '{"status":"Not supported"}';;
esac"#,
    );
    let plugin = node.plugin("k8s~lazy");
    let host = node.host();
    let spec = inline("vol", "k8s/lazy", &[]);
    let attacher = plugin.as_attachable().expect("attach defaults to true");
    let device = plugin.as_device().unwrap();

    assert_eq!(attacher.attach(&spec, "node1").unwrap(), "");
    assert!(attacher.is_attached(&spec, "node1").unwrap());
    assert_eq!(attacher.volume_name_for_attach(&spec).unwrap(), "vol");
    assert_eq!(device.unique_name(&spec, host.as_ref()).unwrap(), "flexvolume-k8s/lazy/vol");
    assert!(device.requires_attach(&spec, host.as_ref()).unwrap());
    assert_eq!(device.wait_for_attach(&spec, "/dev/sdz", host.as_ref()).unwrap(), "/dev/sdz");
    let global = device.device_mount_path(&spec, host.as_ref()).unwrap();
    assert_eq!(global, node.host.root.join("plugins/kubernetes.io/flexvolume/k8s/lazy/mounts/vol"));
    // No device: mountdevice's default does nothing but the directory.
    device.mount_device(&spec, "", &global, host.as_ref()).unwrap();
    std::fs::write(global.join("hello"), "from the device mount").unwrap();

    // mount's default: a bind of the device mount path.
    let mounter = plugin.new_mounter(&spec, &pod_ref(), &host).unwrap();
    mounter.set_up(&MounterArgs::default()).unwrap();
    assert_eq!(std::fs::read_to_string(mounter.path().join("hello")).unwrap(), "from the device mount");
    assert_eq!(node.mounts(), [mounter.path()]);

    // unmount's default: a plain unmount; then the directory goes.
    let unmounter = plugin.new_unmounter("vol", "uid-1", &host).unwrap();
    unmounter.tear_down().unwrap();
    assert!(node.mounts().is_empty() && !mounter.path().exists());
    assert_eq!(std::fs::read_to_string(global.join("hello")).unwrap(), "from the device mount", "data untouched");

    // unmountdevice of a path that is not mounted: nothing to unmount; the directory is removed if empty.
    std::fs::remove_file(global.join("hello")).unwrap();
    device.unmount_device("flexvolume-k8s/lazy/vol", &global, host.as_ref()).unwrap();
    assert!(!global.exists());
    device.unmount_device("flexvolume-k8s/lazy/vol", &global, host.as_ref()).unwrap();
    attacher.detach("vol", "node1").unwrap();

    // Each unsupported command ran once, then was remembered.
    for command in
        ["getvolumename", "attach", "isattached", "waitforattach", "mountdevice", "mount", "unmount", "detach"]
    {
        assert_eq!(node.calls_of(command).len(), 1, "{command}: {:?}", node.calls());
    }
    assert!(node.calls_of("unmountdevice").is_empty(), "not mounted: not called");
}

#[test]
fn the_device_phase_runs_the_drivers_calls_in_kubelets_order() {
    if !can_mount("the_device_phase_runs_the_drivers_calls_in_kubelets_order") {
        return;
    }
    let node = Node::new();
    node.install("kvol~full", FULL_DRIVER);
    let plugin = node.plugin("kvol~full");
    let host = node.host();
    let spec = persistent("pv1", "kvol/full", &[("volumeID", "v1")], None, false);
    let attacher = plugin.as_attachable().unwrap();
    let device = plugin.as_device().unwrap();

    let path = attacher.attach(&spec, "node1").unwrap();
    assert_eq!(path, "/dev/fake0");
    assert!(!attacher.is_attached(&spec, "node1").unwrap(), "only Success with attached:false says detached");
    assert_eq!(device.wait_for_attach(&spec, &path, host.as_ref()).unwrap(), "/dev/fake0");
    let global = device.device_mount_path(&spec, host.as_ref()).unwrap();
    device.mount_device(&spec, &path, &global, host.as_ref()).unwrap();
    device.mount_device(&spec, &path, &global, host.as_ref()).unwrap();
    let found = device.find_device_mounts(host.as_ref()).unwrap();
    assert_eq!(
        found,
        [DeviceMountRef {
            plugin: "kvol/full".into(),
            unique_name: "flexvolume-kvol/full/pv1".into(),
            device_mount_path: global.clone()
        }]
    );
    let mounter = plugin.new_mounter(&spec, &pod_ref(), &host).unwrap();
    mounter.set_up(&MounterArgs::default()).unwrap();
    plugin.new_unmounter("pv1", "uid-1", &host).unwrap().tear_down().unwrap();
    device.unmount_device("flexvolume-kvol/full/pv1", &global, host.as_ref()).unwrap();
    device.unmount_device("flexvolume-kvol/full/pv1", &global, host.as_ref()).unwrap();
    attacher.detach("pv1", "node1").unwrap();
    assert!(node.mounts().is_empty() && !global.exists() && !mounter.path().exists());
    assert!(device.find_device_mounts(host.as_ref()).unwrap().is_empty());

    let json = r#"{"kubernetes.io/fsType":"xfs","kubernetes.io/pvOrVolumeName":"pv1","kubernetes.io/readwrite":"rw","volumeID":"v1"}"#;
    let g = global.to_string_lossy().into_owned();
    let p = mounter.path().to_string_lossy().into_owned();
    let calls: Vec<Vec<String>> =
        node.calls().into_iter().filter(|c| c[0] != "getvolumename" && c[0] != "mount").collect();
    let expected: Vec<Vec<&str>> = vec![
        vec!["init"],
        vec!["attach", json, "node1"],
        vec!["isattached", json, "node1"],
        vec!["waitforattach", "/dev/fake0", json],
        vec!["mountdevice", &g, "/dev/fake0", json],
        vec!["unmount", &p],
        vec!["unmountdevice", &g],
        vec!["detach", "pv1", "node1"],
    ];
    assert_eq!(calls, expected, "mountdevice runs once (then mounted), unmountdevice once (then not mounted)");
    assert_eq!(node.calls_of("mount")[0][..2], ["mount".to_owned(), p]);
}

#[test]
fn a_failed_mountdevice_leaves_nothing_mounted() {
    if !can_mount("a_failed_mountdevice_leaves_nothing_mounted") {
        return;
    }
    let node = Node::new();
    node.install(
        "kvol~flaky",
        r#"case "$1" in
  init) echo '{"status":"Success"}';;
  mountdevice) mount -t tmpfs tmpfs "$2"; echo '{"status":"Failure","message":"fsck found errors"}';;
  *) echo '{"status":"Not supported"}';;
esac"#,
    );
    let plugin = node.plugin("kvol~flaky");
    let host = node.host();
    let spec = inline("v", "kvol/flaky", &[]);
    let device = plugin.as_device().unwrap();
    let global = device.device_mount_path(&spec, host.as_ref()).unwrap();
    let err = device.mount_device(&spec, "/dev/fake0", &global, host.as_ref()).unwrap_err();
    assert!(err.to_string().ends_with("reason: fsck found errors"), "{err}");
    assert!(node.mounts().is_empty() && !global.exists());
}

#[test]
fn expandfs_gets_the_device_from_the_mount_table_and_kubelets_argv() {
    if !can_mount("expandfs_gets_the_device_from_the_mount_table") {
        return;
    }
    let node = Node::new();
    node.install("kvol~full", FULL_DRIVER);
    node.install(
        "kvol~lazy",
        r#"case "$1" in
  init) echo '{"status":"Success"}';;
  mountdevice) mount -t tmpfs tmpfs "$2" && echo '{"status":"Success"}';;
  *) echo '{"status":"Not supported"}';;
esac"#,
    );
    node.install("kvol~fixed", r#"echo '{"status":"Success","capabilities":{"requiresFSResize":false}}'"#);
    assert!(node.plugin("kvol~fixed").as_node_expandable().is_none(), "requiresFSResize: false");
    let host = node.host();

    for (dir_name, driver) in [("kvol~full", "kvol/full"), ("kvol~lazy", "kvol/lazy")] {
        let plugin = node.plugin(dir_name);
        let spec = persistent("pv1", driver, &[], None, false);
        let device = plugin.as_device().unwrap();
        let global = device.device_mount_path(&spec, host.as_ref()).unwrap();
        device.mount_device(&spec, "/dev/fake0", &global, host.as_ref()).unwrap();
        let expander = plugin.as_node_expandable().expect("requiresFSResize defaults to true");
        let pod_dir = node.host.root.join("pods/uid-1/volumes").join(dir_name).join("pv1");
        let result = expander.node_expand(&spec, &pod_dir, Some(&global), 2048, 1024, host.as_ref());
        if driver == "kvol/full" {
            result.unwrap();
            let json =
                r#"{"kubernetes.io/fsType":"xfs","kubernetes.io/pvOrVolumeName":"pv1","kubernetes.io/readwrite":"rw"}"#;
            let g = global.to_string_lossy().into_owned();
            assert_eq!(node.calls_of("expandfs"), [vec!["expandfs", json, "tmpfs", &g, "2048", "1024"]]);
        } else {
            // Not supported: the generic resize, which has no tool for a tmpfs.
            let err = result.unwrap_err();
            assert!(err.to_string().contains(r#"resize of format "tmpfs" is not supported"#), "{err}");
        }
        let inline_spec = inline("pv1", driver, &[]);
        let err = expander.node_expand(&inline_spec, &pod_dir, Some(&global), 2048, 1024, host.as_ref()).unwrap_err();
        assert!(err.to_string().contains("PersistentVolume not found"), "{err}");
        device.unmount_device("u", &global, host.as_ref()).unwrap();
    }
    assert!(node.mounts().is_empty());
}

#[test]
fn calls_made_on_a_worker_or_the_blocking_pool_do_not_panic() {
    let node = Node::new();
    node.install("k8s~cifs", &mount_only_driver(r#"{"status":"Success"}"#));
    let plugin = Arc::new(node.plugin("k8s~cifs"));
    let spec = inline("v", "k8s/cifs", &[]);
    let (on_worker, on_blocking_pool) = node.rt.block_on(async move {
        // Directly on a worker: block_in_place moves the worker's tasks away.
        let (p, s) = (plugin.clone(), spec.clone());
        let on_worker = tokio::spawn(async move { p.volume_name(&s) }).await.unwrap();
        // On the blocking pool, where the node agent runs plugin methods.
        let on_blocking_pool = tokio::task::spawn_blocking(move || plugin.volume_name(&spec)).await.unwrap();
        (on_worker, on_blocking_pool)
    });
    assert_eq!(on_worker.unwrap(), "v");
    assert_eq!(on_blocking_pool.unwrap(), "v");
}

#[test]
fn drivers_installed_and_removed_while_the_prober_runs_come_and_go() {
    let node = Node::new();
    let mut config = node.config.clone();
    config.settle = Duration::from_millis(50);
    node.install("k8s~nfs", &mount_only_driver(r#"{"status":"Success","capabilities":{"attach":false}}"#));
    node.install("k8s~broken", r#"echo 'not json'"#);
    std::fs::create_dir_all(config.plugin_dir.join(".hidden")).unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let prober = node.rt.block_on(FlexVolumeProber::new(config.clone(), Some(tx))).unwrap();
    assert_eq!(prober.drivers(), ["k8s/nfs"], "loaded before run; the broken and hidden ones not");
    let reports: Vec<ProbeReport> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert_eq!(reports.len(), 2, "{reports:?}");
    let broken = reports.iter().find(|r| r.driver == "k8s/broken").unwrap();
    let error = broken.error.as_deref().unwrap();
    assert!(error.contains("not loaded") && error.contains("not json"), "{error}");

    let mut registry = PluginRegistry::new();
    registry.add_source(prober.clone());
    let nfs = inline("test", "k8s/nfs", &[]);
    assert_eq!(registry.find_by_spec(&nfs).unwrap().name(), "k8s/nfs");
    let loop_spec = inline("data", "kvol/loop", &[]);
    assert!(registry.find_by_spec(&loop_spec).is_err());

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = node.rt.spawn(prober.clone().run(async move {
        let _ = stopped.await;
    }));

    // A driver installed while running becomes usable, attachable (init's default).
    node.install("kvol~loop", FULL_DRIVER);
    assert!(eventually(Duration::from_secs(5), || registry.find_by_spec(&loop_spec).is_ok()), "{:?}", prober.drivers());
    let plugin = registry.find_by_spec(&loop_spec).unwrap();
    assert!(plugin.as_attachable().is_some());
    assert_eq!(prober.plugin("kvol/loop").unwrap().driver().executable(), config.plugin_dir.join("kvol~loop/loop"));

    // Fixing the broken driver loads it.
    node.install("k8s~broken", r#"echo '{"status":"Success"}'"#);
    assert!(eventually(Duration::from_secs(5), || prober.plugin("k8s/broken").is_some()), "{:?}", prober.drivers());

    // Removed: gone.
    std::fs::remove_dir_all(config.plugin_dir.join("kvol~loop")).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || registry.find_by_spec(&loop_spec).is_err()),
        "{:?}",
        prober.drivers()
    );
    let reports: Vec<ProbeReport> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert!(reports.iter().any(|r| r.driver == "kvol/loop" && r.op == ProbeOp::Remove), "{reports:?}");

    // The whole plugin dir removed: every driver goes; it is recreated and watched again.
    std::fs::remove_dir_all(&config.plugin_dir).unwrap();
    assert!(eventually(Duration::from_secs(5), || prober.drivers().is_empty()), "{:?}", prober.drivers());
    assert!(eventually(Duration::from_secs(5), || config.plugin_dir.is_dir()));
    node.install("k8s~nfs", &mount_only_driver(r#"{"status":"Success","capabilities":{"attach":false}}"#));
    assert!(eventually(Duration::from_secs(5), || prober.drivers() == ["k8s/nfs"]), "{:?}", prober.drivers());

    stop.send(()).unwrap();
    node.rt.block_on(running).unwrap();
}
