//! The CSI plugin against the real `kvol-csi` driver on a btrfs pool in a loop file: stage, publish,
//! write, unpublish, unstage, checking the mount table at each step, repeating each step (idempotency),
//! tearing down from `vol_data.json` alone with a fresh plugin (a restart), and reporting a dead driver as
//! uncertain. Needs root, btrfs-progs and a built driver (`cargo build -p kvol-csi-driver`); skips with a
//! message otherwise. Every mount and loop device under the test's temp dir is released on drop, pass or
//! fail; failures print the work dir and the driver's log.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, ConfigMap, PersistentVolume, PersistentVolumeSpec, Pod, Secret,
};
use k8s_openapi::api::storage::v1::{CSIDriver, CSIDriverSpec, VolumeAttachment, VolumeAttachmentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kvol_csi::v1::controller_client::ControllerClient;
use kvol_csi::v1::volume_capability::{access_mode::Mode, AccessMode, AccessType, MountVolume};
use kvol_csi::v1::{CapacityRange, CreateVolumeRequest, DeleteVolumeRequest, VolumeCapability};
use kvol_volume::plugins::csi::{self, CsiDrivers, CsiPlugin, DriverInfo, VolumeData};
use kvol_volume::{ErrorClass, MounterArgs, PodRef, VolumeHost, VolumePlugin, VolumeSpec};

const DRIVER: &str = "csi.kvol.io";
const NODE: &str = "node-1";

fn skip_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root (mounts and loop devices)".into());
    }
    for tool in ["mkfs.btrfs", "losetup"] {
        if !["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|d| Path::new(d).join(tool).exists()) {
            return Some(format!("{tool} is missing (apt-get install btrfs-progs util-linux)"));
        }
    }
    if !driver_binary().exists() {
        return Some(format!("{} is missing: run `cargo build -p kvol-csi-driver` first", driver_binary().display()));
    }
    None
}

fn driver_binary() -> PathBuf {
    std::env::var_os("KVOL_CSI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/kvol-csi"))
}

fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn mount_count(path: &Path) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(&p.replace("\\040", " ")) == path)
        .count()
}

/// A btrfs pool on a loop file and `kvol-csi` serving it; `Drop` kills the driver, unmounts everything
/// under the temp dir (deepest first) and detaches its loop devices.
struct Fixture {
    dir: tempfile::TempDir,
    socket: PathBuf,
    log: PathBuf,
    pool: PathBuf,
    driver: Option<Child>,
}

impl Fixture {
    fn start() -> Fixture {
        let dir = tempfile::Builder::new().prefix("kvol-volume-csi-").tempdir_in("/tmp").unwrap();
        let pool = dir.path().join("pool");
        std::fs::create_dir(&pool).unwrap();
        let mut fx = Fixture {
            socket: dir.path().join("csi.sock"),
            log: dir.path().join("driver.log"),
            pool,
            driver: None,
            dir,
        };
        let img = fx.dir.path().join("btrfs.img");
        sh("truncate", &["-s", "1G", img.to_str().unwrap()]);
        sh("mkfs.btrfs", &["-q", img.to_str().unwrap()]);
        sh("mount", &["-o", "loop", img.to_str().unwrap(), fx.pool.to_str().unwrap()]);
        let log = std::fs::File::create(&fx.log).unwrap();
        let child = Command::new(driver_binary())
            .arg("--endpoint")
            .arg(format!("unix://{}", fx.socket.display()))
            .args(["--nodeid", NODE, "--backend", "btrfs", "--pool"])
            .arg(&fx.pool)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        fx.driver = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !fx.socket.exists() {
            assert!(Instant::now() < deadline, "kvol-csi did not listen within 10s:\n{}", fx.driver_log());
            std::thread::sleep(Duration::from_millis(20));
        }
        fx
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.driver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn driver_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- work dir: {}\n--- kvol-csi log:\n{}", self.dir.path().display(), self.driver_log());
        }
        self.kill();
        let dir = self.dir.path().to_path_buf();
        for _ in 0..4 {
            let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let mut points: Vec<PathBuf> = table
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .map(|p| PathBuf::from(p.replace("\\040", " ")))
                .filter(|p| p.starts_with(&dir))
                .collect();
            if points.is_empty() {
                break;
            }
            points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
            for p in points {
                let _ = Command::new("umount").arg("-l").arg(&p).status();
            }
        }
        if let Ok(out) = Command::new("losetup").args(["-n", "-O", "NAME,BACK-FILE", "-l"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let mut cols = line.split_whitespace();
                if let (Some(dev), Some(file)) = (cols.next(), cols.next()) {
                    if Path::new(file).starts_with(&dir) {
                        let _ = Command::new("losetup").args(["-d", dev]).status();
                    }
                }
            }
        }
    }
}

