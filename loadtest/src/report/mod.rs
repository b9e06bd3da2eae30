//! A load test's report: every figure as JSON, the load points and every
//! request as CSV, a Markdown summary and SVG charts, all in `--out DIR`;
//! the same tables on the terminal.

pub mod charts;
pub mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::LoadtestError;
use crate::request::RequestRecord;
use crate::run::Load;
use crate::stats::Summary;
use crate::target::Inventory;
use charts::Series;
use table::Table;

/// Creates `dir` if needed and checks that a file can be written in it.
pub fn check_writable(dir: &Path) -> Result<(), LoadtestError> {
    std::fs::create_dir_all(dir).map_err(|e| LoadtestError::write(dir, e))?;
    let probe = dir.join(".mig-loadtest-probe");
    std::fs::write(&probe, b"").map_err(|e| LoadtestError::write(&probe, e))?;
    std::fs::remove_file(&probe).map_err(|e| LoadtestError::write(&probe, e))
}

/// One load point's results.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub id: usize,
    pub target: String,
    pub model: String,
    /// What the point measured: a profile (`compare`), a placement and
    /// phase (`isolation`), a target (`sweep`).
    pub group: String,
    pub load: Load,
    pub summary: Summary,
    /// Tokens/s per slice from the server's `/metrics` (`--metrics-url`).
    pub server_tokens_per_s: Option<BTreeMap<String, f64>>,
}

/// A chart to draw when the report is written.
#[derive(Debug, Clone)]
pub enum Chart {
    Bars {
        file: String,
        title: String,
        y_desc: String,
        categories: Vec<String>,
        series: Vec<(String, Vec<f64>)>,
    },
    Lines {
        file: String,
        title: String,
        x_desc: String,
        y_desc: String,
        series: Vec<(String, Vec<(f64, f64)>)>,
    },
}

impl Chart {
    fn file(&self) -> &str {
        match self {
            Chart::Bars { file, .. } | Chart::Lines { file, .. } => file,
        }
    }

    fn title(&self) -> &str {
        match self {
            Chart::Bars { title, .. } | Chart::Lines { title, .. } => title,
        }
    }

