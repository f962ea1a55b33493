//! `kvol`: the one binary of kvol's control plane and CLI. `kvol server` runs the API server on an embedded
//! store with the controllers and the local node agent in-process; `kvol controller` and `kvol agent` run
//! those alone; `kvol apply/get/describe/delete/mounts` talk to any Kubernetes API server, kvol's or a real
//! one.

mod client;
mod cmd;
mod manifest;
mod printers;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "kvol", version, about = "Kubernetes' storage subsystem, in Rust")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server with the embedded store.
    Server(cmd::server::Args),
    /// Create or update objects from files (client-side apply, like `kubectl apply`).
    Apply(cmd::apply::Args),
    /// Print objects as kubectl's tables, YAML, JSON or names; `-w` to watch.
    Get(cmd::get::Args),
    /// Show an object in detail, with its events, as `kubectl describe` does.
    Describe(cmd::describe::Args),
    /// Delete objects by type and name or from files, and wait until they are gone.
    Delete(cmd::delete::Args),
    /// Run the storage controllers (binding, provisioning, reclaim, protection, scheduling) against an API server.
    Controller(cmd::controller::Args),
    /// Run the node agent (kubelet's volume manager) for one node.
    Agent(cmd::agent::Args),
    /// Print a container's volume mounts as OCI runtime-spec mounts or `docker run -v` flags.
    Mounts(cmd::mounts::Args),
    /// kubernetes-csi's controller sidecars (provisioner, attacher, resizer) for a CSI driver.
    CsiSidecar(cmd::csi_sidecar::Args),
    /// node-driver-registrar: registers a node's CSI driver with kubelet.
    CsiRegistrar(cmd::csi_registrar::Args),
}

/// Runs a client command on a small runtime; `Ok(false)` means "printed errors, exit non-zero".
fn run_client<F>(command: F) -> anyhow::Result<bool>
where
    F: std::future::Future<Output = anyhow::Result<bool>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(command)
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KVOL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("KVOL_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Server(args) => cmd::server::run(args).map(|()| true),
        Command::Controller(args) => cmd::controller::run(args).map(|()| true),
        Command::Agent(args) => cmd::agent::run(args).map(|()| true),
        Command::Mounts(args) => cmd::mounts::run(args).map(|()| true),
        Command::CsiSidecar(args) => cmd::csi_sidecar::run(args).map(|()| true),
        Command::CsiRegistrar(args) => cmd::csi_registrar::run(args).map(|()| true),
        Command::Apply(args) => run_client(cmd::apply::run(args)),
        Command::Get(args) => run_client(cmd::get::run(args)),
        Command::Describe(args) => run_client(cmd::describe::run(args)),
        Command::Delete(args) => run_client(cmd::delete::run(args)),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
