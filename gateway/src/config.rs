//! The `mig-gateway` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use mig_serve::secret::Secret;

use crate::call_cmd::CallArgs;
use crate::fleet::registration::{HeartbeatPolicy, RegistrationAccess};

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
    /// Manage the tenants file.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Re-partition a running gateway's MIG GPUs to a plan (`plan --out`'s
    /// plan.json) without dropping a request; `--dry-run` prints the steps.
    Reshape(crate::reshape::cli::ReshapeArgs),
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Make a fresh API key for a tenant: print it once, write only its hash.
    AddKey(AddKeyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct AddKeyArgs {
    /// The tenants file (a running gateway picks the new key up by itself).
    #[arg(long, env = "MIG_GATEWAY_TENANTS")]
    pub tenants: PathBuf,

    /// The tenant's `name` in the file.
    #[arg(long)]
    pub tenant: String,
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

/// The profiles `mig-gateway plan` may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileSet {
    All,
    Balanced,
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

    /// GPU model to plan for: a100-40gb, a100-80gb, a800-80gb, a30-24gb,
    /// h100-80gb, h100-pcie-80gb, h100-94gb (H100 NVL), h800-80gb,
    /// h200-141gb, gh200-96gb, rtx-pro-6000-96gb.
    #[arg(long)]
    pub gpu: String,

    /// Context tokens to reserve KV cache for, for `--model` entries (default:
    /// the model's own, capped at the worker's 4096).
    #[arg(long)]
    pub context: Option<u64>,

    /// Concurrent sequences to reserve KV cache for, for `--model` entries.
    #[arg(long, default_value_t = 1)]
    pub concurrency: u64,

    /// Which profiles the plan may use: `all` (default: every profile,
    /// media `+me` and memory-heavy `1g.20gb` included) or `balanced` (the
    /// ladder without them: a big model never lands on one compute slice).
    #[arg(long, value_enum, default_value_t = ProfileSet::All)]
    pub profiles: ProfileSet,

    /// Kept for old scripts: the same as the default `--profiles all`.
    #[arg(long, hide = true, conflicts_with = "profiles")]
    pub all_profiles: bool,

    /// Write `mig-setup.sh`, `mig-parted.yaml`, `k8s-resources.yaml` and
    /// `plan.json` into this folder.
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Print the plan as JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// A decode-rate target, `NAME=TOKENS_PER_SECOND` (`llama-7b=60`): each
    /// replica of that model (from `--model` or `--fleet`) takes only
    /// profiles whose rate, measured or modelled from memory bandwidth,
    /// reaches it. Repeatable; overrides the fleet file's
    /// `tokens_per_second`.
    #[arg(long = "tokens-per-second", value_name = "NAME=TOKENS_PER_SECOND")]
    pub tokens_per_second: Vec<String>,

    /// A measured decode rate, `NAME@PROFILE=TOKENS_PER_SECOND`
    /// (`llama-7b@2g.20gb=52`): used for that model and profile instead of
    /// the modelled one. Repeatable.
    #[arg(long, value_name = "NAME@PROFILE=TOKENS_PER_SECOND")]
    pub measured: Vec<String>,

    /// Price of one GPU per hour, in USD (above 0): the plan then prints
    /// `cost: N GPUs x $P/h = $T/h` (with `--json`, a `price` object).
    #[arg(long, value_name = "USD", value_parser = positive_price)]
    pub price_per_gpu_hour: Option<f64>,
}

/// A price above 0 (and finite); clap names the flag in the error.
fn positive_price(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of USD"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("must be a number of USD above 0 (got {text})"));
    }
    Ok(value)
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

    /// Address of the OpenAI-compatible HTTP front (`/v1/chat/completions`,
    /// `/v1/completions`, `/v1/embeddings`, `/v1/models`); off unless set.
    /// Same tenants and keys as the gRPC API; HTTPS with `--tls-cert`.
    #[arg(long, env = "MIG_GATEWAY_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,

    /// Let workers started elsewhere register themselves
    /// (`mig-worker serve --gateway`), on the internal listener and with the
    /// registration token. Off by default: a registered worker receives
    /// users' prompts.
    #[arg(long, env = "MIG_GATEWAY_ACCEPT_REGISTRATIONS")]
    pub accept_registrations: bool,

    /// Address of the internal gRPC server (worker registration), never the
    /// public one; bound only with `--accept-registrations`.
    #[arg(
        long,
        env = "MIG_GATEWAY_INTERNAL_LISTEN",
        default_value = "127.0.0.1:50052"
    )]
    pub internal_listen: SocketAddr,

    /// File holding the token a worker must present to register
    /// (`authorization: Bearer`; the worker's own `--registration-token-file`);
    /// required by `--accept-registrations`. The token is never logged.
    #[arg(long, env = "MIG_GATEWAY_REGISTRATION_TOKEN_FILE")]
    pub registration_token_file: Option<PathBuf>,

    /// Seconds between heartbeats asked of registered workers.
    #[arg(long, env = "MIG_GATEWAY_HEARTBEAT_INTERVAL", default_value_t = 1.0)]
    pub heartbeat_interval: f64,

    /// TLS certificate chain (PEM, leaf first) of the public listener;
    /// with `--tls-key`. Read again with the tenants file.
    #[arg(long, env = "MIG_GATEWAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of `--tls-cert`.
    #[arg(long, env = "MIG_GATEWAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA (PEM) that workers' client certificates must chain to: the
    /// internal listener then speaks TLS (with `--tls-cert`/`--tls-key`)
    /// and takes only workers with such a certificate (mTLS), with or
    /// without the registration token.
    #[arg(long, env = "MIG_GATEWAY_INTERNAL_CLIENT_CA", requires = "tls_cert")]
    pub internal_client_ca: Option<PathBuf>,

    /// Tenants file (TOML): API keys (as hashes), the models each tenant may
    /// call, its limits. Without one the gateway is open to any caller.
    /// Read again on SIGHUP and when it changes. Example in `deploy/`.
    #[arg(long, env = "MIG_GATEWAY_TENANTS")]
    pub tenants: Option<PathBuf>,

    /// Seconds of heartbeat silence after which a registered worker is
    /// dropped from routing.
    #[arg(long, env = "MIG_GATEWAY_HEARTBEAT_TIMEOUT", default_value_t = 5.0)]
    pub heartbeat_timeout: f64,

    /// Requests that may wait per model in the gateway's admission queue
    /// for a worker with room (all priority classes together); past it a
    /// request is refused `RESOURCE_EXHAUSTED`, or a less important one is
    /// shed to make room.
    #[arg(long, env = "MIG_GATEWAY_QUEUE_MAX_WAITING", default_value_t = 1024)]
    pub queue_max_waiting: usize,

    /// Seconds a request may wait in the admission queue; one that would
    /// wait longer (from the queue's measured drain rate) is refused at once.
    #[arg(long, env = "MIG_GATEWAY_QUEUE_MAX_WAIT", default_value_t = 30.0)]
    pub queue_max_wait: f64,

    /// Client connections the public listener keeps open in all (lowered
    /// to the process's file-descriptor budget). At the cap, the oldest
    /// connection that has sent nothing yet is closed to make room; with
    /// none, the new connection is closed and the log says so.
    #[arg(long, env = "MIG_GATEWAY_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Client connections from one address.
    #[arg(
        long,
        env = "MIG_GATEWAY_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 1_000
    )]
    pub max_connections_per_client: usize,

    /// Seconds a new connection may take to send its first bytes (TLS
    /// hello or HTTP/2 preface) and to finish its TLS handshake.
    #[arg(long, env = "MIG_GATEWAY_HANDSHAKE_TIMEOUT", default_value_t = 10.0)]
    pub handshake_timeout: f64,

    /// Seconds a connection may stay open with no call in flight before
    /// it is sent GOAWAY (clients reconnect when they next call).
    #[arg(long, env = "MIG_GATEWAY_IDLE_TIMEOUT", default_value_t = 300.0)]
    pub idle_timeout: f64,

    /// Seconds a stream's client may read nothing (its buffer full) before
    /// the stream is ended `RESOURCE_EXHAUSTED`, so that it holds no place
    /// on a worker.
    #[arg(long, env = "MIG_GATEWAY_STALL_TIMEOUT", default_value_t = 30.0)]
    pub stall_timeout: f64,

    /// Threads that serve calls. Default: half the machine's cores, from 1
    /// to 8: the workers on the same host need the rest, and a relayed
    /// call costs the gateway about 0.1-0.3 ms of one core.
    #[arg(long, env = "MIG_GATEWAY_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
}

