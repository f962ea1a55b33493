//! Helpers for the real-mount tests: skipping without root or tools, a work dir that undoes its mounts and
//! loop devices even when a test panics, and commands whose failures print what they said.

#![allow(dead_code)] // not every test binary uses every helper

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use nix::mount::MntFlags;

/// Skips the test (returns) unless running as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP {}: needs root (mount(2), loop devices)", module_path!());
            return;
        }
    };
}

/// Skips the test (returns) unless every named program is installed.
#[macro_export]
macro_rules! require_tools {
    ($($tool:expr),+) => {
        $(
            if !$crate::util::have_tool($tool) {
                eprintln!("SKIP {}: `{}` is not installed (apt-get install e2fsprogs xfsprogs util-linux)", module_path!(), $tool);
                return;
            }
        )+
    };
}

pub fn have_tool(name: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|d| Path::new(d).join(name).is_file())
}

/// A temporary directory plus everything a test mounted or attached in it. On drop it unmounts in reverse
/// order (lazily if busy) and detaches loop devices, then removes the directory — or keeps it and prints
/// its path when the test failed.
pub struct Workdir {
    mounts: Mutex<Vec<PathBuf>>,
    loops: Mutex<Vec<PathBuf>>,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Workdir {
    pub fn new(name: &str) -> Workdir {
        let dir = tempfile::Builder::new().prefix(&format!("kvol-mount-{name}-")).tempdir().expect("tempdir");
        let path = std::fs::canonicalize(dir.path()).expect("canonical tempdir");
        Workdir { mounts: Mutex::new(Vec::new()), loops: Mutex::new(Vec::new()), dir: Some(dir), path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path/rel`, created as a directory.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path.join(rel);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }

    /// Registers a mount point to undo at the end (register before mounting).
    pub fn track_mount(&self, p: &Path) {
        self.mounts.lock().unwrap().push(p.to_path_buf());
    }

    /// Registers a loop device to detach at the end.
    pub fn track_loop(&self, dev: &Path) {
        self.loops.lock().unwrap().push(dev.to_path_buf());
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        for m in self.mounts.lock().unwrap().iter().rev() {
            // Unmount every layer stacked there; a busy one is detached lazily.
            for _ in 0..8 {
                match nix::mount::umount2(m, MntFlags::empty()) {
                    Ok(()) => continue,
                    Err(nix::errno::Errno::EBUSY) => {
                        let _ = nix::mount::umount2(m, MntFlags::MNT_DETACH);
                    }
                    Err(_) => break,
                }
            }
        }
        for l in self.loops.lock().unwrap().iter() {
            if let Err(e) = kvol_mount::loopdev::detach(l) {
                eprintln!("cleanup: detaching {}: {e}", l.display());
            }
        }
        if std::thread::panicking() {
            if let Some(d) = self.dir.take() {
                eprintln!("work dir kept for inspection: {}", d.keep().display());
            }
        }
    }
}

/// Runs a command, panicking with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{program} {args:?} failed ({}):\n{text}", out.status);
    text
}

/// The topmost mountinfo entry at `path`, if any.
pub fn mount_at(path: &Path) -> Option<kvol_mount::MountInfo> {
    let all = kvol_mount::read_mountinfo().expect("mountinfo");
    kvol_mount::find_by_mount_point(&all, path).cloned()
}

/// How many mounts are stacked at `path`.
pub fn mount_count(path: &Path) -> usize {
    kvol_mount::read_mountinfo().expect("mountinfo").iter().filter(|m| m.mount_point == path).count()
}

/// The errno of a failed write of `data` to `path`.
pub fn write_errno(path: &Path, data: &[u8]) -> Option<i32> {
    std::fs::write(path, data).err().and_then(|e| e.raw_os_error())
}
