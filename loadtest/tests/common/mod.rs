//! Real processes for the scenario tests: `mig-gateway up` with its workers
//! on CPU slices, and the `mig-loadtest` binary run as a user runs it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The SmolLM2 demo model, fetched by `make models`.
pub fn smollm2() -> String {
    let p = repo_root().join("models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "{} is missing: run `make models`", p.display());
    p.display().to_string()
}

/// The gateway binary of the same build (`cargo build --bins`, which `make
/// test` runs first); it starts the `mig-worker` next to it.
fn gateway_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_mig-loadtest")).with_file_name("mig-gateway");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (`cargo build --bins`, as `make test` does)",
        bin.display()
    );
    bin
}

/// A running `mig-gateway up`; killed (with its workers, by their
/// parent-death signal) when dropped.
pub struct Gateway {
    child: Child,
    log: PathBuf,
    pub address: String,
}

impl Gateway {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `mig-gateway up` on a fleet file with this text and waits for its
/// listening line (every worker ready).
pub fn start_gateway(name: &str, fleet: &str) -> Gateway {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let fleet_path = dir.join(format!("loadtest-fleet-{name}-{}.toml", std::process::id()));
    std::fs::write(&fleet_path, fleet).unwrap();
    let log = dir.join(format!(
        "loadtest-gateway-{name}-{}.log",
        std::process::id()
    ));
    let mut child = Command::new(gateway_bin())
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--health-interval",
            "0.5",
            "--fleet",
        ])
        .arg(&fleet_path)
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start mig-gateway up");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .strip_prefix("mig-gateway listening on ")
        .and_then(|rest| rest.split(';').next())
        .map(str::to_string);
    let gateway = Gateway {
        child,
        log,
        address: address.clone().unwrap_or_default(),
    };
    assert!(
        address.is_some(),
        "unexpected ready line {line:?}\n{}",
        gateway.log()
    );
    gateway
}

/// Runs `mig-loadtest ARGS` to its end.
pub fn loadtest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mig-loadtest"))
        .args(args)
        .output()
        .expect("run mig-loadtest")
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
