//! The node agent against a real API server and real mounts (root only; skipped otherwise).

mod util;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use serde_json::json;
use util::*;

const T: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_test_pd_with_empty_dir_is_set_up_at_kubelets_path_and_torn_down_on_delete() -> Result<()> {
    require_root!();
    let cluster = Cluster::start().await?;
    let agent = Agent::start(&cluster);
    let pod = cluster.seed("001-01-pod-test-pd.yaml")?.remove(0);
    cluster.apply(&on_node(pod))?;
    let pod = cluster.wait_ready("test-pd", T).await?;
    assert_eq!(pod.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    let dir = volume_dir(&cluster.root(), &pod, "kubernetes.io/empty-dir", "cache-volume");
    let meta = std::fs::metadata(&dir)?;
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o777, "emptyDir is 0777 whatever the umask");
    assert!(mounts_under(&cluster.root()).is_empty(), "a disk emptyDir is a plain directory");
    std::fs::write(dir.join("data"), "x")?;

    cluster.kubectl(&["delete", "pod", "test-pd", "--wait=false"], None)?;
    cluster.wait_gone("test-pd", T).await?;
    let pod_dir = kvol_mount::paths::pod_dir(&cluster.root(), pod.metadata.uid.as_deref().unwrap());
    ensure!(!pod_dir.exists(), "pod dir {} left behind", pod_dir.display());
    agent.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_empty_dir_is_a_tmpfs_with_the_size_limit() -> Result<()> {
    require_root!();
    let cluster = Cluster::start().await?;
    let agent = Agent::start(&cluster);
    let mut pod = cluster.seed("001-01-pod-test-pd.yaml")?.remove(0);
    pod["spec"]["volumes"][0]["emptyDir"] = json!({"medium": "Memory", "sizeLimit": "16Mi"});
    cluster.apply(&on_node(pod))?;
    let pod = cluster.wait_ready("test-pd", T).await?;
    let dir = volume_dir(&cluster.root(), &pod, "kubernetes.io/empty-dir", "cache-volume");
    let m = single_mount(&dir)?;
    assert_eq!(m.fs_type, "tmpfs");
    assert_eq!(m.super_option("size"), Some("16384k"));
    cluster.kubectl(&["delete", "pod", "test-pd", "--wait=false"], None)?;
    cluster.wait_gone("test-pd", T).await?;
    assert!(mounts_under(&cluster.root()).is_empty());
    assert!(!dir.exists());
    agent.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_empty_dir_over_its_size_limit_is_evicted_with_kubelets_message() -> Result<()> {
    require_root!();
    let cluster = Cluster::start().await?;
    let agent = Agent::start(&cluster);
    let mut pod = cluster.seed("001-01-pod-test-pd.yaml")?.remove(0);
    pod["spec"]["volumes"][0]["emptyDir"] = json!({"sizeLimit": "64Ki"});
    cluster.apply(&on_node(pod))?;
    let pod = cluster.wait_ready("test-pd", T).await?;
    let dir = volume_dir(&cluster.root(), &pod, "kubernetes.io/empty-dir", "cache-volume");
    std::fs::write(dir.join("big"), vec![7u8; 1 << 20])?;
    let msg = cluster.wait_event("test-pd", "Evicted", "exceeds the limit", T).await?;
    assert_eq!(msg, "Usage of EmptyDir volume \"cache-volume\" exceeds the limit \"64Ki\". ");
    let deadline = std::time::Instant::now() + T;
    loop {
        let p = cluster.pod("test-pd").await?.unwrap();
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed") && !dir.exists() {
            assert_eq!(p.status.as_ref().unwrap().reason.as_deref(), Some("Evicted"));
            break;
        }
        ensure!(std::time::Instant::now() < deadline, "pod not failed and torn down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_test_pd_with_host_path_directory_and_its_type_mismatch() -> Result<()> {
    require_root!();
    let cluster = Cluster::start().await?;
    let agent = Agent::start(&cluster);
    let data = cluster.work("data");
    let mut pod = cluster.seed("001-02-pod-test-pd.yaml")?.remove(0);
    assert_eq!(pod["spec"]["volumes"][0]["hostPath"]["type"], "Directory");
    pod["spec"]["volumes"][0]["hostPath"]["path"] = json!(data);
    cluster.apply(&on_node(pod.clone()))?;
    let ready = cluster.wait_ready("test-pd", T).await?;
    // Like kubelet, hostPath mounts nothing: the runtime binds the host path itself.
    assert!(mounts_under(&cluster.root()).is_empty());
    let mounts = kvol_node::container_mounts(
        &cluster.root(),
        &ready,
        "test-container",
        &[("test-volume".to_string(), (data.clone(), false))].into(),
    )?;
    assert_eq!(mounts[0].source, data);
    assert_eq!(mounts[0].destination, "/test-pd");

    // A file where a directory is declared: kubelet's FailedMount.
    let file = cluster.work("x").join("not-a-dir");
    std::fs::write(&file, "")?;
    pod["metadata"]["name"] = json!("test-pd-bad");
    pod["spec"]["volumes"][0]["hostPath"]["path"] = json!(file);
    cluster.apply(&on_node(pod))?;
    let want = format!(
        "MountVolume.SetUp failed for volume \"test-volume\" : hostPath type check failed: {} is not a directory",
        file.display()
    );
    let got = cluster.wait_event("test-pd-bad", "FailedMount", "hostPath type check failed", T).await?;
    assert_eq!(got, want);
    let timeout = cluster
        .wait_event("test-pd-bad", "FailedMount", "Unable to attach or mount volumes", Duration::from_secs(10))
        .await?;
    assert_eq!(
        timeout,
        "Unable to attach or mount volumes: unmounted volumes=[test-volume], unattached volumes=[test-volume]: timed out waiting for the condition"
    );
    let bad = cluster.pod("test-pd-bad").await?.unwrap();
    let (status, message) = condition(&bad).unwrap();
    assert_eq!(status, "False");
    assert!(message.starts_with("Unable to attach or mount volumes: unmounted volumes=[test-volume]"), "{message}");
    assert_eq!(bad.status.unwrap().phase.as_deref(), Some("Pending"));
    agent.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_or_create_hosts_file_keeps_its_inode_on_in_place_updates() -> Result<()> {
    require_root!();
    let cluster = Cluster::start().await?;
    let agent = Agent::start(&cluster);
    let etc = cluster.work("etc");
    let hosts = etc.join("hosts");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hosts"},
        "spec": {"containers": [{"name": "web", "image": "nginx",
                                 "volumeMounts": [{"name": "hosts", "mountPath": "/etc/hosts"}]}],
                 "volumes": [{"name": "hosts", "hostPath": {"path": hosts, "type": "FileOrCreate"}}]}
    });
    cluster.apply(&on_node(pod))?;
    let ready = cluster.wait_ready("hosts", T).await?;
    let meta = std::fs::metadata(&hosts)?;
    assert!(meta.is_file() && meta.len() == 0, "FileOrCreate creates an empty file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o644 & !0o022);
    // The container runtime's bind of the file, as `kvol mounts` describes it.
    let mounts = kvol_node::container_mounts(
        &cluster.root(),
        &ready,
        "web",
        &[("hosts".to_string(), (hosts.clone(), false))].into(),
    )?;
    let in_container = cluster.work("container").join("hosts");
    std::fs::write(&in_container, "")?;
    nix::mount::mount(
        Some(&mounts[0].source),
        &in_container,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )?;
    let ino = std::fs::metadata(&hosts)?.ino();
    // echo >> and `cat temp > hosts` write in place: the container sees it, inode unchanged.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&hosts)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"1.1.1.1 xxx.com\n"))?;
    std::fs::write(&hosts, "2.2.2.2 xxx.com\n")?;
    assert_eq!(std::fs::read_to_string(&in_container)?, "2.2.2.2 xxx.com\n");
    assert_eq!(std::fs::metadata(&hosts)?.ino(), ino);
    assert_eq!(std::fs::metadata(&in_container)?.ino(), ino);
    // sed -i replaces the file (new inode): the container keeps the old one.
    std::fs::write(etc.join("tmp"), "3.3.3.3 xxx.com\n")?;
    std::fs::rename(etc.join("tmp"), &hosts)?;
    assert_eq!(std::fs::read_to_string(&in_container)?, "2.2.2.2 xxx.com\n");
    nix::mount::umount2(&in_container, nix::mount::MntFlags::MNT_DETACH)?;
    agent.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_configmap_pod_projects_items_and_updates_atomically() -> Result<()> {
    require_root!();
    let cluster = Cluster::start().await?;
    let agent = Agent::start(&cluster);
    cluster.create(&["configmap", "log-config", "--from-literal=log_level=INFO", "--from-literal=other=x"])?;
    let pod = cluster.seed("001-03-pod-configmap-pod.yaml")?.remove(0);
    cluster.apply(&on_node(pod))?;
    let pod = cluster.wait_ready("configmap-pod", T).await?;
    let dir = volume_dir(&cluster.root(), &pod, "kubernetes.io/configmap", "config-vol");
    assert_eq!(std::fs::read_to_string(dir.join("log_level"))?, "INFO");
    assert_eq!(std::fs::read_link(dir.join("log_level"))?, std::path::Path::new("..data/log_level"));
    assert!(!dir.join("other").exists(), "only the listed item is projected");
    assert_eq!(std::fs::metadata(dir.join("log_level"))?.permissions().mode() & 0o777, 0o644);

    // A second pod with a pair of keys that always change together; a reader must never see them differ.
    cluster.create(&["configmap", "pair", "--from-literal=a=0", "--from-literal=b=0"])?;
    let pair = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pair"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "volumeMounts": [{"name": "p", "mountPath": "/p"}]}],
                 "volumes": [{"name": "p", "configMap": {"name": "pair", "defaultMode": 0o440}}]}
    });
    cluster.apply(&on_node(pair))?;
    let pair = cluster.wait_ready("pair", T).await?;
    let pdir = volume_dir(&cluster.root(), &pair, "kubernetes.io/configmap", "p");
    assert_eq!(std::fs::metadata(pdir.join("a"))?.permissions().mode() & 0o777, 0o440);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let pdir = pdir.clone();
        std::thread::spawn(move || -> (u64, u64) {
            let (mut reads, mut torn) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(target) = std::fs::read_link(pdir.join("..data")) else { continue };
                let ts = pdir.join(target);
                if let (Ok(a), Ok(b)) = (std::fs::read_to_string(ts.join("a")), std::fs::read_to_string(ts.join("b"))) {
                    reads += 1;
                    if a != b {
                        torn += 1;
                    }
                }
            }
            (reads, torn)
        })
    };
    for i in 1..=10 {
        cluster.create(&["configmap", "pair", &format!("--from-literal=a={i}"), &format!("--from-literal=b={i}")])?;
        let want = i.to_string();
        eventually("the configmap update on disk", T, || {
            std::fs::read_to_string(pdir.join("a")).ok().as_deref() == Some(want.as_str())
        })
        .await?;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (reads, torn) = reader.join().unwrap();
    assert!(reads > 0);
    assert_eq!(torn, 0, "{torn} of {reads} reads saw a half-updated set");
    assert_eq!(std::fs::read_to_string(pdir.join("b"))?, "10");
    agent.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_on_tmpfs_and_a_missing_optional_one_is_fine() -> Result<()> {
    require_root!();
    let cluster = Cluster::start().await?;
    let agent = Agent::start(&cluster);
    cluster.create(&["secret", "generic", "creds", "--from-literal=password=hunter2"])?;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "s"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "volumeMounts": [{"name": "s", "mountPath": "/s"}]}],
                 "volumes": [{"name": "s", "secret": {"secretName": "creds", "items": [{"key": "password", "path": "pw", "mode": 0o400}]}},
                             {"name": "o", "secret": {"secretName": "nope", "optional": true}}]}
    });
    cluster.apply(&on_node(pod))?;
    let pod = cluster.wait_ready("s", T).await?;
    let dir = volume_dir(&cluster.root(), &pod, "kubernetes.io/secret", "s");
    assert_eq!(single_mount(&dir)?.fs_type, "tmpfs");
    assert_eq!(std::fs::read_to_string(dir.join("pw"))?, "hunter2");
    assert_eq!(std::fs::metadata(dir.join("pw"))?.permissions().mode() & 0o777, 0o400);
    cluster.kubectl(&["delete", "pod", "s", "--wait=false"], None)?;
    cluster.wait_gone("s", T).await?;
    assert!(mounts_under(&cluster.root()).is_empty());
    agent.stop().await
}

