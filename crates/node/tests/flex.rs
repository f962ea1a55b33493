//! FlexVolume through the node agent, end to end: a real API server, the agent with `--volume-plugin-dir`
//! on a temporary directory, real driver processes (the seeds' bash+jq nfs driver, kvol-flex's loop driver,
//! and small misbehaving scripts) and real mounts and loop devices. Root only; the loop tests need a built
//! `kvol-flex` (`cargo build -p kvol-flex-driver`, which `cargo test --workspace` does) and say SKIP
//! without it.

mod util;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use util::*;

const T: Duration = Duration::from_secs(20);

/// The seeds' bash+jq nfs driver, as kvol-flex's tests keep it.
fn seed_nfs_driver() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../drivers/flex/tests/fixtures/seed-nfs")
}

/// This workspace's `kvol-flex`, if built.
fn kvol_flex() -> Option<PathBuf> {
    let exe = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/kvol-flex");
    exe.exists().then_some(exe)
}

fn write_script(path: &Path, body: &str) -> Result<()> {
    std::fs::create_dir_all(path.parent().unwrap())?;
    // Written aside and renamed in, as an installer does, so the prober never runs a half-written file.
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&tmp, body)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The agent's settings with FlexVolume drivers in `<work>/plugins`, keeping their state (kvol-flex's record of
/// which file each attached volume uses) in `<work>/flex-state`: the tests run in parallel, each its own node
/// with the same volume names, and must not share the host's `/var/lib/kvol-flex`.
fn flex_config(cluster: &Cluster, self_attach: bool) -> kvol_node::AgentConfig {
    let mut config = cluster.config();
    config.volume_plugin_dir = Some(cluster.dir.path().join("plugins"));
    config.flex_env = vec![("KVOL_FLEX_STATE_DIR".into(), cluster.work("flex-state").into())];
    config.controller_attach_detach = !self_attach;
    config.flex_limits.default = Duration::from_secs(3);
    config
}

fn plugins(cluster: &Cluster) -> PathBuf {
    cluster.dir.path().join("plugins")
}

/// A pod on the test node with one flexVolume volume `data`.
fn flex_pod(name: &str, driver: &str, options: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "nodeName": NODE,
            "containers": [{ "name": "c", "image": "busybox", "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }],
            "volumes": [{ "name": "data", "flexVolume": { "driver": driver, "fsType": "ext4", "options": options } }],
        }
    })
}

/// The seed's nfs driver at `k8s~nfs/nfs` behind a recording wrapper: one line per call with its argv
/// goes to the returned file, then the seed driver itself runs.
fn install_recording_seed_driver(cluster: &Cluster) -> Result<PathBuf> {
    let record = cluster.work("rec").join("calls");
    let wrapper = format!(
        "#!/bin/bash\nprintf '%s\\n' \"$*\" >> {}\nexec {} \"$@\"\n",
        record.display(),
        seed_nfs_driver().display()
    );
    write_script(&plugins(cluster).join("k8s~nfs/nfs"), &wrapper)?;
    Ok(record)
}

