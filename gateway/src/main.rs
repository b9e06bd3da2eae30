//! `mig-gateway`: parse the command line, set up logging, then `up` (gateway
//! and workers), `serve` (gateway only) or `call` (client).

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mig_gateway::config::{Cli, Command, ServeArgs};
use mig_gateway::fleet::Fleet;
use mig_gateway::fleet_start::{readiness_summary, start_fleet};
use mig_gateway::supervisor::{default_worker_bin, Supervisor};
use tokio::net::TcpListener;

fn init_tracing() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Call(args) => {
            if let Err(status) = mig_gateway::client::run(args).await {
                eprintln!(
                    "error: {}: {}",
                    mig_gateway::client::code_name(status.code()),
                    status.message()
                );
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Serve(args) => {
            init_tracing();
            serve(args, None).await
        }
        Command::Up(args) => {
            init_tracing();
            let bin = args.worker_bin.clone().unwrap_or_else(default_worker_bin);
            let supervisor = Supervisor::new(
                bin,
                Duration::from_secs(args.grace_seconds),
                Duration::from_secs(args.ready_timeout_seconds),
            );
            tracing::info!(worker_bin = %supervisor.worker_bin().display(), "starting workers");
            serve(args.serve, Some(supervisor)).await
        }
    }
}

async fn serve(args: ServeArgs, mut supervisor: Option<Supervisor>) -> anyhow::Result<()> {
    args.validate().map_err(anyhow::Error::msg)?;
    let fleet = Fleet::load(&args.fleet)?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding `--listen {}`", args.listen))?;
    let registry = start_fleet(&fleet, &args.fleet, supervisor.as_mut()).await?;
    println!(
        "mig-gateway listening on {}; models: {}",
        listener.local_addr()?,
        readiness_summary(&registry)
    );
    let served = mig_gateway::run(
        registry,
        listener,
        args.health_interval(),
        args.drain(),
        mig_gateway::shutdown::signal(),
    )
    .await;
    if let Some(supervisor) = supervisor {
        supervisor.shutdown().await;
    }
    served?;
    tracing::info!("gateway stopped");
    Ok(())
}
