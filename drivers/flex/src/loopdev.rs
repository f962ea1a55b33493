//! The `loop` driver: an attachable block driver, real on any Linux host with loop devices.
//!
//! It follows the seeds' lvm example, with a file in a pool directory in place of a logical
//! volume (options `volumeID`, `size`, `pool`):
//!
//! | call | what it does |
//! |---|---|
//! | `attach <json> <node>` | creates `<pool>/<volumeID>.img` (sparse, `size`) unless it exists, attaches a loop device unless one already backs the file, answers `device` |
//! | `waitforattach <device> <json>`, `isattached <json> <node>` | look for the loop device backing the file |
//! | `mountdevice <path> <device> <json>` | formats (`kubernetes.io/fsType`: ext4 or xfs) only when blkid finds no file system, then mounts |
//! | `mount <pod dir> <json>` | bind-mounts the device's global mount (found in mountinfo: kubelet does not pass it) |
//! | `unmount <dir>`, `unmountdevice <path>` | unmount when mounted |
//! | `detach <volume name> <node>` | releases the loop device and waits until the kernel has (a device held open elsewhere fails the call instead of answering Success while bound); the file and its data stay |
//!
//! `detach` gets only the volume name, so `attach` records which file a volume name uses in
//! `$KVOL_FLEX_STATE_DIR/loop/<volume name>` (default `/var/lib/kvol-flex`); a name recorded for
//! another file that is still attached is refused. Attach, format and detach of one file hold an
//! exclusive flock on it (kvol-mount's `BackingFile`), so concurrent calls cannot attach it twice or
//! format it twice. Loop devices are kvol-mount's (`loopdev`: ioctls, sysfs lookups, a detach that
//! waits for the kernel's release); no `losetup` runs.
//!
//! The loop device lives on the machine that runs `attach`: in a real cluster that must be the
//! node (kubelet with `--enable-controller-attach-detach=false`), or kvol's single machine.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use kvol_flex::{parse_options_json, DriverCapabilities, DriverOptions, DriverStatus};
use kvol_mount::loopdev::{self, BackingFile};
use kvol_mount::{find_by_mount_point, MountInfo, Mounter, RealMounter};
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};
use crate::sys::{canonical, run_tool, Created};
use crate::{expect_args, Reply};

/// Environment variable naming the driver's state directory.
pub const STATE_DIR_ENV: &str = "KVOL_FLEX_STATE_DIR";
/// The state directory when the variable is unset.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/kvol-flex";

/// File systems `mountdevice` creates.
const FS_TYPES: [&str; 2] = ["ext4", "xfs"];

/// The options the loop driver reads.
#[derive(Debug, PartialEq, Eq)]
pub struct LoopOptions {
    /// `volumeID`: the file's name in the pool (`[A-Za-z0-9._-]`, not starting with `.`).
    pub volume_id: String,
    /// `size` in bytes; needed only to create the file. Binary suffixes: `1000m` (as lvm
    /// reads it), `512Mi`, `1G`, `1GiB`.
    pub size: Option<u64>,
    /// `pool`: the absolute directory holding the files (created when missing).
    pub pool: PathBuf,
    /// `kubernetes.io/fsType`, ext4 when empty.
    pub fs_type: String,
    /// `kubernetes.io/readwrite` is `ro`.
    pub read_only: bool,
    /// `kubernetes.io/pvOrVolumeName`.
    pub volume_name: Option<String>,
}

impl TryFrom<&BTreeMap<String, String>> for LoopOptions {
    type Error = Error;

    fn try_from(map: &BTreeMap<String, String>) -> Result<Self> {
        let base = DriverOptions::try_from(map)?;
        let volume_id = base.required("volumeID")?.to_owned();
        if !is_safe_name(&volume_id) {
            return Err(invalid("volumeID", &volume_id, "use letters, digits, '.', '_', '-', not starting with '.'"));
        }
        let pool = PathBuf::from(base.required("pool")?);
        if !pool.is_absolute() {
            return Err(invalid("pool", &pool.to_string_lossy(), "not an absolute path"));
        }
        let size = match base.optional("size") {
            None => None,
            Some(s) => Some(
                parse_size(s).ok_or_else(|| invalid("size", s, "expected bytes with an optional k/m/g/t suffix"))?,
            ),
        };
        let fs_type = base.fs_type.clone().unwrap_or_else(|| "ext4".to_owned());
        if !FS_TYPES.contains(&fs_type.as_str()) {
            return Err(invalid("kubernetes.io/fsType", &fs_type, "the loop driver formats ext4 or xfs"));
        }
        Ok(LoopOptions { volume_id, size, pool, fs_type, read_only: base.read_only, volume_name: base.volume_name })
    }
}

