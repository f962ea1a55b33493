//! The CSI drivers registered on this node (kubelet's `csiDrivers` store): what the plugin watcher learnt
//! at registration, shared with the plugin that calls the drivers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use kvol_csi::v1::node_service_capability::{self, rpc::Type as NodeCap};
use tonic::transport::Channel;

use super::error::CsiError;

/// What a driver told at registration (GetInfo and NodeGetInfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverInfo {
    /// The driver's name (`csi.kvol.io`), as its registration socket's GetInfo said.
    pub name: String,
    /// Its CSI endpoint (`unix:///var/lib/kubelet/plugins/csi.kvol.io/csi.sock` or a bare path).
    pub endpoint: String,
    /// The highest CSI version it supports, as `(major, minor, patch)`.
    pub version: (u64, u64, u64),
    /// NodeGetInfo's `node_id`.
    pub node_id: String,
    /// NodeGetInfo's `max_volumes_per_node` (0: no limit).
    pub max_volumes_per_node: i64,
    /// NodeGetInfo's `accessible_topology.segments`.
    pub topology: BTreeMap<String, String>,
}

/// The node service capabilities the plugin acts on, from NodeGetCapabilities (asked once per
/// registration: kubelet asks on every call, but a driver's capabilities do not change while it runs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCapabilities {
    /// STAGE_UNSTAGE_VOLUME: NodeStageVolume before NodePublishVolume.
    pub stage_unstage: bool,
    /// GET_VOLUME_STATS: NodeGetVolumeStats.
    pub volume_stats: bool,
    /// EXPAND_VOLUME: NodeExpandVolume.
    pub expand: bool,
    /// SINGLE_NODE_MULTI_WRITER: the finer single-node access modes.
    pub single_node_multi_writer: bool,
    /// VOLUME_MOUNT_GROUP: the driver applies fsGroup itself.
    pub volume_mount_group: bool,
}

impl NodeCapabilities {
    /// The capabilities in a NodeGetCapabilities answer; unknown ones are ignored.
    pub fn from_response(response: &kvol_csi::v1::NodeGetCapabilitiesResponse) -> NodeCapabilities {
        let mut caps = NodeCapabilities::default();
        for cap in &response.capabilities {
            let Some(node_service_capability::Type::Rpc(rpc)) = &cap.r#type else { continue };
            match NodeCap::try_from(rpc.r#type) {
                Ok(NodeCap::StageUnstageVolume) => caps.stage_unstage = true,
                Ok(NodeCap::GetVolumeStats) => caps.volume_stats = true,
                Ok(NodeCap::ExpandVolume) => caps.expand = true,
                Ok(NodeCap::SingleNodeMultiWriter) => caps.single_node_multi_writer = true,
                Ok(NodeCap::VolumeMountGroup) => caps.volume_mount_group = true,
                _ => {}
            }
        }
        caps
    }
}

struct Entry {
    info: DriverInfo,
    channel: Channel,
    capabilities: Option<NodeCapabilities>,
}

/// A registration or unregistration, for whoever follows them (the agent's CSINode updater, logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationEvent {
    /// A driver was registered (or registered again, with a newer version or a new endpoint).
    Registered(DriverInfo),
    /// A driver's registration socket went away.
    Unregistered {
        /// The driver's name.
        name: String,
    },
}

/// The registered drivers by name, each with a lazily connected gRPC channel that reconnects when the
/// driver restarts. Shared (`Arc`) between the plugin watcher, which registers, and [`super::CsiPlugin`].
#[derive(Default)]
pub struct CsiDrivers {
    drivers: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for CsiDrivers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.list().iter().map(|d| &d.name)).finish()
    }
}