/// Deletes a pod and waits until the agent has torn it down and deleted it.
async fn delete_pod(cluster: &Cluster, name: &str) -> Result<()> {
    cluster.kubectl(&["delete", "pod", name, "--wait=false"], None)?;
    cluster.wait_gone(name, T).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_nfs_driver_serves_nginx_nfs_with_kubelets_argv_and_fails_cleanly() -> Result<()> {
    require_root!();
    if Command::new("jq").arg("--version").output().is_err() {
        eprintln!("SKIP: the seed driver needs jq");
        return Ok(());
    }
    let cluster = Cluster::start().await?;
    let record = install_recording_seed_driver(&cluster)?;
    let agent = Agent::start_with(
        cluster.client.clone(),
        flex_config(&cluster, false),
        std::sync::Arc::new(kvol_mount::RealMounter::new()),
    );
    let pod = cluster.seed("000-01-pod-nginx-nfs.yaml")?.remove(0);
    cluster.apply(&on_node(pod))?;
    let message =
        cluster.wait_event("nginx-nfs", "FailedMount", "Failed to mount 172.16.0.25:dws_nas_scratch", T).await?;
    ensure!(message.starts_with("MountVolume.SetUp failed for volume \"test\" : "), "{message}");

    let uid = cluster.pod("nginx-nfs").await?.unwrap().metadata.uid.unwrap();
    let volume_dir = cluster.root().join(format!("pods/{uid}/volumes/k8s~nfs/test"));
    let calls = std::fs::read_to_string(&record)?;
    let lines: Vec<&str> = calls.lines().collect();
    ensure!(lines.first() == Some(&"init"), "init first: {calls}");
    let mount = lines.iter().find(|l| l.starts_with("mount ")).context("a mount call")?;
    let (dir, options) = mount["mount ".len()..].split_once(' ').context("mount <dir> <json>")?;
    ensure!(Path::new(dir) == volume_dir, "mount dir {dir} != {}", volume_dir.display());
    let options: Value = serde_json::from_str(options)?;
    for (key, want) in [
        ("kubernetes.io/fsType", "nfs"),
        ("kubernetes.io/pod.name", "nginx-nfs"),
        ("kubernetes.io/pod.namespace", "default"),
        ("kubernetes.io/pod.uid", uid.as_str()),
        ("kubernetes.io/pvOrVolumeName", "test"),
        ("kubernetes.io/readwrite", "rw"),
        ("server", "172.16.0.25"),
        ("share", "dws_nas_scratch"),
    ] {
        ensure!(options[key] == want, "option {key}: {} in {options}", options[key]);
    }
    ensure!(options.get("kubernetes.io/serviceAccount.name").is_some(), "serviceAccount.name key: {options}");
    // Nothing left behind by the failed mount.
    ensure!(mounts_under(&cluster.root()).is_empty(), "mounts left: {:?}", mounts_under(&cluster.root()));
    ensure!(!volume_dir.exists(), "{} left behind", volume_dir.display());

    delete_pod(&cluster, "nginx-nfs").await?;
    eventually("pod dir removed", T, || !cluster.root().join(format!("pods/{uid}")).exists()).await?;
    agent.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_lvm_example_without_its_driver_gets_a_clear_failed_mount() -> Result<()> {
    require_root!();
    let cluster = Cluster::start().await?;
    let agent = Agent::start_with(
        cluster.client.clone(),
        flex_config(&cluster, false),
        std::sync::Arc::new(kvol_mount::RealMounter::new()),
    );
    let pod = cluster.seed("002-01-pod-nginx.yaml")?.remove(0);
    cluster.apply(&on_node(pod))?;
    let message = cluster.wait_event("nginx", "FailedMount", "no volume plugin matched", T).await?;
    ensure!(
        message
            == "failed to get Plugin from volumeSpec for volume \"test\" err=no volume plugin matched volume \"test\"",
        "{message}"
    );
    ensure!(mounts_under(&cluster.root()).is_empty());
    delete_pod(&cluster, "nginx").await?;
    agent.stop().await
}

/// The loop driver, attached by the agent itself: a formatted, mounted device; data that survives the
/// pod; the device detached after the last pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kvol_flex_loop_volume_keeps_its_data_across_pods_and_is_detached_after_the_last() -> Result<()> {
    require_root!();
    let Some(exe) = kvol_flex() else {
        eprintln!("SKIP: no target/debug/kvol-flex (cargo build -p kvol-flex-driver)");
        return Ok(());
    };
    let cluster = Cluster::start().await?;
    let out = Command::new(&exe)
        .args(["install", "--vendor", "kvol", "--driver", "loop", "--dir"])
        .arg(plugins(&cluster))
        .output()?;
    ensure!(out.status.success(), "install: {}", String::from_utf8_lossy(&out.stdout));
    let pool = cluster.work("pool");
    let _cleanup = LoopCleanup(pool.clone());
    let agent = Agent::start_with(
        cluster.client.clone(),
        flex_config(&cluster, true),
        std::sync::Arc::new(kvol_mount::RealMounter::new()),
    );
    let options = json!({ "volumeID": "vol1", "size": "64Mi", "pool": pool });
    cluster.apply(&flex_pod("loop-1", "kvol/loop", options.clone()))?;
    let pod = cluster.wait_ready("loop-1", T).await?;
    let uid = pod.metadata.uid.clone().unwrap();
    let volume = cluster.root().join(format!("pods/{uid}/volumes/kvol~loop/data"));
    // kubelet names a flex volume by its spec name (it ignores what `getvolumename` answers).
    let global = cluster.root().join("plugins/kubernetes.io/flexvolume/kvol/loop/mounts/data");
    let pod_mount = single_mount(&volume)?;
    let device_mount = single_mount(&global)?;
    ensure!(device_mount.fs_type == "ext4", "formatted ext4: {device_mount:?}");
    ensure!(pod_mount.source == device_mount.source, "the pod's mount binds the device mount");
    std::fs::write(volume.join("hello"), "kept")?;

    delete_pod(&cluster, "loop-1").await?;
    // The agent detaches after the device's unmount: wait for both.
    eventually("device unmounted and detached", T, || {
        mounts_under(&cluster.root()).is_empty() && loops_backed_under(&pool).is_empty()
    })
    .await?;

    cluster.apply(&flex_pod("loop-2", "kvol/loop", options))?;
    let pod = cluster.wait_ready("loop-2", T).await?;
    let uid = pod.metadata.uid.unwrap();
    let volume = cluster.root().join(format!("pods/{uid}/volumes/kvol~loop/data"));
    ensure!(std::fs::read_to_string(volume.join("hello"))? == "kept", "data survived detach and attach");
    delete_pod(&cluster, "loop-2").await?;
    eventually("all unmounted and detached", T, || {
        mounts_under(&cluster.root()).is_empty() && loops_backed_under(&pool).is_empty()
    })
    .await?;
    agent.stop().await
}

/// Regression (issue 11): kubelet detaches a device only after its UnmountDevice succeeded, and keeps the
/// two steps apart. The agent ran them as one operation, so a detach that failed after the unmount left the
/// device recorded as mounted: the next pod of the volume skipped MountDevice and its mount failed for good
/// ("mountdevice must run before mount"). Here the driver's detach fails while a file exists; the next pod
/// must get the device mounted again, and the device must be detached once the detach works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_detach_failed_after_its_unmount_is_mounted_again_for_the_next_pod() -> Result<()> {
    require_root!();
    let Some(exe) = kvol_flex() else {
        eprintln!("SKIP: no target/debug/kvol-flex (cargo build -p kvol-flex-driver)");
        return Ok(());
    };
    let cluster = Cluster::start().await?;
    let pool = cluster.work("pool");
    let _cleanup = LoopCleanup(pool.clone());
    let control = cluster.work("control");
    let (refuse, refused) = (control.join("refuse-detach"), control.join("detach-refused"));
    // kvol-flex's loop driver behind a wrapper whose detach fails while `refuse` exists.
    let wrapper = format!(
        "#!/bin/bash\nif [ \"$1\" = detach ] && [ -e {refuse} ]; then\n  echo \"$*\" >> {refused}\n  \
         echo '{{\"status\":\"Failure\",\"message\":\"detach refused by the test\"}}'\n  exit 1\nfi\n\
         exec {exe} loop \"$@\"\n",
        refuse = refuse.display(),
        refused = refused.display(),
        exe = exe.display()
    );
    write_script(&plugins(&cluster).join("kvol~loop/loop"), &wrapper)?;
    let agent = Agent::start_with(
        cluster.client.clone(),
        flex_config(&cluster, true),
        std::sync::Arc::new(kvol_mount::RealMounter::new()),
    );
    let options = json!({ "volumeID": "vol1", "size": "64Mi", "pool": pool });
    let global = cluster.root().join("plugins/kubernetes.io/flexvolume/kvol/loop/mounts/data");
    cluster.apply(&flex_pod("first", "kvol/loop", options.clone()))?;
    let uid = cluster.wait_ready("first", T).await?.metadata.uid.unwrap();
    std::fs::write(cluster.root().join(format!("pods/{uid}/volumes/kvol~loop/data/hello")), "kept")?;

    std::fs::write(&refuse, "")?;
    delete_pod(&cluster, "first").await?;
    eventually("the device unmounted and its detach refused", T, || {
        mounts_under(&cluster.root()).is_empty() && refused.exists()
    })
    .await?;
    ensure!(!loops_backed_under(&pool).is_empty(), "still attached: the detach failed");

    cluster.apply(&flex_pod("second", "kvol/loop", options))?;
    let uid = cluster.wait_ready("second", T).await?.metadata.uid.unwrap();
    ensure!(single_mount(&global)?.fs_type == "ext4", "the device is mounted again");
    let data = cluster.root().join(format!("pods/{uid}/volumes/kvol~loop/data/hello"));
    ensure!(std::fs::read_to_string(data)? == "kept", "the second pod sees the first pod's data");

    std::fs::remove_file(&refuse)?;
    delete_pod(&cluster, "second").await?;
    eventually("all unmounted and detached", T, || {
        mounts_under(&cluster.root()).is_empty() && loops_backed_under(&pool).is_empty()
    })
    .await?;
    agent.stop().await
}

