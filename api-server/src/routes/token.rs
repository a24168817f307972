//! POST /oauth/token (password and client_credentials grants) and the JWKS.

use axum::extract::State;
use axum::{Form, Json};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use crate::auth::{Claims, ISSUER, Role, verify_password};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

const MAX_FAILED_ATTEMPTS: i32 = 5;
const LOCKOUT_MINUTES: i64 = 15;

#[derive(Deserialize)]
pub struct TokenRequest {
    grant_type: String,
    username: Option<String>,
    password: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

#[derive(Serialize)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    scope: String,
}

pub async fn token(
    State(state): State<AppState>,
    Form(request): Form<TokenRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let (name, secret, clients_only) = match request.grant_type.as_str() {
        "password" => (request.username, request.password, false),
        "client_credentials" => (request.client_id, request.client_secret, true),
        other => {
            return Err(ApiError::field(
                "grant_type",
                format!("unsupported grant type {other:?}; use password or client_credentials"),
            ));
        }
    };
    let name = name.ok_or_else(|| {
        ApiError::field(
            if clients_only {
                "client_id"
            } else {
                "username"
            },
            "is required",
        )
    })?;
    let secret = secret.ok_or_else(|| {
        ApiError::field(
            if clients_only {
                "client_secret"
            } else {
                "password"
            },
            "is required",
        )
    })?;

    let row = sqlx::query(
        "SELECT id, password_hash, role, areas, person_id, scopes, failed_attempts, \
         (locked_until IS NOT NULL AND locked_until > now()) AS locked FROM users WHERE username = $1",
    )
    .bind(&name)
    .fetch_optional(&state.pool)
    .await?;
    let refused = || ApiError::InvalidGrant("the username or password is wrong".into());
    let Some(row) = row else {
        return Err(refused());
    };
    let id: Uuid = row.try_get("id")?;
    if row.try_get::<bool, _>("locked")? {
        return Err(ApiError::InvalidGrant(format!(
            "the account is locked after {MAX_FAILED_ATTEMPTS} failed attempts; try again later"
        )));
    }
    let role = Role::parse(&row.try_get::<String, _>("role")?)
        .ok_or_else(|| ApiError::Internal("unknown role".into()))?;
    if clients_only != (role == Role::ApiClient) {
        return Err(refused());
    }
    if !verify_password(&secret, &row.try_get::<String, _>("password_hash")?) {
        sqlx::query(
            "UPDATE users SET failed_attempts = failed_attempts + 1, \
             locked_until = CASE WHEN failed_attempts + 1 >= $2 THEN now() + make_interval(mins => $3) END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(MAX_FAILED_ATTEMPTS)
        .bind(i32::try_from(LOCKOUT_MINUTES).unwrap_or(15))
        .execute(&state.pool)
        .await?;
        return Err(refused());
    }
    if row.try_get::<i32, _>("failed_attempts")? > 0 {
        sqlx::query("UPDATE users SET failed_attempts = 0, locked_until = NULL WHERE id = $1")
            .bind(id)
            .execute(&state.pool)
            .await?;
    }
    let scopes: Vec<String> = row.try_get("scopes")?;
    let now = Utc::now();
    let claims = Claims {
        sub: id,
        role,
        areas: row.try_get("areas")?,
        person: row.try_get("person_id")?,
        scope: scopes.join(" "),
        iss: ISSUER.into(),
        iat: now.timestamp(),
        exp: (now + Duration::seconds(state.access_token_seconds)).timestamp(),
    };
    Ok(Json(TokenResponse {
        access_token: state.keys.sign(&claims)?,
        token_type: "Bearer",
        expires_in: state.access_token_seconds,
        scope: claims.scope,
    }))
}

pub async fn jwks(State(state): State<AppState>) -> Json<jsonwebtoken::jwk::JwkSet> {
    Json(state.keys.jwks().clone())
}
