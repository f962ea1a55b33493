//! The names attach/detach is keyed by: kubelet's unique volume names (what node `status.volumesAttached` and
//! `status.volumesInUse` list) and the CSI VolumeAttachment name (`csi_attacher.go getAttachmentName`). The
//! CSI names are the CSI plugin's own, shared with the node agent (which attaches by itself when controller
//! attach/detach is off), so both always compute the same VolumeAttachment name.

pub use kvol_volume::names::split_unique_name;
pub use kvol_volume::plugins::csi::{
    attachment_name, split_unique_name as split_csi_unique_name, unique_name as csi_unique_name,
};

/// Kubernetes names a FlexVolume plugin `flexvolume-<vendor>/<driver>`.
pub const FLEX_PLUGIN_PREFIX: &str = "flexvolume-";

/// `flexvolume-<driver>/<volume name>`, the unique name of a FlexVolume volume when the plugin does not
/// compute it itself.
pub fn flex_unique_name(driver: &str, volume_name: &str) -> String {
    format!("{FLEX_PLUGIN_PREFIX}{driver}/{volume_name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_and_the_agent_name_attachments_alike() {
        assert_eq!(
            attachment_name("abc", "", ""),
            "csi-ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "sha256(\"abc\"), as Go's fmt.Sprintf(\"csi-%x\", sha256.Sum256(...))"
        );
        assert_eq!(split_csi_unique_name(&csi_unique_name("csi.kvol.io", "vol-1")), Some(("csi.kvol.io", "vol-1")));
        assert_eq!(split_csi_unique_name("flexvolume-k8s/loop/vol1"), None);
        assert_eq!(split_unique_name("flexvolume-k8s/loop/vol1"), Some(("flexvolume-k8s/loop", "vol1")));
        assert_eq!(flex_unique_name("k8s/loop", "v"), "flexvolume-k8s/loop/v");
    }
}
