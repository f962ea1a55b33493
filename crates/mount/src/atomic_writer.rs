//! Kubernetes' `AtomicWriter` (`pkg/volume/util/atomic_writer.go`): projects a set of files (configMap,
//! secret, downward API, projected volumes) into a directory so that readers see either the old set or
//! the new one, never a mix.
//!
//! Layout: the real files live in a timestamped directory `..YYYY_MM_DD_HH_MM_SS.<random>`; `..data` is a
//! symlink to it; every top-level entry the user sees is a symlink `name -> ..data/name`. An update writes
//! a new timestamped directory, points `..data_tmp` at it and renames `..data_tmp` over `..data` (rename is
//! atomic), then removes what is stale. Names starting with `..` are the writer's own.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rand::Rng;

use crate::error::{Error, Result};
use crate::ownership::{set_volume_ownership, FsGroupChangePolicy};

/// The symlink to the current timestamped directory.
pub const DATA_DIR_NAME: &str = "..data";
/// The symlink renamed over `..data`.
pub const NEW_DATA_DIR_NAME: &str = "..data_tmp";
const MAX_FILE_NAME_LENGTH: usize = 255;
const MAX_PATH_LENGTH: usize = 4096;

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    /// Content.
    pub data: Vec<u8>,
    /// Permission bits, applied exactly (umask does not apply).
    pub mode: u32,
    /// Owner to give the file (projected service-account tokens with `runAsUser`), if any.
    pub fs_user: Option<u32>,
}

impl FileProjection {
    /// A file with `data` and `mode`, owned by the writer.
    pub fn new(data: impl Into<Vec<u8>>, mode: u32) -> Self {
        FileProjection { data: data.into(), mode, fs_user: None }
    }
}

/// Whether a write changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A new timestamped directory was swapped in.
    Written,
    /// The payload matched what is on disk; only the visible links were checked.
    Unchanged,
}

/// Writes payloads atomically into one target directory. Not internally locked: one writer per directory.
#[derive(Debug, Clone)]
pub struct AtomicWriter {
    target_dir: PathBuf,
    log_context: String,
    fs_group: Option<u32>,
}

