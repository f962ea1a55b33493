//! Test fixtures for the conformance suite: real pools (a loop-mounted btrfs, or a directory of loop
//! files), the real `kvol-csi` binary on a unix socket, and CSI clients. Everything a fixture creates
//! (mounts, loop devices, processes, the temp dir) is released in `Drop`, also when a test fails; on
//! failure the driver's log and the work dir are printed.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kvol_csi::v1::{
    controller_client::ControllerClient,
    identity_client::IdentityClient,
    node_client::NodeClient,
    volume_capability::{access_mode::Mode, AccessMode, AccessType, BlockVolume, MountVolume},
    CapacityRange, CreateVolumeRequest, NodePublishVolumeRequest, NodeStageVolumeRequest, VolumeCapability,
};
use tonic::transport::Channel;

pub const MIB: i64 = 1 << 20;

/// Why these tests cannot run here, if they cannot (not root, tools missing).
pub fn skip_reason(tools: &[&str]) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid =
        status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1)).unwrap_or("");
    if uid != "0" {
        return Some("needs root (mounts and loop devices)".into());
    }
    for tool in tools {
        let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|d| Path::new(d).join(tool).exists());
        if !found {
            return Some(format!("{tool} is missing (apt-get install btrfs-progs xfsprogs e2fsprogs util-linux)"));
        }
    }
    None
}

/// Skips the calling test (returns early) with a clear message when it cannot run here.
#[macro_export]
macro_rules! require {
    ($($tool:expr),*) => {
        if let Some(reason) = $crate::util::skip_reason(&[$($tool),*]) {
            eprintln!("SKIP {}: {}", module_path!(), reason);
            return;
        }
    };
}

pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Which backend a fixture uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Btrfs,
    Loop,
}

/// A temp dir holding a pool, and the kvol-csi driver serving it. Drop cleans up everything.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub kind: Kind,
    pub pool: PathBuf,
    pub socket: PathBuf,
    pub node_id: String,
    driver: Option<Child>,
    log: PathBuf,
    env: Vec<(String, String)>,
    pub channel: Option<Channel>,
}

impl Fixture {
    /// A btrfs pool on a 2 GiB (sparse) loop file, and a driver serving it.
    pub async fn btrfs() -> Fixture {
        Fixture::with(Kind::Btrfs, &[]).await
    }

    /// A loop-file pool in a temp dir, and a driver serving it.
    pub async fn loop_files() -> Fixture {
        Fixture::with(Kind::Loop, &[]).await
    }

    pub async fn with(kind: Kind, env: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::Builder::new().prefix("kvol-csi-test-").tempdir_in("/tmp").unwrap();
        let pool = dir.path().join("pool");
        std::fs::create_dir(&pool).unwrap();
        let mut fx = Fixture {
            kind,
            pool: pool.clone(),
            socket: dir.path().join("csi.sock"),
            node_id: "node-1".into(),
            driver: None,
            log: dir.path().join("driver.log"),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            channel: None,
            dir,
        };
        if kind == Kind::Btrfs {
            let img = fx.dir.path().join("btrfs.img");
            sh("truncate", &["-s", "2G", img.to_str().unwrap()]);
            sh("mkfs.btrfs", &["-q", img.to_str().unwrap()]);
            sh("mount", &["-o", "loop", img.to_str().unwrap(), pool.to_str().unwrap()]);
        }
        fx.start().await;
        fx
    }