impl LoopOptions {
    /// `<pool>/<volumeID>.img`.
    pub fn image(&self) -> PathBuf {
        self.pool.join(format!("{}.img", self.volume_id))
    }

    fn parse(json: &str) -> Result<Self> {
        Self::try_from(&parse_options_json(json)?)
    }
}

fn invalid(key: &str, value: &str, reason: &str) -> Error {
    Error::Options(kvol_flex::Error::InvalidOption { key: key.into(), value: value.into(), reason: reason.into() })
}

fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Parses `1073741824`, `1000m`, `512Mi`, `1G`, `1GiB` (binary multiples, as lvm and truncate).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits].parse().ok()?;
    let suffix = s[digits..].to_ascii_lowercase();
    let unit = suffix.trim_end_matches('b').trim_end_matches('i');
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    if suffix.len() > unit.len() + 2 || (unit.is_empty() && !suffix.is_empty()) {
        return None;
    }
    n.checked_mul(1u64 << shift).filter(|&v| v > 0)
}

/// What `init` answers: attachable, with statfs metrics; kubelet's defaults otherwise.
pub const CAPABILITIES: DriverCapabilities = DriverCapabilities {
    attach: true,
    selinux_relabel: true,
    supports_metrics: true,
    fs_group: true,
    requires_fs_resize: true,
};

/// Runs one loop driver call.
pub fn call(args: &[String]) -> Result<Reply> {
    match args.first().map(String::as_str) {
        Some("init") => Ok(Reply::Init(CAPABILITIES)),
        Some("attach") => {
            let [json, _node] = expect_args(args, "attach <json options> <node name>")?;
            attach(&LoopOptions::parse(json)?)
        }
        Some("waitforattach") => {
            let [device, json] = expect_args(args, "waitforattach <device> <json options>")?;
            wait_for_attach(device, &LoopOptions::parse(json)?)
        }
        Some("isattached") => {
            let [json, _node] = expect_args(args, "isattached <json options> <node name>")?;
            let opts = LoopOptions::parse(json)?;
            let attached = !attached_devices(&opts.image())?.is_empty();
            Ok(Reply::Done(DriverStatus { attached, ..DriverStatus::success() }))
        }
        Some("mountdevice") => {
            let [path, device, json] = expect_args(args, "mountdevice <mount path> <device> <json options>")?;
            mount_device_at(Path::new(path), device, &LoopOptions::parse(json)?)
        }
        Some("mount") => {
            let [dir, json] = expect_args(args, "mount <mount dir> <json options>")?;
            mount(Path::new(dir), &LoopOptions::parse(json)?)
        }
        Some("unmount") => {
            let [dir] = expect_args(args, "unmount <mount dir>")?;
            unmount_if_mounted(Path::new(dir))
        }
        Some("unmountdevice") => {
            let [path] = expect_args(args, "unmountdevice <mount path>")?;
            unmount_if_mounted(Path::new(path))
        }
        Some("detach") => {
            let [volume_name, _node] = expect_args(args, "detach <volume name> <node name>")?;
            detach(volume_name)
        }
        Some("expandvolume") => {
            let [json, _device_mount_path, new_size, _old_size] =
                expect_args(args, "expandvolume <json options> <device mount path> <new size> <old size>")?;
            let bytes = new_size
                .parse::<u64>()
                .ok()
                .filter(|&b| b > 0)
                .ok_or_else(|| invalid("new size", new_size, "must be a positive number of bytes"))?;
            expand_volume(&LoopOptions::parse(json)?, bytes)
        }
        // expandfs: "Not supported", so kubelet (and kvol) grow the file system the generic way
        // (xfs_growfs online; resize2fs), which is all a loop device needs.
        _ => Ok(Reply::NotSupported),
    }
}

