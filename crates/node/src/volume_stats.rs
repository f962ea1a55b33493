//! Volume stats of CSI volumes (kubelet's `MetricsCsi` behind `/stats/summary`): every period, each
//! published CSI volume of a desired pod is asked NodeGetVolumeStats. The latest figures are kept by the
//! manager ([`crate::manager::Manager::volume_stats`]) and logged, and a volume its driver reports abnormal
//! (VOLUME_CONDITION) gets kubelet's `VolumeConditionAbnormal` event on the pod.

use std::sync::Arc;
use std::time::Duration;

use kvol_volume::plugins::csi::{volume_stats, CsiDrivers, CSI_PLUGIN_NAME};

use crate::actual::MountState;
use crate::manager::{Manager, PodEvent};

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
                .filter(|(_, v)| v.id.plugin == CSI_PLUGIN_NAME)
                .filter(|(_, v)| actual.get(&v.id).is_some_and(|a| a.state == MountState::Mounted))
                .map(|(pod, v)| (pod, v.id.clone(), v.outer_name.clone()))
                .collect()
        };
        let root = manager.config.root_dir.clone();
        let mut seen = std::collections::HashSet::new();
        for (pod, id, outer_name) in volumes {
            seen.insert(id.clone());
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
                    manager.volume_stats.lock().insert(id, stats);
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(volume = %id, "NodeGetVolumeStats: {e}"),
            }
        }
        manager.volume_stats.lock().retain(|id, _| seen.contains(id));
    }
}
