//! fsGroup ownership of a volume (kubelet's `SetVolumeOwnership`, `pkg/volume/volume_linux.go`).

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// When ownership is changed (`pod.spec.securityContext.fsGroupChangePolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsGroupChangePolicy {
    /// Walk the whole volume every time it is mounted (the default).
    #[default]
    Always,
    /// Skip the walk when the root already has the group, setgid and the group permissions.
    OnRootMismatch,
}

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// Gives `fs_group` ownership of everything under `dir`: group set to `fs_group`, group read (and write
/// unless `read_only`), setgid and group search on directories, group execute on files the owner can
/// execute. Symlinks get their group changed but their targets' modes are left alone. The root is changed
/// last, so an interrupted walk is redone by `OnRootMismatch`. Idempotent.
pub fn set_volume_ownership(dir: &Path, fs_group: u32, policy: FsGroupChangePolicy, read_only: bool) -> Result<()> {
    if policy == FsGroupChangePolicy::OnRootMismatch && !requires_change(dir, fs_group, read_only) {
        tracing::debug!(path = %dir.display(), "root already owned by fsGroup, skipping");
        return Ok(());
    }
    walk_post_order(dir, &mut |path, meta| change(path, meta, fs_group, read_only))
}

/// Kubelet's `requiresPermissionChange`: the root lacks the group, the permission bits or setgid.
fn requires_change(root: &Path, fs_group: u32, read_only: bool) -> bool {
    let Ok(meta) = std::fs::metadata(root) else { return true };
    if meta.gid() != fs_group || !meta.is_dir() {
        return true;
    }
    let want = if read_only { RO_MASK } else { RW_MASK } | EXEC_MASK;
    let mode = meta.mode();
    mode & want != want || mode & SETGID == 0
}

fn change(path: &Path, meta: &std::fs::Metadata, fs_group: u32, read_only: bool) -> Result<()> {
    if meta.gid() != fs_group {
        std::os::unix::fs::lchown(path, None, Some(fs_group))
            .map_err(|source| Error::Chown { path: path.to_path_buf(), source })?;
    }
    if meta.file_type().is_symlink() {
        // chmod would follow the link and change the target's mode, which the volume plugin chose.
        return Ok(());
    }
    let mut mask = if read_only { RO_MASK } else { RW_MASK };
    if meta.is_dir() {
        mask |= SETGID | EXEC_MASK;
    } else if meta.mode() & 0o100 != 0 {
        mask |= EXEC_MASK;
    }
    let mode = meta.mode() & 0o7777;
    // chown clears setuid/setgid on files; re-reading is not needed since we set the mode we want.
    let new = mode | mask;
    if new != mode || meta.gid() != fs_group {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(new)).map_err(|source| Error::Chmod {
            path: path.to_path_buf(),
            mode: new,
            source,
        })?;
    }
    Ok(())
}

/// Visits children before their directory, without following symlinks.
fn walk_post_order(path: &Path, f: &mut dyn FnMut(&Path, &std::fs::Metadata) -> Result<()>) -> Result<()> {
    let meta = std::fs::symlink_metadata(path).map_err(|source| Error::Stat { path: path.to_path_buf(), source })?;
    if meta.is_dir() {
        let rd = std::fs::read_dir(path).map_err(|source| Error::ReadDir { path: path.to_path_buf(), source })?;
        for entry in rd {
            let entry = entry.map_err(|source| Error::ReadDir { path: path.to_path_buf(), source })?;
            match walk_post_order(&entry.path(), f) {
                // Removed while walking (an atomic writer swapping its data): nothing left to own.
                Err(Error::Stat { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
    }
    f(path, &meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requires_change_checks_group_bits_and_setgid() {
        let d = tempfile::tempdir().unwrap();
        let gid = std::fs::metadata(d.path()).unwrap().gid();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o2770)).unwrap();
        assert!(!requires_change(d.path(), gid, false));
        assert!(requires_change(d.path(), gid + 1, false));
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o770)).unwrap();
        assert!(requires_change(d.path(), gid, false), "no setgid");
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o2750)).unwrap();
        assert!(requires_change(d.path(), gid, false), "no group write");
        assert!(!requires_change(d.path(), gid, true), "read-only needs no group write");
    }
}
