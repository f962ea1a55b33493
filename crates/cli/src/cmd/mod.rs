//! One module per subcommand, and what the long-running ones share.

pub mod agent;
pub mod apply;
pub mod controller;
pub mod csi_registrar;
pub mod csi_sidecar;
pub mod delete;
pub mod describe;
pub mod get;
pub mod inprocess;
pub mod mounts;
pub mod server;

/// Resolves on SIGTERM or SIGINT: how every long-running subcommand is told to stop.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        },
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
