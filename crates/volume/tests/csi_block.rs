//! Raw block CSI volumes through the plugin, against the real `kvol-csi` driver (loop backend): stage a
//! block volume at kubelet's `volumeDevices/staging/<pv>`, map it into a pod (publish file, global map bind,
//! the pod's link), write through the link, unmap and unstage, map it into a second pod and read the bytes
//! back, then tear everything down with a fresh plugin (a restart) from what is on disk. Mounts and loop
//! devices are checked at each step. Needs root, losetup and a built driver (`cargo build -p
//! kvol-csi-driver`); skips with a message otherwise. Every mount and loop device under the test's temp dir
//! is released on drop, pass or fail; failures print the work dir and the driver's log.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, ConfigMap, PersistentVolume, PersistentVolumeSpec, Secret,
};
use k8s_openapi::api::storage::v1::{CSIDriver, CSIDriverSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kvol_csi::v1::controller_client::ControllerClient;
use kvol_csi::v1::volume_capability::{access_mode::Mode, AccessMode, AccessType, BlockVolume};
use kvol_csi::v1::{CapacityRange, CreateVolumeRequest, DeleteVolumeRequest, VolumeCapability};
use kvol_volume::plugins::csi::{self, CsiDrivers, CsiPlugin, DriverInfo, VolumeData};
use kvol_volume::{MounterArgs, PodRef, VolumeHost, VolumePlugin, VolumeSpec};

const DRIVER: &str = "csi.kvol.io";
const NODE: &str = "node-1";
const PV: &str = "pv-block";
const OFFSET: u64 = 3 << 20;
const PAYLOAD: &[u8] = b"kvol raw block payload";

fn skip_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root (mounts and loop devices)".into());
    }
    if !["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|d| Path::new(d).join("losetup").exists()) {
        return Some("losetup is missing (apt-get install util-linux)".into());
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

/// Mount points of this process's mount table, unescaped.
fn mount_points() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .collect()
}

/// Every path under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

fn mount_count(path: &Path) -> usize {
    mount_points().iter().filter(|p| *p == path).count()
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mount_points().into_iter().filter(|p| p.starts_with(dir)).collect()
}

/// `(device, backing file)` of every loop device backed by a file under `dir`.
fn loop_devices_under(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let out = Command::new("losetup").args(["-n", "-O", "NAME,BACK-FILE", "-l"]).output().expect("losetup");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            Some((PathBuf::from(cols.next()?), PathBuf::from(cols.next()?)))
        })
        .filter(|(_, file)| file.starts_with(dir))
        .collect()
}

/// A loop-file pool and `kvol-csi` serving it; `Drop` kills the driver, unmounts everything under the temp
/// dir (deepest first) and detaches its loop devices.
struct Fixture {
    dir: tempfile::TempDir,
    socket: PathBuf,
    log: PathBuf,
    driver: Option<Child>,
}

impl Fixture {
    fn start() -> Fixture {
        let dir = tempfile::Builder::new().prefix("kvol-volume-csi-block-").tempdir_in("/tmp").unwrap();
        let pool = dir.path().join("pool");
        std::fs::create_dir(&pool).unwrap();
        let mut fx =
            Fixture { socket: dir.path().join("csi.sock"), log: dir.path().join("driver.log"), driver: None, dir };
        let log = std::fs::File::create(&fx.log).unwrap();
        let child = Command::new(driver_binary())
            .arg("--endpoint")
            .arg(format!("unix://{}", fx.socket.display()))
            .args(["--nodeid", NODE, "--backend", "loop", "--pool"])
            .arg(&pool)
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

    fn driver_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn pool(&self) -> PathBuf {
        self.dir.path().join("pool")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- work dir: {}\n--- kvol-csi log:\n{}", self.dir.path().display(), self.driver_log());
        }
        if let Some(mut child) = self.driver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let dir = self.dir.path().to_path_buf();
        for _ in 0..4 {
            let mut points = mounts_under(&dir);
            if points.is_empty() {
                break;
            }
            points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
            for p in points {
                let _ = Command::new("umount").arg("-l").arg(&p).status();
            }
        }
        for (dev, _) in loop_devices_under(&dir) {
            let _ = Command::new("losetup").arg("-d").arg(&dev).status();
        }
    }
}

/// The agent's side of the plugin contract: a CSIDriver that needs no attach.
struct TestHost {
    root: PathBuf,
    mounter: Arc<dyn kvol_mount::Mounter>,
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
        Ok((name == DRIVER).then(|| CSIDriver {
            metadata: ObjectMeta { name: Some(DRIVER.into()), ..Default::default() },
            spec: CSIDriverSpec { attach_required: Some(false), ..Default::default() },
        }))
    }
}

