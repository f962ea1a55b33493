//! loop backend: a sparse file per volume, attached as a loop device on the node when staged.
//!
//! The file's size is a hard capacity. Mount access formats the device (ext4 or xfs) on first stage
//! and mounts it at the staging path; block access hands the device itself to the publish step.
//! Expansion grows the file; the node then refreshes the loop device (`LOOP_SET_CAPACITY`) and grows xfs
//! online. ext4 cannot be grown online on this kernel without CAP_SYS_RESOURCE, so it is grown offline
//! (`e2fsck -f` + `resize2fs`) on the next stage instead, and NodeExpandVolume says so.

use std::path::{Path, PathBuf};

use kvol_csi::v1::{volume_usage::Unit, VolumeUsage};
use kvol_mount::loopdev::{self, LoopDevice};

use crate::backend::{ensure_dir, free_bytes, remove_leftover_file, statvfs_usage, Backend};
use crate::cmd::{run, run_status};
use crate::error::{Error, Result};
use crate::mounter::{self, MountOptions};
use crate::mountinfo;
use crate::store::ContentSource;

/// Where loop devices are allocated (its presence says the kernel has loop devices).
const LOOP_CONTROL: &str = "/dev/loop-control";

/// The loop-file backend over a pool directory (any file system with sparse files).
pub struct LoopFiles {
    pool: PathBuf,
}

impl LoopFiles {
    /// Opens the pool, creating its layout; checks that loop devices are available.
    pub fn open(pool: &Path) -> Result<Self> {
        let pool = pool.canonicalize().map_err(Error::io("opening pool", pool))?;
        for dir in ["volumes", "snapshots"] {
            ensure_dir(&pool.join(dir))?;
        }
        std::fs::metadata(LOOP_CONTROL).map_err(Error::io("opening", LOOP_CONTROL))?;
        Ok(LoopFiles { pool })
    }

    fn volume_path(&self, id: &str) -> PathBuf {
        self.pool.join("volumes").join(format!("{id}.img"))
    }

    fn snapshot_path(&self, id: &str) -> PathBuf {
        self.pool.join("snapshots").join(format!("{id}.img"))
    }

    /// Loop devices backed by the file, pending detaches included (kvol-mount reads sysfs: no process is
    /// spawned on the NodePublish path); none when the file is missing.
    fn devices_of(file: &Path) -> Result<Vec<LoopDevice>> {
        if !file.exists() {
            return Ok(Vec::new());
        }
        Ok(loopdev::devices_of(file)?)
    }

    /// The loop device backed by the file that stays (no detach pending), if any.
    fn attached_device(file: &Path) -> Result<Option<PathBuf>> {
        Ok(Self::devices_of(file)?.into_iter().find(|d| !d.autoclear).map(|d| d.device))
    }

