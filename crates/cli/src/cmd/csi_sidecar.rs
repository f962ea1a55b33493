//! `kvol csi-sidecar`: kubernetes-csi's controller-side sidecars (external-provisioner, external-attacher,
//! external-resizer) for one CSI driver, against any Kubernetes API server, until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// The kubeconfig to reach the API server with (e.g. <data-dir>/kubeconfig of `kvol server`); without
    /// one, the in-cluster service account, as kubernetes-csi's sidecars do in a pod.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The CSI driver's controller endpoint: unix:///path/csi.sock or a path.
    #[arg(long, env = "ADDRESS", default_value = "/run/csi/socket")]
    csi_address: String,
    /// The roles to run, comma-separated: provisioner, attacher, resizer.
    #[arg(long, default_value = "provisioner,attacher,resizer")]
    roles: String,
    /// Timeout of each driver call, in seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Workers per role.
    #[arg(long, default_value_t = 4)]
    worker_threads: usize,
    /// First retry delay of a failed provisioning, in seconds (doubling up to --retry-interval-max).
    #[arg(long, default_value_t = 1)]
    retry_interval_start: u64,
    /// Longest retry delay of a failed provisioning, in seconds.
    #[arg(long, default_value_t = 300)]
    retry_interval_max: u64,
    /// Failures after which provisioning a claim is given up (0 = never, external-provisioner's choice).
    #[arg(long, default_value_t = 0)]
    failed_provision_threshold: u32,
    /// Resync period of the informers, in seconds.
    #[arg(long, default_value_t = 900)]
    resync: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let roles = kvol_csi_sidecar::parse_roles(&args.roles).map_err(anyhow::Error::msg).context("--roles")?;
    let mut config = kvol_csi_sidecar::SidecarConfig::new(args.csi_address, roles);
    config.timeout = Duration::from_secs(args.timeout.max(1));
    config.workers = args.worker_threads.max(1);
    config.provision_backoff = kvol_csi_sidecar::Backoff {
        base: Duration::from_secs(args.retry_interval_start),
        max: Duration::from_secs(args.retry_interval_max.max(args.retry_interval_start)),
    };
    config.failed_provision_threshold = args.failed_provision_threshold;
    config.resync = Duration::from_secs(args.resync.max(1));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let client = match &args.kubeconfig {
            Some(path) => crate::client::client_from_kubeconfig(path).await?,
            None => crate::client::client_in_cluster()?,
        };
        let shutdown = super::shutdown_signal();
        kvol_csi_sidecar::run_sidecar(client, config, shutdown).await.context("kvol csi-sidecar")
    })
}
