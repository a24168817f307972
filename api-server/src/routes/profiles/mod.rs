//! Farmer profiles, one per person and addressed by that person's id: create, read, list with
//! filters and keyset pagination, edit with If-Match, soft delete.

pub mod record;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use self::record::{ProfileInput, ProfileQuery, ProfileView};
use super::common::{DELETERS, READERS, WRITERS, expected_version, require, same_id, with_etag};
use super::paging::{self, Page};
use crate::auth::Actor;
use crate::db::begin_as;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get, update, delete))
}

#[utoipa::path(post, path = "/api/dfr/farmer-profiles", tag = "farmers", request_body = ProfileInput,
    security(("bearer" = [])),
    responses((status = 201, description = "Registered; ETag is the version", body = ProfileView),
        (status = 409, description = "The person already has a profile (conflict), or the id is taken (duplicate_id)", body = crate::error::ProblemDoc),
        (status = 422, description = "Invalid field", body = crate::error::ProblemDoc)))]
pub async fn create(
    State(pool): State<PgPool>,
    actor: Actor,
    ApiJson(input): ApiJson<ProfileInput>,
) -> ApiResult<Response> {
    require(&actor, WRITERS, "farmers:write")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let profile = record::create(&mut tx, &actor, input).await?;
    tx.commit().await?;
    Ok(with_etag(StatusCode::CREATED, profile.version, profile))
}

#[utoipa::path(get, path = "/api/dfr/farmer-profiles/{personId}", tag = "farmers", params(("personId" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "The profile; ETag is the version", body = ProfileView),
        (status = 404, description = "None, or not in your areas", body = crate::error::ProblemDoc)))]
pub async fn get(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(person): Path<Uuid>,
) -> ApiResult<Response> {
    require(&actor, READERS, "farmers:read")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let profile = record::of_person(&mut tx, person)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(with_etag(StatusCode::OK, profile.version, profile))
}

#[utoipa::path(get, path = "/api/dfr/farmer-profiles", tag = "farmers", params(ProfileQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "A page of profiles in id order; follow `next` with `after`", body = Page<ProfileView>)))]
pub async fn list(
    State(pool): State<PgPool>,
    actor: Actor,
    Query(query): Query<ProfileQuery>,
) -> ApiResult<Json<Page<ProfileView>>> {
    require(&actor, READERS, "farmers:read")?;
    let limit = paging::limit(query.limit)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let profiles = record::list(&mut tx, &query, limit).await?;
    tx.commit().await?;
    Ok(Json(Page::of(profiles, limit, |p| p.id)))
}

#[utoipa::path(put, path = "/api/dfr/farmer-profiles/{personId}", tag = "farmers", request_body = ProfileInput,
    params(("personId" = Uuid, Path), ("If-Match" = String, Header, description = "The ETag last read")),
    security(("bearer" = [])),
    responses((status = 200, description = "Updated; ETag is the new version", body = ProfileView),
        (status = 412, description = "Stale version (stale_version)", body = crate::error::ProblemDoc),
        (status = 428, description = "If-Match missing", body = crate::error::ProblemDoc)))]
pub async fn update(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(person): Path<Uuid>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<ProfileInput>,
) -> ApiResult<Response> {
    require(&actor, WRITERS, "farmers:write")?;
    let version = expected_version(&headers)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let current = record::of_person(&mut tx, person)
        .await?
        .ok_or(ApiError::NotFound)?;
    same_id(input.id, current.id)?;
    let profile = record::update(&mut tx, &actor, current.id, version, input).await?;
    tx.commit().await?;
    Ok(with_etag(StatusCode::OK, profile.version, profile))
}

#[utoipa::path(delete, path = "/api/dfr/farmer-profiles/{personId}", tag = "farmers",
    params(("personId" = Uuid, Path), ("If-Match" = String, Header, description = "The ETag last read")),
    security(("bearer" = [])),
    responses((status = 204, description = "Soft-deleted (tombstone kept)"),
        (status = 412, description = "Stale version (stale_version)", body = crate::error::ProblemDoc),
        (status = 428, description = "If-Match missing", body = crate::error::ProblemDoc)))]
pub async fn delete(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(person): Path<Uuid>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    require(&actor, DELETERS, "farmers:write")?;
    let version = expected_version(&headers)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let current = record::of_person(&mut tx, person)
        .await?
        .ok_or(ApiError::NotFound)?;
    record::delete(&mut tx, &actor, current.id, version).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
