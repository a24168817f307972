//! What request handlers share. `AppState` is made of sub-states, and each handler or extractor
//! asks only for the part it needs (`State<PgPool>`, `State<Arc<KeyRing>>`, `State<Metrics>`,
//! `State<AccessTokens>`) through `FromRef`. The parts are defined in the modules that own them,
//! so this module sits above them and none of them depends on it.

use std::sync::Arc;

use axum::extract::FromRef;
use sqlx::PgPool;

use crate::auth::AccessTokens;
use crate::crypto::KeyRing;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    /// Connections as the application role, which row-level security restricts on the registry
    /// tables.
    pub pool: PgPool,
    /// Signs and verifies access tokens.
    pub tokens: AccessTokens,
    /// Encrypts PII at rest and computes the national-ID blind index.
    pub ring: Arc<KeyRing>,
    pub metrics: Metrics,
}

impl FromRef<AppState> for PgPool {
    fn from_ref(state: &AppState) -> Self {
        state.pool.clone()
    }
}

impl FromRef<AppState> for AccessTokens {
    fn from_ref(state: &AppState) -> Self {
        state.tokens.clone()
    }
}

impl FromRef<AppState> for Arc<KeyRing> {
    fn from_ref(state: &AppState) -> Self {
        state.ring.clone()
    }
}

impl FromRef<AppState> for Metrics {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}
