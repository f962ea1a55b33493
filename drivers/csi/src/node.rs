//! The Node service: stage, publish, unpublish, unstage, stats and expansion on this node.
//!
//! "Already done?" is always answered by the kernel (a `statx` of the path, the mount table where that
//! cannot tell, sysfs for loop devices), with the node record only saying which arguments were used,
//! so that a repeated call with other arguments is told apart (ALREADY_EXISTS) from a retry (OK), also
//! after a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kvol_csi::v1::{
    node_server::Node, node_service_capability, volume_capability::access_mode::Mode, NodeExpandVolumeRequest,
    NodeExpandVolumeResponse, NodeGetCapabilitiesRequest, NodeGetCapabilitiesResponse, NodeGetInfoRequest,
    NodeGetInfoResponse, NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse, NodePublishVolumeRequest,
    NodePublishVolumeResponse, NodeServiceCapability, NodeStageVolumeRequest, NodeStageVolumeResponse,
    NodeUnpublishVolumeRequest, NodeUnpublishVolumeResponse, NodeUnstageVolumeRequest, NodeUnstageVolumeResponse,
};
use tonic::{Request, Response, Status};

use crate::caps::{node_topology, Access};
use crate::driver::{blocking, required, Driver};
use crate::error::{Error, Result};
use crate::mounter::{self, MountOptions};
use crate::mountinfo;
use crate::store::{NodeRecord, Publication, Staging};

/// The Node service.
pub struct NodeService {
    driver: Arc<Driver>,
}

impl NodeService {
    /// A node service over `driver`.
    pub fn new(driver: Arc<Driver>) -> Self {
        NodeService { driver }
    }
}

/// The volume must exist in the pool.
fn volume_exists(driver: &Driver, id: &str) -> Result<crate::store::VolumeMeta> {
    driver.store.volume(id)?.ok_or_else(|| Error::VolumeNotFound { volume_id: id.to_owned() })
}

/// Drops publications whose target is no longer mounted (unmounted behind our back, or a reboot).
fn prune(record: &mut NodeRecord, table: &mountinfo::Table) -> Result<()> {
    let mut gone = Vec::new();
    for target in record.published.keys() {
        if !mountinfo::is_mount_point(target, table)? {
            gone.push(target.clone());
        }
    }
    for target in gone {
        record.published.remove(&target);
    }
    Ok(())
}

/// How many mounts [`unmount_all`] removes from one path before it gives up.
const MAX_STACKED_MOUNTS: usize = 64;

/// Unmounts everything mounted at `target`, which is known to be mounted, the top mount first (a
/// retried publish racing a crash can stack several).
fn unmount_all(target: &Path) -> Result<()> {
    for _ in 0..MAX_STACKED_MOUNTS {
        mounter::unmount(target)?;
        if !mountinfo::is_mount_point(target, &mountinfo::Table::default())? {
            return Ok(());
        }
    }
    Err(Error::Mount {
        op: "unmount (still mounted after repeated unmounts)",
        target: target.to_owned(),
        source: nix::errno::Errno::EBUSY,
    })
}

fn stage(driver: &Driver, id: &str, staging: &Path, access: &Access) -> Result<()> {
    let backend = driver.backend.as_ref();
    let mut record = driver.store.record(id)?;
    let table = mountinfo::Table::default();
    if let Some(s) = record.staged.clone() {
        if backend.is_staged(id, &s.path, s.block, &table)? {
            if s.path != staging {
                return Err(Error::FailedPrecondition(format!(
                    "volume {id} is already staged at {}",
                    s.path.display()
                )));
            }
            let same_fs = access.fs_type.is_empty() || access.fs_type == s.fs_type;
            if s.block == access.block && same_fs && s.mount_flags == access.mount_flags {
                return Ok(());
            }
            return Err(Error::AlreadyExists {
                what: format!("staging of volume {id} at {}", staging.display()),
                reason: format!(
                    "staged with block={} fs_type={:?} mount_flags={:?}",
                    s.block, s.fs_type, s.mount_flags
                ),
            });
        }
        record.staged = None;
    }
    let fs_type = if backend.is_staged(id, staging, access.block, &table)? {
        // Staged before a crash, before the record was written: adopt it.
        if access.block {
            String::new()
        } else {
            mountinfo::mount_at(table.get()?, staging).map(|m| m.fs_type.clone()).unwrap_or_default()
        }
    } else {
        if !access.block && mountinfo::is_mount_point(staging, &table)? {
            return Err(Error::AlreadyExists {
                what: format!("staging path {}", staging.display()),
                reason: "something else is mounted there".into(),
            });
        }
        let opts = MountOptions::parse(&access.mount_flags, access.read_only_mode());
        backend.stage(id, staging, access.block, &access.fs_type, &opts)?
    };
    record.staged = Some(Staging {
        path: staging.to_owned(),
        block: access.block,
        fs_type,
        mount_flags: access.mount_flags.clone(),
    });
    driver.store.put_record(id, &record)
}