    /// Starts (or restarts) the driver and connects.
    pub async fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        // KVOL_CSI_BIN runs another binary (or a wrapper such as strace) in place of the built one.
        let bin = std::env::var("KVOL_CSI_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_kvol-csi").to_owned());
        let mut cmd = Command::new(bin);
        cmd.arg("--endpoint")
            .arg(format!("unix://{}", self.socket.display()))
            .args(["--nodeid", &self.node_id, "--backend", if self.kind == Kind::Btrfs { "btrfs" } else { "loop" }])
            .arg("--pool")
            .arg(&self.pool)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.driver = Some(cmd.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.driver.as_mut().unwrap().try_wait().unwrap() {
                panic!("kvol-csi exited with {status}:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            if self.socket.exists() {
                if let Ok(ch) = kvol_csi::connect(self.socket.to_str().unwrap()).await {
                    self.channel = Some(ch);
                    return;
                }
            }
            assert!(Instant::now() < deadline, "kvol-csi did not listen within 10s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the driver with SIGKILL (no cleanup on its side), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.driver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.channel = None;
    }

    pub fn pid(&self) -> u32 {
        self.driver.as_ref().unwrap().id()
    }

    pub fn identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.channel.clone().unwrap())
    }

    pub fn controller(&self) -> ControllerClient<Channel> {
        ControllerClient::new(self.channel.clone().unwrap())
    }

    pub fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.channel.clone().unwrap())
    }

    /// A fresh path under the work dir (not created).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A staging directory, created as the CO would.
    pub fn staging(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("staging").join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// A target path whose parent exists, as the CO guarantees.
    pub fn target(&self, name: &str) -> PathBuf {
        let parent = self.dir.path().join("pods");
        std::fs::create_dir_all(&parent).unwrap();
        parent.join(name)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- work dir: {}\n--- kvol-csi log:\n{}", self.dir.path().display(), self.log());
        }
        self.kill();
        cleanup_under(self.dir.path());
    }
}

/// Unmounts everything under `dir` (deepest first) and detaches every loop device backed by a file
/// under it.
pub fn cleanup_under(dir: &Path) {
    for _ in 0..4 {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<PathBuf> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|p| PathBuf::from(p.replace("\\040", " ")))
            .filter(|p| p.starts_with(dir))
            .collect();
        if points.is_empty() {
            break;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for p in points {
            let _ = Command::new("umount").arg("-l").arg(&p).status();
        }
    }
    if let Ok(out) = Command::new("losetup").args(["-n", "-O", "NAME,BACK-FILE", "-l"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut cols = line.split_whitespace();
            if let (Some(dev), Some(file)) = (cols.next(), cols.next()) {
                if Path::new(file).starts_with(dir) {
                    let _ = Command::new("losetup").args(["-d", dev]).status();
                }
            }
        }
    }
}

// ---------------------------------------------------------------- request builders

pub fn mount_cap(fs_type: &str, mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume { fs_type: fs_type.into(), ..Default::default() })),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    }
}

pub fn block_cap(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    }
}

pub fn rwo() -> VolumeCapability {
    mount_cap("", Mode::SingleNodeWriter)
}

pub fn create_req(name: &str, bytes: i64, cap: VolumeCapability) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange { required_bytes: bytes, limit_bytes: 0 }),
        volume_capabilities: vec![cap],
        ..Default::default()
    }
}

pub fn stage_req(id: &str, staging: &Path, cap: VolumeCapability) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.to_str().unwrap().into(),
        volume_capability: Some(cap),
        publish_context: HashMap::new(),
        ..Default::default()
    }
}

pub fn publish_req(
    id: &str,
    staging: &Path,
    target: &Path,
    cap: VolumeCapability,
    readonly: bool,
) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.to_str().unwrap().into(),
        target_path: target.to_str().unwrap().into(),
        volume_capability: Some(cap),
        readonly,
        ..Default::default()
    }
}

/// Asserts a call failed with `code`, and returns the message.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>, code: tonic::Code) -> String {
    match result {
        Ok(r) => panic!("expected {code:?}, got OK: {:?}", r.into_inner()),
        Err(s) => {
            assert_eq!(s.code(), code, "message: {}", s.message());
            assert!(!s.message().is_empty(), "a non-OK status must carry a message");
            s.message().to_owned()
        }
    }
}

/// True if `path` is a mount point (per mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| Path::new(p) == path)
}

/// Writes `bytes` bytes of data to `path`; returns the OS error if the write failed.
pub fn write_bytes(path: &Path, bytes: usize) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0xabu8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n])?;
        left -= n;
    }
    f.sync_all()
}
