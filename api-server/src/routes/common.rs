//! What the registry handlers share: who may do what, the If-Match version check, the ETag on
//! an answer, and the conditional soft delete every versioned table uses.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::auth::{Actor, Role};
use crate::error::{ApiError, ApiResult};

/// Who reads registry records (row-level security then decides which rows).
pub const READERS: &[Role] = &[
    Role::NationalAdmin,
    Role::Supervisor,
    Role::Enumerator,
    Role::Farmer,
    Role::ApiClient,
];
/// Staff who register and edit records.
pub const WRITERS: &[Role] = &[Role::NationalAdmin, Role::Supervisor, Role::Enumerator];
/// Who soft-deletes records: enumerators register and correct, supervisors remove.
pub const DELETERS: &[Role] = &[Role::NationalAdmin, Role::Supervisor];

/// The caller's role is one of `allowed` and, for an API client, its token has `scope`.
pub fn require(actor: &Actor, allowed: &[Role], scope: &str) -> ApiResult<()> {
    if !allowed.contains(&actor.role) {
        return Err(ApiError::Forbidden(format!(
            "the {} role cannot do this",
            actor.role.as_str()
        )));
    }
    require_scope(actor, scope)
}

pub fn require_scope(actor: &Actor, scope: &str) -> ApiResult<()> {
    if actor.has_scope(scope) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "the token lacks the {scope} scope"
        )))
    }
}

/// The area of a person the caller may see; row-level security hides the others.
pub async fn visible_person_area(
    tx: &mut PgConnection,
    person: Uuid,
    field: &str,
) -> ApiResult<String> {
    sqlx::query_scalar("SELECT area_code FROM persons WHERE id = $1 AND deleted_at IS NULL")
        .bind(person)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::field(field, "no such person in the areas you may see"))
}

/// The version a change was based on, from If-Match (the ETag the caller last read).
pub fn expected_version(headers: &HeaderMap) -> ApiResult<i32> {
    let value = headers
        .get(header::IF_MATCH)
        .ok_or(ApiError::PreconditionRequired)?;
    value
        .to_str()
        .ok()
        .and_then(etag_version)
        .ok_or_else(|| ApiError::field("If-Match", "must be the ETag of the record, e.g. \"3\""))
}

/// The version in an ETag as `with_etag` writes it, `"3"` (or weak, `W/"3"`): exactly what
/// the document's pattern for If-Match (`openapi::ETAG_PATTERN`) admits, 1 to 9 digits, so
/// never more than an i32 holds.
fn etag_version(etag: &str) -> Option<i32> {
    let quoted = etag.strip_prefix("W/").unwrap_or(etag);
    let digits = quoted.strip_prefix('"')?.strip_suffix('"')?;
    if (1..=9).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// A record as JSON with its version as the ETag, which a later If-Match sends back.
pub fn with_etag<T: Serialize>(status: StatusCode, version: i32, body: T) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// The versioned registry tables. Table names cannot be bound as parameters, so the SQL that
/// works on any of them takes one of these, never a string from a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Persons,
    Households,
    FarmerProfiles,
    Plots,
    Holdings,
    Consents,
    FormSubmissions,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Persons => "persons",
            Table::Households => "households",
            Table::FarmerProfiles => "farmer_profiles",
            Table::Plots => "plots",
            Table::Holdings => "holdings",
            Table::Consents => "consents",
            Table::FormSubmissions => "form_submissions",
        }
    }
}

/// Why a conditional change matched no row: the version moved on, or the record is gone (or
/// outside the caller's areas, which row-level security makes the same thing).
pub async fn stale_or_missing(tx: &mut PgConnection, table: Table, id: Uuid) -> ApiError {
    match sqlx::query_scalar::<_, i32>(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM {} WHERE id = $1 AND deleted_at IS NULL",
        table.name()
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    {
        Ok(Some(current)) => ApiError::StaleVersion { current },
        Ok(None) => ApiError::NotFound,
        Err(error) => ApiError::Database(error),
    }
}

/// Leaves a tombstone if the record is live at `version`; the row as it now stands.
pub async fn soft_delete(
    tx: &mut PgConnection,
    table: Table,
    id: Uuid,
    version: i32,
    actor: &Actor,
) -> ApiResult<PgRow> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {} SET deleted_at = now(), version = version + 1, updated_at = now(), updated_by = $3 \
         WHERE id = $1 AND version = $2 AND deleted_at IS NULL RETURNING *",
        table.name()
    )))
    .bind(id)
    .bind(version)
    .bind(actor.user_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(write_error)?;
    match row {
        Some(row) => Ok(row),
        None => Err(stale_or_missing(tx, table, id).await),
    }
}

/// Leaves a tombstone as [`soft_delete`] does and records the delete in the audit chain with
/// the id and version it had; the tombstone's version.
pub async fn soft_delete_audited(
    tx: &mut PgConnection,
    table: Table,
    entity: &str,
    id: Uuid,
    version: i32,
    actor: &Actor,
) -> ApiResult<i32> {
    let row = soft_delete(tx, table, id, version, actor).await?;
    let before = id_and_version(&row)?;
    crate::audit::record(
        tx,
        Some(actor.user_id),
        "delete",
        entity,
        id.to_string(),
        Some(&before),
        None,
    )
    .await?;
    Ok(row.try_get("version")?)
}

/// The id and version of a row, for the audit snapshot of a delete.
pub fn id_and_version(row: &PgRow) -> ApiResult<serde_json::Value> {
    Ok(serde_json::json!({
        "id": row.try_get::<Uuid, _>("id")?,
        "version": row.try_get::<i32, _>("version")?,
    }))
}

/// A refused write: a row outside the caller's areas (row-level security's WITH CHECK), else
/// whatever constraint refused it.
pub fn write_error(error: sqlx::Error) -> ApiError {
    let outside_areas = matches!(
        &error,
        sqlx::Error::Database(db) if db.code().as_deref() == Some("42501")
    );
    if outside_areas {
        ApiError::Forbidden("the record is outside the areas you may change".into())
    } else {
        ApiError::from(error)
    }
}

/// An edit names its record in the path; an id in the body, if any, must be the same one.
pub fn same_id(in_body: Option<Uuid>, in_path: Uuid) -> ApiResult<()> {
    match in_body {
        Some(id) if id != in_path => Err(ApiError::field(
            "id",
            "differs from the id in the path; a record's id cannot change",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::etag_version;

    #[test]
    fn if_match_takes_the_etag_as_written() {
        assert_eq!(etag_version("\"3\""), Some(3));
        assert_eq!(etag_version("W/\"12\""), Some(12));
        assert_eq!(etag_version("\"999999999\""), Some(999_999_999));
        for bad in [
            "3",
            "*",
            "\"\"",
            "\"-1\"",
            "\"1234567890\"",
            "\"3",
            "W/3",
            " \"3\"",
            "\"٣\"",
        ] {
            assert_eq!(etag_version(bad), None, "{bad}");
        }
    }
}
