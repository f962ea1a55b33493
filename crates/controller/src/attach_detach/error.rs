//! Why an attach or a detach failed. The display text ends up in `FailedAttachVolume` events after
//! `AttachVolume.Attach failed for volume "<name>" : `, so it is kubelet's where kubelet has one.

/// A failed attach or detach.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// The volume plugin's attach, detach or check failed.
    #[error(transparent)]
    Plugin(#[from] kvol_volume::Error),
    /// No attachable plugin serves a volume's plugin name (a FlexVolume driver not probed, or removed).
    #[error("no attachable volume plugin matched name: {0}")]
    NoPlugin(String),
    /// A unique name that names neither a CSI volume nor a plugin's volume.
    #[error("cannot split volume unique name {0} to plugin/volume components")]
    BadUniqueName(String),
    /// An API call failed.
    #[error("{action} {object}: {source}")]
    Api {
        /// What was attempted.
        action: &'static str,
        /// The object.
        object: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The CSI driver's attacher reported an error in the VolumeAttachment's status.
    #[error("{0}")]
    Attacher(String),
    /// The VolumeAttachment is being deleted, so it cannot become attached.
    #[error("volume attachment is being deleted")]
    AttachmentDeleting,
    /// The CSI driver's attacher did not finish in time.
    #[error("timed out waiting for external-attacher of {driver} CSI driver to {operation} volume {handle}")]
    Timeout {
        /// The driver.
        driver: String,
        /// `attach` or `detach`.
        operation: &'static str,
        /// The volume handle.
        handle: String,
    },
    /// A plugin call on the blocking pool panicked or was cancelled.
    #[error("plugin call did not complete: {0}")]
    Join(String),
}