fn block_pv(handle: &str) -> VolumeSpec {
    VolumeSpec::Persistent {
        pv: Box::new(PersistentVolume {
            metadata: ObjectMeta { name: Some(PV.into()), ..Default::default() },
            spec: Some(PersistentVolumeSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                volume_mode: Some("Block".into()),
                csi: Some(CSIPersistentVolumeSource {
                    driver: DRIVER.into(),
                    volume_handle: handle.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }),
        read_only: false,
    }
}

fn plugin(rt: &tokio::runtime::Runtime, fx: &Fixture) -> CsiPlugin {
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
    CsiPlugin::new(drivers, rt.handle().clone())
}

fn pod(n: u32) -> PodRef {
    PodRef { uid: format!("pod-uid-{n}"), namespace: "default".into(), name: format!("raw-{n}") }
}

/// What a mapped pod must have: the link to its publish file, a block device there (the driver's loop
/// device), bound once into the global map path.
fn assert_mapped(fx: &Fixture, pod: &PodRef, link: &Path) -> u64 {
    let root = fx.root();
    let publish = csi::block_publish_path(&root, PV, &pod.uid);
    assert_eq!(link, csi::pod_device_link(&root, &pod.uid, PV));
    assert_eq!(std::fs::read_link(link).unwrap(), publish, "the pod's link points at its publish path");
    let device = std::fs::metadata(link).unwrap();
    assert!(device.file_type().is_block_device(), "a block device behind {}", link.display());
    assert_eq!(mount_count(&publish), 1, "published once at {}", publish.display());
    let global_ref = csi::block_global_map_path(&root, PV).join(&pod.uid);
    assert_eq!(mount_count(&global_ref), 1, "bound once into the global map path");
    assert_eq!(std::fs::metadata(&global_ref).unwrap().rdev(), device.rdev());
    let loops = loop_devices_under(&fx.pool());
    assert_eq!(loops.len(), 1, "one loop device for the volume: {loops:?}");
    assert_eq!(std::fs::metadata(&loops[0].0).unwrap().rdev(), device.rdev(), "the driver's device is mapped");
    device.rdev()
}

fn assert_unmapped(fx: &Fixture, pod: &PodRef) {
    let root = fx.root();
    let link = csi::pod_device_link(&root, &pod.uid, PV);
    assert!(std::fs::symlink_metadata(&link).is_err(), "link {} removed", link.display());
    assert!(!link.parent().unwrap().exists(), "the pod's empty kubernetes.io~csi device dir removed");
    let publish = csi::block_publish_path(&root, PV, &pod.uid);
    assert!(std::fs::symlink_metadata(&publish).is_err(), "publish file {} removed", publish.display());
    assert!(!csi::block_global_map_path(&root, PV).join(&pod.uid).exists(), "global map file removed");
    let pod_mounts: Vec<_> =
        mounts_under(&root).into_iter().filter(|p| p.to_string_lossy().contains(&pod.uid)).collect();
    assert!(pod_mounts.is_empty(), "mounts of {} left: {pod_mounts:?}", pod.uid);
}

fn assert_unstaged(fx: &Fixture) {
    let root = fx.root();
    assert!(mounts_under(&root).is_empty(), "mounts left: {:?}", mounts_under(&root));
    assert!(loop_devices_under(&fx.pool()).is_empty(), "loop devices left: {:?}", loop_devices_under(&fx.pool()));
    for gone in
        [csi::block_staging_path(&root, PV), csi::block_publish_dir(&root, PV), csi::block_volume_dir(&root, PV)]
    {
        assert!(!gone.exists(), "{} removed", gone.display());
    }
}

#[test]
fn a_block_volume_is_staged_mapped_written_unmapped_and_read_back_in_another_pod() {
    if let Some(reason) = skip_reason() {
        eprintln!("SKIP {}: {reason}", module_path!());
        return;
    }
    let fx = Fixture::start();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let host: Arc<dyn VolumeHost> =
        Arc::new(TestHost { root: fx.root(), mounter: Arc::new(kvol_mount::RealMounter::new()) });

    // CreateVolume with a block capability.
    let channel = rt.block_on(kvol_csi::connect(fx.socket.to_str().unwrap())).unwrap();
    let cap = VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode { mode: Mode::SingleNodeWriter as i32 }),
    };
    let created = rt
        .block_on(ControllerClient::new(channel.clone()).create_volume(CreateVolumeRequest {
            name: "pvc-block".into(),
            capacity_range: Some(CapacityRange { required_bytes: 16 << 20, limit_bytes: 0 }),
            volume_capabilities: vec![cap],
            ..Default::default()
        }))
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let handle = created.volume_id.clone();
    let spec = block_pv(&handle);
    let unique = format!("kubernetes.io/csi/{DRIVER}^{handle}");

    let plugin = plugin(&rt, &fx);
    let device = plugin.as_device().unwrap();
    assert_eq!(device.unique_name(&spec, host.as_ref()).unwrap(), unique, "the unique name does not change");
    assert!(!device.requires_attach(&spec, host.as_ref()).unwrap());
    assert_eq!(device.wait_for_attach(&spec, "", host.as_ref()).unwrap(), "");

    // Stage at kubelet's block staging directory, twice.
    let staging = device.device_mount_path(&spec, host.as_ref()).unwrap();
    assert_eq!(staging, fx.root().join("plugins/kubernetes.io/csi/volumeDevices/staging").join(PV));
    device.mount_device(&spec, "", &staging, host.as_ref()).unwrap();
    device.mount_device(&spec, "", &staging, host.as_ref()).unwrap();
    assert!(staging.is_dir(), "the staging path is a directory");
    let data = VolumeData::load(&csi::block_data_dir(&fx.root(), PV)).unwrap().expect("vol_data.json in data/");
    assert_eq!((data.driver_name.as_str(), data.volume_handle.as_str()), (DRIVER, handle.as_str()));
    assert_eq!(data.spec_vol_id.as_deref(), Some(PV));
    assert_eq!(loop_devices_under(&fx.pool()).len(), 1, "staging attached the volume's loop device");
    assert!(mounts_under(&fx.root()).is_empty(), "a block stage mounts nothing");
    let found = device.find_device_mounts(host.as_ref()).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].unique_name.as_str(), found[0].device_mount_path.as_path()),
        (unique.as_str(), staging.as_path())
    );

    // Map into the first pod, twice; write through the pod's link.
    let first = pod(1);
    let mapper = plugin.new_mounter(&spec, &first, &host).unwrap();
    let link = mapper.path();
    mapper.set_up(&MounterArgs::default()).unwrap();
    mapper.set_up(&MounterArgs::default()).unwrap();
    assert_mapped(&fx, &first, &link);
    {
        let mut dev = std::fs::OpenOptions::new().read(true).write(true).open(&link).unwrap();
        dev.seek(SeekFrom::Start(OFFSET)).unwrap();
        dev.write_all(PAYLOAD).unwrap();
        dev.sync_all().unwrap();
    }

    // NodeGetVolumeStats is asked at the pod's publish file.
    let stats = rt
        .block_on(csi::volume_stats(plugin.drivers(), &fx.root(), &first.uid, PV, Duration::from_secs(10)))
        .unwrap()
        .expect("the driver reports block volume stats");
    assert_eq!(stats.capacity_bytes, Some(16 << 20), "{stats:?}");

    // The device phase refuses to unstage while a pod has the device mapped.
    let err = device.unmount_device(&unique, &staging, host.as_ref()).unwrap_err();
    assert!(err.to_string().contains("still referenced"), "{err}");
    assert_eq!(loop_devices_under(&fx.pool()).len(), 1, "still attached");

    // Unmap (twice), unstage (twice).
    let unmapper = plugin.new_unmounter(PV, &first.uid, &host).unwrap();
    assert_eq!(unmapper.path(), link, "the unmapper knows the volume is mapped, not mounted");
    unmapper.tear_down().unwrap();
    unmapper.tear_down().unwrap();
    assert_unmapped(&fx, &first);
    assert_eq!(loop_devices_under(&fx.pool()).len(), 1, "unmapping keeps the stage");
    device.unmount_device(&unique, &staging, host.as_ref()).unwrap();
    device.unmount_device(&unique, &staging, host.as_ref()).unwrap();
    assert_unstaged(&fx);
    assert!(device.find_device_mounts(host.as_ref()).unwrap().is_empty());

    // Stage again and map into a second pod: the bytes are there.
    device.mount_device(&spec, "", &staging, host.as_ref()).unwrap();
    let second = pod(2);
    let mapper = plugin.new_mounter(&spec, &second, &host).unwrap();
    mapper.set_up(&MounterArgs::default()).unwrap();
    assert_mapped(&fx, &second, &mapper.path());
    let mut read = vec![0u8; PAYLOAD.len()];
    {
        let mut dev = std::fs::File::open(mapper.path()).unwrap();
        dev.seek(SeekFrom::Start(OFFSET)).unwrap();
        dev.read_exact(&mut read).unwrap();
    }
    assert_eq!(read, PAYLOAD, "the second pod reads what the first wrote");

    // A restart: a fresh plugin finds the stage on disk and tears everything down from there.
    let restarted = self::plugin(&rt, &fx);
    let restarted_device = restarted.as_device().unwrap();
    let found = restarted_device.find_device_mounts(host.as_ref()).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    restarted.new_unmounter(PV, &second.uid, &host).unwrap().tear_down().unwrap();
    assert_unmapped(&fx, &second);
    restarted_device.unmount_device(&found[0].unique_name, &found[0].device_mount_path, host.as_ref()).unwrap();
    assert_unstaged(&fx);

    rt.block_on(
        ControllerClient::new(channel)
            .delete_volume(DeleteVolumeRequest { volume_id: handle.clone(), secrets: Default::default() }),
    )
    .unwrap();
    let left: Vec<PathBuf> = walk(&fx.pool()).into_iter().filter(|p| p.to_string_lossy().contains(&handle)).collect();
    assert!(left.is_empty(), "the volume's files are deleted: {left:?}");
}
