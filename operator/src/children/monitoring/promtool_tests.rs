//! The rules and dashboard queries, checked by Prometheus's own `promtool` (Debian's
//! `prometheus` package; scripts/prereqs installs it). The alert thresholds are tested with
//! `promtool test rules` on operator/tests/alerts/<sample>.test.yaml, each run against the
//! rules built for config/samples/<sample>.yaml. Without promtool these tests say so loudly
//! and pass, so that the fast lane works on a machine without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::catalog::{METRICS, metric_names};
use super::resources::{PrometheusRuleSpec, Rule, RuleGroup};
use super::{dashboards, rules};
use crate::children::tests::sample;
use crate::settings::Settings;

const PROMTOOL: &str = "/usr/bin/promtool";

fn promtool() -> Option<&'static str> {
    if Path::new(PROMTOOL).exists() {
        return Some(PROMTOOL);
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: {PROMTOOL} is absent, so the alert rules and dashboard queries were NOT checked.\n\
         !!!!!!!! Install Debian's `prometheus` package (scripts/prereqs does) and run the tests again.\n"
    );
    None
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dfr-promtool-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(promtool: &str, args: &[&str], dir: &Path) -> String {
    let output = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The test files under operator/tests/alerts with the sample each is for:
/// `<sample>.test.yaml` or `<sample>.<part>.test.yaml`.
fn test_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(root().join("tests/alerts"))
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let stem = name.strip_suffix(".test.yaml")?;
            let sample = stem.split('.').next().unwrap_or(stem).to_string();
            Some((sample, name))
        })
        .collect();
    files.sort();
    files
}

fn rule_spec(sample_name: &str) -> PrometheusRuleSpec {
    rules::desired_rule_spec(
        &sample(&format!("{sample_name}.yaml")),
        &Settings::default(),
    )
}

#[test]
fn the_rules_files_pass_promtool_check() {
    let Some(promtool) = promtool() else { return };
    let dir = scratch("check");
    for sample_name in ["ton-prod", "ton-dev", "wsm-staging", "vut-test", "slb-dev"] {
        let file = format!("{sample_name}.rules.yaml");
        std::fs::write(
            dir.join(&file),
            serde_yaml::to_string(&rule_spec(sample_name)).unwrap(),
        )
        .unwrap();
        let out = run(promtool, &["check", "rules", &file], &dir);
        assert!(out.contains("SUCCESS"), "{out}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// promtool compares an alert's annotations exactly, and ours are prose with templated values;
/// the thresholds are what the unit tests are about, so they run on the rules without them
/// (`check rules` above parses the templates).
#[test]
fn every_alert_fires_at_its_threshold_and_stays_quiet_below() {
    let Some(promtool) = promtool() else { return };
    let files = test_files();
    let samples: BTreeSet<&str> = files.iter().map(|(sample, _)| sample.as_str()).collect();
    assert!(
        samples.contains("ton-prod") && samples.contains("wsm-staging"),
        "{samples:?}"
    );
    let dir = scratch("test");
    let mut tested_alerts = BTreeSet::new();
    for sample_name in samples {
        let mut spec = rule_spec(sample_name);
        for rule in spec.groups.iter_mut().flat_map(|g| g.rules.iter_mut()) {
            rule.annotations.clear();
        }
        std::fs::write(
            dir.join(format!("{sample_name}.rules.yaml")),
            serde_yaml::to_string(&spec).unwrap(),
        )
        .unwrap();
        for (_, test_file) in files.iter().filter(|(sample, _)| sample == sample_name) {
            let text =
                std::fs::read_to_string(root().join("tests/alerts").join(test_file)).unwrap();
            for alert in rules::ALERTS {
                if text.contains(&format!("alertname: {alert}")) {
                    tested_alerts.insert(*alert);
                }
            }
            std::fs::write(dir.join(test_file), text).unwrap();
            let out = run(promtool, &["test", "rules", test_file], &dir);
            assert!(out.contains("SUCCESS"), "{test_file}: {out}");
        }
    }
    let untested: Vec<&&str> = rules::ALERTS
        .iter()
        .filter(|a| !tested_alerts.contains(*a))
        .collect();
    assert!(
        untested.is_empty(),
        "alerts without a promtool test: {untested:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn known_names() -> BTreeSet<String> {
    let mut known: BTreeSet<String> = METRICS.iter().map(|(name, _)| name.to_string()).collect();
    for rule in rule_spec("ton-prod").groups[0].rules.iter() {
        if let Some(record) = &rule.record {
            known.insert(record.clone());
        }
    }
    known
}

#[test]
fn rules_read_only_metrics_that_exist() {
    let known = known_names();
    for sample_name in ["ton-prod", "wsm-staging", "ton-dev"] {
        for rule in &rule_spec(sample_name).groups[0].rules {
            for name in metric_names(&rule.expr) {
                assert!(
                    known.contains(&name),
                    "{name} in {:?} is no known metric",
                    rule.expr
                );
            }
        }
    }
}

#[test]
fn every_dashboard_query_parses_and_reads_metrics_that_exist() {
    let tenant = sample("ton-prod.yaml");
    let queries = dashboards::queries(&tenant, &Settings::default());
    assert!(queries.len() > 20, "{}", queries.len());
    let known = known_names();
    for query in &queries {
        let names = metric_names(query);
        assert!(!names.is_empty(), "{query} reads no metric");
        for name in names {
            assert!(
                known.contains(&name),
                "{name} in {query:?} is no known metric"
            );
        }
    }
    let Some(promtool) = promtool() else { return };
    // promtool has no command that parses a bare query; a recording rule per query is checked
    // by the same parser Prometheus uses.
    let spec = PrometheusRuleSpec {
        groups: vec![RuleGroup {
            name: "dashboard-queries".into(),
            interval: None,
            rules: queries
                .iter()
                .enumerate()
                .map(|(index, query)| Rule {
                    record: Some(format!("dashboard_query_{index}")),
                    expr: query.clone(),
                    ..Rule::default()
                })
                .collect(),
        }],
    };
    let dir = scratch("dashboards");
    std::fs::write(
        dir.join("queries.yaml"),
        serde_yaml::to_string(&spec).unwrap(),
    )
    .unwrap();
    let out = run(promtool, &["check", "rules", "queries.yaml"], &dir);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
