//! Holdings: what is grown or raised on a plot in a season, visible where the plot is. Create,
//! read, list with filters and keyset pagination, edit with If-Match, soft delete. They are
//! read with the plots:read scope, as before.

pub mod record;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use self::record::{HoldingInput, HoldingQuery, HoldingView};
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

#[utoipa::path(post, path = "/api/dfr/holdings", tag = "farmers", request_body = HoldingInput,
    security(("bearer" = [])),
    responses((status = 201, description = "Registered; ETag is the version", body = HoldingView),
        (status = 409, description = "The id is taken (duplicate_id)", body = crate::error::ProblemDoc),
        (status = 422, description = "Invalid field", body = crate::error::ProblemDoc)))]
pub async fn create(
    State(pool): State<PgPool>,
    actor: Actor,
    ApiJson(input): ApiJson<HoldingInput>,
) -> ApiResult<Response> {
    require(&actor, WRITERS, "plots:write")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let holding = record::create(&mut tx, &actor, input).await?;
    tx.commit().await?;
    Ok(with_etag(StatusCode::CREATED, holding.version, holding))
}

#[utoipa::path(get, path = "/api/dfr/holdings/{id}", tag = "farmers", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "The holding; ETag is the version", body = HoldingView),
        (status = 404, description = "No such holding, or not in your areas", body = crate::error::ProblemDoc)))]
pub async fn get(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    require(&actor, READERS, "plots:read")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let holding = record::find(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(with_etag(StatusCode::OK, holding.version, holding))
}

#[utoipa::path(get, path = "/api/dfr/holdings", tag = "farmers", params(HoldingQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "A page of holdings in id order; follow `next` with `after`", body = Page<HoldingView>)))]
pub async fn list(
    State(pool): State<PgPool>,
    actor: Actor,
    Query(query): Query<HoldingQuery>,
) -> ApiResult<Json<Page<HoldingView>>> {
    require(&actor, READERS, "plots:read")?;
    let limit = paging::limit(query.limit)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let holdings = record::list(&mut tx, &query, limit).await?;
    tx.commit().await?;
    Ok(Json(Page::of(holdings, limit, |p| p.id)))
}

#[utoipa::path(put, path = "/api/dfr/holdings/{id}", tag = "farmers", request_body = HoldingInput,
    params(("id" = Uuid, Path), ("If-Match" = String, Header, description = "The ETag last read")),
    security(("bearer" = [])),
    responses((status = 200, description = "Updated; ETag is the new version", body = HoldingView),
        (status = 412, description = "Stale version (stale_version)", body = crate::error::ProblemDoc),
        (status = 428, description = "If-Match missing", body = crate::error::ProblemDoc)))]
pub async fn update(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<HoldingInput>,
) -> ApiResult<Response> {
    require(&actor, WRITERS, "plots:write")?;
    let version = expected_version(&headers)?;
    same_id(input.id, id)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let holding = record::update(&mut tx, &actor, id, version, input).await?;
    tx.commit().await?;
    Ok(with_etag(StatusCode::OK, holding.version, holding))
}

#[utoipa::path(delete, path = "/api/dfr/holdings/{id}", tag = "farmers",
    params(("id" = Uuid, Path), ("If-Match" = String, Header, description = "The ETag last read")),
    security(("bearer" = [])),
    responses((status = 204, description = "Soft-deleted (tombstone kept)"),
        (status = 412, description = "Stale version (stale_version)", body = crate::error::ProblemDoc),
        (status = 428, description = "If-Match missing", body = crate::error::ProblemDoc)))]
pub async fn delete(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    require(&actor, DELETERS, "plots:write")?;
    let version = expected_version(&headers)?;
    let mut tx = begin_as(&pool, &actor).await?;
    record::delete(&mut tx, &actor, id, version).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
