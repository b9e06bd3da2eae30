//! The files under `deploy/prometheus` and `deploy/grafana`: promtool accepts
//! the scrape config and the rules, and every metric or rule name the rules
//! and the dashboard use is one the exporters emit (their `NAMES`, which the
//! metrics tests find in real expositions) or a recording rule defined here.

use std::collections::BTreeSet;
use std::path::PathBuf;

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn promtool(args: &[&str]) {
    mig_testkit::promtool::run(&deploy().join("prometheus"), args);
}

/// Names of the recording rules (`- record: NAME`).
fn recorded() -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(deploy().join("prometheus/rules/mig-recording.yml")).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("- record:"))
        .map(|n| n.trim().to_string())
        .collect()
}

/// Every series name an exporter emits, histogram series included.
fn emitted() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for name in mig_gateway::metrics::NAMES
        .iter()
        .chain(mig_worker::metrics::NAMES)
    {
        names.insert(name.to_string());
        for suffix in ["_bucket", "_sum", "_count"] {
            names.insert(format!("{name}{suffix}"));
        }
    }
    names
}

/// The metric and rule names a PromQL expression refers to: identifiers
/// that start with `mig_` or contain `:mig_` (the project's naming).
fn names_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("mig_") || t.contains(":mig_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn promtool_accepts_the_scrape_config_and_rules() {
    promtool(&["check", "config", "prometheus.yml"]);
    promtool(&[
        "check",
        "rules",
        "rules/mig-recording.yml",
        "rules/mig-alerts.yml",
    ]);
}

#[test]
fn rules_and_dashboard_use_only_emitted_names() {
    let known: BTreeSet<String> = emitted().union(&recorded()).cloned().collect();
    let mut checked = 0;
    for file in ["rules/mig-recording.yml", "rules/mig-alerts.yml"] {
        let text = std::fs::read_to_string(deploy().join("prometheus").join(file)).unwrap();
        for name in names_in(&text) {
            assert!(
                known.contains(&name),
                "{file} uses `{name}`, which nothing emits"
            );
            checked += 1;
        }
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("grafana/mig-gateway.json")).unwrap(),
    )
    .expect("the dashboard is valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            let names = names_in(expr);
            assert!(!names.is_empty(), "{expr} names no mig metric");
            for name in names {
                assert!(
                    known.contains(&name),
                    "panel {} uses `{name}`, which nothing emits",
                    panel["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "{checked} names checked");
}

/// The `mig-dcgm` recording rules against a synthetic dcgm-exporter
/// exposition (`deploy/prometheus/tests/mig-dcgm.test.yml`): tokens per
/// second per unit of engine activity, engine activity and framebuffer use
/// per slice, joined on `UUID`, `GPU_I_ID` and `Hostname`.
#[test]
fn promtool_joins_slices_with_dcgm_exporter() {
    promtool(&["test", "rules", "tests/mig-dcgm.test.yml"]);
}

/// The label names of each `- series:` of the rule test whose name starts
/// with `prefix`.
fn fed_series(prefix: &str) -> Vec<(String, Vec<String>)> {
    let text =
        std::fs::read_to_string(deploy().join("prometheus/tests/mig-dcgm.test.yml")).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("- series: '"))
        .filter(|s| s.starts_with(prefix))
        .map(|s| {
            let (name, labels) = s.split_once('{').expect("labels");
            let keys = labels
                .split(',')
                .map(|pair| pair.split_once('=').expect("a label").0.to_string())
                .collect();
            (name.to_string(), keys)
        })
        .collect()
}

#[test]
fn the_rule_test_feeds_dcgm_exporters_labels_and_the_gateways() {
    // The gateway's series in the test are labelled as the gateway labels
    // them: the slice, dcgm-exporter's labels, then the scrape's.
    let mut slice: Vec<String> = ["model", "slice", "profile", "gpu"]
        .iter()
        .chain(&mig_gateway::metrics::DCGM_LABELS)
        .map(|k| k.to_string())
        .collect();
    slice.extend(["instance".to_string(), "job".to_string()]);
    let gateway = fed_series("mig_gateway_");
    assert!(gateway.len() >= 4);
    for (name, keys) in &gateway {
        assert_eq!(keys, &slice, "{name}");
    }
    // dcgm-exporter's: its own label names for a MIG instance, the node
    // spelled `Hostname` (to 4.8.2) or `hostname` (4.8.3 on).
    let dcgm = fed_series("DCGM_FI_");
    let fed: BTreeSet<String> = dcgm.iter().map(|(name, _)| name.clone()).collect();
    for name in [
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
    ] {
        assert!(fed.contains(name), "{name} is not fed");
    }
    for (name, keys) in &dcgm {
        for key in [
            "gpu",
            "UUID",
            "device",
            "modelName",
            "GPU_I_PROFILE",
            "GPU_I_ID",
        ] {
            assert!(keys.iter().any(|k| k == key), "{name} lacks {key}");
        }
        assert!(
            keys.iter().any(|k| k == "Hostname" || k == "hostname"),
            "{name} lacks the node"
        );
    }
    // Every DCGM series the rules and the dashboard use is one the test feeds.
    let mut used = Vec::new();
    let rules =
        std::fs::read_to_string(deploy().join("prometheus/rules/mig-recording.yml")).unwrap();
    let dashboard = std::fs::read_to_string(deploy().join("grafana/mig-gateway.json")).unwrap();
    for text in [rules, dashboard] {
        used.extend(
            text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|t| t.starts_with("DCGM_FI_"))
                .map(str::to_string),
        );
    }
    assert!(!used.is_empty());
    for name in used {
        assert!(fed.contains(&name), "`{name}` is used but not tested");
    }
}
