//! Test harness: an in-process API server, the agent (in-process or as a child process), kubectl, and
//! mount-table checks. Every mount under a test's root is detached when the test ends, pass or fail, and
//! failures print the work dir.

#![allow(dead_code)] // Each test uses a different part of the harness.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use kvol_node::AgentConfig;
use serde_json::{json, Value};

pub const NODE: &str = "node-1";

/// Skips the test (returns) unless running as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root for real mounts");
            return Ok(());
        }
    };
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("KVOL_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// An API server on a random port, with a kube client and a kubeconfig for kubectl.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub client: Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Cluster {
    pub async fn start() -> Result<Cluster> {
        init_tracing();
        let dir = tempfile::Builder::new().prefix("kvol-node-test").tempdir()?;
        let data = dir.path().join("server");
        let config = kvol_apiserver::ServerConfig::new(data.clone(), "127.0.0.1:0".parse()?);
        let kubeconfig = config.kubeconfig_path();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            if let Err(e) = kvol_apiserver::run(config, async {
                let _ = rx.await;
            })
            .await
            {
                eprintln!("API server failed: {e}");
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while !kubeconfig.exists() {
            if Instant::now() > deadline {
                bail!("API server did not write {}", kubeconfig.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let client = client_from(&kubeconfig).await?;
        Ok(Cluster { dir, kubeconfig, client, shutdown: Some(tx) })
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn work(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn config(&self) -> AgentConfig {
        let mut c = AgentConfig::new(NODE, self.root());
        c.mount_timeout = Duration::from_secs(3);
        c.usage_check_period = Duration::from_millis(500);
        c
    }

    /// Runs `kubectl` against the cluster with `stdin`; returns stdout.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running kubectl")?;
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes())?;
        }
        drop(child.stdin.take());
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kubectl {args:?} failed (work dir {}): {}{}",
                self.dir.path().display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// A seed manifest's objects as JSON (kubectl's own conversion needs discovery of every kind in the
    /// file, and kvol does not serve ReplicationController).
    pub fn seed(&self, file: &str) -> Result<Vec<Value>> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seeds").join(file);
        let text = std::fs::read_to_string(&path)?;
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
    }

    /// `kubectl create <args>` (configmap, secret); an existing object is replaced, as the tests update
    /// ConfigMaps by creating them again.
    pub fn create(&self, args: &[&str]) -> Result<()> {
        let mut full = vec!["create"];
        full.extend_from_slice(args);
        match self.kubectl(&full, None) {
            Err(e) if e.to_string().contains("AlreadyExists") || e.to_string().contains("already exists") => {
                full.extend_from_slice(&["--dry-run=client", "-o", "json"]);
                let json = self.kubectl(&full, None)?;
                self.kubectl(&["apply", "-f", "-"], Some(&json)).map(drop)
            }
            other => other.map(drop),
        }
    }

    /// `kubectl apply -f -` of a JSON object.
    pub fn apply(&self, obj: &Value) -> Result<()> {
        self.kubectl(&["apply", "-f", "-"], Some(&obj.to_string())).map(drop)
    }

    pub async fn pod(&self, name: &str) -> Result<Option<Pod>> {
        Ok(Api::<Pod>::namespaced(self.client.clone(), "default").get_opt(name).await?)
    }

    /// Waits until the pod's volumes-ready condition is True; returns the pod.
    pub async fn wait_ready(&self, name: &str, timeout: Duration) -> Result<Pod> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pod) = self.pod(name).await? {
                if condition(&pod).is_some_and(|c| c.0 == "True") {
                    return Ok(pod);
                }
            }
            if Instant::now() > deadline {
                let events = self.events(name).await.unwrap_or_default();
                bail!(
                    "pod {name} not ready after {timeout:?}; condition {:?}; events {events:?}; work dir {}",
                    self.pod(name).await?.as_ref().and_then(condition),
                    self.dir.path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the pod object is gone.
    pub async fn wait_gone(&self, name: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.pod(name).await?.is_some() {
            if Instant::now() > deadline {
                bail!("pod {name} still exists after {timeout:?}; work dir {}", self.dir.path().display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// `(reason, message)` of the events about a pod.
    pub async fn events(&self, pod: &str) -> Result<Vec<(String, String)>> {
        let events = Api::<Event>::namespaced(self.client.clone(), "default").list(&ListParams::default()).await?;
        Ok(events
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(pod))
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect())
    }

    pub async fn wait_event(&self, pod: &str, reason: &str, contains: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events(pod).await?;
            if let Some((_, m)) = events.iter().find(|(r, m)| r == reason && m.contains(contains)) {
                return Ok(m.clone());
            }
            if Instant::now() > deadline {
                bail!("no {reason} event containing {contains:?} for {pod}: {events:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Binds a PV to a claim by hand, as the PV controller would.
    pub async fn bind(&self, pv: &str, claim: &str) -> Result<()> {
        use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), "default");
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        let c = pvcs.get(claim).await?;
        let mut p = pvs.get(pv).await?;
        p.spec.as_mut().unwrap().claim_ref = Some(k8s_openapi::api::core::v1::ObjectReference {
            kind: Some("PersistentVolumeClaim".into()),
            api_version: Some("v1".into()),
            namespace: Some("default".into()),
            name: Some(claim.into()),
            uid: c.metadata.uid.clone(),
            ..Default::default()
        });
        let p = pvs.replace(pv, &PostParams::default(), &p).await?;
        let mut p = p;
        p.status = Some(k8s_openapi::api::core::v1::PersistentVolumeStatus {
            phase: Some("Bound".into()),
            ..Default::default()
        });
        pvs.replace_status(pv, &PostParams::default(), &p).await?;
        let mut c = pvcs.get(claim).await?;
        c.spec.as_mut().unwrap().volume_name = Some(pv.into());
        let c = pvcs.replace(claim, &PostParams::default(), &c).await?;
        let mut c = c;
        c.status = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimStatus {
            phase: Some("Bound".into()),
            ..Default::default()
        });
        pvcs.replace_status(claim, &PostParams::default(), &c).await?;
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        detach_all_under(self.dir.path());
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if std::thread::panicking() {
            eprintln!("test failed; work dir was {}", self.dir.path().display());
        }
    }
}

pub async fn client_from(kubeconfig: &Path) -> Result<Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// `(status, message)` of the volumes-ready condition.
pub fn condition(pod: &Pod) -> Option<(String, String)> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kvol_node::VOLUMES_READY)
        .map(|c| (c.status.clone(), c.message.clone().unwrap_or_default()))
}

/// Sets `spec.nodeName` the way a scheduler's binding would, before creation.
pub fn on_node(mut pod: Value) -> Value {
    pod["spec"]["nodeName"] = json!(NODE);
    pod
}

/// The agent running as a task of this runtime; `kill` aborts it (mounts stay, as after a crash).
pub struct Agent {
    handle: tokio::task::JoinHandle<kvol_node::Result<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Agent {
    pub fn start(cluster: &Cluster) -> Agent {
        Self::start_with(cluster.client.clone(), cluster.config(), Arc::new(kvol_mount::RealMounter::new()))
    }

    pub fn start_with(client: Client, config: AgentConfig, mounter: Arc<dyn kvol_mount::Mounter>) -> Agent {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(kvol_node::run_agent_with(client, config, mounter, async {
            let _ = rx.await;
        }));
        Agent { handle, stop: Some(tx) }
    }

    pub async fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.handle).await?.map_err(|e| anyhow!(e))
    }

    pub fn kill(self) {
        self.handle.abort();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Mount points under `dir` (resolved), from this process's mount table, with how often each appears.
pub fn mounts_under(dir: &Path) -> BTreeMap<PathBuf, Vec<kvol_mount::MountInfo>> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut out: BTreeMap<PathBuf, Vec<kvol_mount::MountInfo>> = BTreeMap::new();
    for m in kvol_mount::read_mountinfo().unwrap() {
        if m.mount_point.starts_with(&dir) {
            out.entry(m.mount_point.clone()).or_default().push(m);
        }
    }
    out
}

/// The mount at exactly `path`, requiring that there is exactly one.
pub fn single_mount(path: &Path) -> Result<kvol_mount::MountInfo> {
    let path = std::fs::canonicalize(path)?;
    let all: Vec<_> = kvol_mount::read_mountinfo()?.into_iter().filter(|m| m.mount_point == path).collect();
    match all.as_slice() {
        [one] => Ok(one.clone()),
        other => bail!("{} mounts at {}: {other:?}", other.len(), path.display()),
    }
}

/// Detaches every mount under `dir`, deepest first (test cleanup, also on failure).
pub fn detach_all_under(dir: &Path) {
    for _ in 0..4 {
        let mut points: Vec<PathBuf> = mounts_under(dir).into_keys().collect();
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in points {
            let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Polls `f` until it returns true.
pub async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

pub fn volume_dir(root: &Path, pod: &Pod, plugin: &str, volume: &str) -> PathBuf {
    kvol_mount::paths::pod_volume_dir(root, pod.metadata.uid.as_deref().unwrap(), plugin, volume)
}
