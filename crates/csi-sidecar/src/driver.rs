//! The CSI driver as the controller roles see it: its name and capabilities (asked once at start), and
//! the controller calls with a per-call timeout, their replies validated before anything trusts them.

use std::collections::HashMap;
use std::time::Duration;

use kvol_csi::v1::{
    controller_client::ControllerClient, controller_service_capability, identity_client::IdentityClient,
    plugin_capability, ControllerExpandVolumeRequest, ControllerGetCapabilitiesRequest, ControllerPublishVolumeRequest,
    ControllerUnpublishVolumeRequest, CreateVolumeRequest, DeleteVolumeRequest, GetPluginCapabilitiesRequest,
    GetPluginInfoRequest, Topology,
};
use tonic::transport::Channel;

use crate::error::{Error, Result};

/// What the driver said about itself at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Plugin capability CONTROLLER_SERVICE.
    pub controller_service: bool,
    /// Plugin capability VOLUME_ACCESSIBILITY_CONSTRAINTS (topology).
    pub accessibility_constraints: bool,
    /// Controller CREATE_DELETE_VOLUME.
    pub create_delete_volume: bool,
    /// Controller PUBLISH_UNPUBLISH_VOLUME.
    pub publish_unpublish_volume: bool,
    /// Controller PUBLISH_READONLY.
    pub publish_readonly: bool,
    /// Controller EXPAND_VOLUME.
    pub expand_volume: bool,
    /// Controller SINGLE_NODE_MULTI_WRITER (the new single-node access modes).
    pub single_node_multi_writer: bool,
}

/// A volume the driver created, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedVolume {
    /// The driver's volume id (non-empty).
    pub volume_id: String,
    /// Its capacity in bytes (0 = the driver did not say).
    pub capacity_bytes: i64,
    /// `volume_context`: becomes the PV's `volumeAttributes`.
    pub volume_context: HashMap<String, String>,
    /// Where the volume can be reached from.
    pub accessible_topology: Vec<Topology>,
}

/// A connected CSI driver.
#[derive(Clone)]
pub struct Driver {
    /// GetPluginInfo's name, e.g. `csi.kvol.io`.
    pub name: String,
    /// GetPluginInfo's vendor_version.
    pub vendor_version: String,
    /// What it can do.
    pub caps: Capabilities,
    channel: Channel,
    timeout: Duration,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("name", &self.name).field("caps", &self.caps).finish()
    }
}

/// Runs one call with the timeout; the status or the timeout becomes an [`Error`] naming `call` and `object`.
async fn call<T>(
    call: &'static str,
    object: &str,
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(reply)) => Ok(reply.into_inner()),
        Ok(Err(status)) => Err(Error::Driver { call, object: object.to_owned(), status }),
        Err(_) => Err(Error::Timeout { call, object: object.to_owned(), timeout }),
    }
}

