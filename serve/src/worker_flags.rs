//! How a worker is started: what it loads ([`ModelSource`]) and the flags of
//! `mig-worker serve` ([`WorkerFlags`]), built from one typed struct by the
//! gateway's supervisor and parsed by the worker's command line (a test in
//! the worker checks that every flag written here parses there).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use mig_slices::synthetic::SyntheticSpec;
use mig_slices::SliceId;

use crate::secret::Secret;

/// The variable that hands a worker its caller token: in its environment,
/// never on its command line, which every local user can read (`ps`).
pub const CALLER_TOKEN_ENV: &str = "MIG_WORKER_CALLER_TOKEN";

/// What a worker loads.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A `.gguf` file (text generation), or a folder: a Hugging Face llama
    /// checkpoint or BERT (embeddings).
    File(PathBuf),
    /// The identity model: echoes the prompt, computes nothing.
    Identity,
    /// A public architecture's shape with seeded random weights.
    Synthetic { spec: SyntheticSpec, seed: u64 },
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::File(path) => write!(f, "{}", path.display()),
            ModelSource::Identity => f.write_str("identity"),
            ModelSource::Synthetic { spec, seed } => write!(f, "synthetic {spec} seed {seed}"),
        }
    }
}

/// `--max-batch-size`: a fleet's `concurrency` sets it unless its `args` do.
pub const MAX_BATCH_SIZE: &str = "--max-batch-size";

/// Whether hand-written `args` set `flag`, in either form clap takes
/// (`--flag value` or `--flag=value`).
pub fn sets_flag(args: &[String], flag: &str) -> bool {
    args.iter().any(|a| {
        a == flag
            || a.strip_prefix(flag)
                .is_some_and(|rest| rest.starts_with('='))
    })
}

/// The command line of one `mig-worker serve`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerFlags {
    /// The name clients route by.
    pub model_name: String,
    pub source: ModelSource,
    /// The slice it is pinned to; a GPU slice also means `--device cuda`.
    pub slice: SliceId,
    /// The slice's profile as NVML named it (GPU slices).
    pub profile: Option<String>,
    /// Compute threads.
    pub threads: usize,
    /// Serve `/metrics` on a free port (its address is on the ready line).
    pub metrics: bool,
    /// Flags written by hand (a fleet file's `args`), passed on last.
    pub extra: Vec<String>,
    /// The token the worker accepts calls with (its gateway's), if any.
    pub caller_token: Option<Secret>,
}

impl WorkerFlags {
    /// `serve ...`, on `127.0.0.1:0` (the port is on the ready line).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["serve".into(), "--model-name".into()];
        args.push(self.model_name.clone().into());
        match &self.source {
            ModelSource::File(path) => {
                args.push("--model-path".into());
                args.push(path.clone().into());
            }
            ModelSource::Identity => args.push("--identity".into()),
            ModelSource::Synthetic { spec, seed } => {
                args.extend(["--synthetic".into(), spec.to_string().into()]);
                if *seed != 0 {
                    args.extend(["--synthetic-seed".into(), seed.to_string().into()]);
                }
            }
        }
        for (flag, value) in [
            ("--slice", self.slice.to_string()),
            ("--threads", self.threads.to_string()),
            ("--listen", "127.0.0.1:0".to_string()),
        ] {
            args.extend([flag.into(), value.into()]);
        }
        args.extend(self.extra.iter().map(OsString::from));
        if self.metrics {
            args.extend(["--metrics-listen".into(), "127.0.0.1:0".into()]);
        }
        if !matches!(self.slice, SliceId::Cpu(_)) {
            args.extend(["--device".into(), "cuda".into()]);
            if let Some(profile) = &self.profile {
                args.extend(["--profile".into(), profile.into()]);
            }
        }
        args
    }

    /// The variables the worker gets: its slice as CUDA device 0 and nothing
    /// else (none at all on a CPU slice), candle's CPU kernels sized to the
    /// slice, and its caller token.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        let visible = match &self.slice {
            SliceId::Mig(uuid) | SliceId::Gpu(uuid) => uuid.clone(),
            SliceId::Cpu(_) => String::new(),
        };
        let mut env = vec![
            ("CUDA_VISIBLE_DEVICES", visible),
            ("RAYON_NUM_THREADS", self.threads.to_string()),
        ];
        if let Some(token) = &self.caller_token {
            env.push((CALLER_TOKEN_ENV, token.expose().to_string()));
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_set_by_hand_is_seen_in_both_forms_and_not_by_prefix() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(sets_flag(&args(&["--max-batch-size", "8"]), MAX_BATCH_SIZE));
        assert!(sets_flag(&args(&["--max-batch-size=8"]), MAX_BATCH_SIZE));
        assert!(!sets_flag(
            &args(&["--max-batch-sizes", "8"]),
            MAX_BATCH_SIZE
        ));
        assert!(!sets_flag(&args(&["--weights", "q8-0"]), MAX_BATCH_SIZE));
    }

    #[test]
    fn a_gpu_slice_adds_the_device_and_profile_a_cpu_slice_does_not() {
        let flags = WorkerFlags {
            model_name: "m".into(),
            source: ModelSource::Identity,
            slice: "cpu:0-1".parse().unwrap(),
            profile: None,
            threads: 2,
            metrics: false,
            extra: vec!["--max-waiting".into(), "4".into()],
            caller_token: Some(Secret::new("a-token-that-is-long-enough").unwrap()),
        };
        let text = |f: &WorkerFlags| {
            f.args()
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            text(&flags),
            "serve --model-name m --identity --slice cpu:0-1 --threads 2 \
             --listen 127.0.0.1:0 --max-waiting 4"
        );
        // The token is in the environment, never on the command line.
        assert!(!text(&flags).contains("a-token"));
        assert!(flags
            .environment()
            .contains(&(CALLER_TOKEN_ENV, "a-token-that-is-long-enough".to_string())));
        let gpu = WorkerFlags {
            slice: "MIG-1".parse().unwrap(),
            profile: Some("1g.10gb".into()),
            metrics: true,
            extra: Vec::new(),
            ..flags
        };
        assert!(
            text(&gpu).ends_with("--metrics-listen 127.0.0.1:0 --device cuda --profile 1g.10gb"),
            "{}",
            text(&gpu)
        );
    }
}
