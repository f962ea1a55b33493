//! `kvol-flex install --vendor V --driver D --dir DIR [--wait]`: puts this binary at
//! `DIR/V~D/D` the way the seeds' DaemonSet script does: copy to `DIR/V~D/.D` (a dot name,
//! which kubelet's prober ignores), make it executable, then rename over `D`, so kubelet never
//! runs a half-written driver. An identical driver already in place is left untouched (no
//! inotify event, no re-probe). `--wait` then sleeps until killed, as a DaemonSet container
//! must.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kvol_flex::discovery::{escape_qualified_name, is_ignored};
use kvol_flex::DriverStatus;

use crate::error::{Error, Result};
use crate::{Reply, DRIVERS};

const USAGE: &str = "kvol-flex install --vendor V --driver {nfs|loop} --dir DIR [--wait]";

/// Parses the flags and installs. The bool asks the caller to wait after printing.
pub fn run(args: &[String]) -> (Result<Reply>, bool) {
    let mut vendor = None;
    let mut driver = None;
    let mut dir = None;
    let mut wait = false;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--vendor" => &mut vendor,
            "--driver" => &mut driver,
            "--dir" => &mut dir,
            "--wait" => {
                wait = true;
                continue;
            }
            other => return (Err(Error::Usage(format!("{USAGE}: unknown argument {other:?}"))), false),
        };
        match it.next() {
            Some(value) => *slot = Some(value.clone()),
            None => return (Err(Error::Usage(format!("{USAGE}: {flag} needs a value"))), false),
        }
    }
    let (Some(vendor), Some(driver), Some(dir)) = (vendor, driver, dir) else {
        return (Err(Error::Usage(USAGE.into())), false);
    };
    (install(&vendor, &driver, Path::new(&dir)), wait)
}

fn install(vendor: &str, driver: &str, dir: &Path) -> Result<Reply> {
    if !DRIVERS.contains(&driver) {
        return Err(Error::Usage(format!("{USAGE}: unknown driver {driver:?}")));
    }
    if vendor.is_empty() || is_ignored(vendor) || vendor.contains(['/', '~']) {
        return Err(Error::Usage(format!("{USAGE}: vendor {vendor:?} must be a name without '/' or '~'")));
    }
    let source = std::env::current_exe().map_err(|source| Error::Io {
        step: "find own executable",
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    let driver_dir = dir.join(escape_qualified_name(&format!("{vendor}/{driver}")));
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(&driver_dir).map_err(|source| Error::Io {
        step: "create driver directory",
        path: driver_dir.clone(),
        source,
    })?;
    let target = driver_dir.join(driver);
    if same_contents(&source, &target) {
        return Ok(Reply::Done(DriverStatus {
            message: format!("{} is already installed", target.display()),
            ..DriverStatus::success()
        }));
    }
    let tmp = driver_dir.join(format!(".{driver}"));
    let copy = || -> std::io::Result<()> {
        std::fs::copy(&source, &tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &target)
    };
    copy().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io { step: "install driver", path: target.clone(), source }
    })?;
    Ok(Reply::Done(DriverStatus { message: format!("installed {}", target.display()), ..DriverStatus::success() }))
}

fn same_contents(a: &Path, b: &Path) -> bool {
    let executable = std::fs::metadata(b).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
    executable && matches!((std::fs::read(a), std::fs::read(b)), (Ok(x), Ok(y)) if x == y)
}

/// Sleeps until the process is killed (a DaemonSet's container must keep running).
pub fn wait_forever() -> ! {
    loop {
        std::thread::park();
    }
}