/// The seed's PV/PVC pair, made a local volume in a temp dir and bound by hand.
async fn local_claim(cluster: &Cluster, pv_name: &str, path: &std::path::Path) -> Result<()> {
    let mut claim = cluster.seed("001-06-persistentvolumeclaim-myclaim.yaml")?.remove(0);
    claim["metadata"]["name"] = json!("myclaim");
    cluster.apply(&claim)?;
    let pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv_name, "labels": {"release": "stable", "environment": "dev"}},
        "spec": {"capacity": {"storage": "8Gi"}, "accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                 "storageClassName": "slow", "persistentVolumeReclaimPolicy": "Retain",
                 "local": {"path": path},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE]}]}]}}}
    });
    cluster.apply(&pv)?;
    cluster.bind(pv_name, "myclaim").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_mypod_with_a_claim_bind_mounts_the_local_pv() -> Result<()> {
    require_root!();
    let cluster = Cluster::start().await?;
    let agent = Agent::start(&cluster);
    let disk = cluster.work("disk");
    std::fs::write(disk.join("index.html"), "hello")?;
    let pod = cluster.seed("001-07-pod-mypod.yaml")?.remove(0);
    // The pod first waits for its claim, with kubelet's message.
    cluster.apply(&on_node(pod.clone()))?;
    eventually("the unbound-claim message", T, || {
        let p = futures::executor::block_on(cluster.pod("mypod")).ok().flatten();
        p.as_ref().and_then(condition).is_some_and(|c| c.1.contains("persistentvolumeclaims \"myclaim\" not found"))
    })
    .await?;
    // (The API forbids mountOptions on local PVs, as Kubernetes does; nfs carries them, see its test.)
    local_claim(&cluster, "local-pv", &disk).await?;
    let ready = cluster.wait_ready("mypod", T).await?;
    let dir = volume_dir(&cluster.root(), &ready, "kubernetes.io/local-volume", "local-pv");
    let m = single_mount(&dir)?;
    assert_eq!(m.root, disk, "bind of the PV's path");
    assert!(!m.is_read_only());
    assert_eq!(std::fs::read_to_string(dir.join("index.html"))?, "hello");
    cluster.kubectl(&["delete", "pod", "mypod", "--wait=false"], None)?;
    cluster.wait_gone("mypod", T).await?;
    assert!(mounts_under(&cluster.root()).is_empty());
    assert_eq!(std::fs::read_to_string(disk.join("index.html"))?, "hello", "the PV's data stays");

    // readOnly on the claim: a real read-only bind remount.
    let mut ro = pod;
    ro["spec"]["volumes"][0]["persistentVolumeClaim"]["readOnly"] = json!(true);
    ro["metadata"]["name"] = json!("mypod-ro");
    cluster.apply(&on_node(ro))?;
    let ready = cluster.wait_ready("mypod-ro", T).await?;
    let dir = volume_dir(&cluster.root(), &ready, "kubernetes.io/local-volume", "local-pv");
    assert!(single_mount(&dir)?.is_read_only());
    assert_eq!(std::fs::write(dir.join("x"), "y").unwrap_err().raw_os_error(), Some(libc::EROFS));
    std::fs::write(disk.join("x"), "y")?;
    agent.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_on_a_host_path_pv_resolves_to_the_host_path() -> Result<()> {
    require_root!();
    let cluster = Cluster::start().await?;
    let agent = Agent::start(&cluster);
    let data = cluster.work("hp");
    cluster.apply(&json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "resources": {"requests": {"storage": "1Gi"}}}}))?;
    cluster.apply(&json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "hp"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "hostPath": {"path": data.join("sub"), "type": "DirectoryOrCreate"}}}))?;
    cluster.bind("hp", "c").await?;
    cluster.apply(&on_node(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
                 "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]}})))?;
    cluster.wait_ready("p", T).await?;
    let meta = std::fs::metadata(data.join("sub"))?;
    assert!(meta.is_dir(), "DirectoryOrCreate made the directory");
    assert_eq!(meta.permissions().mode() & 0o777, 0o755);
    agent.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_nfs_claim_fails_to_mount_here_and_leaves_nothing_behind() -> Result<()> {
    require_root!();
    let cluster = Cluster::start().await?;
    let agent = Agent::start(&cluster);
    let objects = cluster.seed("004-02-persistentvolume-nfs.yaml")?;
    let mut pv = objects[0].clone();
    pv["spec"]["nfs"]["server"] = json!("127.0.0.1");
    pv["spec"]["mountOptions"] = json!(["nfsvers=4.1"]);
    cluster.apply(&pv)?;
    cluster.apply(&objects[1])?;
    cluster.bind("nfs", "nfs").await?;
    let template = &objects[2]["spec"]["template"];
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nfs-web"}, "spec": template["spec"]});
    cluster.apply(&on_node(pod))?;
    let msg = cluster.wait_event("nfs-web", "FailedMount", "MountVolume.SetUp failed for volume \"nfs\"", T).await?;
    assert!(msg.contains("127.0.0.1:/"), "{msg}");
    let pod = cluster.pod("nfs-web").await?.unwrap();
    let dir = volume_dir(&cluster.root(), &pod, "kubernetes.io/nfs", "nfs");
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(mounts_under(&cluster.root()).is_empty());
    agent.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_paths_are_bound_symlink_safely_and_escapes_are_refused() -> Result<()> {
    require_root!();
    let cluster = Cluster::start().await?;
    let agent = Agent::start(&cluster);
    let host = cluster.work("h");
    std::os::unix::fs::symlink("/etc", host.join("evil"))?;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sp"},
        "spec": {"containers": [{"name": "c", "image": "x",
                    "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "volumeMounts": [{"name": "cache", "mountPath": "/logs", "subPathExpr": "logs/$(POD)"},
                                     {"name": "cache", "mountPath": "/ro", "subPath": "ro", "readOnly": true,
                                      "mountPropagation": "HostToContainer"}]}],
                 "volumes": [{"name": "cache", "emptyDir": {}}]}
    });
    cluster.apply(&on_node(pod))?;
    let ready = cluster.wait_ready("sp", T).await?;
    let uid = ready.metadata.uid.clone().unwrap();
    let vol = volume_dir(&cluster.root(), &ready, "kubernetes.io/empty-dir", "cache");
    assert!(vol.join("logs/sp").is_dir(), "subPathExpr expanded and created");
    let target = kvol_mount::paths::pod_volume_subpath_dir(&cluster.root(), &uid, "cache", "c", 0);
    let m = single_mount(&target)?;
    assert!(m.root.ends_with("logs/sp"), "{:?}", m.root);
    let volumes = [("cache".to_string(), (vol.clone(), false))].into();
    let mounts = kvol_node::container_mounts(&cluster.root(), &ready, "c", &volumes)?;
    assert_eq!(mounts[0].source, target);
    assert_eq!(
        kvol_node::to_oci(&mounts)[1]["options"],
        json!(["rbind", "ro", "rslave"]),
        "readOnly and propagation handed to the runtime"
    );

    let escape = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "escape"},
        "spec": {"containers": [{"name": "c", "image": "x",
                    "volumeMounts": [{"name": "h", "mountPath": "/x", "subPath": "evil"}]}],
                 "volumes": [{"name": "h", "hostPath": {"path": host, "type": "Directory"}}]}
    });
    cluster.apply(&on_node(escape))?;
    let message = cluster.wait_event("escape", "FailedMount", "failed to prepare subPath", T).await?;
    assert!(message.contains("escapes the volume") && message.contains("(EXDEV)"), "{message}");
    let esc = cluster.pod("escape").await?.unwrap();
    let esc_dir = kvol_mount::paths::pod_volume_subpaths_dir(&cluster.root(), esc.metadata.uid.as_deref().unwrap());
    let escaped: Vec<_> = mounts_under(&esc_dir).into_keys().collect();
    assert!(escaped.is_empty(), "escaping subPath was mounted at {escaped:?}");
    cluster.kubectl(&["delete", "pod", "sp", "escape", "--wait=false"], None)?;
    cluster.wait_gone("sp", T).await?;
    cluster.wait_gone("escape", T).await?;
    assert!(mounts_under(&cluster.root()).is_empty());
    assert!(std::fs::read_dir(kvol_mount::paths::pods_dir(&cluster.root()))?.next().is_none());
    agent.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_whose_subpath_keeps_failing_is_deleted_without_waiting_out_the_mount_backoff() -> Result<()> {
    require_root!();
    let cluster = Cluster::start().await?;
    let agent = Agent::start(&cluster);
    let host = cluster.work("h");
    std::os::unix::fs::symlink("/etc", host.join("evil"))?;
    cluster.apply(&on_node(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stuck"},
        "spec": {"containers": [{"name": "c", "image": "x",
                    "volumeMounts": [{"name": "h", "mountPath": "/x", "subPath": "evil"}]}],
                 "volumes": [{"name": "h", "hostPath": {"path": host, "type": "Directory"}}]}
    })))?;
    cluster.wait_event("stuck", "FailedMount", "escapes the volume", T).await?;
    // Seven failures later the subPath step backs off for 32 s (0.5 s doubling).
    tokio::time::sleep(Duration::from_secs(33)).await;
    let started = Instant::now();
    cluster.kubectl(&["delete", "pod", "stuck", "--wait=false"], None)?;
    cluster.wait_gone("stuck", T).await?;
    eprintln!("deleted in {:?}", started.elapsed());
    assert!(mounts_under(&cluster.root()).is_empty());
    agent.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_wanted_mounts_and_tears_down_what_went_away_meanwhile() -> Result<()> {
    require_root!();
    let cluster = Cluster::start().await?;
    let agent = Agent::start(&cluster);
    cluster.create(&["secret", "generic", "k", "--from-literal=a=b"])?;
    for name in ["keep", "gone"] {
        cluster.apply(&on_node(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "x"}],
                     "volumes": [{"name": "m", "emptyDir": {"medium": "Memory"}},
                                 {"name": "s", "secret": {"secretName": "k"}}]}
        })))?;
    }
    let keep = cluster.wait_ready("keep", T).await?;
    cluster.wait_ready("gone", T).await?;
    let before: Vec<u32> = mounts_under(&cluster.root()).values().flatten().map(|m| m.id).collect();
    assert_eq!(before.len(), 4);
    agent.kill();
    cluster.kubectl(&["delete", "pod", "gone", "--wait=false"], None)?;
    let agent = Agent::start(&cluster);
    cluster.wait_gone("gone", T).await?;
    let after = mounts_under(&cluster.root());
    let keep_uid = keep.metadata.uid.unwrap();
    assert_eq!(after.len(), 2, "{after:?}");
    for (path, ms) in &after {
        assert!(path.to_string_lossy().contains(&keep_uid));
        assert!(before.contains(&ms[0].id), "the wanted mount {} was replaced", path.display());
    }
    agent.stop().await
}

