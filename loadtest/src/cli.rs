//! The `mig-loadtest` command line: three scenarios sharing one set of load
//! and workload flags, checked together in [`LoadArgs::validate`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::error::LoadtestError;
use crate::run::{Load, Until};
use crate::target::TargetKind;
use crate::workload::Dist;

#[derive(Debug, Parser)]
#[command(
    name = "mig-loadtest",
    version,
    about = "Load tests for mig-gateway: compare slice sizes, measure isolation, sweep load"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The same workload against each slice size (profile) of a model in
    /// turn: tokens/s per profile, per compute unit, and the ratio to the
    /// smallest slice.
    Compare(CompareArgs),
    /// A victim model measured alone, then while an aggressor floods a
    /// neighbour slice: the victim's loss of throughput and p99 latency.
    Isolation(IsolationArgs),
    /// A concurrency or rate sweep on one model: throughput-latency curves,
    /// for one target or several (a gateway and a worker: its overhead).
    Sweep(SweepArgs),
    /// Capacity, then one stream alone, then Poisson arrivals at a multiple
    /// of the capacity with the requests' deadline (`--timeout`): goodput,
    /// admitted latency against unloaded, what was refused at once.
    Overload(OverloadArgs),
}

impl Command {
    /// The flags the scenarios share.
    pub fn load(&self) -> &LoadArgs {
        match self {
            Command::Compare(a) => &a.load,
            Command::Isolation(a) => &a.load,
            Command::Sweep(a) => &a.load,
            Command::Overload(a) => &a.load,
        }
    }
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Only these profiles (`cpu-1c,cpu-2c`, `1g.10gb,3g.40gb`); default:
    /// every profile the model has a healthy worker on.
    #[arg(long, value_delimiter = ',')]
    pub profiles: Vec<String>,
}

#[derive(Debug, Args)]
pub struct IsolationArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// The model that floods a neighbour slice; repeat it, once per
    /// `--model`, to measure several placements (victim i with aggressor i).
    #[arg(long, required = true)]
    pub aggressor: Vec<String>,
    /// Concurrent clients of the aggressor's flood.
    #[arg(long, default_value_t = 4)]
    pub aggressor_concurrency: u32,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Also run each point straight against the model's first healthy
    /// worker, as the gateway (the first `--target`) lists it, and compare
    /// the gateway with it: the gateway's own overhead, in the same run.
    #[arg(long)]
    pub direct: bool,
}

#[derive(Debug, Args)]
pub struct OverloadArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Offered load, as a multiple of the measured capacity.
    #[arg(long, default_value_t = 10.0)]
    pub multiple: f64,
    /// Streams of the closed loop that measures the capacity (more than
    /// the target runs at once, so no place is idle).
    #[arg(long, default_value_t = 8)]
    pub capacity_concurrency: u32,
}

/// Most tokens a request may ask for; the model's context is checked once
/// the target says what it is.
pub const MAX_TOKENS: u32 = 1_000_000;
/// Most words of padded user text.
pub const MAX_INPUT_WORDS: u32 = 100_000;

