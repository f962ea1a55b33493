//! "Is something mounted there, and what?", asked of the kernel: one `statx(2)` per path where the
//! kernel reports mount roots (Linux 5.8+), `/proc/self/mountinfo` where it does not or where the
//! mount itself must be described (options, source), parsed by kvol-mount.
//!
//! Every node-side call decides "already done?" from the kernel, never from its own memory, so
//! retries and restarts converge. Reading the table costs O(mounts), and a node with many pods has
//! thousands, so a call reads it at most once ([`Table`]) and only when a `statx` cannot answer.

use std::cell::OnceCell;
use std::path::Path;

use kvol_mount::PathStat;

use crate::error::Result;

/// One line of mountinfo (proc(5)), as kvol-mount parses it.
pub use kvol_mount::MountInfo as Mount;

/// Reads and parses this process's mount table.
pub fn read() -> Result<Vec<Mount>> {
    Ok(kvol_mount::read_mountinfo()?)
}

/// This process's mount table, read on first use and then kept for the rest of one call.
#[derive(Debug, Default)]
pub struct Table {
    mounts: OnceCell<Vec<Mount>>,
}

impl Table {
    /// The mounts, reading `/proc/self/mountinfo` the first time.
    pub fn get(&self) -> Result<&[Mount]> {
        if let Some(mounts) = self.mounts.get() {
            return Ok(mounts);
        }
        let mounts = read()?;
        Ok(self.mounts.get_or_init(|| mounts))
    }
}

/// What one `statx` of a path says about a mount there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `path` is the root of a mount (the top one, if several are stacked); the stat is of that root.
    Mounted(PathStat),
    /// Nothing is mounted at `path` (or it does not exist).
    NotMounted,
    /// The kernel does not report mount roots, or `path` cannot be stat'ed (a dead mount answers
    /// `ENOTCONN`/`ESTALE`…): ask the mount table.
    Unknown,
}

/// Probes `path` with one `statx`; a final symlink is not followed (the table never lists one).
pub fn probe(path: &Path) -> Probe {
    match kvol_mount::statx(path, false) {
        Ok(st) => match st.mount_root {
            Some(true) => Probe::Mounted(st),
            Some(false) => Probe::NotMounted,
            None => Probe::Unknown,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Probe::NotMounted,
        Err(_) => Probe::Unknown,
    }
}

/// Whether something is mounted at exactly `path`: [`probe`], and the table when it cannot tell.
pub fn is_mount_point(path: &Path, table: &Table) -> Result<bool> {
    match probe(path) {
        Probe::Mounted(_) => Ok(true),
        Probe::NotMounted => Ok(false),
        Probe::Unknown => Ok(mount_at(table.get()?, path).is_some()),
    }
}

/// The top-most mount at exactly `path` (the last one listed), if any.
pub fn mount_at<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    kvol_mount::find_by_mount_point(mounts, path)
}

/// The mount that contains `path` (longest mount-point prefix); `path` should be canonical.
pub fn containing<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts.iter().rev().filter(|m| path.starts_with(&m.mount_point)).max_by_key(|m| m.mount_point.as_os_str().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
80 22 7:3 / /tmp/pool rw,relatime - btrfs /dev/loop3 rw,space_cache=v2,subvolid=5,subvol=/
81 22 7:3 /volumes/v1 /tmp/st\\040age rw,relatime - btrfs /dev/loop3 rw
82 22 7:3 /volumes/v1 /tmp/target ro,relatime - btrfs /dev/loop3 rw
";

    #[test]
    fn parses_binds_escapes_and_read_only_mounts() {
        let mounts = kvol_mount::parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(mounts.len(), 4);
        let staged = mount_at(&mounts, Path::new("/tmp/st age")).unwrap();
        assert_eq!((staged.major, staged.minor), (7, 3));
        assert_eq!(staged.root, Path::new("/volumes/v1"));
        assert_eq!(staged.fs_type, "btrfs");
        assert_eq!(staged.source, "/dev/loop3");
        assert!(!staged.is_read_only());
        assert!(mount_at(&mounts, Path::new("/tmp/target")).unwrap().is_read_only());
        assert!(mount_at(&mounts, Path::new("/tmp/nothing")).is_none());
    }

    #[test]
    fn the_containing_mount_is_the_longest_prefix() {
        let mounts = kvol_mount::parse_mountinfo(SAMPLE).unwrap();
        let m = containing(&mounts, Path::new("/tmp/pool/volumes/v2")).unwrap();
        assert_eq!(m.mount_point, Path::new("/tmp/pool"));
        let root = containing(&mounts, Path::new("/etc")).unwrap();
        assert_eq!(root.mount_point, Path::new("/"));
    }

    #[test]
    fn the_probe_sees_mount_roots_and_missing_paths_without_the_table() {
        if kvol_mount::statx_mount_root(Path::new("/proc")).unwrap().is_none() {
            eprintln!("skipped: kernel does not report STATX_ATTR_MOUNT_ROOT");
            return;
        }
        assert!(matches!(probe(Path::new("/proc")), Probe::Mounted(_)));
        assert_eq!(probe(Path::new("/proc/self/fd")), Probe::NotMounted);
        assert_eq!(probe(Path::new("/proc/nothing/here")), Probe::NotMounted);
        let table = Table::default();
        assert!(is_mount_point(Path::new("/proc"), &table).unwrap());
        assert!(!is_mount_point(Path::new("/nothing/here"), &table).unwrap());
        assert!(table.mounts.get().is_none(), "statx answered; the table was not read");
    }
}
