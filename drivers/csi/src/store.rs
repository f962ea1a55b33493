//! The driver's state: one small JSON file per volume and per snapshot beside the backend's data,
//! written atomically (temp file, fsync, rename). Together with the subvolumes/files themselves this is
//! the whole state, so a restarted driver knows everything a running one did.
//!
//! Layout under the pool:
//! ```text
//! volumes/<volume-id>[.img]          backend data (btrfs subvolume or loop file)
//! snapshots/<snapshot-id>[.img]
//! meta/volumes/<volume-id>.json      VolumeMeta
//! meta/snapshots/<snapshot-id>.json  SnapshotMeta
//! meta/nodes/<node-id>/<volume-id>.json  NodeRecord (what this node staged/published, with which args)
//! ```
//! Ids are derived from the CO's name (`v`/`s` + 32 hex digits of sha256(name)), which makes
//! CreateVolume/CreateSnapshot idempotent by name without an index, across restarts.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Where a volume's content came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContentSource {
    /// Restored from this snapshot.
    Snapshot(String),
    /// Cloned from this volume.
    Volume(String),
}

/// How a volume is published to a node (ControllerPublishVolume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControllerPublication {
    /// Published read-only.
    pub readonly: bool,
    /// Block (true) or mount access.
    pub block: bool,
    /// Access mode, as the csi enum value.
    pub mode: i32,
}

/// A volume, as the controller knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMeta {
    /// The plugin-generated id.
    pub id: String,
    /// The CO's name (idempotency key).
    pub name: String,
    /// Current capacity.
    pub capacity_bytes: u64,
    /// Whether some requested capability was block access.
    pub block: bool,
    /// The content source, if any.
    pub source: Option<ContentSource>,
    /// CreateVolume parameters, to decide compatibility of a repeated call.
    pub parameters: BTreeMap<String, String>,
    /// Controller publications by node id.
    #[serde(default)]
    pub published: BTreeMap<String, ControllerPublication>,
}

/// A snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotMeta {
    /// The plugin-generated id.
    pub id: String,
    /// The CO's name.
    pub name: String,
    /// The volume it was cut from.
    pub source_volume_id: String,
    /// Capacity of the source when cut (the minimum size to restore it).
    pub size_bytes: u64,
    /// Seconds since the epoch when cut.
    pub created_secs: i64,
    /// Nanoseconds part.
    pub created_nanos: i32,
}

/// What a node did with a volume: its staging and its publications, with the arguments used, so a
/// repeated call can be told apart from an incompatible one. Always checked against the mount table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    /// The staging, if staged.
    pub staged: Option<Staging>,
    /// Publications by target path.
    #[serde(default)]
    pub published: BTreeMap<PathBuf, Publication>,
}

/// Arguments of a NodeStageVolume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Staging {
    /// staging_target_path.
    pub path: PathBuf,
    /// Block access.
    pub block: bool,
    /// File-system type actually mounted (empty for block).
    pub fs_type: String,
    /// mount_flags as given.
    pub mount_flags: Vec<String>,
}

/// Arguments of a NodePublishVolume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Publication {
    /// Block access.
    pub block: bool,
    /// Read-only.
    pub readonly: bool,
    /// mount_flags as given.
    pub mount_flags: Vec<String>,
    /// Access mode (csi enum value).
    pub mode: i32,
}

/// The volume id for a CreateVolume name.
pub fn volume_id_for(name: &str) -> String {
    format!("v{}", &hex::encode(Sha256::digest(name.as_bytes()))[..32])
}

/// The snapshot id for a CreateSnapshot name.
pub fn snapshot_id_for(name: &str) -> String {
    format!("s{}", &hex::encode(Sha256::digest(name.as_bytes()))[..32])
}

