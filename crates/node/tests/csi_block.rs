//! A raw block CSI volume through the node agent, end to end: a real API server, the agent, the real
//! `kvol-csi` driver (loop backend) registered through kvol's node-driver-registrar, a PV with `csi` and
//! `volumeMode: Block` bound to a Block claim, and a pod with `volumeDevices`. The pod gets ready with its
//! device link pointing at the driver's block device (bytes written through it land on the volume); the
//! pod's deletion unmaps, unpublishes and unstages everything; so does a restarted agent for a pod deleted
//! while it was down, from what it finds on disk. Needs root and a built driver (`cargo build
//! -p kvol-csi-driver`); skips with a message otherwise. Mounts, loop devices and processes are released on
//! drop, pass or fail.

mod util;

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::CSIDriver;
use kube::api::PostParams;
use kube::Api;
use kvol_csi::v1::controller_client::ControllerClient;
use kvol_csi::v1::volume_capability::{access_mode::Mode, AccessMode, AccessType, BlockVolume};
use kvol_csi::v1::{CapacityRange, CreateVolumeRequest, VolumeCapability};
use kvol_node::plugin_watcher::registry_dir;
use kvol_volume::plugins::csi::{self, CsiDrivers, CsiPlugin};
use kvol_volume::{PluginRegistry, VolumeSpec};
use serde_json::json;
use util::*;

const DRIVER: &str = "csi.kvol.io";
const PV: &str = "pv-raw";
const T: Duration = Duration::from_secs(20);
const PAYLOAD: &[u8] = b"written through the pod's device link";
const OFFSET: u64 = 1 << 20;

fn driver_binary() -> PathBuf {
    std::env::var_os("KVOL_CSI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/kvol-csi"))
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

/// The driver process and what it may leave: killed, unmounted and detached on drop (before the cluster's
/// own cleanup, being declared after it).
struct DriverGuard {
    child: Child,
    work: PathBuf,
    log: PathBuf,
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- kvol-csi log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let cluster_dir = self.work.parent().expect("the work dir is in the cluster's dir").to_path_buf();
        detach_all_under(&cluster_dir);
        for (dev, _) in loop_devices_under(&cluster_dir) {
            let _ = Command::new("losetup").arg("-d").arg(&dev).status();
        }
    }
}

fn start_driver(work: &Path) -> Result<(DriverGuard, PathBuf)> {
    let pool = work.join("pool");
    std::fs::create_dir_all(&pool)?;
    let socket = work.join("csi.sock");
    let log = work.join("driver.log");
    let child = Command::new(driver_binary())
        .arg("--endpoint")
        .arg(format!("unix://{}", socket.display()))
        .args(["--nodeid", NODE, "--backend", "loop", "--pool"])
        .arg(&pool)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting kvol-csi")?;
    Ok((DriverGuard { child, work: work.to_path_buf(), log }, socket))
}

