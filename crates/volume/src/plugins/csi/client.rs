//! Synchronous calls into a registered driver's Node service, for plugin methods that run on the
//! blocking pool: each call runs on the agent's runtime through its [`Handle`], bounded by the per-call
//! timeout (kubelet's `csiTimeout`, 2 minutes), which the driver also sees as the gRPC deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kvol_csi::v1::node_client::NodeClient;
use kvol_csi::v1::{
    NodeExpandVolumeRequest, NodeGetCapabilitiesRequest, NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse,
    NodePublishVolumeRequest, NodeStageVolumeRequest, NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest,
};
use tokio::runtime::Handle;
use tonic::transport::Channel;

use super::drivers::{CsiDrivers, NodeCapabilities};
use super::error::CsiError;

/// One driver's Node service, reached from a blocking thread.
pub(crate) struct DriverClient {
    driver: String,
    channel: Channel,
    drivers: Arc<CsiDrivers>,
    runtime: Handle,
    timeout: Duration,
}

/// A request carrying the deadline, so the driver can give up when the caller does.
fn request<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.set_timeout(timeout);
    req
}

/// Runs one call with `timeout`, mapping a gRPC status or an expired deadline to a [`CsiError`].
pub(crate) async fn call_with_timeout<T, Fut>(
    call: &'static str,
    volume: &str,
    timeout: Duration,
    fut: Fut,
) -> Result<T, CsiError>
where
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let started = tokio::time::Instant::now();
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(CsiError::Timeout { call, volume: volume.into(), timeout }),
        // The channel enforces the request's deadline too, and may get there first: its
        // "Timeout expired" is the same expiry, not an answer from the driver.
        Ok(Err(status))
            if matches!(status.code(), tonic::Code::Cancelled | tonic::Code::DeadlineExceeded)
                && started.elapsed() >= timeout =>
        {
            Err(CsiError::Timeout { call, volume: volume.into(), timeout })
        }
        Ok(Err(status)) => Err(CsiError::Call {
            call,
            volume: volume.into(),
            code: status.code(),
            message: status.message().to_string(),
            timeout,
        }),
        Ok(Ok(response)) => Ok(response.into_inner()),
    }
}

impl DriverClient {
    /// A client for the registered driver `driver`; not registered is a transient error.
    pub(crate) fn new(
        drivers: &Arc<CsiDrivers>,
        driver: &str,
        runtime: &Handle,
        timeout: Duration,
    ) -> Result<DriverClient, CsiError> {
        Ok(DriverClient {
            driver: driver.to_string(),
            channel: drivers.channel(driver)?,
            drivers: Arc::clone(drivers),
            runtime: runtime.clone(),
            timeout,
        })
    }

