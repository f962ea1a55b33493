//! `kvol`: the one binary of kvol's control plane and CLI. `kvol server` runs the API server (and, as they
//! land, the controllers and the local node agent) on an embedded store; `kvol apply/get/describe/delete`
//! talk to any Kubernetes API server, kvol's or a real one.

mod cmd;

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
        Command::Server(args) => cmd::server::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
