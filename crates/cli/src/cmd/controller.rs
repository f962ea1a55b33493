//! `kvol controller`: the storage controllers (PV binder, provisioning with `kvol.io/local-path`, protection,
//! volume-aware scheduler) against any Kubernetes API server, kvol's or a real one, until SIGTERM or SIGINT.

use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The kubeconfig to reach the API server with (e.g. <data-dir>/kubeconfig of `kvol server`).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Where `kvol.io/local-path` makes volume directories; without it that provisioner is not served.
    #[arg(long)]
    local_path_dir: Option<PathBuf>,
    /// This node's name (local-path volumes are made here); default: the hostname.
    #[arg(long, env = "KVOL_NODE_NAME")]
    node_name: Option<String>,
    /// Workers for claims and for volumes (each).
    #[arg(long, default_value_t = 512)]
    workers: usize,
    /// Do not run the volume-aware scheduler (when kube-scheduler places pods).
    #[arg(long)]
    no_scheduler: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let client = crate::client::client_from_kubeconfig(&args.kubeconfig).await?;
        let mut config = kvol_controller::ControllerConfig::new(
            args.local_path_dir,
            args.node_name.unwrap_or_else(crate::client::hostname),
        );
        config.workers = args.workers.max(1);
        config.scheduler = !args.no_scheduler;
        let shutdown = super::shutdown_signal();
        kvol_controller::run_controllers(client, config, shutdown).await.context("kvol controller")
    })
}