impl CsiDrivers {
    /// An empty registry.
    pub fn new() -> Arc<CsiDrivers> {
        Arc::new(CsiDrivers::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.drivers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kubelet's `ValidatePlugin` for CSI: the highest of `versions` that is a 1.x version; a driver
    /// already registered under `name` must be replaced only by a strictly newer version.
    pub fn validate(&self, name: &str, versions: &[String]) -> Result<(u64, u64, u64), CsiError> {
        let highest = highest_supported_version(versions)
            .map_err(|reason| CsiError::Registration { driver: name.to_string(), reason })?;
        if let Some(existing) = self.lock().get(name) {
            if existing.info.version >= highest {
                let (a, b, c) = existing.info.version;
                return Err(CsiError::Registration {
                    driver: name.to_string(),
                    reason: format!(
                        "another driver with the same name is already registered with a higher supported version: {a}.{b}.{c}"
                    ),
                });
            }
        }
        Ok(highest)
    }

    /// Registers (or replaces) `info.name`; its channel connects on first use. Must be called within a
    /// tokio runtime (the channel's worker is spawned on it).
    pub fn register(&self, info: DriverInfo) -> Result<(), CsiError> {
        let channel = kvol_csi::connect_lazy(&info.endpoint)
            .map_err(|e| CsiError::Registration { driver: info.name.clone(), reason: e.to_string() })?;
        self.lock().insert(info.name.clone(), Entry { info, channel, capabilities: None });
        Ok(())
    }

    /// Registers `info` with an already connected `channel` (tests, and callers that connected to ask
    /// NodeGetInfo first).
    pub fn register_with_channel(&self, info: DriverInfo, channel: Channel) {
        self.lock().insert(info.name.clone(), Entry { info, channel, capabilities: None });
    }

    /// Forgets `name`; returns what it was. Already gone is `None`.
    pub fn unregister(&self, name: &str) -> Option<DriverInfo> {
        self.lock().remove(name).map(|e| e.info)
    }

    /// The registration of `name`.
    pub fn get(&self, name: &str) -> Option<DriverInfo> {
        self.lock().get(name).map(|e| e.info.clone())
    }

    /// Every registered driver, by name.
    pub fn list(&self) -> Vec<DriverInfo> {
        let mut all: Vec<_> = self.lock().values().map(|e| e.info.clone()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The channel to `name`; a driver that is not registered is a transient error (kubelet: the
    /// driver may register soon, e.g. after a restart).
    pub fn channel(&self, name: &str) -> Result<Channel, CsiError> {
        self.lock().get(name).map(|e| e.channel.clone()).ok_or_else(|| CsiError::NotRegistered { driver: name.into() })
    }

    pub(crate) fn cached_capabilities(&self, name: &str) -> Option<NodeCapabilities> {
        self.lock().get(name).and_then(|e| e.capabilities)
    }

    pub(crate) fn cache_capabilities(&self, name: &str, caps: NodeCapabilities) {
        if let Some(e) = self.lock().get_mut(name) {
            e.capabilities = Some(caps);
        }
    }
}

/// Parses a version as Kubernetes' `ParseGeneric` does: an optional `v`, then dot-separated numbers
/// (missing minor/patch are 0); trailing text after the numbers is ignored.
fn parse_generic_version(text: &str) -> Option<(u64, u64, u64)> {
    let s = text.trim();
    let s = s.strip_prefix('v').unwrap_or(s);
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let numeric = &s[..end];
    if numeric.is_empty() || numeric.starts_with('.') || numeric.ends_with('.') || numeric.contains("..") {
        return None;
    }
    let mut parts = numeric.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().unwrap_or(Some(0))?;
    let patch = parts.next().unwrap_or(Some(0))?;
    Some((major, minor, patch))
}

/// Kubelet's `highestSupportedVersion`: versions above 1.x are ignored (a 2.x need not be compatible),
/// and the highest left must be a 1.x (CSI 0.x support was dropped in Kubernetes 1.17).
pub fn highest_supported_version(versions: &[String]) -> Result<(u64, u64, u64), String> {
    if versions.is_empty() {
        return Err("plugin returned an empty list for supported versions".into());
    }
    let highest = versions.iter().filter_map(|v| parse_generic_version(v)).filter(|v| v.0 <= 1).max();
    match highest {
        None => Err(format!("none of the versions specified {versions:?} are supported")),
        Some(v) if v.0 != 1 => {
            Err(format!("highest supported version reported by driver is {}.{}.{}, must be v1.x", v.0, v.1, v.2))
        }
        Some(v) => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_v1_versions_in_kubelets_forms_and_refuses_others() {
        struct Case {
            versions: &'static [&'static str],
            want: Option<(u64, u64, u64)>,
        }
        let cases = [
            Case { versions: &["1.0.0"], want: Some((1, 0, 0)) },
            Case { versions: &["v1.2"], want: Some((1, 2, 0)) },
            Case { versions: &["0.3.0", "1.0.0", "2.0.0"], want: Some((1, 0, 0)) },
            Case { versions: &["1.10.0", "1.9.0"], want: Some((1, 10, 0)) },
            Case { versions: &["0.3.0"], want: None },
            Case { versions: &["2.0.0"], want: None },
            Case { versions: &["banana"], want: None },
            Case { versions: &[], want: None },
        ];
        for case in cases {
            let versions: Vec<String> = case.versions.iter().map(|s| s.to_string()).collect();
            assert_eq!(highest_supported_version(&versions).ok(), case.want, "{:?}", case.versions);
        }
    }

    #[tokio::test]
    async fn a_registered_driver_is_replaced_only_by_a_newer_version() {
        let drivers = CsiDrivers::new();
        let info = DriverInfo {
            name: "d".into(),
            endpoint: "/nonexistent/csi.sock".into(),
            version: (1, 0, 0),
            node_id: "n".into(),
            max_volumes_per_node: 0,
            topology: BTreeMap::new(),
        };
        drivers.register(info.clone()).unwrap();
        assert!(drivers.validate("d", &["1.0.0".into()]).is_err());
        assert_eq!(drivers.validate("d", &["1.1.0".into()]).unwrap(), (1, 1, 0));
        assert_eq!(drivers.get("d"), Some(info));
        assert!(drivers.unregister("d").is_some());
        assert!(drivers.unregister("d").is_none());
        assert!(matches!(drivers.channel("d"), Err(CsiError::NotRegistered { .. })));
    }
}
