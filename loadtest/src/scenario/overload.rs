//! `overload`: what a target does with more than it can serve. Its capacity
//! is measured first (a closed loop that keeps every place busy: requests
//! served whole per second), then one stream alone (the unloaded time to
//! first token), then Poisson arrivals at `--multiple` times the capacity
//! with the requests' deadline (`--timeout`). A gateway that admits well
//! keeps its goodput near the capacity and its admitted requests near the
//! unloaded latency, refusing the rest at once (`RESOURCE_EXHAUSTED`)
//! instead of cutting them when their deadline passes.

use serde::Serialize;

use crate::cli::OverloadArgs;
use crate::error::LoadtestError;
use crate::report::table::Table;
use crate::report::Report;
use crate::run::Load;
use crate::scenario::Session;
use crate::stats::Summary;

/// The goals the scenario reports against: goodput at least this share of
/// the capacity, admitted TTFT p99 at most this multiple of unloaded.
const GOODPUT_GOAL: f64 = 0.9;
const TTFT_P99_GOAL: f64 = 3.0;

/// One phase of the run.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseRow {
    pub phase: &'static str,
    pub load: Load,
    pub sent: u64,
    /// Requests served whole per second of the window.
    pub served_per_s: f64,
    /// `served_per_s` over the measured capacity.
    pub of_capacity: f64,
    pub ttft_p50_ms: f64,
    pub ttft_p99_ms: f64,
    /// TTFT p99 over the unloaded p99.
    pub ttft_p99_vs_unloaded: f64,
    /// Refused at once with `RESOURCE_EXHAUSTED`.
    pub refused: u64,
    pub deadline_exceeded: u64,
    pub other_errors: u64,
}

/// Requests served whole per second of the window.
fn served_per_s(s: &Summary) -> f64 {
    if s.window_s > 0.0 {
        s.ok as f64 / s.window_s
    } else {
        0.0
    }
}

fn row(phase: &'static str, load: Load, s: &Summary, capacity: f64, unloaded_p99: f64) -> PhaseRow {
    let refused = s.errors.get("RESOURCE_EXHAUSTED").copied().unwrap_or(0);
    let deadline_exceeded = s.errors.get("DEADLINE_EXCEEDED").copied().unwrap_or(0);
    PhaseRow {
        phase,
        load,
        sent: s.requests,
        served_per_s: served_per_s(s),
        of_capacity: if capacity > 0.0 {
            served_per_s(s) / capacity
        } else {
            0.0
        },
        ttft_p50_ms: s.ttft.p50,
        ttft_p99_ms: s.ttft.p99,
        ttft_p99_vs_unloaded: if unloaded_p99 > 0.0 {
            s.ttft.p99 / unloaded_p99
        } else {
            0.0
        },
        refused,
        deadline_exceeded,
        other_errors: s.error_count() - refused - deadline_exceeded,
    }
}

