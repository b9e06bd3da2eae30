//! The `mig-gateway` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::call_cmd::CallArgs;

#[derive(Debug, Parser)]
#[command(
    name = "mig-gateway",
    version,
    about = "gRPC inference gateway that routes by model name to workers pinned to MIG (or CPU) slices"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the gateway and the workers of a fleet file, stop them together.
    Up(UpArgs),
    /// Start the gateway only, routing to running workers (`address` entries).
    Serve(ServeArgs),
    /// Call a gateway (or a worker's public twin) from the shell.
    Call(CallArgs),
    /// List the slices this machine offers: MIG devices (NVML), whole GPUs,
    /// CPU cores.
    Slices(SlicesArgs),
    /// Plan MIG slices for a fleet on a GPU model: which profile each replica
    /// gets, how they pack, and the commands to create them.
    Plan(PlanArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SlicesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// With `--json`: print NVML's raw snapshot (what a recorded test fixture
    /// holds) instead of the mapped slices.
    #[arg(long, requires = "json")]
    pub raw: bool,

    /// Map a recorded NVML snapshot (from `slices --json --raw`, possibly on
    /// another machine) instead of asking this machine's NVML.
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Fleet file whose models (with `path`) are planned; replicas from
    /// `replicas`, `count` or the number of `slices`.
    #[arg(long, required_unless_present = "model")]
    pub fleet: Option<PathBuf>,

    /// A model to plan, `NAME=PATH` or `NAME=PATH:REPLICAS`, or `NAME=SIZE`
    /// for a need given directly (`llama-7b=14GiB:3`); repeatable, instead of
    /// or besides `--fleet`.
    #[arg(long)]
    pub model: Vec<String>,

    /// GPU model to plan for: a100-40gb, a100-80gb, a30-24gb, h100-80gb,
    /// h100-94gb, h200-141gb.
    #[arg(long)]
    pub gpu: String,

    /// Context tokens to reserve KV cache for, for `--model` entries (default:
    /// the model's own, capped at the worker's 4096).
    #[arg(long)]
    pub context: Option<u64>,

    /// Concurrent sequences to reserve KV cache for, for `--model` entries.
    #[arg(long, default_value_t = 1)]
    pub concurrency: u64,

    /// Also consider media (`+me`) and memory-heavy (`1g.20gb`) profiles.
    #[arg(long)]
    pub all_profiles: bool,

    /// Write `mig-setup.sh`, `mig-parted.yaml`, `k8s-resources.yaml` and
    /// `plan.json` into this folder.
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Print the plan as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options shared by `up` and `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Fleet file (TOML): which model runs where. Examples in `deploy/`.
    /// Required by `up`; `serve` without one routes only to workers that
    /// register themselves.
    #[arg(long, env = "MIG_GATEWAY_FLEET")]
    pub fleet: Option<PathBuf>,

    /// Address of the public gRPC server.
    #[arg(long, env = "MIG_GATEWAY_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Seconds between health probes of each worker.
    #[arg(long, env = "MIG_GATEWAY_HEALTH_INTERVAL", default_value_t = 1.0)]
    pub health_interval: f64,

    /// Seconds that running calls get to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "MIG_GATEWAY_DRAIN_SECONDS", default_value_t = 10)]
    pub drain_seconds: u64,

    /// Address of the Prometheus `/metrics` endpoint (HTTP); off unless set.
    #[arg(long, env = "MIG_GATEWAY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Let workers started elsewhere register themselves
    /// (`mig-worker serve --gateway`). Off by default: anyone who can reach
    /// the port could put a worker in front of users' prompts.
    #[arg(long, env = "MIG_GATEWAY_ACCEPT_REGISTRATIONS")]
    pub accept_registrations: bool,

    /// Seconds between heartbeats asked of registered workers.
    #[arg(long, env = "MIG_GATEWAY_HEARTBEAT_INTERVAL", default_value_t = 1.0)]
    pub heartbeat_interval: f64,

    /// Seconds of heartbeat silence after which a registered worker is
    /// dropped from routing.
    #[arg(long, env = "MIG_GATEWAY_HEARTBEAT_TIMEOUT", default_value_t = 5.0)]
    pub heartbeat_timeout: f64,
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub serve: ServeArgs,

    /// The `mig-worker` binary for CPU slices; defaults to the one next to
    /// `mig-gateway`.
    #[arg(long, env = "MIG_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,

    /// The CUDA worker for MIG and GPU slices (`make cuda` builds
    /// `target/cuda/mig-worker-cuda-sm90`); defaults to a `mig-worker-cuda`
    /// next to `mig-gateway`, else the one `mig-worker-cuda-sm<CAP>` there (as
    /// `scripts/gpu-pack.sh` packs them). A fleet that places a model on a GPU
    /// slice without one is refused.
    #[arg(long, env = "MIG_CUDA_WORKER_BIN")]
    pub cuda_worker_bin: Option<PathBuf>,

    /// Seconds a worker gets to finish after SIGTERM before SIGKILL.
    #[arg(long, env = "MIG_GATEWAY_GRACE_SECONDS", default_value_t = 10)]
    pub grace_seconds: u64,

    /// Have every worker serve `/metrics` on a free port, and keep this
    /// Prometheus `file_sd` file listing them (rewritten on each restart).
    #[arg(long, env = "MIG_GATEWAY_WORKER_METRICS_SD")]
    pub worker_metrics_sd: Option<PathBuf>,

    /// Seconds a worker may take to load its model and report ready.
    #[arg(long, env = "MIG_GATEWAY_WORKER_READY_TIMEOUT", default_value_t = 300)]
    pub ready_timeout_seconds: u64,
}

impl ServeArgs {
    pub fn validate(&self) -> Result<(), String> {
        // 0.1 s is also the fastest pace a worker heartbeats at.
        for (flag, value) in [
            ("--health-interval", self.health_interval),
            ("--heartbeat-interval", self.heartbeat_interval),
        ] {
            if !(value.is_finite() && (0.1..=60.0).contains(&value)) {
                return Err(format!(
                    "`{flag}` must be between 0.1 and 60 seconds (got {value})"
                ));
            }
        }
        if !(self.heartbeat_timeout.is_finite()
            && self.heartbeat_timeout >= 2.0 * self.heartbeat_interval)
        {
            return Err(format!(
                "`--heartbeat-timeout` must be at least twice `--heartbeat-interval` ({} s), so one lost heartbeat does not drop a worker (got {})",
                2.0 * self.heartbeat_interval,
                self.heartbeat_timeout
            ));
        }
        Ok(())
    }

    /// The server's options; `metrics_listener` is `--metrics-listen`, bound.
    pub fn options(
        &self,
        metrics_listener: Option<tokio::net::TcpListener>,
    ) -> crate::ServerOptions {
        crate::ServerOptions {
            health_interval: self.health_interval(),
            drain: self.drain(),
            heartbeat: crate::fleet::registration::HeartbeatPolicy {
                interval: Duration::from_secs_f64(self.heartbeat_interval),
                timeout: Duration::from_secs_f64(self.heartbeat_timeout),
            },
            accept_registrations: self.accept_registrations,
            metrics_listener,
        }
    }

    pub fn health_interval(&self) -> Duration {
        Duration::from_secs_f64(self.health_interval)
    }

    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_seconds)
    }
}