    /// Whether the file system whose root is `mounted` lives on a loop device backed by `file`: the
    /// mount's device number names the loop device directly (`/sys/dev/block/M:m`), so no scan of all
    /// loop devices is needed. `None` if that cannot be told this way (not a loop device, or sysfs or
    /// a stat failed); the caller then asks the mount table.
    fn mounted_from_file(mounted: &kvol_mount::PathStat, file: &Path) -> Option<bool> {
        let sys = format!("/sys/dev/block/{}:{}/loop/backing_file", mounted.dev_major, mounted.dev_minor);
        let backing = std::fs::read_to_string(sys).ok()?;
        let backing = kvol_mount::statx(Path::new(backing.trim_end_matches('\n')), true).ok()?;
        match kvol_mount::statx(file, true) {
            Ok(file) => Some(file.file_id() == backing.file_id()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(false),
            Err(_) => None,
        }
    }

    /// Attaches the volume's file (idempotent; a pending detach of it is waited for first).
    fn attach(&self, id: &str) -> Result<PathBuf> {
        Ok(loopdev::attach(&self.volume_path(id))?)
    }

    fn copy_sparse(from: &Path, to: &Path) -> Result<()> {
        run("cp", ["--reflink=auto".as_ref(), "--sparse=always".as_ref(), from.as_os_str(), to.as_os_str()])?;
        Ok(())
    }

    fn file_len(path: &Path) -> Result<u64> {
        Ok(std::fs::metadata(path).map_err(Error::io("stat", path))?.len())
    }

    /// Grows the file to `bytes` (never shrinks).
    fn grow_file(path: &Path, bytes: u64) -> Result<()> {
        let file = std::fs::OpenOptions::new().write(true).open(path).map_err(Error::io("opening", path))?;
        let len = file.metadata().map_err(Error::io("stat", path))?.len();
        if bytes > len {
            file.set_len(bytes).map_err(Error::io("growing", path))?;
            file.sync_all().map_err(Error::io("syncing", path))?;
        }
        Ok(())
    }

    /// The file system on `dev`, if any (blkid exits 2 when it finds none).
    fn probe_fs(dev: &Path) -> Result<Option<String>> {
        let (code, out, err) = run_status(
            "blkid",
            ["-p".as_ref(), "-o".as_ref(), "value".as_ref(), "-s".as_ref(), "TYPE".as_ref(), dev.as_os_str()],
        )?;
        match code {
            0 => Ok(Some(out.trim().to_owned()).filter(|s| !s.is_empty())),
            2 => Ok(None),
            _ => Err(Error::Command {
                command: format!("blkid -p {}", dev.display()),
                status: code.to_string(),
                stderr: err,
            }),
        }
    }

    fn mkfs(dev: &Path, fs_type: &str) -> Result<()> {
        match fs_type {
            "ext4" => {
                run("mkfs.ext4", ["-q".as_ref(), "-F".as_ref(), "-E".as_ref(), "nodiscard".as_ref(), dev.as_os_str()])?
            }
            "xfs" => run("mkfs.xfs", ["-q".as_ref(), "-K".as_ref(), dev.as_os_str()])?,
            other => {
                return Err(Error::InvalidArgument {
                    field: "volume_capability.mount.fs_type",
                    reason: format!("{other} is not supported"),
                })
            }
        };
        Ok(())
    }

    /// ext4 only grows offline here: before mounting, if the device outgrew the file system.
    fn grow_ext4_offline(dev: &Path, device_bytes: u64) -> Result<()> {
        let out = run("dumpe2fs", ["-h".as_ref(), dev.as_os_str()])?;
        let field = |name: &str| -> Option<u64> {
            out.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok())
        };
        let (Some(blocks), Some(block_size)) = (field("Block count:"), field("Block size:")) else {
            return Ok(());
        };
        if blocks * block_size + (1 << 20) > device_bytes {
            return Ok(());
        }
        let (code, _, err) = run_status("e2fsck", ["-f".as_ref(), "-p".as_ref(), dev.as_os_str()])?;
        if code >= 4 {
            return Err(Error::Command {
                command: format!("e2fsck -f -p {}", dev.display()),
                status: code.to_string(),
                stderr: err,
            });
        }
        run("resize2fs", [dev.as_os_str()])?;
        Ok(())
    }
}