/// Not a test: the agent as a child process for the kill -9 test; does nothing unless
/// `KVOL_TEST_CHILD_AGENT` names a kubeconfig.
#[test]
#[ignore]
fn child_agent_process() {
    let Ok(kubeconfig) = std::env::var("KVOL_TEST_CHILD_AGENT") else { return };
    let root = std::env::var("KVOL_TEST_ROOT").expect("KVOL_TEST_ROOT");
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let client = client_from(std::path::Path::new(&kubeconfig)).await.unwrap();
        kvol_node::run_agent(client, kvol_node::AgentConfig::new(NODE, root), std::future::pending()).await.unwrap();
    });
}

fn spawn_child_agent(cluster: &Cluster) -> Result<std::process::Child> {
    Ok(std::process::Command::new(std::env::current_exe()?)
        .args(["--exact", "child_agent_process", "--ignored", "--nocapture", "--test-threads=1"])
        .env("KVOL_TEST_CHILD_AGENT", &cluster.kubeconfig)
        .env("KVOL_TEST_ROOT", cluster.root())
        .stdout(std::process::Stdio::null())
        .spawn()?)
}

/// The mounts each fault-test pod must have, exactly once each, and nothing else under the root.
fn check_mounts(cluster: &Cluster, pods: &[k8s_openapi::api::core::v1::Pod]) -> std::result::Result<(), String> {
    let root = cluster.root();
    let mut expected = std::collections::BTreeSet::new();
    for (i, pod) in pods.iter().enumerate() {
        let uid = pod.metadata.uid.as_deref().unwrap();
        expected.insert(volume_dir(&root, pod, "kubernetes.io/empty-dir", "mem"));
        expected.insert(volume_dir(&root, pod, "kubernetes.io/secret", "sec"));
        expected.insert(volume_dir(&root, pod, "kubernetes.io/local-volume", &format!("pv-{i}")));
        expected.insert(kvol_mount::paths::pod_volume_subpath_dir(&root, uid, "disk", "c", 0));
    }
    let actual = mounts_under(&root);
    for (path, ms) in &actual {
        if ms.len() != 1 {
            return Err(format!("{} mounts at {}", ms.len(), path.display()));
        }
        if !expected.contains(path) {
            return Err(format!("unexpected mount {}", path.display()));
        }
    }
    if let Some(missing) = expected.iter().find(|p| !actual.contains_key(*p)) {
        return Err(format!("missing mount {}", missing.display()));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_agent_during_setup_and_teardown_converges_with_no_leaked_duplicate_or_missing_mount(
) -> Result<()> {
    require_root!();
    const PODS: usize = 4;
    let iterations: usize = std::env::var("KVOL_FAULT_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    let cluster = Cluster::start().await?;
    cluster.create(&["secret", "generic", "k", "--from-literal=a=b"])?;
    cluster.create(&["configmap", "c", "--from-literal=v=0"])?;
    for i in 0..PODS {
        let disk = cluster.work(&format!("disk-{i}"));
        cluster.apply(&json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": format!("claim-{i}")},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "resources": {"requests": {"storage": "1Gi"}}}}))?;
        cluster.apply(
            &json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": format!("pv-{i}")},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                     "local": {"path": disk},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE]}]}]}}}}),
        )?;
        cluster.bind(&format!("pv-{i}"), &format!("claim-{i}")).await?;
        cluster.apply(&on_node(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("p{i}")},
            "spec": {"containers": [{"name": "c", "image": "x", "volumeMounts": [
                        {"name": "disk", "mountPath": "/logs", "subPath": "logs"}]}],
                     "volumes": [{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                                 {"name": "disk", "emptyDir": {}},
                                 {"name": "cfg", "configMap": {"name": "c"}},
                                 {"name": "sec", "secret": {"secretName": "k"}},
                                 {"name": "pvc", "persistentVolumeClaim": {"claimName": format!("claim-{i}")}}]}
        })))?;
    }
    // Set-up, killed at random points (and a ConfigMap change now and then, so that remounts are cut too).
    for i in 0..iterations {
        let mut child = spawn_child_agent(&cluster)?;
        tokio::time::sleep(Duration::from_millis(rand::random_range(20..400))).await;
        child.kill()?;
        child.wait()?;
        if i % 4 == 1 {
            cluster.create(&["configmap", "c", &format!("--from-literal=v={i}")])?;
        }
    }
    cluster.create(&["configmap", "c", "--from-literal=v=final"])?;
    let mut child = spawn_child_agent(&cluster)?;
    let mut pods = Vec::new();
    for i in 0..PODS {
        pods.push(cluster.wait_ready(&format!("p{i}"), Duration::from_secs(30)).await?);
    }
    let mut last = String::new();
    let converged = eventually("set-up to converge", Duration::from_secs(30), || match check_mounts(&cluster, &pods) {
        Ok(()) => pods.iter().all(|p| {
            std::fs::read_to_string(volume_dir(&cluster.root(), p, "kubernetes.io/configmap", "cfg").join("v"))
                .ok()
                .as_deref()
                == Some("final")
        }),
        Err(e) => {
            last = e;
            false
        }
    })
    .await;
    converged.map_err(|e| anyhow::anyhow!("{e}: {last}"))?;
    child.kill()?;
    child.wait()?;

    // Teardown, killed at random points.
    let names: Vec<String> = (0..PODS).map(|i| format!("p{i}")).collect();
    let mut args = vec!["delete", "pod", "--wait=false"];
    args.extend(names.iter().map(String::as_str));
    cluster.kubectl(&args, None)?;
    for _ in 0..iterations {
        let mut child = spawn_child_agent(&cluster)?;
        tokio::time::sleep(Duration::from_millis(rand::random_range(20..400))).await;
        child.kill()?;
        child.wait()?;
    }
    let mut child = spawn_child_agent(&cluster)?;
    for name in &names {
        cluster.wait_gone(name, Duration::from_secs(30)).await?;
    }
    child.kill()?;
    child.wait()?;
    let left = mounts_under(&cluster.root());
    ensure!(left.is_empty(), "mounts left: {:?}", left.keys().collect::<Vec<_>>());
    let dirs: Vec<_> =
        std::fs::read_dir(kvol_mount::paths::pods_dir(&cluster.root()))?.flatten().map(|e| e.path()).collect();
    ensure!(dirs.is_empty(), "pod dirs left: {dirs:?}");
    for i in 0..PODS {
        ensure!(cluster.dir.path().join(format!("disk-{i}")).is_dir(), "the local PV's data was removed");
    }
    Ok(())
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join(program)).find(|p| p.is_file())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runc_container_writes_into_a_claim_and_reads_a_read_only_config_map() -> Result<()> {
    require_root!();
    let (Some(runc), Some(busybox)) = (which("runc"), which("busybox")) else {
        eprintln!("skipped: needs runc and busybox-static (apt-get install runc busybox-static)");
        return Ok(());
    };
    let cluster = Cluster::start().await?;
    let agent = Agent::start(&cluster);
    let disk = cluster.work("disk");
    local_claim(&cluster, "local-pv", &disk).await?;
    cluster.create(&["configmap", "log-config", "--from-literal=log_level=DEBUG"])?;
    cluster.apply(&on_node(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "writer"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "volumeMounts": [
                    {"name": "pvc", "mountPath": "/data"},
                    {"name": "cfg", "mountPath": "/etc/config"},
                    {"name": "pvc", "mountPath": "/sub", "subPath": "sub"}]}],
                 "volumes": [{"name": "pvc", "persistentVolumeClaim": {"claimName": "myclaim"}},
                             {"name": "cfg", "configMap": {"name": "log-config"}}]}
    })))?;
    let pod = cluster.wait_ready("writer", T).await?;
    let uid = pod.metadata.uid.clone().unwrap();
    let root = cluster.root();
    let volumes = [
        ("pvc".to_string(), (volume_dir(&root, &pod, "kubernetes.io/local-volume", "local-pv"), false)),
        ("cfg".to_string(), (volume_dir(&root, &pod, "kubernetes.io/configmap", "cfg"), true)),
    ]
    .into();
    let mounts = kvol_node::to_oci(&kvol_node::container_mounts(&root, &pod, "c", &volumes)?);

    let bundle = cluster.work("bundle");
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(&busybox, bin.join("busybox"))?;
    for tool in ["sh", "cat", "echo", "touch"] {
        std::os::unix::fs::symlink("busybox", bin.join(tool))?;
    }
    let out = std::process::Command::new(&runc).arg("spec").current_dir(&bundle).output()?;
    ensure!(out.status.success(), "runc spec: {}", String::from_utf8_lossy(&out.stderr));
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("config.json"))?)?;
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!([
        "sh",
        "-c",
        "echo hello-from-container > /data/out && cat /etc/config/log_level > /sub/level && \
         if touch /etc/config/x 2>/dev/null; then echo writable; else echo read-only; fi > /data/ro"
    ]);
    spec["mounts"].as_array_mut().unwrap().extend(mounts.as_array().unwrap().iter().cloned());
    std::fs::write(bundle.join("config.json"), serde_json::to_vec_pretty(&spec)?)?;
    let name = format!("kvol-test-{}", &uid[..8]);
    let run = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(&runc).args(["run", &name]).current_dir(&bundle).output(),
    )
    .await??;
    let _ = std::process::Command::new(&runc).args(["delete", "-f", &name]).output();
    ensure!(
        run.status.success(),
        "runc run failed: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(std::fs::read_to_string(disk.join("out"))?, "hello-from-container\n");
    assert_eq!(std::fs::read_to_string(disk.join("sub/level"))?, "DEBUG");
    assert_eq!(std::fs::read_to_string(disk.join("ro"))?, "read-only\n");
    cluster.kubectl(&["delete", "pod", "writer", "--wait=false"], None)?;
    cluster.wait_gone("writer", T).await?;
    assert!(mounts_under(&root).is_empty());
    agent.stop().await
}

