//! User administration by national admins: create, list, read, change role and areas,
//! disable and enable, unlock, reset a password. Each change is one transaction with its audit
//! event (entity `user`); a change that would leave no enabled national admin is refused
//! (`last_national_admin`), and one that changes who a user is ends their sessions.

pub mod record;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use sqlx::{PgConnection, PgPool};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use self::record::{Access, COLUMNS, NewUser, PasswordReset, UserQuery, UserView, UserWithSecret};
use crate::audit;
use crate::auth::{Actor, Role, hash_password};
use crate::crypto::KeyRing;
use crate::db::begin_as;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::routes::common::require;
use crate::routes::paging::{self, Page};
use crate::state::AppState;

const ADMINS: &[Role] = &[Role::NationalAdmin];

/// A new TOTP secret as stored: sealed under the key ring.
fn sealed(ring: &KeyRing, totp: Option<&str>) -> ApiResult<Option<String>> {
    totp.map(|secret| crate::credentials::seal_totp(ring, secret))
        .transpose()
        .map_err(|e| ApiError::Internal(format!("sealing a TOTP secret: {e}")))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get))
        .routes(routes!(change_access))
        .routes(routes!(disable))
        .routes(routes!(enable))
        .routes(routes!(unlock))
        .routes(routes!(reset_password))
}

/// Audits a change of `before` into the user as it now stands; the user.
async fn audited(
    tx: &mut PgConnection,
    actor: &Actor,
    action: &str,
    before: Option<&UserView>,
    id: Uuid,
) -> ApiResult<UserView> {
    let after = record::find(tx, id).await?;
    audit::record(
        tx,
        Some(actor.user_id),
        action,
        "user",
        id.to_string(),
        before.map(record::snapshot).as_ref(),
        Some(&record::snapshot(&after)),
    )
    .await?;
    Ok(after)
}

#[utoipa::path(post, path = "/api/dfr/users", tag = "users", request_body = NewUser,
    security(("bearer" = [])),
    responses((status = 201, description = "Created; a national admin's TOTP secret is shown once, here", body = UserWithSecret),
        (status = 409, description = "The username is taken (conflict, field username)", body = crate::error::ProblemDoc),
        (status = 422, description = "Invalid field (validation_failed)", body = crate::error::ProblemDoc)))]
pub async fn create(
    State(pool): State<PgPool>,
    State(ring): State<Arc<KeyRing>>,
    actor: Actor,
    ApiJson(input): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<UserWithSecret>)> {
    require(&actor, ADMINS, "users:write")?;
    record::check_username(&input.username)?;
    record::check_password(&input.password)?;
    let access = input.access();
    let mut tx = begin_as(&pool, &actor).await?;
    let role = access.checked(&mut tx).await?;
    let totp = (role == Role::NationalAdmin).then(crate::sessions::new_totp_secret);
    let sealed = sealed(&ring, totp.as_deref())?;
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO users (id, username, password_hash, role, areas, person_id, scopes, totp_secret) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(&input.username)
    .bind(hash_password(&input.password)?)
    .bind(role.as_str())
    .bind(&access.areas)
    .bind(access.person_id)
    .bind(&access.scopes)
    .bind(&sealed)
    .execute(&mut *tx)
    .await?;
    let user = audited(&mut tx, &actor, "create", None, id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(UserWithSecret::new(user, totp))))
}

#[utoipa::path(get, path = "/api/dfr/users", tag = "users", params(UserQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "A page of users in id order; follow `next` with `after`", body = Page<UserView>)))]
pub async fn list(
    State(pool): State<PgPool>,
    actor: Actor,
    Query(query): Query<UserQuery>,
) -> ApiResult<Json<Page<UserView>>> {
    require(&actor, ADMINS, "users:read")?;
    let limit = paging::limit(query.limit)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let users = record::list(&mut tx, &query, limit).await?;
    tx.commit().await?;
    Ok(Json(Page::of(users, limit, |u| u.id)))
}

#[utoipa::path(get, path = "/api/dfr/users/{id}", tag = "users", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "The user", body = UserView),
        (status = 404, description = "No such user", body = crate::error::ProblemDoc)))]
pub async fn get(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<UserView>> {
    require(&actor, ADMINS, "users:read")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let user = record::find(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(user))
}

#[utoipa::path(put, path = "/api/dfr/users/{id}/access", tag = "users", request_body = Access,
    params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, description = "Role, areas, person and scopes replaced; the user's sessions end. A user made national admin without a second factor gets one, shown once", body = UserWithSecret),
        (status = 409, description = "It would leave no enabled national admin (last_national_admin)", body = crate::error::ProblemDoc),
        (status = 422, description = "Invalid field (validation_failed)", body = crate::error::ProblemDoc)))]
