//! Consent records: staff request consent for a purpose and recipient; the farmer (or staff on
//! the farmer's word) gives, refuses or withdraws it. Every change is kept in the history.
//! Requests are listed with filters and keyset pagination; one not yet answered can be edited
//! (If-Match) or deleted.

pub mod record;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use self::record::{ConsentQuery, ConsentRequest, ConsentView, Transition};
use super::common::{DELETERS, READERS, WRITERS, expected_version, require, same_id, with_etag};
use super::paging::{self, Page};
use crate::auth::{Actor, Role};
use crate::db::begin_as;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::metrics::Metrics;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request, list))
        .routes(routes!(get, update, delete))
        .routes(routes!(transition))
}

#[utoipa::path(post, path = "/api/dfr/consents", tag = "consent", request_body = ConsentRequest,
    security(("bearer" = [])),
    responses((status = 201, description = "Consent requested; ETag is the version", body = ConsentView),
        (status = 409, description = "The id is taken (duplicate_id)", body = crate::error::ProblemDoc),
        (status = 422, description = "Invalid field", body = crate::error::ProblemDoc)))]
pub async fn request(
    State(pool): State<PgPool>,
    actor: Actor,
    ApiJson(input): ApiJson<ConsentRequest>,
) -> ApiResult<Response> {
    require(&actor, WRITERS, "consents:write")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let created = record::create(&mut tx, &actor, input).await?;
    tx.commit().await?;
    Ok(with_etag(StatusCode::CREATED, created.version, created))
}

#[utoipa::path(get, path = "/api/dfr/consents/{id}", tag = "consent", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "The consent and its history; ETag is the version", body = ConsentView),
        (status = 404, description = "No such consent, or not yours to see", body = crate::error::ProblemDoc)))]
pub async fn get(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    require(&actor, READERS, "consents:read")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let consent = record::load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(with_etag(StatusCode::OK, consent.version, consent))
}

#[utoipa::path(get, path = "/api/dfr/consents", tag = "consent", params(ConsentQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "A page of consents in id order; follow `next` with `after`", body = Page<ConsentView>)))]
pub async fn list(
    State(pool): State<PgPool>,
    actor: Actor,
    Query(query): Query<ConsentQuery>,
) -> ApiResult<Json<Page<ConsentView>>> {
    require(&actor, READERS, "consents:read")?;
    let limit = paging::limit(query.limit)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let consents = record::list(&mut tx, &query, limit).await?;
    tx.commit().await?;
    Ok(Json(Page::of(consents, limit, |c| c.id)))
}

#[utoipa::path(put, path = "/api/dfr/consents/{id}", tag = "consent", request_body = ConsentRequest,
    params(("id" = Uuid, Path), ("If-Match" = String, Header, description = "The ETag last read")),
    security(("bearer" = [])),
    responses((status = 200, description = "Updated; ETag is the new version", body = ConsentView),
        (status = 412, description = "Stale version (stale_version)", body = crate::error::ProblemDoc),
        (status = 422, description = "Invalid field, or the consent was already answered", body = crate::error::ProblemDoc),
        (status = 428, description = "If-Match missing", body = crate::error::ProblemDoc)))]
pub async fn update(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<ConsentRequest>,
) -> ApiResult<Response> {
    require(&actor, WRITERS, "consents:write")?;
    let version = expected_version(&headers)?;
    same_id(input.id, id)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let consent = record::update(&mut tx, &actor, id, version, input).await?;
    tx.commit().await?;
    Ok(with_etag(StatusCode::OK, consent.version, consent))
}

#[utoipa::path(delete, path = "/api/dfr/consents/{id}", tag = "consent",
    params(("id" = Uuid, Path), ("If-Match" = String, Header, description = "The ETag last read")),
    security(("bearer" = [])),
    responses((status = 204, description = "Soft-deleted (tombstone kept)"),
        (status = 412, description = "Stale version (stale_version)", body = crate::error::ProblemDoc),
        (status = 422, description = "The consent was already answered", body = crate::error::ProblemDoc),
        (status = 428, description = "If-Match missing", body = crate::error::ProblemDoc)))]
pub async fn delete(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    require(&actor, DELETERS, "consents:write")?;
    let version = expected_version(&headers)?;
    let mut tx = begin_as(&pool, &actor).await?;
    record::delete(&mut tx, &actor, id, version).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/dfr/consents/{id}/transitions", tag = "consent", request_body = Transition,
    params(("id" = Uuid, Path), ("If-Match" = String, Header, description = "The version last read")),
    security(("bearer" = [])),
    responses((status = 200, description = "The new state, with history", body = ConsentView),
        (status = 412, description = "Stale version", body = crate::error::ProblemDoc),
        (status = 422, description = "Not a permitted transition", body = crate::error::ProblemDoc)))]
pub async fn transition(
    State(pool): State<PgPool>,
    State(metrics): State<Metrics>,
    actor: Actor,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    ApiJson(change): ApiJson<Transition>,
) -> ApiResult<Json<ConsentView>> {
    if actor.role == Role::ApiClient {
        return Err(ApiError::Forbidden(
            "API clients cannot change consent".into(),
        ));
    }
    record::check_transition(&change)?;
    let version = expected_version(&headers)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let updated = record::transition(&mut tx, &actor, id, version, &change).await?;
    tx.commit().await?;
    metrics
        .consents
        .with_label_values(&[change.state.as_str()])
        .inc();
    Ok(Json(updated))
}
