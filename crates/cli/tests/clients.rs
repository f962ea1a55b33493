//! Other real Kubernetes client libraries against `kvol server`, unchanged: the official Python client
//! (Debian's python3-kubernetes). Skips with a message when it is not installed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_kvol"))
        .args(["server", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kvol server");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.path().join("data/kubeconfig").exists() {
        assert!(Instant::now() < deadline, "kvol server did not become ready in {}", dir.path().display());
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, dir }
}

fn python_client_available() -> bool {
    Command::new("/usr/bin/python3")
        .args(["-c", "import kubernetes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const SCRIPT: &str = r#"
import json, sys
from kubernetes import client, config, watch
config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
out = {}
out["namespaces"] = sorted(ns.metadata.name for ns in v1.list_namespace().items)
cm = v1.create_namespaced_config_map("default", client.V1ConfigMap(
    metadata=client.V1ObjectMeta(generate_name="py-"), data={"log_level": "debug"}))
out["generated"] = cm.metadata.name.startswith("py-") and len(cm.metadata.name) == 8
out["watched"] = [(e["type"], e["object"].metadata.name == cm.metadata.name)
                  for e in watch.Watch().stream(v1.list_namespaced_config_map, "default", timeout_seconds=1)]
cm.data["log_level"] = "info"
updated = v1.replace_namespaced_config_map(cm.metadata.name, "default", cm)
out["updated"] = updated.data["log_level"]
try:
    v1.replace_namespaced_config_map(cm.metadata.name, "default", cm)
except client.exceptions.ApiException as e:
    out["stale"] = [e.status, json.loads(e.body)["reason"]]
try:
    v1.create_persistent_volume(client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(name="pv1"),
        spec=client.V1PersistentVolumeSpec(access_modes=["ReadWriteOnce"],
                                           host_path=client.V1HostPathVolumeSource(path="/data"))))
except client.exceptions.ApiException as e:
    body = json.loads(e.body)
    out["invalid"] = [e.status, body["reason"], body["message"]]
print(json.dumps(out))
"#;

#[test]
fn the_official_python_client_lists_creates_watches_updates_and_reads_errors() {
    if !python_client_available() {
        eprintln!("SKIP: python3-kubernetes is not installed (apt-get install python3-kubernetes)");
        return;
    }
    let server = start_server();
    let kubeconfig = server.dir.path().join("data/kubeconfig");
    let output = Command::new("/usr/bin/python3").arg("-c").arg(SCRIPT).arg(&kubeconfig).output().expect("run python3");
    assert!(
        output.status.success(),
        "python client failed in {}:\nstdout: {}\nstderr: {}",
        server.dir.path().display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&output.stdout).expect("script prints JSON");
    assert_eq!(got["namespaces"], serde_json::json!(["default", "kube-node-lease", "kube-public", "kube-system"]));
    assert_eq!(got["generated"], true);
    assert_eq!(got["watched"], serde_json::json!([["ADDED", true]]));
    assert_eq!(got["updated"], "info");
    assert_eq!(got["stale"], serde_json::json!([409, "Conflict"]));
    assert_eq!(got["invalid"][0], 422);
    assert_eq!(got["invalid"][1], "Invalid");
    assert_eq!(got["invalid"][2], r#"PersistentVolume "pv1" is invalid: spec.capacity: Required value"#);
}
