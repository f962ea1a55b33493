//! `kvol-flex`: kvol's FlexVolume driver binary.
//!
//! One executable serves several drivers, chosen by the name it is installed under
//! (`<plugindir>/kvol~loop/loop` runs the `loop` driver), or named explicitly:
//! `kvol-flex <driver> <call> [args...]`. `kvol-flex install` copies the binary into a plugin
//! directory atomically. Every run prints exactly one JSON status object on stdout and nothing
//! on stderr (kubelet parses both together), and exits 0 unless the status is a failure.
//!
//! Drivers: `nfs` (mount(8) of `server:/share`, no attach) and `loop` (an attachable,
//! file-backed block device: attach = losetup, mountdevice = format once + mount, mount = bind).
//!
//! Kubelet execs the driver for every call, so start-up is most of a short call's cost. Build
//! it to ship as static musl and non-PIE (`RUSTFLAGS="-C relocation-model=static" cargo build
//! --release -p kvol-flex-driver --target x86_64-unknown-linux-musl`): no ld.so, none of
//! glibc's start-up cpuid probing (about half a millisecond under a hypervisor), no
//! self-relocation. The answer is written with one allocation and one write(2) (`reply`).
//! The benchmark in tests/tests.rs builds it so and compares it with the seeds' bash+jq driver.

mod error;
mod install;
mod loopdev;
mod mountinfo;
mod nfs;
mod reply;
mod sys;

use std::io::Write;
use std::process::ExitCode;

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

/// The drivers this binary serves.
pub const DRIVERS: [&str; 2] = ["nfs", "loop"];

fn main() -> ExitCode {
    // A panic must still answer one JSON object on stdout, never text on stderr.
    std::panic::set_hook(Box::new(|info| {
        let status = DriverStatus {
            status: STATUS_FAILURE.into(),
            message: format!("kvol-flex bug: {info}"),
            ..Default::default()
        };
        write_out(&reply::json_line(&status, false));
    }));
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let (reply, wait) = dispatch(&args);
    let code = print(reply);
    if wait && code == ExitCode::SUCCESS {
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

fn print(reply: Result<Reply>) -> ExitCode {
    let (line, code) = match reply {
        Ok(Reply::Done(status)) => (reply::json_line(&status, false), ExitCode::SUCCESS),
        Ok(Reply::Init(capabilities)) => {
            (reply::json_line(&DriverStatus { capabilities, ..DriverStatus::success() }, true), ExitCode::SUCCESS)
        }
        Ok(Reply::NotSupported) => (
            reply::json_line(&DriverStatus { status: STATUS_NOT_SUPPORTED.into(), ..Default::default() }, false),
            ExitCode::SUCCESS,
        ),
        Err(e) => (
            reply::json_line(
                &DriverStatus { status: STATUS_FAILURE.into(), message: e.to_string(), ..Default::default() },
                false,
            ),
            ExitCode::FAILURE,
        ),
    };
    write_out(&line);
    code
}

/// Writes the answer with one write(2): the caller may read the pipe as soon as data arrives.
fn write_out(line: &[u8]) {
    // Nothing useful can be done if stdout is gone; kubelet then reports the exit status.
    let _ = std::io::stdout().lock().write_all(line);
}

/// The arguments of a call, checked for count: `args[0]` is the command.
pub fn expect_args<'a, const N: usize>(args: &'a [String], usage: &str) -> Result<[&'a str; N]> {
    let rest = args.get(1..).unwrap_or_default();
    if rest.len() != N {
        return Err(Error::Usage(format!("{usage} (got {} arguments)", rest.len())));
    }
    Ok(std::array::from_fn(|i| rest[i].as_str()))
}
