//! `kvol-flex`: kvol's FlexVolume driver binary.
//!
//! One executable serves several drivers, chosen by the name it is installed under
//! (`<plugindir>/kvol~loop/loop` runs the `loop` driver), or named explicitly:
//! `kvol-flex <driver> <call> [args...]`. `kvol-flex install` copies the binary into a plugin
//! directory atomically. Every run prints exactly one JSON status object on stdout and nothing
//! on stderr (kubelet parses both together), and exits 0 unless the status is a failure.
//!
//! Drivers: `nfs` (mount(8) of `server:/share`, no attach) and `loop` (an attachable,
//! file-backed block device: attach = a loop device through kvol-mount's ioctls, mountdevice = format once + mount, mount = bind).
//!
//! Kubelet execs the driver for every call, so start-up is most of a short call's cost. Build
//! it to ship as static musl and non-PIE (`RUSTFLAGS="-C relocation-model=static" cargo build
//! --release -p kvol-flex-driver --target x86_64-unknown-linux-musl`): no ld.so, none of
//! glibc's start-up cpuid probing (about half a millisecond under a hypervisor), no
//! self-relocation. The answer is written with one allocation and one write(2) (`reply`).
//! The benchmark in tests/bench.rs builds it so and compares it with the seeds' bash+jq driver.
//!
//! For the same reason the binary has no Rust `main`: the C runtime calls [`main`] below
//! directly, skipping std's start-up (`lang_start`: the stdio poll, SIGPIPE, the stack
//! overflow handler's alternate stack and signal handlers, the main thread's handle) and its
//! clean-up. Measured on a 2-core VM with a minimal program, std's start-up and its first
//! `std::io::stdout()` cost about 40us of a cold exec and 9 of its 13 page faults, most of them
//! in setting up the heap. Nothing here relies on it: std initialises what is used
//! lazily, output is written straight to fd 1 (no buffer to flush at exit), a panic still
//! answers through the hook, and SIGPIPE keeps its default (a caller that closed the pipe
//! does not read the answer anyway).

// Unit tests get the test harness's main instead.
#![cfg_attr(not(test), no_main)]

mod error;
mod install;
mod loopdev;
mod nfs;
mod reply;
mod sys;

use std::ffi::{c_char, c_int, CStr};

use kvol_flex::{DriverCapabilities, DriverStatus, STATUS_FAILURE, STATUS_NOT_SUPPORTED};

use crate::error::{Error, Result};

/// What a call answers.
pub enum Reply {
    /// A Success status (device, attached... set as needed).
    Done(DriverStatus),
    /// `init`'s answer.
    Init(DriverCapabilities),
    /// The driver does not implement the call: kubelet's default applies.
    NotSupported,
}

/// Exit statuses.
const EXIT_SUCCESS: c_int = 0;
const EXIT_FAILURE: c_int = 1;

/// The drivers this binary serves.
pub const DRIVERS: [&str; 2] = ["nfs", "loop"];

/// The C entry point (see the crate docs for why there is no Rust `main`).
#[allow(unsafe_code)] // `no_mangle`: the C runtime's `main` symbol; the block only wraps argv.
#[cfg_attr(not(test), no_mangle)]
#[cfg_attr(test, allow(dead_code))]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    // SAFETY: the C runtime passes argc and argv as execve(2) built them: argc pointers to
    // NUL-terminated strings that live, unchanged, for the whole process.
    let args = unsafe { CArgs::new(argc, argv) };
    if let Some(line) = init_reply(&args) {
        write_out(line);
        return EXIT_SUCCESS;
    }
    let args = args.to_strings();
    // The hook has answered a panic already; unwinding must not cross into C (it aborts).
    std::panic::catch_unwind(|| run(&args)).unwrap_or(EXIT_FAILURE)
}

/// The process's argv, borrowed from the C runtime.
struct CArgs {
    argc: usize,
    argv: *const *const c_char,
}

impl CArgs {
    /// # Safety
    /// `argv` must hold `argc` pointers to NUL-terminated strings that live for the whole
    /// process (as the C runtime's `main` arguments do).
    #[allow(unsafe_code)]
    unsafe fn new(argc: c_int, argv: *const *const c_char) -> Self {
        CArgs { argc: usize::try_from(argc).unwrap_or(0), argv }
    }

    fn len(&self) -> usize {
        self.argc
    }

    /// argv[i], if there is one.
    #[allow(unsafe_code)]
    fn get(&self, i: usize) -> Option<&'static CStr> {
        // SAFETY: i < argc, and argv[i] is a NUL-terminated string that lives for the whole
        // process (the contract of `new`).
        (i < self.argc).then(|| unsafe { CStr::from_ptr(*self.argv.add(i)) })
    }

    /// All of argv as strings (lossily, as `std::env::args_os` then `to_string_lossy`).
    fn to_strings(&self) -> Vec<String> {
        (0..self.len()).filter_map(|i| self.get(i)).map(|a| a.to_string_lossy().into_owned()).collect()
    }
}