pub async fn run(args: &OverloadArgs) -> Result<Report, LoadtestError> {
    args.load.validate(Some(1), Some(1))?;
    if !(args.multiple.is_finite() && args.multiple > 0.0 && args.multiple <= 1000.0) {
        return Err(LoadtestError::Usage(format!(
            "`--multiple` must be in (0, 1000] (got {})",
            args.multiple
        )));
    }
    let mut s = Session::new("overload", &args.load)?;
    let model = args.load.model[0].clone();
    let target = s
        .connect(&args.load.target[0], args.load.target_kind)
        .await?;
    s.model(0, &model)?;
    let workload = s.workload(&model, None);
    let label = target.address.trim_start_matches("http://").to_string();

    let capacity_load = Load::Closed {
        concurrency: args.capacity_concurrency,
    };
    let at = s
        .measure(
            &target,
            &workload,
            capacity_load,
            &format!("{label} capacity"),
        )
        .await?;
    let capacity = served_per_s(&s.report.points[at].summary);
    if capacity <= 0.0 {
        return Err(LoadtestError::Usage(format!(
            "no request was served whole at {} streams: no capacity to overload",
            args.capacity_concurrency
        )));
    }
    let unloaded_load = Load::Closed { concurrency: 1 };
    let unloaded = s
        .measure(
            &target,
            &workload,
            unloaded_load,
            &format!("{label} unloaded"),
        )
        .await?;
    // Rounded, so the report's labels stay readable.
    let offered = Load::Open {
        rate: (capacity * args.multiple * 100.0).round() / 100.0,
    };
    let overload = s
        .measure(&target, &workload, offered, &format!("{label} overload"))
        .await?;

    let unloaded_p99 = s.report.points[unloaded].summary.ttft.p99;
    let rows: Vec<PhaseRow> = [
        ("capacity", capacity_load, at),
        ("unloaded", unloaded_load, unloaded),
        ("overload", offered, overload),
    ]
    .into_iter()
    .map(|(phase, load, id)| {
        row(
            phase,
            load,
            &s.report.points[id].summary,
            capacity,
            unloaded_p99,
        )
    })
    .collect();
    let over = &rows[2];
    let goodput_met = over.of_capacity >= GOODPUT_GOAL;
    let latency_met = over.ttft_p99_vs_unloaded <= TTFT_P99_GOAL;
    s.report.notes.push(format!(
        "at {:.1}x capacity ({:.2} requests/s offered, {:.2} served at capacity): goodput {:.0} % of capacity \
         (goal >= {:.0} %: {}), admitted TTFT p99 {:.1}x unloaded (goal <= {TTFT_P99_GOAL}x: {})",
        args.multiple,
        capacity * args.multiple,
        capacity,
        over.of_capacity * 100.0,
        GOODPUT_GOAL * 100.0,
        if goodput_met { "met" } else { "missed" },
        over.ttft_p99_vs_unloaded,
        if latency_met { "met" } else { "missed" },
    ));
    s.report.tables.push(table(&rows));
    s.report.results = serde_json::json!({
        "capacity_requests_per_s": capacity,
        "multiple": args.multiple,
        "phases": rows,
        "goodput_goal_met": goodput_met,
        "ttft_goal_met": latency_met,
    });
    Ok(s.report)
}

fn table(rows: &[PhaseRow]) -> Table {
    let mut t = Table::new(
        "Overload",
        &[
            "phase",
            "load",
            "sent",
            "served/s",
            "of capacity",
            "TTFT p50 ms",
            "TTFT p99 ms",
            "p99 vs unloaded",
            "refused",
            "deadline exceeded",
            "other errors",
        ],
    );
    for r in rows {
        t.row(vec![
            r.phase.to_string(),
            r.load.to_string(),
            r.sent.to_string(),
            format!("{:.2}", r.served_per_s),
            format!("{:.0} %", r.of_capacity * 100.0),
            format!("{:.1}", r.ttft_p50_ms),
            format!("{:.1}", r.ttft_p99_ms),
            format!("{:.1}x", r.ttft_p99_vs_unloaded),
            r.refused.to_string(),
            r.deadline_exceeded.to_string(),
            r.other_errors.to_string(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_phase_row_counts_refusals_apart_from_deadlines() {
        let mut s = Summary {
            requests: 100,
            ok: 20,
            window_s: 10.0,
            errors: BTreeMap::from([
                ("RESOURCE_EXHAUSTED".to_string(), 70),
                ("DEADLINE_EXCEEDED".to_string(), 8),
                ("UNAVAILABLE".to_string(), 2),
            ]),
            ..Summary::default()
        };
        s.ttft.p99 = 150.0;
        let r = row("overload", Load::Open { rate: 10.0 }, &s, 2.5, 50.0);
        assert_eq!((r.refused, r.deadline_exceeded, r.other_errors), (70, 8, 2));
        assert!((r.served_per_s - 2.0).abs() < 1e-9);
        assert!((r.of_capacity - 0.8).abs() < 1e-9);
        assert!((r.ttft_p99_vs_unloaded - 3.0).abs() < 1e-9);
    }
}
