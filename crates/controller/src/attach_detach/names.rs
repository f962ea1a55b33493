//! The names attach/detach is keyed by: kubelet's unique volume names (what node `status.volumesAttached` and
//! `status.volumesInUse` list) and the CSI VolumeAttachment name (`csi_attacher.go getAttachmentName`).

use sha2::{Digest, Sha256};
use std::fmt::Write;

/// The CSI plugin's name, the first part of a CSI volume's unique name.
pub const CSI_PLUGIN_NAME: &str = "kubernetes.io/csi";

/// What separates the driver from the volume handle in a CSI volume name (`volNameSep`).
pub const CSI_VOLUME_NAME_SEPARATOR: char = '^';

/// Kubernetes names a FlexVolume plugin `flexvolume-<vendor>/<driver>`.
pub const FLEX_PLUGIN_PREFIX: &str = "flexvolume-";

/// `kubernetes.io/csi/<driver>^<volumeHandle>`.
pub fn csi_unique_name(driver: &str, handle: &str) -> String {
    format!("{CSI_PLUGIN_NAME}/{driver}{CSI_VOLUME_NAME_SEPARATOR}{handle}")
}

/// `flexvolume-<driver>/<volume name>`, the unique name of a FlexVolume volume when the plugin does not
/// compute it itself.
pub fn flex_unique_name(driver: &str, volume_name: &str) -> String {
    format!("{FLEX_PLUGIN_PREFIX}{driver}/{volume_name}")
}

/// The VolumeAttachment of a CSI volume on a node: `csi-<sha256hex(handle + driver + node)>`.
pub fn attachment_name(handle: &str, driver: &str, node: &str) -> String {
    let digest = Sha256::digest(format!("{handle}{driver}{node}").as_bytes());
    let mut name = String::with_capacity(4 + 64);
    name.push_str("csi-");
    for byte in digest {
        let _ = write!(name, "{byte:02x}");
    }
    name
}

/// Splits a unique name into the plugin name (its first two `/`-separated parts) and the plugin's volume name
/// (the rest), as `util.SplitUniqueName` does; `None` when there are fewer than three parts.
pub fn split_unique_name(unique: &str) -> Option<(&str, &str)> {
    let first = unique.find('/')?;
    let second = first + 1 + unique[first + 1..].find('/')?;
    Some((&unique[..second], &unique[second + 1..]))
}

/// The driver and volume handle of a CSI unique name; `None` if it is not one.
pub fn split_csi_unique_name(unique: &str) -> Option<(&str, &str)> {
    let (plugin, volume) = split_unique_name(unique)?;
    if plugin != CSI_PLUGIN_NAME {
        return None;
    }
    let (driver, handle) = volume.split_once(CSI_VOLUME_NAME_SEPARATOR)?;
    (!driver.is_empty() && !handle.is_empty()).then_some((driver, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attachment_name_is_the_sha256_of_handle_driver_and_node() {
        // sha256("vol-1" + "csi.kvol.io" + "n1"), as Go's fmt.Sprintf("csi-%x", sha256.Sum256(...)).
        let name = attachment_name("vol-1", "csi.kvol.io", "n1");
        assert_eq!(name.len(), 68);
        assert!(name.starts_with("csi-"));
        let digest = Sha256::digest(b"vol-1csi.kvol.ion1");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(name, format!("csi-{hex}"));
        assert_ne!(name, attachment_name("vol-1", "csi.kvol.io", "n2"));
    }

    #[test]
    fn unique_names_split_after_the_second_slash() {
        assert_eq!(split_unique_name("flexvolume-k8s/loop/vol1"), Some(("flexvolume-k8s/loop", "vol1")));
        assert_eq!(split_unique_name("kubernetes.io/csi/d^a/b"), Some(("kubernetes.io/csi", "d^a/b")));
        assert_eq!(split_unique_name("a/b"), None);
        assert_eq!(split_csi_unique_name("kubernetes.io/csi/csi.kvol.io^vol-1"), Some(("csi.kvol.io", "vol-1")));
        assert_eq!(split_csi_unique_name("flexvolume-k8s/loop/vol1"), None);
        assert_eq!(csi_unique_name("d", "h"), "kubernetes.io/csi/d^h");
        assert_eq!(flex_unique_name("k8s/loop", "v"), "flexvolume-k8s/loop/v");
    }
}
