//! The `registry` binary: command-line parsing and nothing else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use registry::server::{serve, ServeConfig};
use store::StoreConfig;

#[derive(Parser)]
#[command(name = "registry", version, about = "Strata: a private OCI registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the OCI Distribution API.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:5000", env = "STRATA_LISTEN")]
        listen: SocketAddr,
        /// Data directory: a file store and a SQLite database inside it.
        #[arg(long, default_value = "./data", env = "STRATA_DATA")]
        data: PathBuf,
        /// Accept manifests that reference blobs or child manifests not pushed to the repository.
        #[arg(long, env = "STRATA_ALLOW_SPARSE")]
        allow_sparse: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Serve {
            listen,
            data,
            allow_sparse,
        } => {
            let mut store = StoreConfig::local(&data);
            store.allow_sparse = allow_sparse;
            runtime.block_on(serve(ServeConfig { listen, store }))
        }
    }
}
