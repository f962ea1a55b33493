//! `kvol server`: the API server on the embedded store, and, in the same process, the controllers and the
//! node agent for the local node, until SIGTERM or SIGINT. Each part can be turned off and run alone
//! (`kvol controller`, `kvol agent`) against this or any API server.

use anyhow::Context;
use kvol_apiserver::{Server, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;

/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/kvol";

#[derive(clap::Args)]
pub struct Args {
    /// Where the store, certificates, tokens, socket and kubeconfig live.
    #[arg(long, default_value = DEFAULT_DATA_DIR, env = "KVOL_DATA_DIR")]
    data_dir: PathBuf,
    /// The HTTPS listen address.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// The local unix socket (default: <data-dir>/kvol.sock).
    #[arg(long)]
    unix_socket: Option<PathBuf>,
    /// Seconds between watch bookmarks.
    #[arg(long, default_value_t = 10)]
    watch_bookmark_interval: u64,
    /// The local node the in-process agent serves.
    #[command(flatten)]
    node: super::agent::NodeArgs,
    /// Where the `kvol.io/local-path` provisioner makes volumes; default: <data-dir>/local-path.
    #[arg(long)]
    local_path_dir: Option<PathBuf>,
    /// Do not run the controllers (PV binding, provisioning, reclaim, protection, scheduling) in-process.
    #[arg(long)]
    no_controllers: bool,
    /// Do not run the node agent for the local node in-process.
    #[arg(long)]
    no_agent: bool,
}

/// A future that resolves once `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Raise the soft limit on open files to the hard one, as Go (and so kube-apiserver) does at start: the
/// server's connections, watches and store need descriptors, and the soft default is often 1,024.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, hard, "could not raise the open files limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not read the open files limit"),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    raise_open_files_limit();
    let mut config = ServerConfig::new(args.data_dir.clone(), args.listen);
    config.unix_socket = args.unix_socket;
    config.bookmark_interval = Duration::from_secs(args.watch_bookmark_interval.max(1));
    let agent_config = super::agent::agent_config(&args.data_dir, &args.node);
    let node_name = agent_config.node_name.clone();
    let flex_dir = args.node.volume_plugin_dir.clone();
    let node_root = agent_config.root_dir.clone();
    // The in-process attach/detach controller calls the same drivers under the same limits as the agent.
    let flex_limits = agent_config.flex_limits.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let server = Server::bind(config).await.context("kvol server")?;
        let client = crate::client::client_from_kubeconfig(server.kubeconfig_path())
            .await
            .context("connecting the in-process components to the API server")?;
        let (stop, stop_rx) = watch::channel(false);
        let mut parts = tokio::task::JoinSet::new();
        if !args.no_controllers {
            let local_path = args.local_path_dir.unwrap_or_else(|| args.data_dir.join("local-path"));
            let config = kvol_controller::ControllerConfig::new(Some(local_path), node_name.clone());
            let (client, stop) = (client.clone(), stopped(stop_rx.clone()));
            parts.spawn(async move {
                (
                    "controllers",
                    kvol_controller::run_controllers(client, config, stop).await.map_err(anyhow::Error::from),
                )
            });
        }
        if !args.no_controllers {
            let (client, stop) = (client.clone(), stopped(stop_rx.clone()));
            parts.spawn(async move {
                (
                    "attach/detach controller",
                    super::inprocess::attach_detach(client, flex_dir, node_root, flex_limits, stop).await,
                )
            });
        }
        if !args.no_agent {
            let (client, stop) = (client.clone(), stopped(stop_rx.clone()));
            let mut hooks = kvol_node::AgentHooks::default();
            if !args.no_controllers {
                let (hook, registrations) = super::inprocess::registration_hook();
                hooks.on_csi_registration = Some(hook);
                let client = client.clone();
                parts.spawn(async move {
                    super::inprocess::csi_roles(client, registrations).await;
                    ("CSI controller roles", Ok(()))
                });
            }
            parts.spawn(async move {
                let mounter = std::sync::Arc::new(kvol_mount::RealMounter::new());
                let result = kvol_node::run_agent_hooked(client, agent_config, mounter, hooks, stop).await;
                ("node agent", result.map_err(anyhow::Error::from))
            });
        }
        let shutdown = async move {
            super::shutdown_signal().await;
            // The in-process parts stop first, while the API server still answers them.
            let _ = stop.send(true);
            let drain = async {
                while let Some(done) = parts.join_next().await {
                    match done {
                        Ok((part, Err(e))) => tracing::error!(part, error = %format!("{e:#}"), "stopped with an error"),
                        Ok((part, Ok(()))) => tracing::info!(part, "stopped"),
                        Err(e) => tracing::error!(error = %e, "a part panicked"),
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(5), drain).await.is_err() {
                tracing::warn!("in-process parts did not stop within 5 s");
            }
        };
        server.serve(shutdown).await.context("kvol server")
    })
}
