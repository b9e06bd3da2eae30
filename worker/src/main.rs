//! `mig-worker`: parse the command line, set up logging, load the model,
//! print the ready line, serve.

use anyhow::Context;
use clap::{Parser, Subcommand};
use mig_worker::config::ServeArgs;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "mig-worker",
    version,
    about = "One model on one slice, served to mig-gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load a model and serve it over gRPC (mig.worker.v1).
    Serve(Box<ServeArgs>),
    /// Measure prefill and decode speed of a generation model, without a server.
    Bench(mig_worker::bench::BenchArgs),
    /// Check that CUDA and the CPU agree: the same seeded synthetic model,
    /// greedy ids and logits compared; exit code 1 when a logit differs by
    /// more than the tolerance.
    Agree(mig_worker::agree::AgreeArgs),
}

fn init_tracing() {
    // Logs go to stderr; stdout carries only the ready line, which the
    // gateway's supervisor reads.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

fn init_threads(threads: usize) {
    // The compute pool of candle's CPU kernels: sized to the slice.
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
    {
        tracing::warn!(error = %e, "compute thread pool was already set up");
    }
}

/// Pins this process (the main thread, and so every thread started after
/// it) to the cores of its CPU slice.
fn pin_to_cores(cores: &[usize]) -> anyhow::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    for &core in cores {
        set.set(core)
            .with_context(|| format!("core {core} is out of range"))?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("no such cores on this machine: {cores:?}"))?;
    tracing::info!(?cores, "pinned to CPU slice");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Serve(args) => {
            args.validate().map_err(anyhow::Error::msg)?;
            if let Some(cores) = args.slice.cores() {
                pin_to_cores(cores.cores())
                    .with_context(|| format!("pinning to `--slice {}`", args.slice))?;
            }
            init_threads(args.threads());
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(serve(*args))
        }
        Command::Bench(args) => {
            init_threads(args.threads);
            let reports = mig_worker::bench::run(&args)?;
            // One batch size: its report; several: an array of them.
            match reports.as_slice() {
                [one] => println!("{}", serde_json::to_string_pretty(one)?),
                all => println!("{}", serde_json::to_string_pretty(all)?),
            }
            Ok(())
        }
        Command::Agree(args) => {
            let report = mig_worker::agree::run(&args)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.agree {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding `--listen {}`", args.listen))?;
    let ready = mig_worker::load(&args).await?;
    let addr = listener.local_addr()?;
    // The one line on stdout: the supervisor waits for it to learn the port.
    let line = mig_serve::ReadyLine {
        listen: addr,
        model: ready.identity.model.clone(),
        slice: ready.identity.slice.clone(),
        profile: ready.identity.profile.clone(),
        metrics: ready.metrics_addr(),
    };
    println!("{line}");
    mig_worker::run(ready, listener, mig_serve::signal::signal()).await?;
    Ok(())
}
