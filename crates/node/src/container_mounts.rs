//! A container's mounts as a container runtime needs them (kubelet's `makeMounts` → CRI `Mount`), printed
//! as OCI runtime-spec `mounts` or `docker run -v` flags by `kvol mounts`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kvol_volume::{PluginRegistry, VolumeSpec};

use crate::error::{Error, Result};

/// Mount propagation (`volumeMounts[].mountPropagation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// `None` (the default): `rprivate`.
    Private,
    /// `HostToContainer`: `rslave`.
    HostToContainer,
    /// `Bidirectional`: `rshared`.
    Bidirectional,
}

impl Propagation {
    /// The OCI/`mount` option.
    pub fn option(self) -> &'static str {
        match self {
            Propagation::Private => "rprivate",
            Propagation::HostToContainer => "rslave",
            Propagation::Bidirectional => "rshared",
        }
    }
}

/// One bind a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMount {
    /// `mountPath` in the container.
    pub destination: String,
    /// The host path bound there: the volume's path, or its subPath bind.
    pub source: PathBuf,
    /// `readOnly` of the mount, or of the volume.
    pub read_only: bool,
    /// Propagation.
    pub propagation: Propagation,
}

/// One block device a container gets (kubelet's `makeBlockVolumes` → CRI `Device`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDevice {
    /// `volumeDevices[].devicePath` in the container.
    pub path_in_container: String,
    /// The pod's device link on the host (`<root>/pods/<uid>/volumeDevices/<plugin>/<volume>`), which
    /// resolves to the device node; the runtime creates a node of the same device in the container.
    pub path_on_host: PathBuf,
    /// cgroup device permissions: `mrw`, or `r` for a read-only volume (kubelet's choice).
    pub permissions: &'static str,
}

/// Whether a spec is a raw block volume (a PV with `volumeMode: Block`).
pub fn is_block(spec: &VolumeSpec) -> bool {
    spec.pv_spec().is_some_and(|pv| pv.volume_mode.as_deref() == Some("Block"))
}

/// Where a volume is on the host, and whether it is read-only, computed from the layout (no I/O). A raw
/// block volume is at its pod device link, `<root>/pods/<uid>/volumeDevices/<escaped plugin>/<volume>`.
pub fn volume_path(root: &Path, uid: &str, registry: &PluginRegistry, spec: &VolumeSpec) -> Result<(PathBuf, bool)> {
    // FlexVolume and CSI volumes are laid out by their driver's or the CSI plugin's name, known from the
    // spec alone, so this works without the driver at hand (`kvol mounts` has no probed drivers).
    let (flex, csi) = match spec {
        VolumeSpec::Inline(v) => (v.flex_volume.as_ref().map(|f| f.driver.clone()), v.csi.is_some()),
        VolumeSpec::Persistent { pv, .. } => {
            let s = pv.spec.as_ref();
            (s.and_then(|s| s.flex_volume.as_ref()).map(|f| f.driver.clone()), s.is_some_and(|s| s.csi.is_some()))
        }
    };
    let found;
    let name: &str = match (&flex, csi) {
        (Some(driver), _) => driver,
        (None, true) => kvol_volume::plugins::csi::CSI_PLUGIN_NAME,
        (None, false) => {
            found = registry.find_by_spec(spec)?;
            found.name()
        }
    };
    if is_block(spec) {
        let link = kvol_mount::paths::pod_volume_devices_dir(root, uid, name).join(spec.name());
        return Ok((link, spec.claim_read_only()));
    }
    if name == kvol_volume::names::HOST_PATH {
        return Ok((PathBuf::from(registry.find_by_spec(spec)?.volume_name(spec)?), spec.claim_read_only()));
    }
    let inline_ro = spec.inline().is_some_and(|v| {
        v.config_map.is_some()
            || v.secret.is_some()
            || v.nfs.as_ref().and_then(|n| n.read_only).unwrap_or(false)
            || v.csi.as_ref().and_then(|c| c.read_only).unwrap_or(false)
            || v.flex_volume.as_ref().and_then(|f| f.read_only).unwrap_or(false)
    });
    let mut dir = kvol_mount::paths::pod_volume_dir(root, uid, name, spec.name());
    if name == kvol_volume::plugins::csi::CSI_PLUGIN_NAME {
        // kubelet's CSI layout: the mount is one level down, beside `vol_data.json`.
        dir.push("mount");
    }
    Ok((dir, inline_ro || spec.claim_read_only()))
}

/// The mounts of `container` in `pod`, given the host path and read-only flag of each pod volume.
pub fn container_mounts(
    root: &Path,
    pod: &Pod,
    container: &str,
    volumes: &BTreeMap<String, (PathBuf, bool)>,
) -> Result<Vec<ContainerMount>> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let c = crate::subpath::containers(pod)
        .find(|c| c.name == container)
        .ok_or_else(|| Error::Claim(format!("container {container:?} is not valid for pod {:?}", pod.metadata.name)))?;
    let mut out = Vec::new();
    for (index, m) in c.volume_mounts.as_deref().unwrap_or_default().iter().enumerate() {
        let (path, volume_ro) = volumes.get(&m.name).cloned().ok_or_else(|| {
            Error::Claim(format!("volume {:?} of volumeMount {:?} is not resolved", m.name, m.mount_path))
        })?;
        let sub = crate::subpath::sub_path_of(pod, c, m)?;
        let source = if sub.is_empty() {
            path
        } else {
            kvol_mount::paths::pod_volume_subpath_dir(root, uid, &m.name, &c.name, index)
        };
        let propagation = match m.mount_propagation.as_deref() {
            Some("HostToContainer") => Propagation::HostToContainer,
            Some("Bidirectional") => Propagation::Bidirectional,
            _ => Propagation::Private,
        };
        out.push(ContainerMount {
            destination: m.mount_path.clone(),
            source,
            read_only: m.read_only.unwrap_or(false) || volume_ro,
            propagation,
        });
    }
    Ok(out)
}

