//! The agent's [`VolumeHost`]: the root, the mounter, and ConfigMaps and Secrets from watch caches.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::reflector::{ObjectRef, Store};
use kvol_volume::{Error, Result, VolumeHost};

/// ConfigMaps and Secrets come from reflector stores the agent keeps synced; until they are, lookups
/// fail (transiently) rather than report "not found".
pub struct AgentHost {
    root: PathBuf,
    mounter: Arc<dyn kvol_mount::Mounter>,
    config_maps: Option<Store<ConfigMap>>,
    secrets: Option<Store<Secret>>,
}

impl AgentHost {
    /// A host over `root` and `mounter`, with the object caches.
    pub fn new(
        root: PathBuf,
        mounter: Arc<dyn kvol_mount::Mounter>,
        config_maps: Option<Store<ConfigMap>>,
        secrets: Option<Store<Secret>>,
    ) -> Self {
        AgentHost { root, mounter, config_maps, secrets }
    }
}

fn lookup<K>(store: &Option<Store<K>>, resource: &'static str, namespace: &str, name: &str) -> Result<Option<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let store = store.as_ref().ok_or_else(|| Error::ObjectUnavailable {
        resource,
        namespace: namespace.into(),
        name: name.into(),
        reason: "no cache".into(),
    })?;
    Ok(store.get(&ObjectRef::new(name).within(namespace)).map(|o| (*o).clone()))
}

impl VolumeHost for AgentHost {
    fn root_dir(&self) -> &Path {
        &self.root
    }

    fn mounter(&self) -> Arc<dyn kvol_mount::Mounter> {
        Arc::clone(&self.mounter)
    }

    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>> {
        lookup(&self.config_maps, "configmaps", namespace, name)
    }

    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>> {
        lookup(&self.secrets, "secrets", namespace, name)
    }
}
