//! `oxetcd-apiserver [flags]` serves the Kubernetes API;
//! `oxetcd-apiserver kubeconfig [flags]` prints a kubeconfig for it.

use clap::Parser;
use oxetcd_apiserver::cli::Cli;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Err(e) = oxetcd_apiserver::run::main(cli.command, cli.flags).await {
        eprintln!("oxetcd-apiserver: {e}");
        std::process::exit(1);
    }
}