/// The block devices of `container` in `pod` (its `volumeDevices`), given the host path (the device link,
/// see [`volume_path`]) and read-only flag of each pod volume. A volume whose link is not there yet is an
/// error, as kubelet's "cannot find volume" (the container must not start without its device).
pub fn container_devices(
    pod: &Pod,
    container: &str,
    volumes: &BTreeMap<String, (PathBuf, bool)>,
) -> Result<Vec<ContainerDevice>> {
    let c = crate::subpath::containers(pod)
        .find(|c| c.name == container)
        .ok_or_else(|| Error::Claim(format!("container {container:?} is not valid for pod {:?}", pod.metadata.name)))?;
    let mut out = Vec::new();
    for d in c.volume_devices.as_deref().unwrap_or_default() {
        if !d.device_path.starts_with('/') {
            return Err(Error::Claim(format!("error DevicePath `{}` must be an absolute path", d.device_path)));
        }
        let missing = || Error::Claim(format!("cannot find volume {:?} to pass into container {container:?}", d.name));
        let (link, read_only) = volumes.get(&d.name).cloned().ok_or_else(missing)?;
        if !std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(missing());
        }
        out.push(ContainerDevice {
            path_in_container: d.device_path.clone(),
            path_on_host: link,
            permissions: if read_only { "r" } else { "mrw" },
        });
    }
    Ok(out)
}

/// `docker run` flags for devices: `--device HOST:CONTAINER:PERMISSIONS`.
pub fn devices_to_docker(devices: &[ContainerDevice]) -> Vec<String> {
    devices
        .iter()
        .flat_map(|d| {
            ["--device".to_string(), format!("{}:{}:{}", d.path_on_host.display(), d.path_in_container, d.permissions)]
        })
        .collect()
}

/// OCI runtime-spec `mounts`.
pub fn to_oci(mounts: &[ContainerMount]) -> serde_json::Value {
    serde_json::Value::Array(
        mounts
            .iter()
            .map(|m| {
                serde_json::json!({
                    "destination": m.destination,
                    "type": "bind",
                    "source": m.source,
                    "options": ["rbind", if m.read_only { "ro" } else { "rw" }, m.propagation.option()],
                })
            })
            .collect(),
    )
}

/// `docker run` flags: `-v SOURCE:DEST[:ro][,rslave|rshared]`.
pub fn to_docker(mounts: &[ContainerMount]) -> Vec<String> {
    let mut out = Vec::new();
    for m in mounts {
        let mut options = Vec::new();
        if m.read_only {
            options.push("ro");
        }
        if m.propagation != Propagation::Private {
            options.push(m.propagation.option());
        }
        let mut spec = format!("{}:{}", m.source.display(), m.destination);
        if !options.is_empty() {
            spec.push(':');
            spec.push_str(&options.join(","));
        }
        out.push("-v".into());
        out.push(spec);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_volume_devices_at_their_links_with_kubelets_permissions() {
        let root = tempfile::tempdir().unwrap();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "raw", "uid": "u" },
            "spec": { "containers": [{ "name": "c", "image": "i",
                "volumeDevices": [{ "name": "data", "devicePath": "/dev/xvda" }, { "name": "ro", "devicePath": "/dev/xvdb" }] }] }
        }))
        .unwrap();
        let data = root.path().join("pods/u/volumeDevices/kubernetes.io~csi/pv-1");
        let ro = root.path().join("pods/u/volumeDevices/kubernetes.io~csi/pv-2");
        let volumes =
            BTreeMap::from([("data".to_string(), (data.clone(), false)), ("ro".to_string(), (ro.clone(), true))]);
        let err = container_devices(&pod, "c", &volumes).unwrap_err();
        assert!(err.to_string().contains("cannot find volume \"data\""), "{err}");
        std::fs::create_dir_all(data.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink("/dev/null", &data).unwrap();
        std::os::unix::fs::symlink("/dev/null", &ro).unwrap();
        let devices = container_devices(&pod, "c", &volumes).unwrap();
        assert_eq!(
            devices,
            [
                ContainerDevice {
                    path_in_container: "/dev/xvda".into(),
                    path_on_host: data.clone(),
                    permissions: "mrw"
                },
                ContainerDevice { path_in_container: "/dev/xvdb".into(), path_on_host: ro, permissions: "r" },
            ]
        );
        assert_eq!(
            devices_to_docker(&devices[..1]),
            ["--device".to_string(), format!("{}:/dev/xvda:mrw", data.display())]
        );
    }

    #[test]
    fn formats_read_only_and_propagation_for_oci_and_docker() {
        let m = vec![
            ContainerMount {
                destination: "/cache".into(),
                source: "/r/pods/u/volumes/kubernetes.io~empty-dir/cache".into(),
                read_only: false,
                propagation: Propagation::Private,
            },
            ContainerMount {
                destination: "/etc/config".into(),
                source: "/r/c".into(),
                read_only: true,
                propagation: Propagation::HostToContainer,
            },
        ];
        assert_eq!(to_oci(&m)[1]["options"], serde_json::json!(["rbind", "ro", "rslave"]));
        assert_eq!(
            to_docker(&m),
            ["-v", "/r/pods/u/volumes/kubernetes.io~empty-dir/cache:/cache", "-v", "/r/c:/etc/config:ro,rslave"]
        );
    }
}