fn attach(opts: &LoopOptions) -> Result<Reply> {
    let image = opts.image();
    if !opts.pool.is_dir() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&opts.pool).map_err(|source| Error::Io {
            step: "create pool directory",
            path: opts.pool.clone(),
            source,
        })?;
    }
    if !image.exists() {
        let size = opts.size.ok_or_else(|| kvol_flex::Error::MissingOption { key: "size".into() })?;
        match File::options().write(true).create_new(true).open(&image) {
            Ok(file) => file.set_len(size).map_err(|source| Error::Io {
                step: "size volume file",
                path: image.clone(),
                source,
            })?,
            // Another attach created it meanwhile: reuse it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(Error::Io { step: "create volume file", path: image, source }),
        }
    }
    // Check the volume name's record and write it under one lock, so that two attaches of one name
    // cannot both pass the check.
    let _names = match &opts.volume_name {
        Some(name) => Some(lock_records(name)?),
        None => None,
    };
    let backing = BackingFile::lock(&image)?;
    let image = canonical(&image);
    if let Some(name) = &opts.volume_name {
        refuse_name_in_use(name, &image)?;
    }
    // Idempotent; a device with a pending detach of this file is waited for first (two devices on one file
    // would corrupt it).
    let device = backing.attach()?;
    if let Some(name) = &opts.volume_name {
        record_volume(name, &image)?;
    }
    Ok(Reply::Done(DriverStatus { device: device.to_string_lossy().into_owned(), ..DriverStatus::success() }))
}

/// `expandvolume`: grows the volume file to `bytes` (never shrinks it) and tells every loop device on it
/// to pick the new size up (`LOOP_SET_CAPACITY`, as `losetup -c`), so a mounted file system can then be grown
/// online.
fn expand_volume(opts: &LoopOptions, bytes: u64) -> Result<Reply> {
    let image = opts.image();
    let _lock = BackingFile::lock(&image)?;
    let file = File::options().write(true).open(&image).map_err(|source| Error::Io {
        step: "open volume file",
        path: image.clone(),
        source,
    })?;
    let current =
        file.metadata().map_err(|source| Error::Io { step: "stat volume file", path: image.clone(), source })?;
    if current.len() < bytes {
        file.set_len(bytes).map_err(|source| Error::Io { step: "grow volume file", path: image.clone(), source })?;
        file.sync_all().map_err(|source| Error::Io { step: "sync volume file", path: image.clone(), source })?;
    }
    for device in attached_devices(&image)? {
        loopdev::refresh_capacity(&device)?;
    }
    Ok(Reply::Done(DriverStatus::success()))
}

fn wait_for_attach(device: &str, opts: &LoopOptions) -> Result<Reply> {
    let image = canonical(&opts.image());
    let devices = attached_devices(&image)?;
    let found = devices.iter().find(|d| d.as_os_str() == device).or(devices.first()).ok_or_else(|| {
        Error::State(format!("volume {} is not attached: no loop device backs {}", opts.volume_id, image.display()))
    })?;
    Ok(Reply::Done(DriverStatus { device: found.to_string_lossy().into_owned(), ..DriverStatus::success() }))
}

fn mount_device_at(path: &Path, device: &str, opts: &LoopOptions) -> Result<Reply> {
    let image = canonical(&opts.image());
    let device = if device.is_empty() {
        attached_devices(&image)?.into_iter().next().ok_or_else(|| {
            Error::State(format!("volume {} is not attached: no loop device backs {}", opts.volume_id, image.display()))
        })?
    } else {
        PathBuf::from(device)
    };
    match loopdev::backing_file(&device)? {
        Some(backing) if backing == image => {}
        other => {
            return Err(Error::State(format!(
                "device {} does not back {} (it backs {})",
                device.display(),
                image.display(),
                other.map_or("nothing".into(), |p| p.display().to_string())
            )))
        }
    }
    let dev_id = device_number(&device)?;
    let mounts = read_mounts()?;
    if let Some(m) = find_by_mount_point(&mounts, &canonical(path)) {
        if (m.major, m.minor) == dev_id {
            return Ok(Reply::Done(DriverStatus::success()));
        }
        return Err(Error::State(format!("{} is already mounted ({} {})", path.display(), m.fs_type, m.source)));
    }
    let _lock = BackingFile::lock(&image)?;
    match blkid_type(&device)? {
        None => {
            run_tool(&format!("mkfs.{}", opts.fs_type), &["-q", &device.to_string_lossy()])?;
        }
        Some(existing) if existing == opts.fs_type => {}
        Some(existing) => {
            return Err(Error::State(format!(
                "device {} already has a {existing} file system, not {}; it is never reformatted",
                device.display(),
                opts.fs_type
            )))
        }
    }
    let mut created = Created::default();
    created.mkdir_all(path)?;
    RealMounter::new().mount(&device.to_string_lossy(), path, &opts.fs_type, &access(opts.read_only, &[]))?;
    created.keep();
    Ok(Reply::Done(DriverStatus::success()))
}

