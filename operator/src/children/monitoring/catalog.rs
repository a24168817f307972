//! The metric names the rules and dashboards may use, and where each comes from. A test holds
//! every expression the builders make to this list, and the list to the sources that define
//! the names (ours are read from the code; Patroni's, the PostgreSQL exporter's and the kubelet's
//! are upstream's).

/// Where a metric comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// api-server/src/metrics.rs, scraped through the API PodMonitor.
    Api,
    /// operator/src/metrics.rs and tenant_metrics.rs, scraped from the operator.
    Operator,
    /// Patroni 4.1.5's REST API /metrics (patroni/api.py, `do_GET_metrics`), as in dfr-postgres.
    Patroni,
    /// prometheus-postgres-exporter 0.11.1 (Debian bookworm, in dfr-postgres) with its default
    /// metrics, beside each member; names as its `--dumpmaps` lists them.
    PostgresExporter,
    /// The kubelet's cAdvisor endpoint (/metrics/cadvisor); no kube-state-metrics is assumed.
    Cadvisor,
    /// Made by Prometheus itself for every target.
    Prometheus,
}

pub const METRICS: &[(&str, Source)] = &[
    ("dfr_http_requests_total", Source::Api),
    ("dfr_http_request_duration_seconds_bucket", Source::Api),
    ("dfr_http_request_duration_seconds_count", Source::Api),
    ("dfr_http_request_duration_seconds_sum", Source::Api),
    ("dfr_registrations_total", Source::Api),
    ("dfr_consent_changes_total", Source::Api),
    ("dfr_tokens_issued_total", Source::Api),
    ("dfr_db_pool_connections", Source::Api),
    ("dfr_db_pool_idle_connections", Source::Api),
    (
        "dfr_backup_last_success_timestamp_seconds",
        Source::Operator,
    ),
    ("dfr_backup_last_duration_seconds", Source::Operator),
    ("dfr_backup_last_size_bytes", Source::Operator),
    ("dfr_backup_sets", Source::Operator),
    (
        "dfr_restore_check_last_success_timestamp_seconds",
        Source::Operator,
    ),
    ("dfr_restore_check_last_duration_seconds", Source::Operator),
    ("dfr_certificate_expiry_timestamp_seconds", Source::Operator),
    ("dfr_pii_key_activated_timestamp_seconds", Source::Operator),
    ("dfr_operator_tenant_reconcile_failures", Source::Operator),
    ("patroni_postgres_running", Source::Patroni),
    ("patroni_primary", Source::Patroni),
    ("patroni_replica", Source::Patroni),
    ("patroni_sync_standby", Source::Patroni),
    ("patroni_xlog_location", Source::Patroni),
    ("patroni_xlog_received_location", Source::Patroni),
    ("patroni_xlog_replayed_location", Source::Patroni),
    ("patroni_xlog_replayed_timestamp", Source::Patroni),
    ("patroni_postgres_timeline", Source::Patroni),
    ("patroni_pending_restart", Source::Patroni),
    ("patroni_postmaster_start_time", Source::Patroni),
    ("pg_up", Source::PostgresExporter),
    ("pg_stat_database_blks_hit", Source::PostgresExporter),
    ("pg_stat_database_blks_read", Source::PostgresExporter),
    ("pg_stat_database_numbackends", Source::PostgresExporter),
    ("pg_stat_activity_count", Source::PostgresExporter),
    ("pg_stat_activity_max_tx_duration", Source::PostgresExporter),
    ("pg_settings_max_connections", Source::PostgresExporter),
    ("container_cpu_usage_seconds_total", Source::Cadvisor),
    ("up", Source::Prometheus),
];

/// Words that are no metric even when no parenthesis follows them (an aggregation may be
/// written `sum by (le) (...)`).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "topk",
    "bottomk",
    "quantile",
    "stddev",
    "stdvar",
    "count_values",
    "group",
];

/// The metric names an expression reads: identifiers that are not functions, aggregations,
/// keywords, label names or durations. Enough for the expressions the builders write.
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut cleaned = String::new();
    let mut depth_braces = 0;
    let mut depth_brackets = 0;
    let mut in_string = false;
    for c in expr.chars() {
        match c {
            '"' => in_string = !in_string,
            _ if in_string => {}
            '{' => depth_braces += 1,
            '}' => depth_braces -= 1,
            '[' => depth_brackets += 1,
            ']' => depth_brackets -= 1,
            _ if depth_braces > 0 || depth_brackets > 0 => {}
            _ => cleaned.push(c),
        }
        if matches!(c, '{' | '}' | '[' | ']') {
            cleaned.push(' ');
        }
    }
    let mut names = Vec::new();
    let mut label_list = false;
    let mut chars = cleaned.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c == ')' {
            label_list = false;
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':') {
            if c.is_ascii_digit() {
                // A number or a duration such as 5m: skip it whole.
                while chars
                    .peek()
                    .is_some_and(|(_, c)| c.is_ascii_alphanumeric() || *c == '.')
                {
                    chars.next();
                }
            }
            continue;
        }
        let mut end = start + c.len_utf8();
        while let Some((i, c)) = chars.peek().copied() {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                end = i + c.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        let word = &cleaned[start..end];
        let next = cleaned[end..].trim_start().chars().next();
        if [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ]
        .contains(&word)
        {
            label_list = true;
            continue;
        }
        if label_list || next == Some('(') || KEYWORDS.contains(&word.to_ascii_lowercase().as_str())
        {
            continue;
        }
        names.push(word.to_string());
    }
    names
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_from_expressions() {
        assert_eq!(
            metric_names(
                "histogram_quantile(0.95, sum by (le) (rate(a_bucket{namespace=\"x\",route!=\"/m\"}[5m]))) > 0.6"
            ),
            vec!["a_bucket"]
        );
        assert_eq!(
            metric_names("(count(b{n=\"x\"} == 1) or vector(0)) < 2 and on(namespace, pod) c"),
            vec!["b", "c"]
        );
        assert_eq!(metric_names("time() - d:e:f{t=\"a\"} > 1e3"), vec!["d:e:f"]);
    }

    /// Our own names, checked against the code that registers them.
    #[test]
    fn our_metrics_are_registered_under_these_names() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
        let api = read("../api-server/src/metrics.rs");
        let operator = read("src/metrics.rs") + &read("src/tenant_metrics.rs");
        for (name, source) in METRICS {
            let text = match source {
                Source::Api => &api,
                Source::Operator => &operator,
                _ => continue,
            };
            // Histograms register their base name; Prometheus adds the suffixes.
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|b| text.contains(&format!("\"{b}\"")))
                })
                .unwrap_or(name);
            assert!(
                text.contains(&format!("\"{base}\"")),
                "{name} is not registered by {source:?}"
            );
        }
    }
}
