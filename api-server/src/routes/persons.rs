//! Persons: create, read, search with keyset pagination, edit with If-Match, soft delete.
//! What a caller may see is decided by PostgreSQL's row-level security; these handlers add the
//! role checks, PII encryption and masking, duplicate detection and the audit event.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::common::expected_version;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::crypto::mask;
use crate::db::begin_as;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, search))
        .routes(routes!(get, update, delete))
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersonInput {
    /// Client-generated, so an offline device can create and reference records.
    pub id: Option<Uuid>,
    pub national_id: NationalId,
    pub given_name: String,
    pub family_name: String,
    /// ISO 5218: 0 not known, 1 male, 2 female, 9 not applicable.
    pub sex: i16,
    pub birth_date: NaiveDate,
    #[serde(default)]
    pub birth_date_estimated: bool,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub area_code: String,
    #[serde(default = "active")]
    pub status: String,
}

fn active() -> String {
    "active".into()
}

#[derive(Deserialize, Serialize, Debug, Clone, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NationalId {
    pub system: String,
    pub value: String,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonView {
    pub id: Uuid,
    pub version: i32,
    pub national_id: NationalId,
    pub given_name: String,
    pub family_name: String,
    pub sex: i16,
    pub birth_date: NaiveDate,
    pub birth_date_estimated: bool,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub area_code: String,
    pub status: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Uuid,
}

impl PersonInput {
    fn validate(&self) -> ApiResult<()> {
        let text = |field: &str, value: &str, max: usize| {
            if value.trim().is_empty() || value.chars().count() > max {
                Err(ApiError::field(
                    field,
                    format!("must be 1 to {max} characters"),
                ))
            } else {
                Ok(())
            }
        };
        text("nationalId.system", &self.national_id.system, 64)?;
        text("nationalId.value", &self.national_id.value, 64)?;
        text("givenName", &self.given_name, 200)?;
        text("familyName", &self.family_name, 200)?;
        if ![0, 1, 2, 9].contains(&self.sex) {
            return Err(ApiError::field(
                "sex",
                "must be an ISO 5218 code: 0, 1, 2 or 9",
            ));
        }
        let today = Utc::now().date_naive();
        if self.birth_date > today
            || self.birth_date < NaiveDate::from_ymd_opt(1880, 1, 1).unwrap_or(today)
        {
            return Err(ApiError::field(
                "birthDate",
                "must be a date between 1880-01-01 and today",
            ));
        }
        if let Some(phone) = &self.phone
            && !(phone.len() >= 5
                && phone.len() <= 20
                && phone
                    .trim_start_matches('+')
                    .chars()
                    .all(|c| c.is_ascii_digit()))
        {
            return Err(ApiError::field(
                "phone",
                "must be an international number such as +67612345678",
            ));
        }
        if let Some(email) = &self.email
            && !(email.len() <= 254
                && email
                    .split_once('@')
                    .is_some_and(|(a, d)| !a.is_empty() && d.contains('.')))
        {
            return Err(ApiError::field("email", "must be an e-mail address"));
        }
        if !["active", "inactive", "deceased"].contains(&self.status.as_str()) {
            return Err(ApiError::field(
                "status",
                "must be active, inactive or deceased",
            ));
        }
        Ok(())
    }
}

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

const READERS: &[Role] = &[
    Role::NationalAdmin,
    Role::Supervisor,
    Role::Enumerator,
    Role::Farmer,
    Role::ApiClient,
];
const WRITERS: &[Role] = &[Role::NationalAdmin, Role::Supervisor, Role::Enumerator];
const DELETERS: &[Role] = &[Role::NationalAdmin, Role::Supervisor];

const COLUMNS: &str = "id, version, national_id_system, national_id_cipher, given_name, family_name, sex, \
    birth_date, birth_date_estimated, phone_cipher, email_cipher, area_code, status, updated_at, updated_by";

