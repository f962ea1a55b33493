//! The agent's [`VolumeHost`]: the root, the mounter, ConfigMaps and Secrets from watch caches, and the
//! VolumeAttachments the agent writes itself when controller attach/detach is off.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use k8s_openapi::api::storage::v1::{CSIDriver, VolumeAttachment};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use kvol_volume::{Error, Result, VolumeHost};

/// ConfigMaps and Secrets come from reflector stores the agent keeps synced; until they are, lookups
/// fail (transiently) rather than report "not found".
pub struct AgentHost {
    root: PathBuf,
    mounter: Arc<dyn kvol_mount::Mounter>,
    config_maps: Option<Store<ConfigMap>>,
    secrets: Option<Store<Secret>>,
    api: Option<ApiAccess>,
}

/// What the host reads from the API server directly: objects whose latest state matters at the moment a
/// plugin asks (attachments), or that are too rarely needed to watch.
struct ApiAccess {
    node_name: String,
    client: Client,
    runtime: tokio::runtime::Handle,
    csi_drivers: Store<CSIDriver>,
}

impl AgentHost {
    /// A host over `root` and `mounter`, with the object caches.
    pub fn new(
        root: PathBuf,
        mounter: Arc<dyn kvol_mount::Mounter>,
        config_maps: Option<Store<ConfigMap>>,
        secrets: Option<Store<Secret>>,
    ) -> Self {
        AgentHost { root, mounter, config_maps, secrets, api: None }
    }

    /// Gives the host API access as node `node_name`: plugins get the node's attach status, VolumeAttachments,
    /// pods, and CSIDrivers from `csi_drivers`. Lookups block on `runtime`, so plugins must call them from
    /// the blocking pool (where all plugin work runs).
    pub fn with_api(
        mut self,
        node_name: String,
        client: Client,
        runtime: tokio::runtime::Handle,
        csi_drivers: Store<CSIDriver>,
    ) -> Self {
        self.api = Some(ApiAccess { node_name, client, runtime, csi_drivers });
        self
    }

    fn api(&self, resource: &'static str, namespace: &str, name: &str) -> Result<&ApiAccess> {
        self.api.as_ref().ok_or_else(|| Error::ObjectUnavailable {
            resource,
            namespace: namespace.into(),
            name: name.into(),
            reason: "no API access".into(),
        })
    }
}

/// Reads one object now; 404 is `None`.
fn get_now<K>(access: &ApiAccess, api: Api<K>, resource: &'static str, namespace: &str, name: &str) -> Result<Option<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    access.runtime.block_on(api.get_opt(name)).map_err(|e| Error::ObjectUnavailable {
        resource,
        namespace: namespace.into(),
        name: name.into(),
        reason: e.to_string(),
    })
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

    fn node_name(&self) -> &str {
        self.api.as_ref().map(|a| a.node_name.as_str()).unwrap_or_default()
    }

    fn csi_driver(&self, name: &str) -> Result<Option<CSIDriver>> {
        let access = self.api("csidrivers", "", name)?;
        Ok(access.csi_drivers.get(&ObjectRef::new(name)).map(|o| (*o).clone()))
    }

    fn volume_attachment(&self, name: &str) -> Result<Option<VolumeAttachment>> {
        let access = self.api("volumeattachments", "", name)?;
        get_now(access, Api::all(access.client.clone()), "volumeattachments", "", name)
    }

    fn create_volume_attachment(&self, attachment: &VolumeAttachment) -> Result<VolumeAttachment> {
        let name = attachment.metadata.name.as_deref().unwrap_or_default();
        let access = self.api("volumeattachments", "", name)?;
        let api: Api<VolumeAttachment> = Api::all(access.client.clone());
        let failed = |e: kube::Error| Error::ObjectUnavailable {
            resource: "volumeattachments",
            namespace: String::new(),
            name: name.into(),
            reason: e.to_string(),
        };
        access.runtime.block_on(async {
            match api.create(&PostParams::default(), attachment).await {
                Ok(created) => Ok(created),
                // Ours from an earlier attempt (or the controller's, before the node turned self-attaching).
                Err(kube::Error::Api(s)) if s.code == 409 => match api.get_opt(name).await.map_err(failed)? {
                    Some(existing) => Ok(existing),
                    None => Err(Error::ObjectUnavailable {
                        resource: "volumeattachments",
                        namespace: String::new(),
                        name: name.into(),
                        reason: "deleted while being created".into(),
                    }),
                },
                Err(e) => Err(failed(e)),
            }
        })
    }

    fn delete_volume_attachment(&self, name: &str) -> Result<Option<VolumeAttachment>> {
        let access = self.api("volumeattachments", "", name)?;
        let api: Api<VolumeAttachment> = Api::all(access.client.clone());
        // `Left` is the object when it is still there (a finalizer) or, from some servers, the deleted object.
        match access.runtime.block_on(api.delete(name, &DeleteParams::default())).map(|r| r.left()) {
            Ok(Some(remaining))
                if remaining.metadata.deletion_timestamp.is_some()
                    && remaining.metadata.finalizers.as_ref().is_some_and(|f| !f.is_empty()) =>
            {
                Ok(Some(remaining))
            }
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(Error::ObjectUnavailable {
                resource: "volumeattachments",
                namespace: String::new(),
                name: name.into(),
                reason: e.to_string(),
            }),
        }
    }

    fn attached_device_path(&self, unique_name: &str) -> Result<Option<String>> {
        let access = self.api("nodes", "", self.node_name())?;
        let node: Option<Node> = get_now(access, Api::all(access.client.clone()), "nodes", "", &access.node_name)?;
        Ok(node
            .and_then(|n| n.status)
            .and_then(|s| s.volumes_attached)
            .unwrap_or_default()
            .into_iter()
            .find(|a| a.name == unique_name)
            .map(|a| a.device_path))
    }

    fn pod(&self, namespace: &str, name: &str) -> Result<Option<Pod>> {
        let access = self.api("pods", namespace, name)?;
        get_now(access, Api::namespaced(access.client.clone(), namespace), "pods", namespace, name)
    }
}
