//! The node's own attach and detach of a CSI volume (kubelet's `csiAttacher` Attach and Detach, which
//! kubelet runs itself with `--enable-controller-attach-detach=false`): the agent creates (or adopts) the
//! VolumeAttachment `csi-<sha256(handle + driver + node)>` and waits for the driver's external attacher to
//! set `status.attached`; to detach it deletes the VolumeAttachment and waits until the attacher has
//! removed its finalizer (after ControllerUnpublishVolume) and the object is gone. Both waits poll the API
//! server through the [`VolumeHost`], with a growing pause, up to the plugin's call timeout (kubelet's
//! `csiTimeout`).

use std::time::{Duration, Instant};

use k8s_openapi::api::storage::v1::{VolumeAttachment, VolumeAttachmentSource, VolumeAttachmentSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::names;
use super::{attach_required, csi_driver, persistent_ids, CsiError, CsiPlugin, Source};
use crate::error::{Error, Result};
use crate::host::VolumeHost;
use crate::plugin::NodeAttachablePlugin;
use crate::spec::VolumeSpec;

impl NodeAttachablePlugin for CsiPlugin {
    /// Creates the VolumeAttachment for the PV on this node (`spec.attacher` the driver, `spec.nodeName` the
    /// node, `spec.source.persistentVolumeName` the PV), adopting one that exists, then waits for
    /// `status.attached`; returns the attachment's name. Volumes whose CSIDriver says `attachRequired: false`
    /// and inline volumes are not attached.
    fn attach(&self, spec: &VolumeSpec, host: &dyn VolumeHost) -> Result<String> {
        let Source::Persistent { csi, .. } = Source::of(spec)? else { return Ok(String::new()) };
        let (driver, handle) = persistent_ids(spec, csi)?;
        if !attach_required(csi_driver(host, driver)?.as_ref()) {
            return Ok(String::new());
        }
        let node = host.node_name();
        let name = names::attachment_name(handle, driver, node);
        let attachment = VolumeAttachment {
            metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
            spec: VolumeAttachmentSpec {
                attacher: driver.to_string(),
                node_name: node.to_string(),
                source: VolumeAttachmentSource {
                    persistent_volume_name: Some(spec.name().to_string()),
                    ..Default::default()
                },
            },
            status: None,
        };
        let written = host.create_volume_attachment(&attachment)?;
        tracing::info!(attachment = %name, %driver, volume = %handle, %node, "VolumeAttachment created or adopted; waiting for its attacher");
        wait_attached(host, &name, handle, self.config.call_timeout)?;
        Ok(written.metadata.name.unwrap_or(name))
    }

    /// Deletes the VolumeAttachment of `unique_name` on this node and waits until it is gone, failing with
    /// its `status.detachError` when the attacher reports one. None there is success.
    fn detach(&self, unique_name: &str, host: &dyn VolumeHost) -> Result<()> {
        let (driver, handle) = names::split_unique_name(unique_name).ok_or_else(|| Error::InvalidSpec {
            volume: unique_name.into(),
            reason: "not a CSI unique volume name".into(),
        })?;
        let name = names::attachment_name(handle, driver, host.node_name());
        if host.delete_volume_attachment(&name)?.is_none() {
            return Ok(());
        }
        tracing::info!(attachment = %name, %driver, volume = %handle, "VolumeAttachment deleted; waiting for its attacher");
        wait_detached(host, &name, handle, self.config.call_timeout)
    }
}

/// Polls the VolumeAttachment `name` until `status.attached` (success), its `attachError` (fails with its
/// message), its deletion (fails: the next attempt creates it again), or `timeout`.
pub(super) fn wait_attached(host: &dyn VolumeHost, name: &str, handle: &str, timeout: Duration) -> Result<()> {
    let failure = |reason: String| CsiError::Attach { attachment: name.into(), volume: handle.into(), reason };
    poll(timeout, || match host.volume_attachment(name)? {
        None => Ok(Err("no VolumeAttachment found".to_string())),
        Some(va) if va.metadata.deletion_timestamp.is_some() => {
            Err(failure("volume attachment is being deleted".into()).into())
        }
        Some(va) => {
            let status = va.status.unwrap_or_default();
            if status.attached {
                return Ok(Ok(()));
            }
            if let Some(message) = status.attach_error.and_then(|e| e.message) {
                return Err(failure(message).into());
            }
            Ok(Err("not attached yet".to_string()))
        }
    })
    .map_err(|e| match e {
        Waited::Out(reason) => failure(format!("{reason} after {timeout:?}")).into(),
        Waited::Failed(e) => e,
    })
}

/// Polls the VolumeAttachment `name` until it is gone (success), its `detachError` (fails with its
/// message), or `timeout`.
fn wait_detached(host: &dyn VolumeHost, name: &str, handle: &str, timeout: Duration) -> Result<()> {
    let failure = |reason: String| CsiError::Detach { attachment: name.into(), volume: handle.into(), reason };
    poll(timeout, || match host.volume_attachment(name)? {
        None => Ok(Ok(())),
        Some(va) => match va.status.and_then(|s| s.detach_error).and_then(|e| e.message) {
            Some(message) => Err(failure(message).into()),
            None => Ok(Err("still present".to_string())),
        },
    })
    .map_err(|e| match e {
        Waited::Out(reason) => failure(format!("{reason} after {timeout:?}")).into(),
        Waited::Failed(e) => e,
    })
}

/// How a poll ended without success.
enum Waited {
    /// The time ran out; the last reason it was not done.
    Out(String),
    /// A check failed for good.
    Failed(Error),
}

/// Runs `check` until it answers `Ok(Ok(()))`, fails, or `timeout` passes, pausing 100 ms doubling to 1 s
/// in between. `Ok(Err(reason))` means not done yet.
fn poll(timeout: Duration, mut check: impl FnMut() -> Result<Result<(), String>>) -> Result<(), Waited> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(100);
    loop {
        let reason = match check().map_err(Waited::Failed)? {
            Ok(()) => return Ok(()),
            Err(reason) => reason,
        };
        if Instant::now() + pause > deadline {
            return Err(Waited::Out(reason));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{
        CSIPersistentVolumeSource, ConfigMap, PersistentVolume, PersistentVolumeSpec, Secret,
    };
    use k8s_openapi::api::storage::v1::{VolumeAttachmentStatus, VolumeError};
    use parking_lot::Mutex;

    use super::*;
    use crate::plugins::csi::{CsiConfig, CsiDrivers};

    /// A host whose attacher answers every created attachment with `answer`, and keeps a deleted one
    /// with `detach_error` while that is set.
    struct Host {
        root: PathBuf,
        attachments: Mutex<Vec<VolumeAttachment>>,
        answer: VolumeAttachmentStatus,
        detach_error: Option<String>,
    }

    impl VolumeHost for Host {
        fn root_dir(&self) -> &Path {
            &self.root
        }
        fn mounter(&self) -> Arc<dyn kvol_mount::Mounter> {
            Arc::new(kvol_mount::FakeMounter::new())
        }
        fn config_map(&self, _: &str, _: &str) -> Result<Option<ConfigMap>> {
            Ok(None)
        }
        fn secret(&self, _: &str, _: &str) -> Result<Option<Secret>> {
            Ok(None)
        }
        fn node_name(&self) -> &str {
            "n1"
        }
        fn csi_driver(&self, _: &str) -> Result<Option<k8s_openapi::api::storage::v1::CSIDriver>> {
            Ok(None)
        }
        fn volume_attachment(&self, name: &str) -> Result<Option<VolumeAttachment>> {
            Ok(self.attachments.lock().iter().find(|a| a.metadata.name.as_deref() == Some(name)).cloned())
        }
        fn create_volume_attachment(&self, attachment: &VolumeAttachment) -> Result<VolumeAttachment> {
            let mut all = self.attachments.lock();
            if let Some(existing) = all.iter().find(|a| a.metadata.name == attachment.metadata.name) {
                return Ok(existing.clone());
            }
            let created = VolumeAttachment { status: Some(self.answer.clone()), ..attachment.clone() };
            all.push(created.clone());
            Ok(created)
        }
        fn delete_volume_attachment(&self, name: &str) -> Result<Option<VolumeAttachment>> {
            let mut all = self.attachments.lock();
            let Some(at) = all.iter().position(|a| a.metadata.name.as_deref() == Some(name)) else { return Ok(None) };
            match &self.detach_error {
                None => {
                    all.remove(at);
                    Ok(None)
                }
                Some(message) => {
                    let status = all[at].status.get_or_insert_with(Default::default);
                    status.detach_error = Some(VolumeError { message: Some(message.clone()), ..Default::default() });
                    Ok(Some(all[at].clone()))
                }
            }
        }
    }

    fn host(answer: VolumeAttachmentStatus, detach_error: Option<&str>) -> Host {
        Host {
            root: PathBuf::from("/nonexistent"),
            attachments: Mutex::new(Vec::new()),
            answer,
            detach_error: detach_error.map(str::to_owned),
        }
    }

    fn pv() -> VolumeSpec {
        let mut pv = PersistentVolume::default();
        pv.metadata.name = Some("pv-1".into());
        pv.spec = Some(PersistentVolumeSpec {
            csi: Some(CSIPersistentVolumeSource {
                driver: "csi.kvol.io".into(),
                volume_handle: "h1".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        VolumeSpec::Persistent { pv: Box::new(pv), read_only: false }
    }

    fn plugin(rt: &tokio::runtime::Runtime) -> CsiPlugin {
        let config = CsiConfig { call_timeout: Duration::from_millis(300), ..Default::default() };
        CsiPlugin::new(CsiDrivers::new(), rt.handle().clone()).with_config(config)
    }

    #[test]
    fn attach_creates_the_kubelet_named_attachment_waits_for_it_and_detach_deletes_it() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let plugin = plugin(&rt);
        let host = host(VolumeAttachmentStatus { attached: true, ..Default::default() }, None);
        let name = names::attachment_name("h1", "csi.kvol.io", "n1");
        assert_eq!(plugin.attach(&pv(), &host).unwrap(), name);
        let va = host.volume_attachment(&name).unwrap().expect("the VolumeAttachment");
        assert_eq!(va.spec.attacher, "csi.kvol.io");
        assert_eq!(va.spec.node_name, "n1");
        assert_eq!(va.spec.source.persistent_volume_name.as_deref(), Some("pv-1"));
        assert_eq!(plugin.attach(&pv(), &host).unwrap(), name, "an existing attachment is adopted");
        assert_eq!(host.attachments.lock().len(), 1);
        let unique = names::unique_name("csi.kvol.io", "h1");
        plugin.detach(&unique, &host).unwrap();
        assert!(host.volume_attachment(&name).unwrap().is_none());
        plugin.detach(&unique, &host).unwrap();
    }

    #[test]
    fn the_attachers_errors_and_a_timeout_fail_the_attach_and_the_detach() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let plugin = plugin(&rt);
        let refused = VolumeAttachmentStatus {
            attach_error: Some(VolumeError { message: Some("no such disk".into()), ..Default::default() }),
            ..Default::default()
        };
        let err = plugin.attach(&pv(), &host(refused, None)).unwrap_err();
        assert!(err.to_string().ends_with(": no such disk"), "{err}");

        let err = plugin.attach(&pv(), &host(VolumeAttachmentStatus::default(), None)).unwrap_err();
        assert!(err.to_string().contains("not attached yet after"), "{err}");

        let host = host(VolumeAttachmentStatus { attached: true, ..Default::default() }, Some("still published"));
        plugin.attach(&pv(), &host).unwrap();
        let err = plugin.detach(&names::unique_name("csi.kvol.io", "h1"), &host).unwrap_err();
        assert!(err.to_string().ends_with(": still published"), "{err}");
    }
}