/// The flags every scenario shares.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// gRPC address of a gateway, or of one worker straight. `sweep` takes
    /// several (comma-separated or repeated) and runs each point on each.
    #[arg(
        long,
        env = "MIG_LOADTEST_TARGET",
        value_delimiter = ',',
        default_value = "127.0.0.1:50051"
    )]
    pub target: Vec<String>,

    /// What the targets are; `auto` asks them.
    #[arg(long, value_enum, default_value = "auto")]
    pub target_kind: TargetKind,

    /// The model to load (`isolation`: the victim; repeat it to pair with
    /// each `--aggressor`).
    #[arg(long, required = true)]
    pub model: Vec<String>,

    /// Closed loop: concurrent clients, each point in turn (`1,2,4,8,16`).
    /// The default when neither this nor `--rate` is given: `1`.
    #[arg(long, value_delimiter = ',', conflicts_with = "rate")]
    pub concurrency: Vec<u32>,

    /// Open loop: Poisson arrivals in requests/s, each point in turn (`0.5,1,2`).
    #[arg(long, value_delimiter = ',')]
    pub rate: Vec<f64>,

    /// Measured time of each load point, after the warm-up (`30s`, `2m`).
    /// The default when neither this nor `--requests` is given: 30 s.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,

    /// Measured requests of each load point, after the warm-up.
    #[arg(long)]
    pub requests: Option<u64>,

    /// Warm-up before each load point; its requests are not measured.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub warmup: Duration,

    /// Tokens to generate per request: `N`, or `MIN-MAX` drawn uniformly.
    #[arg(long, default_value = "64")]
    pub max_tokens: Dist,

    /// Generate exactly the drawn `--max-tokens`: the model's end-of-sequence
    /// does not end a request (as benchmark tools do, so runs compare).
    #[arg(long)]
    pub ignore_eos: bool,

    /// Words of user text per request, `N` or `MIN-MAX`: each prompt is cut
    /// or padded with filler words. Default: prompts as written.
    #[arg(long)]
    pub input_words: Option<Dist>,

    /// A JSONL file of prompts, one per line: `{"prompt": "..."}` or
    /// `{"messages": [{"role": "user", "content": "..."}]}`. Default: 16
    /// built-in chat prompts.
    #[arg(long)]
    pub prompts: Option<PathBuf>,

    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,

    /// Seeds the workload (prompt and length draws, sampler seeds) and the
    /// open loop's arrival times: the same seed sends the same requests.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Deadline of each request: sent as its gRPC deadline and enforced by
    /// the client on the whole stream.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
    pub timeout: Duration,

    /// How long requests still running when a load point ends are awaited;
    /// then the client gives up on them (status `CANCELLED`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub drain: Duration,

    /// Open loop: most requests in flight; arrivals beyond it are skipped
    /// and counted.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,

    /// A `/metrics` URL (`http://127.0.0.1:9400/metrics`) read before and
    /// after each load point: the server's tokens/s per slice beside the
    /// client's.
    #[arg(long)]
    pub metrics_url: Option<String>,

    /// Write `report.json`, `summary.csv`, `requests.csv`, `report.md` and
    /// SVG charts to this folder.
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// File holding the token of workers started by `mig-gateway up
    /// --worker-token-file` (they accept no other caller): needed to load a
    /// worker straight, as `sweep --direct` does.
    #[arg(long, env = "MIG_LOADTEST_WORKER_TOKEN_FILE")]
    pub worker_token_file: Option<PathBuf>,

    /// A tenant's API key for a gateway with a tenants file, sent as
    /// `authorization: Bearer`; never printed or written to the report.
    #[arg(long, env = "MIG_API_KEY", hide_env_values = true, value_parser = parse_api_key)]
    pub api_key: Option<mig_serve::secret::Secret>,

    /// CA certificate (PEM) to trust: the target speaks TLS (`--tls-cert`
    /// on the gateway).
    #[arg(long, env = "MIG_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

/// `--api-key`: checked like any secret; the error never shows it.
fn parse_api_key(text: &str) -> Result<mig_serve::secret::Secret, String> {
    mig_serve::secret::Secret::new(text).map_err(|e| format!("the key {e}"))
}

impl LoadArgs {
    /// The token of `--worker-token-file` (read now), the API key and the
    /// TLS CA.
    pub fn credentials(&self) -> Result<crate::target::Credentials, LoadtestError> {
        let worker_token = self
            .worker_token_file
            .as_deref()
            .map(mig_serve::secret::Secret::from_file)
            .transpose()
            .map_err(|e| LoadtestError::Usage(format!("`--worker-token-file`: {e}")))?;
        Ok(crate::target::Credentials {
            worker_token,
            api_key: self.api_key.clone(),
            tls_ca: self.tls_ca.clone(),
        })
    }

    /// Cross-field checks; `targets` and `models` are how many of each the
    /// scenario takes (`None`: any number).
    pub fn validate(
        &self,
        targets: Option<usize>,
        models: Option<usize>,
    ) -> Result<(), LoadtestError> {
        let usage = |m: String| Err(LoadtestError::Usage(m));
        if let Some(n) = targets {
            if self.target.len() != n {
                return usage(format!(
                    "`--target` given {} times; this scenario takes {n}",
                    self.target.len()
                ));
            }
        }
        if let Some(n) = models {
            if self.model.len() != n {
                return usage(format!(
                    "`--model` given {} times; this scenario takes {n}",
                    self.model.len()
                ));
            }
        }
        if let Some(c) = self.concurrency.iter().find(|c| **c == 0 || **c > 4096) {
            return usage(format!("`--concurrency` {c} is outside 1..=4096"));
        }
        if let Some(r) = self
            .rate
            .iter()
            .find(|r| !(r.is_finite() && **r > 0.0 && **r <= 100_000.0))
        {
            return usage(format!("`--rate` {r} is outside (0, 100000] requests/s"));
        }
        if let Some(n) = self.requests.filter(|n| !(1..=10_000_000).contains(n)) {
            return usage(format!("`--requests` {n} is outside 1..=10000000"));
        }
        let day = Duration::from_secs(86_400);
        for (flag, value, zero_ok) in [
            ("--duration", self.duration, false),
            ("--warmup", Some(self.warmup), true),
            ("--drain", Some(self.drain), true),
            ("--timeout", Some(self.timeout), false),
        ] {
            if let Some(d) = value {
                if d > day || (!zero_ok && d.is_zero()) {
                    let low = if zero_ok { "0s" } else { "more than 0s" };
                    return usage(format!(
                        "`{flag}` {} is outside {low}..=24h",
                        humantime::format_duration(d)
                    ));
                }
            }
        }
        if self.max_tokens.max() > MAX_TOKENS {
            return usage(format!(
                "`--max-tokens` {} is above {MAX_TOKENS}",
                self.max_tokens
            ));
        }
        if let Some(words) = self.input_words.filter(|w| w.max() > MAX_INPUT_WORDS) {
            return usage(format!(
                "`--input-words` {words} is above {MAX_INPUT_WORDS}"
            ));
        }
        if self.max_in_flight == 0 {
            return usage("`--max-in-flight` must be at least 1".into());
        }
        if !(0.0..=100.0).contains(&self.temperature) {
            return usage(format!(
                "`--temperature` {} is outside [0, 100]",
                self.temperature
            ));
        }
        Ok(())
    }

