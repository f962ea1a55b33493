//! mount(2)/umount(2) through nix. Every function is idempotent where the doc says so; callers check
//! the mount table first.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Error, Result};

/// Mount options split into flags mount(2) understands and the rest (file-system data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Per-mount flags (ro, nosuid, nodev, noexec, noatime…).
    pub flags: MsFlags,
    /// File-system specific options, comma separated.
    pub data: String,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions { flags: MsFlags::empty(), data: String::new() }
    }
}

impl MountOptions {
    /// Parses CSI `mount_flags` (each entry may itself be comma separated).
    pub fn parse(flags: &[String], readonly: bool) -> Self {
        let mut out = MountOptions::default();
        let mut data = Vec::new();
        for opt in flags.iter().flat_map(|f| f.split(',')).map(str::trim).filter(|o| !o.is_empty()) {
            let flag = match opt {
                "ro" => MsFlags::MS_RDONLY,
                "rw" | "defaults" | "bind" => MsFlags::empty(),
                "nosuid" => MsFlags::MS_NOSUID,
                "nodev" => MsFlags::MS_NODEV,
                "noexec" => MsFlags::MS_NOEXEC,
                "noatime" => MsFlags::MS_NOATIME,
                "nodiratime" => MsFlags::MS_NODIRATIME,
                "relatime" => MsFlags::MS_RELATIME,
                "sync" => MsFlags::MS_SYNCHRONOUS,
                other => {
                    data.push(other.to_owned());
                    MsFlags::empty()
                }
            };
            out.flags |= flag;
        }
        if readonly {
            out.flags |= MsFlags::MS_RDONLY;
        }
        out.data = data.join(",");
        out
    }
}

/// Mounts the file system on `device` at `target`.
pub fn mount_fs(device: &Path, target: &Path, fs_type: &str, opts: &MountOptions) -> Result<()> {
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    mount(Some(device), target, Some(fs_type), opts.flags, data).map_err(|source| Error::Mount {
        op: "mount",
        target: target.to_owned(),
        source,
    })
}

/// Bind-mounts `source` onto `target`, then applies the per-mount flags (a bind mount ignores them
/// on the first call, so read-only and friends need a remount).
pub fn bind(source: &Path, target: &Path, flags: MsFlags) -> Result<()> {
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|source| Error::Mount {
        op: "bind mount",
        target: target.to_owned(),
        source,
    })?;
    if !flags.is_empty() {
        let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags;
        if let Err(source) = mount(None::<&str>, target, None::<&str>, remount, None::<&str>) {
            let _ = umount2(target, MntFlags::MNT_DETACH);
            return Err(Error::Mount { op: "remount", target: target.to_owned(), source });
        }
    }
    Ok(())
}

/// Unmounts `target`; "not mounted" and "does not exist" count as success.
pub fn unmount(target: &Path) -> Result<()> {
    match umount2(target, MntFlags::empty()) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(source) => Err(Error::Mount { op: "unmount", target: target.to_owned(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_known_flags_from_file_system_data() {
        let opts = MountOptions::parse(&["noatime,discard".into(), "nosuid".into()], true);
        assert!(opts.flags.contains(MsFlags::MS_NOATIME | MsFlags::MS_NOSUID | MsFlags::MS_RDONLY));
        assert_eq!(opts.data, "discard");
        assert_eq!(MountOptions::parse(&[], false), MountOptions::default());
    }
}
