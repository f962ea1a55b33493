//! Loop devices: a regular file attached as a block device (`/dev/loopN`), through the loop ioctls. This is
//! the one loop-device implementation: the node agent's tests and kvol's FlexVolume and CSI drivers use it.
//!
//! - **Attach** is idempotent (a file already backing a device returns that device) and serialized per
//!   backing file with `flock` ([`BackingFile`]), so two processes attaching one file do not get two
//!   devices. A device of the file whose detach is still pending is waited for first: two devices on one
//!   file would corrupt it.
//! - **Detach is asynchronous in the kernel.** `LOOP_CLR_FD` only marks the device (it sets autoclear);
//!   the kernel clears it when its last opener closes it: at once if nobody else has it open, later while a
//!   mount (in any mount namespace) or a process holds it. [`detach`] waits for that, for a bounded time,
//!   and fails with [`Error::LoopBusy`] if the device stays bound: a detach that returns `Ok` leaves
//!   nothing bound.
//! - **Lookups read sysfs** (`/sys/block/loopN/loop/…`) and do not open devices: opening one holds it,
//!   which would delay another process's detach.
//!
//! kvol never attaches with autoclear, so on its devices a set autoclear flag means "detach pending".

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{io_err, Error, Result};

/// How long [`detach`] and [`BackingFile::attach`] wait for the kernel to release a device.
pub const DETACH_WAIT: Duration = Duration::from_secs(5);
/// How often a pending release is looked at.
const RELEASE_POLL: Duration = Duration::from_millis(10);

const LOOP_CONTROL: &str = "/dev/loop-control";
/// How often attach retries when another process takes the free device first.
const ATTACH_ATTEMPTS: usize = 16;

/// `struct loop_info64` from `<linux/loop.h>`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

impl LoopInfo64 {
    fn zeroed() -> Self {
        LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: 0,
            lo_file_name: [0; 64],
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        }
    }
}

/// The loop ioctls, each behind a safe function: the unsafety is only in passing the right argument type
/// for each request number, which these signatures fix.
#[allow(unsafe_code)] // the ioctl! macros generate `unsafe fn`s; each use below states why it is sound.
mod sys {
    use super::LoopInfo64;
    use std::os::fd::{AsRawFd, BorrowedFd};

    nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
    nix::ioctl_write_int_bad!(loop_set_fd, 0x4C00);
    nix::ioctl_none_bad!(loop_clr_fd, 0x4C01);
    nix::ioctl_write_ptr_bad!(loop_set_status64, 0x4C04, LoopInfo64);
    nix::ioctl_read_bad!(loop_get_status64, 0x4C05, LoopInfo64);
    nix::ioctl_none_bad!(loop_set_capacity, 0x4C07);

    /// `LOOP_CTL_GET_FREE` on `/dev/loop-control`: the number of a free (possibly new) device.
    pub fn get_free(control: BorrowedFd<'_>) -> nix::Result<u32> {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument; the fd is valid for the borrow.
        unsafe { loop_ctl_get_free(control.as_raw_fd()) }.map(|n| n as u32)
    }

    /// `LOOP_SET_FD`: attach `file` to the loop device.
    pub fn set_fd(dev: BorrowedFd<'_>, file: BorrowedFd<'_>) -> nix::Result<()> {
        // SAFETY: LOOP_SET_FD takes an int fd by value; both fds are valid for the borrows.
        unsafe { loop_set_fd(dev.as_raw_fd(), file.as_raw_fd()) }.map(drop)
    }

    /// `LOOP_CLR_FD`: detach the loop device.
    pub fn clr_fd(dev: BorrowedFd<'_>) -> nix::Result<()> {
        // SAFETY: LOOP_CLR_FD takes no argument.
        unsafe { loop_clr_fd(dev.as_raw_fd()) }.map(drop)
    }

    /// `LOOP_SET_STATUS64`.
    pub fn set_status(dev: BorrowedFd<'_>, info: &LoopInfo64) -> nix::Result<()> {
        // SAFETY: the kernel reads a `struct loop_info64`, which `LoopInfo64` mirrors (#[repr(C)]); the
        // reference is valid for the call.
        unsafe { loop_set_status64(dev.as_raw_fd(), info) }.map(drop)
    }