    fn draw(&self, path: &Path) -> Result<(), LoadtestError> {
        fn owned<T: Clone>(s: &[(String, Vec<T>)]) -> Vec<Series<T>> {
            s.iter()
                .map(|(name, values)| Series {
                    name: name.clone(),
                    values: values.clone(),
                })
                .collect()
        }
        match self {
            Chart::Bars {
                title,
                y_desc,
                categories,
                series,
                ..
            } => charts::bars(path, title, y_desc, categories, &owned(series)),
            Chart::Lines {
                title,
                x_desc,
                y_desc,
                series,
                ..
            } => charts::lines(path, title, x_desc, y_desc, &owned(series)),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    /// The command line as typed.
    pub command: Vec<String>,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub scenario: &'static str,
    /// The workload and run settings shared by every point.
    pub settings: serde_json::Value,
    /// What each target served when the run started.
    pub inventory: Vec<Inventory>,
    pub points: Vec<Point>,
    /// The scenario's own rows (per profile, per placement, per target).
    pub results: serde_json::Value,
    /// What the reader should know (shared cores, errors, a small machine).
    pub notes: Vec<String>,
    #[serde(skip)]
    pub tables: Vec<Table>,
    #[serde(skip)]
    pub charts: Vec<Chart>,
    /// Every measured request.
    #[serde(skip)]
    pub records: Vec<RequestRecord>,
}

/// The command line as the report records it, with the value of
/// `--api-key` replaced: a key must never land in a report file.
fn redacted_command_line(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut secret_next = false;
    for arg in args {
        if std::mem::take(&mut secret_next) {
            out.push("<redacted>".into());
        } else if arg == "--api-key" {
            secret_next = true;
            out.push(arg);
        } else if arg.starts_with("--api-key=") {
            out.push("--api-key=<redacted>".into());
        } else {
            out.push(arg);
        }
    }
    out
}

impl Report {
    pub fn new(scenario: &'static str, settings: serde_json::Value) -> Report {
        Report {
            tool: "mig-loadtest",
            version: env!("CARGO_PKG_VERSION"),
            command: redacted_command_line(std::env::args()),
            started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            scenario,
            settings,
            inventory: Vec::new(),
            points: Vec::new(),
            results: serde_json::Value::Null,
            notes: Vec::new(),
            tables: Vec::new(),
            charts: Vec::new(),
            records: Vec::new(),
        }
    }

    /// Every load point, one row each.
    pub fn points_table(&self) -> Table {
        let mut t = Table::new(
            "Load points",
            &[
                "#",
                "target",
                "model",
                "group",
                "load",
                "requests",
                "errors",
                "req/s",
                "tok/s",
                "TTFT p50 ms",
                "TTFT p99 ms",
                "ITL p50 ms",
                "ITL p99 ms",
                "e2e p99 ms",
            ],
        );
        for p in &self.points {
            let s = &p.summary;
            t.row(vec![
                p.id.to_string(),
                p.target.clone(),
                p.model.clone(),
                p.group.clone(),
                p.load.to_string(),
                s.requests.to_string(),
                s.errors_text(),
                table::num(s.requests_per_s, 2),
                table::num(s.output_tokens_per_s, 1),
                table::ms(s.ttft.p50),
                table::ms(s.ttft.p99),
                table::ms(s.itl.p50),
                table::ms(s.itl.p99),
                table::ms(s.e2e.p99),
            ]);
        }
        t
    }

    /// The scenario's tables, the points and the notes, for the terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for t in self.tables.iter().chain([&self.points_table()]) {
            out.push_str(&t.to_text());
            out.push('\n');
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }

    fn to_markdown(&self) -> String {
        let mut md = format!(
            "# mig-loadtest {}\n\n{} (mig-loadtest {})\n\n```\n{}\n```\n\n",
            self.scenario,
            self.started_at,
            self.version,
            self.command.join(" ")
        );
        md.push_str(&self.inventory_table().to_markdown());
        md.push('\n');
        for t in self.tables.iter().chain([&self.points_table()]) {
            md.push_str(&t.to_markdown());
            md.push('\n');
        }
        for c in &self.charts {
            md.push_str(&format!("![{}]({})\n\n", c.title(), c.file()));
        }
        if !self.notes.is_empty() {
            md.push_str("### Notes\n\n");
            for n in &self.notes {
                md.push_str(&format!("- {n}\n"));
            }
        }
        md
    }

    fn inventory_table(&self) -> Table {
        let mut t = Table::new(
            "Slices",
            &[
                "target",
                "model",
                "worker",
                "slice",
                "profile",
                "compute units",
                "memory",
                "engine",
                "healthy",
            ],
        );
        for inv in &self.inventory {
            for m in &inv.models {
                for w in &m.workers {
                    t.row(vec![
                        inv.target.clone(),
                        m.name.clone(),
                        w.worker_id.clone(),
                        w.slice.clone(),
                        w.profile.clone(),
                        w.compute_units.map_or("-".into(), |u| table::num(u, 0)),
                        table::gib(w.memory_bytes),
                        w.engine.clone(),
                        w.healthy.to_string(),
                    ]);
                }
            }
        }
        t
    }

    /// Writes every file into `dir` (created if missing); returns their paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, LoadtestError> {
        std::fs::create_dir_all(dir).map_err(|e| LoadtestError::write(dir, e))?;
        let mut written = Vec::new();
        let mut put = |name: &str, bytes: Vec<u8>| -> Result<(), LoadtestError> {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|e| LoadtestError::write(&path, e))?;
            written.push(path);
            Ok(())
        };
        let json = serde_json::to_vec_pretty(self).map_err(|e| LoadtestError::write(dir, e))?;
        put("report.json", json)?;
        put(
            "summary.csv",
            self.summary_csv()
                .map_err(|e| LoadtestError::write(dir, e))?,
        )?;
        put(
            "requests.csv",
            self.requests_csv()
                .map_err(|e| LoadtestError::write(dir, e))?,
        )?;
        put("report.md", self.to_markdown().into_bytes())?;
        for chart in &self.charts {
            let path = dir.join(chart.file());
            chart.draw(&path)?;
            written.push(path);
        }
        Ok(written)
    }

    fn summary_csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "point",
            "target",
            "model",
            "group",
            "load",
            "requests",
            "ok",
            "errors",
            "errors_by_code",
            "warmup_requests",
            "skipped",
            "window_s",
            "requests_per_s",
            "output_tokens",
            "usage_completion_tokens",
            "prompt_tokens",
            "output_tokens_per_s",
            "server_tokens_per_s",
            "ttft_p50_ms",
            "ttft_p90_ms",
            "ttft_p95_ms",
            "ttft_p99_ms",
            "itl_p50_ms",
            "itl_p90_ms",
            "itl_p95_ms",
            "itl_p99_ms",
            "e2e_p50_ms",
            "e2e_p90_ms",
            "e2e_p95_ms",
            "e2e_p99_ms",
        ])?;
        for p in &self.points {
            let s = &p.summary;
            let server = p
                .server_tokens_per_s
                .as_ref()
                .map_or(String::new(), |m| format!("{:.3}", m.values().sum::<f64>()));
            let mut row = vec![
                p.id.to_string(),
                p.target.clone(),
                p.model.clone(),
                p.group.clone(),
                p.load.to_string(),
                s.requests.to_string(),
                s.ok.to_string(),
                s.error_count().to_string(),
                s.errors_text(),
                s.warmup_requests.to_string(),
                s.skipped.to_string(),
                format!("{:.3}", s.window_s),
                format!("{:.3}", s.requests_per_s),
                s.output_tokens.to_string(),
                s.usage_completion_tokens.to_string(),
                s.prompt_tokens.to_string(),
                format!("{:.3}", s.output_tokens_per_s),
                server,
            ];
            for l in [&s.ttft, &s.itl, &s.e2e] {
                row.extend([l.p50, l.p90, l.p95, l.p99].map(|v| format!("{v:.3}")));
            }
            w.write_record(row)?;
        }
        w.into_inner().map_err(|e| e.into_error().into())
    }

    fn requests_csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut w = csv::Writer::from_writer(Vec::new());
        for record in &self.records {
            w.serialize(record)?;
        }
        w.into_inner().map_err(|e| e.into_error().into())
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::redacted_command_line;

    #[test]
    fn an_api_key_never_reaches_the_report() {
        let args = [
            "mig-loadtest",
            "sweep",
            "--api-key",
            "mig_secret",
            "--api-key=mig_other",
            "--model",
            "m",
        ];
        let line = redacted_command_line(args.iter().map(|s| s.to_string()));
        assert_eq!(
            line,
            [
                "mig-loadtest",
                "sweep",
                "--api-key",
                "<redacted>",
                "--api-key=<redacted>",
                "--model",
                "m"
            ]
        );
    }
}
