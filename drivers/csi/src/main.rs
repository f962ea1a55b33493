//! `kvol-csi`: kvol's CSI driver, plugin name `csi.kvol.io`.
//!
//! One binary serves Identity plus Controller and/or Node on a unix socket. Volumes live in a pool
//! directory, either as btrfs subvolumes with qgroup limits or as loop-attached sparse files. All state
//! is derived from the pool (the data plus a small JSON file per volume and snapshot, see `store`), so
//! the driver can be killed and restarted at any point.
//!
//! Key decision: storage work is synchronous code (storage tools, mount(2)) run on tokio's blocking
//! pool behind a per-volume guard; the gRPC layer only validates, decides error codes (in
//! `error.rs`, one place) and dispatches.

mod backend;
mod caps;
mod cmd;
mod controller;
mod driver;
mod error;
mod guard;
mod identity;
mod mounter;
mod mountinfo;
mod node;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use kvol_csi::v1::{controller_server::ControllerServer, identity_server::IdentityServer, node_server::NodeServer};

use crate::backend::{Backend, Btrfs, LoopFiles};
use crate::driver::Driver;

/// Plugin name reported by GetPluginInfo.
const PLUGIN_NAME: &str = "csi.kvol.io";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    /// A btrfs subvolume per volume, capacity enforced by a qgroup limit.
    Btrfs,
    /// A sparse file per volume, attached as a loop device.
    Loop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Identity + Controller.
    Controller,
    /// Identity + Node.
    Node,
    /// Identity + Controller + Node.
    All,
}

/// kvol's CSI driver (csi.kvol.io).
#[derive(Debug, Parser)]
#[command(name = "kvol-csi", version)]
struct Args {
    /// CSI endpoint: unix:///path/csi.sock or a path.
    #[arg(long, env = "CSI_ENDPOINT")]
    endpoint: String,
    /// This node's id (NodeGetInfo; also the topology value of every volume).
    #[arg(long, env = "KVOL_CSI_NODE_ID")]
    nodeid: String,
    /// Storage backend.
    #[arg(long, value_enum)]
    backend: BackendKind,
    /// Pool directory (on btrfs for --backend btrfs).
    #[arg(long)]
    pool: PathBuf,
    /// Which services to serve.
    #[arg(long, value_enum, default_value = "all")]
    mode: Mode,
    /// Plugin name to report (for running several instances side by side).
    #[arg(long, default_value = PLUGIN_NAME)]
    drivername: String,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kvol-csi: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvol-csi: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let socket = kvol_csi::parse_endpoint(&args.endpoint).context("--endpoint")?;
    let pool = args.pool.clone();
    let backend: Arc<dyn Backend> = match args.backend {
        BackendKind::Btrfs => Arc::new(Btrfs::open(&pool).context("--backend btrfs")?),
        BackendKind::Loop => Arc::new(LoopFiles::open(&pool).context("--backend loop")?),
    };
    let pool = pool.canonicalize().with_context(|| format!("--pool {}", args.pool.display()))?;
    let store = store::Store::open(&pool, &args.nodeid).context("opening the metadata store")?;
    let op_delay =
        std::env::var("KVOL_CSI_TEST_OP_DELAY_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis);
    let driver = Arc::new(Driver {
        name: args.drivername.clone(),
        node_id: args.nodeid.clone(),
        pool,
        backend,
        store,
        inflight: Default::default(),
        op_delay,
    });
    let controller = matches!(args.mode, Mode::Controller | Mode::All);
    let node = matches!(args.mode, Mode::Node | Mode::All);
    let router = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(identity::IdentityService::new(driver.clone(), controller)))
        .add_optional_service(
            controller.then(|| ControllerServer::new(controller::ControllerService::new(driver.clone()))),
        )
        .add_optional_service(node.then(|| NodeServer::new(node::NodeService::new(driver.clone()))));
    tracing::info!(
        name = %driver.name, node = %driver.node_id, backend = driver.backend.name(), pool = %driver.pool.display(),
        mode = ?args.mode, "kvol-csi starting"
    );
    kvol_csi::serve_unix(&socket, router, shutdown_signal()).await.context("serving")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
