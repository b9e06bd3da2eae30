//! `mig-gateway plan`: which MIG profile each model replica needs on a given
//! GPU model and how the replicas pack onto the fewest GPUs, from the models'
//! own files (or needs given directly), with the commands to create the
//! layout.

use std::path::{Path, PathBuf};

use mig_slices::catalog::{self, GpuModel};
use mig_slices::need::MemoryNeed;
use mig_slices::planner::{self, Demand, Plan, PlanOptions};
use mig_slices::render;

use crate::config::{PlanArgs, ProfileSet};
use crate::fleet::model_file;
use crate::fleet::{Fleet, FleetError, ModelPlan, ModelSource, Want};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("`--gpu {given}` is not a GPU model in the catalog; known: {known}")]
    UnknownGpu { given: String, known: String },
    #[error("`--gpu {gpu}` supports MIG, but the catalog has no table for it yet: {why}")]
    NoTable { gpu: String, why: String },
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("model `{model}`: {reason}")]
    Model { model: String, reason: String },
    #[error("`--model {arg}`: {reason}")]
    ModelArg { arg: String, reason: String },
    #[error("`--{flag} {arg}`: {reason}")]
    RateArg {
        flag: &'static str,
        arg: String,
        reason: String,
    },
    #[error("nothing to plan: give `--fleet FILE` with models that have a `path`, or `--model`")]
    Empty,
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0} model(s) fit no profile on this GPU model (see \"not placed\" above)")]
    Unplaceable(usize),
}