/// True if `id` has the shape of an id this driver generates with `prefix`; anything else cannot
/// exist, and must never be used in a path.
pub fn is_own_id(id: &str, prefix: char) -> bool {
    id.len() == 33
        && id.starts_with(prefix)
        && id[1..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The metadata store under `<pool>/meta`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    node_dir: PathBuf,
}

impl Store {
    /// Opens (creating) the store for `pool`, with node records for `node_id`.
    pub fn open(pool: &Path, node_id: &str) -> Result<Self> {
        let root = pool.join("meta");
        let node_dir = root.join("nodes").join(node_id);
        for dir in [root.join("volumes"), root.join("snapshots"), node_dir.clone()] {
            std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
        }
        Ok(Store { root, node_dir })
    }

    fn volume_path(&self, id: &str) -> PathBuf {
        self.root.join("volumes").join(format!("{id}.json"))
    }

    fn snapshot_path(&self, id: &str) -> PathBuf {
        self.root.join("snapshots").join(format!("{id}.json"))
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.node_dir.join(format!("{id}.json"))
    }

    /// The volume's metadata, or None if there is no such volume.
    pub fn volume(&self, id: &str) -> Result<Option<VolumeMeta>> {
        if !is_own_id(id, 'v') {
            return Ok(None);
        }
        read_json(&self.volume_path(id))
    }

    /// Writes the volume's metadata atomically.
    pub fn put_volume(&self, meta: &VolumeMeta) -> Result<()> {
        write_json(&self.volume_path(&meta.id), meta, Durability::Fsync)
    }

    /// Removes the volume's metadata; already gone is success.
    pub fn remove_volume(&self, id: &str) -> Result<()> {
        remove(&self.volume_path(id))
    }

    /// All volumes, sorted by id.
    pub fn volumes(&self) -> Result<Vec<VolumeMeta>> {
        list(&self.root.join("volumes"))
    }

    /// The snapshot's metadata, or None.
    pub fn snapshot(&self, id: &str) -> Result<Option<SnapshotMeta>> {
        if !is_own_id(id, 's') {
            return Ok(None);
        }
        read_json(&self.snapshot_path(id))
    }

    /// Writes the snapshot's metadata atomically.
    pub fn put_snapshot(&self, meta: &SnapshotMeta) -> Result<()> {
        write_json(&self.snapshot_path(&meta.id), meta, Durability::Fsync)
    }

    /// Removes the snapshot's metadata; already gone is success.
    pub fn remove_snapshot(&self, id: &str) -> Result<()> {
        remove(&self.snapshot_path(id))
    }

    /// All snapshots, sorted by id.
    pub fn snapshots(&self) -> Result<Vec<SnapshotMeta>> {
        list(&self.root.join("snapshots"))
    }

    /// This node's record for the volume (empty if none).
    ///
    /// A record that does not parse counts as none (with a warning): records are written without
    /// fsync (see [`Store::put_record`]), so a power loss can leave one empty or torn, and then every
    /// mount it described is gone too. Callers check the mounts themselves and adopt what they find.
    pub fn record(&self, id: &str) -> Result<NodeRecord> {
        match read_json(&self.record_path(id)) {
            Ok(record) => Ok(record.unwrap_or_default()),
            Err(Error::Metadata { path, source }) => {
                tracing::warn!(path = %path.display(), error = %source, "ignoring an unreadable node record");
                Ok(NodeRecord::default())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes this node's record; an empty record is removed.
    ///
    /// Not fsynced: swapping in a complete new file keeps it whole across a driver crash, and after a
    /// power loss the mounts it describes are gone too (every reader checks the mounts first, and
    /// [`Store::record`] ignores a torn record). This keeps NodePublish/NodeUnpublish free of disk
    /// flushes (an fsync costs ~3 ms on a loop-backed btrfs).
    pub fn put_record(&self, id: &str, record: &NodeRecord) -> Result<()> {
        if record.staged.is_none() && record.published.is_empty() {
            remove(&self.record_path(id))
        } else {
            write_json(&self.record_path(id), record, Durability::Swap)
        }
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|source| Error::Metadata { path: path.to_owned(), source })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", path)(e)),
    }
}

/// How hard [`write_json`] works to keep a write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Atomic against a process crash: a reader sees the old or the new file, never half of one.
    /// Not against power loss, after which the file may be empty.
    Swap,
    /// Also against power loss (fsync of the file and its directory).
    Fsync,
}

/// Writes `value` to `path` atomically: a reader sees the old or the new file, never half of one.
fn write_json<T: Serialize>(path: &Path, value: &T, durability: Durability) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).expect("metadata serializes");
    let dir = path.parent().expect("metadata paths have a parent");
    let tmp = dir.join(format!(".{}.tmp", path.file_name().expect("file name").to_string_lossy()));
    if durability == Durability::Swap {
        return swap_in(&tmp, path, &bytes);
    }
    let mut file = std::fs::File::create(&tmp).map_err(Error::io("creating", &tmp))?;
    file.write_all(&bytes).map_err(Error::io("writing", &tmp))?;
    file.sync_all().map_err(Error::io("syncing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io("renaming into place", path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Puts `bytes` at `path` through the fresh file `tmp`, exchanged with the old file
/// (`renameat2(RENAME_EXCHANGE)`) and then unlinked.
///
/// Why not truncate-and-rename: ext4 (`auto_da_alloc`) and btrfs write a file's data out before a
/// rename replaces a non-empty file, and ext4 also when a non-empty file is truncated. On a busy disk
/// that made one small write cost ~75 µs at the median and milliseconds at p90 (ext4), against ~15 µs
/// for create + exchange + unlink, which replace nothing and truncate nothing.
fn swap_in(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    use nix::errno::Errno;

    let create = || std::fs::OpenOptions::new().write(true).create_new(true).open(tmp);
    let mut file = match create() {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Left by a crash between the exchange and the unlink below.
            remove(tmp)?;
            create().map_err(Error::io("creating", tmp))?
        }
        Err(e) => return Err(Error::io("creating", tmp)(e)),
    };
    file.write_all(bytes).map_err(Error::io("writing", tmp))?;
    drop(file);
    match exchange(tmp, path) {
        // `tmp` now holds the old content.
        Ok(()) => remove(tmp),
        // No old file to exchange with (first write), or a file system without exchange: a plain
        // rename is as atomic, and replaces nothing or flushes as before.
        Err(Errno::ENOENT | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
            std::fs::rename(tmp, path).map_err(Error::io("renaming into place", path))
        }
        Err(e) => Err(Error::io("exchanging into place", path)(e.into())),
    }
}

/// `renameat2(RENAME_EXCHANGE)`: `a` and `b` swap places atomically; both must exist.
#[cfg(target_env = "gnu")]
fn exchange(a: &Path, b: &Path) -> nix::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE)
}

