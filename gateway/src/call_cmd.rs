//! `mig-gateway call`: the project's own client, for the shell.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use mig_proto::inference::v1::inference_client::InferenceClient;
use mig_proto::inference::v1::{
    ChatMessage, EmbedRequest, FinishReason, GenerateRequest, ListModelsRequest, ModelKind,
    ServedBy, TokenLogprob, Usage, WorkerHealth, WorkerOrigin,
};
use mig_serve::secret::{Secret, SendBearer};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// `--api-key`: checked like any secret; the error never shows it.
fn parse_api_key(text: &str) -> Result<Secret, String> {
    Secret::new(text).map_err(|e| format!("the key {e}"))
}

/// Every call carries the API key, when there is one.
type Client = InferenceClient<InterceptedService<Channel, SendBearer>>;

#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    /// The gateway's address.
    #[arg(
        long,
        env = "MIG_GATEWAY_TARGET",
        default_value = "http://127.0.0.1:50051"
    )]
    pub target: String,

    /// Give up after this many seconds (sent to the server as the deadline).
    #[arg(long)]
    pub timeout: Option<f64>,

    /// A tenant's API key (from `mig-gateway tenant add-key`), sent as
    /// `authorization: Bearer`. Prefer the environment variable: a command
    /// line is visible to every local user.
    #[arg(long, env = "MIG_API_KEY", hide_env_values = true, value_parser = parse_api_key)]
    pub api_key: Option<Secret>,

    /// CA certificate (PEM) to trust: the gateway speaks TLS (`--tls-cert`).
    #[arg(long, env = "MIG_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,

    #[command(subcommand)]
    pub call: Call,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Call {
    /// Generate text: a chat turn (`--user`) or a raw `--prompt`.
    Generate(GenerateArgs),
    /// Embed texts and print their cosine similarities.
    Embed(EmbedArgs),
    /// List the models, their kind and their workers.
    Models,
}

#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    #[arg(long, default_value = "smollm2-135m")]
    pub model: String,
    /// Raw text prompt (no chat template).
    #[arg(long, conflicts_with_all = ["user", "system"])]
    pub prompt: Option<String>,
    /// A user turn, rendered with the model's chat template.
    #[arg(long)]
    pub user: Option<String>,
    /// A system turn placed before the user turn.
    #[arg(long, requires = "user")]
    pub system: Option<String>,
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// 0 is greedy.
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long)]
    pub top_k: Option<u32>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// A stop string (repeat for several).
    #[arg(long)]
    pub stop: Vec<String>,
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// Generate to `--max-tokens` even past the model's end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Only a worker on a slice of this profile (`cpu-2c`, `1g.10gb`).
    #[arg(long, default_value = "")]
    pub profile: String,
    /// Print tokens as they arrive (GenerateStream) instead of the whole answer.
    #[arg(long)]
    pub stream: bool,
    /// After the answer, each token's log-probability and those of its N
    /// most likely alternatives (0-20).
    #[arg(long)]
    pub logprobs: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct EmbedArgs {
    #[arg(long, default_value = "minilm-l6")]
    pub model: String,
    /// Cut inputs longer than the model's limit instead of failing.
    #[arg(long)]
    pub truncate: bool,
    /// Texts to embed.
    #[arg(required = true)]
    pub inputs: Vec<String>,
}

fn request<T>(message: T, timeout: Option<f64>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if let Some(t) = timeout {
        r.set_timeout(Duration::from_secs_f64(t));
    }
    r
}

