//! Prometheus metrics: requests and latency by route and status (the HPA's p95 latency is
//! computed from `dfr_http_request_duration_seconds`), database pool gauges, registrations.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use sqlx::PgPool;

use crate::error::ApiError;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pub registrations: IntCounter,
    pub consents: IntCounterVec,
    /// Access tokens issued, by the user's role and the grant: the dashboards' measure of who
    /// is active (a refresh is a session in use).
    pub tokens_issued: IntCounterVec,
    pool_size: IntGauge,
    pool_idle: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "dfr_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "dfr_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.7, 1.0, 2.5, 5.0,
            ]),
            &["route", "method", "status"],
        )?;
        let registrations = IntCounter::new("dfr_registrations_total", "Persons registered")?;
        let consents = IntCounterVec::new(
            Opts::new(
                "dfr_consent_changes_total",
                "Consent state changes by new state",
            ),
            &["state"],
        )?;
        let tokens_issued = IntCounterVec::new(
            Opts::new(
                "dfr_tokens_issued_total",
                "Access tokens issued, by role and grant type",
            ),
            &["role", "grant"],
        )?;
        let pool_size = IntGauge::new("dfr_db_pool_connections", "Open database connections")?;
        let pool_idle = IntGauge::new("dfr_db_pool_idle_connections", "Idle database connections")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(registrations.clone()))?;
        registry.register(Box::new(consents.clone()))?;
        registry.register(Box::new(tokens_issued.clone()))?;
        registry.register(Box::new(pool_size.clone()))?;
        registry.register(Box::new(pool_idle.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            registrations,
            consents,
            tokens_issued,
            pool_size,
            pool_idle,
        })
    }
}

/// Records every request under its route template (never the raw path: ids would explode the
/// label set).
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .latency
        .with_label_values(&[&route, &method, response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[&route, &method, response.status().as_str()])
        .inc();
    response
}

pub async fn render(State(metrics): State<Metrics>, State(pool): State<PgPool>) -> Response {
    metrics.pool_size.set(i64::from(pool.size()));
    metrics
        .pool_idle
        .set(i64::try_from(pool.num_idle()).unwrap_or(i64::MAX));
    let mut buffer = Vec::new();
    match TextEncoder::new().encode(&metrics.registry.gather(), &mut buffer) {
        Ok(()) => ([("content-type", "text/plain; version=0.0.4")], buffer).into_response(),
        Err(error) => ApiError::Internal(error.to_string()).into_response(),
    }
}
