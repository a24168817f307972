pub mod areas;
mod common;
pub mod consents;
pub mod health;
pub mod households;
pub mod persons;
pub mod plots;
pub mod profiles;
pub mod token;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/api/dfr/health", get(health::live))
        .route("/api/dfr/health/ready", get(health::ready))
        .route("/oauth/token", post(token::token))
        .route("/.well-known/jwks.json", get(token::jwks))
        .route(
            "/api/dfr/persons",
            post(persons::create).get(persons::search),
        )
        .route(
            "/api/dfr/persons/{id}",
            get(persons::get)
                .put(persons::update)
                .delete(persons::delete),
        )
        .route("/api/dfr/consents", post(consents::request))
        .route("/api/dfr/consents/{id}", get(consents::get))
        .route(
            "/api/dfr/consents/{id}/transitions",
            post(consents::transition),
        )
        .route("/api/dfr/areas", get(areas::list).post(areas::create))
        .route("/api/dfr/households", post(households::create))
        .route("/api/dfr/households/{id}", get(households::get))
        .route("/api/dfr/farmer-profiles", post(profiles::create_profile))
        .route(
            "/api/dfr/farmer-profiles/{person_id}",
            get(profiles::get_profile),
        )
        .route("/api/dfr/holdings", post(profiles::create_holding))
        .route("/api/dfr/holdings/{id}", get(profiles::get_holding))
        .route("/api/dfr/plots", post(plots::create))
        .route("/api/dfr/plots/{id}", get(plots::get))
        .route("/api/dfr/openapi.json", get(openapi))
        .route("/metrics", get(crate::metrics::render))
        .fallback(|| async { ApiError::NotFound })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(crate::error::plain_errors_as_problems))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

async fn openapi() -> axum::response::Response {
    use axum::response::IntoResponse;
    match crate::openapi::document() {
        Ok(json) => ([("content-type", "application/json")], json).into_response(),
        Err(error) => ApiError::Internal(error.to_string()).into_response(),
    }
}
