//! Volume stats (kubelet's metrics behind `/stats/summary`): every period, each published CSI volume of a
//! desired pod is asked NodeGetVolumeStats (`MetricsCsi`), and the mounted volumes of plugins that want it
//! (FlexVolume drivers with `supportsMetrics`) are measured with statfs (`MetricsStatFS`). The latest figures
//! are kept by the manager ([`crate::manager::Manager::volume_stats`]), served in `/stats/summary` (see
//! [`crate::server`]) and logged, and a volume its CSI
//! driver reports abnormal (VOLUME_CONDITION) gets kubelet's `VolumeConditionAbnormal` event on the pod.

use std::sync::Arc;
use std::time::Duration;

use kvol_volume::plugins::csi::{volume_stats, CsiDrivers, VolumeStats, CSI_PLUGIN_NAME};

use crate::actual::MountState;
use crate::manager::{Manager, PodEvent};

/// A volume's stats and when they were taken.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The figures.
    pub stats: VolumeStats,
    /// When they were taken (the summary's `time`).
    pub time: jiff::Timestamp,
}

impl Measured {
    fn now(stats: VolumeStats) -> Self {
        Measured { stats, time: jiff::Timestamp::now() }
    }
}

/// How long one NodeGetVolumeStats may take.
const STATS_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs until the agent stops.
pub async fn volume_stats_loop(manager: Arc<Manager>, drivers: Arc<CsiDrivers>) {
    loop {
        tokio::time::sleep(manager.config.usage_check_period).await;
        let volumes: Vec<_> = {
            let desired = manager.desired.lock();
            let actual = manager.actual.lock();
            desired
                .pods()
                .flat_map(|p| p.volumes.values().map(move |v| (p.pod_ref.clone(), v)))
                .filter(|(_, v)| v.id.plugin == CSI_PLUGIN_NAME || v.plugin.supports_statfs_metrics())
                .filter_map(|(pod, v)| {
                    let a = actual.get(&v.id).filter(|a| a.state == MountState::Mounted)?;
                    Some((pod, v.id.clone(), v.outer_name.clone(), a.path.clone()))
                })
                .collect()
        };
        let root = manager.config.root_dir.clone();
        let mut seen = std::collections::HashSet::new();
        for (pod, id, outer_name, path) in volumes {
            seen.insert(id.clone());
            if id.plugin != CSI_PLUGIN_NAME {
                match tokio::task::spawn_blocking(move || statfs_stats(&path)).await {
                    Ok(Ok(stats)) => {
                        manager.volume_stats.lock().insert(id, Measured::now(stats));
                    }
                    Ok(Err(e)) => tracing::debug!(volume = %id, "statfs: {e}"),
                    Err(e) => tracing::debug!(volume = %id, "statfs task: {e}"),
                }
                continue;
            }
            match volume_stats(&drivers, &root, &id.pod_uid, &id.spec_name, STATS_TIMEOUT).await {
                Ok(Some(stats)) => {
                    tracing::debug!(volume = %id, capacity = ?stats.capacity_bytes, used = ?stats.used_bytes, inodes_used = ?stats.inodes_used, "volume stats");
                    if let Some(message) = &stats.abnormal {
                        manager.event(PodEvent {
                            pod,
                            type_: "Warning",
                            reason: "VolumeConditionAbnormal",
                            message: format!("Volume {outer_name}: {message}"),
                        });
                    }
                    manager.volume_stats.lock().insert(id, Measured::now(stats));
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(volume = %id, "NodeGetVolumeStats: {e}"),
            }
        }
        manager.volume_stats.lock().retain(|id, _| seen.contains(id));
    }
}

/// kubelet's `MetricsStatFS`: capacity, available and inodes of the file system at `path`; used is
/// capacity minus free.
pub fn statfs_stats(path: &std::path::Path) -> nix::Result<VolumeStats> {
    let st = nix::sys::statvfs::statvfs(path)?;
    let block = st.fragment_size() as i64;
    let capacity = st.blocks() as i64 * block;
    let free = st.blocks_free() as i64 * block;
    let available = st.blocks_available() as i64 * block;
    let inodes = st.files() as i64;
    let inodes_free = st.files_free() as i64;
    Ok(VolumeStats {
        capacity_bytes: Some(capacity),
        used_bytes: Some(capacity - free),
        available_bytes: Some(available),
        inodes: Some(inodes),
        inodes_used: Some(inodes - inodes_free),
        inodes_free: Some(inodes_free),
        abnormal: None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn statfs_stats_of_a_directory_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let s = super::statfs_stats(dir.path()).unwrap();
        let (capacity, used, available) =
            (s.capacity_bytes.unwrap(), s.used_bytes.unwrap(), s.available_bytes.unwrap());
        assert!(capacity > 0 && used >= 0 && available <= capacity - used, "{s:?}");
        assert_eq!(s.inodes.unwrap(), s.inodes_used.unwrap() + s.inodes_free.unwrap());
    }
}
