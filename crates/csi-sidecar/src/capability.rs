//! Kubernetes access modes and volume modes as CSI volume capabilities, and byte counts as quantities.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kvol_csi::v1::{
    volume_capability::{access_mode::Mode, AccessMode, AccessType, BlockVolume, MountVolume},
    VolumeCapability,
};

/// How the volume is accessed: a block device, or a mounted filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// `volumeMode: Block`.
    Block,
    /// `volumeMode: Filesystem` with this fsType ("" = the driver's choice) and mount options.
    Mount {
        /// The filesystem type.
        fs_type: String,
        /// The class's (or PV's) mountOptions.
        mount_flags: Vec<String>,
    },
}

impl Access {
    /// From a `volumeMode` (unset = Filesystem).
    pub fn new(volume_mode: Option<&str>, fs_type: Option<&str>, mount_flags: Option<&Vec<String>>) -> Access {
        if volume_mode == Some("Block") {
            Access::Block
        } else {
            Access::Mount {
                fs_type: fs_type.unwrap_or_default().to_owned(),
                mount_flags: mount_flags.cloned().unwrap_or_default(),
            }
        }
    }

    fn capability(&self, mode: Mode) -> VolumeCapability {
        VolumeCapability {
            access_type: Some(match self {
                Access::Block => AccessType::Block(BlockVolume {}),
                Access::Mount { fs_type, mount_flags } => AccessType::Mount(MountVolume {
                    fs_type: fs_type.clone(),
                    mount_flags: mount_flags.clone(),
                    ..Default::default()
                }),
            }),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        }
    }
}

/// One Kubernetes access mode as CSI's; `single_node_multi_writer` is the driver's
/// SINGLE_NODE_MULTI_WRITER controller capability (which allows the precise single-node modes).
fn csi_mode(mode: &str, single_node_multi_writer: bool) -> Result<Mode, String> {
    Ok(match mode {
        "ReadWriteOnce" if single_node_multi_writer => Mode::SingleNodeMultiWriter,
        "ReadWriteOnce" => Mode::SingleNodeWriter,
        "ReadWriteOncePod" if single_node_multi_writer => Mode::SingleNodeSingleWriter,
        "ReadWriteOncePod" => Mode::SingleNodeWriter,
        "ReadOnlyMany" => Mode::MultiNodeReaderOnly,
        "ReadWriteMany" => Mode::MultiNodeMultiWriter,
        other => return Err(format!("accessModes: unknown access mode {other:?}")),
    })
}

/// CreateVolume's capabilities: one per access mode of the claim (external-provisioner's rule).
pub fn for_create(access_modes: &[String], access: &Access, snmw: bool) -> Result<Vec<VolumeCapability>, String> {
    if access_modes.is_empty() {
        return Err("accessModes: at least one access mode is required".into());
    }
    access_modes.iter().map(|m| Ok(access.capability(csi_mode(m, snmw)?))).collect()
}

/// ControllerPublish's single capability for a PV's access modes (external-attacher's rule: the widest
/// mode wins).
pub fn for_publish(access_modes: &[String], access: &Access, snmw: bool) -> Result<VolumeCapability, String> {
    let has = |m: &str| access_modes.iter().any(|a| a == m);
    let mode = if has("ReadWriteMany") {
        Mode::MultiNodeMultiWriter
    } else if has("ReadOnlyMany") && has("ReadWriteOnce") {
        Mode::MultiNodeSingleWriter
    } else if has("ReadOnlyMany") {
        Mode::MultiNodeReaderOnly
    } else if let Some(first) = access_modes.first() {
        csi_mode(first, snmw)?
    } else {
        return Err("spec.accessModes: the PersistentVolume has no access mode".into());
    };
    Ok(access.capability(mode))
}

/// Bytes as a Kubernetes quantity in binary SI (`1Gi`, `1536Mi`), as `resource.NewQuantity(.., BinarySI)`.
pub fn quantity(bytes: i64) -> Quantity {
    const UNITS: [(&str, i64); 6] =
        [("Ei", 1 << 60), ("Pi", 1 << 50), ("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)];
    for (suffix, size) in UNITS {
        if bytes != 0 && bytes % size == 0 {
            return Quantity(format!("{}{suffix}", bytes / size));
        }
    }
    Quantity(bytes.to_string())
}

/// A quantity's value in bytes (rounded up); `field` names it in the error.
pub fn bytes(q: &Quantity, field: &str) -> Result<i64, String> {
    let parsed = kvol_api::parse_quantity(&q.0).map_err(|e| format!("{field}: {:?} is not a quantity: {e}", q.0))?;
    i64::try_from(parsed.value()).map_err(|_| format!("{field}: {:?} is out of range", q.0))
}

/// `resources[storage]` of a resource map, in bytes.
pub fn storage(map: Option<&BTreeMap<String, Quantity>>, field: &str) -> Result<Option<i64>, String> {
    map.and_then(|m| m.get("storage")).map(|q| bytes(q, &format!("{field}.storage"))).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_use_the_largest_exact_binary_unit() {
        assert_eq!(quantity(1 << 30).0, "1Gi");
        assert_eq!(quantity(1536 << 20).0, "1536Mi");
        assert_eq!(quantity(1000).0, "1000");
        assert_eq!(quantity(0).0, "0");
        assert_eq!(bytes(&Quantity("1Gi".into()), "x").unwrap(), 1 << 30);
        assert_eq!(bytes(&Quantity("1G".into()), "x").unwrap(), 1_000_000_000);
    }

    #[test]
    fn access_modes_map_as_kubernetes_csi_maps_them() {
        let mount = Access::new(None, Some("xfs"), None);
        let modes = |caps: Vec<VolumeCapability>| -> Vec<i32> {
            caps.iter().map(|c| c.access_mode.as_ref().unwrap().mode).collect()
        };
        let rwo = vec!["ReadWriteOnce".to_string()];
        assert_eq!(modes(for_create(&rwo, &mount, false).unwrap()), [Mode::SingleNodeWriter as i32]);
        assert_eq!(modes(for_create(&rwo, &mount, true).unwrap()), [Mode::SingleNodeMultiWriter as i32]);
        let both = vec!["ReadWriteOnce".to_string(), "ReadOnlyMany".to_string()];
        assert_eq!(
            for_publish(&both, &mount, false).unwrap().access_mode.unwrap().mode,
            Mode::MultiNodeSingleWriter as i32
        );
        assert!(for_create(&[], &mount, false).is_err());
        assert!(for_create(&["Sometimes".to_string()], &mount, false).is_err());
        let block = Access::new(Some("Block"), Some("xfs"), None);
        assert!(matches!(for_create(&rwo, &block, false).unwrap()[0].access_type, Some(AccessType::Block(_))));
    }
}
