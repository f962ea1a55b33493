//! configMap (`pkg/volume/configmap/configmap.go`): a ConfigMap's keys projected as files by the atomic
//! writer into a directory, and refreshed in place when the ConfigMap changes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMapVolumeSource;

use super::names::CONFIG_MAP;
use super::projection::{make_payload, Kind, Projected, DEFAULT_MODE};
use crate::error::{Error, Result};
use crate::host::VolumeHost;
use crate::plugin::{Mounter, MounterArgs, PodRef, Unmounter, VolumePlugin};
use crate::spec::VolumeSpec;

/// The configMap plugin.
pub struct ConfigMapPlugin;

const KIND: Kind = Kind { kind: "configmap", what: "config" };

fn source(spec: &VolumeSpec) -> Option<&ConfigMapVolumeSource> {
    spec.inline().and_then(|v| v.config_map.as_ref())
}

impl VolumePlugin for ConfigMapPlugin {
    fn name(&self) -> &str {
        CONFIG_MAP
    }

    fn can_support(&self, spec: &VolumeSpec) -> bool {
        source(spec).is_some()
    }

    fn volume_name(&self, spec: &VolumeSpec) -> Result<String> {
        Ok(spec.name().to_string())
    }

    fn new_mounter(&self, spec: &VolumeSpec, pod: &PodRef, host: &Arc<dyn VolumeHost>) -> Result<Box<dyn Mounter>> {
        let source = source(spec).ok_or_else(|| Error::InvalidSpec {
            volume: spec.name().into(),
            reason: "not a configMap volume".into(),
        })?;
        let path = host.pod_volume_dir(&pod.uid, CONFIG_MAP, spec.name());
        Ok(Box::new(ConfigMapVolume {
            projected: Projected {
                path,
                memory: false,
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
            path: host.pod_volume_dir(pod_uid, CONFIG_MAP, spec_name),
            memory: false,
            mounter: host.mounter(),
            log_context: String::new(),
        }))
    }

    fn requires_remount(&self, _spec: &VolumeSpec) -> bool {
        true
    }
}

struct ConfigMapVolume {
    projected: Projected,
    source: ConfigMapVolumeSource,
    namespace: String,
    host: Arc<dyn VolumeHost>,
}

impl Mounter for ConfigMapVolume {
    fn path(&self) -> PathBuf {
        self.projected.path.clone()
    }

    fn set_up(&self, args: &MounterArgs) -> Result<()> {
        let optional = self.source.optional.unwrap_or(false);
        let data: BTreeMap<String, Vec<u8>> = match self.host.config_map(&self.namespace, &self.source.name)? {
            Some(cm) => {
                let mut data: BTreeMap<_, _> =
                    cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
                data.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
                data
            }
            None if optional => BTreeMap::new(),
            None => return Err(Error::ObjectNotFound { resource: "configmaps", name: self.source.name.clone() }),
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

impl Unmounter for Projected {
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    fn tear_down(&self) -> Result<()> {
        Projected::tear_down(self)
    }
}
