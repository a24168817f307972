//! Consent records: staff request consent for a purpose and recipient; the farmer (or staff on
//! the farmer's word) gives, refuses or withdraws it. Every change is kept in the history.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::common::{expected_version, require_scope, require_staff, visible_person_area};
use crate::audit;
use crate::auth::{Actor, Role};
use crate::consent;
use crate::db::begin_as;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::metrics::Metrics;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request))
        .routes(routes!(get))
        .routes(routes!(transition))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsentRequest {
    pub id: Option<Uuid>,
    pub person_id: Uuid,
    pub purpose: String,
    pub recipient: String,
    pub terms: String,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    /// given, refused, withdrawn or expired.
    pub state: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    state: String,
    at: DateTime<Utc>,
    actor: Uuid,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsentView {
    id: Uuid,
    version: i32,
    person_id: Uuid,
    purpose: String,
    recipient: String,
    terms: String,
    state: String,
    given_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    history: Vec<HistoryEntry>,
}

const COLUMNS: &str =
    "id, version, person_id, purpose, recipient, terms, state, given_at, expires_at";

async fn load(tx: &mut PgConnection, id: Uuid) -> ApiResult<ConsentView> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM consents WHERE id = $1 AND deleted_at IS NULL"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound)?;
    let history = sqlx::query(
        "SELECT state, at, actor FROM consent_history WHERE consent_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|h| {
        Ok(HistoryEntry {
            state: h.try_get("state")?,
            at: h.try_get("at")?,
            actor: h.try_get("actor")?,
        })
    })
    .collect::<ApiResult<Vec<_>>>()?;
    view(&row, history)
}

fn view(row: &PgRow, history: Vec<HistoryEntry>) -> ApiResult<ConsentView> {
    Ok(ConsentView {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        person_id: row.try_get("person_id")?,
        purpose: row.try_get("purpose")?,
        recipient: row.try_get("recipient")?,
        terms: row.try_get("terms")?,
        state: row.try_get("state")?,
        given_at: row.try_get("given_at")?,
        expires_at: row.try_get("expires_at")?,
        history,
    })
}

async fn record_history(
    tx: &mut PgConnection,
    id: Uuid,
    state: &str,
    actor: Uuid,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO consent_history (consent_id, seq, state, actor) \
         SELECT $1, coalesce(max(seq), 0) + 1, $2, $3 FROM consent_history WHERE consent_id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[utoipa::path(post, path = "/api/dfr/consents", tag = "consent", request_body = ConsentRequest,
    security(("bearer" = [])),
    responses((status = 201, description = "Consent requested", body = ConsentView),
        (status = 409, description = "The id is taken (duplicate_id)", body = crate::error::ProblemDoc),
        (status = 422, description = "Invalid field", body = crate::error::ProblemDoc)))]
pub async fn request(
    State(pool): State<PgPool>,
    actor: Actor,
    ApiJson(input): ApiJson<ConsentRequest>,
) -> ApiResult<(StatusCode, Json<ConsentView>)> {
    require_staff(&actor, "request consent")?;
    for (field, value, max) in [
        ("purpose", &input.purpose, 500),
        ("recipient", &input.recipient, 200),
        ("terms", &input.terms, 20_000),
    ] {
        if value.trim().is_empty() || value.chars().count() > max {
            return Err(ApiError::field(
                field,
                format!("must be 1 to {max} characters"),
            ));
        }
    }
    if input.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(ApiError::field("expiresAt", "must be in the future"));
    }
    let mut tx = begin_as(&pool, &actor).await?;
    let area = visible_person_area(&mut tx, input.person_id, "personId").await?;
    let id = input.id.unwrap_or_else(Uuid::new_v4);
    sqlx::query(
        "INSERT INTO consents (id, person_id, area_code, purpose, recipient, terms, state, expires_at, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, 'requested', $7, $8)",
    )
    .bind(id)
    .bind(input.person_id)
    .bind(&area)
    .bind(input.purpose.trim())
    .bind(input.recipient.trim())
    .bind(&input.terms)
    .bind(input.expires_at)
    .bind(actor.user_id)
    .execute(&mut *tx)
    .await?;
    record_history(&mut tx, id, "requested", actor.user_id).await?;
    let created = load(&mut tx, id).await?;
    let snapshot = json!({"id": id, "personId": input.person_id, "purpose": created.purpose, "state": "requested"});
    audit::record(
        &mut tx,
        Some(actor.user_id),
        "request",
        "consent",
        id.to_string(),
        None,
        Some(&snapshot),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/dfr/consents/{id}", tag = "consent", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "The consent and its history", body = ConsentView),
        (status = 404, description = "No such consent, or not yours to see", body = crate::error::ProblemDoc)))]
pub async fn get(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ConsentView>> {
    require_scope(&actor, "consents:read")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let consent = load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(consent))
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
    if !consent::STATES.contains(&change.state.as_str()) || change.state == "requested" {
        return Err(ApiError::field(
            "state",
            "must be given, refused, withdrawn or expired",
        ));
    }
    let version = expected_version(&headers)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let current = load(&mut tx, id).await?;
    if current.version != version {
        return Err(ApiError::StaleVersion {
            current: current.version,
        });
    }
    if !consent::may_follow(&current.state, &change.state) {
        return Err(ApiError::field(
            "state",
            format!("a {} consent cannot become {}", current.state, change.state),
        ));
    }
    sqlx::query(
        "UPDATE consents SET state = $2, version = version + 1, updated_at = now(), updated_by = $3, \
         given_at = CASE WHEN $2 = 'given' THEN now() ELSE given_at END WHERE id = $1 AND version = $4",
    )
    .bind(id)
    .bind(&change.state)
    .bind(actor.user_id)
    .bind(version)
    .execute(&mut *tx)
    .await?;
    record_history(&mut tx, id, &change.state, actor.user_id).await?;
    let updated = load(&mut tx, id).await?;
    let before = json!({"state": current.state, "version": current.version});
    let after = json!({"state": updated.state, "version": updated.version});
    audit::record(
        &mut tx,
        Some(actor.user_id),
        &change.state,
        "consent",
        id.to_string(),
        Some(&before),
        Some(&after),
    )
    .await?;
    tx.commit().await?;
    metrics
        .consents
        .with_label_values(&[change.state.as_str()])
        .inc();
    Ok(Json(updated))
}