fn finish_name(code: i32) -> String {
    FinishReason::try_from(code)
        .map(|f| {
            f.as_str_name()
                .trim_start_matches("FINISH_REASON_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| code.to_string())
}

fn summary(
    finish: i32,
    usage: Option<Usage>,
    served_by: Option<ServedBy>,
    elapsed: Duration,
) -> String {
    let usage = usage.unwrap_or_default();
    let by = served_by.unwrap_or_default();
    format!(
        "[finish={} prompt_tokens={} completion_tokens={} worker={} slice={} profile={} elapsed={:.2}s]",
        finish_name(finish),
        usage.prompt_tokens,
        usage.completion_tokens,
        by.worker_id,
        by.slice,
        by.profile,
        elapsed.as_secs_f64()
    )
}

/// Runs one call; the text goes to stdout, the summary line to stderr.
pub async fn run(args: CallArgs) -> Result<(), tonic::Status> {
    let channel = mig_serve::tls::client_endpoint(&args.target, args.tls_ca.as_deref())
        .map_err(|e| tonic::Status::invalid_argument(format!("`--target`/`--tls-ca`: {e}")))?
        .connect()
        .await
        .map_err(|e| {
            // The transport error's source says why (refused, TLS, ...).
            let why = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            tonic::Status::unavailable(format!("cannot connect to {}: {e}{why}", args.target))
        })?;
    let mut client: Client =
        InferenceClient::with_interceptor(channel, SendBearer(args.api_key.clone()));
    let started = Instant::now();
    match args.call {
        Call::Generate(g) => {
            let mut messages = Vec::new();
            if let Some(system) = g.system {
                messages.push(ChatMessage {
                    role: "system".into(),
                    content: system,
                });
            }
            if let Some(user) = g.user {
                messages.push(ChatMessage {
                    role: "user".into(),
                    content: user,
                });
            }
            let req = GenerateRequest {
                model: g.model,
                prompt: g.prompt.unwrap_or_default(),
                messages,
                max_tokens: g.max_tokens,
                temperature: g.temperature,
                top_p: g.top_p,
                top_k: g.top_k,
                seed: g.seed,
                stop: g.stop,
                repetition_penalty: g.repetition_penalty,
                ignore_eos: g.ignore_eos,
                profile: g.profile,
                logprobs: g.logprobs,
            };
            if g.stream {
                let mut stream = client
                    .generate_stream(request(req, args.timeout))
                    .await?
                    .into_inner();
                let mut stdout = std::io::stdout();
                let mut logprobs = Vec::new();
                while let Some(m) = stream.message().await? {
                    print!("{}", m.text);
                    let _ = stdout.flush();
                    logprobs.extend(m.logprobs);
                    if m.finish_reason != FinishReason::Unspecified as i32 {
                        println!();
                        print_logprobs(&logprobs);
                        eprintln!(
                            "{}",
                            summary(m.finish_reason, m.usage, m.served_by, started.elapsed())
                        );
                    }
                }
            } else {
                let r = client
                    .generate(request(req, args.timeout))
                    .await?
                    .into_inner();
                println!("{}", r.text);
                print_logprobs(&r.logprobs);
                eprintln!(
                    "{}",
                    summary(r.finish_reason, r.usage, r.served_by, started.elapsed())
                );
            }
        }
        Call::Embed(e) => {
            let req = EmbedRequest {
                model: e.model,
                inputs: e.inputs.clone(),
                truncate: e.truncate,
            };
            let r = client.embed(request(req, args.timeout)).await?.into_inner();
            for (i, (text, v)) in e.inputs.iter().zip(&r.embeddings).enumerate() {
                let head: Vec<String> = v
                    .values
                    .iter()
                    .take(4)
                    .map(|x| format!("{x:+.4}"))
                    .collect();
                println!(
                    "[{i}] {} dims [{}, ...]  {text}",
                    v.values.len(),
                    head.join(", ")
                );
            }
            if r.embeddings.len() > 1 {
                println!("cosine similarity:");
                for (i, a) in r.embeddings.iter().enumerate() {
                    let row: Vec<String> = r
                        .embeddings
                        .iter()
                        .map(|b| format!("{:.3}", dot(&a.values, &b.values)))
                        .collect();
                    println!("  [{i}] {}", row.join("  "));
                }
            }
            let by = r.served_by.unwrap_or_default();
            eprintln!(
                "[prompt_tokens={} truncated_inputs={} worker={} slice={} profile={}]",
                r.usage.unwrap_or_default().prompt_tokens,
                r.truncated_inputs,
                by.worker_id,
                by.slice,
                by.profile
            );
        }
        Call::Models => {
            let r = client
                .list_models(request(ListModelsRequest {}, args.timeout))
                .await?
                .into_inner();
            for m in r.models {
                let kind = ModelKind::try_from(m.kind).unwrap_or(ModelKind::Unspecified);
                println!(
                    "{}  kind={}  context={}",
                    m.name,
                    kind.as_str_name()
                        .trim_start_matches("MODEL_KIND_")
                        .to_lowercase(),
                    m.context_length
                );
                for w in m.workers {
                    let health =
                        WorkerHealth::try_from(w.health).unwrap_or(WorkerHealth::Unspecified);
                    let origin =
                        WorkerOrigin::try_from(w.origin).unwrap_or(WorkerOrigin::Unspecified);
                    let gpu = if w.gpu.is_empty() {
                        String::new()
                    } else {
                        format!(" gpu={}", w.gpu)
                    };
                    println!(
                        "  worker={} slice={} profile={}{gpu} engine={:?} memory={:.1}GiB health={} origin={} restarts={} address={}",
                        w.worker_id,
                        w.slice,
                        w.profile,
                        w.engine,
                        w.memory_bytes as f64 / (1u64 << 30) as f64,
                        health
                            .as_str_name()
                            .trim_start_matches("WORKER_HEALTH_")
                            .to_lowercase(),
                        origin
                            .as_str_name()
                            .trim_start_matches("WORKER_ORIGIN_")
                            .to_lowercase(),
                        w.restarts,
                        w.address
                    );
                }
            }
        }
    }
    Ok(())
}

pub use mig_serve::status::code_name;

/// Cosine similarity of two L2-normalised vectors.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// One line a token: its text and log-probability, then the most likely
/// alternatives at that step.
fn print_logprobs(logprobs: &[TokenLogprob]) {
    for t in logprobs {
        let top: Vec<String> = t
            .top
            .iter()
            .map(|a| format!("{:?} {:.3}", a.text, a.logprob))
            .collect();
        println!(
            "{:>14} {:>8.3}   {}",
            format!("{:?}", t.text),
            t.logprob,
            top.join("  ")
        );
    }
}
