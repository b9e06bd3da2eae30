//! `isolation`: how much a neighbour's load costs a tenant. The victim model
//! is measured alone, then again while an aggressor model floods its own
//! slice. Each victim/aggressor pair is one placement: on separate MIG
//! slices or separate cores it is `pinned`; on the same GPU or overlapping
//! cores it is `shared`, the time-sharing analogue. The seeds' table:
//! time-sharing -69 %, MPS -37 %, MIG 0 %.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::cli::IsolationArgs;
use crate::error::LoadtestError;
use crate::live::Live;
use crate::report::table::{self, Table};
use crate::report::{Chart, Point, Report};
use crate::run::{self, Load, Until};
use crate::scenario::Session;
use crate::stats::Summary;
use crate::target::SliceInfo;
use mig_slices::SliceId;

/// Pause after a flood stops, so its cancelled requests are gone before
/// the next victim measurement starts.
const SETTLE: Duration = Duration::from_secs(1);

/// What the victim saw in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub point: usize,
    pub output_tokens_per_s: f64,
    pub ttft_p99_ms: f64,
    pub itl_p99_ms: f64,
    pub e2e_p99_ms: f64,
}

impl Phase {
    fn of(point: usize, s: &Summary) -> Phase {
        Phase {
            point,
            output_tokens_per_s: s.output_tokens_per_s,
            ttft_p99_ms: s.ttft.p99,
            itl_p99_ms: s.itl.p99,
            e2e_p99_ms: s.e2e.p99,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct IsolationRow {
    /// `pinned` (no slice or core in common) or `shared`.
    pub placement: &'static str,
    pub victim: String,
    pub aggressor: String,
    pub victim_slices: Vec<String>,
    pub aggressor_slices: Vec<String>,
    pub load: Load,
    pub alone: Phase,
    pub with_aggressor: Phase,
    /// What the aggressor pushed through over its whole flood (the victim's
    /// warm-up, window and drain).
    pub aggressor_tokens_per_s: f64,
    /// Changes in percent, with aggressor over alone (negative throughput
    /// change and positive latency change are the harm).
    pub throughput_change_pct: Option<f64>,
    pub ttft_p99_change_pct: Option<f64>,
    pub itl_p99_change_pct: Option<f64>,
    pub e2e_p99_change_pct: Option<f64>,
}

/// `None` when the victim produced nothing alone: no base to compare with.
fn change(alone: f64, with: f64) -> Option<f64> {
    (alone > 0.0).then(|| (with - alone) / alone * 100.0)
}

/// Whether any victim slice and any aggressor slice share hardware: the
/// same MIG device or GPU, or a core.
fn placement(victim: &[SliceInfo], aggressor: &[SliceInfo]) -> &'static str {
    let shares = |a: &SliceInfo, b: &SliceInfo| match (
        a.slice.parse::<SliceId>(),
        b.slice.parse::<SliceId>(),
    ) {
        (Ok(SliceId::Cpu(x)), Ok(SliceId::Cpu(y))) => {
            x.cores().iter().any(|c| y.cores().contains(c))
        }
        // A whole GPU shares itself with every MIG device on it too, but
        // then MIG is off and there are none.
        _ => a.slice == b.slice,
    };
    if victim
        .iter()
        .any(|v| aggressor.iter().any(|a| shares(v, a)))
    {
        "shared"
    } else {
        "pinned"
    }
}

pub async fn run(args: &IsolationArgs) -> Result<Report, LoadtestError> {
    args.load.validate(Some(1), None)?;
    if args.load.model.len() != args.aggressor.len() {
        return Err(LoadtestError::Usage(format!(
            "`--aggressor` given {} times and `--model` {} times: pair each victim with one aggressor",
            args.aggressor.len(),
            args.load.model.len()
        )));
    }
    if !(1..=4096).contains(&args.aggressor_concurrency) {
        return Err(LoadtestError::Usage(format!(
            "`--aggressor-concurrency` {} is outside 1..=4096",
            args.aggressor_concurrency
        )));
    }
    let mut s = Session::new("isolation", &args.load)?;
    let target = s
        .connect(&args.load.target[0], args.load.target_kind)
        .await?;
    let mut rows = Vec::new();
    for (victim, aggressor) in args.load.model.iter().zip(&args.aggressor) {
        if victim == aggressor {
            return Err(LoadtestError::Usage(format!(
                "`--model` and `--aggressor` are both `{victim}`: the aggressor must be another model"
            )));
        }
        let v = s.model(0, victim)?;
        let a = s.model(0, aggressor)?;
        let (v_slices, a_slices) = (v.healthy(), a.healthy());
        let place = placement(&v_slices, &a_slices);
        let victim_load = s.workload(victim, None);
        let aggressor_load = s.workload(aggressor, None);
        for load in s.args.loads() {
            let alone = s
                .measure(&target, &victim_load, load, &format!("{place} alone"))
                .await?;

            // The flood runs until told to stop. The victim is measured only
            // once the flood streams, and its warm-up lets the aggressor's
            // queue fill.
            let flood_load = Load::Closed {
                concurrency: args.aggressor_concurrency,
            };
            let (stop_tx, stop_rx) = watch::channel(false);
            let mut flood_spec = s.spec(flood_load, Until::Stopped(stop_rx));
            flood_spec.warmup = Duration::ZERO;
            flood_spec.drain = Duration::ZERO;
            let started = Instant::now();
            let flood_live = Arc::new(Live::new(started, None));
            let flood = tokio::spawn({
                let (target, workload, live) = (
                    target.clone(),
                    Arc::clone(&aggressor_load),
                    flood_live.clone(),
                );
                async move {
                    run::run_with(&target, &workload, &flood_spec, "aggressor", live, started).await
                }
            });
            let streaming = async {
                while flood_live.total_tokens() == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            if tokio::time::timeout(s.args.timeout, streaming)
                .await
                .is_err()
            {
                stop_tx.send_replace(true);
                let _ = flood.await;
                return Err(LoadtestError::Usage(format!(
                    "the aggressor `{aggressor}` streamed no token within `--timeout`"
                )));
            }
            let with = s
                .measure(
                    &target,
                    &victim_load,
                    load,
                    &format!("{place} with aggressor"),
                )
                .await;
            stop_tx.send_replace(true);
            let flooded = flood
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            let with = with?;
            let flood_summary = Summary::of(&flooded);
            let aggressor_tps = flood_summary.output_tokens_per_s;
            let point = Point {
                id: 0,
                target: target.address.clone(),
                model: aggressor.clone(),
                group: format!("{place} aggressor"),
                load: flood_load,
                summary: flood_summary,
                server_tokens_per_s: None,
            };
            // Its requests cut off at the end of the flood are expected.
            s.file(point, flooded.records, false);
            // Let the cancelled flood's last steps finish before the next
            // victim measurement.
            tokio::time::sleep(SETTLE).await;
            let (alone_p, with_p) = (
                Phase::of(alone, &s.report.points[alone].summary),
                Phase::of(with, &s.report.points[with].summary),
            );
            rows.push(IsolationRow {
                placement: place,
                victim: victim.clone(),
                aggressor: aggressor.clone(),
                victim_slices: v_slices.iter().map(|w| w.slice.clone()).collect(),
                aggressor_slices: a_slices.iter().map(|w| w.slice.clone()).collect(),
                load,
                throughput_change_pct: change(
                    alone_p.output_tokens_per_s,
                    with_p.output_tokens_per_s,
                ),
                ttft_p99_change_pct: change(alone_p.ttft_p99_ms, with_p.ttft_p99_ms),
                itl_p99_change_pct: change(alone_p.itl_p99_ms, with_p.itl_p99_ms),
                e2e_p99_change_pct: change(alone_p.e2e_p99_ms, with_p.e2e_p99_ms),
                alone: alone_p,
                with_aggressor: with_p,
                aggressor_tokens_per_s: aggressor_tps,
            });
        }
    }
    s.report.notes.push(format!(
        "the aggressor's requests still running when its flood stopped are counted {} \
         in its points (the client cut them off)",
        crate::request::CLIENT_GAVE_UP
    ));
    s.report.tables.push(table(&rows));
    s.report.charts.extend(charts(&rows));
    s.report.results = serde_json::to_value(&rows).expect("rows serialize");
    Ok(s.report)
}

fn table(rows: &[IsolationRow]) -> Table {
    let mut t = Table::new(
        "Victim degradation under a neighbour's flood",
        &[
            "placement",
            "victim",
            "slices",
            "aggressor",
            "slices",
            "load",
            "tok/s alone",
            "tok/s with",
            "change",
            "TTFT p99 alone",
            "TTFT p99 with",
            "change",
            "ITL p99 alone",
            "ITL p99 with",
            "change",
            "aggressor tok/s",
        ],
    );
    for r in rows {
        t.row(vec![
            r.placement.into(),
            r.victim.clone(),
            r.victim_slices.join(","),
            r.aggressor.clone(),
            r.aggressor_slices.join(","),
            r.load.to_string(),
            table::num(r.alone.output_tokens_per_s, 1),
            table::num(r.with_aggressor.output_tokens_per_s, 1),
            opt_pct(r.throughput_change_pct),
            table::ms(r.alone.ttft_p99_ms),
            table::ms(r.with_aggressor.ttft_p99_ms),
            opt_pct(r.ttft_p99_change_pct),
            table::ms(r.alone.itl_p99_ms),
            table::ms(r.with_aggressor.itl_p99_ms),
            opt_pct(r.itl_p99_change_pct),
            table::num(r.aggressor_tokens_per_s, 1),
        ]);
    }
    t
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or("-".into(), table::pct)
}

fn charts(rows: &[IsolationRow]) -> Vec<Chart> {
    let categories: Vec<String> = rows
        .iter()
        .map(|r| format!("{} ({})", r.placement, r.victim_slices.join(",")))
        .collect();
    let series = |f: &dyn Fn(&Phase) -> f64| {
        vec![
            (
                "alone".to_string(),
                rows.iter().map(|r| f(&r.alone)).collect(),
            ),
            (
                "with aggressor".to_string(),
                rows.iter().map(|r| f(&r.with_aggressor)).collect(),
            ),
        ]
    };
    vec![
        Chart::Bars {
            file: "isolation-throughput.svg".into(),
            title: "Victim tokens/s, alone and beside a flooding neighbour".into(),
            y_desc: "tok/s".into(),
            categories: categories.clone(),
            series: series(&|p| p.output_tokens_per_s),
        },
        Chart::Bars {
            file: "isolation-latency.svg".into(),
            title: "Victim inter-token latency p99".into(),
            y_desc: "ms".into(),
            categories,
            series: series(&|p| p.itl_p99_ms),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(slice: &str) -> SliceInfo {
        SliceInfo {
            worker_id: String::new(),
            address: String::new(),
            slice: slice.into(),
            profile: String::new(),
            gpu: String::new(),
            memory_bytes: 0,
            engine: String::new(),
            healthy: true,
            compute_units: None,
        }
    }

    #[test]
    fn placement_is_shared_when_hardware_is_and_change_is_relative() {
        assert_eq!(placement(&[at("cpu:0")], &[at("cpu:1")]), "pinned");
        assert_eq!(placement(&[at("cpu:0")], &[at("cpu:0-1")]), "shared");
        assert_eq!(placement(&[at("MIG-a")], &[at("MIG-b")]), "pinned");
        assert_eq!(placement(&[at("GPU-a")], &[at("GPU-a")]), "shared");
        assert!((change(20.0, 6.2).unwrap() - -69.0).abs() < 1e-9);
        assert_eq!(change(0.0, 5.0), None);
    }
}
