//! Fixtures: a kvol API server in-process (temp dir, free port) with a real `kube` client; the real
//! `kvol-csi` driver on a loop-mounted btrfs pool; the sidecar roles in-process against both.
//! Everything (the sidecar, the driver process, mounts, loop devices, the temp dir) is released in
//! `Drop`, also when a test fails; then the work dir and the driver's log are printed.

#![allow(dead_code)] // not every test uses every helper

pub mod fake;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kvol_csi_sidecar::{Backoff, Role, SidecarConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const DRIVER: &str = "csi.kvol.io";
pub const NODE: &str = "node-1";
pub const TOPOLOGY_KEY: &str = "topology.csi.kvol.io/node";
pub const MIB: i64 = 1 << 20;

/// Why tests needing the real driver cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid =
        status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1)).unwrap_or("");
    if uid != "0" {
        return Some("needs root (btrfs pool on a loop device)".into());
    }
    for tool in ["mkfs.btrfs", "btrfs", "losetup"] {
        if !["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|d| Path::new(d).join(tool).exists()) {
            return Some(format!("{tool} is missing (apt-get install btrfs-progs util-linux)"));
        }
    }
    if !driver_binary().exists() {
        return Some(format!(
            "{} is missing: run `cargo build -p kvol-csi-driver` first (or set KVOL_CSI_BIN)",
            driver_binary().display()
        ));
    }
    None
}

/// Skips the calling test with a message when the real driver cannot run here.
#[macro_export]
macro_rules! require_driver {
    () => {
        if let Some(reason) = $crate::util::skip_reason() {
            eprintln!("SKIP {}: {}", module_path!(), reason);
            return;
        }
    };
}

/// The kvol-csi binary: $KVOL_CSI_BIN, else target/debug/kvol-csi of this workspace.
pub fn driver_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("KVOL_CSI_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("debug/kvol-csi")
}

fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

async fn client_for(kubeconfig: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("client config");
    Client::try_from(config).expect("client")
}

/// Sidecar settings for tests: fast retries, small thresholds only where a test sets them.
pub fn test_config(socket: &Path, roles: &[Role]) -> SidecarConfig {
    let mut config = SidecarConfig::new(format!("unix://{}", socket.display()), roles.iter().copied().collect());
    config.provision_backoff = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(1) };
    config.attach_backoff = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(1) };
    config.resize_backoff = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(1) };
    config.create_pv_interval = Duration::from_millis(100);
    config.driver_wait = Duration::from_secs(10);
    config.identity = "test".into();
    config
}

/// A running task with a stop signal.
struct Running {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

/// The API server, optionally the driver, and optionally the sidecar.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub socket: PathBuf,
    pub pool: PathBuf,
    server: Option<Running>,
    sidecar: Option<Running>,
    driver: Option<Child>,
    driver_log: PathBuf,
}