pub async fn change_access(
    State(pool): State<PgPool>,
    State(ring): State<Arc<KeyRing>>,
    actor: Actor,
    Path(id): Path<Uuid>,
    ApiJson(access): ApiJson<Access>,
) -> ApiResult<Json<UserWithSecret>> {
    require(&actor, ADMINS, "users:write")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let before = record::find(&mut tx, id).await?;
    let role = access.checked(&mut tx).await?;
    if before.role == Role::NationalAdmin.as_str() && role != Role::NationalAdmin {
        record::keep_an_admin(&mut tx, id).await?;
    }
    let totp = (role == Role::NationalAdmin && !before.second_factor)
        .then(crate::sessions::new_totp_secret);
    sqlx::query(
        "UPDATE users SET role = $2, areas = $3, person_id = $4, scopes = $5, \
         updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(role.as_str())
    .bind(&access.areas)
    .bind(access.person_id)
    .bind(&access.scopes)
    .execute(&mut *tx)
    .await?;
    // A statement of its own: the application role may write the secret but not read it, so
    // it cannot be kept with coalesce(new, totp_secret).
    if let Some(sealed) = sealed(&ring, totp.as_deref())? {
        sqlx::query("UPDATE users SET totp_secret = $2 WHERE id = $1")
            .bind(id)
            .bind(sealed)
            .execute(&mut *tx)
            .await?;
    }
    record::revoke_sessions(&mut tx, id).await?;
    let user = audited(&mut tx, &actor, "change_access", Some(&before), id).await?;
    tx.commit().await?;
    Ok(Json(UserWithSecret::new(user, totp)))
}

/// One of the simple changes: `sql` on the user, then its audit event.
async fn change(
    pool: &PgPool,
    actor: &Actor,
    id: Uuid,
    action: &str,
    sql: &'static str,
) -> ApiResult<UserView> {
    require(actor, ADMINS, "users:write")?;
    let mut tx = begin_as(pool, actor).await?;
    let before = record::find(&mut tx, id).await?;
    if action == "disable" && before.role == Role::NationalAdmin.as_str() {
        record::keep_an_admin(&mut tx, id).await?;
    }
    sqlx::query(sql).bind(id).execute(&mut *tx).await?;
    if action == "disable" {
        record::revoke_sessions(&mut tx, id).await?;
    }
    let user = audited(&mut tx, actor, action, Some(&before), id).await?;
    tx.commit().await?;
    Ok(user)
}

#[utoipa::path(post, path = "/api/dfr/users/{id}/disable", tag = "users", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "Disabled: cannot sign in or refresh; sessions ended", body = UserView),
        (status = 409, description = "The last enabled national admin (last_national_admin)", body = crate::error::ProblemDoc)))]
pub async fn disable(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<UserView>> {
    let sql = "UPDATE users SET disabled_at = coalesce(disabled_at, now()), updated_at = now() WHERE id = $1";
    Ok(Json(change(&pool, &actor, id, "disable", sql).await?))
}

#[utoipa::path(post, path = "/api/dfr/users/{id}/enable", tag = "users", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "Enabled again", body = UserView)))]
pub async fn enable(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<UserView>> {
    let sql = "UPDATE users SET disabled_at = NULL, updated_at = now() WHERE id = $1";
    Ok(Json(change(&pool, &actor, id, "enable", sql).await?))
}

#[utoipa::path(post, path = "/api/dfr/users/{id}/unlock", tag = "users", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "Failed sign-ins forgotten, the lock lifted", body = UserView)))]
pub async fn unlock(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<UserView>> {
    let sql = "UPDATE users SET failed_attempts = 0, locked_until = NULL, updated_at = now() WHERE id = $1";
    Ok(Json(change(&pool, &actor, id, "unlock", sql).await?))
}

#[utoipa::path(post, path = "/api/dfr/users/{id}/password", tag = "users", request_body = PasswordReset,
    params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, description = "The new password is set, the lock lifted and the user's sessions ended", body = UserView),
        (status = 422, description = "Too short or too long (validation_failed, field password)", body = crate::error::ProblemDoc)))]
pub async fn reset_password(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
    ApiJson(reset): ApiJson<PasswordReset>,
) -> ApiResult<Json<UserView>> {
    require(&actor, ADMINS, "users:write")?;
    record::check_password(&reset.password)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let before = record::find(&mut tx, id).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE users SET password_hash = $2, failed_attempts = 0, locked_until = NULL, \
         updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(hash_password(&reset.password)?)
    .fetch_one(&mut *tx)
    .await?;
    record::revoke_sessions(&mut tx, id).await?;
    let user = audited(&mut tx, &actor, "reset_password", Some(&before), id).await?;
    tx.commit().await?;
    Ok(Json(user))
}