fn mount(dir: &Path, opts: &LoopOptions) -> Result<Reply> {
    if !dir.is_absolute() {
        return Err(Error::Usage(format!("mount dir {} is not absolute", dir.display())));
    }
    let image = canonical(&opts.image());
    let device = attached_devices(&image)?.into_iter().next().ok_or_else(|| {
        Error::State(format!("volume {} is not attached: no loop device backs {}", opts.volume_id, image.display()))
    })?;
    let dev_id = device_number(&device)?;
    let mounts = read_mounts()?;
    let target = canonical(dir);
    if let Some(m) = find_by_mount_point(&mounts, &target) {
        if (m.major, m.minor) == dev_id {
            return Ok(Reply::Done(DriverStatus::success()));
        }
        return Err(Error::State(format!("{} is already mounted ({} {})", dir.display(), m.fs_type, m.source)));
    }
    let source = global_mount(&mounts, dev_id, &target, opts.volume_name.as_deref()).ok_or_else(|| {
        Error::State(format!(
            "device {} of volume {} is not mounted anywhere: mountdevice must run before mount",
            device.display(),
            opts.volume_id
        ))
    })?;
    let mut created = Created::default();
    created.mkdir_all(dir)?;
    RealMounter::new().mount(&source.to_string_lossy(), dir, "", &access(opts.read_only, &["bind"]))?;
    created.keep();
    Ok(Reply::Done(DriverStatus::success()))
}

/// Mount options: `extra`, plus `ro` for read-only access (a read-only bind is a bind, then a read-only
/// remount: kvol-mount plans both).
fn access(read_only: bool, extra: &[&str]) -> Vec<String> {
    extra.iter().copied().chain(read_only.then_some("ro")).map(str::to_owned).collect()
}

/// Where the device's whole file system is mounted, preferring kubelet's global path
/// (`.../kubernetes.io/flexvolume/<driver>/mounts/<volume name>`) over other binds of it.
fn global_mount(mounts: &[MountInfo], dev_id: (u32, u32), target: &Path, volume_name: Option<&str>) -> Option<PathBuf> {
    let mut candidates =
        mounts.iter().filter(|m| (m.major, m.minor) == dev_id && m.root == Path::new("/") && m.mount_point != target);
    let all: Vec<&MountInfo> = candidates.by_ref().collect();
    let preferred = volume_name.and_then(|name| {
        let tail = Path::new("mounts").join(name);
        all.iter().find(|m| {
            m.mount_point.ends_with(&tail) && m.mount_point.to_string_lossy().contains("kubernetes.io/flexvolume")
        })
    });
    preferred.or(all.first()).map(|m| m.mount_point.clone())
}

fn unmount_if_mounted(path: &Path) -> Result<Reply> {
    let mounts = read_mounts()?;
    if find_by_mount_point(&mounts, &canonical(path)).is_some() {
        RealMounter::new().unmount(path)?;
    }
    Ok(Reply::Done(DriverStatus::success()))
}

