//! The registrar role (node-driver-registrar): tells a kubelet about a node's CSI driver by serving
//! kubelet's plugin-registration API (`pluginregistration.Registration`, v1) on
//! `<plugin-registration-path>/<driver>-reg.sock`, the socket kubelet's plugin watcher picks up.
//!
//! GetInfo answers `CSIPlugin`, the driver's name (from its GetPluginInfo), the driver socket's path as
//! kubelet sees it (`--kubelet-registration-path`) and the CSI versions `["1.0.0"]`. A
//! NotifyRegistrationStatus that reports failure ends [`run_registrar`] with an error (node-driver-registrar
//! exits so that its container restarts and registration is tried again).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use kvol_csi::pluginregistration::{
    registration_server::{Registration, RegistrationServer},
    InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::driver::Driver;
use crate::error::{Error, Result};

/// node-driver-registrar's settings, under its flag names.
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// `--csi-address`: where this process reaches the driver.
    pub csi_address: String,
    /// `--kubelet-registration-path`: the driver socket's path on the host, which kubelet dials.
    pub kubelet_registration_path: String,
    /// `--plugin-registration-path`: kubelet's plugins registry as mounted here (default `/registration`;
    /// on the host `/var/lib/kubelet/plugins_registry`).
    pub plugin_registration_path: PathBuf,
    /// `--timeout`: how long GetPluginInfo may take.
    pub timeout: Duration,
    /// How long to wait for the driver to answer at start.
    pub driver_wait: Duration,
}

impl RegistrarConfig {
    /// node-driver-registrar's defaults for the given addresses.
    pub fn new(csi_address: impl Into<String>, kubelet_registration_path: impl Into<String>) -> RegistrarConfig {
        RegistrarConfig {
            csi_address: csi_address.into(),
            kubelet_registration_path: kubelet_registration_path.into(),
            plugin_registration_path: PathBuf::from("/registration"),
            timeout: Duration::from_secs(1),
            driver_wait: Duration::from_secs(60),
        }
    }
}

struct Registrar {
    info: PluginInfo,
    failed: watch::Sender<Option<String>>,
}

#[tonic::async_trait]
impl Registration for Registrar {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        tracing::info!(driver = %self.info.name, "kubelet asked GetInfo");
        Ok(Response::new(self.info.clone()))
    }

    async fn notify_registration_status(
        &self,
        req: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        let status = req.into_inner();
        if status.plugin_registered {
            tracing::info!(driver = %self.info.name, "kubelet registered the plugin");
        } else {
            tracing::error!(driver = %self.info.name, error = %status.error, "registration failed; exiting so it is retried");
            let _ = self.failed.send(Some(status.error));
        }
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}

/// The registration socket's path for `driver`.
pub fn socket_path(config: &RegistrarConfig, driver: &str) -> PathBuf {
    config.plugin_registration_path.join(format!("{driver}-reg.sock"))
}

/// Serves registration for the driver at `config.csi_address` until `shutdown` resolves (Ok) or kubelet
/// reports a failed registration (Err). The socket is removed when it stops.
pub async fn run_registrar(config: RegistrarConfig, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let driver = Driver::connect(&config.csi_address, config.timeout, config.driver_wait).await?;
    let path = socket_path(&config, &driver.name);
    let (failed, mut failure) = watch::channel(None);
    let registrar = Registrar {
        info: PluginInfo {
            r#type: "CSIPlugin".into(),
            name: driver.name.clone(),
            endpoint: config.kubelet_registration_path.clone(),
            supported_versions: vec!["1.0.0".into()],
        },
        failed,
    };
    let router = tonic::transport::Server::builder().add_service(RegistrationServer::new(registrar));
    let mut failure_seen = failure.clone();
    let stop = async move {
        tokio::select! {
            () = shutdown => {}
            _ = failure_seen.wait_for(Option::is_some) => {}
        }
    };
    tracing::info!(driver = %driver.name, socket = %path.display(), endpoint = %config.kubelet_registration_path, "registrar serving");
    kvol_csi::serve_unix(&path, router, stop).await.map_err(Error::Serve)?;
    let reason = failure.borrow_and_update().clone();
    match reason {
        Some(error) => Err(Error::RegistrationFailed { driver: driver.name, error }),
        None => Ok(()),
    }
}
