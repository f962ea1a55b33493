//! btrfs backend: a subvolume per volume, capacity enforced by a qgroup limit on its referenced bytes.
//!
//! Snapshots are read-only snapshot subvolumes; a volume from a snapshot or a clone of a volume is a
//! writable snapshot of it (copy-on-write, instant). Expansion raises the limit, which takes effect
//! at once, also while the volume is mounted. Staging bind-mounts the subvolume; the node never needs
//! a device.

use std::path::{Path, PathBuf};

use kvol_csi::v1::{volume_usage::Unit, VolumeUsage};

use crate::backend::{ensure_dir, free_bytes, Backend};
use crate::cmd::run;
use crate::error::{Error, Result};
use crate::mounter::{self, MountOptions};
use crate::mountinfo;
use crate::store::ContentSource;

/// The btrfs backend over a pool directory on btrfs.
pub struct Btrfs {
    pool: PathBuf,
}

impl Btrfs {
    /// Opens the pool: refuses anything but btrfs, creates the layout, enables quotas.
    pub fn open(pool: &Path) -> Result<Self> {
        let pool = pool.canonicalize().map_err(Error::io("opening pool", pool))?;
        let st = nix::sys::statfs::statfs(&pool).map_err(|e| Error::io("statfs", &pool)(e.into()))?;
        if st.filesystem_type() != nix::sys::statfs::BTRFS_SUPER_MAGIC {
            return Err(Error::PoolUnhealthy {
                pool,
                reason: "the btrfs backend needs the pool on a btrfs file system (mkfs.btrfs; mount it; pass \
                         that directory as --pool)"
                    .into(),
            });
        }
        for dir in ["volumes", "snapshots"] {
            ensure_dir(&pool.join(dir))?;
        }
        run("btrfs", ["quota".as_ref(), "enable".as_ref(), pool.as_os_str()])?;
        Ok(Btrfs { pool })
    }

    fn volume_path(&self, id: &str) -> PathBuf {
        self.pool.join("volumes").join(id)
    }

    fn snapshot_path(&self, id: &str) -> PathBuf {
        self.pool.join("snapshots").join(id)
    }

    /// The subvolume's root within its file system (`/…/volumes/<id>`), as mountinfo shows binds of it.
    fn fs_root_of(&self, mounts: &[mountinfo::Mount], path: &Path) -> Option<(u32, u32, String)> {
        let m = mountinfo::containing(mounts, &self.pool)?;
        let rel = path.strip_prefix(&m.mount_point).ok()?;
        let root = Path::new(&m.root).join(rel);
        Some((m.major, m.minor, root.to_string_lossy().into_owned()))
    }

    fn set_limit(&self, path: &Path, bytes: u64) -> Result<()> {
        run("btrfs", ["qgroup".as_ref(), "limit".as_ref(), bytes.to_string().as_ref(), path.as_os_str()])?;
        Ok(())
    }

    fn delete_subvolume(path: &Path) -> Result<()> {
        if path.exists() {
            run("btrfs", ["subvolume".as_ref(), "delete".as_ref(), path.as_os_str()])?;
        }
        Ok(())
    }

    /// Referenced bytes of the subvolume at `path`, from its level-0 qgroup.
    fn referenced_bytes(&self, path: &Path) -> Result<u64> {
        let id = run("btrfs", ["inspect-internal".as_ref(), "rootid".as_ref(), path.as_os_str()])?;
        let qgroup = format!("0/{}", id.trim());
        let out =
            run("btrfs", ["qgroup".as_ref(), "show".as_ref(), "-rF".as_ref(), "--raw".as_ref(), path.as_os_str()])?;
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&qgroup.as_str()))
            .and_then(|cols| cols.get(1)?.parse().ok())
            .ok_or_else(|| Error::Command {
                command: format!("btrfs qgroup show {}", path.display()),
                status: "ok".into(),
                stderr: format!("no qgroup {qgroup} in output: {out}"),
            })
    }
}

