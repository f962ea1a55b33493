//! Kubelet's names for CSI volumes: the VolumeAttachment name, the global (staging) path, the pod path,
//! the handle of an inline volume, and the `vol_data.json` files that let teardown work from the disk
//! alone after a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::CSI_PLUGIN_NAME;
use crate::error::{Error, Result};

/// The file kubelet keeps beside a CSI mount (`volDataFileName`).
pub const VOL_DATA_FILE: &str = "vol_data.json";
/// The last component of a device (staging) path (`globalMountInGlobalPath`).
pub const GLOBAL_MOUNT: &str = "globalmount";
/// The last component of a pod's CSI volume path (`GetCSIMounterPath`).
pub const POD_MOUNT: &str = "mount";
/// Separates driver and handle in the volume name (`volNameSep`).
pub const VOLUME_NAME_SEP: char = '^';

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The VolumeAttachment name of a volume on a node: `csi-<sha256(handle + driver + node)>`
/// (`getAttachmentName`).
pub fn attachment_name(volume_handle: &str, driver: &str, node: &str) -> String {
    format!("csi-{}", sha256_hex(&format!("{volume_handle}{driver}{node}")))
}

/// The handle kubelet gives an inline ephemeral volume: `csi-<sha256(podUID + volume name)>`
/// (`makeVolumeHandle`).
pub fn ephemeral_volume_handle(pod_uid: &str, volume_name: &str) -> String {
    format!("csi-{}", sha256_hex(&format!("{pod_uid}{volume_name}")))
}

/// `<root>/plugins/kubernetes.io/csi/<driver>/<sha256(handle)>/globalmount` (`makeDeviceMountPath`): the
/// staging path; `vol_data.json` sits in its parent.
pub fn device_mount_path(root: &Path, driver: &str, volume_handle: &str) -> PathBuf {
    kvol_mount::paths::plugin_dir(root, CSI_PLUGIN_NAME).join(driver).join(sha256_hex(volume_handle)).join(GLOBAL_MOUNT)
}

/// `<root>/pods/<uid>/volumes/kubernetes.io~csi/<volume>/mount`: the publish target; `vol_data.json`
/// sits in its parent.
pub fn pod_mount_path(root: &Path, pod_uid: &str, spec_name: &str) -> PathBuf {
    kvol_mount::paths::pod_volume_dir(root, pod_uid, CSI_PLUGIN_NAME, spec_name).join(POD_MOUNT)
}

/// Under `<root>/plugins/kubernetes.io/csi/volumeDevices`: the NodeStageVolume directories of block volumes.
pub const BLOCK_STAGING: &str = "staging";
/// Under `<root>/plugins/kubernetes.io/csi/volumeDevices`: one directory per block volume holding the
/// NodePublishVolume target file of each pod.
pub const BLOCK_PUBLISH: &str = "publish";
/// Under `volumeDevices/<volume>`: the directory of the block volume's `vol_data.json`.
pub const BLOCK_DATA: &str = "data";
/// Under `volumeDevices/<volume>`: the global map path, one bind-mounted device file per pod.
pub const BLOCK_GLOBAL_MAP: &str = "dev";

/// `<root>/plugins/kubernetes.io/csi/volumeDevices/staging/<volume>` (`getStagingPath`): the block volume's
/// staging directory, its device mount path in kvol.
pub fn block_staging_path(root: &Path, spec_name: &str) -> PathBuf {
    kvol_mount::paths::volume_devices_dir(root, CSI_PLUGIN_NAME).join(BLOCK_STAGING).join(spec_name)
}

/// `<root>/plugins/kubernetes.io/csi/volumeDevices/publish/<volume>` (`getPublishDir`).
pub fn block_publish_dir(root: &Path, spec_name: &str) -> PathBuf {
    kvol_mount::paths::volume_devices_dir(root, CSI_PLUGIN_NAME).join(BLOCK_PUBLISH).join(spec_name)
}

/// `<root>/plugins/kubernetes.io/csi/volumeDevices/publish/<volume>/<pod uid>` (`getPublishPath`): the file
/// NodePublishVolume puts the device on.
pub fn block_publish_path(root: &Path, spec_name: &str, pod_uid: &str) -> PathBuf {
    block_publish_dir(root, spec_name).join(pod_uid)
}

/// `<root>/plugins/kubernetes.io/csi/volumeDevices/<volume>` (`getVolumePluginDir`): holds `data/` (the
/// `vol_data.json` of the block volume) and `dev/` (the global map path).
pub fn block_volume_dir(root: &Path, spec_name: &str) -> PathBuf {
    kvol_mount::paths::volume_devices_dir(root, CSI_PLUGIN_NAME).join(spec_name)
}