fn detach(volume_name: &str) -> Result<Reply> {
    if !is_safe_name(volume_name) {
        return Err(Error::Usage(format!("volume name {volume_name:?} is not a valid name")));
    }
    let record = state_dir().join("loop").join(volume_name);
    let image = match std::fs::read_to_string(&record) {
        Ok(text) => Some(PathBuf::from(text.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(Error::Io { step: "read volume record", path: record, source }),
    };
    let _lock = match &image {
        Some(image) if image.exists() => Some(BackingFile::lock(image)?),
        _ => None,
    };
    // Without a record (attached by another tool, or the record was lost), a volume whose
    // volumeID equals its name is still found. Pending detaches count: they are waited for.
    let devices: Vec<PathBuf> = match &image {
        Some(image) if image.exists() => loopdev::devices_of(image)?.into_iter().map(|d| d.device).collect(),
        Some(_) => Vec::new(),
        None => loopdev::list()?
            .into_iter()
            .filter(|d| d.backing_file.file_name().is_some_and(|n| n == format!("{volume_name}.img").as_str()))
            .map(|d| d.device)
            .collect(),
    };
    let mounts = read_mounts()?;
    for device in &devices {
        let dev_id = device_number(device)?;
        if let Some(m) = mounts.iter().find(|m| (m.major, m.minor) == dev_id) {
            return Err(Error::State(format!(
                "device {} of volume {volume_name} is still mounted at {}; not detached",
                device.display(),
                m.mount_point.display()
            )));
        }
    }
    // The kernel releases a device someone still holds open only when they close it: each detach waits
    // for that, and fails rather than answer Success with the device bound.
    for device in &devices {
        loopdev::detach(device)?;
    }
    match std::fs::remove_file(&record) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(Error::Io { step: "remove volume record", path: record, source }),
    }
    Ok(Reply::Done(DriverStatus::success()))
}

/// `detach` gets only the volume name, and finds the file through the name's record. A record naming
/// another file that is still attached belongs to a volume that is not detached yet: overwriting it would
/// make that volume's detach release this file's device instead (and answer Success while its own device
/// stays bound). Two volumes cannot share one name on a node, so this is refused; the usual cause is two
/// nodes (agents) on one machine sharing one state directory.
fn refuse_name_in_use(volume_name: &str, image: &Path) -> Result<()> {
    let record = state_dir().join("loop").join(volume_name);
    let recorded = match std::fs::read_to_string(&record) {
        Ok(text) => PathBuf::from(text.trim()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(Error::Io { step: "read volume record", path: record, source }),
    };
    if recorded == image {
        return Ok(());
    }
    match loopdev::list()?.into_iter().find(|d| d.backing_file == recorded) {
        None => Ok(()),
        Some(loopdev::LoopDevice { device, .. }) => Err(Error::State(format!(
            "volume name {volume_name} already names {}, attached as {} and not detached yet: one name cannot \
             name two volumes (is the state directory {} shared by two nodes? set ${STATE_DIR_ENV} per node)",
            recorded.display(),
            device.display(),
            state_dir().display()
        ))),
    }
}

/// An exclusive flock on the state directory's `loop` directory while a volume name's record is checked
/// and written.
fn lock_records(volume_name: &str) -> Result<Flock<File>> {
    if !is_safe_name(volume_name) {
        return Err(invalid("kubernetes.io/pvOrVolumeName", volume_name, "not a valid volume name"));
    }
    let dir = state_dir().join("loop");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|source| Error::Io {
        step: "create state directory",
        path: dir.clone(),
        source,
    })?;
    let file =
        File::open(&dir).map_err(|source| Error::Io { step: "open state directory", path: dir.clone(), source })?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| Error::Sys {
        step: "lock state directory".into(),
        path: dir,
        source: errno,
    })
}

