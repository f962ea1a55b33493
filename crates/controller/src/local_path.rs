//! The built-in `kvol.io/local-path` provisioner: one directory per volume under a base directory on this node,
//! `<base>/<pv name>`, served to pods as a hostPath volume whose PV node affinity pins it to the node.
//!
//! Capacity: on btrfs the directory is a subvolume with a qgroup limit of the requested size (enforced by the
//! kernel); elsewhere nothing can limit a directory on this kernel (no ext4/xfs project quotas), and the PV
//! says so in `kvol.io/capacity-enforcement: none` with the reason. StorageClass parameter
//! `archiveOnDelete: "true"` renames the directory to `archived-<pv name>` on Delete instead of removing it.

use crate::error::{Error, Result};
use crate::provision::{ProvisionOptions, ProvisionedVolume, Provisioner, VolumeState};
use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume,
    PersistentVolumeSpec, VolumeNodeAffinity,
};
use kube::ResourceExt;
use kvol_api::names::{
    ANN_ARCHIVE_ON_DELETE, ANN_CAPACITY_ENFORCEMENT, ANN_CAPACITY_NOT_ENFORCED_REASON, LABEL_HOSTNAME,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The provisioner's name in StorageClasses.
pub const LOCAL_PATH_PROVISIONER: &str = "kvol.io/local-path";

/// The StorageClass parameters local-path understands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalPathParameters {
    /// Rename instead of delete on Delete reclaim.
    pub archive_on_delete: bool,
}

/// Parameter keys.
enum Key {
    ArchiveOnDelete,
}

impl Key {
    fn parse(key: &str) -> Option<Key> {
        match key {
            "archiveOnDelete" => Some(Key::ArchiveOnDelete),
            _ => None,
        }
    }
}

impl TryFrom<&BTreeMap<String, String>> for LocalPathParameters {
    type Error = (String, String);

    fn try_from(map: &BTreeMap<String, String>) -> std::result::Result<Self, Self::Error> {
        let mut params = LocalPathParameters::default();
        for (key, value) in map {
            match Key::parse(key) {
                Some(Key::ArchiveOnDelete) => {
                    params.archive_on_delete = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err((key.clone(), format!("{value:?} is not \"true\" or \"false\""))),
                    }
                }
                None => return Err((key.clone(), "unknown parameter (known: archiveOnDelete)".into())),
            }
        }
        Ok(params)
    }
}

/// The local-path provisioner of one node.
#[derive(Debug, Clone)]
pub struct LocalPathProvisioner {
    base: PathBuf,
    node_name: String,
}

/// How a directory's size is limited.
enum Enforcement {
    BtrfsQgroup,
    None(String),
}

fn run(cmd: &mut Command, path: &Path) -> Result<()> {
    let out =
        cmd.output().map_err(|source| Error::Io { action: "running btrfs for", path: path.to_path_buf(), source })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Provision(format!("{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr).trim())))
}

fn is_btrfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC)
}

/// A btrfs subvolume's root directory always has inode 256.
fn is_btrfs_subvolume(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.ino() == 256) && is_btrfs(path)
}

fn filesystem_name(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else { return "unknown".into() };
    let mut best: Option<(usize, String)> = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else { continue };
        let (Some(mount_point), Some(fstype)) = (fields.get(4), fields.get(sep + 1)) else { continue };
        if path.starts_with(mount_point) && best.as_ref().is_none_or(|(len, _)| mount_point.len() >= *len) {
            best = Some((mount_point.len(), fstype.to_string()));
        }
    }
    best.map(|(_, t)| t).unwrap_or_else(|| "unknown".into())
}

impl LocalPathProvisioner {
    /// A provisioner making directories under `base` on node `node_name`.
    pub fn new(base: impl Into<PathBuf>, node_name: impl Into<String>) -> Self {
        LocalPathProvisioner { base: base.into(), node_name: node_name.into() }
    }

    /// The directory of a volume.
    pub fn volume_dir(&self, pv_name: &str) -> PathBuf {
        self.base.join(pv_name)
    }

    /// The mark of a volume being provisioned: `<base>/.<pv>.provisioning`, made durably before the
    /// volume's directory and removed once its PV exists. A directory with a mark and neither a PV nor a
    /// claim was abandoned by a crash and is the provisioner's to delete; one without a mark never is.
    fn provisioning_mark(&self, pv_name: &str) -> PathBuf {
        self.base.join(format!(".{pv_name}.provisioning"))
    }

