//! The tenant's alert rules, with the specification's thresholds. Every expression names the
//! tenant's namespace (metrics the tenant's pods expose, labelled by the scrape) or its
//! `tenant` label (metrics the operator exposes about it), so one Prometheus can hold every
//! tenant's rules side by side. The thresholds are tested with `promtool test rules` against
//! operator/tests/alerts/.

use std::collections::BTreeMap;
use std::time::Duration;

use dfr_crds::{Environment, SynchronousMode};
use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::resources::{PrometheusRuleSpec, Rule, RuleGroup};
use super::schedule;
use crate::children::{api, patroni, quantity};
use crate::settings::Settings;
use crate::tenant::Tenant;

const DAY: u64 = 86_400;

/// CPU use of a container as a fraction of its request (what the HPA's utilisation means).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuThresholds {
    pub warning: f64,
    pub critical: f64,
}

/// The specification gives 70 % / 85 % for prod and 80 % / 90 % for staging. dr stands in for
/// prod and is held to prod's; dev and test are held to staging's, the looser pair.
pub fn cpu_thresholds(environment: Environment) -> CpuThresholds {
    match environment {
        Environment::Prod | Environment::Dr => CpuThresholds {
            warning: 0.70,
            critical: 0.85,
        },
        Environment::Staging | Environment::Dev | Environment::Test => CpuThresholds {
            warning: 0.80,
            critical: 0.90,
        },
    }
}

/// API p95 latency, seconds.
pub const LATENCY_WARNING: f64 = 0.6;
pub const LATENCY_CRITICAL: f64 = 0.8;
/// Share of API responses that are 5xx, over 5 minutes.
pub const ERROR_RATIO: f64 = 0.05;
/// Replication lag, seconds.
pub const LAG_WARNING: f64 = 1.0;
pub const LAG_CRITICAL: f64 = 10.0;
pub const CERTIFICATE_WARNING_DAYS: u64 = 30;
pub const CERTIFICATE_CRITICAL_DAYS: u64 = 7;
pub const PII_KEY_WARNING_DAYS: u64 = 75;
pub const PII_KEY_CRITICAL_DAYS: u64 = 90;
/// Failed sign-ins and rejected tokens in 5 minutes. A person who mistypes is locked out after
/// five tries; thirty in five minutes is guessing, or a client with a broken credential.
pub const AUTH_FAILURE_BURST: u32 = 30;
/// Added to the longest gap of the backup schedule: a run takes time, waits for a concurrent
/// one and retries.
pub const BACKUP_GRACE: Duration = Duration::from_secs(3 * 3600);
/// Assumed when the schedule uses what [`schedule::longest_gap`] cannot read.
pub const BACKUP_FALLBACK_GAP: Duration = Duration::from_secs(7 * DAY);

/// Names of the recording rules; dashboards read them too.
pub const API_CPU: &str = "dfr:api_cpu_usage:ratio_request";
pub const DATABASE_CPU: &str = "dfr:postgres_cpu_usage:ratio_request";
pub const API_P95: &str = "dfr:api_request_duration_seconds:p95";
pub const API_ERRORS: &str = "dfr:api_5xx_responses:ratio";
pub const REPLICATION_LAG: &str = "dfr:patroni_replication_lag:seconds";

/// Every alert the builder can make, for tests and the README.
pub const ALERTS: &[&str] = &[
    "DfrApiCpuHigh",
    "DfrDatabaseCpuHigh",
    "DfrApiLatencyHigh",
    "DfrApiErrorRateHigh",
    "DfrReplicationLagHigh",
    "DfrPatroniMembersMissing",
    "DfrNoSynchronousStandby",
    "DfrScrapeTargetDown",
    "DfrCertificateExpiring",
    "DfrBackupTooOld",
    "DfrPiiKeyOld",
    "DfrAuthFailureBurst",
    "DfrReconcileFailing",
];

