//! POST /oauth/token: the password grant (staff and farmers; national admins also send a TOTP
//! code), client_credentials (external systems) and refresh_token (rotating, with reuse
//! detection); and the JWKS that verifies the access tokens.

use std::sync::Arc;

use axum::extract::State;
use axum::{Form, Json};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{AccessTokens, Claims, ISSUER, Role, verify_password};
use crate::crypto::KeyRing;
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::sessions;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(token))
        .routes(routes!(jwks))
}

const MAX_FAILED_ATTEMPTS: i32 = 5;
const LOCKOUT_MINUTES: i32 = 15;
/// What the refresh grant reads of a user: no verifier, which the application role cannot read.
const USER_COLUMNS: &str = "id, role, areas, person_id, scopes, \
     (locked_until IS NOT NULL AND locked_until > now()) AS locked, disabled_at IS NOT NULL AS disabled";

#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    grant_type: String,
    username: Option<String>,
    password: Option<String>,
    totp: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

fn required(value: Option<String>, field: &str) -> ApiResult<String> {
    value.ok_or_else(|| ApiError::field(field, "is required"))
}

fn refused() -> ApiError {
    ApiError::InvalidGrant("the username or password is wrong".into())
}

#[utoipa::path(post, path = "/oauth/token", tag = "auth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Tokens", body = TokenResponse),
        (status = 400, description = "invalid_grant or a missing field", body = crate::error::ProblemDoc)))]
pub async fn token(
    State(pool): State<PgPool>,
    State(tokens): State<AccessTokens>,
    State(ring): State<Arc<KeyRing>>,
    State(metrics): State<Metrics>,
    Form(request): Form<TokenRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let grant = request.grant_type.clone();
    let (user, response) = issue(&pool, &tokens, &ring, request).await?;
    metrics
        .tokens_issued
        .with_label_values(&[role_of(&user)?.as_str(), grant.as_str()])
        .inc();
    Ok(response)
}

/// The user the grant authenticates and the tokens it gets.
async fn issue(
    pool: &PgPool,
    tokens: &AccessTokens,
    ring: &KeyRing,
    request: TokenRequest,
) -> ApiResult<(PgRow, Json<TokenResponse>)> {
    match request.grant_type.as_str() {
        "password" => {
            let username = required(request.username, "username")?;
            let password = required(request.password, "password")?;
            let user = authenticate(pool, &username, &password, false).await?;
            let role = role_of(&user)?;
            if role == Role::NationalAdmin {
                check_second_factor(ring, &user, request.totp.as_deref())?;
            }
            let refresh = sessions::issue_refresh(pool, user.try_get("id")?, None).await?;
            let response = respond(tokens, &user, Some(refresh))?;
            Ok((user, response))
        }
        "client_credentials" => {
            let client = required(request.client_id, "client_id")?;
            let secret = required(request.client_secret, "client_secret")?;
            let user = authenticate(pool, &client, &secret, true).await?;
            // Machine clients ask again with their credentials; they get no refresh token.
            let response = respond(tokens, &user, None)?;
            Ok((user, response))
        }
        "refresh_token" => {
            let presented = required(request.refresh_token, "refresh_token")?;
            let (user_id, family) = sessions::redeem_refresh(pool, &presented).await?;
            let user = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
            )))
            .bind(user_id)
            .fetch_one(pool)
            .await?;
            if user.try_get::<bool, _>("locked")? {
                return Err(ApiError::InvalidGrant("the account is locked".into()));
            }
            if user.try_get::<bool, _>("disabled")? {
                return Err(ApiError::InvalidGrant("the account is disabled".into()));
            }
            let refresh = sessions::issue_refresh(pool, user_id, Some(family)).await?;
            let response = respond(tokens, &user, Some(refresh))?;
            Ok((user, response))
        }
        other => Err(ApiError::field(
            "grant_type",
            format!(
                "unsupported grant type {other:?}; use password, client_credentials or refresh_token"
            ),
        )),
    }
}