fn view(state: &AppState, actor: &Actor, row: &PgRow) -> ApiResult<PersonView> {
    let reveal = |cipher: Option<String>| -> ApiResult<Option<String>> {
        cipher
            .map(|c| {
                state
                    .ring
                    .decrypt(&c)
                    .map_err(|e| ApiError::Internal(e.to_string()))
            })
            .transpose()
            .map(|plain| plain.map(|p| if actor.role.sees_pii() { p } else { mask(&p) }))
    };
    Ok(PersonView {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        national_id: NationalId {
            system: row.try_get("national_id_system")?,
            value: reveal(Some(row.try_get("national_id_cipher")?))?.unwrap_or_default(),
        },
        given_name: row.try_get("given_name")?,
        family_name: row.try_get("family_name")?,
        sex: row.try_get("sex")?,
        birth_date: row.try_get("birth_date")?,
        birth_date_estimated: row.try_get("birth_date_estimated")?,
        phone: reveal(row.try_get("phone_cipher")?)?,
        email: reveal(row.try_get("email_cipher")?)?,
        area_code: row.try_get("area_code")?,
        status: row.try_get("status")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

fn with_etag(status: StatusCode, person: PersonView) -> Response {
    let etag = format!("\"{}\"", person.version);
    let mut response = (status, Json(person)).into_response();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// An audit snapshot without plaintext PII.
fn snapshot(row: &PgRow) -> ApiResult<serde_json::Value> {
    Ok(json!({
        "id": row.try_get::<Uuid, _>("id")?.to_string(),
        "version": row.try_get::<i32, _>("version")?,
        "nationalIdCipher": row.try_get::<String, _>("national_id_cipher")?,
        "givenName": row.try_get::<String, _>("given_name")?,
        "familyName": row.try_get::<String, _>("family_name")?,
        "areaCode": row.try_get::<String, _>("area_code")?,
        "status": row.try_get::<String, _>("status")?,
    }))
}

async fn existing_with_national_id(
    tx: &mut PgConnection,
    system: &str,
    index: &str,
) -> ApiResult<Option<Uuid>> {
    Ok(sqlx::query_scalar("SELECT dfr_find_national_id($1, $2)")
        .bind(system)
        .bind(index)
        .fetch_one(&mut *tx)
        .await?)
}

fn map_write_error(error: sqlx::Error) -> ApiError {
    if let sqlx::Error::Database(db) = &error {
        match db.code().as_deref() {
            // new row violates row-level security policy
            Some("42501") => {
                return ApiError::Forbidden(
                    "the record is outside the areas you may change".into(),
                );
            }
            Some("23503") => {
                return ApiError::field("areaCode", "is not a known administrative area");
            }
            _ => {}
        }
    }
    ApiError::Database(error)
}

/// The column values of a person as stored: PII encrypted, the national ID also as its blind
/// index and last four characters.
struct Stored {
    cipher: String,
    index: String,
    last4: String,
    phone: Option<String>,
    email: Option<String>,
}

fn stored(state: &AppState, input: &PersonInput) -> ApiResult<Stored> {
    let ring = &state.ring;
    let encrypt = |plain: &str| {
        ring.encrypt(plain)
            .map_err(|e| ApiError::Internal(e.to_string()))
    };
    let value = &input.national_id.value;
    Ok(Stored {
        cipher: encrypt(value)?,
        index: ring.blind_index(&input.national_id.system, value),
        last4: value
            .chars()
            .skip(value.chars().count().saturating_sub(4))
            .collect(),
        phone: input.phone.as_deref().map(encrypt).transpose()?,
        email: input.email.as_deref().map(encrypt).transpose()?,
    })
}

/// The columns an insert and an update both write, in this order.
const WRITTEN: &[&str] = &[
    "national_id_system",
    "national_id_cipher",
    "national_id_index",
    "national_id_last4",
    "given_name",
    "family_name",
    "sex",
    "birth_date",
    "birth_date_estimated",
    "phone_cipher",
    "email_cipher",
    "area_code",
    "status",
    "updated_by",
];

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn bind_written<'q>(
    query: PgQuery<'q>,
    input: &'q PersonInput,
    stored: &'q Stored,
    actor: &Actor,
) -> PgQuery<'q> {
    query
        .bind(&input.national_id.system)
        .bind(&stored.cipher)
        .bind(&stored.index)
        .bind(&stored.last4)
        .bind(input.given_name.trim())
        .bind(input.family_name.trim())
        .bind(input.sex)
        .bind(input.birth_date)
        .bind(input.birth_date_estimated)
        .bind(&stored.phone)
        .bind(&stored.email)
        .bind(&input.area_code)
        .bind(&input.status)
        .bind(actor.user_id)
}

fn insert_sql() -> String {
    let placeholders: Vec<String> = (2..=WRITTEN.len() + 1).map(|n| format!("${n}")).collect();
    format!(
        "INSERT INTO persons (id, {}) VALUES ($1, {}) RETURNING {COLUMNS}",
        WRITTEN.join(", "),
        placeholders.join(", ")
    )
}

fn update_sql() -> String {
    let sets: Vec<String> = WRITTEN
        .iter()
        .enumerate()
        .map(|(i, column)| format!("{column} = ${}", i + 3))
        .collect();
    format!(
        "UPDATE persons SET version = version + 1, updated_at = now(), {} \
         WHERE id = $1 AND version = $2 AND deleted_at IS NULL RETURNING {COLUMNS}",
        sets.join(", ")
    )
}

/// ID systems are codes: `ton-nid` and `TON-NID` are one system.
fn normalize_system(system: &str) -> String {
    system.trim().to_uppercase()
}

#[utoipa::path(post, path = "/api/dfr/persons", tag = "persons", request_body = PersonInput,
    security(("bearer" = [])),
    responses((status = 201, description = "Registered; ETag is the version", body = PersonView),
        (status = 409, description = "A person with this national ID exists", body = crate::error::ProblemDoc),
        (status = 422, description = "Invalid field", body = crate::error::ProblemDoc)))]
