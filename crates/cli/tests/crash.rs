//! Crash and shutdown tests of the `kvol server` binary: `kill -9` in the middle of a burst of concurrent
//! creates loses no acknowledged write and leaves no torn object, round after round on one data directory;
//! SIGTERM stops the server cleanly. Failures print the data directory and the server's log.

use futures::future::join_all;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `kvol server` child process; killed (SIGKILL) if still running when dropped.
struct ServerProcess {
    child: Child,
    data_dir: PathBuf,
    log: PathBuf,
}

impl ServerProcess {
    fn spawn(data_dir: &Path, log: &Path) -> ServerProcess {
        // A kubeconfig left by a killed server must not be mistaken for this one's.
        let _ = std::fs::remove_file(data_dir.join("kubeconfig"));
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kvol"))
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--no-controllers", "--no-agent"])
            .env("KVOL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("spawning kvol server");
        ServerProcess { child, data_dir: data_dir.to_path_buf(), log: log.to_path_buf() }
    }

    fn context(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
        format!("data dir {}\n--- server log (tail) ---\n{}", self.data_dir.display(), tail.join("\n"))
    }

    /// Wait for the kubeconfig and build a client from it.
    async fn client(&mut self) -> kube::Client {
        let path = self.data_dir.join("kubeconfig");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !path.exists() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("kvol server exited with {status} before it was ready\n{}", self.context());
            }
            assert!(Instant::now() < deadline, "kvol server not ready after 30 s\n{}", self.context());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let text = std::fs::read_to_string(&path).expect("reading the kubeconfig");
        let kc = Kubeconfig::from_yaml(&text).expect("the kubeconfig parses");
        let config =
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("kube config");
        kube::Client::try_from(config).expect("kube client")
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn kill_9(&mut self) {
        kill(self.pid(), Signal::SIGKILL).expect("kill -9");
        self.child.wait().expect("reaping the server");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The content every object of this name carries, so a torn or mixed-up object is detectable.
fn payload(name: &str) -> String {
    let mut s = String::with_capacity(2100);
    while s.len() < 2000 {
        s.push_str(name);
        s.push('.');
    }
    s
}

fn pv(name: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "metadata": { "name": name, "annotations": { "kvol.test/payload": payload(name) } },
        "spec": { "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
                  "hostPath": { "path": format!("/tmp/{name}") } }
    }))
    .expect("PV fixture")
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({ "metadata": { "name": name }, "data": { "payload": payload(name) } }))
        .expect("ConfigMap fixture")
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Pv,
    Cm,
}

/// Create objects until told to stop or a request fails (the server died); record every 201.
async fn writer(
    client: kube::Client,
    kind: Kind,
    prefix: String,
    count: usize,
    acked: Arc<Mutex<Vec<(Kind, String)>>>,
) {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..count {
        let name = format!("{prefix}-{i:04}");
        let ok = match kind {
            Kind::Pv => pvs.create(&PostParams::default(), &pv(&name)).await.is_ok(),
            Kind::Cm => cms.create(&PostParams::default(), &cm(&name)).await.is_ok(),
        };
        if !ok {
            return;
        }
        acked.lock().expect("ack list").push((kind.clone(), name));
    }
}

