use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
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
#[utoipa::path(get, path = "/api/dfr/health", tag = "health", responses((status = 200, description = "The process serves requests")))]
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the database answers and accepts writes. A replica (in recovery) cannot assign a
/// transaction id, so an API pointed at one is not ready.
#[utoipa::path(get, path = "/api/dfr/health/ready", tag = "health",
    responses((status = 200, description = "The database answers and accepts writes"),
        (status = 503, description = "Unreachable, or a read-only replica")))]
pub async fn ready(State(pool): State<PgPool>) -> (StatusCode, Json<Value>) {
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
