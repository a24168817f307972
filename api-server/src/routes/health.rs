use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{Value, json};
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/api/dfr/health", tag = "health", responses((status = 200, description = "The process serves requests", body = Object)))]
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Whether the server is shutting down: from SIGTERM on, readiness fails so that no new
/// requests are routed here while the ones in flight finish.
#[derive(Clone, Default, Debug)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn shut_down(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Readiness: not shutting down, and the database answers and accepts writes. A replica (in recovery) cannot assign a
/// transaction id, so an API pointed at one is not ready.
#[utoipa::path(get, path = "/api/dfr/health/ready", tag = "health",
    responses((status = 200, description = "The database answers and accepts writes", body = Object),
        (status = 503, description = "Unreachable, a read-only replica, or shutting down", body = Object)))]
pub async fn ready(
    State(pool): State<PgPool>,
    Extension(readiness): Extension<Readiness>,
) -> (StatusCode, Json<Value>) {
    if readiness.is_shutting_down() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "reason": "shutting down"})),
        );
    }
    let check = async {
        let mut tx = pool.begin().await?;
        let recovering: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut *tx)
            .await?;
        if !recovering {
            sqlx::query("SELECT txid_current()")
                .execute(&mut *tx)
                .await?;
        }
        tx.rollback().await?;
        Ok::<bool, sqlx::Error>(recovering)
    };
    match check.await {
        Ok(false) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Ok(true) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "reason": "the database is a read-only replica"})),
        ),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "not ready", "reason": format!("database unreachable: {error}")}),
            ),
        ),
    }
}