pub async fn create(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(mut input): ApiJson<PersonInput>,
) -> ApiResult<Response> {
    require(&actor, WRITERS, "persons:write")?;
    input.national_id.system = normalize_system(&input.national_id.system);
    input.validate()?;
    let ring = &state.ring;
    let index = ring.blind_index(&input.national_id.system, &input.national_id.value);
    let mut tx = begin_as(&state.pool, &actor).await?;
    if let Some(existing) =
        existing_with_national_id(&mut tx, &input.national_id.system, &index).await?
    {
        return Err(ApiError::DuplicateNationalId {
            existing: format!("/api/dfr/persons/{existing}"),
        });
    }
    let stored = stored(&state, &input)?;
    let id = input.id.unwrap_or_else(Uuid::new_v4);
    let query = sqlx::query(sqlx::AssertSqlSafe(insert_sql())).bind(id);
    let row = bind_written(query, &input, &stored, &actor)
        .fetch_one(&mut *tx)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
                ApiError::DuplicateNationalId {
                    existing: "/api/dfr/persons".into(),
                }
            }
            _ => map_write_error(error),
        })?;
    let id: Uuid = row.try_get("id")?;
    audit::record(
        &mut tx,
        Some(actor.user_id),
        "create",
        "person",
        id.to_string(),
        None,
        Some(&snapshot(&row)?),
    )
    .await?;
    tx.commit().await?;
    state.metrics.registrations.inc();
    Ok(with_etag(StatusCode::CREATED, view(&state, &actor, &row)?))
}

#[utoipa::path(get, path = "/api/dfr/persons/{id}", tag = "persons", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "The person; ETag is the version", body = PersonView),
        (status = 404, description = "No such person, or not in your areas", body = crate::error::ProblemDoc)))]
pub async fn get(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    require(&actor, READERS, "persons:read")?;
    let mut tx = begin_as(&state.pool, &actor).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM persons WHERE id = $1 AND deleted_at IS NULL"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(with_etag(StatusCode::OK, view(&state, &actor, &row)?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    area: Option<String>,
    status: Option<String>,
    /// Matches the start of the family or given name, case-insensitively.
    name: Option<String>,
    /// Exact national ID, found through the blind index.
    national_id_system: Option<String>,
    national_id: Option<String>,
    /// The `next` cursor of the previous page.
    after: Option<Uuid>,
    limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Page {
    items: Vec<PersonView>,
    next: Option<String>,
}

#[utoipa::path(get, path = "/api/dfr/persons", tag = "persons", params(SearchQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "A page of persons; follow `next` with `after`", body = Page)))]
pub async fn search(
    State(state): State<AppState>,
    actor: Actor,
    Query(query): Query<SearchQuery>,
) -> ApiResult<Json<Page>> {
    require(&actor, READERS, "persons:read")?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 500"));
    }
    let index = match (&query.national_id_system, &query.national_id) {
        (Some(system), Some(value)) => Some(state.ring.blind_index(system, value)),
        (None, None) => None,
        _ => {
            return Err(ApiError::field(
                "nationalId",
                "give both nationalIdSystem and nationalId",
            ));
        }
    };
    let name = query
        .name
        .as_ref()
        .map(|n| format!("{}%", n.trim().to_lowercase().replace(['%', '_'], "")));
    let mut tx = begin_as(&state.pool, &actor).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM persons WHERE deleted_at IS NULL \
         AND ($1::text IS NULL OR area_code = $1) AND ($2::text IS NULL OR status = $2) \
         AND ($3::text IS NULL OR lower(family_name) LIKE $3 OR lower(given_name) LIKE $3) \
         AND ($4::text IS NULL OR (national_id_system = $5 AND national_id_index = $4)) \
         AND ($6::uuid IS NULL OR id > $6) ORDER BY id LIMIT $7"
    )))
    .bind(&query.area)
    .bind(&query.status)
    .bind(&name)
    .bind(&index)
    .bind(query.national_id_system.as_deref().map(normalize_system))
    .bind(query.after)
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let more = rows.len() as i64 > limit;
    let items = rows
        .iter()
        .take(usize::try_from(limit).unwrap_or(50))
        .map(|row| view(&state, &actor, row))
        .collect::<ApiResult<Vec<_>>>()?;
    let next = if more {
        items.last().map(|p| p.id.to_string())
    } else {
        None
    };
    Ok(Json(Page { items, next }))
}