    /// `LOOP_GET_STATUS64`.
    pub fn get_status(dev: BorrowedFd<'_>) -> nix::Result<LoopInfo64> {
        let mut info = LoopInfo64::zeroed();
        // SAFETY: the kernel writes a `struct loop_info64` into `info`, which is large enough and valid.
        unsafe { loop_get_status64(dev.as_raw_fd(), &mut info) }?;
        Ok(info)
    }

    /// `LOOP_SET_CAPACITY`: re-read the backing file's size.
    pub fn set_capacity(dev: BorrowedFd<'_>) -> nix::Result<()> {
        // SAFETY: LOOP_SET_CAPACITY takes no argument.
        unsafe { loop_set_capacity(dev.as_raw_fd()) }.map(drop)
    }
}

fn loop_err(step: &'static str, device: &Path, file: &Path, source: io::Error) -> Error {
    Error::Loop { step, device: device.to_path_buf(), file: file.to_path_buf(), source }
}

fn device_path(n: u32) -> PathBuf {
    PathBuf::from(format!("/dev/loop{n}"))
}

/// Makes sure `/dev/loopN` exists: devices beyond the first 8 are created on demand by the kernel, and a
/// `/dev` that is not devtmpfs does not get their nodes.
fn ensure_node(n: u32) -> Result<PathBuf> {
    let path = device_path(n);
    if path.exists() {
        return Ok(path);
    }
    let sys = PathBuf::from(format!("/sys/block/loop{n}/dev"));
    let text = std::fs::read_to_string(&sys).map_err(|source| Error::ReadFile { path: sys.clone(), source })?;
    let (major, minor) = text
        .trim()
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .ok_or_else(|| Error::ReadFile { path: sys.clone(), source: io::Error::other(format!("bad dev {text:?}")) })?;
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    match mknod(&path, SFlag::S_IFBLK, Mode::from_bits_truncate(0o660), makedev(major, minor)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(path),
        Err(e) => Err(Error::CreateDir { path, source: io_err(e) }),
    }
}

fn open_device(path: &Path, file: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| loop_err("open", path, file, e))
}

/// A bound loop device, as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub device: PathBuf,
    /// The backing file's path as the kernel reports it (as given at attach time, resolved).
    pub backing_file: PathBuf,
    /// `LO_FLAGS_AUTOCLEAR`: the device goes when its last opener closes it. kvol never attaches with it, so
    /// on kvol's devices it means a detach is pending (`LOOP_CLR_FD` while someone held the device).
    pub autoclear: bool,
}

/// `N` of `/dev/loopN`.
fn device_number(device: &Path) -> Option<u32> {
    device.file_name()?.to_str()?.strip_prefix("loop")?.parse().ok()
}

/// Loop device `n`, if bound (its `loop/` sysfs directory exists from bind to release).
fn bound(n: u32) -> Option<LoopDevice> {
    let sys = PathBuf::from(format!("/sys/block/loop{n}/loop"));
    let backing = std::fs::read_to_string(sys.join("backing_file")).ok()?;
    let backing = backing.trim_end_matches('\n');
    if backing.is_empty() {
        return None; // being cleared
    }
    let autoclear = std::fs::read_to_string(sys.join("autoclear")).is_ok_and(|v| v.trim() == "1");
    Some(LoopDevice { device: device_path(n), backing_file: PathBuf::from(backing), autoclear })
}

/// Every bound loop device, by number.
pub fn list() -> Result<Vec<LoopDevice>> {
    let rd = std::fs::read_dir("/sys/block").map_err(|source| Error::ReadDir { path: "/sys/block".into(), source })?;
    let mut numbers: Vec<u32> =
        rd.flatten().filter_map(|e| e.file_name().to_str()?.strip_prefix("loop")?.parse().ok()).collect();
    numbers.sort_unstable();
    let mut devices = Vec::new();
    for n in numbers {
        if let Some(d) = bound(n) {
            ensure_node(n)?;
            devices.push(d);
        }
    }
    Ok(devices)
}

