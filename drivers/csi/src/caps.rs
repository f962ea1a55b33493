//! Volume capabilities and topology: parsed once at the boundary into small typed values.

use std::collections::HashMap;

use kvol_csi::v1::{
    volume_capability::{access_mode::Mode, AccessType},
    Topology, VolumeCapability,
};

use crate::backend::Backend;
use crate::error::{Error, Result};

/// The topology segment key naming the node that holds a volume.
pub const TOPOLOGY_KEY: &str = "topology.csi.kvol.io/node";

/// A parsed `VolumeCapability`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Block (true) or mount access.
    pub block: bool,
    /// Requested file-system type ("" = driver's choice).
    pub fs_type: String,
    /// Requested mount flags.
    pub mount_flags: Vec<String>,
    /// Access mode.
    pub mode: Mode,
}

impl Access {
    /// Parses a capability; a missing access type or access mode is INVALID_ARGUMENT.
    pub fn parse(cap: &VolumeCapability, field: &'static str) -> Result<Access> {
        let mode = cap
            .access_mode
            .as_ref()
            .and_then(|m| Mode::try_from(m.mode).ok())
            .filter(|m| *m != Mode::Unknown)
            .ok_or(Error::InvalidArgument { field, reason: "access_mode is missing or unknown".into() })?;
        match &cap.access_type {
            Some(AccessType::Block(_)) => Ok(Access { block: true, fs_type: String::new(), mount_flags: vec![], mode }),
            Some(AccessType::Mount(m)) => {
                Ok(Access { block: false, fs_type: m.fs_type.clone(), mount_flags: m.mount_flags.clone(), mode })
            }
            None => Err(Error::InvalidArgument { field, reason: "access_type (block or mount) is missing".into() }),
        }
    }

    /// Parses a REQUIRED single capability.
    pub fn parse_required(cap: Option<&VolumeCapability>, field: &'static str) -> Result<Access> {
        Access::parse(cap.ok_or(Error::MissingField { field })?, field)
    }

    /// Why `backend` cannot serve this capability, if it cannot.
    pub fn unsupported_by(&self, backend: &dyn Backend) -> Option<String> {
        if !matches!(
            self.mode,
            Mode::SingleNodeWriter
                | Mode::SingleNodeReaderOnly
                | Mode::SingleNodeSingleWriter
                | Mode::SingleNodeMultiWriter
        ) {
            return Some(format!(
                "access mode {} is not supported: kvol-csi volumes are local to one node",
                self.mode.as_str_name()
            ));
        }
        if self.block && !backend.supports_block() {
            return Some(format!("block access is not supported by the {} backend", backend.name()));
        }
        if !self.block && !self.fs_type.is_empty() && !backend.file_systems().contains(&self.fs_type.as_str()) {
            return Some(format!(
                "fs_type {:?} is not supported by the {} backend (supported: {})",
                self.fs_type,
                backend.name(),
                backend.file_systems().join(", ")
            ));
        }
        None
    }

    /// True for the read-only access modes.
    pub fn read_only_mode(&self) -> bool {
        matches!(self.mode, Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly)
    }
}

/// This node's topology.
pub fn node_topology(node_id: &str) -> Topology {
    Topology { segments: HashMap::from([(TOPOLOGY_KEY.to_owned(), node_id.to_owned())]) }
}

/// True if a volume on `node_id` satisfies `topology` (every segment must match this node's).
pub fn topology_matches(topology: &Topology, node_id: &str) -> bool {
    topology.segments.iter().all(|(k, v)| k == TOPOLOGY_KEY && v == node_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvol_csi::v1::volume_capability::{AccessMode, BlockVolume, MountVolume};

    fn cap(access: Option<AccessType>, mode: Mode) -> VolumeCapability {
        VolumeCapability { access_type: access, access_mode: Some(AccessMode { mode: mode as i32 }) }
    }

    #[test]
    fn a_capability_needs_an_access_type_and_a_known_mode() {
        let mount = Some(AccessType::Mount(MountVolume { fs_type: "xfs".into(), ..Default::default() }));
        let ok = Access::parse(&cap(mount.clone(), Mode::SingleNodeWriter), "c").unwrap();
        assert_eq!(ok.fs_type, "xfs");
        assert!(!ok.block);
        assert!(Access::parse(&cap(None, Mode::SingleNodeWriter), "c").is_err());
        assert!(Access::parse(&cap(mount, Mode::Unknown), "c").is_err());
        assert!(
            Access::parse(&cap(Some(AccessType::Block(BlockVolume {})), Mode::SingleNodeReaderOnly), "c")
                .unwrap()
                .block
        );
    }

    #[test]
    fn topology_must_name_this_node_and_nothing_else() {
        assert!(topology_matches(&node_topology("n1"), "n1"));
        assert!(!topology_matches(&node_topology("n2"), "n1"));
        let zone = Topology { segments: HashMap::from([("zone".into(), "z".into())]) };
        assert!(!topology_matches(&zone, "n1"));
    }
}
