//! Real kubectl against a real `kvol server` (in-process): the typed `kubectl create configmap|secret|namespace`
//! commands send their bodies as Kubernetes protobuf, and the objects read back equal what was sent. Skipped,
//! with a message, where /usr/bin/kubectl is absent.

// The shared harness has helpers this binary does not use.
#[allow(dead_code)]
mod util;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolume, Secret};
use k8s_openapi::ByteString;
use kube::api::Api;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use util::Server;

const KUBECTL: &str = "/usr/bin/kubectl";
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

fn kubectl_present() -> bool {
    if Path::new(KUBECTL).exists() {
        return true;
    }
    eprintln!("skipping: {KUBECTL} is not installed (apt-get install kubectl, or put a kubectl binary there)");
    false
}

/// The Content-Type of every request body kubectl sent, from its `-v=8` log (which prints request and
/// response headers; kvol answers JSON, so a protobuf content type can only be a request's).
struct Kubectl {
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// Run `kubectl -v=8 ARGS`; assert it succeeded and return its stdout and whether a body went as protobuf.
    fn run(&self, args: &[&str]) -> (String, bool) {
        let out = Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("-v=8")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running kubectl {args:?}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {stdout}\nstderr (last 4000 bytes): {}",
            out.status,
            &stderr[stderr.len().saturating_sub(4000)..]
        );
        (stdout, stderr.contains(&format!("Content-Type: {PROTOBUF}")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_sends_protobuf_and_the_objects_read_back_as_sent() {
    if !kubectl_present() {
        return;
    }
    let server = Server::start().await;
    let kubectl = Kubectl { kubeconfig: server.data_dir.join("kubeconfig") };

    // kubectl create configmap: data from literals, and binaryData from a file that is not UTF-8.
    let blob = server.data_dir.join("blob.bin");
    let blob_bytes = vec![0u8, 159, 146, 150, 255, 10];
    std::fs::write(&blob, &blob_bytes).expect("writing the blob");
    let (out, protobuf) = kubectl.run(&[
        "create",
        "configmap",
        "log-config",
        "--from-literal=log_level=debug",
        "--from-literal=mode=fast and loose",
        &format!("--from-file=blob={}", blob.display()),
    ]);
    assert!(out.contains("configmap/log-config created"), "{out}");
    assert!(protobuf, "kubectl create configmap did not send protobuf");
    let cm = Api::<ConfigMap>::namespaced(server.client.clone(), "default").get("log-config").await.expect("get cm");
    let data: BTreeMap<String, String> = [("log_level", "debug"), ("mode", "fast and loose")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(cm.data, Some(data));
    assert_eq!(cm.binary_data, Some([("blob".to_string(), ByteString(blob_bytes))].into_iter().collect()));
    assert_eq!(cm.immutable, None);
    assert!(cm.metadata.creation_timestamp.is_some() && cm.metadata.uid.is_some());

    // kubectl create secret generic, and docker-registry (whose data is a generated JSON document).
    let (_, protobuf) =
        kubectl.run(&["create", "secret", "generic", "s1", "--from-literal=a=b", "--from-literal=password=p@ss w0rd"]);
    assert!(protobuf, "kubectl create secret generic did not send protobuf");
    let secrets = Api::<Secret>::namespaced(server.client.clone(), "default");
    let s1 = secrets.get("s1").await.expect("get s1");
    assert_eq!(s1.type_.as_deref(), Some("Opaque"));
    let data: BTreeMap<String, ByteString> = [("a", "b"), ("password", "p@ss w0rd")]
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect();
    assert_eq!(s1.data, Some(data));
    let (_, protobuf) = kubectl.run(&[
        "create",
        "secret",
        "docker-registry",
        "reg",
        "--docker-server=registry.example:5000",
        "--docker-username=u",
        "--docker-password=p",
    ]);
    assert!(protobuf, "kubectl create secret docker-registry did not send protobuf");
    let reg = secrets.get("reg").await.expect("get reg");
    assert_eq!(reg.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
    let config = &reg.data.expect("reg data")[".dockerconfigjson"].0;
    let config: serde_json::Value = serde_json::from_slice(config).expect("dockerconfigjson is JSON");
    assert_eq!(config["auths"]["registry.example:5000"]["username"], "u");

    // kubectl create secret tls: the certificate and key files become data, byte for byte.
    let (cert, key) = (server.data_dir.join("pki/apiserver.crt"), server.data_dir.join("pki/apiserver.key"));
    let (_, protobuf) = kubectl.run(&[
        "create",
        "secret",
        "tls",
        "tls1",
        &format!("--cert={}", cert.display()),
        &format!("--key={}", key.display()),
    ]);
    assert!(protobuf, "kubectl create secret tls did not send protobuf");
    let tls = secrets.get("tls1").await.expect("get tls1");
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
    let tls_data = tls.data.expect("tls data");
    assert_eq!(tls_data["tls.crt"].0, std::fs::read(&cert).expect("reading the certificate"));
    assert_eq!(tls_data["tls.key"].0, std::fs::read(&key).expect("reading the key"));

    // kubectl create namespace, then a configmap in it.
    let (out, protobuf) = kubectl.run(&["create", "namespace", "team-a"]);
    assert!(out.contains("namespace/team-a created"), "{out}");
    assert!(protobuf, "kubectl create namespace did not send protobuf");
    let ns = Api::<Namespace>::all(server.client.clone()).get("team-a").await.expect("get ns");
    assert_eq!(ns.status.and_then(|s| s.phase).as_deref(), Some("Active"));
    let (_, protobuf) = kubectl.run(&["create", "configmap", "c2", "-n", "team-a", "--from-literal=k=v"]);
    assert!(protobuf);
    let c2 = Api::<ConfigMap>::namespaced(server.client.clone(), "team-a").get("c2").await.expect("get c2");
    assert_eq!(c2.metadata.namespace.as_deref(), Some("team-a"));

    // kubectl create -f (unstructured) still sends JSON; the seed PV goes through it unchanged.
    let seed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seeds/003-01-persistentvolume-pv-flex-nfs.yaml");
    if seed.exists() {
        let (_, protobuf) = kubectl.run(&["create", "-f", &seed.display().to_string(), "--save-config"]);
        assert!(!protobuf, "kubectl create -f is expected to send JSON");
        let text = std::fs::read_to_string(&seed).expect("reading the seed");
        let sent: PersistentVolume = serde_saphyr::from_str(&text).expect("the seed PV parses");
        let name = sent.metadata.name.clone().expect("the seed PV has a name");
        let got = Api::<PersistentVolume>::all(server.client.clone()).get(&name).await.expect("get pv");
        let spec = got.spec.expect("spec");
        let sent_spec = sent.spec.expect("seed spec");
        assert_eq!(spec.capacity, sent_spec.capacity);
        assert_eq!(spec.flex_volume, sent_spec.flex_volume);
    }

    // A protobuf body that is not one is refused, naming the problem, and the server carries on.
    let answer = server.request("POST", "/api/v1/namespaces/default/configmaps", Some(PROTOBUF), b"{}".to_vec()).await;
    answer.assert_failure(400, "does not appear to be a protobuf message");
    server.assert_alive().await;
}

/// A protobuf field with a length-delimited payload (wire type 2).
fn bytes_field(number: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(number << 3 | 2, &mut out);
    varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// What client-go's typed client sends for a claim with `storageClassName: ""`, encoded by hand.
fn claim_body(name: &str) -> Vec<u8> {
    let metadata = [bytes_field(1, name.as_bytes()), bytes_field(3, b"")].concat();
    let quantity = bytes_field(1, b"1Gi");
    let requests = bytes_field(2, &[bytes_field(1, b"storage"), bytes_field(2, &quantity)].concat());
    let spec = [bytes_field(1, b"ReadWriteOnce"), bytes_field(2, &requests), bytes_field(5, b"")].concat();
    let claim = [bytes_field(1, &metadata), bytes_field(2, &spec)].concat();
    let type_meta = [bytes_field(1, b"v1"), bytes_field(2, b"PersistentVolumeClaim")].concat();
    let unknown = [bytes_field(1, &type_meta), bytes_field(2, &claim)].concat();
    [kvol_apiserver::protobuf::MAGIC.as_slice(), &unknown].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protobuf_claim_keeps_its_empty_storage_class_through_admission() {
    let server = Server::start().await;
    // A default class exists: a claim without a class would get it, one with "" must not.
    let class = serde_json::json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "std", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kubernetes.io/no-provisioner"});
    let a = server.json("POST", "/apis/storage.k8s.io/v1/storageclasses", &class).await;
    assert_eq!(a.code, 201, "{a:?}");
    let a = server
        .request("POST", "/api/v1/namespaces/default/persistentvolumeclaims", Some(PROTOBUF), claim_body("pb-claim"))
        .await;
    assert_eq!(a.code, 201, "{a:?}");
    let pvc = Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(server.client.clone(), "default")
        .get("pb-claim")
        .await
        .expect("get pvc");
    let spec = pvc.spec.expect("spec");
    assert_eq!(spec.storage_class_name.as_deref(), Some(""));
    assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
    let requests = spec.resources.and_then(|r| r.requests).expect("requests");
    assert_eq!(requests["storage"].0, "1Gi");
    assert_eq!(pvc.metadata.namespace.as_deref(), Some("default"));

    // The same body cut short is a 400, not a half-created object.
    let body = claim_body("pb-cut");
    let a = server
        .request(
            "POST",
            "/api/v1/namespaces/default/persistentvolumeclaims",
            Some(PROTOBUF),
            body[..body.len() - 4].to_vec(),
        )
        .await;
    a.assert_failure(400, "protobuf");
    let missing = server.get("/api/v1/namespaces/default/persistentvolumeclaims/pb-cut").await;
    assert_eq!(missing.code, 404, "{missing:?}");
}
