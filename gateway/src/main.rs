//! `mig-gateway`: parse the command line, set up logging, then `up` (gateway
//! and workers), `serve` (gateway only), `call` (client), `slices` (what this
//! machine offers) or `plan` (MIG layout for a fleet).

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mig_gateway::config::{Cli, Command, ServeArgs, TenantCommand};
use mig_gateway::fleet::placement::Inventory;
use mig_gateway::fleet::scrape_targets::ScrapeTargets;
use mig_gateway::fleet::slices::{affinity_cores, Detected};
use mig_gateway::fleet::start::{readiness_summary, start_fleet};
use mig_gateway::fleet::supervisor::{default_cuda_worker_bin, default_worker_bin, Supervisor};
use mig_gateway::fleet::{Fleet, ModelPlan};
use mig_gateway::reshape::admin::Admin;
use mig_gateway::reshape::device::{self, SimulatedFile};
use mig_gateway::server::Registrations;
use mig_slices::reshape::control::MigControl;
use mig_slices::{CoreSet, SliceId};
use std::sync::Arc;
use tokio::net::TcpListener;

fn init_tracing(default: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.command.threads())
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Call(args) => {
            if let Err(status) = mig_gateway::call_cmd::run(args).await {
                eprintln!(
                    "error: {}: {}",
                    mig_gateway::call_cmd::code_name(status.code()),
                    status.message()
                );
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Slices(args) => {
            // The table says what NVML's log line would.
            init_tracing("warn");
            let detected = match &args.snapshot {
                Some(path) => Detected::from_snapshot(path).map_err(anyhow::Error::msg)?,
                None => Detected::detect(),
            };
            if args.raw {
                match &detected.gpu {
                    mig_slices::discovery::Discovery::Nvml { snapshot, .. } => {
                        println!("{}", snapshot.to_json_pretty())
                    }
                    mig_slices::discovery::Discovery::NoNvml { reason } => {
                        anyhow::bail!("no NVML snapshot to print: {reason}")
                    }
                }
            } else if args.json {
                println!("{}", serde_json::to_string_pretty(&detected)?);
            } else {
                print!("{}", detected.table());
            }
            Ok(())
        }
        Command::Tenant(TenantCommand::AddKey(args)) => {
            let key = mig_gateway::tenancy::keys::add_key(&args.tenants, &args.tenant)
                .map_err(anyhow::Error::msg)?;
            eprintln!(
                "added a key to tenant `{}` in {} (only its hash is stored; the key is shown this once):",
                args.tenant,
                args.tenants.display()
            );
            println!("{key}");
            Ok(())
        }
        Command::Plan(args) => {
            init_tracing("warn");
            Ok(mig_gateway::fleet::plan::run(&args)?)
        }
        Command::Reshape(args) => {
            init_tracing("warn");
            if let Err(e) = mig_gateway::reshape::cli::run(args).await {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Serve(args) => {
            init_tracing("info");
            let models = match &args.fleet {
                Some(path) => Fleet::load(path)?,
                None => Vec::new(),
            };
            serve(args, models, Inventory::default(), None, None).await
        }
        Command::Up(args) => {
            init_tracing("info");
            let Some(path) = &args.serve.fleet else {
                anyhow::bail!("`up` needs `--fleet FILE`: which models to start (see deploy/)");
            };
            let models = Fleet::load(path)?;
            let simulated = match &args.simulate_mig {
                Some(path) => Some(SimulatedFile::open(path).map_err(anyhow::Error::msg)?),
                None => None,
            };
            let inventory = match &simulated {
                Some(sim) => Inventory {
                    gpu: device::inventory(&sim.gpus()?),
                    cores: affinity_cores(),
                },
                None => Detected::detect().inventory(),
            };
            let bin = args.worker_bin.clone().unwrap_or_else(default_worker_bin);
            let cuda_bin = args
                .cuda_worker_bin
                .clone()
                .or_else(default_cuda_worker_bin);
            let mut supervisor = Supervisor::new(
                bin,
                Duration::from_secs(args.grace_seconds),
                Duration::from_secs(args.ready_timeout_seconds),
            )
            .with_cuda_bin(cuda_bin);
            if simulated.is_some() {
                // Every simulated slice's worker runs on the first core.
                let first = inventory.cores.first().copied().unwrap_or(0);
                supervisor = supervisor.with_stand_in(SliceId::Cpu(
                    CoreSet::from_cores(&[first]).expect("one core"),
                ));
            }
            if let Some(path) = &args.worker_token_file {
                let token = mig_serve::secret::Secret::from_file(path)
                    .map_err(|e| anyhow::anyhow!("`--worker-token-file`: {e}"))?;
                supervisor = supervisor.with_worker_token(token);
            }
            if let Some(path) = &args.worker_metrics_sd {
                let targets = ScrapeTargets::create(path)
                    .with_context(|| format!("writing `--worker-metrics-sd {}`", path.display()))?;
                supervisor = supervisor.with_scrape_targets(targets);
            }
            tracing::info!(
                worker_bin = %supervisor.worker_bin().display(),
                cuda_worker_bin = %supervisor
                    .cuda_worker_bin()
                    .map_or("none".into(), |b| b.display().to_string()),
                "starting workers (CPU slices: worker_bin; MIG and GPU slices: cuda_worker_bin)"
            );
            let admin = Admin::bind(&args, simulated)
                .await
                .map_err(anyhow::Error::msg)?;
            serve(args.serve, models, inventory, Some(supervisor), admin).await
        }
    }
}

async fn serve(
    args: ServeArgs,
    models: Vec<ModelPlan>,
    inventory: Inventory,
    supervisor: Option<Supervisor>,
    admin: Option<Admin>,
) -> anyhow::Result<()> {
    args.validate().map_err(anyhow::Error::msg)?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding `--listen {}`", args.listen))?;
    let metrics_listener = match args.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding `--metrics-listen {addr}`"))?,
        ),
        None => None,
    };
    let http_listener = match args.http_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding `--http-listen {addr}`"))?,
        ),
        None => None,
    };
    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let http_line = match &http_listener {
        Some(l) => format!("; openai: {scheme}://{}/v1", l.local_addr()?),
        None => String::new(),
    };
    let metrics_line = match &metrics_listener {
        Some(l) => format!("; metrics: http://{}/metrics", l.local_addr()?),
        None => String::new(),
    };
    let mut registrations = match args.registration_access().map_err(anyhow::Error::msg)? {
        Some(access) => {
            let listener = TcpListener::bind(args.internal_listen)
                .await
                .with_context(|| format!("binding `--internal-listen {}`", args.internal_listen))?;
            Some(Registrations {
                listener,
                access,
                heartbeat: args.heartbeat(),
                tls: None,
            })
        }
        None => None,
    };
    let internal_line = match &registrations {
        Some(r) => format!("; internal: {}", r.listener.local_addr()?),
        None => String::new(),
    };
    // Files read again on SIGHUP or when they change. One that does not
    // load stops the start: running open, or in clear text, instead would
    // let everyone in.
    let mut reloads: Vec<Box<dyn mig_gateway::reload::Reload>> = Vec::new();
    let tenants = match &args.tenants {
        Some(path) => {
            let (tenants, file) =
                mig_gateway::reload::watch_tenants(path.clone()).map_err(anyhow::Error::msg)?;
            tracing::info!(
                file = %path.display(),
                tenants = tenants.borrow().len(),
                keys = tenants.borrow().keys(),
                "tenants file loaded"
            );
            reloads.push(Box::new(file));
            Some(tenants)
        }
        None => None,
    };
    let tls = match args.public_tls() {
        Some(files) => {
            let (config, files) =
                mig_gateway::tls::watch_tls("public", files).map_err(anyhow::Error::msg)?;
            reloads.push(Box::new(files));
            Some(config)
        }
        None => None,
    };
    if let Some(registrations) = &mut registrations {
        if let Some(files) = args.internal_tls() {
            let (config, files) =
                mig_gateway::tls::watch_tls("internal", files).map_err(anyhow::Error::msg)?;
            reloads.push(Box::new(files));
            registrations.tls = Some(config);
        }
    }
    if !reloads.is_empty() {
        tokio::spawn(mig_gateway::reload::reload_loop(
            reloads,
            mig_gateway::reload::POLL,
        ));
    }
    // Shared with the admin listener, which starts and stops workers too.
    let supervisor = supervisor.map(|s| Arc::new(tokio::sync::Mutex::new(s)));
    let started = {
        let mut guard = match &supervisor {
            Some(s) => Some(s.lock().await),
            None => None,
        };
        start_fleet(&models, &inventory, guard.as_deref_mut()).await
    };
    let registry = match started {
        Ok(registry) => registry,
        Err(e) => {
            // Workers already started must not outlive a failed start.
            if let Some(supervisor) = &supervisor {
                supervisor.lock().await.shutdown().await;
            }
            return Err(e.into());
        }
    };
    let admin_server = match (admin, &supervisor) {
        (Some(admin), Some(supervisor)) => {
            let line = format!("; admin: {}", admin.local_addr()?);
            let task = admin
                .serve(supervisor.clone(), registry.clone(), models.clone())
                .await;
            Some((task, line))
        }
        _ => None,
    };
    let admin_line = admin_server
        .as_ref()
        .map_or(String::new(), |(_, line)| line.clone());
    let tls_line = if tls.is_some() { "; TLS" } else { "" };
    println!(
        "mig-gateway listening on {}; models: {}{http_line}{metrics_line}{internal_line}{admin_line}{tls_line}",
        listener.local_addr()?,
        readiness_summary(&registry)
    );
    let served = mig_gateway::run(
        registry,
        listener,
        args.options(metrics_listener, http_listener, registrations, tenants, tls),
        mig_serve::signal::signal(),
    )
    .await;
    if let Some((task, _)) = admin_server {
        task.abort();
    }
    if let Some(supervisor) = &supervisor {
        supervisor.lock().await.shutdown().await;
    }
    served?;
    tracing::info!("gateway stopped");
    Ok(())
}
