//! `kvol controller`: the storage controllers (PV binder, provisioning with `kvol.io/local-path`, protection,
//! volume-aware scheduler, attach/detach) against any Kubernetes API server, kvol's or a real one, until SIGTERM or SIGINT.

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
    /// Do not run the attach/detach controller (when kube-controller-manager runs its own).
    #[arg(long)]
    no_attach_detach: bool,
    /// Where the FlexVolume drivers the attach/detach controller attaches through are installed
    /// (kube-controller-manager's flag of this name).
    #[arg(long, default_value = kvol_node::DEFAULT_VOLUME_PLUGIN_DIR)]
    flex_volume_plugin_dir: PathBuf,
    /// Seconds a FlexVolume driver call may run before the driver (its whole process group) is killed;
    /// `waitforattach` and `mountdevice` get at least 10 minutes (as `kvol agent --flex-call-timeout`).
    #[arg(long, default_value_t = 120)]
    flex_call_timeout: u64,
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
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let controllers = kvol_controller::run_controllers(client.clone(), config, stopped(stop_rx.clone()));
        let attach_detach = async {
            if args.no_attach_detach {
                stopped(stop_rx.clone()).await;
                return Ok(());
            }
            let node_root = PathBuf::from("/var/lib/kubelet");
            let limits = super::agent::flex_limits(args.flex_call_timeout);
            let plugin_dir = args.flex_volume_plugin_dir;
            super::inprocess::attach_detach(client, plugin_dir, node_root, limits, stopped(stop_rx.clone())).await
        };
        tokio::pin!(controllers, attach_detach);
        // Either part failing stops the command; a signal stops both, then waits for them.
        tokio::select! {
            r = &mut controllers => return r.context("kvol controller"),
            r = &mut attach_detach => r?,
            _ = super::shutdown_signal() => {}
        }
        let _ = stop.send(true);
        let (controllers, attach_detach) = tokio::join!(controllers, attach_detach);
        controllers.context("kvol controller")?;
        attach_detach
    })
}