/// A driver installed while the agent runs is used without a restart; removing it unloads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_installed_while_the_agent_runs_is_used_and_removing_it_unloads_it() -> Result<()> {
    require_root!();
    let Some(exe) = kvol_flex() else {
        eprintln!("SKIP: no target/debug/kvol-flex (cargo build -p kvol-flex-driver)");
        return Ok(());
    };
    let cluster = Cluster::start().await?;
    let pool = cluster.work("pool");
    let _cleanup = LoopCleanup(pool.clone());
    let agent = Agent::start_with(
        cluster.client.clone(),
        flex_config(&cluster, true),
        std::sync::Arc::new(kvol_mount::RealMounter::new()),
    );
    let options = json!({ "volumeID": "dyn", "size": "32Mi", "pool": pool });
    cluster.apply(&flex_pod("late", "kvol/loop", options.clone()))?;
    cluster.wait_event("late", "FailedMount", "no volume plugin matched", T).await?;

    let out = Command::new(&exe)
        .args(["install", "--vendor", "kvol", "--driver", "loop", "--dir"])
        .arg(plugins(&cluster))
        .output()?;
    ensure!(out.status.success(), "install: {}", String::from_utf8_lossy(&out.stdout));
    cluster.wait_ready("late", T).await?;
    delete_pod(&cluster, "late").await?;
    eventually("torn down and detached", T, || {
        mounts_under(&cluster.root()).is_empty() && loops_backed_under(&pool).is_empty()
    })
    .await?;

    std::fs::remove_dir_all(plugins(&cluster).join("kvol~loop"))?;
    let node_events = || async {
        let events: kube::Api<k8s_openapi::api::core::v1::Event> =
            kube::Api::namespaced(cluster.client.clone(), "default");
        let list = events.list(&Default::default()).await.unwrap();
        list.items.into_iter().filter_map(|e| e.reason).collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + T;
    while !node_events().await.iter().any(|r| r == "FlexVolumeDriverRemoved") {
        ensure!(std::time::Instant::now() < deadline, "no FlexVolumeDriverRemoved event: {:?}", node_events().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.apply(&flex_pod("after", "kvol/loop", options))?;
    cluster.wait_event("after", "FailedMount", "no volume plugin matched", T).await?;
    delete_pod(&cluster, "after").await?;
    agent.stop().await
}

/// Misbehaving drivers: each pod gets a FailedMount naming what went wrong, and nothing stays mounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_drivers_get_clear_failed_mounts_and_leave_nothing_behind() -> Result<()> {
    require_root!();
    let cluster = Cluster::start().await?;
    let pid_file = cluster.work("hang").join("pid");
    let hang = format!("echo $$ >> {}; sleep 600", pid_file.display());
    let init = r#"if [ "$1" = init ]; then echo '{"status":"Success","capabilities":{"attach":false}}'; exit 0; fi"#;
    let drivers = [
        ("hang", hang.as_str(), "did not finish within 3s; its process group was killed"),
        ("garbage", "echo 'this is not json'", "this is not json"),
        ("liar", r#"echo '{"status":"Success"}'; exit 3"#, "printed a Success status but exited with exit status: 3"),
        ("nomount", r#"echo '{"status":"Not supported","message":"no mount here"}'"#, "Not supported"),
    ];
    for (name, body, _) in drivers {
        write_script(
            &plugins(&cluster).join(format!("bad~{name}/{name}")),
            &format!(
                "#!/bin/bash\n{init}\nif [ \"$1\" = mount ]; then {body}; fi\necho '{{\"status\":\"Success\"}}'\n"
            ),
        )?;
    }
    let agent = Agent::start_with(
        cluster.client.clone(),
        flex_config(&cluster, false),
        std::sync::Arc::new(kvol_mount::RealMounter::new()),
    );
    for (name, _, _) in drivers {
        cluster.apply(&flex_pod(name, &format!("bad/{name}"), json!({})))?;
    }
    for (name, _, want) in drivers {
        let message = cluster.wait_event(name, "FailedMount", "MountVolume.SetUp failed", T).await?;
        ensure!(message.contains(want), "{name}: {want:?} not in {message:?}");
    }
    ensure!(mounts_under(&cluster.root()).is_empty(), "mounts left: {:?}", mounts_under(&cluster.root()));
    for (name, _, _) in drivers {
        delete_pod(&cluster, name).await?;
    }
    // Every run of the hung driver (it is retried) was killed with its whole process group (its `sleep`
    // too): the last one within its 3 s limit of the pod's deletion.
    let pids: Vec<String> = std::fs::read_to_string(&pid_file)?.lines().map(str::to_owned).collect();
    ensure!(!pids.is_empty(), "the hung driver ran");
    let alive = |pid: &String| {
        let group = Command::new("pgrep").args(["-g", pid]).output().map(|o| o.stdout).unwrap_or_default();
        Path::new(&format!("/proc/{pid}")).exists() || !group.is_empty()
    };
    eventually("every hung driver run killed with its process group", Duration::from_secs(10), || {
        !pids.iter().any(alive)
    })
    .await?;
    agent.stop().await
}

/// Unmounts what is mounted under the pool and detaches every loop device backed by a file in it when the
/// test ends, pass or fail.
struct LoopCleanup(PathBuf);

impl Drop for LoopCleanup {
    fn drop(&mut self) {
        detach_all_under(&self.0);
        for device in loops_backed_under(&self.0) {
            let _ = Command::new("losetup").arg("-d").arg(&device).status();
        }
    }
}

/// The loop devices whose backing file is under `dir` (`/sys/block/loopN/loop/backing_file`).
fn loops_backed_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let backing = std::fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            Path::new(backing.trim_end()).starts_with(dir).then(|| Path::new("/dev").join(name))
        })
        .collect()
}