impl Cluster {
    /// An API server only.
    pub async fn server() -> Cluster {
        if let Ok(filter) = std::env::var("KVOL_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
        let dir = tempfile::Builder::new().prefix("kvol-sidecar-test-").tempdir_in("/tmp").expect("temp dir");
        let data = dir.path().join("data");
        let config = kvol_apiserver::ServerConfig::new(data, "127.0.0.1:0".parse().unwrap());
        let kubeconfig = config.kubeconfig_path();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            kvol_apiserver::run(config, async {
                let _ = stopped.await;
            })
            .await
            .expect("kvol server");
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kubeconfig.exists() {
            assert!(Instant::now() < deadline, "kvol server did not become ready in {}", dir.path().display());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let client = client_for(&kubeconfig).await;
        Cluster {
            socket: dir.path().join("csi.sock"),
            pool: dir.path().join("pool"),
            driver_log: dir.path().join("driver.log"),
            dir,
            client,
            kubeconfig,
            server: Some(Running { stop, handle }),
            sidecar: None,
            driver: None,
        }
    }

    /// An API server and kvol-csi (btrfs backend, node `node-1`) on a 1 GiB loop-mounted btrfs pool.
    pub async fn with_driver() -> Cluster {
        let mut cluster = Cluster::server().await;
        std::fs::create_dir(&cluster.pool).unwrap();
        let img = cluster.dir.path().join("btrfs.img");
        sh("truncate", &["-s", "1G", img.to_str().unwrap()]);
        sh("mkfs.btrfs", &["-q", img.to_str().unwrap()]);
        sh("mount", &["-o", "loop", img.to_str().unwrap(), cluster.pool.to_str().unwrap()]);
        let log = std::fs::File::create(&cluster.driver_log).unwrap();
        let child = Command::new(driver_binary())
            .arg("--endpoint")
            .arg(format!("unix://{}", cluster.socket.display()))
            .args(["--nodeid", NODE, "--backend", "btrfs", "--mode", "all"])
            .arg("--pool")
            .arg(&cluster.pool)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kvol-csi starts");
        cluster.driver = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while kvol_csi::connect(cluster.socket.to_str().unwrap()).await.is_err() {
            if let Some(status) = cluster.driver.as_mut().unwrap().try_wait().unwrap() {
                panic!("kvol-csi exited with {status}:\n{}", cluster.driver_log());
            }
            assert!(Instant::now() < deadline, "kvol-csi did not listen within 10s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cluster
    }

    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(&self.driver_log).unwrap_or_default()
    }

    /// Starts the sidecar roles in-process with `config`.
    pub fn start_sidecar(&mut self, config: SidecarConfig) {
        let client = self.client.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            kvol_csi_sidecar::run_sidecar(client, config, async {
                let _ = stopped.await;
            })
            .await
            .expect("sidecar");
        });
        self.sidecar = Some(Running { stop, handle });
    }

    /// Stops the sidecar (as SIGTERM would) and waits for it.
    pub async fn stop_sidecar(&mut self) {
        if let Some(running) = self.sidecar.take() {
            let _ = running.stop.send(());
            let _ = running.handle.await;
        }
    }

    /// A CSI controller client on the driver, to check what the sidecar did.
    pub async fn controller(&self) -> kvol_csi::v1::controller_client::ControllerClient<tonic::transport::Channel> {
        kvol_csi::v1::controller_client::ControllerClient::new(
            kvol_csi::connect(self.socket.to_str().unwrap()).await.expect("driver socket"),
        )
    }

    /// Volume ids the driver has.
    pub async fn driver_volumes(&self) -> Vec<String> {
        let reply = self
            .controller()
            .await
            .list_volumes(kvol_csi::v1::ListVolumesRequest::default())
            .await
            .expect("ListVolumes")
            .into_inner();
        reply.entries.into_iter().filter_map(|e| e.volume.map(|v| v.volume_id)).collect()
    }

    /// Creates an object from JSON.
    pub async fn create<K>(&self, value: serde_json::Value) -> K
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
        K::Scope: ScopedApi<K>,
    {
        let obj: K = serde_json::from_value(value).expect("object JSON");
        let api = K::Scope::api(self.client.clone(), obj.meta().namespace.as_deref());
        api.create(&PostParams::default(), &obj).await.unwrap_or_else(|e| panic!("creating {:?}: {e}", obj.meta().name))
    }

    /// Merge-patches `name` (status subresource when `status`).
    pub async fn patch<K>(&self, ns: Option<&str>, name: &str, value: serde_json::Value, status: bool) -> K
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
        K::Scope: ScopedApi<K>,
    {
        let api = K::Scope::api(self.client.clone(), ns);
        let result = if status {
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&value)).await
        } else {
            api.patch(name, &PatchParams::default(), &Patch::Merge(&value)).await
        };
        result.unwrap_or_else(|e| panic!("patching {name} with {value}: {e}"))
    }

    /// Events about the object named `name`, as (reason, message, count).
    pub async fn events(&self, ns: &str, name: &str) -> Vec<(String, String, i32)> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let list = api.list(&ListParams::default()).await.expect("events");
        list.items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default(), e.count.unwrap_or(1)))
            .collect()
    }
}

/// `Api` for namespaced and cluster-scoped kinds alike.
pub trait ScopedApi<K> {
    fn api(client: Client, ns: Option<&str>) -> Api<K>;
}

impl<K> ScopedApi<K> for k8s_openapi::NamespaceResourceScope
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    fn api(client: Client, ns: Option<&str>) -> Api<K> {
        Api::namespaced(client, ns.unwrap_or("default"))
    }
}

impl<K> ScopedApi<K> for k8s_openapi::ClusterResourceScope
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>,
{
    fn api(client: Client, _: Option<&str>) -> Api<K> {
        Api::all(client)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- work dir: {}\n--- kvol-csi log:\n{}", self.dir.path().display(), self.driver_log());
        }
        if let Some(running) = self.sidecar.take() {
            running.handle.abort();
        }
        if let Some(running) = self.server.take() {
            let _ = running.stop.send(());
            running.handle.abort();
        }
        if let Some(mut child) = self.driver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        cleanup_under(self.dir.path());
    }
}

/// Unmounts everything under `dir` (deepest first) and detaches loop devices backed by files under it.
pub fn cleanup_under(dir: &Path) {
    for _ in 0..4 {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<PathBuf> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|p| PathBuf::from(p.replace("\\040", " ")))
            .filter(|p| p.starts_with(dir))
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
                if Path::new(file).starts_with(dir) {
                    let _ = Command::new("losetup").args(["-d", dev]).status();
                }
            }
        }
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `secs` seconds.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