/// `<root>/plugins/kubernetes.io/csi/volumeDevices/<volume>/data` (`getVolumeDeviceDataDir`).
pub fn block_data_dir(root: &Path, spec_name: &str) -> PathBuf {
    block_volume_dir(root, spec_name).join(BLOCK_DATA)
}

/// `<root>/plugins/kubernetes.io/csi/volumeDevices/<volume>/dev` (`GetGlobalMapPath`).
pub fn block_global_map_path(root: &Path, spec_name: &str) -> PathBuf {
    block_volume_dir(root, spec_name).join(BLOCK_GLOBAL_MAP)
}

/// `<root>/pods/<uid>/volumeDevices/kubernetes.io~csi/<volume>` (`GetPodDeviceMapPath`): the pod's symlink to
/// its published device, what a container runtime gives the container at `devicePath`.
pub fn pod_device_link(root: &Path, pod_uid: &str, spec_name: &str) -> PathBuf {
    kvol_mount::paths::pod_volume_devices_dir(root, pod_uid, CSI_PLUGIN_NAME).join(spec_name)
}

/// `kubernetes.io/csi/<driver>^<handle>`: kubelet's unique volume name of a CSI persistent volume.
pub fn unique_name(driver: &str, volume_handle: &str) -> String {
    format!("{CSI_PLUGIN_NAME}/{driver}{VOLUME_NAME_SEP}{volume_handle}")
}

/// The driver and volume handle of a CSI unique name (the inverse of [`unique_name`]); `None` if it is not
/// one.
pub fn split_unique_name(unique: &str) -> Option<(&str, &str)> {
    let (plugin, volume) = crate::plugins::names::split_unique_name(unique)?;
    if plugin != CSI_PLUGIN_NAME {
        return None;
    }
    let (driver, handle) = volume.split_once(VOLUME_NAME_SEP)?;
    (!driver.is_empty() && !handle.is_empty()).then_some((driver, handle))
}

/// The contents of a `vol_data.json`: a flat JSON object of strings, under kubelet's keys. Keys kvol
/// does not know (`seLinuxMountContext`) are kept, so a file kubelet wrote survives a rewrite.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeData {
    /// `specVolID`: the PV's or the pod volume's name (pod-level files only).
    #[serde(rename = "specVolID", default, skip_serializing_if = "Option::is_none")]
    pub spec_vol_id: Option<String>,
    /// `volumeHandle`.
    #[serde(rename = "volumeHandle", default)]
    pub volume_handle: String,
    /// `driverName`.
    #[serde(rename = "driverName", default)]
    pub driver_name: String,
    /// `nodeName` (pod-level files only).
    #[serde(rename = "nodeName", default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// `attachmentID` (pod-level files only).
    #[serde(rename = "attachmentID", default, skip_serializing_if = "Option::is_none")]
    pub attachment_id: Option<String>,
    /// `volumeLifecycleMode`: `Persistent` or `Ephemeral` (pod-level files only).
    #[serde(rename = "volumeLifecycleMode", default, skip_serializing_if = "Option::is_none")]
    pub volume_lifecycle_mode: Option<String>,
    /// Other keys, kept as found.
    #[serde(flatten)]
    pub other: BTreeMap<String, String>,
}

impl VolumeData {
    /// What kubelet's MountDevice writes beside the staging path.
    pub fn for_device(driver: &str, volume_handle: &str) -> VolumeData {
        VolumeData { volume_handle: volume_handle.into(), driver_name: driver.into(), ..Default::default() }
    }

    /// What kubelet's SetUp writes beside a pod's mount: every key, even when empty.
    pub fn for_pod(spec_name: &str, driver: &str, volume_handle: &str, node: &str, mode: &str) -> VolumeData {
        VolumeData {
            spec_vol_id: Some(spec_name.into()),
            volume_handle: volume_handle.into(),
            driver_name: driver.into(),
            node_name: Some(node.into()),
            attachment_id: Some(attachment_name(volume_handle, driver, node)),
            volume_lifecycle_mode: Some(mode.into()),
            other: BTreeMap::new(),
        }
    }

    /// What kubelet's block mapper writes in `volumeDevices/<volume>/data`: the pod-level keys but the
    /// lifecycle mode (a block volume is always persistent).
    pub fn for_block(spec_name: &str, driver: &str, volume_handle: &str, node: &str) -> VolumeData {
        VolumeData { volume_lifecycle_mode: None, ..VolumeData::for_pod(spec_name, driver, volume_handle, node, "") }
    }

    /// Reads `<dir>/vol_data.json`; `Ok(None)` when there is none.
    pub fn load(dir: &Path) -> Result<Option<VolumeData>> {
        let path = dir.join(VOL_DATA_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading", &path)(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::io("parsing", &path)(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
    }

    /// Writes `<dir>/vol_data.json` (0640) through a temporary file and a rename, so a crash never
    /// leaves a truncated file that would make the volume impossible to tear down.
    pub fn save(&self, dir: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(VOL_DATA_FILE);
        let tmp = dir.join(format!(".{VOL_DATA_FILE}.tmp"));
        let mut text = serde_json::to_string(self).expect("a map of strings always serializes");
        text.push('\n');
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o640).open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(Error::io("writing", &path))
    }