/// The rule groups of one tenant, in the rules-file shape (`groups:`).
pub fn desired_rule_spec(tenant: &Tenant, settings: &Settings) -> PrometheusRuleSpec {
    let ns = tenant.namespace.as_str();
    let t = tenant.name.as_str();
    let sel = |extra: &str| {
        if extra.is_empty() {
            format!("{{namespace=\"{ns}\"}}")
        } else {
            format!("{{namespace=\"{ns}\",{extra}}}")
        }
    };
    let tenant_sel = format!("{{tenant=\"{t}\"}}");
    let cpu = cpu_thresholds(tenant.spec.environment);
    let mut rules = Vec::new();

    // Recording rules first: a group runs its rules in order, so the alerts below read this
    // evaluation's values.
    if let Some(request) = api_cpu_request(tenant, settings) {
        rules.push(record(
            API_CPU,
            format!(
                "avg(rate(container_cpu_usage_seconds_total{}[5m])) / {request}",
                sel("container=\"api\"")
            ),
        ));
    }
    if let Some(request) = postgres_cpu_request(tenant, settings) {
        rules.push(record(
            DATABASE_CPU,
            format!(
                "avg(rate(container_cpu_usage_seconds_total{}[5m])) / {request}",
                sel("container=\"postgres\"")
            ),
        ));
    }
    rules.push(record(
        API_P95,
        format!(
            "histogram_quantile(0.95, sum by (le) (rate(dfr_http_request_duration_seconds_bucket{}[5m])))",
            sel("route!=\"/metrics\"")
        ),
    ));
    // A counter with no 5xx series yet means none happened: 0, not "no data" (the dashboard's
    // panel and the alert's history would otherwise be blank on a healthy tenant).
    rules.push(record(
        API_ERRORS,
        format!(
            "(sum(rate(dfr_http_requests_total{}[5m])) or vector(0)) / sum(rate(dfr_http_requests_total{}[5m]))",
            sel("status=~\"5..\""),
            sel("")
        ),
    ));
    rules.push(record(REPLICATION_LAG, replication_lag(ns)));

    let own = sel("");
    for (name, metric, what) in [
        ("DfrApiCpuHigh", API_CPU, "API"),
        ("DfrDatabaseCpuHigh", DATABASE_CPU, "PostgreSQL"),
    ] {
        if !rules.iter().any(|r| r.record.as_deref() == Some(metric)) {
            continue;
        }
        for (severity, threshold) in [("warning", cpu.warning), ("critical", cpu.critical)] {
            rules.push(alert(
                name,
                format!("{metric}{own} > {threshold}"),
                "5m",
                severity,
                format!("{what} CPU above {:.0}% of its request", threshold * 100.0),
                format!(
                    "The {what} containers of {t} used {{{{ $value | humanizePercentage }}}} of their CPU request on average for 5 minutes."
                ),
            ));
        }
    }
    for (severity, threshold) in [("warning", LATENCY_WARNING), ("critical", LATENCY_CRITICAL)] {
        rules.push(alert(
            "DfrApiLatencyHigh",
            format!("{API_P95}{own} > {threshold}"),
            "5m",
            severity,
            format!("API p95 latency above {:.0} ms", threshold * 1000.0),
            format!("The API of {t} answered 95% of requests within {{{{ $value | humanizeDuration }}}} or more for 5 minutes."),
        ));
    }
    rules.push(alert(
        "DfrApiErrorRateHigh",
        format!("{API_ERRORS}{own} > {ERROR_RATIO}"),
        "5m",
        "critical",
        format!("More than {:.0}% of API responses are 5xx", ERROR_RATIO * 100.0),
        format!("{{{{ $value | humanizePercentage }}}} of the API responses of {t} were server errors for 5 minutes."),
    ));
    for (severity, threshold, duration) in [
        ("warning", LAG_WARNING, "2m"),
        // A replica that has replayed nothing for a while reads as far behind for one scrape
        // when the next write arrives (see replication_lag); a minute hides that.
        ("critical", LAG_CRITICAL, "1m"),
    ] {
        rules.push(alert(
            "DfrReplicationLagHigh",
            format!("{REPLICATION_LAG}{own} > {threshold}"),
            duration,
            severity,
            format!("Replication lag above {threshold} s"),
            format!("Replica {{{{ $labels.pod }}}} of {t} is {{{{ $value | humanizeDuration }}}} behind the leader."),
        ));
    }
    if tenant.spec.postgres.instances >= 2 {
        rules.push(alert(
            "DfrPatroniMembersMissing",
            format!("(count(patroni_postgres_running{own} == 1) or vector(0)) < 2"),
            "1m",
            "critical",
            "Fewer than two Patroni members are running".into(),
            format!("{t} has {{{{ $value }}}} running PostgreSQL members of {}: a failure now would stop the registry.", tenant.spec.postgres.instances),
        ));
    }
    if tenant.spec.postgres.synchronous_mode != SynchronousMode::Off {
        rules.push(alert(
            "DfrNoSynchronousStandby",
            format!("(max(patroni_sync_standby{own}) or vector(0)) < 1"),
            "1m",
            "critical",
            "No synchronous standby".into(),
            format!("{t} runs with synchronousMode on but no member is a synchronous standby: acknowledged writes are on one member only, or writes wait (strict)."),
        ));
    }
    rules.push(alert(
        "DfrScrapeTargetDown",
        format!("up{own} == 0"),
        "5m",
        "warning",
        "A metrics endpoint of the tenant is down".into(),
        format!("Prometheus cannot scrape {{{{ $labels.pod }}}} ({{{{ $labels.job }}}}) of {t}."),
    ));
    for (severity, days) in [
        ("warning", CERTIFICATE_WARNING_DAYS),
        ("critical", CERTIFICATE_CRITICAL_DAYS),
    ] {
        rules.push(alert(
            "DfrCertificateExpiring",
            format!(
                "dfr_certificate_expiry_timestamp_seconds{tenant_sel} - time() < {}",
                days * DAY
            ),
            "1h",
            severity,
            format!("A certificate expires within {days} days"),
            format!("The earliest certificate of {t} expires in {{{{ $value | humanizeDuration }}}}; the operator renews it spec.tls.renewBefore ahead."),
        ));
    }
    if let Some(backup) = &tenant.spec.backup {
        let allowed =
            schedule::longest_gap(&backup.schedule).unwrap_or(BACKUP_FALLBACK_GAP) + BACKUP_GRACE;
        rules.push(alert(
            "DfrBackupTooOld",
            format!(
                "time() - dfr_backup_last_success_timestamp_seconds{tenant_sel} > {}",
                allowed.as_secs()
            ),
            "15m",
            "critical",
            "The last successful backup is older than the schedule allows".into(),
            format!(
                "The last successful backup of {t} finished {{{{ $value | humanizeDuration }}}} ago; the schedule '{}' allows {} h.",
                backup.schedule,
                allowed.as_secs() / 3600
            ),
        ));
    }
    for (severity, days) in [
        ("warning", PII_KEY_WARNING_DAYS),
        ("critical", PII_KEY_CRITICAL_DAYS),
    ] {
        rules.push(alert(
            "DfrPiiKeyOld",
            format!(
                "time() - dfr_pii_key_activated_timestamp_seconds{tenant_sel} > {}",
                days * DAY
            ),
            "1h",
            severity,
            format!("The PII encryption key is older than {days} days"),
            format!("The active PII key of {t} has been in use for {{{{ $value | humanizeDuration }}}}: rotate it."),
        ));
    }
    rules.push(alert(
        "DfrAuthFailureBurst",
        format!(
            "(sum(increase(dfr_http_requests_total{}[5m])) or vector(0)) + (sum(increase(dfr_http_requests_total{}[5m])) or vector(0)) > {AUTH_FAILURE_BURST}",
            sel("status=\"401\""),
            sel("route=\"/oauth/token\",status=\"400\"")
        ),
        "",
        "warning",
        "A burst of authentication failures".into(),
        format!("{{{{ $value }}}} sign-ins were refused or bearer tokens rejected at the API of {t} in 5 minutes."),
    ));
    rules.push(alert(
        "DfrReconcileFailing",
        format!("dfr_operator_tenant_reconcile_failures{tenant_sel} > 0"),
        "15m",
        "warning",
        "The operator cannot reconcile the tenant".into(),
        format!("Reconciles of {t} have failed {{{{ $value }}}} times in a row for 15 minutes; see the DfrCountry's Degraded condition and Events."),
    ));

    // Tenant and namespace on every result, so routing in Alertmanager can tell tenants apart
    // even where an expression aggregates them away.
    for rule in &mut rules {
        rule.labels.insert("tenant".into(), t.to_string());
        rule.labels.insert("namespace".into(), ns.to_string());
    }
    PrometheusRuleSpec {
        groups: vec![RuleGroup {
            name: format!("dfr-{t}"),
            interval: None,
            rules,
        }],
    }
}

