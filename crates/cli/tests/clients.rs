//! Other real Kubernetes client libraries against `kvol server`, unchanged: the official Python client
//! (Debian's python3-kubernetes). Skips with a message when it is not installed.

mod util;

use std::process::{Command, Stdio};

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
    let server = util::Server::start();
    let kubeconfig = server.kubeconfig();
    let output = Command::new("/usr/bin/python3").arg("-c").arg(SCRIPT).arg(&kubeconfig).output().expect("run python3");
    assert!(
        output.status.success(),
        "python client failed in {}:\nstdout: {}\nstderr: {}",
        server.dir().display(),
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
