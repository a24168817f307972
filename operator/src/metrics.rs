//! Prometheus metrics and the /metrics, /healthz and /readyz endpoints.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub reconciliations: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub errors: IntCounterVec,
    pub child_writes: IntCounterVec,
    pub kube_requests: IntCounterVec,
    /// What the failover guard did or refused, per tenant and reason (crate::failover).
    pub failover_actions: IntCounterVec,
    /// Per tenant: when the last successful backup finished (Unix seconds), how long it took,
    /// how much it copied, and how many sets the repository keeps. Age = time() - the first.
    pub backup_last_success: IntGaugeVec,
    pub backup_duration: IntGaugeVec,
    pub backup_size: IntGaugeVec,
    pub backup_sets: IntGaugeVec,
    /// Per tenant: when the last successful restore check finished, and how long it took.
    pub restore_check_last_success: IntGaugeVec,
    pub restore_check_duration: IntGaugeVec,
    /// Certificate expiry, PII key age and failing reconciles, for the alert rules.
    pub tenant: crate::tenant_metrics::TenantGauges,
    tenants: IntGaugeVec,
    tenant_ready: Arc<Mutex<BTreeMap<String, String>>>,
    pub ready: Arc<AtomicBool>,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "dfr_operator_reconciliations_total",
                "Reconciliations by result",
            ),
            &["result"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "dfr_operator_reconcile_duration_seconds",
                "Duration of one reconcile",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["result"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new("dfr_operator_errors_total", "Reconcile errors by kind"),
            &["kind"],
        )?;
        let child_writes = IntCounterVec::new(
            Opts::new(
                "dfr_operator_child_writes_total",
                "Child objects applied or deleted",
            ),
            &["operation"],
        )?;
        let kube_requests = IntCounterVec::new(
            Opts::new(
                "dfr_operator_kube_api_requests_total",
                "Requests the operator sent to the Kubernetes API server, by verb",
            ),
            &["verb"],
        )?;
        let failover_actions = IntCounterVec::new(
            Opts::new(
                "dfr_operator_failover_actions_total",
                "Failover guard decisions: LeaderFenced, FormerLeaderFenced, FailoverRefused, FailoverAborted",
            ),
            &["tenant", "reason"],
        )?;
        let tenants = IntGaugeVec::new(
            Opts::new(
                "dfr_operator_tenants",
                "DfrCountry objects by their Ready condition",
            ),
            &["ready"],
        )?;
        let tenant_gauge = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name.to_string(), help.to_string()), &["tenant"])
        };
        let backup_last_success = tenant_gauge(
            "dfr_backup_last_success_timestamp_seconds",
            "When the tenant's last successful backup finished",
        )?;
        let backup_duration = tenant_gauge(
            "dfr_backup_last_duration_seconds",
            "How long the tenant's last successful backup took",
        )?;
        let backup_size = tenant_gauge(
            "dfr_backup_last_size_bytes",
            "Database size the tenant's last successful backup copied",
        )?;
        let backup_sets = tenant_gauge(
            "dfr_backup_sets",
            "Backup sets the tenant's repository keeps",
        )?;
        let restore_check_last_success = tenant_gauge(
            "dfr_restore_check_last_success_timestamp_seconds",
            "When the tenant's newest backup was last restored and verified",
        )?;
        let restore_check_duration = tenant_gauge(
            "dfr_restore_check_last_duration_seconds",
            "How long the tenant's last successful restore check took: restore to verified",
        )?;
        for gauge in [
            &backup_last_success,
            &backup_duration,
            &backup_size,
            &backup_sets,
            &restore_check_last_success,
            &restore_check_duration,
        ] {
            registry.register(Box::new(gauge.clone()))?;
        }
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(child_writes.clone()))?;
        registry.register(Box::new(kube_requests.clone()))?;
        registry.register(Box::new(failover_actions.clone()))?;
        registry.register(Box::new(tenants.clone()))?;
        let tenant = crate::tenant_metrics::TenantGauges::new(&registry)?;
        Ok(Self {
            registry,
            reconciliations,
            reconcile_duration,
            errors,
            child_writes,
            kube_requests,
            failover_actions,
            backup_last_success,
            backup_duration,
            backup_size,
            backup_sets,
            restore_check_last_success,
            restore_check_duration,
            tenant,
            tenants,
            tenant_ready: Arc::default(),
            ready: Arc::default(),
        })
    }

    /// Records a tenant's Ready condition status ("True", "False", "Unknown"); None forgets it.
    pub fn set_tenant_ready(&self, tenant: &str, ready: Option<&str>) {
        let Ok(mut states) = self.tenant_ready.lock() else {
            return;
        };
        match ready {
            Some(state) => states.insert(tenant.to_string(), state.to_string()),
            None => states.remove(tenant),
        };
        for state in ["True", "False", "Unknown"] {
            let count = states.values().filter(|s| s.as_str() == state).count();
            self.tenants
                .with_label_values(&[state])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Records what the status says of a tenant's backups.
    pub fn set_backups(&self, tenant: &str, status: &dfr_crds::DfrCountryStatus) {
        self.tenant
            .set_certificate_expiry(tenant, status.certificates_not_after.as_ref().map(|t| t.0));
        self.tenant.set_certificates(tenant, &status.certificates);
        if let Some(last) = status
            .last_backup
            .as_ref()
            .filter(|last| last.result == dfr_crds::BackupResult::Succeeded)
        {
            let set = |gauge: &IntGaugeVec, value: Option<i64>| {
                if let Some(value) = value {
                    gauge.with_label_values(&[tenant]).set(value);
                }
            };
            set(&self.backup_last_success, Some(last.time.0.as_second()));
            set(&self.backup_duration, last.duration_seconds);
            set(&self.backup_size, last.size_bytes);
        }
        if let Some(check) = status
            .last_restore_check
            .as_ref()
            .filter(|check| check.result == dfr_crds::BackupResult::Succeeded)
        {
            self.restore_check_last_success
                .with_label_values(&[tenant])
                .set(check.time.0.as_second());
            if let Some(seconds) = check.duration_seconds {
                self.restore_check_duration
                    .with_label_values(&[tenant])
                    .set(seconds);
            }
        }
        if let Some(backups) = &status.backups {
            self.backup_sets
                .with_label_values(&[tenant])
                .set(i64::from(backups.count));
        }
    }

    /// Forgets a deleted tenant's per-tenant series.
    pub fn forget_tenant(&self, tenant: &str) {
        self.tenant.forget(tenant);
        for gauge in [
            &self.backup_last_success,
            &self.backup_duration,
            &self.backup_size,
            &self.backup_sets,
            &self.restore_check_last_success,
            &self.restore_check_duration,
        ] {
            let _ = gauge.remove_label_values(&[tenant]);
        }
    }

    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }
}

async fn metrics_handler(State(metrics): State<Metrics>) -> impl IntoResponse {
    match metrics.render() {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            body,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            error.to_string(),
        ),
    }
}

async fn readyz(State(metrics): State<Metrics>) -> impl IntoResponse {
    if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the Kubernetes API has not answered yet",
        )
    }
}

pub fn router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

pub async fn serve(addr: SocketAddr, metrics: Metrics) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(metrics)).await
}
