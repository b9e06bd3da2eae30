//! The fleet file (TOML): which model runs on which slices.
//!
//! One `[[model]]` per model name. Where its workers run is one of:
//!
//! ```toml
//! [[model]]
//! name = "smollm2-135m"
//! path = "models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
//! slices = "auto"          # the default: the planner picks among the slices found
//! replicas = 1             # with "auto": how many workers
//! tokens_per_second = 60   # with "auto": `mig-gateway plan` sizes each replica's profile for it
//!
//! [[model]]
//! name = "minilm-l6"
//! path = "models/minilm-l6"
//! slices = ["cpu:1"]       # or ["MIG-<uuid>", ...]: one worker per slice
//!
//! [[model]]
//! name = "big"
//! path = "models/big.gguf"
//! profile = "2g.20gb"      # any free MIG slices of this profile
//! count = 2
//!
//! [[model]]
//! name = "remote"
//! addresses = ["http://10.0.0.7:50061"]   # workers that run already
//!
//! [[model]]
//! name = "identity"
//! identity = true          # the echo model (no `path`): serving overhead only
//! slices = ["cpu:0"]
//!
//! [[model]]
//! name = "noisy"
//! path = "models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
//! slices = ["cpu:0"]
//! shared = true            # its slices may overlap other workers' (no isolation)
//! ```
//!
//! `context` and `concurrency` size the KV-cache headroom the planner reserves
//! (`auto` on GPUs and `mig-gateway plan`); an explicit `concurrency` is also
//! the workers' `--max-batch-size` (unless `args` sets one). Relative paths
//! are taken from the directory the gateway runs in.

use std::path::{Path, PathBuf};

use mig_serve::limits::{IDENTITY_MARK, SYNTHETIC_MARK};
use mig_serve::worker_flags::{sets_flag, MAX_BATCH_SIZE};
use mig_slices::SliceId;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    #[serde(default, rename = "model")]
    pub models: Vec<ModelEntry>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The name clients route by.
    pub name: String,
    /// The model file (`.gguf`) or folder (BERT) for workers the gateway starts.
    pub path: Option<PathBuf>,
    /// Start the identity model (`mig-worker serve --identity`) instead of a
    /// file: it echoes the prompt, to measure the serving overhead. The name
    /// must contain `identity`.
    #[serde(default)]
    pub identity: bool,
    /// Start a synthetic model (`mig-worker serve --synthetic`) instead of a
    /// file: `llama-7b:bf16`, sizes 135m, 1b, 3b, 7b, 8b, 13b. The name must
    /// contain `synthetic`.
    pub synthetic: Option<String>,
    /// With an explicit `slices` list: these slices may overlap other
    /// workers' (and each other), on purpose: time-sharing for isolation
    /// experiments, or slices of several sizes on a small machine.
    #[serde(default)]
    pub shared: bool,
    /// `"auto"` or a list of slices (`cpu:0`, `MIG-<uuid>`, `GPU-<uuid>`).
    pub slices: Option<Slices>,
    /// A MIG profile (`1g.10gb`): take `count` free slices of it.
    pub profile: Option<String>,
    /// With `profile`: how many slices (default 1).
    pub count: Option<u32>,
    /// With `slices = "auto"`: how many workers (default 1).
    pub replicas: Option<u32>,
    /// With `slices = "auto"`: the decode rate, in tokens/s of one stream,
    /// each replica must reach; `mig-gateway plan` then gives it only
    /// profiles that fast. Not with `slices` or `profile`, which fix the
    /// slice whatever its speed.
    pub tokens_per_second: Option<f64>,
    /// Running workers' gRPC addresses (`http://host:port`); no `path` then.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Tokens of context to reserve KV cache for, per sequence (default: the
    /// model's context length as the worker serves it).
    pub context: Option<u64>,
    /// Sequences served at once, for the same reservation (default 1).
    pub concurrency: Option<u64>,
    /// Compute threads of a started worker (default: the slice's core count).
    pub threads: Option<usize>,
    /// Extra `mig-worker serve` arguments, for example `["--weights", "native"]`.
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Slices {
    /// Must be `"auto"` (checked with the rest of the entry).
    Keyword(String),
    List(Vec<String>),
}

