//! `scripts/gpu-pack.sh` and `scripts/gpu-run.sh` on this machine, which
//! has no GPU: the CPU worker stands in for the CUDA one and a fake
//! `nvidia-smi` for the driver's, so the shell, the time budget, the packing
//! and the results a lent GPU would bring back are all tested here. What
//! only a GPU can show is the script's real run (docs/gpu-checklist.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use mig_testkit::process::{bin as sibling_bin, run_to_end};
use mig_testkit::repo_root;

/// Nothing may hang CI: a script is killed, with everything it started,
/// past this.
const SCRIPT_LIMIT: Duration = Duration::from_secs(600);

/// A library path set before the script runs.
const DRIVER_LIBS: &str = "/usr/lib/driver-stand-in";

/// What the fake `nvidia-smi` says the GPU's UUID is.
const FAKE_GPU: &str = "GPU-00000000-1111-2222-3333-444444444444";

/// Variables for a script.
type Env = Vec<(&'static str, String)>;

/// Runs `bash SCRIPT` from the repository root with these variables, in its
/// own process group (killed whole past [`SCRIPT_LIMIT`]).
fn run_script(script: &str, env: &Env) -> Output {
    let mut command = Command::new("bash");
    command
        .arg(script)
        .current_dir(repo_root())
        .envs(env.iter().map(|(k, v)| (k, v)));
    run_to_end(command, SCRIPT_LIMIT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh folder for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("gpu-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A folder with an `nvidia-smi` that answers the queries the script makes,
/// as a driver would, for a GPU that is not there.
fn fake_nvidia_smi(dir: &Path) -> String {
    let bin = dir.join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\n\
         case \"$*\" in\n\
         *query-gpu=uuid*) echo {FAKE_GPU} ;;\n\
         *query-gpu=*) echo 'name, uuid, driver_version'; echo 'Stand-in GPU, {FAKE_GPU}, 0.0' ;;\n\
         *query-compute-apps*) echo 'pid, process_name, used_memory [MiB]' ;;\n\
         *) echo 'nvidia-smi stand-in for the dry run' ;;\n\
         esac\n"
    );
    let path = bin.join("nvidia-smi");
    std::fs::write(&path, script).unwrap();
    Command::new("chmod").arg("+x").arg(&path).status().unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The files in a `.tgz`, as `tar` lists them.
fn tar_list(tgz: &Path) -> Vec<String> {
    let out = Command::new("tar").arg("-tzf").arg(tgz).output().unwrap();
    assert!(
        out.status.success(),
        "tar -tzf {}: {}",
        tgz.display(),
        text(&out.stderr)
    );
    text(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .collect()
}

/// One file out of a `.tgz`.
fn tar_read(tgz: &Path, file: &str) -> String {
    let out = Command::new("tar")
        .arg("-xzOf")
        .arg(tgz)
        .arg(format!("./{file}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{file} in {}: {}",
        tgz.display(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The pack of this build's binaries, the CPU worker standing in for the
/// CUDA one.
fn pack_env(pack: &Path) -> Env {
    vec![
        ("GPU_PACK_OUT", pack.display().to_string()),
        (
            "GPU_PACK_WORKER",
            sibling_bin("mig-worker").display().to_string(),
        ),
        (
            "GPU_PACK_GATEWAY",
            sibling_bin("mig-gateway").display().to_string(),
        ),
        (
            "GPU_PACK_LOADTEST",
            sibling_bin("mig-loadtest").display().to_string(),
        ),
    ]
}

/// A run of gpu-run.sh on the CPU, small enough for this machine: the
/// synthetic models in f32, short prompts and answers, 2-second points.
fn dry_run_env(dir: &Path, pack: &Path, out: &Path, budget_s: u32) -> Env {
    let mut env: Env = vec![
        ("PATH", fake_nvidia_smi(dir)),
        ("OUT", out.display().to_string()),
        ("GPU_RUN_BIN_DIR", pack.display().to_string()),
        ("GPU_RUN_BUDGET_S", budget_s.to_string()),
        // Where a driver's libraries might be found: the script must keep it.
        ("LD_LIBRARY_PATH", DRIVER_LIBS.to_string()),
    ];
    for (k, v) in [
        ("GPU_RUN_WORKER", "mig-worker"),
        ("GPU_RUN_DEVICE", "cpu"),
        ("GPU_RUN_DTYPE", "f32"),
        ("GPU_RUN_AGREE_STEPS", "4"),
        ("GPU_RUN_BATCHES", "1,2"),
        ("GPU_RUN_PROMPT", "16"),
        ("GPU_RUN_DECODE", "4"),
        ("GPU_RUN_SWEEP", "1,2"),
        ("GPU_RUN_POINT_S", "2"),
        ("GPU_RUN_WARMUP_S", "1"),
        ("GPU_RUN_MAX_TOKENS", "8"),
        ("GPU_RUN_TTFT_WORDS", "20"),
        ("GPU_RUN_TTFT_N", "2"),
        ("GPU_RUN_KV_MIB", "64"),
    ] {
        env.push((k, v.to_string()));
    }
    env
}

/// Sets `key` (last one wins, as in a shell).
fn with(mut env: Env, pairs: &[(&'static str, &str)]) -> Env {
    env.extend(pairs.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

/// Every line of both scripts parses, and so does the summary helper: a
/// step that never runs here (the CUDA ones) cannot hide a syntax error.
#[test]
fn the_gpu_scripts_parse() {
    for script in ["scripts/gpu-run.sh", "scripts/gpu-pack.sh"] {
        let out = Command::new("bash")
            .args(["-n", script])
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bash -n {script}: {}",
            text(&out.stderr)
        );
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import ast, sys; ast.parse(open(sys.argv[1]).read())",
            "scripts/gpu-summary.py",
        ])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gpu-summary.py: {}",
        text(&out.stderr)
    );
}

/// A mistyped knob stops the run before anything starts (a lease is too
/// short to find it out at step 4), and the message names the variable.
#[test]
fn a_wrong_knob_is_refused_naming_it() {
    for (key, value, says) in [
        (
            "GPU_RUN_BUDGET_S",
            "7m",
            "GPU_RUN_BUDGET_S must be a whole number",
        ),
        (
            "GPU_RUN_BUDGET_S",
            "10",
            "GPU_RUN_BUDGET_S must be more than",
        ),
        (
            "GPU_RUN_SWEEP",
            "1,,8",
            "GPU_RUN_SWEEP must be a list like 1,8,32",
        ),
        ("GPU_RUN_MODELS", "7b;true", "GPU_RUN_MODELS must be sizes"),
        (
            "GPU_RUN_DEVICE",
            "rocm",
            "GPU_RUN_DEVICE must be cuda or cpu",
        ),
        ("GPU_RUN_SLICE", "GPU-1\"]", "GPU_RUN_SLICE must be a slice"),
    ] {
        let out = run_script("scripts/gpu-run.sh", &vec![(key, value.to_string())]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}={value}: {err}");
        assert!(err.contains(says), "{key}={value}: {err}");
        assert!(out.stdout.is_empty(), "nothing ran: {}", text(&out.stdout));
    }
}

/// The whole path a lent GPU takes, on the CPU: pack (refused over the
/// carry limit, then accepted), unpack and run every step the script has,
/// the last model skipped by the time budget, results tarred; then the
/// same model again with a gateway that cannot place it, measured straight
/// on the worker instead.
#[test]
fn a_dry_run_packs_runs_every_step_skips_by_budget_and_brings_back_results() {
    let dir = scratch("dry");
    let pack = dir.join("pack");

    // Over the limit: refused, and nothing is left to carry by mistake.
    let out = run_script(
        "scripts/gpu-pack.sh",
        &with(pack_env(&pack), &[("GPU_PACK_LIMIT_MIB", "8")]),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refused") && err.contains("over the 8 MiB a call carries"),
        "{err}"
    );
    assert!(!pack.exists(), "a refused pack is removed");

    // Within the limit: each binary with what it needs of the machine there.
    let out = run_script("scripts/gpu-pack.sh", &pack_env(&pack));
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    for name in ["mig-worker", "mig-gateway", "mig-loadtest"] {
        let line = said
            .lines()
            .find(|l| l.starts_with(&format!("gpu-pack: {name}:")))
            .unwrap_or_else(|| panic!("no line for {name}: {said}"));
        assert!(
            line.contains("stripped")
                && line.contains("gzipped")
                && line.contains("needs GLIBC_2.")
                && line.contains("libc.so.6"),
            "{line}"
        );
        assert!(pack.join(format!("{name}.gz")).is_file());
    }
    assert!(said.contains("of the 64 MiB a call carries"), "{said}");

    // The run: 135m through the real gateway, 13b skipped by the budget.
    // 13b's turn is planned at 166 s: more than the whole budget.
    let out_dir = dir.join("out");
    let full = with(
        dry_run_env(&dir, &pack, &out_dir, 160),
        &[("GPU_RUN_MODELS", "135m 13b")],
    );
    let out = run_script("scripts/gpu-run.sh", &full);
    let (stdout, log) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{log}");
    let summary = std::fs::read_to_string(out_dir.join("summary.txt")).expect("summary.txt");
    assert!(
        stdout.ends_with(&summary),
        "the summary is printed last:\n{stdout}"
    );
    let has = |needle: &str| {
        assert!(
            summary.contains(needle),
            "no `{needle}` in:\n{summary}\n{log}"
        )
    };
    has("step 1 env: done");
    has("ldd: every library found");
    has(&format!("gpu: Stand-in GPU, {FAKE_GPU}"));
    // No NVML here: the table says so, the snapshot is missing, the run goes on.
    has("NVML: not available");
    has("step 2 nvml: FAILED (exit 1)");
    has("agree f32 (tolerance 0.01): exit 0; agree=true, largest logit difference 0");
    has("agree bf16 (tolerance 0.1): exit 0; agree=true");
    has("step 3 agree: done");
    has("bench synthetic llama-135m:f32 seed 0 batch 1: decode ");
    has("bench synthetic llama-135m:f32 seed 0 batch 2: decode ");
    has("135m serving via the gateway at 127.0.0.1:");
    has("135m gateway c=1: ");
    has("135m TTFT at ");
    has("step 4 135m: done");
    has("step 5 13b: skipped by budget");
    has("135m (weights 0.50 GiB): ready: gauge ");
    has("13b: not measured");
    has("step 6 memory: done");
    has("of a 160 s budget");

    let tgz = out_dir.join("results.tgz");
    let files = tar_list(&tgz);
    for file in [
        "summary.txt",
        "progress.log",
        "env.txt",
        "gpu.csv",
        "ldd-mig-worker.txt",
        "slices.txt",
        "agree-f32.json",
        "agree-bf16.json",
        "135m/bench.json",
        "135m/fleet.toml",
        "135m/gateway.log",
        "135m/memory.txt",
        "135m/sweep/report.json",
        "135m/ttft/report.json",
    ] {
        assert!(
            files.iter().any(|f| f == file),
            "{file} not in results.tgz: {files:?}"
        );
    }
    assert!(
        !files.iter().any(|f| f.starts_with("13b/")),
        "13b never started"
    );
    // The library path was extended, not replaced.
    let env_txt = tar_read(&tgz, "env.txt");
    let path_after = |heading: &str| {
        env_txt
            .split(&format!("== {heading}\n"))
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .unwrap_or_else(|| panic!("no {heading} in {env_txt}"))
            .to_string()
    };
    let (before, used) = (
        path_after("LD_LIBRARY_PATH as found"),
        path_after("LD_LIBRARY_PATH as used"),
    );
    assert_eq!(before, DRIVER_LIBS);
    assert!(
        used.starts_with(DRIVER_LIBS),
        "extended, not replaced: {used:?}"
    );
    let fleet = tar_read(&tgz, "135m/fleet.toml");
    assert!(
        fleet.contains("synthetic = \"llama-135m:f32\"")
            && fleet.contains("\"--kv-cache-mib\", \"64\""),
        "{fleet}"
    );
    let sweep: serde_json::Value =
        serde_json::from_str(&tar_read(&tgz, "135m/sweep/report.json")).unwrap();
    let ok: u64 = sweep["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["summary"]["ok"].as_u64().unwrap())
        .sum();
    assert!(ok > 0, "the sweep measured requests: {sweep}");

    // The gateway cannot place the model (no such GPU here): step 4 falls
    // back to the worker straight, and says so.
    std::fs::remove_dir_all(&out_dir).unwrap();
    let fallback = with(
        dry_run_env(&dir, &pack, &out_dir, 120),
        &[
            ("GPU_RUN_STEPS", "4"),
            ("GPU_RUN_MODELS", "135m"),
            ("GPU_RUN_SLICE", FAKE_GPU),
            ("GPU_RUN_BATCHES", "1"),
            ("GPU_RUN_SWEEP", "1"),
            ("GPU_RUN_TTFT_N", "1"),
        ],
    );
    let out = run_script("scripts/gpu-run.sh", &fallback);
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    let summary = std::fs::read_to_string(out_dir.join("summary.txt")).expect("summary.txt");
    let has = |needle: &str| {
        assert!(
            summary.contains(needle),
            "no `{needle}` in:\n{summary}\n{log}"
        )
    };
    has("step 1 env: not asked for");
    has(&format!(
        "135m gateway: did not come up: Error: `synthetic-135m`: slice `{FAKE_GPU}` was not found"
    ));
    has("135m serving via the worker at 127.0.0.1:");
    has("135m worker c=1: ");
    has("step 4 135m: FAILED (exit 1)");
    let files = tar_list(&out_dir.join("results.tgz"));
    assert!(files.iter().any(|f| f == "135m/worker.log"), "{files:?}");

    std::fs::remove_dir_all(&dir).unwrap();
}