impl Command {
    /// Threads of the gateway's runtime: `--threads` for `up` and `serve`,
    /// else the default.
    pub fn threads(&self) -> usize {
        let asked = match self {
            Command::Up(args) => args.serve.threads,
            Command::Serve(args) => args.threads,
            _ => None,
        };
        asked.map(usize::from).unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores / 2).clamp(1, 8)
        })
    }
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

    /// File holding the token the started workers accept calls with (from
    /// this gateway, and from `mig-loadtest --worker-token-file` measuring a
    /// worker straight). Default: a fresh random token per worker start,
    /// known to this gateway alone. Handed to each worker in its
    /// environment, never on its command line.
    #[arg(long, env = "MIG_GATEWAY_WORKER_TOKEN_FILE")]
    pub worker_token_file: Option<PathBuf>,

    /// Address of the admin gRPC server (`mig-gateway reshape`); loopback
    /// only, with `--admin-token-file`. Off unless set.
    #[arg(long, env = "MIG_GATEWAY_ADMIN_LISTEN", requires = "admin_token_file")]
    pub admin_listen: Option<SocketAddr>,

    /// File holding the token `mig-gateway reshape` must present
    /// (`authorization: Bearer`). Never logged.
    #[arg(long, env = "MIG_GATEWAY_ADMIN_TOKEN_FILE", requires = "admin_listen")]
    pub admin_token_file: Option<PathBuf>,

    /// Serve a simulated MIG device instead of NVML's: its state (GPUs and
    /// instances, JSON, written back after each change), its slices served
    /// by CPU workers on `cpu:0`. For trying `reshape` without a GPU, and
    /// for the tests.
    #[arg(long, env = "MIG_GATEWAY_SIMULATE_MIG")]
    pub simulate_mig: Option<PathBuf>,
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
        if !(self.queue_max_wait.is_finite() && (0.1..=3600.0).contains(&self.queue_max_wait)) {
            return Err(format!(
                "`--queue-max-wait` must be between 0.1 and 3600 seconds (got {})",
                self.queue_max_wait
            ));
        }
        for (flag, value) in [
            ("--handshake-timeout", self.handshake_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--stall-timeout", self.stall_timeout),
        ] {
            if !(value.is_finite() && (0.1..=86_400.0).contains(&value)) {
                return Err(format!(
                    "`{flag}` must be between 0.1 and 86400 seconds (got {value})"
                ));
            }
        }
        if self.max_connections == 0 || self.max_connections_per_client == 0 {
            return Err(
                "`--max-connections` and `--max-connections-per-client` must be at least 1".into(),
            );
        }
        if !(1..=1_000_000).contains(&self.queue_max_waiting) {
            return Err(format!(
                "`--queue-max-waiting` must be between 1 and 1000000 (got {})",
                self.queue_max_waiting
            ));
        }
        if self.accept_registrations
            && self.registration_token_file.is_none()
            && self.internal_client_ca.is_none()
        {
            return Err(
                "`--accept-registrations` needs `--registration-token-file` or \
                 `--internal-client-ca` (mTLS): without either, anyone who reaches the \
                 internal port could register a worker and receive users' prompts"
                    .into(),
            );
        }
        // Port 0 on both is two different free ports.
        if self.accept_registrations
            && self.internal_listen == self.listen
            && self.listen.port() != 0
        {
            return Err(format!(
                "`--internal-listen` ({}) must differ from `--listen`: registration is never \
                 served on the public port",
                self.internal_listen
            ));
        }
        Ok(())
    }

    /// What a worker must show to register, when registrations are on
    /// (reads the token file).
    pub fn registration_access(&self) -> Result<Option<RegistrationAccess>, String> {
        if !self.accept_registrations {
            return Ok(None);
        }
        let token = match &self.registration_token_file {
            Some(path) => Some(
                Secret::from_file(path).map_err(|e| format!("`--registration-token-file`: {e}"))?,
            ),
            None => None,
        };
        Ok(Some(RegistrationAccess {
            token,
            client_certificate: self.internal_client_ca.is_some(),
        }))
    }

    /// The public listener's certificate files, with `--tls-cert`.
    pub fn public_tls(&self) -> Option<mig_serve::tls::ServerFiles> {
        Some(mig_serve::tls::ServerFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: None,
        })
    }

    /// The internal listener's, with `--internal-client-ca` (mTLS).
    pub fn internal_tls(&self) -> Option<mig_serve::tls::ServerFiles> {
        Some(mig_serve::tls::ServerFiles {
            client_ca: Some(self.internal_client_ca.clone()?),
            ..self.public_tls()?
        })
    }

    /// Registered workers' heartbeat pace and tolerance.
    pub fn heartbeat(&self) -> HeartbeatPolicy {
        HeartbeatPolicy {
            interval: Duration::from_secs_f64(self.heartbeat_interval),
            timeout: Duration::from_secs_f64(self.heartbeat_timeout),
        }
    }

    /// The server's options; the listeners are bound already.
    pub fn options(
        &self,
        metrics_listener: Option<tokio::net::TcpListener>,
        http_listener: Option<tokio::net::TcpListener>,
        registrations: Option<crate::server::Registrations>,
        tenants: Option<
            tokio::sync::watch::Receiver<std::sync::Arc<crate::tenancy::file::Tenants>>,
        >,
        tls: Option<crate::server::TlsConfig>,
    ) -> crate::ServerOptions {
        crate::ServerOptions {
            health_interval: self.health_interval(),
            drain: self.drain(),
            registrations,
            metrics_listener,
            http_listener,
            tenants,
            tls,
            queue: crate::admission::QueueLimits {
                max_waiting: self.queue_max_waiting,
                max_wait: Duration::from_secs_f64(self.queue_max_wait),
                // Set by the server: on with a tenants file.
                keep_room: false,
            },
            stall_timeout: Duration::from_secs_f64(self.stall_timeout),
            connections: mig_serve::connections::ConnectionLimits {
                handshake_timeout: Duration::from_secs_f64(self.handshake_timeout),
                idle_timeout: Duration::from_secs_f64(self.idle_timeout),
                max_connections: self.max_connections,
                max_per_client: self.max_connections_per_client,
                ..Default::default()
            },
        }
    }

    pub fn health_interval(&self) -> Duration {
        Duration::from_secs_f64(self.health_interval)
    }

    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_seconds)
    }
}