/// Where a model's workers should run, as the fleet file says it.
#[derive(Debug, Clone, PartialEq)]
pub enum Want {
    /// Already running at these addresses.
    Remote { addresses: Vec<String> },
    /// One worker on each of these slices.
    Slices(Vec<SliceId>),
    /// `count` free MIG slices of `profile`.
    Profile { profile: String, count: u32 },
    /// `replicas` workers on slices the gateway picks.
    Auto { replicas: u32 },
}

/// What a worker loads (the one type the supervisor and the worker share).
pub use mig_serve::ModelSource;

/// A model entry, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPlan {
    pub name: String,
    /// What to start; `None` for running workers (`addresses`).
    pub source: Option<ModelSource>,
    pub want: Want,
    /// `shared = true`: its slices may overlap other workers'.
    pub shared: bool,
    pub context: Option<u64>,
    pub concurrency: u64,
    pub threads: Option<usize>,
    pub args: Vec<String>,
    /// Decode-rate target per replica, tokens/s (`Want::Auto` only).
    pub tokens_per_second: Option<f64>,
}

impl ModelPlan {
    /// Workers this entry asks for.
    pub fn replicas(&self) -> u32 {
        match &self.want {
            Want::Remote { addresses } => addresses.len() as u32,
            Want::Slices(slices) => slices.len() as u32,
            Want::Profile { count, .. } => *count,
            Want::Auto { replicas } => *replicas,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot read fleet file `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("fleet file `{path}`: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("fleet file `{path}`, `model[{index}]` (`{name}`): {message}")]
    Entry {
        path: PathBuf,
        index: usize,
        name: String,
        message: String,
    },
}

impl Fleet {
    /// Reads and checks a fleet file.
    pub fn load(path: &Path) -> Result<Vec<ModelPlan>, FleetError> {
        let text = std::fs::read_to_string(path).map_err(|source| FleetError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Fleet::parse(&text, path)
    }

    /// Parses and checks fleet text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Vec<ModelPlan>, FleetError> {
        let fleet: Fleet = toml::from_str(text).map_err(|e| FleetError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        fleet.check(path)
    }

    /// Each entry as a [`ModelPlan`]; errors name the entry and the field.
    pub fn check(&self, path: &Path) -> Result<Vec<ModelPlan>, FleetError> {
        if self.models.is_empty() {
            return Err(FleetError::Parse {
                path: path.to_path_buf(),
                message: "no `[[model]]` entry".into(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        self.models
            .iter()
            .enumerate()
            .map(|(index, m)| {
                let err = |message: String| FleetError::Entry {
                    path: path.to_path_buf(),
                    index,
                    name: m.name.clone(),
                    message,
                };
                if m.name.trim().is_empty() {
                    return Err(err("`name` is empty".into()));
                }
                if !seen.insert(m.name.clone()) {
                    return Err(err(format!(
                        "`name` `{}` appears twice; list all its slices in one entry",
                        m.name
                    )));
                }
                let want = m.want().map_err(err)?;
                if m.concurrency == Some(0) {
                    return Err(err("`concurrency` must be at least 1".into()));
                }
                if m.context == Some(0) {
                    return Err(err("`context` must be at least 1".into()));
                }
                if m.threads == Some(0) {
                    return Err(err("`threads` must be at least 1".into()));
                }
                if let Some(t) = m.tokens_per_second {
                    if !(t.is_finite() && t > 0.0) {
                        return Err(err(format!(
                            "`tokens_per_second` must be a number above 0 (got {t})"
                        )));
                    }
                    let pinned = match &want {
                        Want::Slices(_) => Some("`slices` lists the slices"),
                        Want::Profile { .. } => Some("`profile` names the profile"),
                        _ => None,
                    };
                    if let Some(pinned) = pinned {
                        return Err(err(format!(
                            "`tokens_per_second` goes with `slices = \"auto\"`, where the planner \
                             picks a profile fast enough; {pinned} whatever its speed"
                        )));
                    }
                }
                let source = match (&want, &m.path, &m.synthetic) {
                    (Want::Remote { .. }, ..) => None,
                    (_, Some(path), _) => Some(ModelSource::File(path.clone())),
                    (_, None, Some(spec)) => Some(ModelSource::Synthetic {
                        spec: spec.parse().map_err(|e| err(format!("`synthetic`: {e}")))?,
                        seed: 0,
                    }),
                    (_, None, None) => Some(ModelSource::Identity),
                };
                Ok(ModelPlan {
                    name: m.name.clone(),
                    source,
                    want,
                    shared: m.shared,
                    context: m.context,
                    concurrency: m.concurrency.unwrap_or(1),
                    threads: m.threads,
                    args: worker_args(m),
                    tokens_per_second: m.tokens_per_second,
                })
            })
            .collect()
    }
}