/// Seed 000's variant of the nfs driver, which records its arguments instead of mounting (its record file
/// moved from the shared `/tmp/aaa` into the test's directory): the pod gets its volume, and the record
/// shows the pod's volume directory and the options kubelet passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_000_recording_driver_mounts_nginx_nfs_and_records_kubelets_arguments() -> Result<()> {
    require_root!();
    if Command::new("jq").arg("--version").output().is_err() {
        eprintln!("SKIP: the seed driver needs jq");
        return Ok(());
    }
    let cluster = Cluster::start().await?;
    let record = cluster.work("rec").join("aaa");
    let seed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../drivers/flex/tests/fixtures/seed-000-args"),
    )?;
    ensure!(seed.contains(" >> /tmp/aaa\n"), "the seed records into /tmp/aaa");
    write_script(
        &plugins(&cluster).join("k8s~nfs/nfs"),
        &seed.replace(" >> /tmp/aaa\n", &format!(" >> {}\n", record.display())),
    )?;
    let agent = Agent::start_with(
        cluster.client.clone(),
        flex_config(&cluster, false),
        std::sync::Arc::new(kvol_mount::RealMounter::new()),
    );
    let pod = cluster.seed("000-01-pod-nginx-nfs.yaml")?.remove(0);
    cluster.apply(&on_node(pod))?;
    let ready = cluster.wait_ready("nginx-nfs", T).await?;
    let uid = ready.metadata.uid.unwrap();
    let volume_dir = cluster.root().join(format!("pods/{uid}/volumes/k8s~nfs/test"));
    ensure!(volume_dir.is_dir(), "the driver made {}", volume_dir.display());
    let recorded = std::fs::read_to_string(&record)?;
    ensure!(recorded == format!("{}, 172.16.0.25, dws_nas_scratch\n", volume_dir.display()), "recorded: {recorded:?}");
    delete_pod(&cluster, "nginx-nfs").await?;
    eventually("the pod's directory removed", T, || !cluster.root().join(format!("pods/{uid}")).exists()).await?;
    agent.stop().await
}

