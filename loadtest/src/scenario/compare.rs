//! `compare`: the same workload against each slice size of one model in
//! turn (through the gateway, each request names the profile it must run
//! on), so the report shows how throughput scales with the slice: the seeds'
//! table of 1g, 2g, 3g, 4g, 7g, or here 1 core against 2.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cli::CompareArgs;
use crate::error::LoadtestError;
use crate::report::table::{self, Table};
use crate::report::{Chart, Report};
use crate::run::Load;
use crate::scenario::Session;
use crate::target::SliceInfo;
use mig_slices::SliceId;

/// One slice size at one load point.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    pub profile: String,
    pub load: Load,
    pub point: usize,
    pub slices: Vec<String>,
    /// Per worker: cores of a CPU slice, GPU-instance slices of a MIG one.
    pub compute_units: Option<f64>,
    pub compute_unit: &'static str,
    /// Memory of one slice of the group.
    pub memory_bytes: u64,
    pub output_tokens_per_s: f64,
    pub ttft_p50_ms: f64,
    pub ttft_p99_ms: f64,
    pub itl_p50_ms: f64,
    pub itl_p99_ms: f64,
    /// Output tokens/s divided by the compute units of the slices that
    /// served the point.
    pub tokens_per_s_per_unit: Option<f64>,
    /// Tokens/s over the smallest slice's at the same load (`None` when
    /// the smallest produced nothing).
    pub ratio_to_smallest: Option<f64>,
    /// Compute over the smallest slice's: what linear scaling would give.
    pub size_ratio: Option<f64>,
    pub errors: u64,
}