    fn sync_base(&self) -> Result<()> {
        std::fs::File::open(&self.base).and_then(|d| d.sync_all()).map_err(|source| Error::Io {
            action: "syncing",
            path: self.base.clone(),
            source,
        })
    }

    /// Marks `pv_name` in flight, unless its directory already exists without a mark (a volume whose PV
    /// existed at some point: never the collector's).
    fn mark_provisioning(&self, pv_name: &str) -> Result<()> {
        let mark = self.provisioning_mark(pv_name);
        if self.volume_dir(pv_name).exists() && !mark.exists() {
            return Ok(());
        }
        std::fs::File::create(&mark).and_then(|f| f.sync_all()).map_err(|source| Error::Io {
            action: "creating",
            path: mark.clone(),
            source,
        })?;
        self.sync_base()
    }

    fn clear_mark(&self, pv_name: &str) -> Result<()> {
        let mark = self.provisioning_mark(pv_name);
        match std::fs::remove_file(&mark) {
            Ok(()) => self.sync_base(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io { action: "removing", path: mark, source }),
        }
    }

    /// Deletes marked volumes that `state` says nothing wants; clears the mark of those with a PV.
    fn collect_abandoned_blocking(&self, state: &(dyn Fn(&str) -> VolumeState + Send + Sync)) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.base) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(Error::Io { action: "reading", path: self.base.clone(), source }),
        };
        let mut deleted = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some(pv_name) = file_name.strip_prefix('.').and_then(|n| n.strip_suffix(".provisioning")) else {
                continue;
            };
            if pv_name.is_empty() || pv_name.contains('/') {
                continue;
            }
            match state(pv_name) {
                VolumeState::HasVolume => {
                    self.clear_mark(pv_name)?;
                    continue;
                }
                VolumeState::HasClaim => continue,
                VolumeState::Gone => {}
            }
            self.remove_volume_dir(&self.volume_dir(pv_name))?;
            self.clear_mark(pv_name)?;
            deleted.push(pv_name.to_string());
        }
        Ok(deleted)
    }

    /// Removes a volume directory (a btrfs subvolume or a plain tree); gone already is success.
    fn remove_volume_dir(&self, dir: &Path) -> Result<()> {
        if std::fs::symlink_metadata(dir).is_err() {
            return Ok(());
        }
        if is_btrfs_subvolume(dir) {
            return run(Command::new("btrfs").args(["subvolume", "delete"]).arg(dir), dir);
        }
        // std's remove_dir_all does not follow symlinks (openat/unlinkat based).
        std::fs::remove_dir_all(dir).map_err(|source| Error::Io { action: "removing", path: dir.to_path_buf(), source })
    }

    /// Make the directory (idempotent) and limit its size where the filesystem can.
    fn make_dir(&self, dir: &Path, bytes: u64) -> Result<Enforcement> {
        std::fs::create_dir_all(&self.base).map_err(|source| Error::Io {
            action: "creating base directory",
            path: self.base.clone(),
            source,
        })?;
        let pv_name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.mark_provisioning(&pv_name)?;
        if is_btrfs(&self.base) {
            if !dir.exists() {
                run(Command::new("btrfs").args(["subvolume", "create"]).arg(dir), dir)?;
            }
            if is_btrfs_subvolume(dir) {
                // Quotas must be on for a limit; enabling is idempotent.
                run(Command::new("btrfs").args(["quota", "enable"]).arg(&self.base), &self.base)?;
                run(Command::new("btrfs").args(["qgroup", "limit", &bytes.to_string()]).arg(dir), dir)?;
                set_mode(dir)?;
                return Ok(Enforcement::BtrfsQgroup);
            }
        }
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            action: "creating",
            path: dir.to_path_buf(),
            source,
        })?;
        set_mode(dir)?;
        let fs = filesystem_name(dir);
        Ok(Enforcement::None(format!(
            "{fs} under {} cannot limit a directory's size here (only btrfs qgroups can on this kernel)",
            self.base.display()
        )))
    }

    fn provision_blocking(&self, options: &ProvisionOptions) -> Result<ProvisionedVolume> {
        let class = options.class.name_any();
        let params = LocalPathParameters::try_from(&options.class.parameters.clone().unwrap_or_default())
            .map_err(|(key, message)| Error::Parameter { class: class.clone(), key, message })?;
        let node = options.selected_node_name.clone().unwrap_or_else(|| self.node_name.clone());
        if node != self.node_name {
            return Err(Error::Provision(format!(
                "{LOCAL_PATH_PROVISIONER} runs on node {:?} and cannot make a volume on node {node:?}",
                self.node_name
            )));
        }
        let requested = kvol_api::quantity::parse(&options.capacity)
            .map_err(|e| Error::Provision(format!("requested size {:?}: {e}", options.capacity.0)))?;
        let bytes = u64::try_from(requested.value().max(0)).unwrap_or(u64::MAX);
        let dir = self.volume_dir(&options.pv_name);
        let enforcement = self.make_dir(&dir, bytes)?;
        let hostname = options
            .selected_node
            .as_ref()
            .and_then(|n| n.labels().get(LABEL_HOSTNAME).cloned())
            .unwrap_or_else(|| node.clone());
        let mut annotations = BTreeMap::new();
        match enforcement {
            Enforcement::BtrfsQgroup => {
                annotations.insert(ANN_CAPACITY_ENFORCEMENT.to_string(), "btrfs-qgroup".to_string());
            }
            Enforcement::None(reason) => {
                annotations.insert(ANN_CAPACITY_ENFORCEMENT.to_string(), "none".to_string());
                annotations.insert(ANN_CAPACITY_NOT_ENFORCED_REASON.to_string(), reason);
            }
        }
        if params.archive_on_delete {
            annotations.insert(ANN_ARCHIVE_ON_DELETE.to_string(), "true".to_string());
        }
        Ok(ProvisionedVolume {
            spec: PersistentVolumeSpec {
                host_path: Some(HostPathVolumeSource {
                    path: dir.display().to_string(),
                    type_: Some("DirectoryOrCreate".to_string()),
                }),
                ..Default::default()
            },
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: LABEL_HOSTNAME.to_string(),
                            operator: "In".to_string(),
                            values: Some(vec![hostname]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            annotations,
        })
    }

    fn delete_blocking(&self, volume: &PersistentVolume) -> Result<()> {
        let name = volume.name_any();
        let dir = self.volume_dir(&name);
        // Only ever the directory this provisioner made for this PV, whatever the PV's spec says now.
        let spec_path = volume.spec.as_ref().and_then(|s| s.host_path.as_ref()).map(|h| PathBuf::from(&h.path));
        if spec_path.as_deref() != Some(dir.as_path()) {
            return Err(Error::Provision(format!(
                "PV {name} does not point at {} and is not deleted by {LOCAL_PATH_PROVISIONER}",
                dir.display()
            )));
        }
        if std::fs::symlink_metadata(&dir).is_err() {
            return self.clear_mark(&name); // already gone
        }
        if volume.annotations().get(ANN_ARCHIVE_ON_DELETE).map(String::as_str) == Some("true") {
            let archived = self.base.join(format!("archived-{name}"));
            std::fs::rename(&dir, &archived).map_err(|source| Error::Io {
                action: "archiving",
                path: dir.clone(),
                source,
            })?;
            return self.clear_mark(&name);
        }
        self.remove_volume_dir(&dir)?;
        self.clear_mark(&name)
    }
}

