//! `kvol agent`: the node agent (kubelet's volume manager) for one node, against any Kubernetes API
//! server, until SIGTERM or SIGINT. `kvol server` runs the same agent in-process for its local node, with
//! the same `--node-name` and `--root-dir` flags ([`NodeArgs`]).

use anyhow::Context;
use std::path::{Path, PathBuf};

/// The node flags `kvol agent` and `kvol server` share (kubelet's names).
#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// The Node this agent registers and whose pods (`spec.nodeName`) it mounts volumes for; default: the
    /// hostname.
    #[arg(long, env = "KVOL_NODE_NAME")]
    pub node_name: Option<String>,
    /// Where pod volumes go: `<root-dir>/pods/<uid>/volumes/...` (default: `<data-dir>/kubelet`;
    /// `/var/lib/kubelet` gives kubelet's paths).
    #[arg(long)]
    pub root_dir: Option<PathBuf>,
    /// Where FlexVolume drivers are installed (`<dir>/<vendor~driver>/<driver>`), watched for new ones.
    #[arg(long, default_value = kvol_node::DEFAULT_VOLUME_PLUGIN_DIR)]
    pub volume_plugin_dir: PathBuf,
    /// Let the attach/detach controller attach and detach this node's volumes (kubelet's default); with
    /// `false` the agent attaches and detaches them itself.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_controller_attach_detach: bool,
    /// Seconds a FlexVolume driver call may run before the driver (its whole process group) is killed;
    /// `waitforattach` and `mountdevice` get at least 10 minutes.
    #[arg(long, default_value_t = 120)]
    pub flex_call_timeout: u64,
    /// The address the read-only endpoints (`/healthz`, `/stats/summary`) listen on. They have no
    /// authentication, so the default is the loopback address (kubelet's is 0.0.0.0); use the node's IP
    /// for an API server on another machine to reach them through `/api/v1/nodes/<node>/proxy/`.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: std::net::IpAddr,
    /// The port of the read-only endpoints, reported as the Node's kubelet endpoint; 0 disables them.
    #[arg(long, default_value_t = 10255)]
    pub read_only_port: u16,
}

#[derive(clap::Args)]
pub struct Args {
    /// The kubeconfig to reach the API server with (default: $KUBECONFIG, then <data-dir>/kubeconfig).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// kvol's data directory: its kubeconfig and the default root directory.
    #[arg(long, env = "KVOL_DATA_DIR", default_value = crate::client::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    #[command(flatten)]
    node: NodeArgs,
}

/// The agent's settings from the flags.
pub fn agent_config(data_dir: &Path, node: &NodeArgs) -> kvol_node::AgentConfig {
    let mut config = kvol_node::AgentConfig::new(
        node.node_name.clone().unwrap_or_else(crate::client::hostname),
        node.root_dir.clone().unwrap_or_else(|| data_dir.join("kubelet")),
    );
    config.volume_plugin_dir = Some(node.volume_plugin_dir.clone());
    config.controller_attach_detach = node.enable_controller_attach_detach;
    config.flex_limits = flex_limits(node.flex_call_timeout);
    config.read_only_address = (node.read_only_port != 0).then(|| (node.address, node.read_only_port).into());
    config
}

/// The FlexVolume call limits `--flex-call-timeout` sets (the agent's and the attach/detach controller's).
pub fn flex_limits(call_timeout_secs: u64) -> kvol_flex::CallLimits {
    let mut limits = kvol_volume::plugins::flexvolume::FlexConfig::default_limits();
    limits.default = std::time::Duration::from_secs(call_timeout_secs.max(1));
    limits
}

/// The kubeconfig `--kubeconfig`, `$KUBECONFIG` or `<data-dir>/kubeconfig` names.
fn kubeconfig_path(flag: Option<PathBuf>, data_dir: &Path) -> PathBuf {
    flag.or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from)).unwrap_or_else(|| data_dir.join("kubeconfig"))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let client = crate::client::client_from_kubeconfig(&kubeconfig_path(args.kubeconfig, &args.data_dir)).await?;
        let config = agent_config(&args.data_dir, &args.node);
        tracing::info!(node = %config.node_name, root = %config.root_dir.display(), "kvol agent starting");
        kvol_node::run_agent(client, config, super::shutdown_signal()).await.context("kvol agent")
    })
}
