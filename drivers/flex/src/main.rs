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

mod error;
mod install;
mod loopdev;
mod mountinfo;
mod nfs;
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
        println!("{}", status.to_json(false));
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
    let (json, code) = match reply {
        Ok(Reply::Done(status)) => (status.to_json(false), ExitCode::SUCCESS),
        Ok(Reply::Init(capabilities)) => {
            (DriverStatus { capabilities, ..DriverStatus::success() }.to_json(true), ExitCode::SUCCESS)
        }
        Ok(Reply::NotSupported) => (
            DriverStatus { status: STATUS_NOT_SUPPORTED.into(), ..Default::default() }.to_json(false),
            ExitCode::SUCCESS,
        ),
        Err(e) => (
            DriverStatus { status: STATUS_FAILURE.into(), message: e.to_string(), ..Default::default() }.to_json(false),
            ExitCode::FAILURE,
        ),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{json}");
    let _ = out.flush();
    code
}

/// The arguments of a call, checked for count: `args[0]` is the command.
pub fn expect_args<'a, const N: usize>(args: &'a [String], usage: &str) -> Result<[&'a str; N]> {
    let rest = args.get(1..).unwrap_or_default();
    if rest.len() != N {
        return Err(Error::Usage(format!("{usage} (got {} arguments)", rest.len())));
    }
    Ok(std::array::from_fn(|i| rest[i].as_str()))
}
