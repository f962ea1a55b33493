//! End-to-end tests of the `kvol` CLI and of the real `kubectl` against `kvol server` (issue 2): each
//! test starts its own server, applies the seeds' examples, and compares whole outputs with what
//! kubectl prints (ages masked).

mod util;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use util::{mask_ages, seed, Server};

const PV_NFS_TABLE: &str = "\
NAME   CAPACITY   ACCESS MODES   RECLAIM POLICY   STATUS    CLAIM   STORAGECLASS   VOLUMEATTRIBUTESCLASS   REASON   AGE
nfs    1Mi        RWX            Retain           Pending                          <unset>                          <age>
";

const PV_NFS_DESCRIBE: &str = "\
Name:            nfs
Labels:          <none>
Annotations:     <none>
Finalizers:      []
StorageClass:    
Status:          Pending
Claim:           
Reclaim Policy:  Retain
Access Modes:    RWX
VolumeMode:      Filesystem
Capacity:        1Mi
Node Affinity:   <none>
Message:         
Source:
    Type:      NFS (an NFS mount that lasts the lifetime of a pod)
    Server:    10.244.1.4
    Path:      /
    ReadOnly:  false
Events:        <none>
";

const LOG_CONFIG: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: log-config
data:
  log_level: debug
";

const RC_REFUSED: &str = "error: resource mapping not found for name: \"nfs-web\" namespace: \"\" from \"examples/seeds/004-02-persistentvolume-nfs.yaml\": no matches for kind \"ReplicationController\" in version \"v1\"\nensure CRDs are installed first\n";

fn rel(prefix: &str) -> String {
    let path = seed(prefix);
    path.strip_prefix(util::workspace_root()).expect("seed under the workspace").display().to_string()
}

/// Polls `check` until it holds or `timeout` passes.
fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

// ---------------------------------------------------------------------------------------------
// kvol apply

#[test]
fn kvol_apply_creates_the_seed_volume_and_claim_and_refuses_the_replication_controller() {
    let s = Server::start();
    let run = s.kvol(&["apply", "-f", &rel("004-02")]).fails();
    assert_eq!(run.stdout, "persistentvolume/nfs created\npersistentvolumeclaim/nfs created\n");
    assert_eq!(run.stderr, RC_REFUSED);
    let again = s.kvol(&["apply", "-f", &rel("004-02")]).fails();
    assert_eq!(again.stdout, "persistentvolume/nfs unchanged\npersistentvolumeclaim/nfs unchanged\n");
}

#[test]
fn kvol_apply_refuses_the_seeds_v3_storage_class_with_kubectls_message() {
    let s = Server::start();
    let run = s.kvol(&["apply", "-f", &rel("001-08")]).fails();
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "error: resource mapping not found for name: \"standard\" namespace: \"\" from \"examples/seeds/001-08-storageclass-standard.yaml\": no matches for kind \"StorageClass\" in version \"storage.k8s.io/v3\"\nensure CRDs are installed first\n"
    );
    let daemonset = s.kvol(&["apply", "-f", &rel("000-02")]).fails();
    assert!(
        daemonset.stderr.contains("no matches for kind \"DaemonSet\" in version \"extensions/v1beta1\""),
        "{}",
        daemonset.stderr
    );
}

#[test]
fn kvol_apply_of_a_directory_applies_every_file_and_reports_every_failure() {
    let s = Server::start();
    let dir = s.dir().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(seed("001-10"), dir.join("a-slow.yaml")).unwrap();
    std::fs::copy(seed("001-09"), dir.join("b-fast-v3.yaml")).unwrap();
    std::fs::copy(seed("001-06"), dir.join("c-claim.yaml")).unwrap();
    std::fs::write(dir.join("d-cm.yaml"), LOG_CONFIG).unwrap();
    let run = s.kvol(&["apply", "-f", dir.to_str().unwrap()]).fails();
    assert_eq!(
        run.stdout,
        "storageclass.storage.k8s.io/slow created\npersistentvolumeclaim/myclaim created\nconfigmap/log-config created\n"
    );
    assert!(
        run.stderr.contains("no matches for kind \"StorageClass\" in version \"storage.k8s.io/v3\""),
        "{}",
        run.stderr
    );
}

#[test]
fn kvol_apply_reads_stdin() {
    let s = Server::start();
    let mut child =
        s.kvol(&["apply", "-f", "-"]).into_command().stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), LOG_CONFIG.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "configmap/log-config created\n");
}

#[test]
fn kvol_reapplying_a_modified_file_says_configured_and_removes_what_the_file_dropped() {
    let s = Server::start();
    let v1 = s.write(
        "pv.yaml",
        "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: pv1\n  labels: {tier: gold, team: a}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  hostPath: {path: /tmp/pv1}\n",
    );
    assert_eq!(s.kvol(&["apply", "-f", v1.to_str().unwrap()]).stdout(), "persistentvolume/pv1 created\n");
    // Someone else adds a label; the re-apply must keep it.
    s.kvol(&["apply", "-f", v1.to_str().unwrap()]).stdout();
    let v2 = s.write(
        "pv.yaml",
        "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: pv1\n  labels: {tier: silver}\nspec:\n  capacity: {storage: 2Gi}\n  accessModes: [ReadWriteOnce]\n  hostPath: {path: /tmp/pv1}\n",
    );
    assert_eq!(s.kvol(&["apply", "-f", v2.to_str().unwrap()]).stdout(), "persistentvolume/pv1 configured\n");
    let yaml = s.kvol(&["get", "pv", "pv1", "-o", "yaml"]).stdout();
    assert!(yaml.contains("  labels:\n    tier: silver\n"), "{yaml}");
    assert!(!yaml.contains("team: a"), "{yaml}");
    assert!(yaml.contains("storage: 2Gi"), "{yaml}");
    assert_eq!(s.kvol(&["apply", "-f", v2.to_str().unwrap()]).stdout(), "persistentvolume/pv1 unchanged\n");
}

