//! Grafana dashboards of one tenant, as JSON: operations (API latency, throughput, errors),
//! database (Patroni members, roles, lag, timeline, the API's connections; from the PostgreSQL
//! exporter cache hit ratio, connections by state and database, the longest active
//! transaction), backups and
//! certificates, business (registrations, consent changes). Queries read the metrics in
//! [`super::catalog`] and the recording rules of [`super::rules`]; a test parses every query
//! with promtool and holds its metric names to the catalogue.

use serde_json::{Value, json};

use super::rules::{API_CPU, API_ERRORS, API_P95, DATABASE_CPU, REPLICATION_LAG};
use crate::settings::Settings;
use crate::tenant::Tenant;

/// One dashboard: its short name (in the ConfigMap and file names) and its JSON.
pub struct Dashboard {
    pub slug: &'static str,
    pub json: Value,
}

/// A panel before layout: title, unit and its queries (expression, legend).
struct Panel {
    title: &'static str,
    unit: &'static str,
    queries: Vec<(String, &'static str)>,
}

fn panel(title: &'static str, unit: &'static str, queries: Vec<(String, &'static str)>) -> Panel {
    Panel {
        title,
        unit,
        queries,
    }
}

/// Every query of every dashboard, for the tests.
pub fn queries(tenant: &Tenant, settings: &Settings) -> Vec<String> {
    boards(tenant, settings)
        .into_iter()
        .flat_map(|(_, _, panels)| panels)
        .flat_map(|p| p.queries.into_iter().map(|(expr, _)| expr))
        .collect()
}

pub fn desired_dashboards(tenant: &Tenant, settings: &Settings) -> Vec<Dashboard> {
    boards(tenant, settings)
        .into_iter()
        .map(|(slug, title, panels)| Dashboard {
            slug,
            json: dashboard(tenant, slug, title, panels),
        })
        .collect()
}

fn boards(tenant: &Tenant, _settings: &Settings) -> Vec<(&'static str, &'static str, Vec<Panel>)> {
    let ns = format!("namespace=\"{}\"", tenant.namespace);
    let t = format!("tenant=\"{}\"", tenant.name);
    let operations = vec![
        panel(
            "Requests per second by status",
            "reqps",
            vec![(
                format!("sum by (status) (rate(dfr_http_requests_total{{{ns}}}[5m]))"),
                "{{status}}",
            )],
        ),
        panel(
            "Latency",
            "s",
            vec![
                (format!("{API_P95}{{{ns}}}"), "p95"),
                (
                    format!(
                        "histogram_quantile(0.5, sum by (le) (rate(dfr_http_request_duration_seconds_bucket{{{ns},route!=\"/metrics\"}}[5m])))"
                    ),
                    "p50",
                ),
            ],
        ),
        panel(
            "Server errors (5xx share)",
            "percentunit",
            vec![(format!("{API_ERRORS}{{{ns}}}"), "5xx")],
        ),
        panel(
            "Busiest routes",
            "reqps",
            vec![(
                format!("topk(10, sum by (route) (rate(dfr_http_requests_total{{{ns}}}[5m])))"),
                "{{route}}",
            )],
        ),
        panel(
            "p95 latency by route",
            "s",
            vec![(
                format!(
                    "histogram_quantile(0.95, sum by (le, route) (rate(dfr_http_request_duration_seconds_bucket{{{ns}}}[5m])))"
                ),
                "{{route}}",
            )],
        ),
        panel(
            "API CPU (share of request)",
            "percentunit",
            vec![(format!("{API_CPU}{{{ns}}}"), "average")],
        ),
        panel(
            "Scrape targets up",
            "short",
            vec![(format!("up{{{ns}}}"), "{{pod}}")],
        ),
    ];
    let database = vec![
        panel(
            "Patroni members running",
            "short",
            vec![(format!("sum(patroni_postgres_running{{{ns}}})"), "running")],
        ),
        panel(
            "Roles",
            "short",
            vec![
                // 1 or 0 per member, so the panel shows every member, not only the holders.
                (format!("patroni_primary{{{ns}}}"), "leader {{pod}}"),
                (
                    format!("patroni_sync_standby{{{ns}}}"),
                    "sync standby {{pod}}",
                ),
            ],
        ),
        panel(
            "Replication lag",
            "s",
            vec![(format!("{REPLICATION_LAG}{{{ns}}}"), "{{pod}}")],
        ),
        panel(
            "WAL behind the leader",
            "bytes",
            vec![(
                format!(
                    "(scalar(max(patroni_xlog_location{{{ns}}})) - patroni_xlog_replayed_location{{{ns}}}) and on(namespace, pod) (patroni_replica{{{ns}}} == 1)"
                ),
                "{{pod}}",
            )],
        ),
        panel(
            "Timeline (a failover adds one)",
            "short",
            vec![(
                format!("max(patroni_postgres_timeline{{{ns}}})"),
                "timeline",
            )],
        ),
        panel(
            "API connections to PostgreSQL",
            "short",
            vec![
                (format!("sum(dfr_db_pool_connections{{{ns}}})"), "open"),
                (format!("sum(dfr_db_pool_idle_connections{{{ns}}})"), "idle"),
            ],
        ),
        panel(
            "PostgreSQL CPU (share of request)",
            "percentunit",
            vec![(format!("{DATABASE_CPU}{{{ns}}}"), "average")],
        ),
        panel(
            "Members waiting for a restart",
            "short",
            vec![(format!("patroni_pending_restart{{{ns}}}"), "{{pod}}")],
        ),
        // The rest from the PostgreSQL exporter beside each member (its own member's view).
        panel(
            "Exporter connected to PostgreSQL",
            "short",
            vec![(format!("pg_up{{{ns}}}"), "{{pod}}")],
        ),
        panel(
            "Cache hit ratio (registry database)",
            "percentunit",
            vec![(
                format!(
                    "sum by (pod) (rate(pg_stat_database_blks_hit{{{ns},datname=\"dfr\"}}[5m])) / (sum by (pod) (rate(pg_stat_database_blks_hit{{{ns},datname=\"dfr\"}}[5m])) + sum by (pod) (rate(pg_stat_database_blks_read{{{ns},datname=\"dfr\"}}[5m])))"
                ),
                "{{pod}}",
            )],
        ),
        panel(
            "Connections by state",
            "short",
            vec![
                (
                    format!("sum by (pod, state) (pg_stat_activity_count{{{ns}}})"),
                    "{{pod}} {{state}}",
                ),
                (
                    format!("max by (pod) (pg_settings_max_connections{{{ns}}})"),
                    "{{pod}} max_connections",
                ),
            ],
        ),
        panel(
            "Connections per database",
            "short",
            vec![(
                format!("pg_stat_database_numbackends{{{ns},datname!=\"\"}}"),
                "{{pod}} {{datname}}",
            )],
        ),
        // No pg_stat_statements is loaded: slow queries show as the age of the oldest
        // transaction that is running a statement.
        panel(
            "Slow queries: longest active transaction",
            "s",
            vec![(
                format!(
                    "max by (pod, datname) (pg_stat_activity_max_tx_duration{{{ns},state=\"active\"}})"
                ),
                "{{pod}} {{datname}}",
            )],
        ),
    ];
    let backups = vec![
        panel(
            "Since the last successful backup",
            "s",
            vec![(
                format!("time() - dfr_backup_last_success_timestamp_seconds{{{t}}}"),
                "age",
            )],
        ),
        panel(
            "Last backup",
            "s",
            vec![(
                format!("dfr_backup_last_duration_seconds{{{t}}}"),
                "duration",
            )],
        ),
        panel(
            "Database size copied",
            "bytes",
            vec![(format!("dfr_backup_last_size_bytes{{{t}}}"), "size")],
        ),
        panel(
            "Backup sets kept",
            "short",
            vec![(format!("dfr_backup_sets{{{t}}}"), "sets")],
        ),
        panel(
            "Since the last passing restore check",
            "s",
            vec![(
                format!("time() - dfr_restore_check_last_success_timestamp_seconds{{{t}}}"),
                "age",
            )],
        ),
        panel(
            "Restore check: restore to verified",
            "s",
            vec![(
                format!("dfr_restore_check_last_duration_seconds{{{t}}}"),
                "duration",
            )],
        ),
        panel(
            "Until the earliest certificate expires",
            "s",
            vec![(
                format!("dfr_certificate_expiry_timestamp_seconds{{{t}}} - time()"),
                "remaining",
            )],
        ),
        panel(
            "Age of the PII key in use",
            "s",
            vec![(
                format!("time() - dfr_pii_key_activated_timestamp_seconds{{{t}}}"),
                "age",
            )],
        ),
        panel(
            "Failed reconciles in a row",
            "short",
            vec![(
                format!("dfr_operator_tenant_reconcile_failures{{{t}}}"),
                "failures",
            )],
        ),
    ];
    let business = vec![
        panel(
            "Registrations per hour",
            "short",
            vec![(
                format!("sum(increase(dfr_registrations_total{{{ns}}}[1h]))"),
                "registrations",
            )],
        ),
        panel(
            "Active users: tokens issued per hour by role",
            "short",
            vec![(
                format!("sum by (role) (increase(dfr_tokens_issued_total{{{ns}}}[1h]))"),
                "{{role}}",
            )],
        ),
        panel(
            "Consent changes per hour",
            "short",
            vec![(
                format!("sum by (state) (increase(dfr_consent_changes_total{{{ns}}}[1h]))"),
                "{{state}}",
            )],
        ),
        panel(
            "Sign-ins refused per hour",
            "short",
            vec![(
                format!(
                    "sum(increase(dfr_http_requests_total{{{ns},route=\"/oauth/token\",status=\"400\"}}[1h]))"
                ),
                "refused",
            )],
        ),
    ];
    vec![
        ("operations", "Operations", operations),
        ("database", "Database", database),
        ("backups", "Backups and certificates", backups),
        ("business", "Business", business),
    ]
}

/// A dashboard in the JSON model Grafana 10+ imports: two panels a row, a datasource variable,
/// a stable uid per tenant and board so the sidecar replaces rather than duplicates it.
fn dashboard(tenant: &Tenant, slug: &str, title: &str, panels: Vec<Panel>) -> Value {
    let datasource = json!({"type": "prometheus", "uid": "${datasource}"});
    let panels: Vec<Value> = panels
        .into_iter()
        .enumerate()
        .map(|(index, panel)| {
            let targets: Vec<Value> = panel
                .queries
                .into_iter()
                .zip('A'..='Z')
                .map(|((expr, legend), ref_id)| {
                    json!({"expr": expr, "legendFormat": legend, "refId": ref_id.to_string(), "datasource": datasource})
                })
                .collect();
            json!({
                "id": index + 1,
                "type": "timeseries",
                "title": panel.title,
                "datasource": datasource,
                "gridPos": {"h": 8, "w": 12, "x": (index % 2) * 12, "y": (index / 2) * 8},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "targets": targets,
            })
        })
        .collect();
    json!({
        "uid": format!("dfr-{}-{}", tenant.name, slug).chars().take(40).collect::<String>(),
        "title": format!("DFR {} — {}", tenant.name, title),
        "tags": ["dfr", tenant.name, tenant.spec.environment.as_str()],
        "timezone": "utc",
        "schemaVersion": 39,
        "editable": false,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{
            "name": "datasource", "label": "Data source", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0,
        }]},
        "panels": panels,
    })
}
