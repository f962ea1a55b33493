//! Host operations: running tools, and directories created on the way (and removed again on
//! failure). Mounts are kvol-mount's.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// `path` made absolute with symlinks resolved when it exists (the kernel lists mount points
/// that way), else as given.
pub fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}
