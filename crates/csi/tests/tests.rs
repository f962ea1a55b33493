//! The unix-socket helpers end to end: serve_unix + connect, with a real Identity and Registration
//! service.

use std::os::unix::fs::PermissionsExt;

use kvol_csi::pluginregistration::{
    registration_client::RegistrationClient,
    registration_server::{Registration, RegistrationServer},
    InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
};
use kvol_csi::v1::{
    identity_client::IdentityClient,
    identity_server::{Identity, IdentityServer},
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest, GetPluginInfoResponse,
    ProbeRequest, ProbeResponse,
};
use tonic::{Request, Response, Status};

struct Plugin;

#[tonic::async_trait]
impl Identity for Plugin {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: "test.kvol.io".into(),
            vendor_version: "1".into(),
            manifest: Default::default(),
        }))
    }
    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        Ok(Response::new(GetPluginCapabilitiesResponse::default()))
    }
    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        Err(Status::failed_precondition("not ready"))
    }
}

#[tonic::async_trait]
impl Registration for Plugin {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        Ok(Response::new(PluginInfo {
            r#type: "CSIPlugin".into(),
            name: "test.kvol.io".into(),
            endpoint: "/csi/csi.sock".into(),
            supported_versions: vec!["1.0.0".into()],
        }))
    }
    async fn notify_registration_status(
        &self,
        req: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        assert!(req.into_inner().plugin_registered);
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}

#[tokio::test]
async fn a_client_reaches_a_server_on_a_unix_socket_which_is_removed_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sub/csi.sock");
    // A stale socket from an earlier run is replaced.
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(Plugin))
        .add_service(RegistrationServer::new(Plugin));
    let path = socket.clone();
    let server = tokio::spawn(async move {
        kvol_csi::serve_unix(&path, router, async {
            let _ = stopped.await;
        })
        .await
    });
    while kvol_csi::connect(&format!("unix://{}", socket.display())).await.is_err() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o660);

    let channel = kvol_csi::connect(socket.to_str().unwrap()).await.unwrap();
    let info =
        IdentityClient::new(channel.clone()).get_plugin_info(GetPluginInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.name, "test.kvol.io");
    let err = IdentityClient::new(channel.clone()).probe(ProbeRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let lazy = kvol_csi::connect_lazy(&format!("unix:{}", socket.display())).unwrap();
    let plugin = RegistrationClient::new(lazy).get_info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(plugin.supported_versions, vec!["1.0.0".to_string()]);
    RegistrationClient::new(channel)
        .notify_registration_status(RegistrationStatus { plugin_registered: true, error: String::new() })
        .await
        .unwrap();

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(!socket.exists(), "the socket is removed at shutdown");
}

#[tokio::test]
async fn serve_unix_refuses_to_replace_a_regular_file_and_connect_refuses_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"data").unwrap();
    let router = tonic::transport::Server::builder().add_service(IdentityServer::new(Plugin));
    let err = kvol_csi::serve_unix(&file, router, async {}).await.unwrap_err();
    assert!(matches!(err, kvol_csi::Error::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"data");
    assert!(matches!(kvol_csi::connect("tcp://127.0.0.1:1").await, Err(kvol_csi::Error::Endpoint { .. })));
    assert!(kvol_csi::connect(dir.path().join("nobody.sock").to_str().unwrap()).await.is_err());
}
