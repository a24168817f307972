//! The person endpoints: role and scope checks, then the store in the caller's transaction, the
//! audit event and the response with its ETag.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use super::input::{Page, PersonInput, PersonView, Pii, SearchQuery};
use super::store::{self, Stored};
use crate::audit;
use crate::auth::{Actor, Role};
use crate::constraint;
use crate::crypto::KeyRing;
use crate::db::begin_as;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::metrics::Metrics;
use crate::routes::common::expected_version;

const READERS: &[Role] = &[
    Role::NationalAdmin,
    Role::Supervisor,
    Role::Enumerator,
    Role::Farmer,
    Role::ApiClient,
];
const WRITERS: &[Role] = &[Role::NationalAdmin, Role::Supervisor, Role::Enumerator];
const DELETERS: &[Role] = &[Role::NationalAdmin, Role::Supervisor];

fn require(actor: &Actor, allowed: &[Role], scope: &str) -> ApiResult<()> {
    if !allowed.contains(&actor.role) {
        return Err(ApiError::Forbidden(format!(
            "the {} role cannot do this",
            actor.role.as_str()
        )));
    }
    if !actor.has_scope(scope) {
        return Err(ApiError::Forbidden(format!(
            "the token lacks the {scope} scope"
        )));
    }
    Ok(())
}

fn with_etag(status: StatusCode, person: PersonView) -> Response {
    let etag = format!("\"{}\"", person.version);
    let mut response = (status, Json(person)).into_response();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

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
    let input = input.checked()?;
    let stored = Stored::encrypt(&ring, &input)?;
    let mut tx = begin_as(&pool, &actor).await?;
    if let Some(holder) =
        store::holder_of_national_id(&mut tx, &input.national_id.system, stored.index()).await?
    {
        if input.id == Some(holder) {
            return replay(&mut tx, &ring, &actor, &input, holder).await;
        }
        return Err(ApiError::DuplicateNationalId {
            existing: Some(format!("/api/dfr/persons/{holder}")),
        });
    }
    let id = input.id.unwrap_or_else(Uuid::new_v4);
    let row = store::insert(&mut tx, id, &input, &stored, &actor)
        .await
        .map_err(store::write_error)?;
    let id: Uuid = row.try_get("id")?;
    audit::record(
        &mut tx,
        Some(actor.user_id),
        "create",
        "person",
        id.to_string(),
        None,
        Some(&store::snapshot(&row)?),
    )
    .await?;
    tx.commit().await?;
    metrics.registrations.inc();
    let person = store::view(&ring, Pii::for_role(actor.role), &row)?;
    Ok(with_etag(StatusCode::CREATED, person))
}

/// A create sent again with the id it was registered under (a client that lost the first
/// answer): the person as it stands if the request describes it, else the id is taken.
async fn replay(
    tx: &mut PgConnection,
    ring: &KeyRing,
    actor: &Actor,
    input: &PersonInput,
    id: Uuid,
) -> ApiResult<Response> {
    let taken = || ApiError::Taken(&constraint::PERSON_ID);
    let row = store::find(tx, id).await?.ok_or_else(taken)?;
    if !input.describes(&store::view(ring, Pii::Clear, &row)?) {
        return Err(taken());
    }
    let person = store::view(ring, Pii::for_role(actor.role), &row)?;
    Ok(with_etag(StatusCode::OK, person))
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
    Ok(with_etag(StatusCode::OK, person))
}

#[utoipa::path(get, path = "/api/dfr/persons", tag = "persons", params(SearchQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "A page of persons; follow `next` with `after`", body = Page)))]
pub async fn search(
    State(pool): State<PgPool>,
    State(ring): State<Arc<KeyRing>>,
    actor: Actor,
    Query(query): Query<SearchQuery>,
) -> ApiResult<Json<Page>> {
    require(&actor, READERS, "persons:read")?;
    let filter = query.filter(&ring)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let rows = store::search(&mut tx, &filter).await?;
    tx.commit().await?;
    let more = rows.len() as i64 > filter.limit;
    let pii = Pii::for_role(actor.role);
    let items = rows
        .iter()
        .take(usize::try_from(filter.limit).unwrap_or(50))
        .map(|row| store::view(&ring, pii, row))
        .collect::<ApiResult<Vec<_>>>()?;
    let next = if more {
        items.last().map(|p| p.id.to_string())
    } else {
        None
    };
    Ok(Json(Page { items, next }))
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
    let input = input.checked()?;
    let stored = Stored::encrypt(&ring, &input)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let before = store::find(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    let row = store::update(&mut tx, id, version, &input, &stored, &actor)
        .await
        .map_err(store::write_error)?;
    let Some(row) = row else {
        return Err(store::stale_or_missing(&mut tx, id).await);
    };
    audit::record(
        &mut tx,
        Some(actor.user_id),
        "update",
        "person",
        id.to_string(),
        Some(&store::snapshot(&before)?),
        Some(&store::snapshot(&row)?),
    )
    .await?;
    tx.commit().await?;
    let person = store::view(&ring, Pii::for_role(actor.role), &row)?;
    Ok(with_etag(StatusCode::OK, person))
}

#[utoipa::path(delete, path = "/api/dfr/persons/{id}", tag = "persons",
    params(("id" = Uuid, Path), ("If-Match" = String, Header, description = "The ETag last read")),
    security(("bearer" = [])),
    responses((status = 204, description = "Soft-deleted (tombstone kept)"),
        (status = 412, description = "Stale version", body = crate::error::ProblemDoc)))]
pub async fn delete(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    require(&actor, DELETERS, "persons:write")?;
    let version = expected_version(&headers)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let row = store::soft_delete(&mut tx, id, version, &actor)
        .await
        .map_err(store::write_error)?;
    let Some(row) = row else {
        return Err(store::stale_or_missing(&mut tx, id).await);
    };
    audit::record(
        &mut tx,
        Some(actor.user_id),
        "delete",
        "person",
        id.to_string(),
        Some(&store::snapshot(&row)?),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
