//! The `mig-worker serve` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use mig_slices::SliceId;

use crate::engine::scheduler::SchedulerConfig;
use crate::engine::EngineConfig;
use mig_serve::limits::{IDENTITY_MARK, SYNTHETIC_MARK};
use mig_serve::secret::Secret;

use crate::engine::ModelSpec;
use crate::identity::{Claimed, Identity};
use crate::model::synthetic::SyntheticSpec;
use crate::model::{DeviceKind, ModelSource, WeightFormat};
use crate::server::Settings;

/// Serve one model on one slice.
#[derive(Debug, Clone, Parser)]
pub struct ServeArgs {
    /// Address of the internal gRPC server; port 0 picks a free port, printed
    /// on the ready line.
    #[arg(long, env = "MIG_WORKER_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// The model name clients use (for example `smollm2-135m`).
    #[arg(long, env = "MIG_WORKER_MODEL_NAME")]
    pub model_name: String,

    /// A `.gguf` file (text generation) or a folder with `config.json`,
    /// `model.safetensors` and `tokenizer.json`: a llama checkpoint
    /// (`"model_type": "llama"`, bf16/f16/f32; text generation) or BERT
    /// (embeddings).
    #[arg(long, env = "MIG_WORKER_MODEL_PATH", conflicts_with_all = ["identity", "synthetic"])]
    pub model_path: Option<PathBuf>,

    /// Serve the identity model instead of a file: it echoes the prompt
    /// byte by byte and computes nothing, to measure the serving overhead.
    /// `--model-name` must contain `identity`.
    #[arg(long, env = "MIG_WORKER_IDENTITY", conflicts_with = "synthetic")]
    pub identity: bool,

    /// Serve a synthetic model instead of a file: a public architecture's
    /// shape with seeded random weights, drawn on the host and moved to the
    /// device (`llama-135m|1b|3b|7b|8b|13b:bf16|f16|f32`). Its tokens mean nothing;
    /// its speed and memory are the real model's. `--model-name` must
    /// contain `synthetic`.
    #[arg(long, env = "MIG_WORKER_SYNTHETIC")]
    pub synthetic: Option<SyntheticSpec>,

    /// Seed of a synthetic model's weights.
    #[arg(long, env = "MIG_WORKER_SYNTHETIC_SEED", default_value_t = 0)]
    pub synthetic_seed: u64,

    /// The slice this worker is pinned to: `cpu:0`, `cpu:0-1`, `MIG-<uuid>`,
    /// `GPU-<uuid>`, or `visible`: the one GPU slice this process was given
    /// (`NVIDIA_VISIBLE_DEVICES`, set by the NVIDIA device plugin in a
    /// Kubernetes pod, or `CUDA_VISIBLE_DEVICES` naming one by UUID; else the
    /// one MIG device NVML lists).
    #[arg(long, env = "MIG_WORKER_SLICE", default_value = "cpu:0", value_parser = parse_slice)]
    pub slice: SliceId,

    /// Profile reported for a GPU slice (`1g.10gb`); CPU slices are named by
    /// their core count (`cpu-1c`).
    #[arg(long, env = "MIG_WORKER_PROFILE")]
    pub profile: Option<String>,

    /// Identifier reported in `served_by`; defaults to `<model>@<slice>`.
    #[arg(long, env = "MIG_WORKER_ID")]
    pub worker_id: Option<String>,

    #[arg(long, env = "MIG_WORKER_DEVICE", value_enum, default_value = "cpu")]
    pub device: DeviceKind,

    /// Compute threads; defaults to the number of cores of a CPU slice.
    #[arg(long, env = "MIG_WORKER_THREADS")]
    pub threads: Option<usize>,

    /// In-memory format of Q4 GGUF weights.
    #[arg(long, env = "MIG_WORKER_WEIGHTS", value_enum, default_value = "native")]
    pub weights: WeightFormat,

