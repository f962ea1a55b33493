//! Test harness for the `kvol` binary: each test starts its own `kvol server` (a fresh temp dir and a
//! free port, so tests run in parallel), runs `kvol` or the real `kubectl` against it, and kills the
//! server when dropped. Like ripgrep's `tests/util.rs`, a failing command panics with the work dir,
//! the command line, its status and output, and the tail of the server's log.

#![allow(dead_code)] // Each test binary uses a different subset of the helpers.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The workspace root, where `examples/seeds` lives.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// A seed example by its file-name prefix (`004-02`).
pub fn seed(prefix: &str) -> PathBuf {
    let dir = workspace_root().join("examples/seeds");
    let mut matches: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/seeds")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{prefix}-"))))
        .collect();
    assert_eq!(matches.len(), 1, "exactly one seed example named {prefix}-*: {matches:?}");
    matches.pop().expect("one match")
}

/// The path of the real kubectl, or None (tests using it then skip with a message).
pub fn kubectl() -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin/kubectl");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("SKIPPED: /usr/bin/kubectl is not installed; kubectl end-to-end checks not run");
        None
    }
}

/// A running `kvol server` in its own directory.
pub struct Server {
    dir: tempfile::TempDir,
    child: Child,
    /// The HTTPS address.
    pub addr: String,
    /// The flags after `--data-dir D --listen A` (kept for [`Server::restart`]).
    args: Vec<String>,
    /// Extra environment of the server process.
    env: Vec<(String, String)>,
    /// A full server (see [`Server::start_with`]): its mounts and loop devices are released on drop.
    full: bool,
}

/// The node name of a full server's in-process agent.
pub const NODE: &str = "n1";

impl Server {
    /// Starts a server and waits until its kubeconfig appears (the server's "ready" signal).
    pub fn start() -> Server {
        // These tests look at the API server and the CLI: no controller or agent changes objects
        // behind their backs (those parts have their own tests).
        Server::start_in(&["--no-controllers", "--no-agent"], false)
    }

    /// Starts the whole product in one process: API server, controllers, attach/detach controller and
    /// the node agent for node [`NODE`], with `--root-dir <dir>/root --volume-plugin-dir <dir>/plugins`,
    /// its read-only endpoints on a free port, and then `extra_args`. FlexVolume drivers keep their state in `<dir>/flex-state` (never
    /// `/var/lib/kvol-flex`). On drop the server is killed and every mount under its directory is
    /// unmounted and every loop device backed by a file under it detached, also when the test failed.
    pub fn start_with(extra_args: &[&str]) -> Server {
        Server::start_in(extra_args, true)
    }

    fn start_in(extra_args: &[&str], full: bool) -> Server {
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::Builder::new().prefix("kvol-cli-test-").tempdir().expect("temp dir");
            let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
            let addr = format!("127.0.0.1:{port}");
            let mut args = Vec::new();
            let mut env = Vec::new();
            if full {
                let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
                for sub in ["root", "plugins", "flex-state"] {
                    std::fs::create_dir_all(dir.path().join(sub)).expect("server dirs");
                }
                args.extend(["--root-dir".to_owned(), path("root"), "--volume-plugin-dir".to_owned(), path("plugins")]);
                args.extend(["--node-name".to_owned(), NODE.to_owned()]);
                // The agent's read-only endpoints (/stats/summary) on a free port of their own.
                let read_only = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port");
                args.extend(["--read-only-port".to_owned(), read_only.port().to_string()]);
                env.push(("KVOL_FLEX_STATE_DIR".to_owned(), path("flex-state")));
                // Plain text in the log the failure report prints.
                env.push(("NO_COLOR".to_owned(), "1".to_owned()));
            }
            args.extend(extra_args.iter().map(|a| a.to_string()));
            let child = spawn_server(dir.path(), &addr, &args, &env);
            let mut server = Server { dir, child, addr, args, env, full };
            match server.wait_ready(Duration::from_secs(30)) {
                Ok(()) => return server,
                Err(log) => last_log = log, // e.g. the port was taken in between: try another.
            }
        }
        panic!("kvol server did not become ready; last log:\n{last_log}");
    }

    /// Kills the server with SIGKILL, as a crash would: no in-process part gets to clean up.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same directory, address and flags (after [`Server::kill_9`]),
    /// and waits until it is ready.
    pub fn restart(&mut self) {
        self.kill_9();
        // A kubeconfig left by the killed server must not be mistaken for the new one's readiness.
        let _ = std::fs::remove_file(self.kubeconfig());
        let start = Instant::now();
        loop {
            self.child = spawn_server(self.dir.path(), &self.addr, &self.args, &self.env);
            match self.wait_ready(Duration::from_secs(30)) {
                Ok(()) => return,
                // The old listening socket may linger for a moment.
                Err(log) if start.elapsed() < Duration::from_secs(10) && log.contains("in use") => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(log) => panic!("kvol server did not restart in {}:\n{log}", self.dir.path().display()),
            }
        }
    }

    /// A full server's `--root-dir`.
    pub fn root_dir(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A full server's `--volume-plugin-dir`.
    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        let kubeconfig = self.kubeconfig();
        while start.elapsed() < timeout {
            if kubeconfig.exists() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("server exited with {status}:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("no kubeconfig after {timeout:?}:\n{}", self.log()))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<dir>/kubeconfig`.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `kvol ARGS` against this server (found through `KVOL_DATA_DIR`), run from the workspace root.
    pub fn kvol(&self, args: &[&str]) -> TestCommand<'_> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kvol"));
        cmd.args(args).current_dir(workspace_root()).env("KVOL_DATA_DIR", self.dir.path()).env_remove("KUBECONFIG");
        TestCommand { server: self, cmd }
    }

    /// The real `kubectl ARGS` against this server, or None when kubectl is not installed.
    pub fn kubectl(&self, args: &[&str]) -> Option<TestCommand<'_>> {
        let path = kubectl()?;
        let mut cmd = Command::new(path);
        cmd.args(args).current_dir(workspace_root()).env("KUBECONFIG", self.kubeconfig());
        Some(TestCommand { server: self, cmd })
    }

    /// Writes a file in the work dir and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.full {
            if std::thread::panicking() {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
                eprintln!("--- work dir: {}\n--- server log (tail):\n{}", self.dir.path().display(), tail.join("\n"));
            }
            // Before the temp dir is removed, which must never recurse into a mounted file system.
            release_host_resources_under(self.dir.path());
        }
    }
}