/// Seed 003's FlexVolume PersistentVolume, bound to a claim a pod uses: the driver is called for the PV
/// (its name as `kubernetes.io/pvOrVolumeName`, the PV's options) at the pod's directory named after the
/// PV, and fails cleanly here (no kernel NFS client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_flexvolume_pv_is_mounted_through_its_claim_with_the_pvs_options() -> Result<()> {
    require_root!();
    if Command::new("jq").arg("--version").output().is_err() {
        eprintln!("SKIP: the seed driver needs jq");
        return Ok(());
    }
    let cluster = Cluster::start().await?;
    let record = install_recording_seed_driver(&cluster)?;
    let agent = Agent::start_with(
        cluster.client.clone(),
        flex_config(&cluster, false),
        std::sync::Arc::new(kvol_mount::RealMounter::new()),
    );
    let pv = cluster.seed("003-01-persistentvolume-pv-flex-nfs.yaml")?.remove(0);
    cluster.apply(&pv)?;
    cluster.apply(&json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": { "name": "flex-claim", "namespace": "default" },
        "spec": { "accessModes": ["ReadWriteMany"], "storageClassName": "", "resources": { "requests": { "storage": "1Gi" } } }
    }))?;
    cluster.bind("pv-flex-nfs", "flex-claim").await?;
    cluster.apply(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "uses-flex-pv", "namespace": "default" },
        "spec": {
            "nodeName": NODE,
            "containers": [{ "name": "c", "image": "busybox", "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }],
            "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": "flex-claim" } }],
        }
    }))?;
    let message = cluster.wait_event("uses-flex-pv", "FailedMount", "Failed to mount 192.168.0.170:export", T).await?;
    ensure!(message.starts_with("MountVolume.SetUp failed for volume \"data\" : "), "{message}");
    let uid = cluster.pod("uses-flex-pv").await?.unwrap().metadata.uid.unwrap();
    let calls = std::fs::read_to_string(&record)?;
    let mount = calls.lines().find(|l| l.starts_with("mount ")).context("a mount call")?;
    let (dir, options) = mount["mount ".len()..].split_once(' ').context("mount <dir> <json>")?;
    ensure!(Path::new(dir) == cluster.root().join(format!("pods/{uid}/volumes/k8s~nfs/pv-flex-nfs")), "{dir}");
    let options: Value = serde_json::from_str(options)?;
    for (key, want) in [
        ("kubernetes.io/pvOrVolumeName", "pv-flex-nfs"),
        ("kubernetes.io/fsType", "nfs"),
        ("kubernetes.io/readwrite", "rw"),
        ("server", "192.168.0.170"),
        ("share", "export"),
    ] {
        ensure!(options[key] == want, "option {key}: {} in {options}", options[key]);
    }
    ensure!(mounts_under(&cluster.root()).is_empty());
    delete_pod(&cluster, "uses-flex-pv").await?;
    agent.stop().await
}
