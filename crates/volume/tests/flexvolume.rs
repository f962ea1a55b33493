//! The flexVolume plugin, found through the prober and the registry, against real drivers: the seeds'
//! bash+jq nfs driver (its mount fails here, there is no kernel NFS client, and must leave nothing behind)
//! and kvol-flex's `loop` driver through attach → waitforattach → mountdevice → mount → unmount →
//! unmountdevice → detach on real loop devices, twice, with the data kept across detach.
//!
//! Needs root, `jq`/`findmnt` (nfs) and `losetup`/`blkid`/`mkfs.ext4` plus a built `kvol-flex`
//! (`cargo build -p kvol-flex-driver`) for the loop test; each test prints SKIP and passes otherwise.
//! Every mount and loop device under a test's temp dir is released on drop, pass or fail; failures print
//! the work dir and what was left.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, FlexPersistentVolumeSource, FlexVolumeSource, PersistentVolume, PersistentVolumeSpec, Secret, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kvol_volume::plugins::flexvolume::{FlexConfig, FlexVolumeProber};
use kvol_volume::{ErrorClass, MounterArgs, PluginRegistry, PodRef, VolumeHost, VolumeSpec};

/// The seeds' bash+jq nfs driver, as kvol-flex's own tests keep it.
const SEED_NFS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../drivers/flex/tests/fixtures/seed-nfs");

/// Prints SKIP and returns true unless root and every tool is there.
fn skip_unless(test: &str, tools: &[&str]) -> bool {
    let reason = if !nix::unistd::Uid::effective().is_root() {
        Some("needs root (mounts and loop devices)".to_owned())
    } else {
        tools.iter().find(|t| which(t).is_none()).map(|t| format!("needs `{t}`"))
    };
    if let Some(reason) = &reason {
        eprintln!("SKIP {test}: {reason}");
    }
    reason.is_some()
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The kvol-flex binary of this workspace's debug build, if built.
fn kvol_flex_binary() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let exe = target.join("debug/kvol-flex");
    exe.is_file().then_some(exe)
}

struct Host {
    root: PathBuf,
}

impl VolumeHost for Host {
    fn root_dir(&self) -> &Path {
        &self.root
    }
    fn mounter(&self) -> Arc<dyn kvol_mount::Mounter> {
        Arc::new(kvol_mount::RealMounter::new())
    }
    fn config_map(&self, _: &str, _: &str) -> kvol_volume::Result<Option<ConfigMap>> {
        Ok(None)
    }
    fn secret(&self, _: &str, _: &str) -> kvol_volume::Result<Option<Secret>> {
        Ok(None)
    }
    fn node_name(&self) -> &str {
        "node1"
    }
}

/// A node in a temp dir: plugin dir, kubelet root, loop pool, driver state.
struct Node {
    tmp: tempfile::TempDir,
    plugin_dir: PathBuf,
    host: Arc<dyn VolumeHost>,
    rt: tokio::runtime::Runtime,
}

impl Node {
    fn new() -> Self {
        let tmp = tempfile::Builder::new().prefix("kvol-flexvolume-it.").tempdir().unwrap();
        let plugin_dir = tmp.path().join("exec");
        std::fs::create_dir_all(&plugin_dir).unwrap();
        let host: Arc<dyn VolumeHost> = Arc::new(Host { root: tmp.path().join("kubelet") });
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        Node { tmp, plugin_dir, host, rt }
    }

    /// A registry whose only source is a prober over the plugin dir.
    fn registry(&self, config: FlexConfig) -> (PluginRegistry, Arc<FlexVolumeProber>) {
        let prober = self.rt.block_on(FlexVolumeProber::new(config, None)).unwrap();
        let mut registry = PluginRegistry::new();
        registry.add_source(prober.clone());
        (registry, prober)
    }

