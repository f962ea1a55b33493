//! Loop devices: a regular file attached as a block device (`/dev/loopN`), through the loop ioctls.
//!
//! Attach is idempotent (a file already backing a device returns that device) and serialized per backing
//! file with `flock`, so two agents attaching the same file do not get two devices.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{io_err, Error, Result};

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

/// The loop device currently backed by `file`, if any (matched by device and inode, not by name).
pub fn find_by_backing_file(file: &Path) -> Result<Option<PathBuf>> {
    let meta = std::fs::metadata(file).map_err(|source| Error::Stat { path: file.to_path_buf(), source })?;
    let rd = match std::fs::read_dir("/sys/block") {
        Ok(rd) => rd,
        Err(source) => return Err(Error::ReadDir { path: "/sys/block".into(), source }),
    };
    let mut numbers: Vec<u32> =
        rd.flatten().filter_map(|e| e.file_name().to_str()?.strip_prefix("loop")?.parse().ok()).collect();
    numbers.sort_unstable();
    for n in numbers {
        // Only attached devices have loop/backing_file.
        if !Path::new(&format!("/sys/block/loop{n}/loop/backing_file")).exists() {
            continue;
        }
        let dev = ensure_node(n)?;
        let Ok(f) = File::open(&dev) else { continue };
        let Ok(info) = sys::get_status(std::os::fd::AsFd::as_fd(&f)) else { continue };
        if info.lo_inode == meta.ino() && info.lo_device == meta.dev() {
            return Ok(Some(dev));
        }
    }
    Ok(None)
}

/// Attaches `file` to a free loop device and returns its path (`/dev/loopN`). Idempotent: if `file` already
/// backs a device, that device is returned.
pub fn attach(file: &Path) -> Result<PathBuf> {
    let backing = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(file)
        .map_err(|e| loop_err("open backing file", Path::new(LOOP_CONTROL), file, e))?;
    // Serialize attachers of this file (in this and other processes) so the check below stays true.
    let backing = Flock::lock(backing, FlockArg::LockExclusive)
        .map_err(|(_, e)| loop_err("flock backing file", Path::new(LOOP_CONTROL), file, io_err(e)))?;
    if let Some(dev) = find_by_backing_file(file)? {
        tracing::debug!(file = %file.display(), device = %dev.display(), "already attached");
        return Ok(dev);
    }
    let control = File::open(LOOP_CONTROL).map_err(|e| loop_err("open", Path::new(LOOP_CONTROL), file, e))?;
    let mut last = None;
    for _ in 0..ATTACH_ATTEMPTS {
        let n = sys::get_free(std::os::fd::AsFd::as_fd(&control))
            .map_err(|e| loop_err("LOOP_CTL_GET_FREE", Path::new(LOOP_CONTROL), file, io_err(e)))?;
        let path = ensure_node(n)?;
        let dev = open_device(&path, file)?;
        match sys::set_fd(std::os::fd::AsFd::as_fd(&dev), std::os::fd::AsFd::as_fd(&*backing)) {
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

/// Detaches a loop device. Idempotent: a device that does not exist or is not attached is success.
/// Fails with `EBUSY` while the device is mounted.
pub fn detach(device: &Path) -> Result<()> {
    let dev = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(device) {
        Ok(f) => f,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENXIO)) => return Ok(()),
        Err(e) => return Err(loop_err("open", device, Path::new(""), e)),
    };
    match sys::clr_fd(std::os::fd::AsFd::as_fd(&dev)) {
        Ok(()) | Err(nix::errno::Errno::ENXIO) => Ok(()),
        Err(e) => Err(loop_err("LOOP_CLR_FD", device, Path::new(""), io_err(e))),
    }
}

/// Detaches whatever device `file` backs, if any. Idempotent.
pub fn detach_file(file: &Path) -> Result<()> {
    match find_by_backing_file(file)? {
        Some(dev) => detach(&dev),
        None => Ok(()),
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
