//! A small tmpfs for one test: a file system that fills up (`size=`), unmounted when dropped, also when the
//! test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs. Declare it before whatever uses it, so that the user is dropped (stops) first.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. `4m`) with mode 0700 at `path`, or None (with the reason printed)
    /// where mounting is not allowed (not root, or a container without the capability).
    pub fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        if let Err(e) = std::fs::create_dir_all(path) {
            eprintln!("skipped: cannot create the mount point {}: {e}", path.display());
            return None;
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { path: path.to_path_buf() }),
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs at {}: {}",
                    path.display(),
                    String::from_utf8_lossy(&o.stderr)
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a process of the failed test may still hold a file open there.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
