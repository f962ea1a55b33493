//! Running the storage tools (btrfs, mkfs.*, blkid) with their stderr kept for the error.

use std::ffi::OsStr;
use std::process::Command;

use crate::error::{Error, Result};

/// Runs `program args…`, returning stdout; a non-zero exit becomes [`Error::Command`] with stderr.
pub fn run<I, S>(program: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let command = std::iter::once(program.to_owned())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    tracing::debug!(%command, "running");
    let output = Command::new(program).args(&args).env("LC_ALL", "C").output().map_err(|e| Error::Command {
        command: command.clone(),
        status: "not started".into(),
        stderr: e.to_string(),
    })?;
    if !output.status.success() {
        return Err(Error::Command {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Like [`run`], but returns the exit code instead of failing on it (for tools such as blkid and
/// e2fsck whose non-zero codes carry meaning).
pub fn run_status<I, S>(program: &str, args: I) -> Result<(i32, String, String)>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let output = Command::new(program).args(&args).env("LC_ALL", "C").output().map_err(|e| Error::Command {
        command: program.to_owned(),
        status: "not started".into(),
        stderr: e.to_string(),
    })?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    ))
}