/// The loop devices bound to `file` (matched by device and inode, not by name), pending detaches included.
pub fn devices_of(file: &Path) -> Result<Vec<LoopDevice>> {
    let meta = std::fs::metadata(file).map_err(|source| Error::Stat { path: file.to_path_buf(), source })?;
    let mut found = Vec::new();
    for d in list()? {
        let same = match std::fs::metadata(&d.backing_file) {
            Ok(b) => (b.dev(), b.ino()) == (meta.dev(), meta.ino()),
            // A path this process cannot resolve (another mount namespace, a deleted file): ask the device.
            Err(_) => File::open(&d.device)
                .ok()
                .and_then(|f| sys::get_status(std::os::fd::AsFd::as_fd(&f)).ok())
                .is_some_and(|info| (info.lo_device, info.lo_inode) == (meta.dev(), meta.ino())),
        };
        if same {
            found.push(d);
        }
    }
    Ok(found)
}

/// The loop device backed by `file` that stays (no detach pending), if any.
pub fn find_by_backing_file(file: &Path) -> Result<Option<PathBuf>> {
    Ok(devices_of(file)?.into_iter().find(|d| !d.autoclear).map(|d| d.device))
}

/// An exclusive `flock` on a loop device's backing file, held while attaching it (in this and other
/// processes), and by callers for whatever must not run alongside an attach or detach of it (formatting).
pub struct BackingFile {
    path: PathBuf,
    file: Flock<File>,
}

impl BackingFile {
    /// Opens `path` read-write and locks it, waiting for another holder.
    pub fn lock(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| loop_err("open backing file", Path::new(LOOP_CONTROL), path, e))?;
        let file = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| loop_err("flock backing file", Path::new(LOOP_CONTROL), path, io_err(e)))?;
        Ok(BackingFile { path: path.to_path_buf(), file })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Attaches the file to a free loop device and returns it (`/dev/loopN`). Idempotent: a device the file
    /// already backs is returned. A device of the file with a pending detach is waited for (up to
    /// [`DETACH_WAIT`]) before a new one is attached.
    pub fn attach(&self) -> Result<PathBuf> {
        let existing = devices_of(&self.path)?;
        if let Some(d) = existing.iter().find(|d| !d.autoclear) {
            tracing::debug!(file = %self.path.display(), device = %d.device.display(), "already attached");
            return Ok(d.device.clone());
        }
        for d in &existing {
            wait_released(d, DETACH_WAIT)?;
        }
        let file = &self.path;
        let control = File::open(LOOP_CONTROL).map_err(|e| loop_err("open", Path::new(LOOP_CONTROL), file, e))?;
        let mut last = None;
        for _ in 0..ATTACH_ATTEMPTS {
            let n = sys::get_free(std::os::fd::AsFd::as_fd(&control))
                .map_err(|e| loop_err("LOOP_CTL_GET_FREE", Path::new(LOOP_CONTROL), file, io_err(e)))?;
            let path = ensure_node(n)?;
            let dev = open_device(&path, file)?;
            match sys::set_fd(std::os::fd::AsFd::as_fd(&dev), std::os::fd::AsFd::as_fd(&*self.file)) {
                Ok(()) => {}
                // Another process took it between GET_FREE and SET_FD.
                Err(nix::errno::Errno::EBUSY) => {
                    last = Some(loop_err("LOOP_SET_FD", &path, file, io_err(nix::errno::Errno::EBUSY)));
                    continue;
                }
                Err(e) => return Err(loop_err("LOOP_SET_FD", &path, file, io_err(e))),
            }
            let mut info = LoopInfo64::zeroed();
            let name = file.as_os_str().as_encoded_bytes();
            let len = name.len().min(info.lo_file_name.len() - 1);
            info.lo_file_name[..len].copy_from_slice(&name[..len]);
            if let Err(e) = sys::set_status(std::os::fd::AsFd::as_fd(&dev), &info) {
                let _ = sys::clr_fd(std::os::fd::AsFd::as_fd(&dev));
                return Err(loop_err("LOOP_SET_STATUS64", &path, file, io_err(e)));
            }
            tracing::info!(file = %file.display(), device = %path.display(), fd = dev.as_raw_fd(), "attached loop device");
            return Ok(path);
        }
        Err(last.expect("at least one attempt"))
    }

    /// Detaches every device the file backs, each as [`detach_within`] does.
    pub fn detach_all(&self, wait: Duration) -> Result<()> {
        for d in devices_of(&self.path)? {
            detach_within(&d.device, wait)?;
        }
        Ok(())
    }
}