/// The agent's side of the plugin contract, with the objects a test sets.
struct TestHost {
    root: PathBuf,
    mounter: Arc<dyn kvol_mount::Mounter>,
    csi_driver: Mutex<Option<CSIDriver>>,
    attachments: Mutex<HashMap<String, VolumeAttachment>>,
}

impl VolumeHost for TestHost {
    fn root_dir(&self) -> &Path {
        &self.root
    }
    fn mounter(&self) -> Arc<dyn kvol_mount::Mounter> {
        Arc::clone(&self.mounter)
    }
    fn config_map(&self, _: &str, _: &str) -> kvol_volume::Result<Option<ConfigMap>> {
        Ok(None)
    }
    fn secret(&self, _: &str, _: &str) -> kvol_volume::Result<Option<Secret>> {
        Ok(None)
    }
    fn node_name(&self) -> &str {
        NODE
    }
    fn csi_driver(&self, name: &str) -> kvol_volume::Result<Option<CSIDriver>> {
        Ok(self.csi_driver.lock().unwrap().clone().filter(|d| d.metadata.name.as_deref() == Some(name)))
    }
    fn volume_attachment(&self, name: &str) -> kvol_volume::Result<Option<VolumeAttachment>> {
        Ok(self.attachments.lock().unwrap().get(name).cloned())
    }
    fn pod(&self, _: &str, _: &str) -> kvol_volume::Result<Option<Pod>> {
        Ok(None)
    }
}

fn csi_driver_object() -> CSIDriver {
    CSIDriver {
        metadata: ObjectMeta { name: Some(DRIVER.into()), ..Default::default() },
        spec: CSIDriverSpec {
            attach_required: Some(true),
            pod_info_on_mount: Some(true),
            fs_group_policy: Some("File".into()),
            ..Default::default()
        },
    }
}

