//! Running a driver: kubelet's `DriverCall.Run`, with a time limit on every call.
//!
//! Kubelet reads the driver's stdout and stderr through one pipe (`CombinedOutput`) and parses
//! the lot as JSON; kvol does the same, so a driver that logs to stderr breaks under both.
//! Unlike kubelet, every call has a time limit; when it passes, the driver's whole process group
//! (the driver runs in a new one) is killed, so a hung `mount` helper goes too.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::discovery::{executable_path, plugin_name, unescape_qualified_name};
use crate::status::{DriverCapabilities, DriverStatus, STATUS_NOT_SUPPORTED, STATUS_SUCCESS};
use crate::{Command, DriverCall, Error, Result};

/// Output kept from one call; a driver printing more is cut off (and then fails to parse).
const MAX_OUTPUT: usize = 1 << 20;
/// Output shown in errors.
const SHOWN_OUTPUT: usize = 4096;
/// How long a call's exit alone is awaited before its output is read as it comes.
const EXIT_FIRST: Duration = Duration::from_millis(50);

/// How long each call may run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallLimits {
    /// The limit of a command with no entry in `per_command`.
    pub default: Duration,
    /// Per-command limits.
    pub per_command: BTreeMap<Command, Duration>,
    /// After the driver exits, how long to wait for processes it left behind to close the
    /// output pipe. They are not killed: a driver may legitimately start a daemon (a FUSE
    /// server) that inherited the pipe.
    pub after_exit: Duration,
}

impl Default for CallLimits {
    /// Five minutes per call, ten for `waitforattach` (kubelet's `waitForAttachTimeout`) and
    /// for `mountdevice` (which may format a large device).
    fn default() -> Self {
        CallLimits {
            default: Duration::from_secs(5 * 60),
            per_command: [
                (Command::WaitForAttach, Duration::from_secs(10 * 60)),
                (Command::MountDevice, Duration::from_secs(10 * 60)),
            ]
            .into(),
            after_exit: Duration::from_secs(1),
        }
    }
}

impl CallLimits {
    /// Sets the limit of one command.
    pub fn with(mut self, command: Command, limit: Duration) -> Self {
        self.per_command.insert(command, limit);
        self
    }

    /// The limit of `command`.
    pub fn for_command(&self, command: Command) -> Duration {
        self.per_command.get(&command).copied().unwrap_or(self.default)
    }
}

/// One installed driver: its executable, time limits, and the commands it said it does not
/// support (kubelet's `unsupportedCommands`: those are not run again until re-probed).
#[derive(Debug)]
pub struct Driver {
    name: String,
    executable: PathBuf,
    limits: CallLimits,
    env: Vec<(OsString, OsString)>,
    unsupported: Mutex<BTreeSet<Command>>,
}

impl Driver {
    /// The driver in `<plugin_dir>/<dir_name>/` (`dir_name` is `vendor~driver`).
    pub fn new(plugin_dir: &Path, dir_name: &str) -> Self {
        Self::from_executable(&unescape_qualified_name(dir_name), executable_path(plugin_dir, dir_name))
    }

    /// A driver named `vendor/driver` at an explicit executable path.
    pub fn from_executable(name: &str, executable: impl Into<PathBuf>) -> Self {
        Driver {
            name: name.to_owned(),
            executable: executable.into(),
            limits: CallLimits::default(),
            env: Vec::new(),
            unsupported: Mutex::new(BTreeSet::new()),
        }
    }

