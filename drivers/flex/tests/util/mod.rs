//! Test fixtures: a work dir laid out like a node (plugin dir, kubelet root, pool, state dir),
//! drivers installed into it, skip checks, and a cleanup that unmounts and detaches whatever
//! a test left behind, even when it fails. On failure the work dir and the mounts under it are
//! printed.

#![allow(dead_code)] // each test uses part of the helpers

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kvol_flex::{Driver, DriverCall, DriverStatus, MountArgs, PodInfo, VolumeSpec};

/// The binary cargo built for these tests.
pub const KVOL_FLEX: &str = env!("CARGO_BIN_EXE_kvol-flex");

/// The binary under test: $KVOL_FLEX_BINARY if set (to run these tests against the static
/// build, e.g. `target/flex-static/x86_64-unknown-linux-musl/release/kvol-flex`), else cargo's.
pub fn kvol_flex() -> PathBuf {
    std::env::var_os("KVOL_FLEX_BINARY").map(PathBuf::from).unwrap_or_else(|| KVOL_FLEX.into())
}

/// Where kvol-flex keeps its state (attached loop devices); each test points it into its work dir.
pub const STATE_DIR_ENV: &str = "KVOL_FLEX_STATE_DIR";

/// The seeds' bash+jq nfs driver, byte for byte (seed 001, "FlexVolume介绍" §4.2).
pub const SEED_NFS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seed-nfs");

/// Seed 000's variant of that driver whose mount records its arguments in /tmp/aaa instead of
/// mounting, with the helper functions the seed does not print added (see the file's header).
pub const SEED_000_ARGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seed-000-args");

/// The target the shipped kvol-flex is built for (deploy/flex/Dockerfile): static musl, so it
/// runs on any node, and so every call skips glibc's start-up (ld.so, and cpuid probing of
/// the cache sizes, which costs about half a millisecond per exec under a hypervisor).
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-musl";

/// The rustflags of the static build. Non-PIE: a static-pie binary relocates itself at every
/// start (about 1,400 relocations: copy-on-write faults on its data pages).
pub const STATIC_RUSTFLAGS: &str = "-C relocation-model=static";

/// Builds kvol-flex as shipped, static for [`STATIC_TARGET`], in its own target dir
/// (`target/flex-static`, so its rustflags never invalidate the workspace's artifacts), and
/// returns the binary. The command is printed; an error says why it could not be built (no
/// musl target: `rustup target add x86_64-unknown-linux-musl`).
pub fn build_static_kvol_flex() -> Result<PathBuf, String> {
    // CARGO_BIN_EXE is <target dir>/<profile>/kvol-flex.
    let target_dir = Path::new(KVOL_FLEX).ancestors().nth(2).ok_or("no target dir")?.join("flex-static");
    let args = ["build", "--release", "-p", "kvol-flex-driver", "--bin", "kvol-flex", "--target", STATIC_TARGET];
    eprintln!("RUSTFLAGS={STATIC_RUSTFLAGS:?} CARGO_TARGET_DIR={} cargo {}", target_dir.display(), args.join(" "));
    let out = Command::new(env!("CARGO"))
        .args(args)
        .env("RUSTFLAGS", STATIC_RUSTFLAGS)
        // It would take precedence over RUSTFLAGS.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!("{}: {}", out.status, tail.into_iter().rev().collect::<Vec<_>>().join(" | ")));
    }
    Ok(target_dir.join(STATIC_TARGET).join("release/kvol-flex"))
}