    /// Requests that may wait for a place in the running batch; more are
    /// refused with RESOURCE_EXHAUSTED.
    #[arg(
        long,
        alias = "max-queue",
        env = "MIG_WORKER_MAX_WAITING",
        default_value_t = 64
    )]
    pub max_waiting: usize,

    /// Sequences generating together in one batch (continuous batching).
    #[arg(long, env = "MIG_WORKER_MAX_BATCH_SIZE", default_value_t = 16)]
    pub max_batch_size: usize,

    /// Tokens in one forward step: a decode token per running sequence,
    /// then chunks of newcomers' prompts.
    #[arg(long, env = "MIG_WORKER_MAX_BATCH_TOKENS", default_value_t = 256)]
    pub max_batch_tokens: usize,

    /// Prompt tokens of one sequence per step: a long prompt is read in
    /// chunks of this size, between the decode steps of the others.
    #[arg(long, env = "MIG_WORKER_PREFILL_CHUNK", default_value_t = 128)]
    pub prefill_chunk: usize,

    /// Memory of the KV store in MiB; defaults to 1024 on a CPU slice and to
    /// 90% of the GPU memory left free after loading the model.
    #[arg(long, env = "MIG_WORKER_KV_CACHE_MIB")]
    pub kv_cache_mib: Option<u64>,

    /// Longest embedding batch (inputs per request).
    #[arg(long, env = "MIG_WORKER_MAX_EMBED_INPUTS", default_value_t = 64)]
    pub max_embed_inputs: usize,

    /// Seconds that in-flight requests get to finish after SIGTERM.
    #[arg(long, env = "MIG_WORKER_GRACE_SECONDS", default_value_t = 10)]
    pub grace_seconds: u64,

    /// Address of the Prometheus `/metrics` endpoint (HTTP); off unless set.
    /// Port 0 picks a free port, printed on the ready line as `metrics=`.
    #[arg(long, env = "MIG_WORKER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// A gateway to register with (`http://host:port`); the worker sends it
    /// heartbeats and is routed to while they arrive. For workers started
    /// outside `mig-gateway up` (another node, a Kubernetes pod). Repeat it
    /// (or separate with commas) for several gateways; a name that resolves
    /// to several addresses (a Kubernetes headless Service of the gateways)
    /// means each of them, looked up again every 10 s.
    #[arg(long, env = "MIG_WORKER_GATEWAY", value_delimiter = ',')]
    pub gateway: Vec<String>,

    /// The address the gateway dials to reach this worker (`http://host:port`);
    /// defaults to the bound `--listen` address, which must then be a
    /// specific IP, not `0.0.0.0`.
    #[arg(long, env = "MIG_WORKER_ADVERTISE")]
    pub advertise: Option<String>,

    /// File holding the gateway's registration token (its
    /// `--registration-token-file`), sent with every heartbeat of
    /// `--gateway`. Never logged.
    #[arg(long, env = "MIG_WORKER_REGISTRATION_TOKEN_FILE", requires = "gateway")]
    pub registration_token_file: Option<PathBuf>,

    /// CA (PEM) of the gateway's internal listener: register over TLS.
    #[arg(long, env = "MIG_WORKER_GATEWAY_TLS_CA", requires = "gateway")]
    pub gateway_tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) shown to the gateway's internal listener
    /// (its `--internal-client-ca` signed it); with `--gateway-tls-key`.
    #[arg(long, env = "MIG_WORKER_GATEWAY_TLS_CERT", requires_all = ["gateway_tls_ca", "gateway_tls_key"])]
    pub gateway_tls_cert: Option<PathBuf>,

    /// Private key (PEM) of `--gateway-tls-cert`.
    #[arg(
        long,
        env = "MIG_WORKER_GATEWAY_TLS_KEY",
        requires = "gateway_tls_cert"
    )]
    pub gateway_tls_key: Option<PathBuf>,

    /// The token this worker accepts calls with: set by the gateway that
    /// starts it, in the environment only (a command line is visible to
    /// every local user). Without it the worker accepts any caller that
    /// reaches its port.
    #[arg(
        long,
        env = mig_serve::worker_flags::CALLER_TOKEN_ENV,
        hide = true,
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub caller_token: Option<Secret>,

    /// Test-only fault switch, with `--identity` alone: the engine thread
    /// panics on a prompt that holds this text (to test what a worker whose
    /// engine dies does). Hidden from `--help`.
    #[arg(long, hide = true)]
    pub fault_panic_on: Option<String>,
}

fn parse_secret(text: &str) -> Result<Secret, String> {
    Secret::new(text).map_err(|e| format!("the caller token {e}"))
}

/// `http://host:port` (or https) with a host and a port.
fn check_http_uri(flag: &str, uri: &str) -> Result<(), String> {
    let parsed: Result<tonic::transport::Uri, _> = uri.parse();
    match parsed {
        Ok(u)
            if matches!(u.scheme_str(), Some("http" | "https"))
                && u.host().is_some()
                && u.port_u16().is_some() =>
        {
            Ok(())
        }
        _ => Err(format!("`{flag}` must be `http://host:port` (got `{uri}`)")),
    }
}