// ---------------------------------------------------------------------------------------------
// kvol get

#[test]
fn kvol_get_prints_kubectls_columns_for_volumes_and_claims() {
    let s = Server::start();
    s.kvol(&["apply", "-f", &rel("004-02")]).fails();
    assert_eq!(mask_ages(&s.kvol(&["get", "pv"]).stdout()), PV_NFS_TABLE);
    assert_eq!(mask_ages(&s.kvol(&["get", "persistentvolumes", "nfs"]).stdout()), PV_NFS_TABLE);
    assert_eq!(mask_ages(&s.kvol(&["get", "pv/nfs"]).stdout()), PV_NFS_TABLE);
    assert_eq!(
        mask_ages(&s.kvol(&["get", "pvc", "-o", "wide"]).stdout()),
        "NAME   STATUS    VOLUME   CAPACITY   ACCESS MODES   STORAGECLASS   VOLUMEATTRIBUTESCLASS   AGE   VOLUMEMODE\nnfs    Pending                                                     <unset>                 <age> Filesystem\n"
    );
    assert_eq!(
        mask_ages(&s.kvol(&["get", "pvc", "-A"]).stdout()),
        "NAMESPACE   NAME   STATUS    VOLUME   CAPACITY   ACCESS MODES   STORAGECLASS   VOLUMEATTRIBUTESCLASS   AGE\ndefault     nfs    Pending                                                     <unset>                 <age>\n"
    );
}

#[test]
fn kvol_get_of_several_types_prints_one_table_each_with_kind_prefixed_names() {
    let s = Server::start();
    s.kvol(&["apply", "-f", &rel("004-02")]).fails();
    assert_eq!(
        mask_ages(&s.kvol(&["get", "pv,pvc"]).stdout()),
        "NAME                   CAPACITY   ACCESS MODES   RECLAIM POLICY   STATUS    CLAIM   STORAGECLASS   VOLUMEATTRIBUTESCLASS   REASON   AGE\npersistentvolume/nfs   1Mi        RWX            Retain           Pending                          <unset>                          <age>\n\nNAME                        STATUS    VOLUME   CAPACITY   ACCESS MODES   STORAGECLASS   VOLUMEATTRIBUTESCLASS   AGE\npersistentvolumeclaim/nfs   Pending                                                     <unset>                 <age>\n"
    );
    assert_eq!(s.kvol(&["get", "pv,pvc", "-o", "name"]).stdout(), "persistentvolume/nfs\npersistentvolumeclaim/nfs\n");
    assert_eq!(s.kvol(&["get", "sc,pods"]).run().stderr, "No resources found\n");
    assert_eq!(s.kvol(&["get", "pods,cm"]).run().stderr, "No resources found in default namespace.\n");
    let names = s.kvol(&["get", "pods", "-o", "name"]).run();
    assert_eq!((names.stdout.as_str(), names.stderr.as_str()), ("", ""), "kubectl prints nothing for an empty -o name");
}

#[test]
fn kvol_get_prints_yaml_json_and_names() {
    let s = Server::start();
    s.kvol(&["apply", "-f", &rel("004-02")]).fails();
    let yaml = s.kvol(&["get", "pv", "nfs", "-o", "yaml"]).stdout();
    assert!(yaml.starts_with("apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  annotations:\n    kubectl.kubernetes.io/last-applied-configuration: |\n"), "{yaml}");
    assert!(yaml.contains("spec:\n  accessModes:\n  - ReadWriteMany\n  capacity:\n    storage: 1Mi\n  nfs:\n    path: /\n    server: 10.244.1.4\n"), "{yaml}");
    let list: serde_json::Value = serde_json::from_str(&s.kvol(&["get", "pvc", "-o", "json"]).stdout()).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["kind"], "PersistentVolumeClaim");
    assert_eq!(list["items"][0]["spec"]["storageClassName"], "");
    let json = s.kvol(&["get", "pvc", "nfs", "-o", "json"]).stdout();
    assert!(json.starts_with("{\n    \"apiVersion\": \"v1\",\n"), "kubectl indents JSON by four: {json}");
    assert_eq!(s.kvol(&["get", "pvc", "-o", "name"]).stdout(), "persistentvolumeclaim/nfs\n");
}

#[test]
fn kvol_get_reports_missing_objects_and_empty_lists_like_kubectl() {
    let s = Server::start();
    let empty = s.kvol(&["get", "pods"]).run();
    assert!(empty.success);
    assert_eq!((empty.stdout.as_str(), empty.stderr.as_str()), ("", "No resources found in default namespace.\n"));
    let cluster = s.kvol(&["get", "sc"]).run();
    assert_eq!(cluster.stderr, "No resources found\n");
    let missing = s.kvol(&["get", "pv", "nope"]).fails();
    assert_eq!(missing.stderr, "Error from server (NotFound): persistentvolumes \"nope\" not found\n");
    let unknown = s.kvol(&["get", "deployments"]).fails();
    assert_eq!(unknown.stderr, "error: the server doesn't have a resource type \"deployments\"\n");
    let in_ns = s.kvol(&["get", "pvc", "-n", "team-a"]).run();
    assert_eq!(in_ns.stderr, "No resources found in team-a namespace.\n");
}

