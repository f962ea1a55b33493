//! NodeGetVolumeStats for a published CSI volume (kubelet's `MetricsCsi`), for the agent's volume stats.

use std::path::Path;
use std::time::Duration;

use kvol_csi::v1::{volume_usage::Unit, NodeGetVolumeStatsRequest};

use super::client::{get_capabilities, get_volume_stats};
use super::drivers::CsiDrivers;
use super::names::{self, VolumeData};
use super::EPHEMERAL;
use crate::error::Result;

/// A volume's usage as its driver reports it; a unit the driver did not report stays `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeStats {
    /// Total bytes.
    pub capacity_bytes: Option<i64>,
    /// Bytes in use.
    pub used_bytes: Option<i64>,
    /// Bytes available.
    pub available_bytes: Option<i64>,
    /// Total inodes.
    pub inodes: Option<i64>,
    /// Inodes in use.
    pub inodes_used: Option<i64>,
    /// Inodes free.
    pub inodes_free: Option<i64>,
    /// VOLUME_CONDITION: `Some(message)` when the driver reports the volume abnormal.
    pub abnormal: Option<String>,
}

/// NodeGetVolumeStats for the volume the pod `pod_uid` has under `spec_name` (its driver and handle are read
/// from the `vol_data.json` beside `<root>/pods/<uid>/volumes/kubernetes.io~csi/<spec_name>/mount`, or for a
/// raw block volume from `volumeDevices/<spec_name>/data`, asked at the pod's publish file).
/// `Ok(None)` when the volume is not published there, or its driver lacks GET_VOLUME_STATS. Async: call it
/// from the agent's runtime.
pub async fn volume_stats(
    drivers: &CsiDrivers,
    root: &Path,
    pod_uid: &str,
    spec_name: &str,
    timeout: Duration,
) -> Result<Option<VolumeStats>> {
    let mount = names::pod_mount_path(root, pod_uid, spec_name);
    let (data, target, block) = match VolumeData::load(mount.parent().expect("the mount path has a parent"))? {
        Some(data) => (data, mount, false),
        None => {
            // A raw block volume: asked at the pod's publish file, as kubelet's block metrics do.
            let publish = names::block_publish_path(root, spec_name, pod_uid);
            if std::fs::symlink_metadata(&publish).is_err() {
                return Ok(None);
            }
            match VolumeData::load(&names::block_data_dir(root, spec_name))? {
                Some(data) => (data, publish, true),
                None => return Ok(None),
            }
        }
    };
    let channel = drivers.channel(&data.driver_name)?;
    let caps = match drivers.cached_capabilities(&data.driver_name) {
        Some(caps) => caps,
        None => {
            let caps = get_capabilities(channel.clone(), &data.volume_handle, timeout).await?;
            drivers.cache_capabilities(&data.driver_name, caps);
            caps
        }
    };
    if !caps.volume_stats {
        return Ok(None);
    }
    let staging = if !caps.stage_unstage || data.volume_lifecycle_mode.as_deref() == Some(EPHEMERAL) {
        String::new()
    } else if block {
        names::block_staging_path(root, spec_name).to_string_lossy().into_owned()
    } else {
        names::device_mount_path(root, &data.driver_name, &data.volume_handle).to_string_lossy().into_owned()
    };
    let request = NodeGetVolumeStatsRequest {
        volume_id: data.volume_handle.clone(),
        volume_path: target.to_string_lossy().into_owned(),
        staging_target_path: staging,
    };
    let response = get_volume_stats(channel, request, timeout).await?;
    let mut stats = VolumeStats::default();
    for usage in &response.usage {
        match Unit::try_from(usage.unit) {
            Ok(Unit::Bytes) => {
                stats.capacity_bytes = Some(usage.total);
                stats.used_bytes = Some(usage.used);
                stats.available_bytes = Some(usage.available);
            }
            Ok(Unit::Inodes) => {
                stats.inodes = Some(usage.total);
                stats.inodes_used = Some(usage.used);
                stats.inodes_free = Some(usage.available);
            }
            _ => tracing::debug!(unit = usage.unit, "unknown unit in NodeGetVolumeStats"),
        }
    }
    stats.abnormal = response.volume_condition.filter(|c| c.abnormal).map(|c| c.message);
    Ok(Some(stats))
}
