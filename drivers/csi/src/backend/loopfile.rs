//! loop backend: a sparse file per volume, attached as a loop device on the node when staged.
//!
//! The file's size is a hard capacity. Mount access formats the device (ext4 or xfs) on first stage
//! and mounts it at the staging path; block access hands the device itself to the publish step.
//! Expansion grows the file; the node then refreshes the loop device (`losetup -c`) and grows xfs
//! online. ext4 cannot be grown online on this kernel without CAP_SYS_RESOURCE, so it is grown offline
//! (`e2fsck -f` + `resize2fs`) on the next stage instead, and NodeExpandVolume says so.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kvol_csi::v1::{volume_usage::Unit, VolumeUsage};

use crate::backend::{ensure_dir, free_bytes, remove_leftover_file, statvfs_usage, Backend};
use crate::cmd::{run, run_status};
use crate::error::{Error, Result};
use crate::mounter::{self, MountOptions};
use crate::mountinfo;
use crate::store::ContentSource;

/// How long [`LoopFiles::unstage`] waits for a detach the kernel deferred.
const DETACH_WAIT: Duration = Duration::from_secs(5);

/// The loop-file backend over a pool directory (any file system with sparse files).
pub struct LoopFiles {
    pool: PathBuf,
}

impl LoopFiles {
    /// Opens the pool, creating its layout; checks that losetup is available.
    pub fn open(pool: &Path) -> Result<Self> {
        let pool = pool.canonicalize().map_err(Error::io("opening pool", pool))?;
        for dir in ["volumes", "snapshots"] {
            ensure_dir(&pool.join(dir))?;
        }
        run("losetup", ["--version"])?;
        Ok(LoopFiles { pool })
    }

    fn volume_path(&self, id: &str) -> PathBuf {
        self.pool.join("volumes").join(format!("{id}.img"))
    }

    fn snapshot_path(&self, id: &str) -> PathBuf {
        self.pool.join("snapshots").join(format!("{id}.img"))
    }

    /// Loop devices backed by the file, from sysfs (what `losetup -j` reports, without spawning it:
    /// this is on the NodePublish path).
    fn devices_of(file: &Path) -> Result<Vec<PathBuf>> {
        if !file.exists() {
            return Ok(Vec::new());
        }
        let file = file.canonicalize().map_err(Error::io("resolving", file))?;
        let entries = match std::fs::read_dir("/sys/block") {
            Ok(e) => e,
            Err(e) => return Err(Error::io("listing", "/sys/block")(e)),
        };
        let mut devices: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
            .filter(|e| {
                std::fs::read_to_string(e.path().join("loop/backing_file"))
                    .is_ok_and(|b| Path::new(b.trim_end_matches('\n')) == file)
            })
            .map(|e| Path::new("/dev").join(e.file_name()))
            .collect();
        devices.sort();
        Ok(devices)
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

    /// True if the loop device was detached and the kernel only waits for its last opener to close it
    /// (`losetup -d` on a busy device sets autoclear; the driver never attaches with autoclear itself).
    fn detach_pending(dev: &Path) -> bool {
        let name = dev.file_name().unwrap_or_default().to_string_lossy();
        std::fs::read_to_string(format!("/sys/block/{name}/loop/autoclear")).is_ok_and(|v| v.trim() == "1")
    }

    fn attach(&self, id: &str) -> Result<PathBuf> {
        let file = self.volume_path(id);
        if let Some(dev) = Self::devices_of(&file)?.into_iter().next() {
            return Ok(dev);
        }
        let out = run("losetup", ["--find".as_ref(), "--show".as_ref(), file.as_os_str()])?;
        Ok(PathBuf::from(out.trim()))
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
        let devs = Self::devices_of(&self.volume_path(id))?;
        Ok(devs.iter().find(|d| !Self::detach_pending(d)).map(|d| format!("attached as {}", d.display())))
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
        Ok(mountinfo::mount_at(table.get()?, staging).is_some_and(|m| devs.iter().any(|d| Path::new(&m.source) == d)))
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
            let _ = run("losetup", ["-d".as_ref(), dev.as_os_str()]);
        }
        result
    }

    fn unstage(&self, id: &str, staging: &Path) -> Result<()> {
        if mountinfo::is_mount_point(staging, &mountinfo::Table::default())? {
            mounter::unmount(staging)?;
        }
        let file = self.volume_path(id);
        for dev in Self::devices_of(&file)? {
            if !Self::detach_pending(&dev) {
                run("losetup", ["-d".as_ref(), dev.as_os_str()])?;
            }
        }
        // The kernel defers a detach while anyone else has the device open (a probe, a scan): wait a
        // little for it, so that a DeleteVolume right after this call finds the volume free.
        let deadline = Instant::now() + DETACH_WAIT;
        while !Self::devices_of(&file)?.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn block_device(&self, id: &str) -> Result<Option<PathBuf>> {
        Ok(Self::devices_of(&self.volume_path(id))?.into_iter().next())
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
        let Some(dev) = Self::devices_of(&file)?.into_iter().next() else {
            // Not attached: the next stage sees the new size (and grows the file system then).
            return Ok(size);
        };
        run("losetup", ["-c".as_ref(), dev.as_os_str()])?;
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