    fn run<T, F, Fut>(&self, call: &'static str, volume: &str, f: F) -> Result<T, CsiError>
    where
        F: FnOnce(NodeClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = NodeClient::new(self.channel.clone());
        let timeout = self.timeout;
        tracing::debug!(driver = %self.driver, call, volume, "calling CSI driver");
        // Plugin methods run on the blocking pool, where blocking on the runtime is allowed.
        self.runtime.block_on(call_with_timeout(call, volume, timeout, f(client, timeout)))
    }

    /// NodeGetCapabilities, asked once per registration; `volume` is the volume it is asked for (errors name it).
    pub(crate) fn capabilities(&self, volume: &str) -> Result<NodeCapabilities, CsiError> {
        if let Some(caps) = self.drivers.cached_capabilities(&self.driver) {
            return Ok(caps);
        }
        let response = self.run("NodeGetCapabilities", volume, |mut c, t| async move {
            c.node_get_capabilities(request(NodeGetCapabilitiesRequest {}, t)).await
        })?;
        let caps = NodeCapabilities::from_response(&response);
        self.drivers.cache_capabilities(&self.driver, caps);
        Ok(caps)
    }

    pub(crate) fn stage(&self, req: NodeStageVolumeRequest) -> Result<(), CsiError> {
        let volume = req.volume_id.clone();
        self.run("NodeStageVolume", &volume, |mut c, t| async move { c.node_stage_volume(request(req, t)).await })
            .map(drop)
    }

    pub(crate) fn unstage(&self, volume: &str, staging_target_path: &str) -> Result<(), CsiError> {
        let req = NodeUnstageVolumeRequest {
            volume_id: volume.to_string(),
            staging_target_path: staging_target_path.to_string(),
        };
        self.run("NodeUnstageVolume", volume, |mut c, t| async move { c.node_unstage_volume(request(req, t)).await })
            .map(drop)
    }

    pub(crate) fn publish(&self, req: NodePublishVolumeRequest) -> Result<(), CsiError> {
        let volume = req.volume_id.clone();
        self.run("NodePublishVolume", &volume, |mut c, t| async move { c.node_publish_volume(request(req, t)).await })
            .map(drop)
    }

    pub(crate) fn expand(&self, req: NodeExpandVolumeRequest) -> Result<(), CsiError> {
        let volume = req.volume_id.clone();
        self.run("NodeExpandVolume", &volume, |mut c, t| async move { c.node_expand_volume(request(req, t)).await })
            .map(drop)
    }

    pub(crate) fn unpublish(&self, volume: &str, target_path: &str) -> Result<(), CsiError> {
        let req = NodeUnpublishVolumeRequest { volume_id: volume.to_string(), target_path: target_path.to_string() };
        self.run(
            "NodeUnpublishVolume",
            volume,
            |mut c, t| async move { c.node_unpublish_volume(request(req, t)).await },
        )
        .map(drop)
    }
}

/// NodeGetVolumeStats on `channel` (async: the agent's stats loop runs on the runtime).
pub(crate) async fn get_volume_stats(
    channel: Channel,
    req: NodeGetVolumeStatsRequest,
    timeout: Duration,
) -> Result<NodeGetVolumeStatsResponse, CsiError> {
    let volume = req.volume_id.clone();
    let mut client = NodeClient::new(channel);
    call_with_timeout("NodeGetVolumeStats", &volume, timeout, client.node_get_volume_stats(request(req, timeout))).await
}

/// NodeGetCapabilities on `channel`, async.
pub(crate) async fn get_capabilities(
    channel: Channel,
    volume: &str,
    timeout: Duration,
) -> Result<NodeCapabilities, CsiError> {
    let mut client = NodeClient::new(channel);
    let response = call_with_timeout(
        "NodeGetCapabilities",
        volume,
        timeout,
        client.node_get_capabilities(request(NodeGetCapabilitiesRequest {}, timeout)),
    )
    .await?;
    Ok(NodeCapabilities::from_response(&response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::csi::drivers::DriverInfo;

    #[test]
    fn a_driver_that_never_answers_times_out_naming_the_volume_the_call_was_for() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("csi.sock");
        // A socket that accepts and never says anything: a hung driver.
        let listener = {
            let _guard = rt.enter();
            tokio::net::UnixListener::bind(&socket).unwrap()
        };
        rt.spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let drivers = CsiDrivers::new();
        {
            let _guard = rt.enter();
            drivers
                .register(DriverInfo {
                    name: "hung.csi.test".into(),
                    endpoint: format!("unix://{}", socket.display()),
                    version: (1, 0, 0),
                    node_id: "n1".into(),
                    max_volumes_per_node: 0,
                    topology: Default::default(),
                })
                .unwrap();
        }
        let client = DriverClient::new(&drivers, "hung.csi.test", rt.handle(), Duration::from_millis(300)).unwrap();
        // Plugin methods run on the blocking pool, outside the runtime.
        let err = std::thread::spawn(move || client.capabilities("vol-7")).join().unwrap().unwrap_err();
        assert!(matches!(&err, CsiError::Timeout { volume, .. } if volume == "vol-7"), "{err:?}");
        assert_eq!(err.to_string(), "NodeGetCapabilities for volume \"vol-7\" did not answer within 300ms");
    }
}