#[test]
fn kvol_get_watch_prints_an_added_and_a_modified_row() {
    let s = Server::start();
    let mut child =
        s.kvol(&["get", "pv", "-w"]).into_command().stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    s.kvol(&["apply", "-f", &rel("004-02")]).fails();
    let relabel = s.write("pv.yaml", "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: nfs\n  labels: {a: b}\nspec:\n  capacity: {storage: 1Mi}\n  accessModes: [ReadWriteMany]\n  nfs: {server: 10.244.1.4, path: /}\n");
    s.kvol(&["apply", "-f", relabel.to_str().unwrap()]).stdout();
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while lines.len() < 3 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.len() >= 3, "expected a header, an ADDED and a MODIFIED row, got {lines:?}");
    assert!(lines[0].starts_with("NAME   CAPACITY   ACCESS MODES"), "{lines:?}");
    assert!(lines[1].starts_with("nfs    1Mi        RWX"), "{lines:?}");
    assert!(lines[2].starts_with("nfs    1Mi        RWX"), "{lines:?}");
}

// ---------------------------------------------------------------------------------------------
// kvol describe

#[test]
fn kvol_describe_prints_a_persistent_volume_as_kubectl_does() {
    let s = Server::start();
    s.kvol(&["apply", "-f", &rel("004-02")]).fails();
    assert_eq!(s.kvol(&["describe", "pv", "nfs"]).stdout(), PV_NFS_DESCRIBE);
}

#[test]
fn kvol_describe_claim_lists_the_pods_using_it() {
    let s = Server::start();
    s.kvol(&["apply", "-f", &rel("001-10")]).stdout();
    s.kvol(&["apply", "-f", &rel("001-06")]).stdout();
    s.kvol(&["apply", "-f", &rel("001-07")]).stdout();
    assert_eq!(
        s.kvol(&["describe", "pvc", "myclaim"]).stdout(),
        "Name:          myclaim\nNamespace:     default\nStorageClass:  slow\nStatus:        Pending\nVolume:        \nLabels:        <none>\nAnnotations:   <none>\nFinalizers:    []\nCapacity:      \nAccess Modes:  \nVolumeMode:    Filesystem\nUsed By:       mypod\nEvents:        <none>\n"
    );
}

#[test]
fn kvol_describe_pod_prints_each_volume_types_lines() {
    let s = Server::start();
    s.kvol(&["apply", "-f", &rel("001-03")]).stdout();
    assert_eq!(
        s.kvol(&["describe", "pod", "configmap-pod"]).stdout(),
        "Name:         configmap-pod\nNamespace:    default\nNode:         <none>\nLabels:       <none>\nAnnotations:  <none>\nStatus:       Pending\nIP:           \nIPs:          <none>\nContainers:\n  test:\n    Image:        busybox\n    Port:         <none>\n    Host Port:    <none>\n    Environment:  <none>\n    Mounts:\n      /etc/config from config-vol (rw)\nVolumes:\n  config-vol:\n    Type:        ConfigMap (a volume populated by a ConfigMap)\n    Name:        log-config\n    Optional:    false\nQoS Class:       BestEffort\nNode-Selectors:  <none>\nTolerations:     <none>\nEvents:          <none>\n"
    );
    for (seed_name, pod, lines) in [
        (
            "001-01",
            "test-pd",
            vec![
                "    Type:        EmptyDir (a temporary directory that shares a pod's lifetime)",
                "    Medium:      ",
                "    SizeLimit:   <unset>",
            ],
        ),
        (
            "001-04",
            "cephfs",
            vec![
                "    Monitors:    [10.16.154.78:6789 10.16.154.82:6789 10.16.154.83:6789]",
                "    SecretRef:   nil",
                "    ReadOnly:    true",
            ],
        ),
        (
            "000-01",
            "nginx-nfs",
            vec![
                "    Driver:      k8s/nfs",
                "    Options:     map[server:172.16.0.25 share:dws_nas_scratch]",
                "    Ports:",
            ],
        ),
        (
            "001-07",
            "mypod",
            vec![
                "    Type:        PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)",
                "    ClaimName:   myclaim",
            ],
        ),
    ] {
        s.kvol(&["apply", "-f", &rel(seed_name)]).stdout();
        let out = s.kvol(&["describe", "pod", pod]).stdout();
        for line in lines {
            if line == "    Ports:" {
                assert!(out.contains("    Port:         80/TCP\n"), "{pod}: {out}");
                continue;
            }
            assert!(out.lines().any(|l| l == line), "{pod}: missing {line:?} in\n{out}");
        }
    }
}

#[test]
fn kvol_describe_configmap_and_secret_show_data_and_sizes_but_no_secret_values() {
    let s = Server::start();
    let file = s.write(
        "cm.yaml",
        &format!("{LOG_CONFIG}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s1\ntype: Opaque\ndata:\n  password: c2VjcmV0\n"),
    );
    s.kvol(&["apply", "-f", file.to_str().unwrap()]).stdout();
    assert_eq!(
        s.kvol(&["describe", "cm", "log-config"]).stdout(),
        "Name:         log-config\nNamespace:    default\nLabels:       <none>\nAnnotations:  <none>\n\nData\n====\nlog_level:\n----\ndebug\n\n\nBinaryData\n====\n\nEvents:  <none>\n"
    );
    let secret = s.kvol(&["describe", "secret", "s1"]).stdout();
    assert_eq!(secret, "Name:         s1\nNamespace:    default\nLabels:       <none>\nAnnotations:  <none>\n\nType:  Opaque\n\nData\n====\npassword:  6 bytes\n");
}

