//! The CO's mount flags, parsed once at the boundary, and the driver's three mounts (a device's file
//! system, a bind, an unmount), done by kvol-mount's `RealMounter` (the one mount wrapper: its plan makes a
//! flagged bind a bind plus a remount, and undoes the bind if the remount fails).

use std::path::Path;

use kvol_mount::{Mounter, RealMounter};

use crate::error::Result;

/// Per-mount flags mount(2) understands, kept apart from the rest (file-system data), as option strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// Per-mount flags (ro, nosuid, nodev, noexec, noatime…).
    pub flags: Vec<String>,
    /// File-system specific options.
    pub data: Vec<String>,
}

/// The per-mount flags the driver passes on (`rw`, `defaults` and `bind` mean nothing more here).
const FLAGS: [&str; 8] = ["ro", "nosuid", "nodev", "noexec", "noatime", "nodiratime", "relatime", "sync"];

impl MountOptions {
    /// Parses CSI `mount_flags` (each entry may itself be comma separated).
    pub fn parse(flags: &[String], readonly: bool) -> Self {
        let mut out = MountOptions::default();
        for opt in flags.iter().flat_map(|f| f.split(',')).map(str::trim).filter(|o| !o.is_empty()) {
            match opt {
                "rw" | "defaults" | "bind" => {}
                flag if FLAGS.contains(&flag) => out.flags.push(flag.to_owned()),
                other => out.data.push(other.to_owned()),
            }
        }
        if readonly && !out.flags.iter().any(|f| f == "ro") {
            out.flags.push("ro".to_owned());
        }
        out
    }
}

/// Mounts the file system on `device` at `target`, with the flags and the file-system data.
pub fn mount_fs(device: &Path, target: &Path, fs_type: &str, opts: &MountOptions) -> Result<()> {
    let options: Vec<String> = opts.flags.iter().chain(&opts.data).cloned().collect();
    Ok(RealMounter::new().mount(&device.to_string_lossy(), target, fs_type, &options)?)
}

/// Bind-mounts `source` onto `target` with the per-mount flags (file-system data does not apply to a
/// bind).
pub fn bind(source: &Path, target: &Path, opts: &MountOptions) -> Result<()> {
    let options: Vec<String> = std::iter::once("bind".to_owned()).chain(opts.flags.iter().cloned()).collect();
    Ok(RealMounter::new().mount(&source.to_string_lossy(), target, "", &options)?)
}

/// Unmounts `target`; "not mounted" and "does not exist" count as success.
pub fn unmount(target: &Path) -> Result<()> {
    Ok(RealMounter::new().unmount(target)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::mount::MsFlags;

    #[test]
    fn splits_known_flags_from_file_system_data() {
        let opts = MountOptions::parse(&["noatime,discard".into(), "nosuid".into()], true);
        let planned = kvol_mount::MountOptions::parse(&opts.flags);
        assert!(planned.flags.contains(MsFlags::MS_NOATIME | MsFlags::MS_NOSUID | MsFlags::MS_RDONLY));
        assert!(planned.data.is_empty());
        assert_eq!(opts.data, ["discard"]);
        assert_eq!(MountOptions::parse(&[], false), MountOptions::default());
        assert_eq!(MountOptions::parse(&["rw,bind,defaults".into()], false), MountOptions::default());
    }
}
