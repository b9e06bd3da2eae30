//! The `mig-gateway` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::CallArgs;

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
}

/// Options shared by `up` and `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Fleet file (TOML): which model runs where. Examples in `deploy/`.
    #[arg(long, env = "MIG_GATEWAY_FLEET")]
    pub fleet: PathBuf,

    /// Address of the public gRPC server.
    #[arg(long, env = "MIG_GATEWAY_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Seconds between health probes of each worker.
    #[arg(long, env = "MIG_GATEWAY_HEALTH_INTERVAL", default_value_t = 1.0)]
    pub health_interval: f64,

    /// Seconds that running calls get to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "MIG_GATEWAY_DRAIN_SECONDS", default_value_t = 10)]
    pub drain_seconds: u64,
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub serve: ServeArgs,

    /// The `mig-worker` binary; defaults to the one next to `mig-gateway`.
    #[arg(long, env = "MIG_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,

    /// Seconds a worker gets to finish after SIGTERM before SIGKILL.
    #[arg(long, env = "MIG_GATEWAY_GRACE_SECONDS", default_value_t = 10)]
    pub grace_seconds: u64,

    /// Seconds a worker may take to load its model and report ready.
    #[arg(long, env = "MIG_GATEWAY_WORKER_READY_TIMEOUT", default_value_t = 300)]
    pub ready_timeout_seconds: u64,
}

impl ServeArgs {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.health_interval.is_finite() && self.health_interval >= 0.05) {
            return Err(format!(
                "`--health-interval` must be at least 0.05 seconds (got {})",
                self.health_interval
            ));
        }
        Ok(())
    }

    pub fn health_interval(&self) -> Duration {
        Duration::from_secs_f64(self.health_interval)
    }

    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_seconds)
    }
}
