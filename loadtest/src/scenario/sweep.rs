//! `sweep`: one model under rising load (concurrency or arrival rate), for
//! throughput-latency curves. With several targets each point runs on each
//! in turn; a gateway and one of its workers side by side give the gateway's
//! own overhead, measured in one run (the identity model takes the model's
//! time out of the figures).

use serde::Serialize;

use crate::cli::SweepArgs;
use crate::error::LoadtestError;
use crate::report::table::Table;
use crate::report::{Chart, Report};
use crate::run::Load;
use crate::scenario::Session;
use crate::target::TargetKind;

/// One target against the first one, at one load point.
#[derive(Debug, Clone, Serialize)]
pub struct OverheadRow {
    pub load: Load,
    pub target: String,
    pub baseline: String,
    /// Differences in milliseconds (this target minus the first).
    pub ttft_p50_delta_ms: f64,
    pub ttft_p99_delta_ms: f64,
    pub itl_p50_delta_ms: f64,
    pub e2e_p50_delta_ms: f64,
    pub e2e_p99_delta_ms: f64,
    /// Tokens/s over the first target's.
    pub throughput_ratio: f64,
}

pub async fn run(args: &SweepArgs) -> Result<Report, LoadtestError> {
    args.load.validate(None, Some(1))?;
    let mut s = Session::new("sweep", &args.load)?;
    let model = args.load.model[0].clone();
    let mut addresses: Vec<(String, TargetKind)> = args
        .load
        .target
        .iter()
        .map(|a| (a.clone(), args.load.target_kind))
        .collect();
    let mut targets = Vec::new();
    let mut i = 0;
    while i < addresses.len() {
        let target = s.connect(&addresses[i].0, addresses[i].1).await?;
        let served = s.model(i, &model)?;
        if args.direct && i == 0 {
            if target.kind != TargetKind::Gateway {
                return Err(LoadtestError::Usage(
                    "`--direct` needs a gateway as the first `--target`".into(),
                ));
            }
            let healthy = served.healthy();
            if healthy.len() > 1 {
                s.report.notes.push(format!(
                    "the gateway spreads `{model}` over {} workers; `--direct` loads only {}: \
                     compare latencies at low concurrency, not throughput",
                    healthy.len(),
                    healthy[0].worker_id
                ));
            }
            addresses.push((healthy[0].address.clone(), TargetKind::Worker));
        }
        i += 1;
        let kind = match target.kind {
            TargetKind::Worker => "worker",
            _ => "gateway",
        };
        targets.push((
            format!("{kind} {}", target.address.trim_start_matches("http://")),
            target,
        ));
    }
    if args.direct {
        // The worker is the baseline: the differences are the gateway's cost.
        targets.rotate_right(1);
    }
    let workload = s.workload(&model, None);
    // points[load][target]
    let mut points = Vec::new();
    for load in s.args.loads() {
        let mut row = Vec::new();
        for (label, target) in &targets {
            row.push(s.measure(target, &workload, load, label).await?);
        }
        points.push(row);
    }
    let overhead = overhead_rows(&s.report, &points);
    if !overhead.is_empty() {
        s.report.tables.push(overhead_table(&overhead));
    }
    s.report.charts.extend(charts(&s.report, &targets, &points));
    s.report.results = serde_json::json!({ "overhead": overhead });
    Ok(s.report)
}

fn overhead_rows(report: &Report, points: &[Vec<usize>]) -> Vec<OverheadRow> {
    let mut rows = Vec::new();
    for row in points {
        let base = &report.points[row[0]];
        for &id in &row[1..] {
            let p = &report.points[id];
            let (a, b) = (&p.summary, &base.summary);
            rows.push(OverheadRow {
                load: p.load,
                target: p.group.clone(),
                baseline: base.group.clone(),
                ttft_p50_delta_ms: a.ttft.p50 - b.ttft.p50,
                ttft_p99_delta_ms: a.ttft.p99 - b.ttft.p99,
                itl_p50_delta_ms: a.itl.p50 - b.itl.p50,
                e2e_p50_delta_ms: a.e2e.p50 - b.e2e.p50,
                e2e_p99_delta_ms: a.e2e.p99 - b.e2e.p99,
                throughput_ratio: if b.output_tokens_per_s > 0.0 {
                    a.output_tokens_per_s / b.output_tokens_per_s
                } else {
                    0.0
                },
            });
        }
    }
    rows
}

