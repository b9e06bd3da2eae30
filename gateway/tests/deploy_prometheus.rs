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
