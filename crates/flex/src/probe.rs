//! Dynamic discovery: an inotify watch over the plugin directory (`probe.go`).
//!
//! Events are coalesced per driver directory between two polls, as kubelet's `eventsMap` does:
//! many writes to a driver while it is being installed become one `AddOrUpdate`. Removing the
//! executable or the driver directory gives `Remove`; so does moving them away (kubelet reports
//! a move as an update and then fails `init`). A deleted plugin directory is recreated and
//! watched again. Names starting with `.` are ignored, which hides the atomic installer's
//! temporary `.driver` file until its rename.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use crate::discovery::{executable_name, is_ignored, list_driver_dirs, plugin_name, unescape_qualified_name};
use crate::{Error, Result};

/// What happened to a driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeOp {
    /// The driver appeared or changed: (re-)run `init` and (re-)register it.
    AddOrUpdate,
    /// The driver is gone: unregister it.
    Remove,
}

/// One coalesced change of one driver directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeEvent {
    /// The driver directory name, `vendor~driver`.
    pub dir_name: String,
    /// What to do.
    pub op: ProbeOp,
}

impl ProbeEvent {
    /// `vendor/driver`.
    pub fn driver_name(&self) -> String {
        unescape_qualified_name(&self.dir_name)
    }

    /// `flexvolume-vendor/driver`.
    pub fn plugin_name(&self) -> String {
        plugin_name(&self.driver_name())
    }
}

/// Watches a FlexVolume plugin directory and everything below it.
pub struct PluginDirWatcher {
    dir: PathBuf,
    inotify: Inotify,
    watches: HashMap<WatchDescriptor, PathBuf>,
    pending: BTreeMap<String, ProbeOp>,
}

/// The inotify descriptor (non-blocking), readable when events are queued, for callers that
/// want to wait in poll(2)/epoll rather than call [`PluginDirWatcher::poll`] on a schedule.
/// `poll` itself is one read(2); kubelet drains its events whenever it looks plugins up.
impl std::os::fd::AsFd for PluginDirWatcher {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inotify.as_fd()
    }
}

fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::ATTRIB
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
}