/// nix offers `renameat2` with glibc only; elsewhere [`swap_in`] falls back to a plain rename.
#[cfg(not(target_env = "gnu"))]
fn exchange(_: &Path, _: &Path) -> nix::Result<()> {
    Err(nix::errno::Errno::ENOSYS)
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", path)(e)),
    }
}

fn list<T: DeserializeOwned>(dir: &Path) -> Result<Vec<T>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io("listing", dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for path in names {
        if let Some(v) = read_json(&path)? {
            out.push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_per_name_and_recognisable() {
        let a = volume_id_for("pvc-1");
        assert_eq!(a, volume_id_for("pvc-1"));
        assert_ne!(a, volume_id_for("pvc-2"));
        assert!(is_own_id(&a, 'v'));
        assert!(!is_own_id(&a, 's'));
        assert!(!is_own_id("v../../etc", 'v'));
        assert!(is_own_id(&snapshot_id_for("snap"), 's'));
    }

    #[test]
    fn metadata_round_trips_and_lists_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "node-a").unwrap();
        let mut metas: Vec<VolumeMeta> = ["b", "a", "c"]
            .iter()
            .map(|n| VolumeMeta {
                id: volume_id_for(n),
                name: (*n).into(),
                capacity_bytes: 1 << 20,
                block: false,
                source: None,
                parameters: BTreeMap::new(),
                published: BTreeMap::new(),
            })
            .collect();
        for m in &metas {
            store.put_volume(m).unwrap();
        }
        metas.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(store.volumes().unwrap(), metas);
        assert_eq!(store.volume(&metas[0].id).unwrap().as_ref(), Some(&metas[0]));
        store.remove_volume(&metas[0].id).unwrap();
        store.remove_volume(&metas[0].id).unwrap();
        assert_eq!(store.volume(&metas[0].id).unwrap(), None);
        assert_eq!(store.record("vx").unwrap(), NodeRecord::default());
    }

    #[test]
    fn node_records_are_swapped_in_whole_and_a_torn_one_counts_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "node-a").unwrap();
        let id = volume_id_for("pvc");
        let mut record = NodeRecord {
            staged: Some(Staging { path: "/st".into(), block: false, fs_type: "ext4".into(), mount_flags: vec![] }),
            published: BTreeMap::new(),
        };
        store.put_record(&id, &record).unwrap();
        assert_eq!(store.record(&id).unwrap(), record);
        record.published.insert(
            "/t".into(),
            Publication { block: false, readonly: true, mount_flags: vec!["noatime".into()], mode: 1 },
        );
        // A leftover temp file from a crash is replaced, not appended to.
        let tmp = store.node_dir.join(format!(".{id}.json.tmp"));
        std::fs::write(&tmp, b"{ leftover").unwrap();
        store.put_record(&id, &record).unwrap();
        assert_eq!(store.record(&id).unwrap(), record);
        let names: Vec<_> = std::fs::read_dir(&store.node_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(format!("{id}.json"))], "no temp file is left");
        // What a power loss can leave behind.
        std::fs::write(store.record_path(&id), b"").unwrap();
        assert_eq!(store.record(&id).unwrap(), NodeRecord::default());
        store.put_record(&id, &NodeRecord::default()).unwrap();
        assert!(!store.record_path(&id).exists());
    }
}