/// Checks one payload path (`validatePath`): not empty, relative, no `..` element, not starting with
/// `..`, each name ≤ 255 bytes, the whole ≤ 4096 bytes.
pub fn validate_payload_path(path: &str) -> Result<()> {
    let invalid = |reason: String| Err(Error::InvalidPath { path: path.to_string(), reason });
    if path.is_empty() {
        return invalid("must not be empty".into());
    }
    if path.starts_with('/') {
        return invalid("must be a relative path".into());
    }
    if path.len() > MAX_PATH_LENGTH {
        return invalid(format!("must be no more than {MAX_PATH_LENGTH} characters"));
    }
    let items: Vec<&str> = path.split('/').collect();
    for item in &items {
        if *item == ".." {
            return invalid("must not contain '..'".into());
        }
        if item.len() > MAX_FILE_NAME_LENGTH {
            return invalid(format!("filenames must be no more than {MAX_FILE_NAME_LENGTH} characters"));
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return invalid("must not start with '..'".into());
    }
    if path.contains('\0') {
        return invalid("must not contain NUL".into());
    }
    Ok(())
}

/// `filepath.Clean` for a validated relative path: drops `.` and empty components.
fn clean(path: &str) -> String {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl AtomicWriter {
    /// A writer for `target_dir`, which must exist. `log_context` names the volume in logs.
    pub fn new(target_dir: &Path, log_context: &str) -> Result<Self> {
        if !target_dir.is_dir() {
            return Err(Error::NoTargetDir { path: target_dir.to_path_buf() });
        }
        Ok(AtomicWriter { target_dir: target_dir.to_path_buf(), log_context: log_context.to_string(), fs_group: None })
    }

    /// Gives written files and directories the pod's fsGroup (group read, setgid dirs), as kubelet's
    /// `setPerms` hook does with `SetVolumeOwnership` on a read-only volume.
    pub fn with_fs_group(mut self, fs_group: Option<u32>) -> Self {
        self.fs_group = fs_group;
        self
    }

    /// The directory written into.
    pub fn target_dir(&self) -> &Path {
        &self.target_dir
    }

    /// Projects `payload` (relative path → file) into the target directory, atomically. Files absent from
    /// the payload disappear. Idempotent: an identical payload writes nothing but still makes sure every
    /// visible link exists (k8s#121472).
    pub fn write(&self, payload: &BTreeMap<String, FileProjection>) -> Result<WriteOutcome> {
        // (1) validate
        let mut clean_payload = BTreeMap::new();
        for (path, file) in payload {
            validate_payload_path(path)?;
            clean_payload.insert(clean(path), file);
        }
        // (2) the current timestamped dir
        let data_dir = self.target_dir.join(DATA_DIR_NAME);
        let old_ts = match std::fs::read_link(&data_dir) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(Error::ReadFile { path: data_dir, source }),
        };
        let old_ts_path = old_ts.as_ref().map(|t| self.target_dir.join(t));
        // (3) what will be stale, (4) whether anything changed
        let mut to_remove = BTreeSet::new();
        if let Some(old) = &old_ts_path {
            to_remove = self.paths_to_remove(&clean_payload, old)?;
            if to_remove.is_empty() && !self.should_write(&clean_payload, old)? {
                self.create_visible_links(&clean_payload)?;
                self.remove_abandoned(old_ts.as_deref(), None);
                tracing::trace!(context = self.log_context, "no update required");
                return Ok(WriteOutcome::Unchanged);
            }
        }
        // (5) new timestamped dir
        let ts_dir = self.new_timestamp_dir()?;
        let ts_name = ts_dir.file_name().expect("has a name").to_owned();
        let result = (|| {
            // (6) payload (7) permissions
            self.write_payload(&clean_payload, &ts_dir)?;
            if let Some(gid) = self.fs_group {
                set_volume_ownership(&ts_dir, gid, FsGroupChangePolicy::Always, true)?;
            }
            // (8) ..data_tmp -> ts dir; a leftover from a crash is replaced.
            let tmp = self.target_dir.join(NEW_DATA_DIR_NAME);
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&ts_name, &tmp).map_err(|source| Error::Symlink {
                path: tmp.clone(),
                target: PathBuf::from(&ts_name),
                source,
            })?;
            // (9) the atomic swap
            std::fs::rename(&tmp, &data_dir).map_err(|source| {
                let _ = std::fs::remove_file(&tmp);
                Error::Rename { from: tmp.clone(), to: data_dir.clone(), source }
            })
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&ts_dir);
            tracing::warn!(context = self.log_context, error = %e, "atomic write failed");
            return Err(e);
        }
        // (10) visible links, (11) stale visible paths, (12) the old data
        self.create_visible_links(&clean_payload)?;
        self.remove_visible_paths(&to_remove)?;
        if let Some(old) = &old_ts_path {
            match std::fs::remove_dir_all(old) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(Error::Remove { path: old.clone(), source: e });
                }
                _ => {}
            }
        }
        self.remove_abandoned(Some(Path::new(&ts_name)), old_ts.as_deref());
        tracing::debug!(context = self.log_context, dir = %ts_dir.display(), "wrote payload");
        Ok(WriteOutcome::Written)
    }

    /// Paths present in the old data but in no payload path or its parents.
    fn paths_to_remove(&self, payload: &BTreeMap<String, &FileProjection>, old_ts: &Path) -> Result<BTreeSet<String>> {
        let mut old = BTreeSet::new();
        if let Err(e) = collect_relative(old_ts, old_ts, &mut old) {
            if matches!(&e, Error::ReadDir { source, .. } if source.kind() == io::ErrorKind::NotFound) {
                return Ok(BTreeSet::new());
            }
            return Err(e);
        }
        let mut new = BTreeSet::new();
        for p in payload.keys() {
            let mut cur = Some(Path::new(p.as_str()));
            while let Some(c) = cur.filter(|c| !c.as_os_str().is_empty()) {
                new.insert(c.to_string_lossy().into_owned());
                cur = c.parent();
            }
        }
        Ok(old.difference(&new).cloned().collect())
    }

    /// Whether any file's content (or, without fsGroup, its mode or owner) differs from the old data.
    fn should_write(&self, payload: &BTreeMap<String, &FileProjection>, old_ts: &Path) -> Result<bool> {
        for (path, file) in payload {
            let full = old_ts.join(path);
            let meta = match std::fs::symlink_metadata(&full) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
                Err(source) => return Err(Error::Stat { path: full, source }),
            };
            if !meta.is_file() || meta.len() != file.data.len() as u64 {
                return Ok(true);
            }
            // With an fsGroup the mode on disk carries the group bits the writer added.
            if self.fs_group.is_none() && meta.mode() & 0o7777 != file.mode & 0o7777 {
                return Ok(true);
            }
            if file.fs_user.is_some_and(|u| u != meta.uid()) {
                return Ok(true);
            }
            let on_disk = std::fs::read(&full).map_err(|source| Error::ReadFile { path: full.clone(), source })?;
            if on_disk != file.data {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn new_timestamp_dir(&self) -> Result<PathBuf> {
        let stamp = jiff::Timestamp::now().strftime("%Y_%m_%d_%H_%M_%S").to_string();
        let mut rng = rand::rng();
        loop {
            let path = self.target_dir.join(format!("..{stamp}.{}", rng.random::<u32>()));
            match std::fs::DirBuilder::new().mode(0o755).create(&path) {
                Ok(()) => {
                    // 0755 whatever the umask, so group and others can traverse it.
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                        .map_err(|source| Error::Chmod { path: path.clone(), mode: 0o755, source })?;
                    return Ok(path);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(Error::CreateDir { path, source }),
            }
        }
    }

    fn write_payload(&self, payload: &BTreeMap<String, &FileProjection>, dir: &Path) -> Result<()> {
        for (path, file) in payload {
            let full = dir.join(path);
            if let Some(parent) = full.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(|source| Error::CreateDir { path: parent.to_path_buf(), source })?;
            }
            let werr = |source: io::Error| Error::WriteFile { path: full.clone(), source };
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(file.mode & 0o7777)
                .open(&full)
                .map_err(werr)?;
            io::Write::write_all(&mut f, &file.data).map_err(werr)?;
            drop(f);
            // open(2) applied the umask; the mode must be exactly what was asked for.
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(file.mode & 0o7777))
                .map_err(|source| Error::Chmod { path: full.clone(), mode: file.mode, source })?;
            if let Some(uid) = file.fs_user {
                std::os::unix::fs::lchown(&full, Some(uid), None)
                    .map_err(|source| Error::Chown { path: full.clone(), source })?;
            }
        }
        Ok(())
    }

    /// `name -> ..data/name` for every top-level payload entry that has no link yet.
    fn create_visible_links(&self, payload: &BTreeMap<String, &FileProjection>) -> Result<()> {
        let tops: BTreeSet<&str> = payload.keys().map(|p| p.split('/').next().unwrap_or(p)).collect();
        for top in tops {
            let visible = self.target_dir.join(top);
            match std::fs::symlink_metadata(&visible) {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Stat { path: visible, source }),
            }
            let target = Path::new(DATA_DIR_NAME).join(top);
            match std::os::unix::fs::symlink(&target, &visible) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(Error::Symlink { path: visible, target, source: e });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes stale top-level visible entries (nested ones vanish with the old data).
    fn remove_visible_paths(&self, paths: &BTreeSet<String>) -> Result<()> {
        let mut last = Ok(());
        for p in paths.iter().filter(|p| !p.contains('/')) {
            let path = self.target_dir.join(p);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    tracing::warn!(context = self.log_context, path = %path.display(), error = %e, "pruning old visible path");
                    last = Err(Error::Remove { path, source: e });
                }
                _ => {}
            }
        }
        last
    }

    /// Removes timestamped directories left by a crashed write (neither current nor previous).
    fn remove_abandoned(&self, keep: Option<&Path>, also_keep: Option<&Path>) {
        let Ok(rd) = std::fs::read_dir(&self.target_dir) else { return };
        for entry in rd.flatten() {
            let name = entry.file_name();
            let s = name.to_string_lossy();
            let is_ts = s.starts_with("..") && s.len() > 2 && s.as_bytes()[2].is_ascii_digit() && s.contains('.');
            let kept = keep.is_some_and(|k| k.as_os_str() == name) || also_keep.is_some_and(|k| k.as_os_str() == name);
            if is_ts && !kept && entry.file_type().is_ok_and(|t| t.is_dir()) {
                tracing::info!(context = self.log_context, dir = %s, "removing abandoned data dir");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Collects every path under `dir`, relative to `base`, without following symlinks.
fn collect_relative(base: &Path, dir: &Path, out: &mut BTreeSet<String>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|source| Error::ReadDir { path: dir.to_path_buf(), source })?;
    for entry in rd {
        let entry = entry.map_err(|source| Error::ReadDir { path: dir.to_path_buf(), source })?;
        let path = entry.path();
        let rel = path.strip_prefix(base).expect("under base").to_string_lossy().into_owned();
        out.insert(rel);
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_relative(base, &path, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(items: &[(&str, &str, u32)]) -> BTreeMap<String, FileProjection> {
        items.iter().map(|(p, d, m)| (p.to_string(), FileProjection::new(d.as_bytes(), *m))).collect()
    }

    #[test]
    fn validates_payload_paths_like_kubernetes() {
        struct Case {
            path: String,
            ok: bool,
        }
        let long_name = "a".repeat(256);
        let long_path = format!("{}/b", "a/".repeat(2048));
        let cases = [
            Case { path: "foo".into(), ok: true },
            Case { path: "foo/bar/baz".into(), ok: true },
            Case { path: "..foo".into(), ok: false },
            Case { path: "..".into(), ok: false },
            Case { path: "foo/../bar".into(), ok: false },
            Case { path: "/etc/passwd".into(), ok: false },
            Case { path: "".into(), ok: false },
            Case { path: "foo/..bar".into(), ok: true },
            Case { path: "foo..bar".into(), ok: true },
            Case { path: long_name, ok: false },
            Case { path: "a".repeat(255), ok: true },
            Case { path: long_path, ok: false },
        ];
        for c in cases {
            assert_eq!(validate_payload_path(&c.path).is_ok(), c.ok, "{:?}", &c.path[..c.path.len().min(40)]);
        }
    }

    #[test]
    fn writes_the_layout_with_links_and_exact_modes() {
        let d = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(d.path(), "test").unwrap();
        let out = w.write(&payload(&[("log_level", "INFO", 0o600), ("conf/app.yaml", "a: 1", 0o644)])).unwrap();
        assert_eq!(out, WriteOutcome::Written);
        let data = std::fs::read_link(d.path().join("..data")).unwrap();
        let name = data.to_string_lossy().into_owned();
        assert!(name.starts_with(".."), "{name}");
        let stamp = name[2..].split('.').next().unwrap();
        assert_eq!(stamp.len(), "2016_02_01_15_04_05".len(), "{name}");
        assert_eq!(std::fs::read_link(d.path().join("log_level")).unwrap(), Path::new("..data/log_level"));
        assert_eq!(std::fs::read_link(d.path().join("conf")).unwrap(), Path::new("..data/conf"));
        assert_eq!(std::fs::read_to_string(d.path().join("conf/app.yaml")).unwrap(), "a: 1");
        assert_eq!(std::fs::metadata(d.path().join("log_level")).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(std::fs::metadata(d.path().join(&data)).unwrap().mode() & 0o777, 0o755);
    }

    #[test]
    fn an_identical_payload_is_not_rewritten_but_links_are_restored() {
        let d = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(d.path(), "test").unwrap();
        let p = payload(&[("a", "1", 0o644)]);
        w.write(&p).unwrap();
        let before = std::fs::read_link(d.path().join("..data")).unwrap();
        std::fs::remove_file(d.path().join("a")).unwrap();
        assert_eq!(w.write(&p).unwrap(), WriteOutcome::Unchanged);
        assert_eq!(std::fs::read_link(d.path().join("..data")).unwrap(), before);
        assert_eq!(std::fs::read_to_string(d.path().join("a")).unwrap(), "1");
    }

    #[test]
    fn a_mode_change_alone_is_written() {
        let d = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(d.path(), "test").unwrap();
        w.write(&payload(&[("a", "1", 0o644)])).unwrap();
        assert_eq!(w.write(&payload(&[("a", "1", 0o400)])).unwrap(), WriteOutcome::Written);
        assert_eq!(std::fs::metadata(d.path().join("a")).unwrap().mode() & 0o777, 0o400);
    }

    #[test]
    fn removed_keys_disappear_and_old_data_is_removed() {
        let d = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(d.path(), "test").unwrap();
        w.write(&payload(&[("a", "1", 0o644), ("b", "2", 0o644), ("dir/c", "3", 0o644)])).unwrap();
        let old = std::fs::read_link(d.path().join("..data")).unwrap();
        w.write(&payload(&[("a", "1", 0o644)])).unwrap();
        assert!(!d.path().join(&old).exists());
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.retain(|n| !n.starts_with(".."));
        assert_eq!(names, vec!["a"]);
    }

    #[test]
    fn an_invalid_payload_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(d.path(), "test").unwrap();
        let err = w.write(&payload(&[("ok", "1", 0o644), ("../escape", "x", 0o644)])).unwrap_err();
        assert!(matches!(err, Error::InvalidPath { .. }));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn leftovers_of_a_crashed_write_are_cleaned() {
        let d = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(d.path(), "test").unwrap();
        std::fs::create_dir(d.path().join("..2020_01_01_00_00_00.123")).unwrap();
        std::os::unix::fs::symlink("..2020_01_01_00_00_00.123", d.path().join("..data_tmp")).unwrap();
        w.write(&payload(&[("a", "1", 0o644)])).unwrap();
        assert!(!d.path().join("..2020_01_01_00_00_00.123").exists());
        assert!(!d.path().join("..data_tmp").exists());
    }

    #[test]
    fn a_missing_target_dir_is_an_error() {
        assert!(matches!(AtomicWriter::new(Path::new("/nonexistent/kvol"), "x"), Err(Error::NoTargetDir { .. })));
    }
}