    /// Removes `<dir>/vol_data.json`; already gone is success.
    pub fn remove(dir: &Path) -> Result<()> {
        let path = dir.join(VOL_DATA_FILE);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing", &path)(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_and_handles_are_kubelets_hashes() {
        assert_eq!(attachment_name("a", "b", "c"), format!("csi-{}", hex::encode(Sha256::digest(b"abc"))));
        assert_eq!(ephemeral_volume_handle("uid", "vol"), format!("csi-{}", hex::encode(Sha256::digest(b"uidvol"))));
        assert_eq!(
            attachment_name("abc", "", ""),
            "csi-ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "sha256(\"abc\") from FIPS 180-2"
        );
        assert_ne!(attachment_name("vol-1", "csi.kvol.io", "n1"), attachment_name("vol-1", "csi.kvol.io", "n2"));
    }

    #[test]
    fn device_mount_path_hashes_the_handle_under_the_drivers_directory() {
        let p = device_mount_path(Path::new("/var/lib/kubelet"), "csi.kvol.io", "abc");
        assert_eq!(
            p,
            Path::new("/var/lib/kubelet/plugins/kubernetes.io/csi/csi.kvol.io")
                .join("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
                .join("globalmount")
        );
        assert_eq!(
            pod_mount_path(Path::new("/r"), "uid", "pv-1"),
            Path::new("/r/pods/uid/volumes/kubernetes.io~csi/pv-1/mount")
        );
        assert_eq!(unique_name("csi.kvol.io", "h/1"), "kubernetes.io/csi/csi.kvol.io^h/1");
        assert_eq!(split_unique_name("kubernetes.io/csi/csi.kvol.io^h/1"), Some(("csi.kvol.io", "h/1")));
        assert_eq!(split_unique_name("flexvolume-k8s/loop/vol1"), None);
        assert_eq!(split_unique_name("kubernetes.io/csi/^h"), None);
    }

    #[test]
    fn block_paths_follow_kubelets_csi_block_layout() {
        let r = Path::new("/var/lib/kubelet");
        let devices = "/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices";
        assert_eq!(block_staging_path(r, "pv-1"), Path::new(devices).join("staging/pv-1"));
        assert_eq!(block_publish_path(r, "pv-1", "uid"), Path::new(devices).join("publish/pv-1/uid"));
        assert_eq!(block_data_dir(r, "pv-1"), Path::new(devices).join("pv-1/data"));
        assert_eq!(block_global_map_path(r, "pv-1"), Path::new(devices).join("pv-1/dev"));
        assert_eq!(
            pod_device_link(r, "uid", "pv-1"),
            Path::new("/var/lib/kubelet/pods/uid/volumeDevices/kubernetes.io~csi/pv-1")
        );
    }

    #[test]
    fn vol_data_round_trips_and_reads_what_kubelet_writes() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(VolumeData::load(dir.path()).unwrap(), None);
        let data = VolumeData::for_pod("pv-1", "csi.kvol.io", "h", "node-1", "Persistent");
        data.save(dir.path()).unwrap();
        assert_eq!(VolumeData::load(dir.path()).unwrap(), Some(data.clone()));
        let text = std::fs::read_to_string(dir.path().join(VOL_DATA_FILE)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["specVolID"], "pv-1");
        assert_eq!(json["attachmentID"], attachment_name("h", "csi.kvol.io", "node-1"));
        assert_eq!(json.as_object().unwrap().len(), 6, "kubelet writes six keys: {text}");

        // A device file as kubelet's MountDevice writes it (json.Encoder: a trailing newline), with a key
        // kvol does not know.
        std::fs::write(
            dir.path().join(VOL_DATA_FILE),
            "{\"driverName\":\"d\",\"seLinuxMountContext\":\"ctx\",\"volumeHandle\":\"h\"}\n",
        )
        .unwrap();
        let read = VolumeData::load(dir.path()).unwrap().unwrap();
        assert_eq!(read.driver_name, "d");
        assert_eq!(read.volume_handle, "h");
        assert_eq!(read.spec_vol_id, None);
        assert_eq!(read.other.get("seLinuxMountContext").map(String::as_str), Some("ctx"));
        read.save(dir.path()).unwrap();
        assert!(std::fs::read_to_string(dir.path().join(VOL_DATA_FILE)).unwrap().contains("seLinuxMountContext"));
        VolumeData::remove(dir.path()).unwrap();
        VolumeData::remove(dir.path()).unwrap();
        assert_eq!(VolumeData::load(dir.path()).unwrap(), None);
    }
}
