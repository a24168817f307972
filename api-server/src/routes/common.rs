//! What several registry handlers share.

use axum::http::{HeaderMap, header};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::auth::{Actor, Role};
use crate::error::{ApiError, ApiResult};

/// Staff who register and edit records.
pub fn require_staff(actor: &Actor, what: &str) -> ApiResult<()> {
    if matches!(
        actor.role,
        Role::NationalAdmin | Role::Supervisor | Role::Enumerator
    ) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "the {} role cannot {what}",
            actor.role.as_str()
        )))
    }
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
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::field("If-Match", "must be the ETag of the record, e.g. \"3\""))
}
