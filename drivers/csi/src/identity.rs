//! The Identity service.

use std::sync::Arc;

use kvol_csi::v1::{
    identity_server::Identity, plugin_capability, GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse,
    GetPluginInfoRequest, GetPluginInfoResponse, PluginCapability, ProbeRequest, ProbeResponse,
};
use tonic::{Request, Response, Status};

use crate::driver::{blocking, Driver};

/// Identity: who the plugin is, what it serves, whether it is ready.
pub struct IdentityService {
    driver: Arc<Driver>,
    controller: bool,
}

impl IdentityService {
    /// `controller` says whether this process serves the Controller service (mode controller/all).
    pub fn new(driver: Arc<Driver>, controller: bool) -> Self {
        IdentityService { driver, controller }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: self.driver.name.clone(),
            vendor_version: env!("CARGO_PKG_VERSION").to_owned(),
            manifest: [("backend".to_owned(), self.driver.backend.name().to_owned())].into(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        use plugin_capability::{service, volume_expansion, Service, Type, VolumeExpansion};
        let service = |t: service::Type| PluginCapability { r#type: Some(Type::Service(Service { r#type: t as i32 })) };
        let mut capabilities = vec![service(service::Type::VolumeAccessibilityConstraints)];
        if self.controller {
            capabilities.insert(0, service(service::Type::ControllerService));
        }
        capabilities.push(PluginCapability {
            r#type: Some(Type::VolumeExpansion(VolumeExpansion { r#type: volume_expansion::Type::Online as i32 })),
        });
        Ok(Response::new(GetPluginCapabilitiesResponse { capabilities }))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        let backend = self.driver.backend.clone();
        blocking(move || backend.check()).await?;
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}
