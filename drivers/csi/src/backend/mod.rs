//! Storage backends: where a volume's bytes live and how a node gets at them.
//!
//! A backend owns the data under the pool (`volumes/`, `snapshots/`); the controller and node services
//! own the protocol (validation, idempotency by name, metadata, error codes). Every method is
//! idempotent: it checks first, and "already there"/"already gone" is success. Methods block (they run
//! storage tools), so services call them from `spawn_blocking`.

mod btrfs;
mod loopfile;

use std::path::{Path, PathBuf};

use kvol_csi::v1::{volume_usage::Unit, VolumeUsage};

use crate::error::{Error, Result};
use crate::mounter::MountOptions;
use crate::store::ContentSource;

pub use btrfs::Btrfs;
pub use loopfile::LoopFiles;

/// A storage backend; see the module doc.
pub trait Backend: Send + Sync + 'static {
    /// `btrfs` or `loop`.
    fn name(&self) -> &'static str;
    /// True if volumes can be used as raw block devices.
    fn supports_block(&self) -> bool;
    /// File-system types a mount capability may ask for; the first is the default.
    fn file_systems(&self) -> &'static [&'static str];
    /// The smallest volume this backend creates.
    fn min_volume_bytes(&self) -> u64;
    /// Allocation granularity: capacities are rounded up to a multiple of it.
    fn granularity(&self) -> u64;
    /// Checks that the pool is usable.
    fn check(&self) -> Result<()>;
    /// Free bytes in the pool.
    fn available_bytes(&self) -> Result<u64>;

    /// Creates the volume with `bytes` capacity, pre-populated from `source`. Idempotent: an existing
    /// volume is left as it is.
    fn create_volume(&self, id: &str, bytes: u64, source: Option<&ContentSource>) -> Result<()>;
    /// Deletes the volume's data; already gone is success.
    fn delete_volume(&self, id: &str) -> Result<()>;
    /// Where the volume is in use on this machine (mounted, attached), if it is.
    fn in_use(&self, id: &str) -> Result<Option<String>>;
    /// Grows the volume to `bytes`; returns whether the node must grow its file system too.
    fn expand_volume(&self, id: &str, bytes: u64) -> Result<bool>;
    /// Cuts a read-only snapshot of the volume. Idempotent.
    fn create_snapshot(&self, snapshot_id: &str, volume_id: &str) -> Result<()>;
    /// Deletes the snapshot; already gone is success.
    fn delete_snapshot(&self, snapshot_id: &str) -> Result<()>;

    /// True if the volume is staged at `staging` the way `block` says: a `statx` of each side where the
    /// kernel can tell, the mount `table` otherwise (this is on the NodePublish path).
    fn is_staged(&self, id: &str, staging: &Path, block: bool, table: &crate::mountinfo::Table) -> Result<bool>;
    /// Stages the volume at `staging`; returns the file-system type mounted ("" for block).
    fn stage(&self, id: &str, staging: &Path, block: bool, fs_type: &str, opts: &MountOptions) -> Result<String>;
    /// Undoes [`Backend::stage`]; not staged is success.
    fn unstage(&self, id: &str, staging: &Path) -> Result<()>;
    /// The block device of a block-staged volume, if attached.
    fn block_device(&self, id: &str) -> Result<Option<PathBuf>>;
    /// Usage of the volume published or staged at `path`.
    fn usage(&self, id: &str, path: &Path, block: bool, capacity: u64) -> Result<Vec<VolumeUsage>>;
    /// Grows what the node sees to the volume's current size; `fs_mount` is where its file system is
    /// mounted (None for block). Returns the new capacity.
    fn node_expand(&self, id: &str, fs_mount: Option<&Path>, capacity: u64) -> Result<u64>;
}

/// Free bytes of the file system holding `path` (for unprivileged users, as df shows).
pub fn free_bytes(path: &Path) -> Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| Error::io("statvfs", path)(e.into()))?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// Byte and inode usage of a mounted file system, from statvfs.
pub fn statvfs_usage(path: &Path) -> Result<Vec<VolumeUsage>> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| Error::io("statvfs", path)(e.into()))?;
    let frsize = st.fragment_size() as i64;
    let total = st.blocks() as i64 * frsize;
    let available = st.blocks_available() as i64 * frsize;
    let used = total - st.blocks_free() as i64 * frsize;
    let mut usage = vec![VolumeUsage { available, total, used, unit: Unit::Bytes as i32 }];
    if st.files() > 0 {
        usage.push(VolumeUsage {
            available: st.files_available() as i64,
            total: st.files() as i64,
            used: (st.files() - st.files_free()) as i64,
            unit: Unit::Inodes as i32,
        });
    }
    Ok(usage)
}

/// Creates `path` as a directory if missing (the CO should have, but a retry after a reboot may not).
pub fn ensure_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(Error::io("creating directory", path))
}

/// Removes a half-built leftover (`.tmp-…`) from an earlier crash.
fn remove_leftover_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing leftover", path)(e)),
    }
}