impl ServeArgs {
    /// Cross-field checks that clap cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.model_name.trim().is_empty() {
            return Err("`--model-name` must not be empty".into());
        }
        let sources = [
            self.model_path.is_some(),
            self.identity,
            self.synthetic.is_some(),
        ];
        match sources.iter().filter(|s| **s).count() {
            0 => {
                return Err(
                    "give `--model-path` (a model file or folder), `--identity` (the echo \
                     model) or `--synthetic` (random weights of a public shape)"
                        .into(),
                )
            }
            1 => {}
            _ => {
                return Err(
                    "`--model-path`, `--identity` and `--synthetic` are mutually exclusive".into(),
                )
            }
        }
        for (on, mark, flag) in [
            (self.identity, IDENTITY_MARK, "--identity"),
            (self.synthetic.is_some(), SYNTHETIC_MARK, "--synthetic"),
        ] {
            if on && !self.model_name.contains(mark) {
                return Err(format!(
                    "`--model-name` `{}` must contain `{mark}` with `{flag}`, so that its \
                     figures are never taken for a real model's in metrics and reports",
                    self.model_name
                ));
            }
        }
        if self.threads == Some(0) {
            return Err("`--threads` must be at least 1".into());
        }
        self.scheduler().validate()?;
        if self.kv_cache_mib == Some(0) {
            return Err("`--kv-cache-mib` must be at least 1".into());
        }
        for uri in &self.gateway {
            check_http_uri("--gateway", uri)?;
        }
        if let Some(uri) = &self.advertise {
            check_http_uri("--advertise", uri)?;
        }
        if !self.gateway.is_empty() && self.advertise.is_none() && self.listen.ip().is_unspecified()
        {
            return Err(format!(
                "`--advertise` is required with `--gateway` when `--listen` is `{}`: \
                 the gateway cannot dial an unspecified address",
                self.listen
            ));
        }
        if self.fault_panic_on.is_some() && !self.identity {
            return Err(
                "`--fault-panic-on` is a test switch for the identity model only: \
                        add `--identity`"
                    .into(),
            );
        }
        if matches!(self.slice, SliceId::Cpu(_)) && self.device == DeviceKind::Cuda {
            return Err(format!(
                "`--device cuda` needs a GPU slice, but `--slice` is the CPU slice `{}`",
                self.slice
            ));
        }
        Ok(())
    }

    /// The batching knobs.
    pub fn scheduler(&self) -> SchedulerConfig {
        SchedulerConfig {
            max_batch_size: self.max_batch_size,
            max_batch_tokens: self.max_batch_tokens,
            prefill_chunk: self.prefill_chunk,
            max_waiting: self.max_waiting,
        }
    }

    /// The batching knobs and the KV store's size.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            scheduler: self.scheduler(),
            kv_bytes: self.kv_cache_mib.map(|mib| mib << 20),
        }
    }

    /// What to load: the file of `--model-path`, or the identity model (read
    /// after [`ServeArgs::validate`], which makes sure it is one of them).
    pub fn model_source(&self) -> ModelSource {
        match (&self.model_path, self.synthetic) {
            (Some(path), _) => ModelSource::File(path.clone()),
            (None, Some(spec)) => ModelSource::Synthetic {
                spec,
                seed: self.synthetic_seed,
            },
            (None, None) => ModelSource::Identity,
        }
    }

    /// The profile this worker reports.
    pub fn profile(&self) -> String {
        self.profile
            .clone()
            .or_else(|| self.slice.cpu_profile())
            .unwrap_or_else(|| "gpu".to_string())
    }

    /// Everything `server::load` needs, checked; the slice's identity is
    /// resolved here (NVML for a GPU slice).
    pub fn settings(&self) -> Result<Settings, String> {
        self.validate()?;
        Ok(Settings {
            model: ModelSpec {
                source: self.model_source(),
                device: self.device,
                weights: self.weights,
                panic_on: self.fault_panic_on.clone(),
            },
            engine: self.engine(),
            identity: Identity::resolve(self.claimed()),
            metrics_listen: self.metrics_listen,
            max_embed_inputs: self.max_embed_inputs,
            grace: Duration::from_secs(self.grace_seconds),
            gateway: self.gateway.clone(),
            advertise: self.advertise.clone(),
            registration_token: self
                .registration_token_file
                .as_deref()
                .map(Secret::from_file)
                .transpose()
                .map_err(|e| format!("`--registration-token-file`: {e}"))?,
            caller_token: self.caller_token.clone(),
            gateway_tls: self
                .gateway_tls_ca
                .clone()
                .map(|ca| crate::register::GatewayTls {
                    ca,
                    cert: self.gateway_tls_cert.clone(),
                    key: self.gateway_tls_key.clone(),
                }),
            threads: self.threads(),
        })
    }

    /// What the command line says about this worker and its slice, for
    /// [`Identity::resolve`].
    pub fn claimed(&self) -> Claimed {
        Claimed {
            model: self.model_name.clone(),
            worker_id: self.worker_id(),
            slice: self.slice.clone(),
            profile: self.profile(),
            profile_given: self.profile.is_some(),
            device: self.device,
        }
    }

    /// The worker id this worker reports.
    pub fn worker_id(&self) -> String {
        self.worker_id
            .clone()
            .unwrap_or_else(|| format!("{}@{}", self.model_name, self.slice))
    }

    /// Compute threads: explicit, else the CPU slice's core count, else 1
    /// (a GPU worker needs only a feeder thread).
    pub fn threads(&self) -> usize {
        self.threads
            .or_else(|| self.slice.cores().map(|c| c.len()))
            .unwrap_or(1)
    }
}

