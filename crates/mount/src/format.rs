//! Putting a file system on a block device, never over existing data (kubelet's `formatAndMount`).

use std::path::Path;
use std::time::Duration;

use crate::command;
use crate::error::{Error, Result};

const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
const MKFS_TIMEOUT: Duration = Duration::from_secs(300);

/// What [`mkfs_if_unformatted`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatOutcome {
    /// The device already held the wanted file system; nothing was written.
    AlreadyFormatted,
    /// The device was empty and has been formatted.
    Formatted,
}

/// What `blkid -p` found on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// No signature at all.
    Empty,
    /// A file system (or other signature) of this type.
    FileSystem(String),
    /// A partition table of this type.
    PartitionTable(String),
}

/// Probes `device` with `blkid -p` (low-level, bypassing the cache).
pub fn probe(device: &Path) -> Result<Probe> {
    let program = command::find_program("blkid").map(|p| p.to_string_lossy().into_owned()).unwrap_or("blkid".into());
    let dev = device.to_string_lossy();
    let out = command::run(&program, &["-p", "-s", "TYPE", "-s", "PTTYPE", "-o", "export", &dev], PROBE_TIMEOUT)?;
    match out.status.code() {
        // 2: nothing identified.
        Some(2) => Ok(Probe::Empty),
        Some(0) => {
            let mut fs = None;
            let mut pt = None;
            for line in out.stdout.lines() {
                if let Some(v) = line.strip_prefix("TYPE=") {
                    fs = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("PTTYPE=") {
                    pt = Some(v.to_string());
                }
            }
            match (fs, pt) {
                (Some(t), _) => Ok(Probe::FileSystem(t)),
                (None, Some(p)) => Ok(Probe::PartitionTable(p)),
                (None, None) => Ok(Probe::FileSystem("unknown".into())),
            }
        }
        _ => Err(Error::Probe { device: device.to_path_buf(), status: out.status.to_string(), output: out.text }),
    }
}

/// The mkfs arguments kubelet uses: ext* get `-F -m0` (force on a whole device, no reserved blocks).
fn mkfs_args(fstype: &str) -> Vec<&'static str> {
    match fstype {
        "ext2" | "ext3" | "ext4" => vec!["-F", "-m0"],
        _ => vec![],
    }
}

/// Formats `device` with `fstype` unless it already holds something. Holding `fstype` is success; holding
/// anything else (another file system, a partition table) is [`Error::FormatMismatch`]: data is never
/// reformatted.
pub fn mkfs_if_unformatted(device: &Path, fstype: &str) -> Result<FormatOutcome> {
    match probe(device)? {
        Probe::FileSystem(t) if t == fstype => return Ok(FormatOutcome::AlreadyFormatted),
        Probe::FileSystem(t) => {
            return Err(Error::FormatMismatch { device: device.to_path_buf(), found: t, wanted: fstype.to_string() });
        }
        Probe::PartitionTable(p) => {
            return Err(Error::FormatMismatch {
                device: device.to_path_buf(),
                found: format!("a {p} partition table"),
                wanted: fstype.to_string(),
            });
        }
        Probe::Empty => {}
    }
    let name = format!("mkfs.{fstype}");
    let program = command::find_program(&name).map(|p| p.to_string_lossy().into_owned()).unwrap_or(name);
    let dev = device.to_string_lossy();
    let mut args = mkfs_args(fstype);
    args.push(&dev);
    let out = command::run(&program, &args, MKFS_TIMEOUT)?;
    if !out.status.success() {
        return Err(Error::Mkfs {
            device: device.to_path_buf(),
            fstype: fstype.to_string(),
            status: out.status.to_string(),
            output: out.text,
        });
    }
    tracing::info!(device = %device.display(), fstype, "formatted");
    Ok(FormatOutcome::Formatted)
}
