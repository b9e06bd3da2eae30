#![allow(dead_code)] // each test binary uses part of it
//! Real processes for the scenario tests: `mig-gateway up` with its workers
//! on CPU slices, and the `mig-loadtest` binary run as a user runs it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The SmolLM2 demo model, fetched by `make models`.
pub fn smollm2() -> String {
    let p = repo_root().join("models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "{} is missing: run `make models`", p.display());
    p.display().to_string()
}

/// A binary of the same build (`cargo build --bins`, which `make test` runs
/// first): the gateway, which starts the `mig-worker` next to it.
pub fn sibling_bin(name: &str) -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_mig-loadtest")).with_file_name(name);
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (`cargo build --bins`, as `make test` does)",
        bin.display()
    );
    bin
}

/// Nothing here may hang CI: every wait has a deadline.
const START_LIMIT: Duration = Duration::from_secs(120);
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// A child process (a gateway with its workers, or one worker), killed when
/// dropped; workers follow a killed gateway by their parent-death signal.
pub struct Server {
    child: Child,
    log: PathBuf,
    /// `127.0.0.1:PORT` from its ready line.
    pub address: String,
}

impl Server {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` and waits (bounded) for the first line of its stdout.
fn start(name: &str, mut command: Command, address_of: fn(&str) -> Option<String>) -> Server {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let log = dir.join(format!("loadtest-{name}-{}.log", std::process::id()));
    let mut child = command
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let mut server = Server {
        child,
        log,
        address: String::new(),
    };
    let line = rx.recv_timeout(START_LIMIT).unwrap_or_default();
    server.address = address_of(&line)
        .unwrap_or_else(|| panic!("{name}: no ready line ({line:?})\n{}", server.log()));
    server
}

/// Starts `mig-gateway up` on a fleet file with this text and waits for its
/// listening line (every worker ready).
pub fn start_gateway(name: &str, fleet: &str) -> Server {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let fleet_path = dir.join(format!("loadtest-fleet-{name}-{}.toml", std::process::id()));
    std::fs::write(&fleet_path, fleet).unwrap();
    let mut command = Command::new(sibling_bin("mig-gateway"));
    command
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--health-interval",
            "0.5",
            "--fleet",
        ])
        .arg(&fleet_path);
    // "mig-gateway listening on 127.0.0.1:PORT; models: ..."
    start(&format!("gateway-{name}"), command, |line| {
        line.strip_prefix("mig-gateway listening on ")
            .and_then(|rest| rest.split(';').next())
            .map(str::to_string)
    })
}

/// Starts one `mig-worker serve` with these flags on `127.0.0.1:0`.
pub fn start_worker(name: &str, args: &[&str]) -> Server {
    let mut command = Command::new(sibling_bin("mig-worker"));
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args);
    // "mig-worker ready listen=127.0.0.1:PORT model=..."
    start(&format!("worker-{name}"), command, |line| {
        line.strip_prefix("mig-worker ready listen=")
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
    })
}

/// Runs `mig-loadtest ARGS` to its end (killed after 5 minutes).
pub fn loadtest(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_mig-loadtest"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mig-loadtest");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(RUN_LIMIT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("mig-loadtest {args:?} ran past {RUN_LIMIT:?}");
        }
    }
}

/// The report a run wrote, parsed.
pub fn read_report(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json written");
    serde_json::from_str(&text).expect("report.json parses")
}

/// Checks that every chart named exists, is an SVG and is not empty.
pub fn assert_charts(dir: &Path, names: &[&str]) {
    for name in names {
        let svg = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            svg.starts_with("<svg") && svg.len() > 1000,
            "{name} is not a drawn SVG"
        );
        assert!(
            svg.contains("<rect") || svg.contains("<polyline"),
            "{name} has no bars or lines"
        );
    }
}

/// Every request of requests.csv: its point, status, client-counted and
/// server-reported tokens, and the profile that served it.
pub struct Row {
    pub point: usize,
    pub status: String,
    pub output_tokens: u64,
    pub usage_completion_tokens: u64,
    pub profile: String,
}

pub fn requests(dir: &Path) -> Vec<Row> {
    let mut reader = csv::Reader::from_path(dir.join("requests.csv")).expect("requests.csv");
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let (point, status, out, usage, profile) = (
        col("point"),
        col("status"),
        col("output_tokens"),
        col("usage_completion_tokens"),
        col("profile"),
    );
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            Row {
                point: r[point].parse().unwrap(),
                status: r[status].to_string(),
                output_tokens: r[out].parse().unwrap(),
                usage_completion_tokens: r[usage].parse().unwrap(),
                profile: r[profile].to_string(),
            }
        })
        .collect()
}