/// Every stored object decodes completely and carries its own payload; returns what is stored.
async fn stored_objects(client: &kube::Client, context: &str) -> BTreeSet<(Kind, String)> {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut out = BTreeSet::new();
    let pv_list = pvs.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("listing PVs: {e}\n{context}"));
    for p in pv_list.items {
        let name = p.metadata.name.clone().expect("name");
        let annotations = p.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.get("kvol.test/payload"), Some(&payload(&name)), "PV {name} is torn\n{context}");
        let spec = p.spec.as_ref().unwrap_or_else(|| panic!("PV {name} has no spec\n{context}"));
        assert_eq!(spec.host_path.as_ref().map(|h| h.path.clone()), Some(format!("/tmp/{name}")), "{context}");
        out.insert((Kind::Pv, name));
    }
    let cm_list =
        cms.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("listing ConfigMaps: {e}\n{context}"));
    for c in cm_list.items {
        let name = c.metadata.name.clone().expect("name");
        if name == "kube-root-ca.crt" {
            continue;
        }
        let data = c.data.clone().unwrap_or_default();
        assert_eq!(data.get("payload"), Some(&payload(&name)), "ConfigMap {name} is torn\n{context}");
        out.insert((Kind::Cm, name));
    }
    // Each one also reads back on its own.
    for (kind, name) in out.iter().step_by(17) {
        let found = match kind {
            Kind::Pv => pvs.get(name).await.is_ok(),
            Kind::Cm => cms.get(name).await.is_ok(),
        };
        assert!(found, "{kind:?} {name} listed but not readable\n{context}");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_of_creates_loses_no_acknowledged_write_and_tears_no_object() {
    let dir = tempfile::Builder::new().prefix("kvol-crash-").tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mut all_acked: BTreeSet<(Kind, String)> = BTreeSet::new();
    let mut all_attempted: BTreeSet<(Kind, String)> = BTreeSet::new();
    // Kill after this many acknowledged creates in each round: early, middle, late, at once, mid-batch.
    let kill_after = [40usize, 150, 400, 1, 250];
    const WRITERS: usize = 6;
    const PER_WRITER: usize = 150;
    for (round, &threshold) in kill_after.iter().enumerate() {
        let mut server = ServerProcess::spawn(&data_dir, &log);
        let client = server.client().await;
        let context = server.context();
        // Everything acknowledged in earlier rounds is still there, and nothing is torn.
        let stored = stored_objects(&client, &context).await;
        let lost: Vec<_> = all_acked.difference(&stored).collect();
        assert!(lost.is_empty(), "round {round}: {} acknowledged objects lost: {lost:?}\n{context}", lost.len());
        let phantom: Vec<_> = stored.difference(&all_attempted).collect();
        assert!(phantom.is_empty(), "round {round}: objects nobody created: {phantom:?}\n{context}");
        all_acked = stored.clone();

        let acked = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let kind = if w % 2 == 0 { Kind::Pv } else { Kind::Cm };
                let prefix = format!("r{round}-w{w}");
                for i in 0..PER_WRITER {
                    all_attempted.insert((kind.clone(), format!("{prefix}-{i:04}")));
                }
                tokio::spawn(writer(client.clone(), kind, prefix, PER_WRITER, acked.clone()))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().expect("ack list").len() < threshold {
            assert!(
                Instant::now() < deadline,
                "round {round}: only {} creates in 60 s\n{}",
                acked.lock().unwrap().len(),
                server.context()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        server.kill_9();
        let finished = tokio::time::timeout(Duration::from_secs(60), join_all(tasks)).await;
        assert!(finished.is_ok(), "round {round}: writers did not notice the dead server");
        let acked = acked.lock().expect("ack list").clone();
        assert!(acked.len() >= threshold);
        assert!(acked.len() < WRITERS * PER_WRITER, "round {round}: the burst finished before the kill");
        eprintln!("round {round}: killed after {} acknowledged creates (threshold {threshold})", acked.len());
        all_acked.extend(acked);
    }
    // A last restart checks the final round.
    let mut server = ServerProcess::spawn(&data_dir, &log);
    let client = server.client().await;
    let context = server.context();
    let stored = stored_objects(&client, &context).await;
    let lost: Vec<_> = all_acked.difference(&stored).collect();
    assert!(lost.is_empty(), "{} acknowledged objects lost: {lost:?}\n{context}", lost.len());
    assert!(stored.is_subset(&all_attempted), "{context}");
    // The server still takes writes after all that.
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &cm("after-crashes")).await.unwrap_or_else(|e| panic!("{e}\n{context}"));
    kill(server.pid(), Signal::SIGTERM).expect("SIGTERM");
    let status = wait_exit(&mut server, Duration::from_secs(5));
    assert!(status.success(), "{status}\n{}", server.context());
}

fn wait_exit(server: &mut ServerProcess, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = server.child.try_wait().expect("waiting for the server") {
            return status;
        }
        assert!(Instant::now() < deadline, "kvol server still running {within:?} after SIGTERM\n{}", server.context());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_the_server_down_cleanly_even_with_an_open_watch() {
    let dir = tempfile::Builder::new().prefix("kvol-sigterm-").tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let mut server = ServerProcess::spawn(&data_dir, &dir.path().join("server.log"));
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("before-term")).await.expect("create");
    // An open watch must not hold the shutdown up.
    let watch = cms.watch(&kube::api::WatchParams::default(), "0").await.expect("watch");
    let watching = tokio::spawn(async move {
        use futures::StreamExt;
        let mut watch = std::pin::pin!(watch);
        while watch.next().await.is_some() {}
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    kill(server.pid(), Signal::SIGTERM).expect("SIGTERM");
    let status = wait_exit(&mut server, Duration::from_secs(3));
    assert!(status.success(), "exit status {status}\n{}", server.context());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!data_dir.join("kubeconfig").exists(), "kubeconfig left behind\n{}", server.context());
    assert!(!data_dir.join("kvol.sock").exists(), "socket left behind\n{}", server.context());
    let _ = tokio::time::timeout(Duration::from_secs(5), watching).await;
    // And the data is there on the next start.
    let mut again = ServerProcess::spawn(&data_dir, &dir.path().join("server.log"));
    let client = again.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.get("before-term").await.unwrap_or_else(|e| panic!("{e}\n{}", again.context()));
    kill(again.pid(), Signal::SIGTERM).expect("SIGTERM");
    assert!(wait_exit(&mut again, Duration::from_secs(3)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_process_on_the_same_data_directory_exits_and_leaves_the_first_serving() {
    let dir = tempfile::Builder::new().prefix("kvol-twice-").tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let mut first = ServerProcess::spawn(&data_dir, &dir.path().join("first.log"));
    let client = first.client().await;
    let kubeconfig = std::fs::read_to_string(data_dir.join("kubeconfig")).expect("kubeconfig");
    // Not through `spawn`, which clears the kubeconfig as a restart does.
    let log = dir.path().join("second.log");
    let log_file = std::fs::File::create(&log).expect("log file");
    let mut second = Command::new(env!("CARGO_BIN_EXE_kvol"))
        .arg("server")
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--listen", "127.0.0.1:0", "--no-controllers", "--no-agent"])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .spawn()
        .expect("spawning the second server");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = second.try_wait().expect("waiting") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("the second server is still running\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let second_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "the second server exited with {status}\n{second_log}");
    assert!(second_log.contains("another kvol server"), "{second_log}");
    assert_eq!(std::fs::read_to_string(data_dir.join("kubeconfig")).expect("kubeconfig kept"), kubeconfig);
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &cm("first-still-serves"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", first.context()));
    kill(first.pid(), Signal::SIGTERM).expect("SIGTERM");
    assert!(wait_exit(&mut first, Duration::from_secs(3)).success());
}
