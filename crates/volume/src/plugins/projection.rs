//! What configMap and secret volumes share (kubelet's `MakePayload` and the wrapped emptyDir): building the
//! payload from an object's data and `items`, and writing it with the atomic writer.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::KeyToPath;
use kvol_mount::{AtomicWriter, FileProjection, Mounter as HostMounter};

use crate::error::{Error, Result};
use crate::plugin::MounterArgs;

/// `ConfigMapVolumeSourceDefaultMode` = `SecretVolumeSourceDefaultMode`.
pub const DEFAULT_MODE: i32 = 0o644;

/// Which object type a projection reads, for kubelet's messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    /// `configmap` / `secret` in "… references non-existent … key".
    pub kind: &'static str,
    /// `config` / `secret` in the same message.
    pub what: &'static str,
}

/// kubelet's `MakePayload`: every key under its own name with `default_mode` when `items` is empty, else
/// the listed keys at their paths with their modes. Missing keys are skipped when `optional`.
pub(crate) fn make_payload(
    kind: Kind,
    items: &[KeyToPath],
    data: &BTreeMap<String, Vec<u8>>,
    default_mode: i32,
    optional: bool,
) -> Result<BTreeMap<String, FileProjection>> {
    let mut payload = BTreeMap::new();
    if items.is_empty() {
        for (key, value) in data {
            payload.insert(key.clone(), FileProjection::new(value.clone(), default_mode as u32));
        }
        return Ok(payload);
    }
    for item in items {
        let Some(value) = data.get(&item.key) else {
            if optional {
                continue;
            }
            return Err(Error::KeyNotFound { kind: kind.kind, what: kind.what, key: item.key.clone() });
        };
        let mode = item.mode.unwrap_or(default_mode);
        payload.insert(item.path.clone(), FileProjection::new(value.clone(), mode as u32));
    }
    Ok(payload)
}

/// A projected volume's directory, on disk or on a tmpfs (secrets), written atomically.
pub(crate) struct Projected {
    pub path: PathBuf,
    pub memory: bool,
    pub mounter: Arc<dyn HostMounter>,
    pub log_context: String,
}

impl Projected {
    /// The wrapped emptyDir's set-up: the directory (0777 like emptyDir) and, for secrets, its tmpfs.
    pub fn prepare(&self) -> Result<()> {
        super::make_dirs(&self.path)?;
        if self.memory {
            super::ensure_tmpfs(self.mounter.as_ref(), &self.path, None)?;
        }
        let mode = std::fs::metadata(&self.path).map_err(Error::io("stat", &self.path))?.permissions().mode();
        if mode & 0o7777 != 0o777 {
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o777))
                .map_err(Error::io("chmod", &self.path))?;
        }
        Ok(())
    }

    /// Writes `payload` atomically (a new timestamped directory swapped in by renaming `..data`).
    pub fn write(&self, payload: &BTreeMap<String, FileProjection>, args: &MounterArgs) -> Result<()> {
        let writer = AtomicWriter::new(&self.path, &self.log_context)?.with_fs_group(args.fs_group);
        writer.write(payload)?;
        Ok(())
    }

    /// Unmounts a tmpfs if there is one, then removes the directory.
    pub fn tear_down(&self) -> Result<()> {
        super::tear_down_volume_dir(self.mounter.as_ref(), &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CM: Kind = Kind { kind: "configmap", what: "config" };

    fn data() -> BTreeMap<String, Vec<u8>> {
        [("log_level".to_string(), b"INFO".to_vec()), ("other".to_string(), b"x".to_vec())].into()
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath { key: key.into(), path: path.into(), mode }
    }

    #[test]
    fn without_items_every_key_gets_the_default_mode() {
        let p = make_payload(CM, &[], &data(), 0o600, false).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p.values().all(|f| f.mode == 0o600));
    }

    #[test]
    fn items_select_keys_paths_and_modes() {
        let p = make_payload(CM, &[item("log_level", "conf/level", Some(0o400))], &data(), 0o644, false).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["conf/level"]);
        assert_eq!(p["conf/level"].mode, 0o400);
        assert_eq!(p["conf/level"].data, b"INFO");
    }

    #[test]
    fn a_missing_key_fails_unless_optional() {
        let err = make_payload(CM, &[item("nope", "n", None)], &data(), 0o644, false).unwrap_err();
        assert_eq!(err.to_string(), "configmap references non-existent config key: nope");
        assert!(make_payload(CM, &[item("nope", "n", None)], &data(), 0o644, true).unwrap().is_empty());
    }
}
