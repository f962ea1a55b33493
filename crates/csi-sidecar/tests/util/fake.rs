//! A misbehaving CSI driver served in-process, for what a real driver should never do: it answers
//! CreateVolume OK with an empty volume_id, and has no PUBLISH_UNPUBLISH_VOLUME capability. Needs no
//! root, so these tests run everywhere.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use kvol_csi::v1::{
    controller_server::{Controller, ControllerServer},
    controller_service_capability,
    identity_server::{Identity, IdentityServer},
    plugin_capability, *,
};
use tonic::{Request, Response, Status};

/// Counts of the calls the fake saw.
#[derive(Default)]
pub struct Calls {
    pub create: AtomicU32,
    pub publish: AtomicU32,
}

#[derive(Clone)]
pub struct Fake {
    pub name: String,
    pub calls: Arc<Calls>,
}

#[tonic::async_trait]
impl Identity for Fake {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: self.name.clone(),
            vendor_version: "0.0.1".into(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        use plugin_capability::{service::Type, Service, Type as T};
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: vec![PluginCapability {
                r#type: Some(T::Service(Service { r#type: Type::ControllerService as i32 })),
            }],
        }))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}

#[tonic::async_trait]
impl Controller for Fake {
    async fn create_volume(&self, _: Request<CreateVolumeRequest>) -> Result<Response<CreateVolumeResponse>, Status> {
        self.calls.create.fetch_add(1, Ordering::SeqCst);
        // The bug: OK, but no volume id.
        Ok(Response::new(CreateVolumeResponse {
            volume: Some(Volume { capacity_bytes: 1 << 30, volume_id: String::new(), ..Default::default() }),
        }))
    }

    async fn controller_publish_volume(
        &self,
        _: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        self.calls.publish.fetch_add(1, Ordering::SeqCst);
        Err(Status::unimplemented("no PUBLISH_UNPUBLISH_VOLUME"))
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        use controller_service_capability::{rpc::Type, Rpc, Type as T};
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities: vec![ControllerServiceCapability {
                r#type: Some(T::Rpc(Rpc { r#type: Type::CreateDeleteVolume as i32 })),
            }],
        }))
    }

    async fn delete_volume(&self, _: Request<DeleteVolumeRequest>) -> Result<Response<DeleteVolumeResponse>, Status> {
        Err(Status::unimplemented("delete_volume is not implemented by the fake"))
    }

    async fn controller_unpublish_volume(
        &self,
        _: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        Err(Status::unimplemented("controller_unpublish_volume is not implemented by the fake"))
    }

    async fn validate_volume_capabilities(
        &self,
        _: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        Err(Status::unimplemented("validate_volume_capabilities is not implemented by the fake"))
    }

    async fn list_volumes(&self, _: Request<ListVolumesRequest>) -> Result<Response<ListVolumesResponse>, Status> {
        Err(Status::unimplemented("list_volumes is not implemented by the fake"))
    }

    async fn get_capacity(&self, _: Request<GetCapacityRequest>) -> Result<Response<GetCapacityResponse>, Status> {
        Err(Status::unimplemented("get_capacity is not implemented by the fake"))
    }

    async fn create_snapshot(
        &self,
        _: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        Err(Status::unimplemented("create_snapshot is not implemented by the fake"))
    }

    async fn delete_snapshot(
        &self,
        _: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        Err(Status::unimplemented("delete_snapshot is not implemented by the fake"))
    }

    async fn list_snapshots(
        &self,
        _: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        Err(Status::unimplemented("list_snapshots is not implemented by the fake"))
    }

    async fn get_snapshot(&self, _: Request<GetSnapshotRequest>) -> Result<Response<GetSnapshotResponse>, Status> {
        Err(Status::unimplemented("get_snapshot is not implemented by the fake"))
    }

    async fn controller_expand_volume(
        &self,
        _: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        Err(Status::unimplemented("controller_expand_volume is not implemented by the fake"))
    }

    async fn controller_get_volume(
        &self,
        _: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        Err(Status::unimplemented("controller_get_volume is not implemented by the fake"))
    }

    async fn controller_modify_volume(
        &self,
        _: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        Err(Status::unimplemented("controller_modify_volume is not implemented by the fake"))
    }
}

/// Serves the fake on `socket` until the returned sender is dropped or fired.
pub fn serve(socket: &Path, fake: Fake) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(fake.clone()))
        .add_service(ControllerServer::new(fake));
    let socket = socket.to_owned();
    tokio::spawn(async move {
        let _ = kvol_csi::serve_unix(&socket, router, async {
            let _ = stopped.await;
        })
        .await;
    });
    stop
}
