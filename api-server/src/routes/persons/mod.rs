//! Persons: create, read, search with keyset pagination, edit with If-Match, soft delete.
//! What a caller may see is decided by PostgreSQL's row-level security; these handlers add the
//! role checks, PII encryption and masking, duplicate detection and the audit event.
//!
//! `input` is what a client sends and gets back and how it is checked, `store` the SQL,
//! `ops` the writes (shared with the sync push), `handlers` the endpoints.

mod handlers;
pub mod input;
pub mod ops;
mod store;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::create, handlers::search))
        .routes(routes!(handlers::get, handlers::update, handlers::delete))
}