fn spawn_server(dir: &Path, addr: &str, args: &[String], env: &[(String, String)]) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log")).expect("server log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kvol"));
    cmd.args(["server", "--data-dir"])
        .arg(dir)
        .args(["--listen", addr])
        .args(args)
        .env("KVOL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log);
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.spawn().expect("spawn kvol server")
}

/// The mount points under `dir`, per `/proc/self/mountinfo` (octal escapes decoded).
pub fn mount_points_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Unmounts everything under `dir` (deepest first, lazily) and detaches every loop device backed by a
/// file under it. Idempotent; for test teardown.
pub fn release_host_resources_under(dir: &Path) {
    for _ in 0..4 {
        let mut points = mount_points_under(dir);
        if points.is_empty() {
            break;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for p in points {
            let _ = Command::new("umount").arg("-l").arg(&p).stderr(Stdio::null()).status();
        }
    }
    if let Ok(out) = Command::new("losetup").args(["-n", "-O", "NAME,BACK-FILE", "-l"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut cols = line.split_whitespace();
            if let (Some(dev), Some(file)) = (cols.next(), cols.next()) {
                if Path::new(file).starts_with(dir) {
                    let _ = Command::new("losetup").args(["-d", dev]).stderr(Stdio::null()).status();
                }
            }
        }
    }
}

/// A command about to run against a test server.
pub struct TestCommand<'a> {
    server: &'a Server,
    cmd: Command,
}

/// A finished command.
pub struct Run {
    /// Exit status was zero.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl<'a> TestCommand<'a> {
    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.cmd.env_remove(key);
        self
    }

    /// The underlying command (for spawning).
    pub fn into_command(self) -> Command {
        self.cmd
    }

    fn output(&mut self) -> Output {
        self.cmd.stdin(Stdio::null());
        self.cmd.output().unwrap_or_else(|e| panic!("running {:?}: {e}", self.cmd))
    }

    fn report(&self, out: &Output, expectation: &str) -> String {
        let log = self.server.log();
        let tail: Vec<&str> = log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        format!(
            "\n\n==========\n{expectation}\nwork dir: {}\ncommand: {:?}\nstatus: {}\n\nstdout:\n{}\n\nstderr:\n{}\n\nserver log (tail):\n{}\n==========\n",
            self.server.dir().display(),
            self.cmd,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail.join("\n"),
        )
    }

    /// Runs whatever the outcome.
    pub fn run(mut self) -> Run {
        let out = self.output();
        Run {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs, expects success, returns stdout.
    pub fn stdout(mut self) -> String {
        let out = self.output();
        if !out.status.success() {
            panic!("{}", self.report(&out, "expected the command to succeed"));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs, expects failure, returns the whole run.
    pub fn fails(mut self) -> Run {
        let out = self.output();
        if out.status.success() {
            panic!("{}", self.report(&out, "expected the command to fail"));
        }
        Run {
            success: false,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Replaces every age-like token (`0s`, `3m2s`, `5d`) with `<age>` padded to the same width, so
/// tables compare exactly while their alignment is still checked.
pub fn mask_ages(text: &str) -> String {
    text.lines()
        .map(|line| {
            let mut out = String::new();
            let mut rest = line;
            while !rest.is_empty() {
                let start = rest.find(|c: char| !c.is_whitespace()).unwrap_or(rest.len());
                out.push_str(&rest[..start]);
                rest = &rest[start..];
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                let token = &rest[..end];
                if is_age(token) {
                    out.push_str("<age>");
                    let spaces = rest[end..].find(|c: char| !c.is_whitespace()).unwrap_or(rest.len() - end);
                    let total = token.len() + spaces;
                    if end + spaces < rest.len() {
                        out.push_str(&" ".repeat(total.saturating_sub(5).max(1)));
                    }
                    rest = &rest[end + spaces..];
                } else {
                    out.push_str(token);
                    rest = &rest[end..];
                }
            }
            out + "\n"
        })
        .collect()
}

fn is_age(token: &str) -> bool {
    let mut saw_digit = false;
    let mut saw_unit = false;
    for c in token.chars() {
        if c.is_ascii_digit() {
            saw_digit = true;
        } else if "smhdy".contains(c) && saw_digit {
            saw_unit = true;
            saw_digit = false;
        } else {
            return false;
        }
    }
    saw_unit && !saw_digit
}

/// The resident set of process `pid`, in KiB (0 when it cannot be read). For the benchmarks.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The machine a benchmark ran on: cores, CPU model, memory, kernel.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string()))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {cpu}, {} MiB RAM, Linux {}", mem.parse::<u64>().unwrap_or(0) / 1024, kernel.trim())
}

/// The `p` quantile (0 to 1) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}
