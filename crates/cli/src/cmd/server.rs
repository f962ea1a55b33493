//! `kvol server`: the API server on the embedded store, until SIGTERM or SIGINT.

use anyhow::Context;
use kvol_apiserver::ServerConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut config = ServerConfig::new(args.data_dir, args.listen);
    config.unix_socket = args.unix_socket;
    config.bookmark_interval = Duration::from_secs(args.watch_bookmark_interval.max(1));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            }
        };
        kvol_apiserver::run(config, shutdown).await.context("kvol server")
    })
}
