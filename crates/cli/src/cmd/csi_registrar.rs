//! `kvol csi-registrar`: what node-driver-registrar does for a real kubelet: serve kubelet's plugin
//! registration for a node's CSI driver on `<plugin-registration-path>/<driver>-reg.sock`, until SIGTERM
//! or SIGINT, or until kubelet reports that registration failed (exit 1, to be restarted).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Where this process reaches the driver: unix:///path/csi.sock or a path.
    #[arg(long, env = "ADDRESS", default_value = "/run/csi/socket")]
    csi_address: String,
    /// The driver socket's path on the host, as kubelet must dial it
    /// (e.g. /var/lib/kubelet/plugins/csi.kvol.io/csi.sock).
    #[arg(long, env = "DRIVER_REG_SOCK_PATH")]
    kubelet_registration_path: String,
    /// Kubelet's plugin registry directory as seen here.
    #[arg(long, default_value = "/registration")]
    plugin_registration_path: PathBuf,
    /// Timeout of GetPluginInfo, in seconds.
    #[arg(long, default_value_t = 1)]
    timeout: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut config = kvol_csi_sidecar::RegistrarConfig::new(args.csi_address, args.kubelet_registration_path);
    config.plugin_registration_path = args.plugin_registration_path;
    config.timeout = Duration::from_secs(args.timeout.max(1));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let shutdown = super::shutdown_signal();
        kvol_csi_sidecar::run_registrar(config, shutdown).await.context("kvol csi-registrar")
    })
}