    /// Replaces the time limits.
    pub fn with_limits(mut self, limits: CallLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Adds an environment variable to every call (the driver otherwise inherits kvol's).
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `vendor/driver`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `flexvolume-vendor/driver`.
    pub fn plugin_name(&self) -> String {
        plugin_name(&self.name)
    }

    /// The executable.
    pub fn executable(&self) -> &Path {
        &self.executable
    }

    /// The limits in force.
    pub fn limits(&self) -> &CallLimits {
        &self.limits
    }

    /// Whether the driver said "Not supported" to `command` before.
    pub fn is_unsupported(&self, command: Command) -> bool {
        self.unsupported.lock().unwrap_or_else(|e| e.into_inner()).contains(&command)
    }

    /// The commands the driver said it does not support.
    pub fn unsupported_commands(&self) -> Vec<Command> {
        self.unsupported.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect()
    }

    /// Forgets the unsupported commands (after the driver was updated and re-probed).
    pub fn reset_unsupported(&self) {
        self.unsupported.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn mark_unsupported(&self, command: Command) {
        self.unsupported.lock().unwrap_or_else(|e| e.into_inner()).insert(command);
    }

    /// Runs `init` and returns the capabilities (kubelet's defaults for omitted keys).
    pub async fn init(&self) -> Result<DriverCapabilities> {
        Ok(self.run(&DriverCall::init()).await?.capabilities)
    }

    /// Runs one call and reads its answer as kubelet does.
    ///
    /// A command the driver answered "Not supported" before is not run: the result is
    /// [`Error::NotSupported`] at once.
    pub async fn run(&self, call: &DriverCall) -> Result<DriverStatus> {
        let command = call.command();
        if self.is_unsupported(command) {
            return Err(Error::NotSupported { command });
        }
        let limit = call.time_limit().unwrap_or_else(|| self.limits.for_command(command));
        let (exit, output) = self.exec(call, limit).await?;
        let parsed = DriverStatus::parse(&output);
        let bad_output = |reason: String| Error::BadOutput {
            command,
            executable: self.executable.clone(),
            reason,
            exit: if exit.success() { String::new() } else { format!(", {exit}") },
            output: shown(&output),
        };
        let status = match parsed {
            Ok(status) if !exit.success() && status.status == STATUS_SUCCESS => {
                tracing::error!(driver = %self.name, %command, %exit, "FlexVolume: driver bug: exec error but no error in response");
                return Err(Error::DriverBug { command, executable: self.executable.clone(), status: exit });
            }
            Ok(status) => status,
            Err(reason) => {
                tracing::warn!(driver = %self.name, %command, %exit, %reason, "FlexVolume: driver output is not a status");
                return Err(bad_output(reason));
            }
        };
        if status.status == STATUS_NOT_SUPPORTED {
            tracing::debug!(driver = %self.name, %command, "FlexVolume: command not supported by the driver");
            self.mark_unsupported(command);
            return Err(Error::NotSupported { command });
        }
        if status.status != STATUS_SUCCESS {
            // Arguments are not logged: mount's options carry secrets.
            tracing::warn!(driver = %self.name, %command, status = %status.status, message = %status.message, "FlexVolume: driver call failed");
            return Err(Error::Failed { command, status: status.status, message: status.message });
        }
        Ok(status)
    }

    /// Spawns the driver in its own process group with stdout and stderr on one pipe, and
    /// collects its output until it exits (plus `after_exit` for leftovers), or kills the
    /// group when `limit` passes.
    async fn exec(&self, call: &DriverCall, limit: Duration) -> Result<(ExitStatus, Vec<u8>)> {
        let command = call.command();
        let spawn_err = |source| Error::Spawn { command, executable: self.executable.clone(), source };
        let wait_err = |source| Error::Wait { command, executable: self.executable.clone(), source };
        let deadline = Instant::now() + limit;

        let (reader, writer) = std::io::pipe().map_err(spawn_err)?;
        // Only this end: the driver's end stays blocking, as kubelet's is.
        fcntl(&reader, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| spawn_err(e.into()))?;
        let mut cmd = tokio::process::Command::new(&self.executable);
        cmd.args(call.args())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer.try_clone().map_err(spawn_err)?))
            .stderr(Stdio::from(writer))
            .process_group(0)
            .kill_on_drop(true);
        let mut spawned = cmd.spawn();
        // ETXTBSY: the executable is still open for writing somewhere, typically because it
        // was just installed while another thread forked. It passes in milliseconds.
        for _ in 0..10 {
            match &spawned {
                Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    spawned = cmd.spawn();
                }
                _ => break,
            }
        }
        // The Command holds the parent's copies of the pipe's write end: drop them so that
        // end-of-file comes when the driver (and whatever it started) closes the pipe.
        drop(cmd);
        let mut child = spawned.map_err(spawn_err)?;
        let pgid = child.id().map(|id| Pid::from_raw(id as i32));
        let mut group = GroupKiller { pgid, armed: true };

        let mut output = Vec::new();
        let after_exit = self.limits.after_exit;
        // Most calls answer and exit within milliseconds. Until EXIT_FIRST passes, only the exit
        // is awaited (under one timer) and the pipe is not registered with the reactor, so the
        // driver's write of its answer does not wake this task a second time (a wake-up is a
        // good share of a fast call's cost, more so on a loaded node). The answer waits in the
        // pipe; a driver printing more than the pipe holds blocks until reading starts, at
        // EXIT_FIRST at the latest.
        let exited = match tokio::time::timeout_at(deadline.min(Instant::now() + EXIT_FIRST), child.wait()).await {
            Ok(exit) => Some(exit.map_err(wait_err)?),
            Err(_still_running) => None,
        };
        if let Some(exit) = exited {
            // The driver is gone, so its answer is all in the pipe: read it as it is, unless
            // something it started still holds the pipe open.
            if drain(&reader, &mut output).map_err(wait_err)? == Drained::Closed {
                group.armed = false;
                return Ok((exit, output));
            }
        }
        let outcome = tokio::time::timeout_at(deadline, async {
            let mut receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?;
            let reading = read_capped(&mut receiver, &mut output);
            tokio::pin!(reading);
            let mut read_done = false;
            let exit = match exited {
                Some(exit) => exit,
                None => loop {
                    tokio::select! {
                        r = &mut reading, if !read_done => { r?; read_done = true; }
                        s = child.wait() => break s?,
                    }
                },
            };
            if !read_done {
                let _ = tokio::time::timeout(after_exit, &mut reading).await;
            }
            std::io::Result::Ok(exit)
        })
        .await;
        match outcome {
            Ok(Ok(exit)) => {
                group.armed = false;
                Ok((exit, output))
            }
            Ok(Err(e)) => Err(wait_err(e)),
            Err(_elapsed) => {
                group.kill();
                // Reap it; SIGKILL is final unless the process sleeps in the kernel.
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                tracing::warn!(driver = %self.name, %command, ?limit, "FlexVolume: driver call timed out; process group killed");
                Err(Error::Timeout { command, executable: self.executable.clone(), limit })
            }
        }
    }
}

