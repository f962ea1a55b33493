//! secret (`pkg/volume/secret/secret.go`): like configMap, but on a tmpfs so the data never reaches a
//! disk, and never logged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::SecretVolumeSource;

use super::names::SECRET;
use super::projection::{make_payload, Kind, Projected, DEFAULT_MODE};
use crate::error::{Error, Result};
use crate::host::VolumeHost;
use crate::plugin::{Mounter, MounterArgs, PodRef, Unmounter, VolumePlugin};
use crate::spec::VolumeSpec;

/// The secret plugin.
pub struct SecretPlugin;

const KIND: Kind = Kind { kind: "secret", what: "secret" };

fn source(spec: &VolumeSpec) -> Option<&SecretVolumeSource> {
    spec.inline().and_then(|v| v.secret.as_ref())
}

impl VolumePlugin for SecretPlugin {
    fn name(&self) -> &str {
        SECRET
    }

    fn can_support(&self, spec: &VolumeSpec) -> bool {
        source(spec).is_some()
    }

    fn volume_name(&self, spec: &VolumeSpec) -> Result<String> {
        Ok(spec.name().to_string())
    }

    fn new_mounter(&self, spec: &VolumeSpec, pod: &PodRef, host: &Arc<dyn VolumeHost>) -> Result<Box<dyn Mounter>> {
        let source = source(spec)
            .ok_or_else(|| Error::InvalidSpec { volume: spec.name().into(), reason: "not a secret volume".into() })?;
        Ok(Box::new(SecretVolume {
            projected: Projected {
                path: host.pod_volume_dir(&pod.uid, SECRET, spec.name()),
                memory: true,
                mounter: host.mounter(),
                log_context: format!("{}/{} volume {}", pod.namespace, pod.name, spec.name()),
            },
            source: source.clone(),
            namespace: pod.namespace.clone(),
            host: Arc::clone(host),
        }))
    }

    fn new_unmounter(&self, spec_name: &str, pod_uid: &str, host: &Arc<dyn VolumeHost>) -> Result<Box<dyn Unmounter>> {
        Ok(Box::new(Projected {
            path: host.pod_volume_dir(pod_uid, SECRET, spec_name),
            memory: true,
            mounter: host.mounter(),
            log_context: String::new(),
        }))
    }

    fn requires_remount(&self, _spec: &VolumeSpec) -> bool {
        true
    }

    fn is_mount_backed(&self, _spec: Option<&VolumeSpec>) -> bool {
        true
    }
}

struct SecretVolume {
    projected: Projected,
    source: SecretVolumeSource,
    namespace: String,
    host: Arc<dyn VolumeHost>,
}

impl Mounter for SecretVolume {
    fn path(&self) -> PathBuf {
        self.projected.path.clone()
    }

    fn set_up(&self, args: &MounterArgs) -> Result<()> {
        let optional = self.source.optional.unwrap_or(false);
        let name = self.source.secret_name.clone().unwrap_or_default();
        let data: BTreeMap<String, Vec<u8>> = match self.host.secret(&self.namespace, &name)? {
            Some(secret) => {
                let mut data: BTreeMap<_, _> =
                    secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                // stringData is write-only in the API, but a client-built object may still carry it.
                data.extend(secret.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())));
                data
            }
            None if optional => BTreeMap::new(),
            None => return Err(Error::ObjectNotFound { resource: "secrets", name }),
        };
        let payload = make_payload(
            KIND,
            self.source.items.as_deref().unwrap_or_default(),
            &data,
            self.source.default_mode.unwrap_or(DEFAULT_MODE),
            optional,
        )?;
        self.projected.prepare()?;
        self.projected.write(&payload, args)
    }

    fn read_only(&self) -> bool {
        true
    }
}