/// The benchmark (on demand): `cargo test --release -p kvol-node --test tests bench_ -- --ignored --nocapture`.
/// 1,000 pods with emptyDir + configMap + secret + hostPath, bound at 100 pods/s, against the agent running
/// as its own process (so that its RSS is its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_thousand_pods_bound_at_100_per_second() -> Result<()> {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, PostParams};
    use kube::runtime::watcher;
    require_root!();
    let count: usize = std::env::var("KVOL_BENCH_PODS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let rate: u64 = 100;
    let cluster = Cluster::start().await?;
    cluster.create(&["configmap", "cfg", "--from-literal=a=1", "--from-literal=b=2"])?;
    cluster.create(&["secret", "generic", "sec", "--from-literal=password=x"])?;
    let host = cluster.work("host");
    let mut child = spawn_child_agent(&cluster)?;
    let pid = child.id();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");

    let ready: std::sync::Arc<parking_lot::Mutex<std::collections::HashMap<String, std::time::Instant>>> =
        Default::default();
    let watch = {
        let ready = ready.clone();
        let stream = watcher(pods.clone(), watcher::Config::default());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(ev)) = stream.next().await {
                if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) = ev {
                    if condition(&p).is_some_and(|c| c.0 == "True") {
                        ready.lock().entry(p.metadata.name.clone().unwrap()).or_insert_with(std::time::Instant::now);
                    }
                }
            }
        })
    };
    let created: std::sync::Arc<parking_lot::Mutex<std::collections::HashMap<String, std::time::Instant>>> =
        Default::default();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / rate));
    let mut creates = tokio::task::JoinSet::new();
    let start = std::time::Instant::now();
    for i in 0..count {
        tick.tick().await;
        let pod: Pod = serde_json::from_value(on_node(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("b{i}")},
            "spec": {"containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}],
                     "volumes": [{"name": "cache", "emptyDir": {}},
                                 {"name": "cfg", "configMap": {"name": "cfg"}},
                                 {"name": "sec", "secret": {"secretName": "sec"}},
                                 {"name": "host", "hostPath": {"path": host, "type": "Directory"}}]}
        })))?;
        let pods = pods.clone();
        let created = created.clone();
        creates.spawn(async move {
            let name = pod.metadata.name.clone().unwrap();
            pods.create(&PostParams::default(), &pod).await.map(|_| {
                created.lock().insert(name, std::time::Instant::now());
            })
        });
    }
    while let Some(r) = creates.join_next().await {
        r??;
    }
    let submitted = start.elapsed();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while ready.lock().len() < count {
        ensure!(std::time::Instant::now() < deadline, "only {} of {count} pods ready", ready.lock().len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all_ready = start.elapsed();
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))?
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut latencies: Vec<Duration> = {
        let created = created.lock();
        let ready = ready.lock();
        created.iter().map(|(name, c)| ready[name].saturating_duration_since(*c)).collect()
    };
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1];
    let mounts = mounts_under(&cluster.root()).len();

    let teardown_start = std::time::Instant::now();
    let mut deletes = tokio::task::JoinSet::new();
    for i in 0..count {
        let pods = pods.clone();
        deletes.spawn(async move { pods.delete(&format!("b{i}"), &DeleteParams::default()).await.map(drop) });
    }
    while let Some(r) = deletes.join_next().await {
        r??;
    }
    let deletes_accepted = teardown_start.elapsed();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut unmounted = None;
    while !pods.list(&Default::default()).await?.items.is_empty() {
        ensure!(std::time::Instant::now() < deadline, "teardown did not finish");
        if unmounted.is_none() && mounts_under(&cluster.root()).is_empty() {
            unmounted = Some(teardown_start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let teardown = teardown_start.elapsed();
    let unmounted = unmounted.unwrap_or(teardown);
    let left = mounts_under(&cluster.root()).len();
    child.kill()?;
    child.wait()?;
    watch.abort();

    let cpu = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?.trim().to_string();
    println!(
        "machine: {} CPUs, {cpu}, Linux {kernel}, build {}",
        std::thread::available_parallelism()?.get(),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    println!("pods: {count} (emptyDir + configMap + secret + hostPath), bound at {rate}/s; submitted in {submitted:.2?}, all ready at {all_ready:.2?}");
    println!(
        "bound-to-ready: p50 {:.1?}  p90 {:.1?}  p99 {:.1?}  max {:.1?}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
    println!("mounts: {mounts} for {count} pods ({:.2} per pod: the secret's tmpfs)", mounts as f64 / count as f64);
    println!(
        "teardown: {count} pods deleted at once: deletes accepted by the API server in {deletes_accepted:.2?}, \
              every mount gone at {unmounted:.2?}, every pod finally deleted at {teardown:.2?}; mounts left {left}"
    );
    println!("agent RSS at {count} pods: {:.1} MiB", rss_kib as f64 / 1024.0);
    ensure!(left == 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_injected_at_each_mount_step_is_reported_retried_and_converges() -> Result<()> {
    use kvol_mount::{Mounter, StepKind};
    require_root!();
    let cluster = Cluster::start().await?;
    let disk = cluster.work("disk");
    local_claim(&cluster, "local-pv", &disk).await?;
    cluster.create(&["secret", "generic", "k", "--from-literal=a=b"])?;
    let kinds = [
        StepKind::Bind,
        StepKind::Remount,
        StepKind::Mount,
        // (StepKind::List is not armed: set-up and teardown of these volumes no longer read the mount
        // table, so the failure would only fire in this test's own final check.)
        StepKind::IsLikelyNotMountPoint,
        StepKind::Unmount,
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        let fake = std::sync::Arc::new(kvol_mount::FakeMounter::new());
        fake.fail_at(kind, None, libc::EIO);
        let agent = Agent::start_with(cluster.client.clone(), cluster.config(), fake.clone());
        let name = format!("f{i}");
        cluster.apply(&on_node(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "x"}],
                     "volumes": [{"name": "pvc", "persistentVolumeClaim": {"claimName": "myclaim", "readOnly": true}},
                                 {"name": "mem", "emptyDir": {"medium": "Memory"}},
                                 {"name": "sec", "secret": {"secretName": "k"}}]}
        })))?;
        let pod = cluster.wait_ready(&name, T).await?;
        let local = volume_dir(&cluster.root(), &pod, "kubernetes.io/local-volume", "local-pv");
        let options = fake.mounted_options(&local).unwrap_or_default();
        ensure!(options.iter().any(|o| o == "ro"), "{kind:?}: local bind not read-only: {options:?}");
        if matches!(kind, StepKind::Bind | StepKind::Remount | StepKind::Mount) {
            let events = cluster.events(&name).await?;
            ensure!(events.iter().any(|(r, _)| r == "FailedMount"), "{kind:?}: no FailedMount: {events:?}");
        }
        cluster.kubectl(&["delete", "pod", &name, "--wait=false"], None)?;
        cluster.wait_gone(&name, T).await?;
        let left = fake.list()?;
        ensure!(left.is_empty(), "{kind:?}: mounts left in the fake table: {left:?}");
        ensure!(!kvol_mount::paths::pod_dir(&cluster.root(), pod.metadata.uid.as_deref().unwrap()).exists());
        agent.stop().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_group_owns_empty_dirs_and_projected_files_and_the_node_is_registered() -> Result<()> {
    require_root!();
    let cluster = Cluster::start().await?;
    let agent = Agent::start(&cluster);
    cluster.create(&["configmap", "c", "--from-literal=k=v"])?;
    cluster.apply(&on_node(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fsg"},
        "spec": {"securityContext": {"fsGroup": 2345, "fsGroupChangePolicy": "OnRootMismatch"},
                 "containers": [{"name": "c", "image": "x"}],
                 "volumes": [{"name": "cache", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}]}
    })))?;
    let pod = cluster.wait_ready("fsg", T).await?;
    let dir = volume_dir(&cluster.root(), &pod, "kubernetes.io/empty-dir", "cache");
    let meta = std::fs::metadata(&dir)?;
    assert_eq!(meta.gid(), 2345);
    assert_ne!(meta.mode() & 0o2000, 0, "setgid on the volume root");
    let cfg = volume_dir(&cluster.root(), &pod, "kubernetes.io/configmap", "cfg");
    assert_eq!(std::fs::metadata(cfg.join("k"))?.gid(), 2345);

    let node = kube::Api::<k8s_openapi::api::core::v1::Node>::all(cluster.client.clone()).get(NODE).await?;
    assert_eq!(node.metadata.labels.unwrap()["kubernetes.io/hostname"], NODE);
    let ready = node.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True");
    agent.stop().await
}