#[test]
fn kvol_describe_storage_class_shows_the_defaults_the_server_applied() {
    let s = Server::start();
    s.kvol(&["apply", "-f", &rel("001-25")]).stdout();
    let out = s.kvol(&["describe", "sc", "cephfs-provisioner-sc"]).stdout();
    assert!(out.starts_with("Name:            cephfs-provisioner-sc\nIsDefaultClass:  No\nAnnotations:     kubectl.kubernetes.io/last-applied-configuration="), "{out}");
    assert!(out.ends_with("Provisioner:           ceph.com/cephfs\nParameters:            adminId=admin,adminSecretName=csi-cephfs-secret,adminSecretNamespace=kube-csi,claimRoot=/pvc-volumes,monitors=192.168.27.43:6789,192.168.27.44:6789,192.168.27.45:6789\nAllowVolumeExpansion:  <unset>\nMountOptions:          <none>\nReclaimPolicy:         Delete\nVolumeBindingMode:     WaitForFirstConsumer\nEvents:                <none>\n"), "{out}");
}

#[test]
fn kvol_describe_shows_the_objects_events() {
    let s = Server::start();
    s.kvol(&["apply", "-f", &rel("004-02")]).fails();
    let uid = s.kvol(&["get", "pv", "nfs", "-o", "json"]).stdout();
    let uid: serde_json::Value = serde_json::from_str(&uid).unwrap();
    let uid = uid["metadata"]["uid"].as_str().unwrap().to_string();
    let now = jiff::Timestamp::now().to_string();
    let event = s.write(
        "event.yaml",
        &format!(
            "apiVersion: v1\nkind: Event\nmetadata:\n  name: nfs.1\n  namespace: default\ninvolvedObject:\n  kind: PersistentVolume\n  name: nfs\n  uid: {uid}\n  apiVersion: v1\nreason: VolumeFailedRecycle\nmessage: recycler failed\ntype: Warning\nsource: {{component: persistentvolume-controller}}\nfirstTimestamp: \"{now}\"\nlastTimestamp: \"{now}\"\ncount: 1\n"
        ),
    );
    s.kvol(&["apply", "-f", event.to_str().unwrap()]).stdout();
    let out = s.kvol(&["describe", "pv", "nfs"]).stdout();
    let tail: Vec<&str> = out.lines().rev().take(4).collect();
    assert_eq!(tail[3], "Events:", "{out}");
    assert_eq!(tail[2], "  Type     Reason               Age   From                         Message", "{out}");
    assert_eq!(tail[1], "  ----     ------               ----  ----                         -------", "{out}");
    assert_eq!(
        mask_ages(tail[0]),
        "  Warning  VolumeFailedRecycle  <age> persistentvolume-controller  recycler failed\n",
        "{out}"
    );
}

#[test]
fn kvol_describe_uses_the_generic_describer_for_csi_drivers_and_attachments() {
    let s = Server::start();
    let file = s.write(
        "csi.yaml",
        "apiVersion: storage.k8s.io/v1\nkind: CSIDriver\nmetadata:\n  name: kvol.example\nspec:\n  attachRequired: true\n---\napiVersion: storage.k8s.io/v1\nkind: VolumeAttachment\nmetadata:\n  name: va1\nspec:\n  attacher: kvol.example\n  nodeName: node1\n  source: {persistentVolumeName: nfs}\n---\napiVersion: storage.k8s.io/v1\nkind: CSINode\nmetadata:\n  name: node1\nspec:\n  drivers:\n  - {name: kvol.example, nodeID: n1, topologyKeys: [zone]}\n",
    );
    s.kvol(&["apply", "-f", file.to_str().unwrap()]).stdout();
    let va = s.kvol(&["describe", "volumeattachment", "va1"]).stdout();
    assert!(va.contains("\nAPI Version:  storage.k8s.io/v1\n"), "{va}");
    assert!(
        va.contains(
            "\nSpec:\n  Attacher:   kvol.example\n  Node Name:  node1\n  Source:\n    Persistent Volume Name:  nfs\n"
        ),
        "{va}"
    );
    let driver = s.kvol(&["describe", "csidriver", "kvol.example"]).stdout();
    assert!(driver.contains("  Attach Required:"), "{driver}");
    let node = s.kvol(&["describe", "csinode", "node1"]).stdout();
    assert!(
        node.contains("Spec:\n  Drivers:\n    kvol.example:\n      Node ID:        n1\n      Topology Keys:  [zone]\n"),
        "{node}"
    );
}

// ---------------------------------------------------------------------------------------------
// kvol delete

#[test]
fn kvol_delete_prints_deleted_and_waits_until_the_object_is_gone() {
    let s = Server::start();
    s.kvol(&["apply", "-f", &rel("004-02")]).fails();
    assert_eq!(s.kvol(&["delete", "pv", "nfs"]).stdout(), "persistentvolume \"nfs\" deleted\n");
    assert!(s.kvol(&["get", "pv", "nfs"]).fails().stderr.contains("NotFound"));
    assert_eq!(s.kvol(&["delete", "pvc", "nfs", "--wait=false"]).stdout(), "persistentvolumeclaim \"nfs\" deleted\n");
    let missing = s.kvol(&["delete", "sc", "nope"]).fails();
    assert_eq!(missing.stderr, "Error from server (NotFound): storageclasses.storage.k8s.io \"nope\" not found\n");
}

