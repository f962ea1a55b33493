//! The identity of one volume of one pod, as it is laid out on disk.

use std::fmt;

/// `(pod uid, plugin, spec name)`: names `<root>/pods/<uid>/volumes/<escaped plugin>/<spec name>`, keys both
/// states of the world and the executor. Displayed as kubelet's unique name for a non-attachable volume,
/// `<plugin>/<pod uid>-<spec name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolumeId {
    /// The pod's uid.
    pub pod_uid: String,
    /// The plugin's qualified name.
    pub plugin: String,
    /// The volume's spec name (the pod's volume name, or the PV's name for a claim).
    pub spec_name: String,
}

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}-{}", self.plugin, self.pod_uid, self.spec_name)
    }
}