/// Healthy slices of the model grouped by profile, smallest first.
fn groups(
    workers: &[SliceInfo],
    only: &[String],
) -> Result<Vec<(String, Vec<SliceInfo>)>, LoadtestError> {
    let mut by_profile: BTreeMap<String, Vec<SliceInfo>> = BTreeMap::new();
    for w in workers {
        by_profile
            .entry(w.profile.clone())
            .or_default()
            .push(w.clone());
    }
    if let Some(missing) = only.iter().find(|p| !by_profile.contains_key(*p)) {
        return Err(LoadtestError::Usage(format!(
            "`--profiles`: no healthy worker of the model has profile `{missing}`; it has: {}",
            by_profile.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let mut groups: Vec<_> = by_profile
        .into_iter()
        .filter(|(p, _)| only.is_empty() || only.contains(p))
        .collect();
    groups.sort_by(|a, b| {
        let units = |g: &(String, Vec<SliceInfo>)| g.1[0].compute_units.unwrap_or(f64::MAX);
        units(a).total_cmp(&units(b)).then_with(|| a.0.cmp(&b.0))
    });
    Ok(groups)
}

fn unit_name(slices: &[SliceInfo]) -> &'static str {
    match slices.first().and_then(|s| s.slice.parse::<SliceId>().ok()) {
        Some(SliceId::Cpu(_)) => "cores",
        _ => "GPU slices",
    }
}

/// Cores two CPU slices of different groups share.
fn overlapping(groups: &[(String, Vec<SliceInfo>)]) -> Vec<String> {
    let cores = |s: &SliceInfo| match s.slice.parse::<SliceId>() {
        Ok(SliceId::Cpu(c)) => c.cores().to_vec(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for (i, (pa, a)) in groups.iter().enumerate() {
        for (pb, b) in &groups[i + 1..] {
            let shared = a
                .iter()
                .flat_map(cores)
                .any(|c| b.iter().flat_map(cores).any(|d| d == c));
            if shared {
                out.push(format!("{pa} and {pb}"));
            }
        }
    }
    out
}

pub async fn run(args: &CompareArgs) -> Result<Report, LoadtestError> {
    args.load.validate(Some(1), Some(1))?;
    let mut s = Session::new("compare", &args.load)?;
    let target = s
        .connect(&args.load.target[0], args.load.target_kind)
        .await?;
    let model_name = args.load.model[0].clone();
    let model = s.model(0, &model_name)?;
    let groups = groups(&model.healthy(), &args.profiles)?;
    let mut rows = Vec::new();
    for load in s.args.loads() {
        let mut smallest: Option<(f64, Option<f64>)> = None;
        for (profile, slices) in &groups {
            let workload = s.workload(&model_name, Some(profile.clone()));
            let point = s.measure(&target, &workload, load, profile).await?;
            let summary = &s.report.points[point].summary;
            let units = slices[0].compute_units;
            // The slices that served (at low concurrency a group of several
            // may not use them all): the compute the figure came from.
            let served = summary.slices.len().max(1) as f64;
            let used_units = units.map(|u| u * served);
            let tps = summary.output_tokens_per_s;
            let (base_tps, base_units) = *smallest.get_or_insert((tps, used_units));
            rows.push(CompareRow {
                profile: profile.clone(),
                load,
                point,
                slices: slices.iter().map(|w| w.slice.clone()).collect(),
                compute_units: units,
                compute_unit: unit_name(slices),
                memory_bytes: slices[0].memory_bytes,
                output_tokens_per_s: tps,
                ttft_p50_ms: summary.ttft.p50,
                ttft_p99_ms: summary.ttft.p99,
                itl_p50_ms: summary.itl.p50,
                itl_p99_ms: summary.itl.p99,
                tokens_per_s_per_unit: used_units.filter(|u| *u > 0.0).map(|u| tps / u),
                ratio_to_smallest: (base_tps > 0.0).then(|| tps / base_tps),
                size_ratio: used_units.zip(base_units).map(|(u, b)| u / b),
                errors: summary.error_count(),
            });
        }
    }
    if groups.len() < 2 {
        s.report.notes.push(format!(
            "`{model_name}` has one slice size only ({}): nothing to compare it with",
            groups
                .iter()
                .map(|g| g.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for pair in overlapping(&groups) {
        s.report.notes.push(format!(
            "the CPU slices of {pair} share cores: each size was measured alone, one after \
             the other, so the figures compare, but they cannot all run at once"
        ));
    }
    s.report.tables.push(table(&rows));
    s.report.charts.extend(charts(&rows, &groups));
    s.report.results = serde_json::to_value(&rows).expect("rows serialize");
    Ok(s.report)
}

fn table(rows: &[CompareRow]) -> Table {
    let mut t = Table::new(
        "Throughput by slice size",
        &[
            "profile",
            "slices",
            "compute",
            "memory",
            "load",
            "tok/s",
            "TTFT p50 ms",
            "TTFT p99 ms",
            "ITL p50 ms",
            "ITL p99 ms",
            "tok/s per unit",
            "x smallest",
            "x size",
            "errors",
        ],
    );
    for r in rows {
        t.row(vec![
            r.profile.clone(),
            r.slices.len().to_string(),
            r.compute_units.map_or("-".into(), |u| {
                // "1 core", "2 cores", "3 GPU slices"
                let unit = if u == 1.0 {
                    r.compute_unit.trim_end_matches('s')
                } else {
                    r.compute_unit
                };
                format!("{u} {unit}")
            }),
            table::gib(r.memory_bytes),
            r.load.to_string(),
            table::num(r.output_tokens_per_s, 1),
            table::ms(r.ttft_p50_ms),
            table::ms(r.ttft_p99_ms),
            table::ms(r.itl_p50_ms),
            table::ms(r.itl_p99_ms),
            r.tokens_per_s_per_unit
                .map_or("-".into(), |v| table::num(v, 1)),
            r.ratio_to_smallest
                .map_or("-".into(), |v| format!("{v:.2}x")),
            r.size_ratio.map_or("-".into(), |v| format!("{v:.2}x")),
            r.errors.to_string(),
        ]);
    }
    t
}

fn charts(rows: &[CompareRow], groups: &[(String, Vec<SliceInfo>)]) -> Vec<Chart> {
    let categories: Vec<String> = groups.iter().map(|g| g.0.clone()).collect();
    let mut loads: Vec<Load> = Vec::new();
    for r in rows {
        if !loads.contains(&r.load) {
            loads.push(r.load);
        }
    }
    let of_load = |load: &Load, f: &dyn Fn(&CompareRow) -> f64| -> Vec<f64> {
        categories
            .iter()
            .map(|p| {
                rows.iter()
                    .find(|r| &r.profile == p && r.load == *load)
                    .map_or(0.0, f)
            })
            .collect()
    };
    let mut charts = vec![Chart::Bars {
        file: "compare-throughput.svg".into(),
        title: "Output tokens/s by slice size".into(),
        y_desc: "tok/s".into(),
        categories: categories.clone(),
        series: loads
            .iter()
            .map(|l| (l.to_string(), of_load(l, &|r| r.output_tokens_per_s)))
            .collect(),
    }];
    for (i, load) in loads.iter().enumerate() {
        let suffix = if loads.len() == 1 {
            String::new()
        } else {
            format!("-{}", i + 1)
        };
        charts.push(Chart::Bars {
            file: format!("compare-latency{suffix}.svg"),
            title: format!("Latency percentiles by slice size ({load})"),
            y_desc: "ms".into(),
            categories: categories.clone(),
            series: vec![
                ("TTFT p50".into(), of_load(load, &|r| r.ttft_p50_ms)),
                ("TTFT p99".into(), of_load(load, &|r| r.ttft_p99_ms)),
                ("ITL p50".into(), of_load(load, &|r| r.itl_p50_ms)),
                ("ITL p99".into(), of_load(load, &|r| r.itl_p99_ms)),
            ],
        });
    }
    charts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(slice: &str, profile: &str, healthy: bool) -> SliceInfo {
        SliceInfo {
            worker_id: format!("m@{slice}"),
            address: String::new(),
            slice: slice.into(),
            profile: profile.into(),
            gpu: String::new(),
            memory_bytes: 0,
            engine: String::new(),
            healthy,
            compute_units: mig_slices::compute_units(profile),
        }
    }

    #[test]
    fn groups_by_profile_smallest_first_and_names_missing_profiles() {
        let workers = [
            slice("cpu:1-2", "cpu-2c", true),
            slice("cpu:0", "cpu-1c", true),
            slice("cpu:3-4", "cpu-2c", true),
            slice("cpu:5-8", "cpu-4c", false),
        ];
        let healthy: Vec<_> = workers.iter().filter(|w| w.healthy).cloned().collect();
        let g = groups(&healthy, &[]).unwrap();
        let names: Vec<_> = g.iter().map(|(p, s)| (p.as_str(), s.len())).collect();
        assert_eq!(names, [("cpu-1c", 1), ("cpu-2c", 2)]);
        let e = groups(&healthy, &["cpu-4c".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`--profiles`") && e.contains("cpu-1c, cpu-2c"),
            "{e}"
        );
        assert!(overlapping(&g).is_empty());
        let shared = groups(
            &[
                slice("cpu:0", "cpu-1c", true),
                slice("cpu:0-1", "cpu-2c", true),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(overlapping(&shared), ["cpu-1c and cpu-2c"]);
    }
}