#[test]
fn kvol_delete_from_a_file_deletes_every_object_it_maps() {
    let s = Server::start();
    s.kvol(&["apply", "-f", &rel("004-02")]).fails();
    let run = s.kvol(&["delete", "-f", &rel("004-02")]).fails();
    assert_eq!(run.stdout, "persistentvolume \"nfs\" deleted\npersistentvolumeclaim \"nfs\" deleted\n");
    assert_eq!(run.stderr, RC_REFUSED);
    assert_eq!(s.kvol(&["get", "pv"]).run().stderr, "No resources found\n");
}

// ---------------------------------------------------------------------------------------------
// Finding the server

#[test]
fn kvol_finds_the_server_through_the_kubeconfig_flag_the_environment_and_the_data_dir() {
    let s = Server::start();
    let kubeconfig = s.kubeconfig();
    let kc = kubeconfig.to_str().unwrap();
    assert!(s.kvol(&["get", "pv", "--kubeconfig", kc]).env("KVOL_DATA_DIR", "/nonexistent").run().success);
    assert!(s.kvol(&["get", "pv"]).env("KVOL_DATA_DIR", "/nonexistent").env("KUBECONFIG", kc).run().success);
    assert!(
        s.kvol(&["get", "pv", "--data-dir", s.dir().to_str().unwrap()])
            .env("KVOL_DATA_DIR", "/nonexistent")
            .run()
            .success
    );
    let none = s.kvol(&["get", "pv"]).env("KVOL_DATA_DIR", "/nonexistent").fails();
    assert!(none.stderr.contains("no kubeconfig"), "{}", none.stderr);
}

#[test]
fn kvol_uses_the_kubeconfig_contexts_namespace_unless_n_is_given() {
    let s = Server::start();
    let text = std::fs::read_to_string(s.kubeconfig()).unwrap();
    assert!(text.contains("namespace: default"), "{text}");
    let team = s.write("team-kubeconfig", &text.replace("namespace: default", "namespace: team-a"));
    let team = team.to_str().unwrap();
    let ns = s.write("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n");
    s.kvol(&["apply", "-f", ns.to_str().unwrap()]).stdout();
    let cm = s.write("cm.yaml", LOG_CONFIG);
    s.kvol(&["apply", "-f", cm.to_str().unwrap(), "--kubeconfig", team]).stdout();
    assert_eq!(s.kvol(&["get", "cm", "-o", "name", "--kubeconfig", team]).stdout(), "configmap/log-config\n");
    assert_eq!(s.kvol(&["get", "cm", "-n", "default"]).run().stderr, "No resources found in default namespace.\n");
    let yaml = s.kvol(&["get", "cm", "log-config", "-n", "team-a", "-o", "yaml"]).stdout();
    assert!(yaml.contains("  namespace: team-a\n"), "{yaml}");
}

#[test]
fn kvol_apply_warns_about_objects_created_without_the_last_applied_annotation() {
    let s = Server::start();
    let Some(create) = s.kubectl(&["create", "-f", &rel("001-11")]) else { return };
    create.stdout();
    let run = s.kvol(&["apply", "-f", &rel("001-11")]).run();
    assert!(run.success, "{}", run.stderr);
    assert_eq!(run.stdout, "storageclass.storage.k8s.io/fast configured\n");
    assert!(run.stderr.starts_with("Warning: resource storageclasses/fast is missing the kubectl.kubernetes.io/last-applied-configuration annotation"), "{}", run.stderr);
    assert_eq!(s.kvol(&["apply", "-f", &rel("001-11")]).stdout(), "storageclass.storage.k8s.io/fast unchanged\n");
}

// ---------------------------------------------------------------------------------------------
// Invalid variants of the seeds: rejected with kube-apiserver's messages

#[test]
fn invalid_seed_variants_are_rejected_with_messages_naming_the_field() {
    let s = Server::start();
    let cases = [
        (
            "pv-no-capacity.yaml",
            "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: nfs\nspec:\n  accessModes: [ReadWriteMany]\n  nfs: {server: 10.244.1.4, path: /}\n",
            "The PersistentVolume \"nfs\" is invalid: spec.capacity: Required value\n",
        ),
        (
            "pod-duplicate-volumes.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: test-pd\nspec:\n  containers: [{name: c, image: busybox, volumeMounts: [{name: v, mountPath: /v}]}]\n  volumes:\n  - {name: v, emptyDir: {}}\n  - {name: v, emptyDir: {}}\n",
            "The Pod \"test-pd\" is invalid: spec.volumes[1].name: Duplicate value: \"v\"\n",
        ),
        (
            "pod-hostpath-type.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: test-pd\nspec:\n  containers: [{name: c, image: busybox}]\n  volumes:\n  - {name: v, hostPath: {path: /data, type: Foo}}\n",
            "spec.volumes[0].hostPath.type: Unsupported value: \"Foo\"",
        ),
    ];
    for (name, yaml, expected) in cases {
        let file = s.write(name, yaml);
        let run = s.kvol(&["apply", "-f", file.to_str().unwrap()]).fails();
        assert!(
            run.stderr.starts_with(expected) || run.stderr.contains(expected),
            "{name}: expected {expected:?}, got {:?}",
            run.stderr
        );
    }
}

