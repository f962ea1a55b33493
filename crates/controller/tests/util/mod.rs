//! A kvol API server (in-process, on a temp dir and a free port) with the controllers running against it
//! through a real `kube` client, plus kubectl. Failures print the work dir and the command output.

#![allow(dead_code)] // each test binary uses a different part of the harness

use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client};
use kvol_controller::{ControllerConfig, Metrics, ProvisionerRegistry};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const NODE: &str = "node1";

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub local_path: PathBuf,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    controllers: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    pub metrics: Arc<Metrics>,
}

async fn client_for(kubeconfig: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("client config");
    Client::try_from(config).expect("client")
}

impl Cluster {
    /// A server and the default controllers (local-path under the work dir, node `node1`).
    pub async fn start() -> Cluster {
        let mut cluster = Cluster::server().await;
        cluster.start_controllers(|_| {}, None);
        cluster.wait_ready().await;
        cluster
    }

    /// A server only.
    pub async fn server() -> Cluster {
        if let Ok(filter) = std::env::var("KVOL_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let config = kvol_apiserver::ServerConfig::new(data.clone(), "127.0.0.1:0".parse().unwrap());
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
        let local_path = dir.path().join("local-path");
        Cluster {
            dir,
            client,
            kubeconfig,
            local_path,
            server: Some((stop, handle)),
            controllers: None,
            metrics: Arc::default(),
        }
    }

    /// Start the controllers; `tune` adjusts the config, `registry` replaces the built-in provisioners.
    pub fn start_controllers(
        &mut self,
        tune: impl FnOnce(&mut ControllerConfig),
        registry: Option<ProvisionerRegistry>,
    ) {
        let mut config = ControllerConfig::new(Some(self.local_path.clone()), NODE);
        config.metrics = Arc::new(Metrics::default());
        tune(&mut config);
        self.metrics = config.metrics.clone();
        let client = self.client.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            let result = match registry {
                Some(r) => kvol_controller::run_controllers_with(client, config, r, shutdown).await,
                None => kvol_controller::run_controllers(client, config, shutdown).await,
            };
            result.expect("controllers");
        });
        self.controllers = Some((stop, handle));
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.metrics.ready.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "controllers did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stop the controllers abruptly (their in-flight requests are dropped, as in a crash).
    pub async fn kill_controllers(&mut self) {
        if let Some((_, handle)) = self.controllers.take() {
            handle.abort();
            let _ = handle.await;
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Run kubectl; panics with its output (and the work dir) when it fails.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl runs");
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed (work dir {}):\nstdout:\n{stdout}\nstderr:\n{}",
            self.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// kubectl apply of YAML text.
    pub fn apply(&self, yaml: &str) -> String {
        self.kubectl(&["apply", "-f", "-"], Some(yaml))
    }

    /// Events about an object (by name), as "Type Reason Message" lines.
    pub async fn events_for(&self, name: &str) -> Vec<(String, String, String, i32)> {
        let api: Api<Event> = Api::all(self.client.clone());
        let list = api.list(&ListParams::default()).await.expect("list events");
        list.items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                    e.count.unwrap_or(1),
                )
            })
            .collect()
    }

    /// Wait until `check` returns Some, or panic with `what` after `limit`.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, limit: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what} (work dir {})", self.path().display());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.controllers.take() {
            let _ = stop.send(());
            handle.abort();
        }
        if let Some((stop, _)) = self.server.take() {
            let _ = stop.send(());
        }
    }
}

/// The seeds' YAML, from the repository's examples.
pub fn seed(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seeds").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