    /// The load points, in order.
    pub fn loads(&self) -> Vec<Load> {
        if !self.rate.is_empty() {
            self.rate.iter().map(|&rate| Load::Open { rate }).collect()
        } else if !self.concurrency.is_empty() {
            self.concurrency
                .iter()
                .map(|&concurrency| Load::Closed { concurrency })
                .collect()
        } else {
            vec![Load::Closed { concurrency: 1 }]
        }
    }

    pub fn until(&self) -> Until {
        match (self.requests, self.duration) {
            (Some(n), _) => Until::Requests(n),
            (None, Some(d)) => Until::Duration(d),
            (None, None) => Until::Duration(Duration::from_secs(30)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("mig-loadtest").chain(args.iter().copied()))
    }

    fn load_of(cli: Cli) -> LoadArgs {
        cli.command.load().clone()
    }

    #[test]
    fn lists_durations_and_defaults() {
        let load = load_of(
            parse(&[
                "sweep",
                "--model",
                "m",
                "--concurrency",
                "1,2,4",
                "--duration",
                "1m",
            ])
            .unwrap(),
        );
        assert_eq!(load.loads().len(), 3);
        assert!(matches!(load.until(), Until::Duration(d) if d == Duration::from_secs(60)));
        assert_eq!(load.target, ["127.0.0.1:50051"]);
        let load = load_of(parse(&["compare", "--model", "m"]).unwrap());
        assert_eq!(load.loads(), [Load::Closed { concurrency: 1 }]);
        assert!(matches!(load.until(), Until::Duration(d) if d == Duration::from_secs(30)));
    }

    #[test]
    fn conflicting_and_out_of_range_flags_are_refused_by_name() {
        let e = parse(&["sweep", "--model", "m", "--concurrency", "1", "--rate", "2"]).unwrap_err();
        assert!(e.to_string().contains("--rate"), "{e}");
        let e = parse(&[
            "sweep",
            "--model",
            "m",
            "--requests",
            "5",
            "--duration",
            "1s",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("--duration"), "{e}");
        let load = load_of(parse(&["sweep", "--model", "m", "--concurrency", "0"]).unwrap());
        let e = load.validate(None, Some(1)).unwrap_err().to_string();
        assert!(e.contains("`--concurrency` 0"), "{e}");
        let load = load_of(parse(&["sweep", "--model", "m", "--rate", "0"]).unwrap());
        assert!(load
            .validate(None, Some(1))
            .unwrap_err()
            .to_string()
            .contains("`--rate`"));
        let load = load_of(parse(&["compare", "--model", "m", "--target", "a,b"]).unwrap());
        let e = load.validate(Some(1), Some(1)).unwrap_err().to_string();
        assert!(e.contains("`--target` given 2 times"), "{e}");
        let e = parse(&["compare", "--model", "m", "--max-tokens", "0"]).unwrap_err();
        assert!(e.to_string().contains("lengths start at 1"), "{e}");
        for (flag, value, says) in [
            (
                "--duration",
                "500000000y",
                "`--duration` 500000000years is outside more than 0s..=24h",
            ),
            (
                "--timeout",
                "0s",
                "`--timeout` 0s is outside more than 0s..=24h",
            ),
            (
                "--max-tokens",
                "5-2000000",
                "`--max-tokens` 5-2000000 is above 1000000",
            ),
            (
                "--input-words",
                "200000",
                "`--input-words` 200000 is above 100000",
            ),
        ] {
            let load = load_of(parse(&["sweep", "--model", "m", flag, value]).unwrap());
            let e = load.validate(None, Some(1)).unwrap_err().to_string();
            assert_eq!(e, says);
        }
    }
}