impl Driver {
    /// Connects to `endpoint` (lazily: the driver may start later or restart) and asks GetPluginInfo,
    /// GetPluginCapabilities and ControllerGetCapabilities, retrying until the driver answers or
    /// `give_up_after` passes.
    pub async fn connect(endpoint: &str, timeout: Duration, give_up_after: Duration) -> Result<Driver> {
        let channel = kvol_csi::connect_lazy(endpoint)
            .map_err(|source| Error::Connect { endpoint: endpoint.to_owned(), source })?;
        let deadline = tokio::time::Instant::now() + give_up_after;
        loop {
            match Driver::probe(channel.clone(), timeout).await {
                Ok(driver) => return Ok(driver),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(endpoint, error = %e, "waiting for the CSI driver");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Asks the driver for its name and capabilities over `channel`.
    pub async fn probe(channel: Channel, timeout: Duration) -> Result<Driver> {
        let mut identity = IdentityClient::new(channel.clone());
        let info =
            call("GetPluginInfo", "the driver", timeout, identity.get_plugin_info(GetPluginInfoRequest {})).await?;
        if info.name.is_empty() {
            return Err(Error::BadReply {
                call: "GetPluginInfo",
                object: "the driver".into(),
                reason: "name is empty (REQUIRED)".into(),
            });
        }
        let plugin = call(
            "GetPluginCapabilities",
            &info.name,
            timeout,
            identity.get_plugin_capabilities(GetPluginCapabilitiesRequest {}),
        )
        .await?;
        let mut caps = Capabilities::default();
        for cap in plugin.capabilities {
            if let Some(plugin_capability::Type::Service(s)) = cap.r#type {
                match plugin_capability::service::Type::try_from(s.r#type) {
                    Ok(plugin_capability::service::Type::ControllerService) => caps.controller_service = true,
                    Ok(plugin_capability::service::Type::VolumeAccessibilityConstraints) => {
                        caps.accessibility_constraints = true
                    }
                    _ => {}
                }
            }
        }
        if caps.controller_service {
            let mut controller = ControllerClient::new(channel.clone());
            let reply = call(
                "ControllerGetCapabilities",
                &info.name,
                timeout,
                controller.controller_get_capabilities(ControllerGetCapabilitiesRequest {}),
            )
            .await?;
            use controller_service_capability::rpc::Type;
            for cap in reply.capabilities {
                if let Some(controller_service_capability::Type::Rpc(rpc)) = cap.r#type {
                    match Type::try_from(rpc.r#type) {
                        Ok(Type::CreateDeleteVolume) => caps.create_delete_volume = true,
                        Ok(Type::PublishUnpublishVolume) => caps.publish_unpublish_volume = true,
                        Ok(Type::PublishReadonly) => caps.publish_readonly = true,
                        Ok(Type::ExpandVolume) => caps.expand_volume = true,
                        Ok(Type::SingleNodeMultiWriter) => caps.single_node_multi_writer = true,
                        _ => {}
                    }
                }
            }
        }
        Ok(Driver { name: info.name, vendor_version: info.vendor_version, caps, channel, timeout })
    }

    fn controller(&self) -> ControllerClient<Channel> {
        ControllerClient::new(self.channel.clone())
    }

    /// CreateVolume for `object` (the claim); the reply is validated.
    pub async fn create_volume(&self, object: &str, req: CreateVolumeRequest) -> Result<CreatedVolume> {
        const CALL: &str = "CreateVolume";
        let reply = call(CALL, object, self.timeout, self.controller().create_volume(req)).await?;
        let bad = |reason: &str| Error::BadReply { call: CALL, object: object.to_owned(), reason: reason.to_owned() };
        let volume = reply.volume.ok_or_else(|| bad("volume is missing"))?;
        if volume.volume_id.is_empty() {
            return Err(bad("volume.volume_id is empty"));
        }
        if volume.capacity_bytes < 0 {
            return Err(bad(&format!("volume.capacity_bytes is negative ({})", volume.capacity_bytes)));
        }
        Ok(CreatedVolume {
            volume_id: volume.volume_id,
            capacity_bytes: volume.capacity_bytes,
            volume_context: volume.volume_context,
            accessible_topology: volume.accessible_topology,
        })
    }

    /// DeleteVolume for `object` (the PV). The spec makes a missing volume OK; a NOT_FOUND from a
    /// driver that answers it anyway also counts as deleted.
    pub async fn delete_volume(&self, object: &str, req: DeleteVolumeRequest) -> Result<()> {
        match call("DeleteVolume", object, self.timeout, self.controller().delete_volume(req)).await {
            Err(e) if e.is_driver_not_found() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// ControllerPublishVolume for `object` (the VolumeAttachment): the publish context.
    pub async fn publish(&self, object: &str, req: ControllerPublishVolumeRequest) -> Result<HashMap<String, String>> {
        call("ControllerPublishVolume", object, self.timeout, self.controller().controller_publish_volume(req))
            .await
            .map(|r| r.publish_context)
    }

    /// ControllerUnpublishVolume for `object`. NOT_FOUND (volume or node gone) counts as unpublished.
    pub async fn unpublish(&self, object: &str, req: ControllerUnpublishVolumeRequest) -> Result<()> {
        match call(
            "ControllerUnpublishVolume",
            object,
            self.timeout,
            self.controller().controller_unpublish_volume(req),
        )
        .await
        {
            Err(e) if e.is_driver_not_found() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// ControllerExpandVolume for `object` (the claim): (capacity bytes, node expansion required).
    pub async fn expand(&self, object: &str, req: ControllerExpandVolumeRequest) -> Result<(i64, bool)> {
        let reply =
            call("ControllerExpandVolume", object, self.timeout, self.controller().controller_expand_volume(req))
                .await?;
        if reply.capacity_bytes < 0 {
            return Err(Error::BadReply {
                call: "ControllerExpandVolume",
                object: object.to_owned(),
                reason: format!("capacity_bytes is negative ({})", reply.capacity_bytes),
            });
        }
        Ok((reply.capacity_bytes, reply.node_expansion_required))
    }
}
