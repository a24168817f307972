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
        let tenants = IntGaugeVec::new(
            Opts::new(
                "dfr_operator_tenants",
                "DfrCountry objects by their Ready condition",
            ),
            &["ready"],
        )?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(child_writes.clone()))?;
        registry.register(Box::new(kube_requests.clone()))?;
        registry.register(Box::new(tenants.clone()))?;
        Ok(Self {
            registry,
            reconciliations,
            reconcile_duration,
            errors,
            child_writes,
            kube_requests,
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
