//! What several registry handlers share.

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
