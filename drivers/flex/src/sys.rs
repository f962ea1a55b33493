//! Host operations: running tools, mount(2), directories created on the way (and removed
//! again on failure).

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Error, Result};

/// Runs a tool and returns its stdout; a non-zero exit is an [`Error::Tool`] with its output.
pub fn run_tool(program: &str, args: &[&str]) -> Result<String> {
    let command = std::iter::once(program).chain(args.iter().copied()).collect::<Vec<_>>().join(" ");
    let out = Command::new(program).args(args).output().map_err(|e| Error::Tool {
        command: command.clone(),
        status: "not run".into(),
        output: e.to_string(),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        let output = if stderr.is_empty() { String::from_utf8_lossy(&out.stdout).trim().to_owned() } else { stderr };
        return Err(Error::Tool { command, status: out.status.to_string(), output });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Directories this call created, removed again (deepest first) unless [`Created::keep`] is
/// called, so a failed mount leaves the host as it found it.
#[derive(Default)]
pub struct Created {
    dirs: Vec<PathBuf>,
}

impl Created {
    /// Creates `path` and missing parents (mode 0750, as kubelet's `prepareForMount`),
    /// remembering the ones it made.
    pub fn mkdir_all(&mut self, path: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let mut p = path;
        while !p.exists() {
            missing.push(p.to_owned());
            match p.parent() {
                Some(parent) => p = parent,
                None => break,
            }
        }
        for dir in missing.into_iter().rev() {
            match std::fs::DirBuilder::new().mode(0o750).create(&dir) {
                Ok(()) => self.dirs.push(dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(Error::Io { step: "create directory", path: dir, source }),
            }
        }
        Ok(())
    }

    /// Keeps what was created (the call succeeded).
    pub fn keep(mut self) {
        self.dirs.clear();
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Bind-mounts `source` on `target`, then makes it read-only if asked (a bind mount ignores
/// `MS_RDONLY` on the first call).
pub fn bind_mount(source: &Path, target: &Path, read_only: bool) -> Result<()> {
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| Error::Sys {
        step: format!("bind mount {} on", source.display()),
        path: target.to_owned(),
        source: e,
    })?;
    if read_only {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        if let Err(e) = mount(None::<&str>, target, None::<&str>, flags, None::<&str>) {
            let _ = umount2(target, MntFlags::empty());
            return Err(Error::Sys { step: "remount read-only".into(), path: target.to_owned(), source: e });
        }
    }
    Ok(())
}

/// Mounts a block device's file system.
pub fn mount_device(device: &Path, target: &Path, fs_type: &str, read_only: bool) -> Result<()> {
    let flags = if read_only { MsFlags::MS_RDONLY } else { MsFlags::empty() };
    mount(Some(device), target, Some(fs_type), flags, None::<&str>).map_err(|e| Error::Sys {
        step: format!("mount {} ({fs_type}) on", device.display()),
        path: target.to_owned(),
        source: e,
    })
}

/// Unmounts `target`; a path that is not a mount point (EINVAL) or is gone (ENOENT) counts as
/// unmounted.
pub fn unmount(target: &Path) -> Result<()> {
    match umount2(target, MntFlags::empty()) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(Error::Sys { step: "unmount".into(), path: target.to_owned(), source: e }),
    }
}

/// `path` made absolute with symlinks resolved when it exists (the kernel lists mount points
/// that way), else as given.
pub fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}