/// `--slice`: a slice, or `visible` (see [`mig_slices::discovery::visible`]).
fn parse_slice(text: &str) -> Result<SliceId, String> {
    if text.trim() != "visible" {
        return text
            .parse()
            .map_err(|e: mig_slices::SliceParseError| e.to_string());
    }
    let vars = mig_slices::discovery::VISIBLE_DEVICES_VARS.map(|name| std::env::var(name).ok());
    // NVML only when the variables do not say.
    match mig_slices::discovery::visible_slice(&vars, None) {
        Ok(id) => Ok(id),
        Err(_) => {
            let discovery = mig_slices::discovery::discover();
            let listed = match &discovery {
                mig_slices::discovery::Discovery::Nvml { discovered, .. } => {
                    Some(discovered.slices.as_slice())
                }
                mig_slices::discovery::Discovery::NoNvml { .. } => None,
            };
            mig_slices::discovery::visible_slice(&vars, listed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        ServeArgs::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
    }

    /// The contract with the gateway's supervisor: every flag it writes
    /// (`mig_serve::WorkerFlags`) parses here into what it meant.
    #[test]
    fn the_flags_a_supervisor_writes_parse_into_what_it_meant() {
        use mig_serve::WorkerFlags;
        let gpu = WorkerFlags {
            model_name: "synthetic-7b".into(),
            source: ModelSource::Synthetic {
                spec: "llama-7b:bf16".parse().unwrap(),
                seed: 3,
            },
            slice: "MIG-5c1e3b34-0d8f-5a8e-9c41-2f5b7d6a1e90".parse().unwrap(),
            profile: Some("1g.10gb".into()),
            threads: 1,
            metrics: true,
            extra: vec!["--max-batch-size".into(), "8".into()],
            // Travels in the environment (`flags.environment()`), not here.
            caller_token: None,
        };
        let args = ServeArgs::try_parse_from(gpu.args()).unwrap();
        assert!(args.validate().is_ok(), "{:?}", args.validate());
        assert_eq!(args.model_name, gpu.model_name);
        assert_eq!(args.model_source(), gpu.source);
        assert_eq!(args.slice, gpu.slice);
        assert_eq!(args.profile, gpu.profile);
        assert_eq!(args.device, DeviceKind::Cuda);
        assert_eq!(args.threads(), 1);
        assert_eq!(args.max_batch_size, 8);
        assert_eq!(args.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(args.metrics_listen, Some("127.0.0.1:0".parse().unwrap()));

        let cpu = WorkerFlags {
            model_name: "smollm2-135m".into(),
            source: ModelSource::File("m.gguf".into()),
            slice: "cpu:2-3".parse().unwrap(),
            profile: None,
            threads: 2,
            metrics: false,
            extra: Vec::new(),
            caller_token: None,
        };
        let args = ServeArgs::try_parse_from(cpu.args()).unwrap();
        assert!(args.validate().is_ok());
        assert_eq!(args.model_source(), cpu.source);
        assert_eq!((args.device, args.threads()), (DeviceKind::Cpu, 2));
        assert_eq!(args.metrics_listen, None);
        let identity = WorkerFlags {
            model_name: "identity-echo".into(),
            source: ModelSource::Identity,
            ..cpu
        };
        let args = ServeArgs::try_parse_from(identity.args()).unwrap();
        assert!(args.validate().is_ok());
        assert_eq!(args.model_source(), ModelSource::Identity);
    }

    #[test]
    fn exactly_one_of_model_path_and_identity() {
        let file = parse(&["--model-name", "m", "--model-path", "m.gguf"]).unwrap();
        assert!(file.validate().is_ok());
        assert_eq!(file.model_source(), ModelSource::File("m.gguf".into()));

        let echo = parse(&["--model-name", "identity", "--identity"]).unwrap();
        assert!(echo.validate().is_ok());
        assert_eq!(echo.model_source(), ModelSource::Identity);

        let e = parse(&["--model-name", "m"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            e.contains("`--model-path`") && e.contains("`--identity`"),
            "{e}"
        );
        let e = parse(&[
            "--model-name",
            "identity",
            "--identity",
            "--model-path",
            "m.gguf",
        ])
        .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn an_identity_worker_says_so_in_its_model_name() {
        let e = parse(&["--model-name", "smollm2-135m", "--identity"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            e.contains("`--model-name` `smollm2-135m` must contain `identity`")
                && e.contains("metrics"),
            "{e}"
        );
        let ok = parse(&["--model-name", "identity-cpu", "--identity"]).unwrap();
        assert!(ok.validate().is_ok());
    }
}