fn state_dir() -> PathBuf {
    std::env::var_os(STATE_DIR_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// Records which file `volume_name` uses (write to a temp file, then rename).
fn record_volume(volume_name: &str, image: &Path) -> Result<()> {
    if !is_safe_name(volume_name) {
        return Err(invalid("kubernetes.io/pvOrVolumeName", volume_name, "not a valid volume name"));
    }
    let dir = state_dir().join("loop");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|source| Error::Io {
        step: "create state directory",
        path: dir.clone(),
        source,
    })?;
    let record = dir.join(volume_name);
    let tmp = dir.join(format!(".{volume_name}.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(image.as_os_str().as_encoded_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &record)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io { step: "write volume record", path: record.clone(), source }
    })
}

/// The loop devices backed by `image` that stay (pending detaches left out); none when the file is missing.
fn attached_devices(image: &Path) -> Result<Vec<PathBuf>> {
    if !image.exists() {
        return Ok(Vec::new());
    }
    Ok(loopdev::devices_of(image)?.into_iter().filter(|d| !d.autoclear).map(|d| d.device).collect())
}

fn device_number(device: &Path) -> Result<(u32, u32)> {
    let meta = std::fs::metadata(device).map_err(|source| Error::Io {
        step: "stat device",
        path: device.to_owned(),
        source,
    })?;
    let rdev = meta.rdev();
    // Linux device numbers are 12 + 20 bits: they always fit mountinfo's u32s.
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    match (u32::try_from(major), u32::try_from(minor)) {
        (Ok(major), Ok(minor)) => Ok((major, minor)),
        _ => Err(Error::State(format!("device {} has number {major}:{minor}, beyond 32 bits", device.display()))),
    }
}

fn read_mounts() -> Result<Vec<MountInfo>> {
    Ok(kvol_mount::read_mountinfo()?)
}

/// The file system type blkid finds on `device`, `None` when it finds none (exit 2).
fn blkid_type(device: &Path) -> Result<Option<String>> {
    let out = Command::new("blkid")
        .args(["-p", "-s", "TYPE", "-o", "value"])
        .arg(device)
        .output()
        .map_err(|e| Error::Tool { command: "blkid".into(), status: "not run".into(), output: e.to_string() })?;
    match out.status.code() {
        Some(0) => {
            let t = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            Ok((!t.is_empty()).then_some(t))
        }
        Some(2) => Ok(None),
        _ => Err(Error::Tool {
            command: format!("blkid -p -s TYPE -o value {}", device.display()),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn sizes_read_as_lvm_reads_them() {
        struct Case {
            s: &'static str,
            bytes: Option<u64>,
        }
        for c in [
            Case { s: "1048576", bytes: Some(1 << 20) },
            Case { s: "1000m", bytes: Some(1000 << 20) },
            Case { s: "512Mi", bytes: Some(512 << 20) },
            Case { s: "1G", bytes: Some(1 << 30) },
            Case { s: "1GiB", bytes: Some(1 << 30) },
            Case { s: "2t", bytes: Some(2 << 40) },
            Case { s: "0", bytes: None },
            Case { s: "1x", bytes: None },
            Case { s: "m", bytes: None },
            Case { s: "1Gibb", bytes: None },
            Case { s: "99999999999999T", bytes: None },
        ] {
            assert_eq!(parse_size(c.s), c.bytes, "{}", c.s);
        }
    }

    #[test]
    fn options_are_typed_and_errors_name_the_option() {
        let o = LoopOptions::try_from(&map(&[
            ("volumeID", "vol1"),
            ("size", "1000m"),
            ("pool", "/var/lib/pool"),
            ("kubernetes.io/fsType", "xfs"),
            ("kubernetes.io/pvOrVolumeName", "test"),
        ]))
        .unwrap();
        assert_eq!(o.image(), Path::new("/var/lib/pool/vol1.img"));
        assert_eq!(o.fs_type, "xfs");
        assert_eq!(o.size, Some(1000 << 20));
        assert_eq!(o.volume_name.as_deref(), Some("test"));
        let err = LoopOptions::try_from(&map(&[("pool", "/p")])).unwrap_err();
        assert_eq!(err.to_string(), "missing option \"volumeID\"");
        for (key, bad) in [("volumeID", "../etc"), ("pool", "rel"), ("size", "lots"), ("kubernetes.io/fsType", "vfat")]
        {
            let mut m = map(&[("volumeID", "v"), ("pool", "/p")]);
            m.insert(key.into(), bad.into());
            let err = LoopOptions::try_from(&m).unwrap_err();
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
        let o = LoopOptions::try_from(&map(&[("volumeID", "v"), ("pool", "/p")])).unwrap();
        assert_eq!(o.fs_type, "ext4");
    }

    #[test]
    fn the_global_mount_is_preferred_over_other_binds_of_the_device() {
        let mounts = kvol_mount::parse_mountinfo(
            "\
30 1 7:3 / /tmp/pod1 rw - ext4 /dev/loop3 rw
31 1 7:3 / /var/lib/kubelet/plugins/kubernetes.io/flexvolume/kvol/loop/mounts/pv1 rw - ext4 /dev/loop3 rw
32 1 7:3 /sub /tmp/sub rw - ext4 /dev/loop3 rw
33 1 7:4 / /tmp/other rw - ext4 /dev/loop4 rw
",
        )
        .unwrap();
        let target = Path::new("/tmp/pod2");
        assert_eq!(
            global_mount(&mounts, (7, 3), target, Some("pv1")).unwrap(),
            Path::new("/var/lib/kubelet/plugins/kubernetes.io/flexvolume/kvol/loop/mounts/pv1")
        );
        assert_eq!(global_mount(&mounts, (7, 3), target, Some("pv9")).unwrap(), Path::new("/tmp/pod1"));
        assert!(global_mount(&mounts, (7, 5), target, None).is_none());
    }
}