fn overhead_table(rows: &[OverheadRow]) -> Table {
    let mut t = Table::new(
        "Against the first target (differences in ms)",
        &[
            "load",
            "target",
            "baseline",
            "TTFT p50",
            "TTFT p99",
            "ITL p50",
            "e2e p50",
            "e2e p99",
            "tok/s ratio",
        ],
    );
    for r in rows {
        t.row(vec![
            r.load.to_string(),
            r.target.clone(),
            r.baseline.clone(),
            format!("{:+.3}", r.ttft_p50_delta_ms),
            format!("{:+.3}", r.ttft_p99_delta_ms),
            format!("{:+.3}", r.itl_p50_delta_ms),
            format!("{:+.3}", r.e2e_p50_delta_ms),
            format!("{:+.3}", r.e2e_p99_delta_ms),
            format!("{:.3}x", r.throughput_ratio),
        ]);
    }
    t
}

fn charts(
    report: &Report,
    targets: &[(String, crate::target::Target)],
    points: &[Vec<usize>],
) -> Vec<Chart> {
    let curve = |t: usize, f: &dyn Fn(&crate::stats::Summary) -> f64| -> Vec<(f64, f64)> {
        points
            .iter()
            .map(|row| {
                let s = &report.points[row[t]].summary;
                (s.output_tokens_per_s, f(s))
            })
            .collect()
    };
    let series = |name: &str, f: &dyn Fn(&crate::stats::Summary) -> f64| {
        targets
            .iter()
            .enumerate()
            .map(|(t, (label, _))| (format!("{label} {name}"), curve(t, f)))
            .collect::<Vec<_>>()
    };
    let two = |a: &str,
               fa: &dyn Fn(&crate::stats::Summary) -> f64,
               b: &str,
               fb: &dyn Fn(&crate::stats::Summary) -> f64| {
        let mut s = series(a, fa);
        s.extend(series(b, fb));
        s
    };
    vec![
        Chart::Lines {
            file: "sweep-ttft.svg".into(),
            title: "Time to first token against throughput".into(),
            x_desc: "output tok/s".into(),
            y_desc: "TTFT ms".into(),
            series: two("p50", &|s| s.ttft.p50, "p99", &|s| s.ttft.p99),
        },
        Chart::Lines {
            file: "sweep-itl.svg".into(),
            title: "Inter-token latency against throughput".into(),
            x_desc: "output tok/s".into(),
            y_desc: "ITL ms".into(),
            series: two("p50", &|s| s.itl.p50, "p99", &|s| s.itl.p99),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Point;
    use crate::stats::Summary;

    fn point(id: usize, group: &str, tps: f64, ttft: f64) -> Point {
        let mut summary = Summary {
            output_tokens_per_s: tps,
            ..Summary::default()
        };
        summary.ttft.p50 = ttft;
        Point {
            id,
            target: String::new(),
            model: "m".into(),
            group: group.into(),
            load: Load::Closed { concurrency: 1 },
            summary,
            server_tokens_per_s: None,
        }
    }

    #[test]
    fn overhead_is_each_target_against_the_first() {
        let mut report = Report::new("sweep", serde_json::Value::Null);
        report.points = vec![
            point(0, "worker", 100.0, 1.0),
            point(1, "gateway", 90.0, 1.5),
        ];
        let rows = overhead_rows(&report, &[vec![0, 1]]);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].target.as_str(), rows[0].baseline.as_str()),
            ("gateway", "worker")
        );
        assert!((rows[0].ttft_p50_delta_ms - 0.5).abs() < 1e-9);
        assert!((rows[0].throughput_ratio - 0.9).abs() < 1e-9);
    }
}