fn pv(name: &str, handle: &str) -> VolumeSpec {
    VolumeSpec::Persistent {
        pv: Box::new(PersistentVolume {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(PersistentVolumeSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                csi: Some(CSIPersistentVolumeSource {
                    driver: DRIVER.into(),
                    volume_handle: handle.into(),
                    volume_attributes: Some(BTreeMap::from([("origin".to_string(), "test".to_string())])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }),
        read_only: false,
    }
}

/// Registers the fixture's driver, as the plugin watcher would.
fn register(rt: &tokio::runtime::Runtime, fx: &Fixture) -> Arc<CsiDrivers> {
    let drivers = CsiDrivers::new();
    let _guard = rt.enter();
    drivers
        .register(DriverInfo {
            name: DRIVER.into(),
            endpoint: format!("unix://{}", fx.socket.display()),
            version: (1, 0, 0),
            node_id: NODE.into(),
            max_volumes_per_node: 0,
            topology: BTreeMap::new(),
        })
        .unwrap();
    drivers
}

#[test]
fn stages_publishes_and_tears_down_a_real_driver_volume_idempotently_and_after_a_restart() {
    if let Some(reason) = skip_reason() {
        eprintln!("SKIP {}: {reason}", module_path!());
        return;
    }
    let mut fx = Fixture::start();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let typed = Arc::new(TestHost {
        root: fx.root(),
        mounter: Arc::new(kvol_mount::RealMounter::new()),
        csi_driver: Mutex::new(Some(csi_driver_object())),
        attachments: Mutex::new(HashMap::new()),
    });
    let host: Arc<dyn VolumeHost> = typed.clone();

    // CreateVolume through the controller service.
    let channel = rt.block_on(kvol_csi::connect(fx.socket.to_str().unwrap())).unwrap();
    let cap = VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode { mode: Mode::SingleNodeWriter as i32 }),
    };
    let created = rt
        .block_on(ControllerClient::new(channel.clone()).create_volume(CreateVolumeRequest {
            name: "pvc-1".into(),
            capacity_range: Some(CapacityRange { required_bytes: 64 << 20, limit_bytes: 0 }),
            volume_capabilities: vec![cap],
            ..Default::default()
        }))
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let handle = created.volume_id.clone();
    let spec = pv("pv-1", &handle);

    let plugin = CsiPlugin::new(register(&rt, &fx), rt.handle().clone())
        .with_config(csi::CsiConfig { attach_wait: Duration::from_millis(300), ..Default::default() });
    assert!(plugin.can_support(&spec));
    let device = plugin.as_device().unwrap();
    assert_eq!(device.unique_name(&spec, host.as_ref()).unwrap(), format!("kubernetes.io/csi/{DRIVER}^{handle}"));
    assert!(device.requires_attach(&spec, host.as_ref()).unwrap());

    // Attach: no VolumeAttachment yet is an error after the wait; an attached one gives its name.
    let err = device.wait_for_attach(&spec, "", host.as_ref()).unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
    let attachment = csi::attachment_name(&handle, DRIVER, NODE);
    typed.attachments.lock().unwrap().insert(
        attachment.clone(),
        VolumeAttachment {
            metadata: ObjectMeta { name: Some(attachment.clone()), ..Default::default() },
            status: Some(VolumeAttachmentStatus {
                attached: true,
                attachment_metadata: Some(BTreeMap::from([("devicePath".to_string(), "none".to_string())])),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    assert_eq!(device.wait_for_attach(&spec, "", host.as_ref()).unwrap(), attachment);

    // Stage.
    let dmp = device.device_mount_path(&spec, host.as_ref()).unwrap();
    assert_eq!(dmp, csi::device_mount_path(&fx.root(), DRIVER, &handle));
    assert!(dmp.ends_with("globalmount"));
    device.mount_device(&spec, &attachment, &dmp, host.as_ref()).unwrap();
    assert_eq!(mount_count(&dmp), 1, "staged once");
    let device_data = VolumeData::load(dmp.parent().unwrap()).unwrap().expect("vol_data.json beside globalmount");
    assert_eq!((device_data.driver_name.as_str(), device_data.volume_handle.as_str()), (DRIVER, handle.as_str()));
    device.mount_device(&spec, &attachment, &dmp, host.as_ref()).unwrap();
    assert_eq!(mount_count(&dmp), 1, "a repeated stage changes nothing");
    let found = device.find_device_mounts(host.as_ref()).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].device_mount_path, dmp);
    assert_eq!(found[0].unique_name, format!("kubernetes.io/csi/{DRIVER}^{handle}"));

    // Publish into a pod, with fsGroup applied by the plugin (fsGroupPolicy File).
    let pod = PodRef { uid: "pod-uid-1".into(), namespace: "default".into(), name: "web".into() };
    let args = MounterArgs { fs_group: Some(4321), ..Default::default() };
    let mounter = plugin.new_mounter(&spec, &pod, &host).unwrap();
    let target = mounter.path();
    assert_eq!(target, fx.root().join("pods/pod-uid-1/volumes/kubernetes.io~csi/pv-1/mount"));
    mounter.set_up(&args).unwrap();
    assert_eq!(mount_count(&target), 1, "published once");
    assert_eq!(std::fs::metadata(&target).unwrap().gid(), 4321, "fsGroup applied");
    let pod_data = VolumeData::load(target.parent().unwrap()).unwrap().expect("vol_data.json beside mount");
    assert_eq!(pod_data, VolumeData::for_pod("pv-1", DRIVER, &handle, NODE, "Persistent"));
    std::fs::write(target.join("hello.txt"), b"hello from the pod").unwrap();
    assert_eq!(std::fs::read(dmp.join("hello.txt")).unwrap(), b"hello from the pod", "same volume as staged");
    mounter.set_up(&args).unwrap();
    assert_eq!(mount_count(&target), 1, "a repeated publish changes nothing");

    // Stats.
    let stats = rt
        .block_on(csi::volume_stats(plugin.drivers(), &fx.root(), &pod.uid, "pv-1", Duration::from_secs(10)))
        .unwrap()
        .expect("kvol-csi has GET_VOLUME_STATS");
    assert!(stats.capacity_bytes.unwrap_or(0) > 0, "{stats:?}");

    // A restart: a fresh plugin and registry tear down from vol_data.json alone.
    let plugin = CsiPlugin::new(register(&rt, &fx), rt.handle().clone());
    let device = plugin.as_device().unwrap();
    let unmounter = plugin.new_unmounter("pv-1", &pod.uid, &host).unwrap();
    assert_eq!(unmounter.path(), target);
    unmounter.tear_down().unwrap();
    assert_eq!(mount_count(&target), 0, "unpublished");
    assert!(!target.parent().unwrap().exists(), "pod volume dir and vol_data.json removed");
    unmounter.tear_down().unwrap();
    assert_eq!(mount_count(&dmp), 1, "still staged until unmount_device");

    let unique = device.unique_name(&spec, host.as_ref()).unwrap();
    device.unmount_device(&unique, &dmp, host.as_ref()).unwrap();
    assert_eq!(mount_count(&dmp), 0, "unstaged");
    assert!(!dmp.parent().unwrap().exists(), "global dir and vol_data.json removed");
    device.unmount_device(&unique, &dmp, host.as_ref()).unwrap();
    assert!(device.find_device_mounts(host.as_ref()).unwrap().is_empty());
    rt.block_on(
        ControllerClient::new(channel)
            .delete_volume(DeleteVolumeRequest { volume_id: handle.clone(), ..Default::default() }),
    )
    .unwrap();

    // A driver that is gone mid-call: uncertain, and the global dir is kept for the agent to check.
    fx.kill();
    let err = device.mount_device(&spec, &attachment, &dmp, host.as_ref()).unwrap_err();
    assert_eq!(err.class(), ErrorClass::Uncertain, "{err}");
    assert!(dmp.parent().unwrap().join(csi::VOL_DATA_FILE).exists());
}
