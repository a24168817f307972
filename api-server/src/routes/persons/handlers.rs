//! The person endpoints: role and scope checks, then the operation in the caller's transaction
//! and the response with its ETag.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use sqlx::PgPool;
use uuid::Uuid;

use super::input::{PersonInput, PersonView, Pii, SearchQuery};
use super::ops::{self, Created};
use super::store;
use crate::auth::Actor;
use crate::crypto::KeyRing;
use crate::db::begin_as;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::metrics::Metrics;
use crate::routes::common::{DELETERS, READERS, WRITERS, expected_version, require, with_etag};
use crate::routes::paging::Page;

#[utoipa::path(post, path = "/api/dfr/persons", tag = "persons", request_body = PersonInput,
    security(("bearer" = [])),
    responses((status = 201, description = "Registered; ETag is the version", body = PersonView),
        (status = 200, description = "A retry of an identical create (same id and content): the person as registered, nothing written", body = PersonView),
        (status = 409, description = "A person with this national ID exists (duplicate_national_id), or another person has this id (duplicate_id)", body = crate::error::ProblemDoc),
        (status = 422, description = "Invalid field", body = crate::error::ProblemDoc)))]
pub async fn create(
    State(pool): State<PgPool>,
    State(ring): State<Arc<KeyRing>>,
    State(metrics): State<Metrics>,
    actor: Actor,
    ApiJson(input): ApiJson<PersonInput>,
) -> ApiResult<Response> {
    require(&actor, WRITERS, "persons:write")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let (created, person) = ops::create(&mut tx, &ring, &actor, input).await?;
    tx.commit().await?;
    let status = match created {
        Created::New => {
            metrics.registrations.inc();
            StatusCode::CREATED
        }
        Created::Replayed => StatusCode::OK,
    };
    Ok(with_etag(status, person.version, person))
}

#[utoipa::path(get, path = "/api/dfr/persons/{id}", tag = "persons", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "The person; ETag is the version", body = PersonView),
        (status = 404, description = "No such person, or not in your areas", body = crate::error::ProblemDoc)))]
pub async fn get(
    State(pool): State<PgPool>,
    State(ring): State<Arc<KeyRing>>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    require(&actor, READERS, "persons:read")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let row = store::find(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    let person = store::view(&ring, Pii::for_role(actor.role), &row)?;
    Ok(with_etag(StatusCode::OK, person.version, person))
}

#[utoipa::path(get, path = "/api/dfr/persons", tag = "persons", params(SearchQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "A page of persons in id order; follow `next` with `after`", body = Page<PersonView>)))]
pub async fn search(
    State(pool): State<PgPool>,
    State(ring): State<Arc<KeyRing>>,
    actor: Actor,
    Query(query): Query<SearchQuery>,
) -> ApiResult<Json<Page<PersonView>>> {
    require(&actor, READERS, "persons:read")?;
    let filter = query.filter(&ring)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let rows = store::search(&mut tx, &filter).await?;
    tx.commit().await?;
    let pii = Pii::for_role(actor.role);
    let items = rows
        .iter()
        .map(|row| store::view(&ring, pii, row))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(Page::of(items, filter.limit, |p| p.id)))
}

#[utoipa::path(put, path = "/api/dfr/persons/{id}", tag = "persons", request_body = PersonInput,
    params(("id" = Uuid, Path), ("If-Match" = String, Header, description = "The ETag last read")),
    security(("bearer" = [])),
    responses((status = 200, description = "Updated", body = PersonView),
        (status = 412, description = "Stale version", body = crate::error::ProblemDoc),
        (status = 428, description = "If-Match missing", body = crate::error::ProblemDoc)))]
pub async fn update(
    State(pool): State<PgPool>,
    State(ring): State<Arc<KeyRing>>,
    actor: Actor,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<PersonInput>,
) -> ApiResult<Response> {
    require(&actor, WRITERS, "persons:write")?;
    let version = expected_version(&headers)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let person = ops::update(&mut tx, &ring, &actor, id, version, input).await?;
    tx.commit().await?;
    Ok(with_etag(StatusCode::OK, person.version, person))
}

#[utoipa::path(delete, path = "/api/dfr/persons/{id}", tag = "persons",
    params(("id" = Uuid, Path), ("If-Match" = String, Header, description = "The ETag last read")),
    security(("bearer" = [])),
    responses((status = 204, description = "Soft-deleted (tombstone kept)"),
        (status = 412, description = "Stale version", body = crate::error::ProblemDoc),
        (status = 428, description = "If-Match missing", body = crate::error::ProblemDoc)))]
pub async fn delete(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    require(&actor, DELETERS, "persons:write")?;
    let version = expected_version(&headers)?;
    let mut tx = begin_as(&pool, &actor).await?;
    ops::delete(&mut tx, &actor, id, version).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