/// Server bug (reported to the lead): kvol names the field `spec.resources[requests][storage]`, while
/// kube-apiserver's `ValidatePersistentVolumeClaimSpec` says `spec.resources[storage]`.
#[test]
fn a_claim_without_a_storage_request_is_rejected_at_spec_resources_storage_like_kube_apiserver() {
    let s = Server::start();
    let file = s.write(
        "pvc-no-request.yaml",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: myclaim\nspec:\n  accessModes: [ReadWriteOnce]\n",
    );
    let run = s.kvol(&["apply", "-f", file.to_str().unwrap()]).fails();
    assert_eq!(
        run.stderr,
        "The PersistentVolumeClaim \"myclaim\" is invalid: spec.resources[storage]: Required value\n"
    );
}

/// Server bug (reported to the lead): the seed PV 001-05 is an exported object carrying
/// `metadata.resourceVersion`; kube-apiserver's storage refuses such a create ("resourceVersion should
/// not be set on objects to be created"), kvol creates it.
#[test]
fn the_exported_seed_volume_with_a_resource_version_is_refused_on_create_like_kube_apiserver() {
    let s = Server::start();
    let run = s.kvol(&["apply", "-f", &rel("001-05")]).run();
    assert!(!run.success, "created: {}", run.stdout);
    assert!(run.stderr.contains("resourceVersion should not be set on objects to be created"), "{}", run.stderr);
}

/// Server bug (reported to the lead): `kubectl create configmap|secret` send protobuf bodies; kvol
/// answers 415 although its own message lists `application/vnd.kubernetes.protobuf` as accepted.
#[test]
fn kubectl_create_configmap_works_against_kvol() {
    let s = Server::start();
    let Some(create) = s.kubectl(&["create", "configmap", "log-config", "--from-literal=log_level=debug"]) else {
        return;
    };
    assert_eq!(create.stdout(), "configmap/log-config created\n");
}

#[test]
fn changing_a_storage_class_parameter_on_reapply_is_forbidden() {
    let s = Server::start();
    s.kvol(&["apply", "-f", &rel("001-11")]).stdout();
    let changed =
        s.write("fast.yaml", &std::fs::read_to_string(seed("001-11")).unwrap().replace("pd-ssd", "pd-standard"));
    let run = s.kvol(&["apply", "-f", changed.to_str().unwrap()]).fails();
    assert_eq!(
        run.stderr,
        "The StorageClass \"fast\" is invalid: parameters: Forbidden: updates to parameters are forbidden.\n"
    );
}

// ---------------------------------------------------------------------------------------------
// The real kubectl against kvol server

#[test]
fn kubectl_applies_gets_and_describes_the_seed_examples_as_kvol_prints_them() {
    let s = Server::start();
    let Some(apply) = s.kubectl(&["apply", "-f", &rel("004-02")]) else { return };
    let run = apply.fails();
    assert_eq!(run.stdout, "persistentvolume/nfs created\npersistentvolumeclaim/nfs created\n");
    assert_eq!(run.stderr, RC_REFUSED);
    for f in ["001-10", "001-06", "001-07", "001-01", "001-04", "000-01", "003-01", "001-25"] {
        s.kubectl(&["apply", "-f", &rel(f)]).unwrap().stdout();
    }
    let cm = s.write("cm.yaml", LOG_CONFIG);
    let long = s.write(
        "long.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: long\n  annotations:\n    note: 'Back-off pulling image \"busybox\": ErrImagePull: rpc error: code = Unknown desc = failed to pull and unpack image docker.io/library/busybox:latest'\ndata:\n  msg: Back-off pulling image busybox ErrImagePull rpc error code Unknown desc failed to pull and unpack image docker.io/library/busybox:latest and more words\n  n: \"2\"\n  t: \"true\"\n",
    );
    s.kubectl(&["apply", "-f", long.to_str().unwrap()]).unwrap().stdout();
    assert_eq!(s.kubectl(&["apply", "-f", cm.to_str().unwrap()]).unwrap().stdout(), "configmap/log-config created\n");
    s.kubectl(&["apply", "-f", &rel("001-03")]).unwrap().stdout();
    assert_eq!(mask_ages(&s.kubectl(&["get", "pv", "nfs"]).unwrap().stdout()), PV_NFS_TABLE);
    for args in [
        ["get", "pv", ""],
        ["get", "pvc", "-o=wide"],
        ["get", "pods", ""],
        ["get", "sc", ""],
        ["get", "cm", ""],
        ["get", "pvc", "-A"],
        ["get", "pv,pvc,sc", "-o=wide"],
        ["get", "cm", "-o=yaml"],
        ["get", "pvc", "-o=json"],
        ["get", "pods", "-o=yaml"],
    ] {
        let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
        let kubectl = mask_ages(&s.kubectl(&args).unwrap().stdout());
        let kvol = mask_ages(&s.kvol(&args).stdout());
        assert_eq!(kvol, kubectl, "kvol {args:?} differs from kubectl");
    }
    for target in [
        ["pv", "nfs"],
        ["pv", "pv-flex-nfs"],
        ["pvc", "nfs"],
        ["pvc", "myclaim"],
        ["pod", "mypod"],
        ["pod", "test-pd"],
        ["pod", "cephfs"],
        ["pod", "nginx-nfs"],
        ["pod", "configmap-pod"],
        ["sc", "slow"],
        ["sc", "cephfs-provisioner-sc"],
        ["cm", "log-config"],
        ["cm", "long"],
        ["ns", "default"],
    ] {
        let args = ["describe", target[0], target[1]];
        let kubectl = s.kubectl(&args).unwrap().stdout();
        let kvol = s.kvol(&args).stdout();
        // kubectl prints a ConfigMap's data in Go map order, which is random; kvol sorts the keys. Everything
        // else, and each entry's text, must match exactly.
        let (kvol, kubectl) = if target[0] == "cm" {
            (sorted_config_map_entries(&kvol), sorted_config_map_entries(&kubectl))
        } else {
            (kvol, kubectl)
        };
        assert_eq!(kvol, kubectl, "kvol describe {target:?} differs from kubectl");
    }
    assert_eq!(s.kubectl(&["describe", "pv", "nfs"]).unwrap().stdout(), PV_NFS_DESCRIBE);
}