impl PluginDirWatcher {
    /// Creates `dir` (mode 0755) if missing and watches it recursively.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let watch_err = |source| Error::Watch { dir: dir.clone(), source };
        let inotify = Inotify::init().map_err(watch_err)?;
        let mut watcher = PluginDirWatcher { dir, inotify, watches: HashMap::new(), pending: BTreeMap::new() };
        watcher.ensure_dir()?;
        let dir = watcher.dir.clone();
        watcher.watch_recursive(&dir);
        Ok(watcher)
    }

    /// The plugin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every driver directory now present, as `AddOrUpdate` (kubelet's first `probeAll`).
    /// Events queued so far are dropped: this listing supersedes them.
    pub fn probe_all(&mut self) -> Result<Vec<ProbeEvent>> {
        let _ = self.drain();
        self.pending.clear();
        let names = list_driver_dirs(&self.dir).map_err(|source| Error::Watch { dir: self.dir.clone(), source })?;
        Ok(names.into_iter().map(|dir_name| ProbeEvent { dir_name, op: ProbeOp::AddOrUpdate }).collect())
    }

    /// The changes since the last call, one per driver directory, without blocking.
    pub fn poll(&mut self) -> Result<Vec<ProbeEvent>> {
        self.drain()?;
        Ok(std::mem::take(&mut self.pending).into_iter().map(|(dir_name, op)| ProbeEvent { dir_name, op }).collect())
    }

    /// Reads every queued inotify event into `pending`.
    fn drain(&mut self) -> Result<()> {
        let mut buffer = [0u8; 8192];
        loop {
            let events: Vec<(WatchDescriptor, EventMask, Option<std::ffi::OsString>)> =
                match self.inotify.read_events(&mut buffer) {
                    Ok(events) => events.map(|e| (e.wd, e.mask, e.name.map(OsStr::to_owned))).collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                    Err(source) => return Err(Error::Watch { dir: self.dir.clone(), source }),
                };
            if events.is_empty() {
                return Ok(());
            }
            for (wd, mask, name) in events {
                self.handle(wd, mask, name.as_deref())?;
            }
        }
    }

    fn handle(&mut self, wd: WatchDescriptor, mask: EventMask, name: Option<&OsStr>) -> Result<()> {
        if mask.contains(EventMask::Q_OVERFLOW) {
            // Events were lost: every driver may have changed.
            for dir_name in list_driver_dirs(&self.dir).unwrap_or_default() {
                self.pending.insert(dir_name, ProbeOp::AddOrUpdate);
            }
            return Ok(());
        }
        let Some(watched) = self.watches.get(&wd).cloned() else { return Ok(()) };
        if mask.contains(EventMask::IGNORED) {
            self.watches.remove(&wd);
            return Ok(());
        }
        let path = match name {
            Some(name) => watched.join(name),
            None => watched,
        };
        if path.file_name().and_then(OsStr::to_str).is_some_and(is_ignored) {
            return Ok(());
        }
        let removed = mask.intersects(EventMask::DELETE | EventMask::DELETE_SELF);
        let moved_away = mask.intersects(EventMask::MOVED_FROM | EventMask::MOVE_SELF);

        if path == self.dir {
            if removed || moved_away {
                tracing::warn!(dir = %self.dir.display(), "FlexVolume plugin directory removed; recreating it");
                self.ensure_dir()?;
                let dir = self.dir.clone();
                self.watch_recursive(&dir);
            }
            return Ok(());
        }
        if mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) && mask.contains(EventMask::ISDIR) {
            self.watch_recursive(&path);
        }
        let Ok(rel) = path.strip_prefix(&self.dir) else { return Ok(()) };
        let parts: Vec<&OsStr> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s),
                _ => None,
            })
            .collect();
        let Some(dir_name) = parts.first().and_then(|s| s.to_str()) else { return Ok(()) };
        if is_ignored(dir_name) {
            return Ok(());
        }
        let exe = executable_name(&unescape_qualified_name(dir_name)).to_owned();
        let is_driver_dir = parts.len() == 1;
        let is_executable = parts.len() == 2 && parts[1] == OsStr::new(&exe);
        let op = if (removed || moved_away) && (is_driver_dir || is_executable) {
            ProbeOp::Remove
        } else {
            ProbeOp::AddOrUpdate
        };
        // A self event of a driver dir's own watch repeats its parent's event: same result.
        self.pending.insert(dir_name.to_owned(), op);
        Ok(())
    }

    fn ensure_dir(&self) -> Result<()> {
        match std::fs::DirBuilder::new().recursive(true).mode(0o755).create(&self.dir) {
            Ok(()) => Ok(()),
            Err(source) => Err(Error::Watch { dir: self.dir.clone(), source }),
        }
    }

    /// Watches `path` and, unless it is a symlink, every directory below it. Errors are
    /// logged, not returned: a directory removed meanwhile needs no watch.
    fn watch_recursive(&mut self, path: &Path) {
        match self.inotify.watches().add(path, mask()) {
            Ok(wd) => {
                self.watches.insert(wd, path.to_owned());
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "FlexVolume prober: cannot watch");
                return;
            }
        }
        let is_symlink = std::fs::symlink_metadata(path).map(|m| m.file_type().is_symlink()).unwrap_or(true);
        if is_symlink {
            return;
        }
        let Ok(entries) = std::fs::read_dir(path) else { return };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.watch_recursive(&entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn ev(dir_name: &str, op: ProbeOp) -> ProbeEvent {
        ProbeEvent { dir_name: dir_name.to_owned(), op }
    }

    fn install(dir: &Path, dir_name: &str, exe: &str) {
        // The seeds' DaemonSet way: copy to .exe, then rename.
        let d = dir.join(dir_name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!(".{exe}")), "#!/bin/sh\necho '{\"status\":\"Success\"}'\n").unwrap();
        fs::set_permissions(d.join(format!(".{exe}")), fs::Permissions::from_mode(0o755)).unwrap();
        fs::rename(d.join(format!(".{exe}")), d.join(exe)).unwrap();
    }

    #[test]
    fn reports_add_update_and_remove_coalesced_per_driver_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let plugin_dir = tmp.path().join("exec");
        install(&plugin_dir, "k8s~nfs", "nfs");
        let mut w = PluginDirWatcher::new(&plugin_dir).unwrap();
        assert_eq!(w.probe_all().unwrap(), [ev("k8s~nfs", ProbeOp::AddOrUpdate)]);
        assert!(w.poll().unwrap().is_empty());

        install(&plugin_dir, "kvol~loop", "loop");
        fs::write(plugin_dir.join("k8s~nfs/nfs"), "#!/bin/sh\n").unwrap();
        fs::create_dir(plugin_dir.join(".tmp")).unwrap();
        assert_eq!(w.poll().unwrap(), [ev("k8s~nfs", ProbeOp::AddOrUpdate), ev("kvol~loop", ProbeOp::AddOrUpdate)]);

        // A file in a new subdirectory of a driver dir is seen (the subdir got a watch).
        fs::create_dir(plugin_dir.join("kvol~loop/lib")).unwrap();
        assert_eq!(w.poll().unwrap(), [ev("kvol~loop", ProbeOp::AddOrUpdate)]);
        fs::write(plugin_dir.join("kvol~loop/lib/x"), "").unwrap();
        assert_eq!(w.poll().unwrap(), [ev("kvol~loop", ProbeOp::AddOrUpdate)]);

        fs::remove_file(plugin_dir.join("k8s~nfs/nfs")).unwrap();
        assert_eq!(w.poll().unwrap(), [ev("k8s~nfs", ProbeOp::Remove)]);
        fs::remove_dir_all(plugin_dir.join("kvol~loop")).unwrap();
        assert_eq!(w.poll().unwrap(), [ev("kvol~loop", ProbeOp::Remove)]);
        assert_eq!(w.poll().unwrap()[..], []);
        assert_eq!(ev("kvol~loop", ProbeOp::Remove).plugin_name(), "flexvolume-kvol/loop");
    }

    #[test]
    fn a_deleted_plugin_dir_is_recreated_and_watched_again() {
        let tmp = tempfile::tempdir().unwrap();
        let plugin_dir = tmp.path().join("exec");
        let mut w = PluginDirWatcher::new(&plugin_dir).unwrap();
        assert!(plugin_dir.is_dir(), "created on start");
        install(&plugin_dir, "k8s~nfs", "nfs");
        fs::remove_dir_all(&plugin_dir).unwrap();
        let events = w.poll().unwrap();
        assert_eq!(events.last(), Some(&ev("k8s~nfs", ProbeOp::Remove)), "{events:?}");
        assert!(plugin_dir.is_dir(), "recreated");
        install(&plugin_dir, "k8s~nfs", "nfs");
        assert_eq!(w.poll().unwrap(), [ev("k8s~nfs", ProbeOp::AddOrUpdate)]);
    }
}