/// Kills the driver's process group when dropped armed (timeout, or the caller gave up on
/// the call by dropping its future).
struct GroupKiller {
    pgid: Option<Pid>,
    armed: bool,
}

impl GroupKiller {
    fn kill(&mut self) {
        if let (true, Some(pgid)) = (self.armed, self.pgid) {
            // ESRCH: the group is already gone, which is what we want.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        self.armed = false;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a non-blocking read of the pipe to its current end found.
#[derive(Debug, PartialEq, Eq)]
enum Drained {
    /// End of file: every writer has closed the pipe.
    Closed,
    /// No more data for now, but a writer still holds the pipe.
    Open,
}

/// Reads what the (non-blocking) pipe holds into `out`, capped at [`MAX_OUTPUT`].
fn drain(mut reader: &std::io::PipeReader, out: &mut Vec<u8>) -> std::io::Result<Drained> {
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => return Ok(Drained::Closed),
            Ok(n) => push_capped(out, &chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Drained::Open),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

async fn read_capped(receiver: &mut tokio::net::unix::pipe::Receiver, out: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 8192];
    loop {
        let n = receiver.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        push_capped(out, &chunk[..n]);
    }
}

/// Appends what fits under [`MAX_OUTPUT`]; the rest is dropped (and the output then fails to parse).
fn push_capped(out: &mut Vec<u8>, data: &[u8]) {
    let room = MAX_OUTPUT.saturating_sub(out.len());
    out.extend_from_slice(&data[..data.len().min(room)]);
}

fn shown(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(&output[..output.len().min(SHOWN_OUTPUT)]);
    if output.len() > SHOWN_OUTPUT {
        format!("{text}...")
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{MountArgs, PodInfo, VolumeSpec};
    use std::os::unix::fs::PermissionsExt;

    /// A bash driver in a temp plugin dir, as `<dir>/test~fake/fake`.
    struct Fake {
        dir: tempfile::TempDir,
    }

    impl Fake {
        fn new(body: &str) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let exe = dir.path().join("test~fake/fake");
            std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
            std::fs::write(&exe, format!("#!/bin/bash\nSTATE={}\n{body}\n", dir.path().display())).unwrap();
            std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
            Fake { dir }
        }

        fn driver(&self) -> Driver {
            Driver::new(self.dir.path(), "test~fake")
        }

        fn read(&self, name: &str) -> String {
            std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
        }
    }

    fn spec() -> VolumeSpec {
        VolumeSpec {
            name: "test".into(),
            fs_type: "nfs".into(),
            read_only: true,
            options: [("server".to_owned(), "172.16.0.25".to_owned())].into(),
        }
    }

    #[tokio::test]
    async fn the_driver_gets_kubelets_argv_and_its_answer_is_read() {
        let fake = Fake::new(
            r#"for a in "$@"; do printf '%s\n' "$a" >> $STATE/argv; done
echo '{"status":"Success","device":"/dev/loop7"}'"#,
        );
        let driver = fake.driver();
        assert_eq!(driver.name(), "test/fake");
        assert_eq!(driver.plugin_name(), "flexvolume-test/fake");
        let args = MountArgs {
            pod: PodInfo { name: "p".into(), namespace: "ns".into(), uid: "u".into(), ..Default::default() },
            secrets: [("pw".to_owned(), b"x y".to_vec())].into(),
            fs_group: Some(1000),
        };
        let call = DriverCall::mount("/pods/u/volumes/test~fake/test", &spec(), &args);
        let status = driver.run(&call).await.unwrap();
        assert_eq!(status.device, "/dev/loop7");
        let argv: Vec<String> = fake.read("argv").lines().map(str::to_owned).collect();
        assert_eq!(argv, call.args());
        assert_eq!(
            argv[2],
            r#"{"kubernetes.io/fsType":"nfs","kubernetes.io/mounterArgs.FsGroup":"1000","kubernetes.io/pod.name":"p","kubernetes.io/pod.namespace":"ns","kubernetes.io/pod.uid":"u","kubernetes.io/pvOrVolumeName":"test","kubernetes.io/readwrite":"ro","kubernetes.io/secret/pw":"eCB5","kubernetes.io/serviceAccount.name":"","server":"172.16.0.25"}"#
        );
    }

    #[test]
    fn drivers_are_shared_across_tasks_and_calls_run_on_any_worker() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let driver = Driver::from_executable("a/b", "/nonexistent");
        send_sync(&driver);
        let call = DriverCall::init();
        send(driver.run(&call));
    }

    #[tokio::test]
    async fn init_reports_capabilities_with_defaults() {
        let fake = Fake::new(r#"echo '{"status": "Success", "capabilities": {"attach": false}}'"#);
        let caps = fake.driver().init().await.unwrap();
        assert_eq!(caps, DriverCapabilities { attach: false, ..Default::default() });
    }

    #[tokio::test]
    async fn stdout_and_stderr_are_read_as_one_output() {
        let fake = Fake::new(r#"printf '{"status":' ; printf '"Success"}' >&2"#);
        fake.driver().run(&DriverCall::init()).await.unwrap();
        // A driver that logs to stderr breaks, as under kubelet.
        let fake = Fake::new(r#"echo 'mounting...' >&2; echo '{"status":"Success"}'"#);
        let err = fake.driver().run(&DriverCall::init()).await.unwrap_err();
        assert!(matches!(err, Error::BadOutput { .. }), "{err}");
        assert!(err.to_string().contains("mounting..."), "{err}");
    }

    #[tokio::test]
    async fn failures_read_as_kubelets_error_text() {
        let fake = Fake::new(r#"echo '{"status":"Failure","message":"mount.nfs: No such device"}'; exit 1"#);
        let err = fake.driver().run(&DriverCall::unmount("/x")).await.unwrap_err();
        assert_eq!(err.to_string(), "unmount command failed, status: Failure, reason: mount.nfs: No such device");
        assert!(!err.is_not_supported() && !err.is_uncertain());
    }

    #[tokio::test]
    async fn not_supported_is_remembered_per_driver_and_not_run_again() {
        let fake = Fake::new(r#"echo x >> $STATE/runs; echo '{"status": "Not supported"}'"#);
        let driver = fake.driver();
        for _ in 0..3 {
            let err = driver.run(&DriverCall::attach(&spec(), "node1")).await.unwrap_err();
            assert!(err.is_not_supported());
            assert_eq!(err.to_string(), "Not supported");
        }
        assert_eq!(fake.read("runs").lines().count(), 1, "later calls short-circuit");
        assert_eq!(driver.unsupported_commands(), [Command::Attach]);
        // Other commands still run.
        assert!(driver.run(&DriverCall::detach("test", "node1")).await.unwrap_err().is_not_supported());
        assert_eq!(fake.read("runs").lines().count(), 2);
        // A re-probe forgets.
        driver.reset_unsupported();
        driver.run(&DriverCall::attach(&spec(), "node1")).await.unwrap_err();
        assert_eq!(fake.read("runs").lines().count(), 3);
        // A fresh Driver for the same executable starts with an empty set.
        assert!(fake.driver().unsupported_commands().is_empty());
    }

    #[tokio::test]
    async fn non_zero_exit_with_a_success_status_is_a_driver_bug() {
        let fake = Fake::new(r#"echo '{"status":"Success"}'; exit 3"#);
        let err = fake.driver().run(&DriverCall::init()).await.unwrap_err();
        assert!(matches!(err, Error::DriverBug { .. }), "{err}");
        assert!(err.to_string().contains("driver bug") && err.to_string().contains("exit status: 3"), "{err}");
    }

    #[tokio::test]
    async fn garbage_output_is_rejected_with_the_output_shown() {
        for (body, expect) in [
            ("echo 'Segmentation fault'", "Segmentation fault"),
            ("true", "EOF"),
            ("echo '{\"status\":\"Success\"}{}'", "trailing"),
            ("head -c 3000000 /dev/zero | tr '\\0' x", "..."),
        ] {
            let fake = Fake::new(body);
            let err = fake.driver().run(&DriverCall::init()).await.unwrap_err();
            assert!(matches!(err, Error::BadOutput { .. }), "{body}: {err}");
            assert!(err.to_string().contains(expect), "{body}: {err}");
            assert!(err.to_string().len() < 5000, "output is truncated in errors");
        }
        let fake = Fake::new("echo garbage; exit 2");
        let err = fake.driver().run(&DriverCall::init()).await.unwrap_err();
        assert!(err.to_string().contains("exit status: 2"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_driver_cannot_be_spawned() {
        let dir = tempfile::tempdir().unwrap();
        let err = Driver::new(dir.path(), "k8s~nfs").run(&DriverCall::init()).await.unwrap_err();
        assert!(matches!(err, Error::Spawn { .. }), "{err}");
        assert!(err.to_string().contains("k8s~nfs/nfs"), "{err}");
    }

    fn alive(pid: i32) -> bool {
        // Gone, or a zombie waiting for its new parent to reap it, counts as dead.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
            Err(_) => false,
        }
    }

    #[tokio::test]
    async fn a_hung_driver_is_killed_with_its_whole_process_group_at_the_limit() {
        let fake = Fake::new(
            r#"sleep 300 &
echo $! > $STATE/child
echo $$ > $STATE/driver
sleep 300"#,
        );
        let driver =
            fake.driver().with_limits(CallLimits::default().with(Command::WaitForAttach, Duration::from_millis(500)));
        let started = std::time::Instant::now();
        let err = driver.run(&DriverCall::wait_for_attach("/dev/loop0", &spec())).await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(err.to_string().starts_with("timeout: waitforattach"), "{err}");
        assert!(err.is_uncertain());
        assert!(took < Duration::from_secs(10), "took {took:?}");
        let child: i32 = fake.read("child").trim().parse().unwrap();
        let parent: i32 = fake.read("driver").trim().parse().unwrap();
        for _ in 0..50 {
            if !alive(child) && !alive(parent) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(parent), "driver {parent} killed");
        assert!(!alive(child), "forked child {child} killed");
        // The per-call limit overrides the driver's.
        let err = fake.driver().run(&DriverCall::init().timeout(Duration::from_millis(200))).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_daemon_left_holding_the_pipe_does_not_hang_the_call() {
        let fake = Fake::new(r#"echo '{"status":"Success"}'; sleep 300 & echo $! > $STATE/daemon"#);
        let driver =
            fake.driver().with_limits(CallLimits { after_exit: Duration::from_millis(100), ..Default::default() });
        let started = std::time::Instant::now();
        driver.run(&DriverCall::init()).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        let daemon: i32 = fake.read("daemon").trim().parse().unwrap();
        assert!(alive(daemon), "a daemon the driver started is left alone");
        let _ = nix::sys::signal::kill(Pid::from_raw(daemon), Signal::SIGKILL);
    }

    #[tokio::test]
    async fn an_answer_larger_than_the_pipe_is_read_while_the_driver_writes_it() {
        // 256 KiB of leading blanks (valid JSON whitespace): the driver blocks on the full pipe
        // until reading starts, so it only exits once its output is being read.
        let fake =
            Fake::new(r#"head -c 262144 /dev/zero | tr '\0' ' '; echo '{"status":"Success","device":"/dev/big"}'"#);
        let status = fake.driver().run(&DriverCall::init()).await.unwrap();
        assert_eq!(status.device, "/dev/big");
    }

    #[tokio::test]
    async fn an_answer_finished_by_a_process_the_driver_left_behind_is_read_whole() {
        // The driver exits with half its answer written; a child it started writes the rest
        // (kubelet's CombinedOutput reads until every writer is gone, too).
        let fake = Fake::new(r#"printf '{"status":'; (sleep 0.2; echo '"Success","device":"/dev/late"}') & exit 0"#);
        let status = fake.driver().run(&DriverCall::init()).await.unwrap();
        assert_eq!(status.device, "/dev/late");
    }
}