/// The entry's extra worker flags, plus `--max-batch-size` from an explicit
/// `concurrency` (unless `args` sets it): the worker then batches as many
/// sequences as the planner reserved KV cache for.
fn worker_args(m: &ModelEntry) -> Vec<String> {
    let mut args = m.args.clone();
    if let Some(n) = m.concurrency {
        if !sets_flag(&args, MAX_BATCH_SIZE) {
            args.extend([MAX_BATCH_SIZE.to_string(), n.to_string()]);
        }
    }
    args
}

impl ModelEntry {
    fn want(&self) -> Result<Want, String> {
        if !self.addresses.is_empty() {
            let extra = [
                ("path", self.path.is_some()),
                ("identity", self.identity),
                ("synthetic", self.synthetic.is_some()),
                ("slices", self.slices.is_some()),
                ("shared", self.shared),
                ("profile", self.profile.is_some()),
                ("count", self.count.is_some()),
                ("replicas", self.replicas.is_some()),
                ("tokens_per_second", self.tokens_per_second.is_some()),
                ("context", self.context.is_some()),
                ("concurrency", self.concurrency.is_some()),
                ("threads", self.threads.is_some()),
                ("args", !self.args.is_empty()),
            ];
            if let Some((field, _)) = extra.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "`addresses` names running workers; `{field}` is for workers the gateway starts"
                ));
            }
            return Ok(Want::Remote {
                addresses: self.addresses.clone(),
            });
        }
        let sources = [self.path.is_some(), self.identity, self.synthetic.is_some()];
        match sources.iter().filter(|set| **set).count() {
            0 => {
                return Err(
                    "set `path` (a model for the gateway to start), `identity = true` (the echo \
                     model), `synthetic` (random weights of a public shape) or `addresses` \
                     (running workers)"
                        .into(),
                )
            }
            1 => {}
            _ => {
                return Err(
                    "set one of `path`, `identity = true` and `synthetic`: the identity and \
                     synthetic models have no file"
                        .into(),
                )
            }
        }
        // The worker refuses such names too; said here, before anything starts.
        for (on, mark, field) in [
            (self.identity, IDENTITY_MARK, "identity = true"),
            (self.synthetic.is_some(), SYNTHETIC_MARK, "synthetic"),
        ] {
            if on && !self.name.contains(mark) {
                return Err(format!(
                    "`name` `{}` must contain `{mark}` with `{field}`, so that its figures are \
                     never taken for a real model's in metrics and reports",
                    self.name
                ));
            }
        }
        if self.shared && !matches!(self.slices, Some(Slices::List(_))) {
            return Err(
                "`shared` goes with an explicit `slices` list: it lets those slices overlap others'"
                    .into(),
            );
        }
        if self.count.is_some() && self.profile.is_none() {
            return Err("`count` goes with `profile`".into());
        }
        let auto = match &self.slices {
            None => self.profile.is_none(),
            Some(Slices::Keyword(k)) if k == "auto" => true,
            Some(Slices::Keyword(k)) => {
                return Err(format!(
                    "`slices` must be \"auto\" or a list like [\"cpu:0\"] (got \"{k}\")"
                ))
            }
            Some(Slices::List(_)) => false,
        };
        if self.replicas.is_some() && !auto {
            return Err("`replicas` goes with `slices = \"auto\"`".into());
        }
        match (&self.slices, &self.profile) {
            (Some(Slices::List(_)) | Some(Slices::Keyword(_)), Some(_)) => {
                Err("set either `slices` or `profile`, not both".into())
            }
            (Some(Slices::List(list)), None) => {
                if list.is_empty() {
                    return Err("`slices` is an empty list".into());
                }
                let slices = list
                    .iter()
                    .map(|s| s.parse::<SliceId>().map_err(|e| format!("`slices`: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                // Two workers of one model on one slice would report the
                // same worker id and the same metric series.
                for (i, slice) in slices.iter().enumerate() {
                    if slices[..i].contains(slice) {
                        return Err(format!("`slices` lists `{slice}` twice"));
                    }
                }
                Ok(Want::Slices(slices))
            }
            (None, Some(profile)) => {
                let count = self.count.unwrap_or(1);
                if count == 0 {
                    return Err("`count` must be at least 1".into());
                }
                Ok(Want::Profile {
                    profile: profile.clone(),
                    count,
                })
            }
            _ => {
                let replicas = self.replicas.unwrap_or(1);
                if replicas == 0 {
                    return Err("`replicas` must be at least 1".into());
                }
                Ok(Want::Auto { replicas })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<ModelPlan>, FleetError> {
        Fleet::parse(text, Path::new("f.toml"))
    }

    #[test]
    fn reads_every_placement_form() {
        let p = parse(
            r#"
            [[model]]
            name = "a"
            addresses = ["http://127.0.0.1:1"]
            [[model]]
            name = "b"
            path = "m.gguf"
            slices = ["cpu:1", "MIG-aaaa"]
            threads = 1
            args = ["--weights", "native"]
            [[model]]
            name = "c"
            path = "m.gguf"
            profile = "1g.10gb"
            count = 2
            [[model]]
            name = "d"
            path = "m.gguf"
            replicas = 3
            context = 1024
            concurrency = 4
            [[model]]
            name = "e"
            path = "m.gguf"
            slices = "auto"
            tokens_per_second = 60
            "#,
        )
        .unwrap();
        assert_eq!(
            p[0].want,
            Want::Remote {
                addresses: vec!["http://127.0.0.1:1".into()]
            }
        );
        match &p[1].want {
            Want::Slices(s) => {
                assert_eq!(s[0].to_string(), "cpu:1");
                assert!(matches!(s[1], SliceId::Mig(_)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p[1].threads, Some(1));
        assert_eq!(p[1].args.len(), 2);
        assert_eq!(
            p[2].want,
            Want::Profile {
                profile: "1g.10gb".into(),
                count: 2
            }
        );
        assert_eq!(p[3].want, Want::Auto { replicas: 3 });
        assert_eq!((p[3].context, p[3].concurrency), (Some(1024), 4));
        // An explicit concurrency is the worker's batch size too.
        assert_eq!(p[3].args, ["--max-batch-size", "4"]);
        assert_eq!(p[4].want, Want::Auto { replicas: 1 });
        assert_eq!(p[4].tokens_per_second, Some(60.0));
        assert_eq!(p[3].tokens_per_second, None);
        assert_eq!(
            p.iter().map(|m| m.replicas()).sum::<u32>(),
            1 + 2 + 2 + 3 + 1
        );
    }

    #[test]
    fn errors_name_the_entry_and_field() {
        let cases = [
            ("[[model]]\nname = \"a\"\n", "`path`"),
            (
                "[[model]]\nname = \"a\"\npath = \"x\"\nslices = [\"gpu0\"]\n",
                "`slices`",
            ),
            (
                "[[model]]\nname = \"a\"\npath = \"x\"\nslices = \"all\"\n",
                "\"auto\"",
            ),
            (
                "[[model]]\nname = \"a\"\npath = \"x\"\nslices = [\"cpu:0\"]\nprofile = \"1g.10gb\"\n",
                "not both",
            ),
            (
                "[[model]]\nname = \"a\"\npath = \"x\"\nslices = [\"cpu:0\"]\nreplicas = 2\n",
                "`replicas`",
            ),
            (
                "[[model]]\nname = \"a\"\naddresses = [\"http://h:1\"]\npath = \"x\"\n",
                "`path`",
            ),
            (
                "[[model]]\nname = \"a\"\naddresses = [\"http://h:1\"]\nthreads = 2\n",
                "`threads`",
            ),
            ("[[model]]\nname = \"a\"\npath = \"x\"\ncount = 2\n", "`count`"),
            (
                "[[model]]\nname = \"a\"\npath = \"x\"\nreplicas = 0\n",
                "at least 1",
            ),
            (
                "[[model]]\nname = \"a\"\npath = \"x\"\n[[model]]\nname = \"a\"\npath = \"y\"\n",
                "appears twice",
            ),
            (
                "[[model]]\nname = \"identity\"\npath = \"x\"\nidentity = true\n",
                "set one of `path`, `identity = true` and `synthetic`",
            ),
            (
                "[[model]]\nname = \"echo\"\nidentity = true\n",
                "`name` `echo` must contain `identity`",
            ),
            (
                "[[model]]\nname = \"identity\"\nidentity = true\naddresses = [\"http://h:1\"]\n",
                "`identity` is for workers the gateway starts",
            ),
            (
                "[[model]]\nname = \"a\"\npath = \"x\"\nshared = true\n",
                "`shared` goes with an explicit `slices` list",
            ),
            (
                "[[model]]\nname = \"a\"\npath = \"x\"\nslices = \"auto\"\nshared = true\n",
                "`shared` goes with an explicit `slices` list",
            ),
            (
                "[[model]]\nname = \"a\"\npath = \"x\"\nslices = [\"cpu:0\", \"cpu:0\"]\nshared = true\n",
                "`slices` lists `cpu:0` twice",
            ),
            (
                "[[model]]\nname = \"a\"\npath = \"x\"\nslices = [\"MIG-aaaa\"]\ntokens_per_second = 60\n",
                "`tokens_per_second` goes with `slices = \"auto\"`, where the planner picks a profile fast enough; `slices` lists the slices whatever its speed",
            ),
            (
                "[[model]]\nname = \"a\"\npath = \"x\"\nprofile = \"2g.20gb\"\ntokens_per_second = 60\n",
                "`profile` names the profile whatever its speed",
            ),
            (
                "[[model]]\nname = \"a\"\npath = \"x\"\ntokens_per_second = 0\n",
                "`tokens_per_second` must be a number above 0 (got 0)",
            ),
            (
                "[[model]]\nname = \"a\"\npath = \"x\"\ntokens_per_second = -5.5\n",
                "`tokens_per_second` must be a number above 0 (got -5.5)",
            ),
            (
                "[[model]]\nname = \"a\"\naddresses = [\"http://h:1\"]\ntokens_per_second = 60\n",
                "`tokens_per_second` is for workers the gateway starts",
            ),
        ];
        for (text, needle) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains("`model[") && e.contains(needle), "{text}: {e}");
        }
        let e = parse("[[model]]\nname = \"a\"\npath = \"x\"\nfoo = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("foo"), "{e}");
        assert!(parse("")
            .unwrap_err()
            .to_string()
            .contains("no `[[model]]`"));
    }

    #[test]
    fn identity_and_shared_entries() {
        let p = parse(
            r#"
            [[model]]
            name = "identity"
            identity = true
            slices = ["cpu:0"]
            [[model]]
            name = "b"
            path = "m.gguf"
            slices = ["cpu:0", "cpu:0-1"]
            shared = true
            "#,
        )
        .unwrap();
        assert_eq!(p[0].source, Some(ModelSource::Identity));
        assert!(!p[0].shared);
        assert_eq!(p[1].source, Some(ModelSource::File("m.gguf".into())));
        assert!(p[1].shared);
        assert_eq!(p[1].replicas(), 2);
    }

    #[test]
    fn every_fleet_example_in_deploy_parses() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let mut checked = 0;
        for entry in std::fs::read_dir(&deploy).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("fleet") && name.ends_with(".toml") {
                let models = Fleet::load(&entry.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(!models.is_empty(), "{name}");
                checked += 1;
            }
        }
        assert!(checked >= 7, "{checked} fleet examples found");
    }

    #[test]
    fn synthetic_models_need_a_known_spec_and_say_so_in_their_name() {
        let p =
            parse("[[model]]\nname = \"synthetic-7b\"\nsynthetic = \"llama-7b:bf16\"\n").unwrap();
        assert_eq!(
            p[0].source,
            Some(ModelSource::Synthetic {
                spec: "llama-7b:bf16".parse().unwrap(),
                seed: 0
            })
        );
        for (text, says) in [
            (
                "name = \"llama\"\nsynthetic = \"llama-7b\"",
                "must contain `synthetic`",
            ),
            (
                "name = \"synthetic\"\nsynthetic = \"llama-2b\"",
                "`synthetic`: `llama-2b` is not a synthetic model",
            ),
            (
                "name = \"synthetic\"\nsynthetic = \"llama-1b\"\npath = \"m.gguf\"",
                "set one of `path`",
            ),
        ] {
            let e = parse(&format!("[[model]]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{e}");
        }
    }
}