/// Per replica, seconds between the newest transaction it replayed and the moment it was
/// scraped, while it is behind the leader's WAL position; 0 when it has caught up. Patroni
/// reports no lag in seconds, only positions and the replay timestamp; an idle leader writes no
/// transactions, so the replay timestamp alone would grow without any lag. The scrape's own
/// timestamp (not the evaluation time) keeps the scrape interval out of the figure.
fn replication_lag(ns: &str) -> String {
    let s = format!("{{namespace=\"{ns}\"}}");
    format!(
        "(timestamp(patroni_xlog_replayed_timestamp{s}) - patroni_xlog_replayed_timestamp{s}) \
         and on(namespace, pod) (patroni_xlog_replayed_timestamp{s} > 0) \
         and on(namespace, pod) (patroni_replica{s} == 1) \
         and on(namespace, pod) (patroni_xlog_replayed_location{s} < scalar(max(patroni_xlog_location{s}))) \
         or on(namespace, pod) (0 * (patroni_replica{s} == 1))"
    )
}

fn record(name: &str, expr: String) -> Rule {
    Rule {
        record: Some(name.into()),
        expr,
        ..Rule::default()
    }
}

fn alert(
    name: &str,
    expr: String,
    for_: &str,
    severity: &str,
    summary: String,
    description: String,
) -> Rule {
    Rule {
        alert: Some(name.into()),
        expr,
        for_: (!for_.is_empty()).then(|| for_.to_string()),
        labels: BTreeMap::from([("severity".to_string(), severity.to_string())]),
        annotations: BTreeMap::from([
            ("summary".to_string(), summary),
            ("description".to_string(), description),
        ]),
        ..Rule::default()
    }
}

