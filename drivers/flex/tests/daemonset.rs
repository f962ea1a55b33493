//! deploy/flex/daemonset.yaml's containers, run for real: each as a runc container built the
//! way the manifest asks (its args after the image's entrypoint `/kvol-flex`, its volume mount
//! of the plugin dir, root with every capability dropped, no privilege escalation, a read-only
//! root file system), from a root file system holding only the binary (and, as the test build
//! is not static, the libraries it links). The plugin dir is a temp dir standing in for the
//! hostPath.
//!
//! `cargo test -p kvol-flex-driver --test daemonset` (needs root and runc; prints SKIP without).

mod util;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use util::*;

const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/flex/daemonset.yaml");

/// The DaemonSet in the manifest.
fn daemonset() -> Value {
    let text = std::fs::read_to_string(MANIFEST).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    docs.into_iter().find(|d| d["kind"] == "DaemonSet").expect("a DaemonSet in deploy/flex/daemonset.yaml")
}

/// A runc bundle for one of the manifest's containers.
struct Bundle {
    dir: PathBuf,
    name: String,
}

impl Bundle {
    /// Lays out `<work>/<container name>`: rootfs with the binary as `/kvol-flex` (plus its
    /// shared libraries), and config.json from `runc spec` set up as the container asks.
    fn new(work: &Path, container: &Value, plugin_volume: &str, host_plugin_dir: &Path) -> Bundle {
        let name = container["name"].as_str().unwrap();
        let dir = work.join(name);
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        std::fs::copy(kvol_flex(), rootfs.join("kvol-flex")).unwrap();
        for lib in shared_libraries(&kvol_flex()) {
            let to = rootfs.join(lib.strip_prefix("/").unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&lib, &to).unwrap();
        }
        let out = Command::new("runc").arg("spec").current_dir(&dir).output().unwrap();
        assert!(out.status.success(), "runc spec: {}", String::from_utf8_lossy(&out.stderr));
        let mut spec: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();

        // The image's ENTRYPOINT, then the container's args.
        let mut args = vec![json!("/kvol-flex")];
        args.extend(container["args"].as_array().expect("args").iter().cloned());
        spec["process"]["args"] = Value::Array(args);
        spec["process"]["terminal"] = json!(false);
        let security = &container["securityContext"];
        spec["process"]["user"] = json!({"uid": security["runAsUser"].as_u64().expect("runAsUser"), "gid": 0});
        spec["process"]["noNewPrivileges"] = json!(security["allowPrivilegeEscalation"] == false);
        spec["root"]["readonly"] = json!(security["readOnlyRootFilesystem"] == true);
        assert_eq!(security["capabilities"]["drop"], json!(["ALL"]), "{name}: the test maps drop ALL only");
        assert!(security["capabilities"].get("add").is_none(), "{name}: no capability is added");
        spec["process"]["capabilities"] =
            json!({"bounding": [], "effective": [], "permitted": [], "inheritable": [], "ambient": []});
        let mounts = container["volumeMounts"].as_array().expect("volumeMounts");
        assert_eq!(mounts.len(), 1, "{name}: the plugin dir is its only mount");
        assert_eq!(mounts[0]["name"], plugin_volume);
        spec["mounts"].as_array_mut().unwrap().push(json!({
            "destination": mounts[0]["mountPath"],
            "type": "bind",
            "source": host_plugin_dir,
            "options": ["rbind", "rw"],
        }));
        std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        Bundle { dir, name: format!("kvol-flex-ds-{}-{name}", std::process::id()) }
    }

    /// Starts the container in the foreground (its process is runc's child).
    fn start(&self) -> Child {
        Command::new("runc")
            .args(["run", "--bundle"])
            .arg(&self.dir)
            .arg(&self.name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = Command::new("runc").args(["kill", &self.name, "KILL"]).output();
        let _ = Command::new("runc").args(["delete", "--force", &self.name]).output();
    }
}

/// The shared libraries `exe` loads (its interpreter included), from ldd.
fn shared_libraries(exe: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(exe).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)";
    // a static binary prints "not a dynamic executable" (on stderr) and needs none.
    text.lines().filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/'))).map(PathBuf::from).collect()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_daemonsets_containers_install_both_drivers_from_a_locked_down_container() {
    if skip_unless("daemonset", &["runc", "ldd"]) {
        return;
    }
    let ds = daemonset();
    let pod = &ds["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["hostPath"]["path"] == "/usr/libexec/kubernetes/kubelet-plugins/volume/exec")
        .expect("a hostPath volume of kubelet's default plugin dir");
    let volume_name = volume["name"].as_str().unwrap();
    let node = Node::new();
    let work = node.tmp.path().join("bundles");

    // The init container installs nfs and exits.
    let init = &pod["initContainers"][0];
    let init_bundle = Bundle::new(&work, init, volume_name, &node.plugin_dir);
    let out = init_bundle.start().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}{}",
        init["name"],
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let status = kvol_flex::DriverStatus::parse(&out.stdout).unwrap();
    assert_eq!(status.status, "Success", "{status:?}");
    assert_eq!(status.message, "installed /flexmnt/kvol~nfs/nfs");

    // The main container installs loop and keeps running (--wait), as a DaemonSet pod must.
    let main = &pod["containers"][0];
    let main_bundle = Bundle::new(&work, main, volume_name, &node.plugin_dir);
    let mut running = main_bundle.start();
    let loop_exe = node.plugin_dir.join("kvol~loop/loop");
    wait_for("the loop driver", Duration::from_secs(30), || loop_exe.exists());
    std::thread::sleep(Duration::from_millis(300));
    assert!(running.try_wait().unwrap().is_none(), "the install-loop container keeps running");

    // Both drivers are in place, whole and executable, under kubelet's names; no temp file.
    let binary = std::fs::read(kvol_flex()).unwrap();
    for (dir, driver) in [("kvol~nfs", "nfs"), ("kvol~loop", "loop")] {
        let names: Vec<_> =
            std::fs::read_dir(node.plugin_dir.join(dir)).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [driver], "{dir}: only the driver, no temp file");
        let exe = node.plugin_dir.join(dir).join(driver);
        assert_eq!(std::fs::read(&exe).unwrap(), binary, "{dir}/{driver} is the image's binary");
        let out = Command::new(&exe).arg("init").output().unwrap();
        let caps = kvol_flex::DriverStatus::parse(&out.stdout).unwrap().capabilities;
        assert_eq!(caps.attach, driver == "loop", "{driver} init: {caps:?}");
    }

    // Killing the pod's container (a rollout) leaves the drivers installed.
    let _ = Command::new("runc").args(["kill", &main_bundle.name, "KILL"]).output();
    let exit = running.wait().unwrap();
    assert!(!exit.success());
    assert!(loop_exe.exists());
}