async fn create<K>(api: &Api<K>, value: serde_json::Value) -> Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    Ok(api.create(&PostParams::default(), &serde_json::from_value(value)?).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_volume_devices_gets_its_csi_block_device_and_loses_it_with_the_pod() -> Result<()> {
    require_root!();
    if !driver_binary().exists() {
        eprintln!("SKIP: {} is missing: run `cargo build -p kvol-csi-driver` first", driver_binary().display());
        return Ok(());
    }
    let cluster = Cluster::start().await?;
    let work = cluster.work("driver");
    let (_driver, socket) = start_driver(&work)?;
    let pool = work.join("pool");
    let root = cluster.root();
    let agent = Agent::start(&cluster);

    // The driver says it needs no attach; without this object the agent would wait for a VolumeAttachment.
    let csidrivers: Api<CSIDriver> = Api::all(cluster.client.clone());
    create(&csidrivers, json!({ "metadata": { "name": DRIVER }, "spec": { "attachRequired": false } })).await?;

    // Registration, as the node-driver-registrar sidecar does it.
    let registry = registry_dir(&root);
    eventually("the agent's plugins_registry", T, || registry.is_dir()).await?;
    let mut config = kvol_csi_sidecar::RegistrarConfig::new(
        format!("unix://{}", socket.display()),
        socket.to_string_lossy().into_owned(),
    );
    config.plugin_registration_path = registry.clone();
    config.driver_wait = Duration::from_secs(10);
    let (stop_registrar, registrar_stopped) = tokio::sync::oneshot::channel::<()>();
    let registrar = tokio::spawn(kvol_csi_sidecar::run_registrar(config, async {
        let _ = registrar_stopped.await;
    }));

    // A block volume from the driver, its PV and a Block claim bound to it (once the driver, started above,
    // listens: on a loaded machine it may not have bound its socket yet).
    eventually("the driver's socket", T, || socket.exists()).await?;
    let channel = kvol_csi::connect(socket.to_str().unwrap()).await?;
    let cap = VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode { mode: Mode::SingleNodeWriter as i32 }),
    };
    let volume = ControllerClient::new(channel)
        .create_volume(CreateVolumeRequest {
            name: "pvc-raw".into(),
            capacity_range: Some(CapacityRange { required_bytes: 16 << 20, limit_bytes: 0 }),
            volume_capabilities: vec![cap],
            ..Default::default()
        })
        .await?
        .into_inner()
        .volume
        .context("CreateVolume returned no volume")?;
    let handle = volume.volume_id;
    let pvs: Api<PersistentVolume> = Api::all(cluster.client.clone());
    create(
        &pvs,
        json!({
            "metadata": { "name": PV },
            "spec": {
                "capacity": { "storage": "16Mi" },
                "accessModes": ["ReadWriteOnce"],
                "volumeMode": "Block",
                "persistentVolumeReclaimPolicy": "Retain",
                "csi": { "driver": DRIVER, "volumeHandle": handle },
            }
        }),
    )
    .await?;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), "default");
    create(
        &pvcs,
        json!({
            "metadata": { "name": "raw" },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "volumeMode": "Block",
                "storageClassName": "",
                "resources": { "requests": { "storage": "16Mi" } },
            }
        }),
    )
    .await?;
    cluster.bind(PV, "raw").await?;

    // The pod: ready once its device is mapped.
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    create(&pods, raw_pod("raw-1")).await?;
    let pod = cluster.wait_ready("raw-1", T).await?;
    let uid = pod.metadata.uid.clone().context("uid")?;
    let link = root.join("pods").join(&uid).join("volumeDevices/kubernetes.io~csi").join(PV);
    let publish = csi::block_publish_path(&root, PV, &uid);
    ensure!(std::fs::read_link(&link)? == publish, "{} points at the publish path", link.display());
    let device = std::fs::metadata(&link)?;
    ensure!(device.file_type().is_block_device(), "a block device behind {}", link.display());
    let loops = loop_devices_under(&pool);
    ensure!(loops.len() == 1, "one loop device for the volume: {loops:?}");
    ensure!(std::fs::metadata(&loops[0].0)?.rdev() == device.rdev(), "the link leads to the driver's device");
    ensure!(single_mount(&publish).is_ok(), "published once");
    ensure!(
        single_mount(&csi::block_global_map_path(&root, PV).join(&uid)).is_ok(),
        "bound once into the global map path"
    );
    ensure!(csi::block_staging_path(&root, PV).is_dir(), "staged at kubelet's block staging path");

    // What a container runtime is told: the link at the container's devicePath.
    let plugins =
        PluginRegistry::with([Arc::new(CsiPlugin::new(CsiDrivers::new(), tokio::runtime::Handle::current()))
            as Arc<dyn kvol_volume::VolumePlugin>])?;
    let spec = VolumeSpec::Persistent { pv: Box::new(pvs.get(PV).await?), read_only: false };
    let volumes = BTreeMap::from([("data".to_string(), kvol_node::volume_path(&root, &uid, &plugins, &spec)?)]);
    let devices = kvol_node::container_mounts::container_devices(&pod, "c", &volumes)?;
    ensure!(devices.len() == 1, "{devices:?}");
    ensure!(devices[0].path_on_host == link && devices[0].path_in_container == "/dev/xvda", "{devices:?}");
    ensure!(devices[0].permissions == "mrw", "{devices:?}");
    ensure!(kvol_node::container_mounts(&root, &pod, "c", &volumes)?.is_empty(), "no mounts for a device");

    // Bytes written through the link are on the volume's file.
    {
        let mut dev = std::fs::OpenOptions::new().read(true).write(true).open(&link)?;
        dev.seek(SeekFrom::Start(OFFSET))?;
        dev.write_all(PAYLOAD)?;
        dev.sync_all()?;
    }
    let mut read = vec![0u8; PAYLOAD.len()];
    let mut backing = std::fs::File::open(&loops[0].1)?;
    backing.seek(SeekFrom::Start(OFFSET))?;
    backing.read_exact(&mut read)?;
    ensure!(read == PAYLOAD, "the bytes reached the backing file");

    // Deleting the pod unmaps, unpublishes and unstages everything, then removes the pod's directory.
    cluster.kubectl(&["delete", "pod", "raw-1", "--wait=false"], None)?;
    cluster.wait_gone("raw-1", T).await?;
    eventually("the pod's directory removed", T, || !root.join("pods").join(&uid).exists()).await?;
    eventually("the volume unstaged", T, || !csi::block_staging_path(&root, PV).exists()).await?;
    eventually("the loop device detached", T, || loop_devices_under(&pool).is_empty()).await?;
    ensure!(mounts_under(&root).is_empty(), "mounts left: {:?}", mounts_under(&root));
    for gone in [csi::block_publish_dir(&root, PV), csi::block_volume_dir(&root, PV)] {
        ensure!(!gone.exists(), "{} left", gone.display());
    }

    // After a restart: a second pod is mapped, the agent dies, the pod is deleted meanwhile; the new
    // agent finds the device link and the stage on disk and tears both down.
    create(&pods, raw_pod("raw-2")).await?;
    let pod = cluster.wait_ready("raw-2", T).await?;
    let uid = pod.metadata.uid.clone().context("uid")?;
    let link = root.join("pods").join(&uid).join("volumeDevices/kubernetes.io~csi").join(PV);
    let mut dev = std::fs::File::open(&link)?;
    dev.seek(SeekFrom::Start(OFFSET))?;
    dev.read_exact(&mut read)?;
    drop(dev);
    ensure!(read == PAYLOAD, "the second pod reads what the first wrote");
    agent.kill();
    cluster.kubectl(&["delete", "pod", "raw-2", "--wait=false"], None)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(std::fs::symlink_metadata(&link).is_ok(), "nothing tears down without an agent");
    let agent = Agent::start(&cluster);
    cluster.wait_gone("raw-2", T).await?;
    eventually("the pod's directory removed after the restart", T, || !root.join("pods").join(&uid).exists()).await?;
    eventually("the volume unstaged after the restart", T, || !csi::block_staging_path(&root, PV).exists()).await?;
    eventually("the loop device detached after the restart", T, || loop_devices_under(&pool).is_empty()).await?;
    ensure!(mounts_under(&root).is_empty(), "mounts left: {:?}", mounts_under(&root));
    ensure!(!csi::block_volume_dir(&root, PV).exists(), "vol_data.json removed with the stage");

    let _ = stop_registrar.send(());
    registrar.await??;
    agent.stop().await
}

fn raw_pod(name: &str) -> serde_json::Value {
    on_node(json!({
        "metadata": { "name": name },
        "spec": {
            "containers": [{ "name": "c", "image": "busybox",
                "volumeDevices": [{ "name": "data", "devicePath": "/dev/xvda" }] }],
            "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": "raw" } }],
        }
    }))
}