impl Backend for Btrfs {
    fn name(&self) -> &'static str {
        "btrfs"
    }

    fn supports_block(&self) -> bool {
        false
    }

    fn file_systems(&self) -> &'static [&'static str] {
        &["btrfs"]
    }

    fn min_volume_bytes(&self) -> u64 {
        1 << 20
    }

    fn granularity(&self) -> u64 {
        4096
    }

    fn check(&self) -> Result<()> {
        let st = nix::sys::statfs::statfs(&self.pool).map_err(|e| Error::io("statfs", &self.pool)(e.into()))?;
        if st.filesystem_type() != nix::sys::statfs::BTRFS_SUPER_MAGIC || !self.pool.join("volumes").is_dir() {
            return Err(Error::PoolUnhealthy { pool: self.pool.clone(), reason: "no longer a btrfs pool".into() });
        }
        Ok(())
    }

    fn available_bytes(&self) -> Result<u64> {
        free_bytes(&self.pool)
    }

    fn create_volume(&self, id: &str, bytes: u64, source: Option<&ContentSource>) -> Result<()> {
        let path = self.volume_path(id);
        if path.exists() {
            return self.set_limit(&path, bytes);
        }
        // Build under a temporary name and rename: the final name exists only when complete.
        let tmp = self.pool.join("volumes").join(format!(".tmp-{id}"));
        Self::delete_subvolume(&tmp)?;
        match source {
            None => {
                run("btrfs", ["subvolume".as_ref(), "create".as_ref(), tmp.as_os_str()])?;
            }
            Some(src) => {
                let from = match src {
                    ContentSource::Snapshot(s) => self.snapshot_path(s),
                    ContentSource::Volume(v) => self.volume_path(v),
                };
                run("btrfs", ["subvolume".as_ref(), "snapshot".as_ref(), from.as_os_str(), tmp.as_os_str()])?;
            }
        }
        self.set_limit(&tmp, bytes)?;
        std::fs::rename(&tmp, &path).map_err(Error::io("renaming subvolume", &path))
    }

    fn delete_volume(&self, id: &str) -> Result<()> {
        Self::delete_subvolume(&self.pool.join("volumes").join(format!(".tmp-{id}")))?;
        Self::delete_subvolume(&self.volume_path(id))
    }

    fn in_use(&self, id: &str) -> Result<Option<String>> {
        let mounts = mountinfo::read()?;
        let Some((major, minor, root)) = self.fs_root_of(&mounts, &self.volume_path(id)) else {
            return Ok(None);
        };
        Ok(mounts
            .iter()
            // The subvolume itself or a directory in it (paths compare whole components).
            .find(|m| m.major == major && m.minor == minor && m.root.starts_with(&root))
            .map(|m| format!("mounted at {}", m.mount_point.display())))
    }

    fn expand_volume(&self, id: &str, bytes: u64) -> Result<bool> {
        self.set_limit(&self.volume_path(id), bytes)?;
        Ok(false)
    }

    fn create_snapshot(&self, snapshot_id: &str, volume_id: &str) -> Result<()> {
        let path = self.snapshot_path(snapshot_id);
        if path.exists() {
            return Ok(());
        }
        let tmp = self.pool.join("snapshots").join(format!(".tmp-{snapshot_id}"));
        Self::delete_subvolume(&tmp)?;
        let from = self.volume_path(volume_id);
        run("btrfs", ["subvolume".as_ref(), "snapshot".as_ref(), "-r".as_ref(), from.as_os_str(), tmp.as_os_str()])?;
        std::fs::rename(&tmp, &path).map_err(Error::io("renaming snapshot", &path))
    }

    fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        Self::delete_subvolume(&self.pool.join("snapshots").join(format!(".tmp-{snapshot_id}")))?;
        Self::delete_subvolume(&self.snapshot_path(snapshot_id))
    }

    fn is_staged(&self, id: &str, staging: &Path, block: bool, table: &mountinfo::Table) -> Result<bool> {
        if block {
            return Ok(false);
        }
        // A bind of the subvolume shows the subvolume's root directory itself: same device, same inode.
        match mountinfo::probe(staging) {
            mountinfo::Probe::NotMounted => return Ok(false),
            mountinfo::Probe::Mounted(st) => match kvol_mount::statx(&self.volume_path(id), true) {
                Ok(volume) => return Ok(volume.file_id() == st.file_id()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(_) => {}
            },
            mountinfo::Probe::Unknown => {}
        }
        let mounts = table.get()?;
        let Some(m) = mountinfo::mount_at(mounts, staging) else { return Ok(false) };
        let Some((major, minor, root)) = self.fs_root_of(mounts, &self.volume_path(id)) else {
            return Ok(false);
        };
        Ok(m.major == major && m.minor == minor && m.root == root)
    }

    fn stage(&self, id: &str, staging: &Path, block: bool, _fs_type: &str, opts: &MountOptions) -> Result<String> {
        if block {
            return Err(Error::FailedPrecondition("the btrfs backend has no block access".into()));
        }
        ensure_dir(staging)?;
        mounter::bind(&self.volume_path(id), staging, opts)?;
        Ok("btrfs".into())
    }

    fn unstage(&self, _id: &str, staging: &Path) -> Result<()> {
        if mountinfo::is_mount_point(staging, &mountinfo::Table::default())? {
            mounter::unmount(staging)?;
        }
        Ok(())
    }

    fn block_device(&self, _id: &str) -> Result<Option<PathBuf>> {
        Ok(None)
    }

    fn usage(&self, id: &str, _path: &Path, _block: bool, capacity: u64) -> Result<Vec<VolumeUsage>> {
        let used = self.referenced_bytes(&self.volume_path(id))?;
        let total = capacity as i64;
        Ok(vec![VolumeUsage {
            available: (total - used as i64).max(0),
            total,
            used: used as i64,
            unit: Unit::Bytes as i32,
        }])
    }

    fn node_expand(&self, _id: &str, _fs_mount: Option<&Path>, capacity: u64) -> Result<u64> {
        // The qgroup limit the controller raised is already in force on every mount.
        Ok(capacity)
    }
}