/// The CPU request, in cores, of the named container of a pod spec the builders make.
fn cpu_request(spec: Option<&PodSpec>, container: &str) -> Option<f64> {
    spec?
        .containers
        .iter()
        .find(|c: &&Container| c.name == container)?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("cpu")
        .and_then(|q| quantity::parse(&q.0))
        .filter(|cores| *cores > 0.0)
}

fn api_cpu_request(tenant: &Tenant, settings: &Settings) -> Option<f64> {
    let deployment = api::desired_deployment(tenant, settings);
    cpu_request(deployment.spec?.template.spec.as_ref(), "api")
}

fn postgres_cpu_request(tenant: &Tenant, settings: &Settings) -> Option<f64> {
    let statefulset = patroni::desired_statefulset(tenant, settings);
    cpu_request(statefulset.spec?.template.spec.as_ref(), "postgres")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::tests::sample;

    fn alerts(tenant: &Tenant) -> Vec<Rule> {
        desired_rule_spec(tenant, &Settings::default()).groups[0]
            .rules
            .iter()
            .filter(|r| r.alert.is_some())
            .cloned()
            .collect()
    }

    #[test]
    fn cpu_thresholds_follow_the_environment() {
        assert_eq!(cpu_thresholds(Environment::Prod).warning, 0.70);
        assert_eq!(cpu_thresholds(Environment::Prod).critical, 0.85);
        assert_eq!(cpu_thresholds(Environment::Staging).warning, 0.80);
        assert_eq!(cpu_thresholds(Environment::Staging).critical, 0.90);
        let prod = alerts(&sample("ton-prod.yaml"));
        assert!(
            prod.iter()
                .any(|r| r.expr == format!("{API_CPU}{{namespace=\"dfr-ton-prod\"}} > 0.7"))
        );
    }

    #[test]
    fn the_cpu_rule_divides_by_the_request_the_deployment_asks_for() {
        // ton-prod asks 250m for the API and 500m for PostgreSQL.
        let spec = desired_rule_spec(&sample("ton-prod.yaml"), &Settings::default());
        let api = spec.groups[0]
            .rules
            .iter()
            .find(|r| r.record.as_deref() == Some(API_CPU))
            .unwrap();
        assert!(api.expr.ends_with("/ 0.25"), "{}", api.expr);
        let db = spec.groups[0]
            .rules
            .iter()
            .find(|r| r.record.as_deref() == Some(DATABASE_CPU))
            .unwrap();
        assert!(db.expr.ends_with("/ 0.5"), "{}", db.expr);
    }

    #[test]
    fn member_and_standby_rules_only_where_they_can_hold() {
        let dev = sample("ton-dev.yaml");
        let names: Vec<String> = alerts(&dev).into_iter().filter_map(|r| r.alert).collect();
        let want_members = dev.spec.postgres.instances >= 2;
        assert_eq!(
            names.contains(&"DfrPatroniMembersMissing".to_string()),
            want_members
        );
        let want_sync = dev.spec.postgres.synchronous_mode != SynchronousMode::Off;
        assert_eq!(
            names.contains(&"DfrNoSynchronousStandby".to_string()),
            want_sync
        );
        let prod: Vec<String> = alerts(&sample("ton-prod.yaml"))
            .into_iter()
            .filter_map(|r| r.alert)
            .collect();
        for name in ALERTS {
            assert!(
                prod.contains(&name.to_string()),
                "{name} missing for ton-prod"
            );
        }
    }

    #[test]
    fn every_rule_names_the_tenant() {
        for rule in
            &desired_rule_spec(&sample("ton-prod.yaml"), &Settings::default()).groups[0].rules
        {
            assert_eq!(rule.labels["tenant"], "ton-prod");
            assert!(
                rule.expr.contains("namespace=\"dfr-ton-prod\"")
                    || rule.expr.contains("tenant=\"ton-prod\""),
                "{}",
                rule.expr
            );
        }
    }

    #[test]
    fn the_backup_age_allowed_follows_the_schedule() {
        // ton-prod backs up daily: 24 h plus the grace.
        let rule = alerts(&sample("ton-prod.yaml"))
            .into_iter()
            .find(|r| r.alert.as_deref() == Some("DfrBackupTooOld"))
            .unwrap();
        assert!(
            rule.expr
                .ends_with(&format!("> {}", 24 * 3600 + BACKUP_GRACE.as_secs())),
            "{}",
            rule.expr
        );
    }
}