fn unstage(driver: &Driver, id: &str, staging: &Path) -> Result<()> {
    let mut record = driver.store.record(id)?;
    let table = mountinfo::Table::default();
    prune(&mut record, &table)?;
    if driver.store.volume(id)?.is_none() && record.staged.is_none() && !mountinfo::is_mount_point(staging, &table)? {
        return Err(Error::VolumeNotFound { volume_id: id.to_owned() });
    }
    // Nothing of this volume is at `staging` when it is staged elsewhere, or when what is mounted
    // there is another volume (csi-sanity's cleanup unstages every volume it made at one path): OK,
    // and the other mount is left alone.
    let staged_elsewhere = match &record.staged {
        Some(s) => s.path != staging && driver.backend.is_staged(id, &s.path, s.block, &table)?,
        None => false,
    };
    let other_mount_here =
        mountinfo::is_mount_point(staging, &table)? && !driver.backend.is_staged(id, staging, false, &table)?;
    if staged_elsewhere || other_mount_here {
        return Ok(());
    }
    if let Some(target) = record.published.keys().next() {
        return Err(Error::FailedPrecondition(format!(
            "volume {id} is still published at {}; NodeUnpublishVolume first",
            target.display()
        )));
    }
    driver.backend.unstage(id, staging)?;
    record.staged = None;
    driver.store.put_record(id, &record)
}

fn publish(driver: &Driver, id: &str, staging: &Path, target: &Path, access: &Access, readonly: bool) -> Result<()> {
    let mut record = driver.store.record(id)?;
    let table = mountinfo::Table::default();
    let staged = match &record.staged {
        Some(s) if s.path == staging && driver.backend.is_staged(id, &s.path, s.block, &table)? => s.clone(),
        _ => {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is not staged at {}; NodeStageVolume first",
                staging.display()
            )))
        }
    };
    if staged.block != access.block {
        return Err(Error::FailedPrecondition(format!(
            "volume {id} is staged for {} access",
            if staged.block { "block" } else { "mount" }
        )));
    }
    let readonly = readonly || access.read_only_mode();
    let wanted = Publication {
        block: access.block,
        readonly,
        mount_flags: access.mount_flags.clone(),
        mode: access.mode as i32,
    };
    prune(&mut record, &table)?;
    if mountinfo::is_mount_point(target, &table)? {
        return match record.published.get(target) {
            Some(p) if *p == wanted => Ok(()),
            Some(p) => Err(Error::AlreadyExists {
                what: format!("publication of volume {id} at {}", target.display()),
                reason: format!(
                    "published with readonly={} mount_flags={:?} mode={}",
                    p.readonly, p.mount_flags, p.mode
                ),
            }),
            None => {
                // Mounted before a crash, before the record was written: adopt it if it is this volume.
                // Rare, and the mount's options are needed: ask the mount table.
                let mounts = table.get()?;
                let existing = mountinfo::mount_at(mounts, target);
                let source = mountinfo::mount_at(mounts, staging);
                let ours = access.block
                    || source
                        .zip(existing)
                        .is_some_and(|(s, e)| s.major == e.major && s.minor == e.minor && s.root == e.root);
                if ours && existing.is_some_and(|e| e.is_read_only() == readonly) {
                    record.published.insert(target.to_owned(), wanted);
                    driver.store.put_record(id, &record)
                } else {
                    Err(Error::AlreadyExists {
                        what: format!("target {}", target.display()),
                        reason: "something else is mounted there".into(),
                    })
                }
            }
        };
    }
    let single_writer = |mode: i32| mode == Mode::SingleNodeSingleWriter as i32;
    if let Some(other) =
        record.published.iter().find(|(t, p)| *t != target && (single_writer(p.mode) || single_writer(wanted.mode)))
    {
        return Err(Error::FailedPrecondition(format!(
            "volume {id} is SINGLE_NODE_SINGLE_WRITER and already published at {}",
            other.0.display()
        )));
    }
    let source = if access.block {
        driver
            .backend
            .block_device(id)?
            .ok_or_else(|| Error::FailedPrecondition(format!("volume {id} has no block device attached")))?
    } else {
        staging.to_owned()
    };
    let created = create_target(target, access.block)?;
    let opts = MountOptions::parse(&access.mount_flags, readonly);
    if let Err(e) = mounter::bind(&source, target, &opts) {
        if created {
            let _ = remove_target(target);
        }
        return Err(e);
    }
    record.published.insert(target.to_owned(), wanted);
    driver.store.put_record(id, &record)
}