fn role_of(user: &PgRow) -> ApiResult<Role> {
    Role::parse(&user.try_get::<String, _>("role")?)
        .ok_or_else(|| ApiError::Internal("unknown role".into()))
}

fn check_second_factor(ring: &KeyRing, user: &PgRow, code: Option<&str>) -> ApiResult<()> {
    let stored: Option<String> = user.try_get("totp_secret")?;
    let Some(stored) = stored else {
        return Err(ApiError::InvalidGrant(
            "national admins must enrol a TOTP second factor first (dfr-api create-user prints it)"
                .into(),
        ));
    };
    let secret = crate::credentials::open_totp(ring, &stored)
        .map_err(|e| ApiError::Internal(format!("TOTP secret: {e}")))?;
    match code {
        None => Err(ApiError::InvalidGrant(
            "national admins must send the current TOTP code as `totp`".into(),
        )),
        Some(code) if sessions::verify_code(&secret, code) => Ok(()),
        Some(_) => Err(ApiError::InvalidGrant(
            "the TOTP code is wrong or expired".into(),
        )),
    }
}

/// Checks a password, counting failures and locking the account after too many. The verifier
/// comes from the owner's function `dfr_sign_in`, one user by username: the application role
/// cannot read the password_hash or totp_secret columns.
async fn authenticate(pool: &PgPool, name: &str, secret: &str, client: bool) -> ApiResult<PgRow> {
    let user = sqlx::query(
        "SELECT id, password_hash, totp_secret, role, areas, person_id, scopes, failed_attempts, \
         locked, disabled FROM dfr_sign_in($1)",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?
    .ok_or_else(refused)?;
    if user.try_get::<bool, _>("locked")? {
        return Err(ApiError::InvalidGrant(format!(
            "the account is locked after {MAX_FAILED_ATTEMPTS} failed attempts; try again in {LOCKOUT_MINUTES} minutes"
        )));
    }
    if client != (role_of(&user)? == Role::ApiClient) {
        return Err(refused());
    }
    let id: Uuid = user.try_get("id")?;
    if !verify_password(secret, &user.try_get::<String, _>("password_hash")?) {
        sqlx::query(
            "UPDATE users SET failed_attempts = failed_attempts + 1, \
             locked_until = CASE WHEN failed_attempts + 1 >= $2 THEN now() + make_interval(mins => $3) END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(MAX_FAILED_ATTEMPTS)
        .bind(LOCKOUT_MINUTES)
        .execute(pool)
        .await?;
        return Err(refused());
    }
    // Told only to whoever knows the password.
    if user.try_get::<bool, _>("disabled")? {
        return Err(ApiError::InvalidGrant("the account is disabled".into()));
    }
    if user.try_get::<i32, _>("failed_attempts")? > 0 {
        sqlx::query("UPDATE users SET failed_attempts = 0, locked_until = NULL WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await?;
    }
    Ok(user)
}

fn respond(
    tokens: &AccessTokens,
    user: &PgRow,
    refresh_token: Option<String>,
) -> ApiResult<Json<TokenResponse>> {
    let scopes: Vec<String> = user.try_get("scopes")?;
    let now = Utc::now();
    let claims = Claims {
        sub: user.try_get("id")?,
        role: role_of(user)?,
        areas: user.try_get("areas")?,
        person: user.try_get("person_id")?,
        scope: scopes.join(" "),
        iss: ISSUER.into(),
        iat: now.timestamp(),
        exp: (now + Duration::seconds(tokens.lifetime_seconds)).timestamp(),
    };
    Ok(Json(TokenResponse {
        access_token: tokens.keys.sign(&claims)?,
        token_type: "Bearer",
        expires_in: tokens.lifetime_seconds,
        scope: claims.scope,
        refresh_token,
    }))
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "The public keys that verify access tokens", body = Object)))]
pub async fn jwks(State(tokens): State<AccessTokens>) -> Json<jsonwebtoken::jwk::JwkSet> {
    Json(tokens.keys.jwks().clone())
}