#[test]
fn kubectl_get_watch_sees_an_added_and_a_modified_row() {
    let s = Server::start();
    let Some(watch) = s.kubectl(&["get", "pvc", "-w"]) else { return };
    let mut child = watch.into_command().stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(800));
    s.kubectl(&["apply", "-f", &rel("001-06")]).unwrap().stdout();
    s.kubectl(&["label", "pvc", "myclaim", "release=stable"]).unwrap().stdout();
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while lines.len() < 3 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.len() >= 3, "expected a header, an ADDED and a MODIFIED row, got {lines:?}");
    assert!(lines[0].starts_with("NAME      STATUS"), "{lines:?}");
    assert!(lines[1].starts_with("myclaim   Pending"), "{lines:?}");
    assert!(lines[2].starts_with("myclaim   Pending"), "{lines:?}");
}

#[test]
fn kubectl_patches_with_strategic_merge_and_json_patches() {
    let s = Server::start();
    let Some(apply) = s.kubectl(&["apply", "-f", &rel("003-01")]) else { return };
    apply.stdout();
    let patched = |args: &[&str]| s.kubectl(args).unwrap().stdout();
    assert_eq!(
        patched(&["patch", "pv", "pv-flex-nfs", "-p", r#"{"metadata":{"labels":{"a":"b"}}}"#]),
        "persistentvolume/pv-flex-nfs patched\n"
    );
    assert_eq!(
        patched(&[
            "patch",
            "pv",
            "pv-flex-nfs",
            "--type=merge",
            "-p",
            r#"{"spec":{"persistentVolumeReclaimPolicy":"Delete"}}"#
        ]),
        "persistentvolume/pv-flex-nfs patched\n"
    );
    assert_eq!(
        patched(&[
            "patch",
            "pv",
            "pv-flex-nfs",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/capacity/storage","value":"2Gi"}]"#
        ]),
        "persistentvolume/pv-flex-nfs patched\n"
    );
    let pv: serde_json::Value =
        serde_json::from_str(&s.kvol(&["get", "pv", "pv-flex-nfs", "-o", "json"]).stdout()).unwrap();
    assert_eq!(pv["metadata"]["labels"]["a"], "b");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(pv["spec"]["capacity"]["storage"], "2Gi");
    assert_eq!(pv["spec"]["flexVolume"]["options"]["server"], "192.168.0.170");
    let forbidden = s
        .kubectl(&["patch", "pv", "pv-flex-nfs", "--type=merge", "-p", r#"{"spec":{"capacity":null}}"#])
        .unwrap()
        .fails();
    assert!(forbidden.stderr.contains("spec.capacity: Required value"), "{}", forbidden.stderr);
}

#[test]
fn kubectl_reapplying_a_modified_file_says_configured_and_kvol_agrees_on_the_last_applied_state() {
    let s = Server::start();
    let Some(apply) = s.kubectl(&["apply", "-f", &rel("001-06")]) else { return };
    assert_eq!(apply.stdout(), "persistentvolumeclaim/myclaim created\n");
    // kvol and kubectl write the same last-applied annotation, so neither sees a change.
    assert_eq!(s.kvol(&["apply", "-f", &rel("001-06")]).stdout(), "persistentvolumeclaim/myclaim unchanged\n");
    let modified = s.write(
        "claim.yaml",
        &std::fs::read_to_string(seed("001-06"))
            .unwrap()
            .replace("  name: myclaim\n", "  name: myclaim\n  labels:\n    tier: gold\n"),
    );
    assert_eq!(
        s.kubectl(&["apply", "-f", modified.to_str().unwrap()]).unwrap().stdout(),
        "persistentvolumeclaim/myclaim configured\n"
    );
    assert_eq!(
        s.kvol(&["apply", "-f", modified.to_str().unwrap()]).stdout(),
        "persistentvolumeclaim/myclaim unchanged\n"
    );
    assert_eq!(
        s.kubectl(&["apply", "-f", &rel("001-06")]).unwrap().stdout(),
        "persistentvolumeclaim/myclaim configured\n"
    );
}

#[test]
fn kubectl_refuses_the_seeds_v3_storage_classes_and_unknown_kinds() {
    let s = Server::start();
    let Some(apply) = s.kubectl(&["apply", "-f", &rel("001-08")]) else { return };
    let run = apply.fails();
    let kvol = s.kvol(&["apply", "-f", &rel("001-08")]).fails();
    assert_eq!(run.stderr, kvol.stderr);
    assert!(run.stderr.contains("no matches for kind \"StorageClass\" in version \"storage.k8s.io/v3\""));
    for f in ["001-09", "000-02", "001-13", "004-01"] {
        let kubectl = s.kubectl(&["apply", "-f", &rel(f)]).unwrap().fails();
        let kvol = s.kvol(&["apply", "-f", &rel(f)]).fails();
        assert_eq!(kvol.stderr, kubectl.stderr, "{f}");
        assert_eq!(kvol.stdout, kubectl.stdout, "{f}");
    }
}

#[test]
fn kubectl_and_kvol_reject_invalid_variants_with_the_same_messages() {
    let s = Server::start();
    if util::kubectl().is_none() {
        return;
    }
    s.kvol(&["apply", "-f", &rel("001-11")]).stdout();
    let variants = [
        ("pv.yaml", "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: nfs\nspec:\n  accessModes: [ReadWriteMany]\n  nfs: {server: 10.244.1.4, path: /}\n"),
        ("pvc.yaml", "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: myclaim\nspec:\n  accessModes: [ReadWriteOnce]\n"),
        ("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: test-pd\nspec:\n  containers: [{name: c, image: busybox}]\n  volumes:\n  - {name: v, hostPath: {path: /data, type: Foo}}\n"),
    ];
    for (name, yaml) in variants {
        let file = s.write(name, yaml);
        let kubectl = s.kubectl(&["apply", "-f", file.to_str().unwrap()]).unwrap().fails();
        let kvol = s.kvol(&["apply", "-f", file.to_str().unwrap()]).fails();
        assert_eq!(kvol.stderr, kubectl.stderr, "{name}");
    }
    let changed =
        s.write("fast.yaml", &std::fs::read_to_string(seed("001-11")).unwrap().replace("pd-ssd", "pd-standard"));
    let kubectl = s.kubectl(&["apply", "-f", changed.to_str().unwrap()]).unwrap().fails();
    assert_eq!(
        kubectl.stderr,
        "The StorageClass \"fast\" is invalid: parameters: Forbidden: updates to parameters are forbidden.\n"
    );
}

#[test]
fn kubectl_delete_removes_the_objects_kvol_created() {
    let s = Server::start();
    if util::kubectl().is_none() {
        return;
    }
    s.kvol(&["apply", "-f", &rel("004-02")]).fails();
    let run = s.kubectl(&["delete", "-f", &rel("004-02")]).unwrap().fails();
    assert_eq!(run.stdout, "persistentvolume \"nfs\" deleted\npersistentvolumeclaim \"nfs\" deleted\n");
    assert!(eventually(Duration::from_secs(10), || s.kvol(&["get", "pv"]).run().stderr == "No resources found\n"));
    s.kvol(&["apply", "-f", &rel("001-10")]).stdout();
    assert_eq!(
        s.kubectl(&["delete", "sc", "slow"]).unwrap().stdout(),
        "storageclass.storage.k8s.io \"slow\" deleted\n"
    );
}

#[test]
fn kubectl_and_kvol_describe_a_node_with_its_pods_requests_alike() {
    let s = Server::start();
    if util::kubectl().is_none() {
        return;
    }
    let file = s.write(
        "node.yaml",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node1\n  labels: {node-role.kubernetes.io/control-plane: \"\"}\nstatus:\n  capacity: {cpu: \"2\", memory: 4Gi, pods: \"110\"}\n  allocatable: {cpu: \"2\", memory: 4Gi, pods: \"110\", ephemeral-storage: 10Gi}\n  addresses: [{type: InternalIP, address: 10.0.0.1}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p1}\nspec:\n  nodeName: node1\n  containers:\n  - {name: a, image: busybox, resources: {requests: {cpu: 250m, memory: 100Mi}, limits: {memory: 200Mi}}}\n  - {name: b, image: busybox, resources: {requests: {cpu: 500m, memory: 156Mi}}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p2}\nspec:\n  nodeName: node1\n  containers:\n  - {name: a, image: busybox, resources: {requests: {cpu: \"1\", memory: 1Gi}, limits: {cpu: \"1\", memory: 1Gi}}}\n",
    );
    s.kvol(&["apply", "-f", file.to_str().unwrap()]).stdout();
    for args in [["describe", "node", "node1"], ["describe", "pod", "p1"], ["describe", "pod", "p2"]] {
        let kubectl = mask_ages(&s.kubectl(&args).unwrap().stdout());
        let kvol = mask_ages(&s.kvol(&args).stdout());
        assert_eq!(kvol, kubectl, "kvol {args:?} differs from kubectl");
    }
    let node = s.kvol(&["describe", "node", "node1"]).stdout();
    assert!(node.contains("  cpu                1750m (87%)   1 (50%)\n"), "{node}");
    assert!(node.contains("  memory             1280Mi (31%)  1224Mi (29%)\n"), "{node}");
}

/// `kubectl describe configmap` output with the entries of its `Data` section in sorted order (kubectl
/// iterates a Go map there, so its order varies from run to run).
fn sorted_config_map_entries(text: &str) -> String {
    let Some(start) = text.find("Data\n====\n").map(|i| i + "Data\n====\n".len()) else { return text.to_string() };
    let Some(end) = text[start..].find("\nBinaryData\n").map(|i| start + i) else { return text.to_string() };
    // Each entry is `key:\n----\nvalue\n` followed by a blank line.
    let mut entries: Vec<&str> = text[start..end].split_inclusive("\n\n").collect();
    entries.sort();
    format!("{}{}{}", &text[..start], entries.concat(), &text[end..])
}
