//! A volume as the plugins see it: a pod's inline volume, or the PersistentVolume a claim is bound to
//! (kubelet's `volume.Spec`).

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeSpec, Volume};

/// The annotation older PVs carry their mount options in.
pub const MOUNT_OPTIONS_ANNOTATION: &str = "volume.beta.kubernetes.io/mount-options";

/// One volume to mount: exactly one of an inline pod volume or a PersistentVolume.
#[derive(Debug, Clone)]
pub enum VolumeSpec {
    /// A volume declared in the pod (`pod.spec.volumes[]`), other than a claim.
    Inline(Box<Volume>),
    /// The PV a `persistentVolumeClaim` volume resolved to; `read_only` from the pod's claim source.
    Persistent { pv: Box<PersistentVolume>, read_only: bool },
}

impl VolumeSpec {
    /// The spec's name: the pod's volume name, or the PV's name (kubelet's `Spec.Name()`), which is the
    /// last component of the volume's directory.
    pub fn name(&self) -> &str {
        match self {
            VolumeSpec::Inline(v) => &v.name,
            VolumeSpec::Persistent { pv, .. } => pv.metadata.name.as_deref().unwrap_or(""),
        }
    }

    /// The inline volume, if this is one.
    pub fn inline(&self) -> Option<&Volume> {
        match self {
            VolumeSpec::Inline(v) => Some(&**v),
            VolumeSpec::Persistent { .. } => None,
        }
    }

    /// The PV's spec, if this is a persistent volume.
    pub fn pv_spec(&self) -> Option<&PersistentVolumeSpec> {
        match self {
            VolumeSpec::Inline(_) => None,
            VolumeSpec::Persistent { pv, .. } => pv.spec.as_ref(),
        }
    }

    /// Whether the pod asked for the claim read-only (inline sources carry their own flag).
    pub fn claim_read_only(&self) -> bool {
        matches!(self, VolumeSpec::Persistent { read_only: true, .. })
    }

    /// The PV's `mountOptions`, or the beta annotation's comma-separated list (kubelet's `MountOptionFromSpec`).
    pub fn mount_options(&self) -> Vec<String> {
        let VolumeSpec::Persistent { pv, .. } = self else { return Vec::new() };
        if let Some(options) = pv.spec.as_ref().and_then(|s| s.mount_options.clone()) {
            if !options.is_empty() {
                return options;
            }
        }
        pv.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MOUNT_OPTIONS_ANNOTATION))
            .map(|s| s.split(',').map(|o| o.trim().to_string()).filter(|o| !o.is_empty()).collect())
            .unwrap_or_default()
    }
}