/// Attaches `file` ([`BackingFile::attach`] under the file's lock).
pub fn attach(file: &Path) -> Result<PathBuf> {
    BackingFile::lock(file)?.attach()
}

/// Detaches a loop device and waits (up to [`DETACH_WAIT`]) until the kernel has released it.
pub fn detach(device: &Path) -> Result<()> {
    detach_within(device, DETACH_WAIT)
}

/// Detaches a loop device (`LOOP_CLR_FD`), then waits until the kernel has released it, which it does once
/// the last opener closes it. Fails with [`Error::LoopBusy`] if it is still bound after `wait` (mounted, or
/// held open): the detach stays pending and happens when the holder lets go. Idempotent: a device that does
/// not exist or is not bound is success.
pub fn detach_within(device: &Path, wait: Duration) -> Result<()> {
    let before = device_number(device).and_then(bound);
    {
        let dev = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(device) {
            Ok(f) => f,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENXIO)) => return Ok(()),
            Err(e) => return Err(loop_err("open", device, Path::new(""), e)),
        };
        match sys::clr_fd(std::os::fd::AsFd::as_fd(&dev)) {
            Ok(()) | Err(nix::errno::Errno::ENXIO) => {}
            Err(e) => return Err(loop_err("LOOP_CLR_FD", device, Path::new(""), io_err(e))),
        }
        // Closed here: if nobody else holds the device, this close releases it.
    }
    match before {
        Some(d) => wait_released(&d, wait),
        None => Ok(()),
    }
}

/// Detaches every device `file` backs, waiting for each as [`detach`] does. Idempotent.
pub fn detach_file(file: &Path) -> Result<()> {
    for d in devices_of(file)? {
        detach(&d.device)?;
    }
    Ok(())
}

/// Waits until `d` is no longer bound to its backing file.
fn wait_released(d: &LoopDevice, wait: Duration) -> Result<()> {
    let n = device_number(&d.device).unwrap_or(u32::MAX);
    let start = Instant::now();
    loop {
        match bound(n) {
            Some(now) if now.backing_file == d.backing_file => {}
            _ => return Ok(()),
        }
        if start.elapsed() >= wait {
            return Err(Error::LoopBusy { device: d.device.clone(), file: d.backing_file.clone(), waited: wait });
        }
        std::thread::sleep(RELEASE_POLL);
    }
}

/// Makes the device pick up a new size of its backing file (after the file grew), as `losetup -c` does.
pub fn refresh_capacity(device: &Path) -> Result<()> {
    let dev = open_device(device, Path::new(""))?;
    sys::set_capacity(std::os::fd::AsFd::as_fd(&dev))
        .map_err(|e| loop_err("LOOP_SET_CAPACITY", device, Path::new(""), io_err(e)))
}

/// The backing file name recorded for `device` (as given at attach time), if attached.
pub fn backing_file(device: &Path) -> Result<Option<PathBuf>> {
    let name = device.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let sys = PathBuf::from(format!("/sys/block/{name}/loop/backing_file"));
    match std::fs::read_to_string(&sys) {
        Ok(t) => Ok(Some(PathBuf::from(t.trim_end_matches('\n')))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::ReadFile { path: sys, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_info64_matches_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
    }

    #[test]
    fn detach_of_a_missing_device_is_success() {
        detach(Path::new("/dev/loop-kvol-does-not-exist")).unwrap();
    }
}