/// Runs the command: prints the plan (or its JSON), writes the files; an
/// error (so a non-zero exit) when some model fits no profile.
pub fn run(args: &PlanArgs) -> Result<(), PlanError> {
    let gpu = gpu_model(&args.gpu)?;
    let demands = demands(args)?;
    let demands = with_rates(args, gpu, demands)?;
    let plan = planner::plan(gpu, &demands, options(args));
    let price = args.price_per_gpu_hour.map(|p| plan.price(p));
    if args.json {
        let mut value = serde_json::to_value(&plan)?;
        if let (Some(price), Some(object)) = (price, value.as_object_mut()) {
            object.insert("price".into(), serde_json::to_value(price)?);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{plan}");
        if let Some(price) = price {
            println!("{price}");
        }
    }
    if let Some(dir) = &args.out {
        for path in write_files(&plan, dir)? {
            eprintln!("wrote {}", path.display());
        }
    }
    // The layout printed is still useful, but a script must not take it for
    // a complete one.
    if !plan.unplaceable.is_empty() {
        return Err(PlanError::Unplaceable(plan.unplaceable.len()));
    }
    Ok(())
}

/// `--profiles all` (the default, and the old `--all-profiles`) or
/// `balanced`.
pub fn options(args: &PlanArgs) -> PlanOptions {
    PlanOptions {
        all_profiles: args.all_profiles || args.profiles == ProfileSet::All,
    }
}

fn gpu_model(given: &str) -> Result<&'static GpuModel, PlanError> {
    if let Some((gpu, why)) = catalog::WITHOUT_TABLE
        .iter()
        .find(|(id, _)| id.eq_ignore_ascii_case(given.trim()))
    {
        return Err(PlanError::NoTable {
            gpu: gpu.to_string(),
            why: why.to_string(),
        });
    }
    catalog::gpu_model(given).ok_or_else(|| PlanError::UnknownGpu {
        given: given.to_string(),
        known: catalog::gpu_models()
            .iter()
            .map(|g| g.id)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Demands from the fleet file's started models and the `--model` flags.
pub fn demands(args: &PlanArgs) -> Result<Vec<Demand>, PlanError> {
    let mut demands = Vec::new();
    if let Some(path) = &args.fleet {
        for m in Fleet::load(path)? {
            if matches!(m.want, Want::Remote { .. }) {
                continue;
            }
            let need = model_file::replica_need(&m).map_err(|reason| PlanError::Model {
                model: m.name.clone(),
                reason,
            })?;
            let demand = Demand::new(m.name.clone(), need, m.replicas());
            demands.push(match m.tokens_per_second {
                Some(t) => demand.with_tokens_per_second(t),
                None => demand,
            });
        }
    }
    for arg in &args.model {
        demands.push(model_arg(arg, args.context, args.concurrency)?);
    }
    if demands.is_empty() {
        return Err(PlanError::Empty);
    }
    Ok(demands)
}

/// The `--tokens-per-second` targets and `--measured` rates, on the demands
/// they name.
pub fn with_rates(
    args: &PlanArgs,
    gpu: &GpuModel,
    mut demands: Vec<Demand>,
) -> Result<Vec<Demand>, PlanError> {
    let known = |demands: &[Demand]| {
        demands
            .iter()
            .map(|d| d.model.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (flag, list) in [
        ("tokens-per-second", &args.tokens_per_second),
        ("measured", &args.measured),
    ] {
        for arg in list {
            let bad = |reason: String| PlanError::RateArg {
                flag,
                arg: arg.clone(),
                reason,
            };
            let (key, rate) = arg.rsplit_once('=').ok_or_else(|| {
                bad(if flag == "measured" {
                    "expected `NAME@PROFILE=TOKENS_PER_SECOND`".into()
                } else {
                    "expected `NAME=TOKENS_PER_SECOND`".into()
                })
            })?;
            let rate: f64 = rate
                .trim()
                .parse()
                .ok()
                .filter(|r: &f64| r.is_finite() && *r > 0.0)
                .ok_or_else(|| bad("tokens per second must be a number above 0".into()))?;
            let (name, profile) = if flag == "measured" {
                let (name, profile) = key
                    .split_once('@')
                    .ok_or_else(|| bad("expected `NAME@PROFILE=TOKENS_PER_SECOND`".into()))?;
                let profile = gpu.profile(profile).ok_or_else(|| {
                    bad(format!(
                        "`{profile}` is not a profile of {}; its profiles: {}",
                        gpu.id,
                        gpu.profiles
                            .iter()
                            .map(|p| p.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                (name, Some(profile))
            } else {
                (key, None)
            };
            let all = known(&demands);
            let demand = demands
                .iter_mut()
                .find(|d| d.model == name)
                .ok_or_else(|| bad(format!("no model `{name}` in the plan (models: {all})")))?;
            match profile {
                Some(p) => demand.measured.insert(p.name.to_string(), rate),
                None => demand.tokens_per_second.replace(rate),
            };
        }
    }
    Ok(demands)
}

/// `NAME=PATH[:REPLICAS]` or `NAME=SIZE[:REPLICAS]` (`14GiB`, `14GB`, `900MiB`).
fn model_arg(arg: &str, context: Option<u64>, concurrency: u64) -> Result<Demand, PlanError> {
    let bad = |reason: &str| PlanError::ModelArg {
        arg: arg.to_string(),
        reason: reason.to_string(),
    };
    let (name, rest) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected `NAME=PATH[:REPLICAS]` or `NAME=SIZE[:REPLICAS]`"))?;
    if name.trim().is_empty() {
        return Err(bad("the name is empty"));
    }
    let (what, replicas) = match rest.rsplit_once(':') {
        Some((what, n)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
            let n: u32 = n.parse().map_err(|_| bad("replicas is not a number"))?;
            if n == 0 {
                return Err(bad("replicas must be at least 1"));
            }
            (what, n)
        }
        _ => (rest, 1),
    };
    if let Some(bytes) = parse_size(what) {
        return Ok(Demand::from_bytes(name, bytes, replicas));
    }
    let plan = ModelPlan {
        name: name.to_string(),
        source: Some(ModelSource::File(PathBuf::from(what))),
        want: Want::Auto { replicas },
        shared: false,
        context,
        concurrency,
        threads: None,
        args: Vec::new(),
        tokens_per_second: None,
    };
    let need: MemoryNeed = model_file::replica_need(&plan).map_err(|reason| bad(&reason))?;
    Ok(Demand::new(name, need, replicas))
}

/// `14GiB`, `14GB` (10^9), `900MiB`, `900MB`; `None` if not a size.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "gib" => (1u64 << 30) as f64,
        "gb" => 1e9,
        "mib" => (1u64 << 20) as f64,
        "mb" => 1e6,
        _ => return None,
    };
    Some((value * scale) as u64)
}

/// The nvidia-smi script, the mig-parted config, the Kubernetes resource
/// requests and the plan as JSON; returns the paths written.
pub fn write_files(plan: &Plan, dir: &Path) -> Result<Vec<PathBuf>, PlanError> {
    let write = |name: &str, text: String| -> Result<PathBuf, PlanError> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| PlanError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    };
    std::fs::create_dir_all(dir).map_err(|source| PlanError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let script = write("mig-setup.sh", render::nvidia_smi_script(plan))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755));
    }
    Ok([
        script,
        write(
            "mig-parted.yaml",
            render::mig_parted_config(plan, "mig-gateway"),
        )?,
        write("k8s-resources.yaml", render::k8s_limits_yaml(plan))?,
        write("plan.json", serde_json::to_string_pretty(plan)?)?,
    ]
    .into_iter()
    .chain(k8s_files(plan, dir)?)
    .collect())
}

/// The Kubernetes set (`super::k8s_workers`) under `dir`.
fn k8s_files(plan: &Plan, dir: &Path) -> Result<Vec<PathBuf>, PlanError> {
    let mut written = Vec::new();
    for (name, text) in super::k8s_workers::files(plan) {
        let path = dir.join(&name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| PlanError::Write {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| PlanError::Write {
            path: path.clone(),
            source,
        })?;
        #[cfg(unix)]
        if name.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
        }
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_without_a_table_says_why_and_an_unknown_one_lists_the_known() {
        let e = gpu_model("B200-180GB").unwrap_err().to_string();
        assert!(
            e.contains("no table for it yet") && e.contains("mig-parted"),
            "{e}"
        );
        let e = gpu_model("z100").unwrap_err().to_string();
        assert!(e.contains("known: a100-40gb"), "{e}");
        assert_eq!(gpu_model("h100-80gb").unwrap().id, "h100-80gb");
    }

    #[test]
    fn sizes_and_model_arguments_parse() {
        assert_eq!(parse_size("14GiB"), Some(14 << 30));
        assert_eq!(parse_size("14GB"), Some(14_000_000_000));
        assert_eq!(parse_size("1.5gib"), Some(3 << 29));
        assert_eq!(parse_size("models/x.gguf"), None);
        let d = model_arg("llama-7b=14GB:3", None, 1).unwrap();
        assert_eq!((d.model.as_str(), d.replicas), ("llama-7b", 3));
        assert_eq!(d.need.total_bytes, 14_000_000_000);
        let e = model_arg("x=14GB:0", None, 1).unwrap_err().to_string();
        assert!(
            e.contains("`--model x=14GB:0`") && e.contains("at least 1"),
            "{e}"
        );
        let e = model_arg("nothing", None, 1).unwrap_err().to_string();
        assert!(e.contains("NAME=PATH"), "{e}");
        let e = model_arg("m=/no/such/file.gguf", None, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/no/such/file.gguf"), "{e}");
    }

    fn parse(args: &[&str]) -> PlanArgs {
        use clap::Parser;
        let cli = crate::config::Cli::try_parse_from(
            [
                "mig-gateway",
                "plan",
                "--gpu",
                "h100-80gb",
                "--model",
                "a=1GB",
            ]
            .iter()
            .chain(args),
        )
        .unwrap();
        match cli.command {
            crate::config::Command::Plan(a) => a,
            _ => unreachable!(),
        }
    }

    /// Every profile by default; `--profiles balanced` restricts;
    /// `--all-profiles` is still accepted and means the default.
    #[test]
    fn plan_profiles_default_to_all_and_balanced_restricts() {
        assert_eq!(parse(&[]).profiles, ProfileSet::All);
        assert_eq!(
            parse(&["--profiles", "balanced"]).profiles,
            ProfileSet::Balanced
        );
        let old = parse(&["--all-profiles"]);
        assert!(old.all_profiles && old.profiles == ProfileSet::All);
        let args = PlanArgs {
            model: vec!["big=20GB:3".into(), "small=5GB:2".into()],
            ..parse(&[])
        };
        let plan = |args: &PlanArgs| {
            planner::plan(
                gpu_model(&args.gpu).unwrap(),
                &demands(args).unwrap(),
                options(args),
            )
        };
        assert_eq!(plan(&args).gpus.len(), 1);
        let balanced = PlanArgs {
            profiles: ProfileSet::Balanced,
            ..args
        };
        assert_eq!(plan(&balanced).gpus.len(), 2);
    }

    #[test]
    fn seven_small_models_fit_one_a100_80gb() {
        let args = PlanArgs {
            fleet: None,
            model: (1..=7).map(|i| format!("m{i}=3GiB")).collect(),
            gpu: "a100-80gb".into(),
            context: None,
            concurrency: 1,
            profiles: ProfileSet::Balanced,
            all_profiles: false,
            out: None,
            json: false,
            tokens_per_second: Vec::new(),
            measured: Vec::new(),
            price_per_gpu_hour: None,
        };
        let plan = planner::plan(
            gpu_model(&args.gpu).unwrap(),
            &demands(&args).unwrap(),
            PlanOptions::default(),
        );
        assert_eq!(plan.gpus.len(), 1);
        assert_eq!(plan.cost.whole_gpus, 7);
        let dir = std::env::temp_dir().join(format!("mig-plan-{}", std::process::id()));
        let written = write_files(&plan, &dir).unwrap();
        // Script, mig-parted, resources, JSON; the Kubernetes set: the MIG
        // manager's ConfigMap, a Deployment per model (seven, one profile),
        // the kustomization, the node-labelling script.
        assert_eq!(written.len(), 4 + 1 + 7 + 2);
        let deployment =
            std::fs::read_to_string(dir.join("k8s/workers/worker-m1-1g-10gb.yaml")).unwrap();
        assert!(
            deployment.contains("\"nvidia.com/mig-1g.10gb\": 1"),
            "{deployment}"
        );
        assert!(deployment.contains("\"replicas\": 1"), "{deployment}");
        let script = std::fs::read_to_string(dir.join("mig-setup.sh")).unwrap();
        assert!(script.contains("-cgi 19,19,19,19,19,19,19 -C"), "{script}");
        let parted = std::fs::read_to_string(dir.join("mig-parted.yaml")).unwrap();
        assert!(parted.contains("\"1g.10gb\": 7"), "{parted}");
        let k8s = std::fs::read_to_string(dir.join("k8s-resources.yaml")).unwrap();
        assert!(k8s.contains("nvidia.com/mig-1g.10gb: 1"), "{k8s}");
        let _ = std::fs::remove_dir_all(dir);
        assert!(gpu_model("b200").is_err());
    }
}
