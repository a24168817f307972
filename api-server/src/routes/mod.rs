//! The HTTP surface. Each module registers its handlers once, with `routes!`, which gives the
//! router its route and the OpenAPI document its operation from the same `#[utoipa::path]`;
//! `api` merges the modules.

pub mod areas;
pub mod common;
pub mod consents;
pub mod forms;
pub mod health;
pub mod holdings;
pub mod households;
pub mod paging;
pub mod persons;
pub mod plots;
pub mod profiles;
pub mod subjects;
pub mod sync;
pub mod token;
pub mod transfer;
pub mod users;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::state::AppState;

/// Every documented route, with the document that describes them.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(token::router())
        .merge(persons::router())
        .merge(plots::router())
        .merge(consents::router())
        .merge(households::router())
        .merge(areas::router())
        .merge(profiles::router())
        .merge(holdings::router())
        .merge(sync::router())
        .merge(subjects::router())
        .merge(users::router())
        .merge(forms::router())
        .merge(transfer::router())
}

/// The OpenAPI document as served at /api/dfr/openapi.json and checked in.
pub fn openapi_document() -> Result<String, serde_json::Error> {
    crate::openapi::render(api().into_openapi())
}

/// The API with a readiness of its own (never shutting down), as tests and benchmarks serve it.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    router_with(state, max_body_bytes, health::Readiness::default())
}

/// /metrics alone, served on a port of its own so the API's port carries only the API.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(crate::metrics::render))
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
}

/// The API; `readiness` is what SIGTERM turns off.
pub fn router_with(state: AppState, max_body_bytes: usize, readiness: health::Readiness) -> Router {
    let (routes, document) = api().split_for_parts();
    let document = crate::openapi::render(document).map_err(|e| e.to_string());
    let metrics = state.metrics.clone();
    routes
        // Not API operations, so not in the document.
        .route(
            "/api/dfr/openapi.json",
            get(move || serve_document(document.clone())),
        )
        .fallback(|| async { ApiError::NotFound })
        .layer(axum::Extension(readiness))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // Inside the body limit's reach: the limit counts the inflated bytes, so a small
        // compressed body cannot unpack into an unbounded one.
        .layer(RequestDecompressionLayer::new())
        .layer(middleware::from_fn(crate::error::plain_errors_as_problems))
        .layer(middleware::from_fn_with_state(
            metrics,
            crate::metrics::track,
        ))
        // Outermost, so problem+json answers are compressed too (for clients that ask).
        .layer(CompressionLayer::new())
        .with_state(state)
}

async fn serve_document(document: Result<String, String>) -> Response {
    match document {
        Ok(json) => ([("content-type", "application/json")], json).into_response(),
        Err(error) => ApiError::Internal(error).into_response(),
    }
}
