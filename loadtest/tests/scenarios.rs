//! The three scenarios end to end: a real `mig-gateway up` with real workers
//! on CPU slices, the real `mig-loadtest` binary, and its report checked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use mig_loadtest::target::{Target, TargetKind};
use mig_testkit::loadtest::{assert_charts, loadtest, read_report, requests, Row};
use mig_testkit::process::gateway_up;

/// The scenarios measure speed: one at a time, so they do not load each
/// other's cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn run_ok(args: &[&str]) -> String {
    let out = loadtest(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "mig-loadtest {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Client-counted tokens equal the servers' `usage.completion_tokens`, per
/// request and in each point's totals, and every request has a status.
fn assert_tokens_add_up(report: &serde_json::Value, rows: &[Row]) {
    for r in rows {
        assert!(!r.status.is_empty(), "a request without a status");
        assert_eq!(
            r.output_tokens, r.usage_completion_tokens,
            "point {}",
            r.point
        );
    }
    for p in report["points"].as_array().unwrap() {
        let s = &p["summary"];
        assert_eq!(s["output_tokens"], s["usage_completion_tokens"], "{p}");
        let id = p["id"].as_u64().unwrap() as usize;
        let counted: u64 = rows
            .iter()
            .filter(|r| r.point == id)
            .map(|r| r.output_tokens)
            .sum();
        assert_eq!(s["output_tokens"].as_u64().unwrap(), counted, "point {id}");
        assert_eq!(
            s["requests"].as_u64().unwrap(),
            rows.iter().filter(|r| r.point == id).count() as u64
        );
    }
}

#[test]
fn compare_measures_each_slice_size_in_turn() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Two sizes on a 2-core machine: 1 core and 2 cores, overlapping on
    // core 0 (`shared`); compare measures one size at a time.
    let gateway = gateway_up(
        "compare",
        &format!(
            "[[model]]\nname = \"smollm2-135m\"\npath = \"{}\"\nslices = [\"cpu:0\", \"cpu:0-1\"]\nshared = true\n",
            mig_testkit::smollm2().display()
        ),
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let stdout = run_ok(&[
        "compare",
        "--target",
        &gateway.address,
        "--model",
        "smollm2-135m",
        "--concurrency",
        "1,2",
        "--requests",
        "4",
        "--warmup",
        "0s",
        "--max-tokens",
        "8",
        "--ignore-eos",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(stdout.contains("Throughput by slice size"), "{stdout}");

    let report = read_report(dir.path());
    assert_eq!(report["scenario"], "compare");
    assert_eq!(report["command"][1], "compare");
    assert_eq!(
        report["inventory"][0]["models"][0]["workers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // One row per profile at each load point, smallest first.
    let rows = report["results"].as_array().unwrap();
    let mut by_load: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows {
        by_load
            .entry(r["load"].to_string())
            .or_default()
            .push(r["profile"].as_str().unwrap().to_string());
        assert!(r["output_tokens_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["errors"], 0);
    }
    assert_eq!(by_load.len(), 2);
    for profiles in by_load.values() {
        assert_eq!(profiles, &["cpu-1c", "cpu-2c"]);
    }
    // Ratios against the smallest slice at the same load, from the points.
    let points = report["points"].as_array().unwrap();
    let tps = |r: &serde_json::Value| {
        points[r["point"].as_u64().unwrap() as usize]["summary"]["output_tokens_per_s"]
            .as_f64()
            .unwrap()
    };
    let ratio = rows[1]["ratio_to_smallest"].as_f64().unwrap();
    assert!(
        (ratio - tps(&rows[1]) / tps(&rows[0])).abs() < 1e-9,
        "{ratio}"
    );
    assert_eq!(rows[1]["size_ratio"].as_f64(), Some(2.0));
    let per_unit = rows[1]["tokens_per_s_per_unit"].as_f64().unwrap();
    assert!((per_unit - tps(&rows[1]) / 2.0).abs() < 1e-9, "{per_unit}");

    // Each request ran on the profile its point asked for, to the token.
    let reqs = requests(dir.path());
    assert_eq!(reqs.len(), 4 * 4);
    for r in &reqs {
        assert_eq!(r.status, "OK");
        assert_eq!(
            r.output_tokens, 8,
            "--ignore-eos gives exactly --max-tokens"
        );
        assert_eq!(r.profile, points[r.point]["group"].as_str().unwrap());
    }
    assert_tokens_add_up(&report, &reqs);
    assert_charts(
        dir.path(),
        &[
            "compare-throughput.svg",
            "compare-latency-1.svg",
            "compare-latency-2.svg",
        ],
    );
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("### Throughput by slice size") && md.contains("compare-throughput.svg"));
    let summary = std::fs::read_to_string(dir.path().join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 1 + 4, "{summary}");
}

#[test]
fn isolation_reports_the_victims_loss_for_pinned_and_shared_placements() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let model = mig_testkit::smollm2().display().to_string();
    let entry = |name: &str, slice: &str, shared: bool| {
        format!(
            "[[model]]\nname = \"{name}\"\npath = \"{model}\"\nslices = [\"{slice}\"]\nthreads = 1\n{}",
            if shared { "shared = true\n" } else { "" }
        )
    };
    let gateway = gateway_up(
        "isolation",
        &[
            entry("victim", "cpu:0", false),
            entry("noisy", "cpu:1", false),
            entry("victim-shared", "cpu:0", true),
            entry("noisy-shared", "cpu:0", true),
        ]
        .join("\n"),
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    run_ok(&[
        "isolation",
        "--target",
        &gateway.address,
        "--model",
        "victim",
        "--aggressor",
        "noisy",
        "--model",
        "victim-shared",
        "--aggressor",
        "noisy-shared",
        "--duration",
        "3s",
        "--warmup",
        "1s",
        "--max-tokens",
        "16",
        "--ignore-eos",
        "--aggressor-concurrency",
        "2",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    let report = read_report(dir.path());
    let rows = report["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (pinned, shared) = (&rows[0], &rows[1]);
    assert_eq!(pinned["placement"], "pinned");
    assert_eq!(pinned["victim_slices"][0], "cpu:0");
    assert_eq!(pinned["aggressor_slices"][0], "cpu:1");
    assert_eq!(shared["placement"], "shared");
    for r in rows {
        for phase in ["alone", "with_aggressor"] {
            assert!(
                r[phase]["output_tokens_per_s"].as_f64().unwrap() > 0.0,
                "{r}"
            );
        }
        assert!(r["aggressor_tokens_per_s"].as_f64().unwrap() > 0.0, "{r}");
    }
    // Two busy processes on one core: the victim gets about half of it.
    assert!(
        shared["throughput_change_pct"].as_f64().unwrap() < 0.0,
        "sharing a core with a flood cost the victim nothing: {shared}"
    );

    // The victim's requests all succeeded; the aggressor's cut off at the
    // end of its flood are the only ones allowed another status.
    let reqs = requests(dir.path());
    let points = report["points"].as_array().unwrap();
    let groups: BTreeSet<&str> = points
        .iter()
        .map(|p| p["group"].as_str().unwrap())
        .collect();
    assert!(
        groups.contains("pinned alone") && groups.contains("shared with aggressor"),
        "{groups:?}"
    );
    for r in &reqs {
        let group = points[r.point]["group"].as_str().unwrap();
        let flood = group.ends_with(" aggressor") && !group.ends_with("with aggressor");
        if flood {
            assert!(r.status == "OK" || r.status == "CANCELLED", "{}", r.status);
        } else {
            assert_eq!(r.status, "OK", "victim request in {group}");
        }
    }
    assert_charts(
        dir.path(),
        &["isolation-throughput.svg", "isolation-latency.svg"],
    );
}

#[test]
fn sweep_measures_gateway_overhead_with_the_identity_model_and_open_loops() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The worker takes calls with this token only (`up` hands it over);
    // the load tester needs it to measure the worker straight.
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("worker-token");
    std::fs::write(&token_file, "sweep-test-worker-token-0123456789").unwrap();
    let token_file = token_file.to_str().unwrap();
    let gateway = gateway_up(
        "sweep",
        "[[model]]\nname = \"identity\"\nidentity = true\nslices = [\"cpu:0\"]\n",
        &["--worker-token-file", token_file],
    );
    let worker = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let target = Target::connect(&gateway.address, TargetKind::Auto, Default::default())
            .await
            .unwrap();
        assert_eq!(target.kind, TargetKind::Gateway);
        let inventory = target.inventory().await.unwrap();
        let w = &inventory.model("identity").unwrap().workers[0];
        assert!(w.engine.contains("identity"), "{w:?}");
        w.address.clone()
    });
    // Without the token the worker refuses, and the tool says what it needs.
    let refused = loadtest(&[
        "sweep",
        "--target",
        &worker,
        "--model",
        "identity",
        "--requests",
        "1",
    ]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("UNAUTHENTICATED") && err.contains("--worker-token-file"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let targets = format!("{},{worker}", gateway.address);
    let stdout = run_ok(&[
        "sweep",
        "--worker-token-file",
        token_file,
        "--target",
        &targets,
        "--model",
        "identity",
        "--concurrency",
        "1,4",
        "--requests",
        "30",
        "--warmup",
        "0s",
        "--max-tokens",
        "32",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(stdout.contains("Against the first target"), "{stdout}");
    let report = read_report(dir.path());
    assert_eq!(report["inventory"][1]["kind"], "worker");
    let overhead = report["results"]["overhead"].as_array().unwrap();
    assert_eq!(overhead.len(), 2, "one row per load point");
    assert!(overhead[0]["target"]
        .as_str()
        .unwrap()
        .starts_with("worker"));
    let reqs = requests(dir.path());
    assert_eq!(reqs.len(), 2 * 2 * 30);
    // The identity model echoes and never ends early.
    assert!(reqs
        .iter()
        .all(|r| r.status == "OK" && r.output_tokens == 32));
    assert_tokens_add_up(&report, &reqs);
    assert_charts(dir.path(), &["sweep-ttft.svg", "sweep-itl.svg"]);

    // Open loop: Poisson arrivals at a fixed rate, for a duration; through
    // the gateway, then straight to the worker it lists (`--direct`).
    let dir = tempfile::tempdir().unwrap();
    run_ok(&[
        "sweep",
        "--worker-token-file",
        token_file,
        "--target",
        &gateway.address,
        "--direct",
        "--model",
        "identity",
        "--rate",
        "40",
        "--duration",
        "2s",
        "--warmup",
        "0s",
        "--max-tokens",
        "8",
        "--seed",
        "3",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    let report = read_report(dir.path());
    let points = report["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    // The worker is the baseline the gateway is compared with.
    for (point, kind) in points.iter().zip(["worker", "gateway"]) {
        assert!(
            point["group"].as_str().unwrap().starts_with(kind),
            "{point}"
        );
    }
    for point in points {
        assert_eq!(point["load"]["model"], "open");
        let n = point["summary"]["requests"].as_u64().unwrap();
        // 40/s for 2 s: 80 expected; Poisson keeps it well inside 40..130.
        assert!((40..130).contains(&n), "{n} arrivals");
        assert_eq!(point["summary"]["ok"].as_u64(), Some(n));
    }

    // A model the gateway does not serve: a clear error, exit code 2.
    let out = loadtest(&["compare", "--target", &gateway.address, "--model", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("model `nope` is not served") && stderr.contains("identity"),
        "{stderr}"
    );
}