async fn stale_or_missing(tx: &mut PgConnection, id: Uuid) -> ApiError {
    match sqlx::query_scalar::<_, i32>(
        "SELECT version FROM persons WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    {
        Ok(Some(current)) => ApiError::StaleVersion { current },
        Ok(None) => ApiError::NotFound,
        Err(error) => ApiError::Database(error),
    }
}

#[utoipa::path(put, path = "/api/dfr/persons/{id}", tag = "persons", request_body = PersonInput,
    params(("id" = Uuid, Path), ("If-Match" = String, Header, description = "The ETag last read")),
    security(("bearer" = [])),
    responses((status = 200, description = "Updated", body = PersonView),
        (status = 412, description = "Stale version", body = crate::error::ProblemDoc),
        (status = 428, description = "If-Match missing", body = crate::error::ProblemDoc)))]
pub async fn update(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    ApiJson(mut input): ApiJson<PersonInput>,
) -> ApiResult<Response> {
    require(&actor, WRITERS, "persons:write")?;
    input.national_id.system = normalize_system(&input.national_id.system);
    let version = expected_version(&headers)?;
    input.validate()?;
    let stored = stored(&state, &input)?;
    let mut tx = begin_as(&state.pool, &actor).await?;
    let before = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM persons WHERE id = $1 AND deleted_at IS NULL"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound)?;
    let query = sqlx::query(sqlx::AssertSqlSafe(update_sql()))
        .bind(id)
        .bind(version);
    let row = bind_written(query, &input, &stored, &actor)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_write_error)?;
    let Some(row) = row else {
        return Err(stale_or_missing(&mut tx, id).await);
    };
    audit::record(
        &mut tx,
        Some(actor.user_id),
        "update",
        "person",
        id.to_string(),
        Some(&snapshot(&before)?),
        Some(&snapshot(&row)?),
    )
    .await?;
    tx.commit().await?;
    Ok(with_etag(StatusCode::OK, view(&state, &actor, &row)?))
}

#[utoipa::path(delete, path = "/api/dfr/persons/{id}", tag = "persons",
    params(("id" = Uuid, Path), ("If-Match" = String, Header, description = "The ETag last read")),
    security(("bearer" = [])),
    responses((status = 204, description = "Soft-deleted (tombstone kept)"),
        (status = 412, description = "Stale version", body = crate::error::ProblemDoc)))]
pub async fn delete(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    require(&actor, DELETERS, "persons:write")?;
    let version = expected_version(&headers)?;
    let mut tx = begin_as(&state.pool, &actor).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE persons SET deleted_at = now(), version = version + 1, updated_at = now(), updated_by = $3 \
         WHERE id = $1 AND version = $2 AND deleted_at IS NULL RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(version)
    .bind(actor.user_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(map_write_error)?;
    let Some(row) = row else {
        return Err(stale_or_missing(&mut tx, id).await);
    };
    audit::record(
        &mut tx,
        Some(actor.user_id),
        "delete",
        "person",
        id.to_string(),
        Some(&snapshot(&row)?),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