    fn mounts(&self) -> Vec<PathBuf> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        text.lines()
            .filter_map(|l| l.split(' ').nth(4).map(|mp| PathBuf::from(mp.replace("\\040", " "))))
            .filter(|mp| mp.starts_with(self.tmp.path()))
            .collect()
    }

    fn loops(&self) -> Vec<String> {
        let Ok(out) = Command::new("losetup").args(["-n", "-O", "NAME,BACK-FILE", "-l"]).output() else {
            return Vec::new();
        };
        let prefix = self.tmp.path().to_string_lossy().into_owned();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(n, f)| (n.to_owned(), f.trim().to_owned())))
            .filter(|(_, f)| f.starts_with(&prefix))
            .map(|(n, _)| n)
            .collect()
    }

    /// Files left under the kubelet root (directories are not listed).
    fn files_under_root(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.host.root_dir(), &mut out);
        out
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("work dir: {}", self.tmp.path().display());
            for m in self.mounts() {
                eprintln!("  left mounted: {}", m.display());
            }
            for l in self.loops() {
                eprintln!("  left attached: {l}");
            }
        }
        for m in self.mounts().into_iter().rev() {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        for dev in self.loops() {
            let _ = Command::new("losetup").args(["-d", &dev]).status();
        }
    }
}

fn pod(uid: &str) -> PodRef {
    PodRef { uid: uid.into(), namespace: "default".into(), name: format!("pod-{uid}") }
}

