//! The load tester as a user runs it, and what its reports hold.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::process::{bin, run_to_end};

/// A run that takes longer is killed, and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Runs `mig-loadtest ARGS` to its end (killed after 5 minutes).
pub fn loadtest(args: &[&str]) -> Output {
    let mut command = Command::new(bin("mig-loadtest"));
    command.args(args);
    run_to_end(command, RUN_LIMIT)
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