fn set_mode(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Pods run as any user; local-path-provisioner makes its directories world-writable too.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).map_err(|source| Error::Io {
        action: "setting mode of",
        path: dir.to_path_buf(),
        source,
    })
}

impl Provisioner for LocalPathProvisioner {
    fn name(&self) -> &str {
        LOCAL_PATH_PROVISIONER
    }

    fn provision<'a>(&'a self, options: &'a ProvisionOptions) -> BoxFuture<'a, Result<ProvisionedVolume>> {
        let me = self.clone();
        let options = options.clone();
        async move {
            tokio::task::spawn_blocking(move || me.provision_blocking(&options))
                .await
                .map_err(|e| Error::Provision(format!("provisioning task failed: {e}")))?
        }
        .boxed()
    }

    fn supports_mount_options(&self) -> bool {
        false // hostPath volumes take no mount options
    }

    fn volume_created<'a>(&'a self, pv_name: &'a str) -> BoxFuture<'a, Result<()>> {
        let me = self.clone();
        let pv_name = pv_name.to_string();
        async move {
            tokio::task::spawn_blocking(move || me.clear_mark(&pv_name))
                .await
                .map_err(|e| Error::Provision(format!("clearing the provisioning mark failed: {e}")))?
        }
        .boxed()
    }

    fn collect_abandoned<'a>(
        &'a self,
        state: &'a (dyn Fn(&str) -> VolumeState + Send + Sync),
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        // The check is cheap and local: run it here rather than move the closure to another thread.
        async move { self.collect_abandoned_blocking(state) }.boxed()
    }

    fn delete<'a>(&'a self, volume: &'a PersistentVolume) -> BoxFuture<'a, Result<()>> {
        let me = self.clone();
        let volume = volume.clone();
        async move {
            tokio::task::spawn_blocking(move || me.delete_blocking(&volume))
                .await
                .map_err(|e| Error::Provision(format!("deleting task failed: {e}")))?
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_archive_on_delete_and_refuse_unknown_keys() {
        let map = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(LocalPathParameters::try_from(&map("archiveOnDelete", "true")).unwrap().archive_on_delete);
        assert!(!LocalPathParameters::try_from(&BTreeMap::new()).unwrap().archive_on_delete);
        assert_eq!(LocalPathParameters::try_from(&map("archiveOnDelete", "yes")).unwrap_err().0, "archiveOnDelete");
        assert_eq!(LocalPathParameters::try_from(&map("nodePath", "/x")).unwrap_err().0, "nodePath");
    }

    #[test]
    fn delete_refuses_a_pv_pointing_outside_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let p = LocalPathProvisioner::new(dir.path(), "n1");
        let mut pv = PersistentVolume::default();
        pv.metadata.name = Some("pvc-1".into());
        pv.spec = Some(PersistentVolumeSpec {
            host_path: Some(HostPathVolumeSource { path: "/etc".into(), type_: None }),
            ..Default::default()
        });
        assert!(p.delete_blocking(&pv).is_err());
    }

    #[test]
    fn a_crash_abandoned_volume_is_collected_and_a_committed_one_never_is() {
        let dir = tempfile::tempdir().unwrap();
        let p = LocalPathProvisioner::new(dir.path().join("base"), "n1");
        for name in ["pvc-abandoned", "pvc-committed", "pvc-inflight", "pvc-hasclaim"] {
            p.make_dir(&p.volume_dir(name), 1 << 20).unwrap();
            std::fs::write(p.volume_dir(name).join("data"), name).unwrap();
            assert!(p.provisioning_mark(name).exists(), "{name} is marked while in flight");
        }
        p.clear_mark("pvc-committed").unwrap();
        // A directory that was never marked (made by an older kvol, or committed long ago) is never touched.
        std::fs::create_dir_all(p.volume_dir("pvc-old")).unwrap();
        let live = |name: &str| match name {
            "pvc-inflight" | "pvc-hasclaim" => VolumeState::HasClaim,
            _ => VolumeState::Gone,
        };
        let deleted = p.collect_abandoned_blocking(&live).unwrap();
        assert_eq!(deleted, vec!["pvc-abandoned".to_string()]);
        assert!(!p.volume_dir("pvc-abandoned").exists());
        assert!(!p.provisioning_mark("pvc-abandoned").exists());
        for kept in ["pvc-committed", "pvc-inflight", "pvc-hasclaim"] {
            assert!(p.volume_dir(kept).join("data").exists(), "{kept} kept");
        }
        assert!(p.volume_dir("pvc-old").exists());
        // A marked volume whose PV exists is committed: its mark goes, the volume stays.
        p.collect_abandoned_blocking(&|n: &str| {
            if n == "pvc-inflight" {
                VolumeState::HasVolume
            } else {
                VolumeState::HasClaim
            }
        })
        .unwrap();
        assert!(!p.provisioning_mark("pvc-inflight").exists());
        assert!(p.volume_dir("pvc-inflight").join("data").exists());
        // Nothing wants the unmarked ones now, but without a mark they are not the collector's.
        assert!(p
            .collect_abandoned_blocking(&|_: &str| VolumeState::Gone)
            .unwrap()
            .iter()
            .all(|n| n != "pvc-committed" && n != "pvc-inflight"));
        assert!(p.volume_dir("pvc-committed").exists());
        assert!(p.volume_dir("pvc-inflight").exists());
        // Making the directory again for a committed volume does not mark it.
        p.make_dir(&p.volume_dir("pvc-committed"), 1 << 20).unwrap();
        assert!(!p.provisioning_mark("pvc-committed").exists());
    }
}