#[test]
fn the_seeds_nfs_driver_fails_to_mount_with_its_message_and_leaves_nothing_behind() {
    if skip_unless("the_seeds_nfs_driver_fails_to_mount", &["jq", "findmnt", "mount"]) {
        return;
    }
    let node = Node::new();
    let exe = node.plugin_dir.join("k8s~nfs/nfs");
    std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
    std::fs::copy(SEED_NFS, &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let limits = FlexConfig::default_limits().with(kvol_flex::Command::Mount, Duration::from_secs(60));
    let (registry, _prober) = node.registry(FlexConfig::new(&node.plugin_dir).with_limits(limits));

    // The seeds' nginx-nfs pod volume.
    let spec = VolumeSpec::Inline(Box::new(Volume {
        name: "test".into(),
        flex_volume: Some(FlexVolumeSource {
            driver: "k8s/nfs".into(),
            fs_type: Some("nfs".into()),
            options: Some(
                [("server", "172.16.0.25"), ("share", "dws_nas_scratch")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            read_only: None,
            secret_ref: None,
        }),
        ..Default::default()
    }));
    let plugin = registry.find_by_spec(&spec).unwrap();
    assert_eq!(plugin.name(), "k8s/nfs");
    assert!(plugin.as_device().is_none(), "the seed's init says attach: false");

    let mounter = plugin.new_mounter(&spec, &pod("3fd57144"), &node.host).unwrap();
    let dir = node.host.root_dir().join("pods/3fd57144/volumes/k8s~nfs/test");
    assert_eq!(mounter.path(), dir);
    let err = mounter.set_up(&MounterArgs::default()).unwrap_err();
    eprintln!("seed nfs mount: {err}");
    assert_eq!(
        err.to_string(),
        format!(
            "flexVolume driver k8s/nfs: mount command failed, status: Failure, reason: Failed to mount 172.16.0.25:dws_nas_scratch at {}",
            dir.display()
        )
    );
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(node.mounts().is_empty(), "{:?}", node.mounts());
    assert!(!dir.exists(), "the directory the driver made is removed");
    assert!(node.files_under_root().is_empty(), "{:?}", node.files_under_root());

    // Teardown of a volume that never mounted: success, nothing to do.
    plugin.new_unmounter("test", "3fd57144", &node.host).unwrap().tear_down().unwrap();
}

#[test]
fn a_loop_volume_goes_through_the_whole_device_phase_and_keeps_its_data() {
    if skip_unless("a_loop_volume_goes_through_the_whole_device_phase", &["losetup", "blkid", "mkfs.ext4"]) {
        return;
    }
    let Some(binary) = kvol_flex_binary() else {
        eprintln!("SKIP a_loop_volume_goes_through_the_whole_device_phase: no target/debug/kvol-flex (run `cargo build -p kvol-flex-driver`)");
        return;
    };
    let node = Node::new();
    let out = Command::new(&binary)
        .args(["install", "--vendor", "kvol", "--driver", "loop", "--dir"])
        .arg(&node.plugin_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "install: {}", String::from_utf8_lossy(&out.stdout));
    let config = FlexConfig::new(&node.plugin_dir).with_env("KVOL_FLEX_STATE_DIR", node.tmp.path().join("state"));
    let (registry, _prober) = node.registry(config);

    let pool = node.tmp.path().join("pool");
    let spec = VolumeSpec::Persistent {
        pv: Box::new(PersistentVolume {
            metadata: ObjectMeta { name: Some("pv1".into()), ..Default::default() },
            spec: Some(PersistentVolumeSpec {
                flex_volume: Some(FlexPersistentVolumeSource {
                    driver: "kvol/loop".into(),
                    fs_type: Some("ext4".into()),
                    options: Some(
                        [("volumeID", "vol1"), ("size", "64Mi"), ("pool", &pool.to_string_lossy())]
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .collect(),
                    ),
                    read_only: None,
                    secret_ref: None,
                }),
                ..Default::default()
            }),
            status: None,
        }),
        read_only: false,
    };
    let plugin = registry.find_by_spec(&spec).unwrap();
    let attacher = plugin.as_attachable().expect("loop is attachable");
    let device = plugin.as_device().unwrap();
    let host = node.host.as_ref();
    assert_eq!(device.unique_name(&spec, host).unwrap(), "flexvolume-kvol/loop/pv1");
    let volume_name = attacher.volume_name_for_attach(&spec).unwrap();
    assert_eq!(volume_name, "pv1");

    for (round, uid) in ["uid-1", "uid-2"].into_iter().enumerate() {
        // Controller: attach. Node: wait, mount the device globally, then into the pod.
        let path = attacher.attach(&spec, "node1").unwrap();
        assert!(path.starts_with("/dev/loop"), "{path}");
        assert!(attacher.is_attached(&spec, "node1").unwrap());
        let path = device.wait_for_attach(&spec, &path, host).unwrap();
        let global = device.device_mount_path(&spec, host).unwrap();
        assert_eq!(global, host.root_dir().join("plugins/kubernetes.io/flexvolume/kvol/loop/mounts/pv1"));
        device.mount_device(&spec, &path, &global, host).unwrap();
        device.mount_device(&spec, &path, &global, host).unwrap();
        let mounter = plugin.new_mounter(&spec, &pod(uid), &node.host).unwrap();
        mounter.set_up(&MounterArgs::default()).unwrap();
        mounter.set_up(&MounterArgs::default()).unwrap();
        assert_eq!(node.mounts(), [global.clone(), mounter.path()], "round {round}");
        let found = device.find_device_mounts(host).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].unique_name, "flexvolume-kvol/loop/pv1");

        let data = mounter.path().join("data.txt");
        if round == 0 {
            std::fs::write(&data, "written by pod 1").unwrap();
        } else {
            assert_eq!(std::fs::read_to_string(&data).unwrap(), "written by pod 1", "data survives detach/attach");
        }

        // Teardown in kubelet's order, each step twice (idempotent).
        let unmounter = plugin.new_unmounter("pv1", uid, &node.host).unwrap();
        for _ in 0..2 {
            unmounter.tear_down().unwrap();
        }
        for _ in 0..2 {
            device.unmount_device("flexvolume-kvol/loop/pv1", &global, host).unwrap();
        }
        for _ in 0..2 {
            attacher.detach(&volume_name, "node1").unwrap();
        }
        assert!(node.mounts().is_empty(), "{:?}", node.mounts());
        assert!(node.loops().is_empty(), "{:?}", node.loops());
        assert!(!mounter.path().exists() && !global.exists());
        assert!(!attacher.is_attached(&spec, "node1").unwrap());
    }
    assert!(pool.join("vol1.img").exists(), "the data file is never deleted");
}
