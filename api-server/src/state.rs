use std::sync::Arc;

use sqlx::PgPool;

use crate::auth::TokenKeys;
use crate::crypto::KeyRing;
use crate::metrics::Metrics;

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub keys: Arc<TokenKeys>,
    pub ring: Arc<KeyRing>,
    pub metrics: Metrics,
    pub access_token_seconds: i64,
}