impl Backend for LoopFiles {
    fn name(&self) -> &'static str {
        "loop"
    }

    fn supports_block(&self) -> bool {
        true
    }

    fn file_systems(&self) -> &'static [&'static str] {
        &["ext4", "xfs"]
    }

    fn min_volume_bytes(&self) -> u64 {
        16 << 20
    }

    fn granularity(&self) -> u64 {
        1 << 20
    }

    fn check(&self) -> Result<()> {
        if !self.pool.join("volumes").is_dir() {
            return Err(Error::PoolUnhealthy { pool: self.pool.clone(), reason: "volumes/ is missing".into() });
        }
        Ok(())
    }

    fn available_bytes(&self) -> Result<u64> {
        free_bytes(&self.pool)
    }

    fn create_volume(&self, id: &str, bytes: u64, source: Option<&ContentSource>) -> Result<()> {
        let path = self.volume_path(id);
        if path.exists() {
            return Ok(());
        }
        let tmp = self.pool.join("volumes").join(format!(".tmp-{id}.img"));
        remove_leftover_file(&tmp)?;
        match source {
            None => {
                let file = std::fs::File::create(&tmp).map_err(Error::io("creating", &tmp))?;
                file.set_len(bytes).map_err(Error::io("sizing", &tmp))?;
            }
            Some(src) => {
                let from = match src {
                    ContentSource::Snapshot(s) => self.snapshot_path(s),
                    ContentSource::Volume(v) => self.volume_path(v),
                };
                Self::copy_sparse(&from, &tmp)?;
                Self::grow_file(&tmp, bytes)?;
            }
        }
        std::fs::rename(&tmp, &path).map_err(Error::io("renaming into place", &path))
    }

    fn delete_volume(&self, id: &str) -> Result<()> {
        remove_leftover_file(&self.pool.join("volumes").join(format!(".tmp-{id}.img")))?;
        remove_leftover_file(&self.volume_path(id))
    }

    fn in_use(&self, id: &str) -> Result<Option<String>> {
        let device = Self::attached_device(&self.volume_path(id))?;
        Ok(device.map(|d| format!("attached as {}", d.display())))
    }

    fn expand_volume(&self, id: &str, bytes: u64) -> Result<bool> {
        Self::grow_file(&self.volume_path(id), bytes)?;
        Ok(true)
    }

    fn create_snapshot(&self, snapshot_id: &str, volume_id: &str) -> Result<()> {
        let path = self.snapshot_path(snapshot_id);
        if path.exists() {
            return Ok(());
        }
        let tmp = self.pool.join("snapshots").join(format!(".tmp-{snapshot_id}.img"));
        remove_leftover_file(&tmp)?;
        Self::copy_sparse(&self.volume_path(volume_id), &tmp)?;
        std::fs::rename(&tmp, &path).map_err(Error::io("renaming into place", &path))
    }

    fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        remove_leftover_file(&self.pool.join("snapshots").join(format!(".tmp-{snapshot_id}.img")))?;
        remove_leftover_file(&self.snapshot_path(snapshot_id))
    }

    fn is_staged(&self, id: &str, staging: &Path, block: bool, table: &mountinfo::Table) -> Result<bool> {
        let file = self.volume_path(id);
        if block {
            return Ok(!Self::devices_of(&file)?.is_empty());
        }
        match mountinfo::probe(staging) {
            mountinfo::Probe::NotMounted => return Ok(false),
            mountinfo::Probe::Mounted(st) => {
                if let Some(staged) = Self::mounted_from_file(&st, &file) {
                    return Ok(staged);
                }
            }
            mountinfo::Probe::Unknown => {}
        }
        let devs = Self::devices_of(&file)?;
        Ok(mountinfo::mount_at(table.get()?, staging)
            .is_some_and(|m| devs.iter().any(|d| Path::new(&m.source) == d.device)))
    }

    fn stage(&self, id: &str, staging: &Path, block: bool, fs_type: &str, opts: &MountOptions) -> Result<String> {
        if block {
            // Nothing is mounted there for block access, but the path is the CO's handle on the staging
            // (csi-sanity with a custom create command passes one that does not exist yet).
            ensure_dir(staging)?;
            self.attach(id)?;
            return Ok(String::new());
        }
        let dev = self.attach(id)?;
        let result = (|| {
            let found = Self::probe_fs(&dev)?;
            let fs = match (found, fs_type) {
                (Some(found), want) if !want.is_empty() && found != want => {
                    return Err(Error::FailedPrecondition(format!("volume {id} is formatted as {found}, not {want}")))
                }
                (Some(found), _) => found,
                (None, want) => {
                    let fs = if want.is_empty() { self.file_systems()[0] } else { want };
                    Self::mkfs(&dev, fs)?;
                    fs.to_owned()
                }
            };
            if fs == "ext4" {
                Self::grow_ext4_offline(&dev, Self::file_len(&self.volume_path(id))?)?;
            }
            ensure_dir(staging)?;
            mounter::mount_fs(&dev, staging, &fs, opts)?;
            if fs == "xfs" {
                // Growth that happened while unstaged; a no-op otherwise.
                run("xfs_growfs", ["-d".as_ref(), staging.as_os_str()])?;
            }
            Ok(fs)
        })();
        if result.is_err() {
            let _ = loopdev::detach(&dev);
        }
        result
    }

    fn unstage(&self, id: &str, staging: &Path) -> Result<()> {
        if mountinfo::is_mount_point(staging, &mountinfo::Table::default())? {
            mounter::unmount(staging)?;
        }
        // The kernel defers a detach while anyone else has the device open (a probe, a scan): each detach
        // waits for the release, and fails rather than report the volume unstaged with its device bound.
        for dev in Self::devices_of(&self.volume_path(id))? {
            loopdev::detach(&dev.device)?;
        }
        Ok(())
    }

    fn block_device(&self, id: &str) -> Result<Option<PathBuf>> {
        Self::attached_device(&self.volume_path(id))
    }

    fn usage(&self, id: &str, path: &Path, block: bool, _capacity: u64) -> Result<Vec<VolumeUsage>> {
        if block {
            let total = Self::file_len(&self.volume_path(id))? as i64;
            return Ok(vec![VolumeUsage { available: 0, total, used: 0, unit: Unit::Bytes as i32 }]);
        }
        statvfs_usage(path)
    }

    fn node_expand(&self, id: &str, fs_mount: Option<&Path>, _capacity: u64) -> Result<u64> {
        let file = self.volume_path(id);
        let size = Self::file_len(&file)?;
        let Some(dev) = Self::attached_device(&file)? else {
            // Not attached: the next stage sees the new size (and grows the file system then).
            return Ok(size);
        };
        loopdev::refresh_capacity(&dev)?;
        let Some(mnt) = fs_mount else { return Ok(size) };
        let mounts = mountinfo::read()?;
        let fs = mountinfo::mount_at(&mounts, mnt).map(|m| m.fs_type.clone()).unwrap_or_default();
        match fs.as_str() {
            "xfs" => {
                run("xfs_growfs", ["-d".as_ref(), mnt.as_os_str()])?;
            }
            "ext4" => {
                if let Err(e) = run("resize2fs", [dev.as_os_str()]) {
                    return Err(Error::FailedPrecondition(format!(
                        "ext4 on volume {id} cannot grow while staged here ({e}); it is grown offline at the next \
                         NodeStageVolume"
                    )));
                }
            }
            other => {
                return Err(Error::FailedPrecondition(format!(
                    "no online growth for file system {other:?} at {}",
                    mnt.display()
                )))
            }
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Detaches whatever the test left attached to files under its pool, pass or fail.
    struct Detach(PathBuf);

    impl Drop for Detach {
        fn drop(&mut self) {
            for d in loopdev::list().unwrap_or_default() {
                if d.backing_file.starts_with(&self.0) {
                    let _ = loopdev::detach(&d.device);
                }
            }
        }
    }

    /// Regression (issue 11, "Success but still bound"): the kernel releases a detached loop device only
    /// when its last holder closes it. NodeUnstageVolume waited 5 s for that, then answered success with the
    /// device still bound; it now fails clearly, and succeeds once the holder lets go.
    #[test]
    fn unstage_fails_while_the_loop_device_is_held_open_and_succeeds_once_released() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIP: needs root (loop devices)");
            return;
        }
        let pool = tempfile::tempdir().unwrap();
        let backend = LoopFiles::open(pool.path()).unwrap();
        let _detach = Detach(backend.pool.clone());
        backend.create_volume("v1", 16 << 20, None).unwrap();
        let staging = pool.path().join("staging");
        backend.stage("v1", &staging, true, "", &MountOptions::default()).unwrap();
        let device = backend.block_device("v1").unwrap().expect("attached");
        let holder = std::fs::File::open(&device).unwrap();

        let result = backend.unstage("v1", &staging);
        let bound = LoopFiles::devices_of(&backend.volume_path("v1")).unwrap();
        assert!(result.is_err() || bound.is_empty(), "unstage answered Ok with {bound:?} still bound");
        let err = result.unwrap_err().to_string();
        assert!(err.contains("is still bound to") && err.contains("held open"), "{err}");
        assert_eq!(backend.in_use("v1").unwrap(), None, "a pending detach does not hold the volume");

        drop(holder);
        backend.unstage("v1", &staging).unwrap();
        assert_eq!(LoopFiles::devices_of(&backend.volume_path("v1")).unwrap(), []);
        backend.delete_volume("v1").unwrap();
    }
}