/// `init`'s answer when argv is exactly an `init` call (`<driver> init`, or `kvol-flex
/// <driver> init`). It is a constant, written without touching the allocator: the first
/// allocation sets up musl's heap, which cost a quarter of an `init` call (8 page faults).
fn init_reply(args: &CArgs) -> Option<&'static [u8]> {
    let argv0 = args.get(0)?.to_bytes();
    let argv0 = argv0.rsplit(|&b| b == b'/').next().unwrap_or(argv0);
    let (line, command) = match reply::init_line(argv0) {
        Some(line) => (line, 1),
        None => (reply::init_line(args.get(1)?.to_bytes())?, 2),
    };
    (args.len() == command + 1 && args.get(command)?.to_bytes() == b"init").then_some(line)
}

/// Runs one invocation and returns the exit status.
fn run(args: &[String]) -> c_int {
    // A panic must still answer one JSON object on stdout, never text on stderr.
    std::panic::set_hook(Box::new(|info| {
        let status = DriverStatus {
            status: STATUS_FAILURE.into(),
            message: format!("kvol-flex bug: {info}"),
            ..Default::default()
        };
        write_out(&reply::json_line(&status, false));
    }));
    let (reply, wait) = dispatch(args);
    let code = print(reply);
    if wait && code == EXIT_SUCCESS {
        install::wait_forever();
    }
    code
}

/// Picks the driver from argv[0] or argv[1] and runs the call. The bool asks to keep running
/// (`install --wait`).
fn dispatch(args: &[String]) -> (Result<Reply>, bool) {
    let argv0 = args.first().map(|a| a.rsplit('/').next().unwrap_or(a)).unwrap_or("kvol-flex");
    if DRIVERS.contains(&argv0) {
        return (call(argv0, &args[1..]), false);
    }
    match args.get(1).map(String::as_str) {
        Some("install") => install::run(&args[2..]),
        Some(driver) if DRIVERS.contains(&driver) => (call(driver, &args[2..]), false),
        _ => (
            Err(Error::Usage(
                "kvol-flex {nfs|loop} <call> [args...] | kvol-flex install --vendor V --driver {nfs|loop} --dir DIR [--wait]"
                    .into(),
            )),
            false,
        ),
    }
}

fn call(driver: &str, args: &[String]) -> Result<Reply> {
    match driver {
        "nfs" => nfs::call(args),
        _ => loopdev::call(args),
    }
}

fn print(reply: Result<Reply>) -> c_int {
    let (line, code) = match reply {
        Ok(Reply::Done(status)) => (reply::json_line(&status, false), EXIT_SUCCESS),
        Ok(Reply::Init(capabilities)) => {
            (reply::json_line(&DriverStatus { capabilities, ..DriverStatus::success() }, true), EXIT_SUCCESS)
        }
        Ok(Reply::NotSupported) => (
            reply::json_line(&DriverStatus { status: STATUS_NOT_SUPPORTED.into(), ..Default::default() }, false),
            EXIT_SUCCESS,
        ),
        Err(e) => (
            reply::json_line(
                &DriverStatus { status: STATUS_FAILURE.into(), message: e.to_string(), ..Default::default() },
                false,
            ),
            EXIT_FAILURE,
        ),
    };
    write_out(&line);
    code
}

/// Writes the answer with one write(2), unbuffered: the caller may read the pipe as soon as
/// data arrives, and nothing waits in a buffer for an exit-time flush (there is none).
fn write_out(mut line: &[u8]) {
    // Nothing useful can be done if stdout is gone; kubelet then reports the exit status.
    while !line.is_empty() {
        match write_stdout(line) {
            Ok(0) => return,
            Ok(n) => line = &line[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// write(2) to fd 1. Not `std::io::stdout()`, whose first use allocates its line buffer.
#[allow(unsafe_code)]
fn write_stdout(buf: &[u8]) -> std::io::Result<usize> {
    // SAFETY: the pointer and length come from one live slice; write(2) only reads them. A
    // closed fd 1 is an EBADF error, not undefined behaviour.
    let n = unsafe { nix::libc::write(nix::libc::STDOUT_FILENO, buf.as_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

/// The arguments of a call, checked for count: `args[0]` is the command.
pub fn expect_args<'a, const N: usize>(args: &'a [String], usage: &str) -> Result<[&'a str; N]> {
    let rest = args.get(1..).unwrap_or_default();
    if rest.len() != N {
        return Err(Error::Usage(format!("{usage} (got {} arguments)", rest.len())));
    }
    Ok(std::array::from_fn(|i| rest[i].as_str()))
}