/// Why the test cannot run here, or `None`. Prints a SKIP line when it cannot.
pub fn skip_unless(test: &str, tools: &[&str]) -> bool {
    let reason = if !nix::unistd::Uid::effective().is_root() {
        Some("needs root (mounts and loop devices)".to_owned())
    } else {
        tools
            .iter()
            .find(|t| which(t).is_none())
            .map(|t| format!("needs `{t}` (apt-get install the package providing it)"))
    };
    if let Some(reason) = &reason {
        eprintln!("SKIP {test}: {reason}");
    }
    reason.is_some()
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A node in a temp dir.
pub struct Node {
    pub tmp: tempfile::TempDir,
    pub plugin_dir: PathBuf,
    pub root: PathBuf,
    pub pool: PathBuf,
    pub state: PathBuf,
}

impl Node {
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new().prefix("kvol-flex-test.").tempdir().unwrap();
        let p = tmp.path().to_owned();
        let node = Node {
            plugin_dir: p.join("exec"),
            root: p.join("kubelet"),
            pool: p.join("pool"),
            state: p.join("state"),
            tmp,
        };
        std::fs::create_dir_all(&node.plugin_dir).unwrap();
        node
    }

    /// Installs kvol-flex as `vendor~driver/driver` with its own install subcommand.
    pub fn install_kvol_flex(&self, vendor: &str, driver: &str) -> Driver {
        self.install_kvol_flex_binary(&kvol_flex(), vendor, driver)
    }

    /// Installs another build of kvol-flex (the static one) the same way.
    pub fn install_kvol_flex_binary(&self, exe: &Path, vendor: &str, driver: &str) -> Driver {
        let out = Command::new(exe)
            .args(["install", "--vendor", vendor, "--driver", driver, "--dir"])
            .arg(&self.plugin_dir)
            .output()
            .unwrap();
        let status = DriverStatus::parse(&out.stdout).unwrap();
        assert!(out.status.success() && status.status == "Success", "install: {status:?}");
        Driver::new(&self.plugin_dir, &format!("{vendor}~{driver}")).with_env(STATE_DIR_ENV, &self.state)
    }

    /// Installs a script as `dir_name/<exe>`.
    pub fn install_script(&self, dir_name: &str, exe: &str, text: &str) -> PathBuf {
        let dir = self.plugin_dir.join(dir_name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(exe);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Kubelet's pod volume dir, created as `prepareForMount` does (mode 0750).
    pub fn pod_dir(&self, uid: &str, driver: &str, volume: &str) -> PathBuf {
        let dir = kvol_flex::discovery::pod_volume_dir(&self.root, uid, driver, volume);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Kubelet's global mount dir for the volume, created as `prepareForMount` does.
    pub fn device_mount_path(&self, driver: &str, volume: &str) -> PathBuf {
        let dir = kvol_flex::discovery::device_mount_path(&self.root, driver, volume);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Mount points under the work dir, from /proc/self/mountinfo.
    pub fn mounts(&self) -> Vec<(PathBuf, String)> {
        mounts_under(self.tmp.path())
    }

    /// Loop devices backed by files under the work dir.
    pub fn loops(&self) -> Vec<String> {
        let out = Command::new("losetup").args(["-n", "-O", "NAME,BACK-FILE", "-l"]).output().unwrap();
        let prefix = self.tmp.path().to_string_lossy().into_owned();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(n, f)| (n.to_owned(), f.trim().to_owned())))
            .filter(|(_, f)| f.starts_with(&prefix))
            .map(|(n, _)| n)
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("work dir: {}", self.tmp.path().display());
            for (m, fs) in self.mounts() {
                eprintln!("  left mounted: {} ({fs})", m.display());
            }
        }
        for (m, _) in self.mounts().into_iter().rev() {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        for dev in self.loops() {
            let _ = Command::new("losetup").args(["-d", &dev]).status();
        }
    }
}

pub fn mounts_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mp = left.split(' ').nth(4)?.replace("\\040", " ");
            Some((PathBuf::from(mp), right.split(' ').next()?.to_owned()))
        })
        .filter(|(mp, _)| mp.starts_with(dir))
        .collect()
}

/// Runs a call that must succeed, with the call in the panic message.
pub async fn ok(driver: &Driver, call: &DriverCall) -> DriverStatus {
    match driver.run(call).await {
        Ok(status) => status,
        Err(e) => panic!("{} {:?}: {e}", driver.executable().display(), call.args()),
    }
}

/// Kubelet's mount arguments for pod `name` (namespace default, service account default).
pub fn pod(name: &str, uid: &str) -> MountArgs {
    MountArgs {
        pod: PodInfo {
            name: name.into(),
            namespace: "default".into(),
            uid: uid.into(),
            service_account_name: "default".into(),
        },
        secrets: Default::default(),
        fs_group: None,
    }
}

/// A loop volume spec.
pub fn loop_spec(node: &Node, name: &str, volume_id: &str, fs_type: &str) -> VolumeSpec {
    VolumeSpec {
        name: name.into(),
        fs_type: fs_type.into(),
        read_only: false,
        options: [
            ("volumeID".to_owned(), volume_id.to_owned()),
            // mkfs.xfs wants at least 300 MiB; the file is sparse.
            ("size".to_owned(), "320Mi".to_owned()),
            ("pool".to_owned(), node.pool.to_string_lossy().into_owned()),
        ]
        .into(),
    }
}