/// Creates the target (a directory, or a file for block); returns whether it was created.
fn create_target(target: &Path, block: bool) -> Result<bool> {
    if target.exists() {
        return Ok(false);
    }
    if block {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io("creating", parent))?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(target)
            .map_err(Error::io("creating", target))?;
    } else {
        std::fs::create_dir_all(target).map_err(Error::io("creating", target))?;
    }
    Ok(true)
}

/// Removes the (unmounted) target the driver created: an empty directory or a file. Never recursive.
fn remove_target(target: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(target) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("stat", target)(e)),
    };
    let result = if meta.is_dir() { std::fs::remove_dir(target) } else { std::fs::remove_file(target) };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", target)(e)),
    }
}

fn unpublish(driver: &Driver, id: &str, target: &Path) -> Result<()> {
    let mut record = driver.store.record(id)?;
    let mounted = mountinfo::is_mount_point(target, &mountinfo::Table::default())?;
    if !mounted && !record.published.contains_key(target) && driver.store.volume(id)?.is_none() {
        return Err(Error::VolumeNotFound { volume_id: id.to_owned() });
    }
    if mounted {
        unmount_all(target)?;
    }
    remove_target(target)?;
    record.published.remove(target);
    driver.store.put_record(id, &record)
}

fn is_block_path(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        req: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        let req = req.into_inner();
        let id = required(&req.volume_id, "volume_id")?.to_owned();
        let staging = PathBuf::from(required(&req.staging_target_path, "staging_target_path")?);
        let access = Access::parse_required(req.volume_capability.as_ref(), "volume_capability")?;
        let _guard = self.driver.begin(&[&id]).await?;
        volume_exists(&self.driver, &id)?;
        if let Some(reason) = access.unsupported_by(self.driver.backend.as_ref()) {
            return Err(Error::FailedPrecondition(format!("exceeds capabilities: {reason}")).into());
        }
        let driver = self.driver.clone();
        blocking(move || stage(&driver, &id, &staging, &access)).await?;
        Ok(Response::new(NodeStageVolumeResponse {}))
    }

    async fn node_unstage_volume(
        &self,
        req: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        let req = req.into_inner();
        let id = required(&req.volume_id, "volume_id")?.to_owned();
        let staging = PathBuf::from(required(&req.staging_target_path, "staging_target_path")?);
        let _guard = self.driver.begin(&[&id]).await?;
        let driver = self.driver.clone();
        blocking(move || unstage(&driver, &id, &staging)).await?;
        Ok(Response::new(NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(
        &self,
        req: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let req = req.into_inner();
        let id = required(&req.volume_id, "volume_id")?.to_owned();
        let target = PathBuf::from(required(&req.target_path, "target_path")?);
        let access = Access::parse_required(req.volume_capability.as_ref(), "volume_capability")?;
        if req.staging_target_path.is_empty() {
            return Err(
                Error::FailedPrecondition("staging_target_path is not set; this plugin stages volumes".into()).into()
            );
        }
        let staging = PathBuf::from(&req.staging_target_path);
        let _guard = self.driver.begin(&[&id]).await?;
        volume_exists(&self.driver, &id)?;
        if let Some(reason) = access.unsupported_by(self.driver.backend.as_ref()) {
            return Err(Error::FailedPrecondition(format!("exceeds capabilities: {reason}")).into());
        }
        let driver = self.driver.clone();
        blocking(move || publish(&driver, &id, &staging, &target, &access, req.readonly)).await?;
        Ok(Response::new(NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        req: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let req = req.into_inner();
        let id = required(&req.volume_id, "volume_id")?.to_owned();
        let target = PathBuf::from(required(&req.target_path, "target_path")?);
        let _guard = self.driver.begin(&[&id]).await?;
        let driver = self.driver.clone();
        blocking(move || unpublish(&driver, &id, &target)).await?;
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        req: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        let req = req.into_inner();
        let id = required(&req.volume_id, "volume_id")?.to_owned();
        let path = PathBuf::from(required(&req.volume_path, "volume_path")?);
        let driver = self.driver.clone();
        let usage = blocking(move || {
            let meta = volume_exists(&driver, &id)?;
            if !path.exists() {
                return Err(Error::VolumeNotFound { volume_id: format!("{id} at {}", path.display()) });
            }
            let record = driver.store.record(&id)?;
            let block = record.published.get(&path).map(|p| p.block).unwrap_or_else(|| {
                record.staged.as_ref().is_some_and(|s| s.block) || is_block_path(&path) || path.is_file()
            });
            driver.backend.usage(&id, &path, block, meta.capacity_bytes)
        })
        .await?;
        Ok(Response::new(NodeGetVolumeStatsResponse { usage, volume_condition: None }))
    }

    async fn node_expand_volume(
        &self,
        req: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        let req = req.into_inner();
        let id = required(&req.volume_id, "volume_id")?.to_owned();
        let path = PathBuf::from(required(&req.volume_path, "volume_path")?);
        let _guard = self.driver.begin(&[&id]).await?;
        let driver = self.driver.clone();
        let capacity = blocking(move || {
            let meta = volume_exists(&driver, &id)?;
            if !path.exists() {
                return Err(Error::VolumeNotFound { volume_id: format!("{id} at {}", path.display()) });
            }
            if let Some(range) = &req.capacity_range {
                if range.required_bytes > 0 && range.required_bytes as u64 > meta.capacity_bytes {
                    return Err(Error::CapacityOutOfRange(format!(
                        "volume {id} has {} bytes; ControllerExpandVolume to {} first",
                        meta.capacity_bytes, range.required_bytes
                    )));
                }
            }
            let record = driver.store.record(&id)?;
            let block =
                record.staged.as_ref().map(|s| s.block).unwrap_or_else(|| is_block_path(&path) || path.is_file());
            let fs_mount = if block {
                None
            } else {
                Some(record.staged.as_ref().map(|s| s.path.clone()).unwrap_or_else(|| path.clone()))
            };
            driver.backend.node_expand(&id, fs_mount.as_deref(), meta.capacity_bytes)
        })
        .await?;
        Ok(Response::new(NodeExpandVolumeResponse { capacity_bytes: capacity as i64 }))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        use node_service_capability::{rpc::Type, Rpc, Type as CapType};
        let capabilities =
            [Type::StageUnstageVolume, Type::GetVolumeStats, Type::ExpandVolume, Type::SingleNodeMultiWriter]
                .into_iter()
                .map(|t| NodeServiceCapability { r#type: Some(CapType::Rpc(Rpc { r#type: t as i32 })) })
                .collect();
        Ok(Response::new(NodeGetCapabilitiesResponse { capabilities }))
    }

    async fn node_get_info(&self, _: Request<NodeGetInfoRequest>) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.driver.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: Some(node_topology(&self.driver.node_id)),
        }))
    }
}
