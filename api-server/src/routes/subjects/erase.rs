//! Erasure of a person: every PII column overwritten in place, in one transaction with its audit
//! event, so the person's data is gone from the live tables while the audit chain (ids and
//! digests only) still verifies. Shared by `POST /api/dfr/persons/{id}/erasure` and the
//! retention job, which erases persons deleted longer ago than their country keeps them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::audit;
use crate::error::{ApiError, ApiResult};

/// What an erasure changed.
#[derive(Serialize, Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Erasure {
    pub person_id: Uuid,
    /// When the person was erased (the first erasure's time for one erased before).
    pub erased_at: DateTime<Utc>,
    /// False when the person had been erased before: nothing was written this time.
    pub erased_now: bool,
    /// Plots whose location was blanked and that were deleted.
    pub plots: u64,
    /// Holdings on those plots, deleted.
    pub holdings: u64,
    pub farmer_profiles: u64,
    pub consents: u64,
    /// Households the person was removed from.
    pub households: u64,
    /// Form submissions about the person or their plots: answers cleared, deleted.
    pub form_submissions: u64,
    /// Sync conflicts whose kept device data was dropped.
    pub sync_conflicts: u64,
    /// Farmer accounts that were the person: disabled and no longer linked to them.
    pub user_accounts: u64,
}

/// Where an erased plot is: nowhere in particular.
const NO_LOCATION: &str = r#"{"type": "Point", "coordinates": [0, 0]}"#;

/// Who erased: a user, or the retention job (no user; the nil id in `updated_by`).
pub fn writer(actor: Option<Uuid>) -> Uuid {
    actor.unwrap_or(Uuid::nil())
}

/// Erases person `id` in the caller's transaction. The caller must see the person (row-level
/// security), deleted or not; a person erased before is answered as it stands.
pub async fn erase(tx: &mut PgConnection, actor: Option<Uuid>, id: Uuid) -> ApiResult<Erasure> {
    let row = sqlx::query("SELECT version, erased_at FROM persons WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ApiError::NotFound)?;
    let before_version: i32 = row.try_get("version")?;
    let mut erasure = Erasure {
        person_id: id,
        erased_at: Utc::now(),
        erased_now: false,
        plots: 0,
        holdings: 0,
        farmer_profiles: 0,
        consents: 0,
        households: 0,
        form_submissions: 0,
        sync_conflicts: 0,
        user_accounts: 0,
    };
    if let Some(at) = row.try_get::<Option<DateTime<Utc>>, _>("erased_at")? {
        erasure.erased_at = at;
        return Ok(erasure);
    }
    let by = writer(actor);
    let person_row = sqlx::query(
        "UPDATE persons SET national_id_cipher = '', national_id_index = 'erased:' || id::text, \
         national_id_last4 = '', given_name = '', family_name = '', sex = 0, \
         birth_date = DATE '1900-01-01', birth_date_estimated = true, phone_cipher = NULL, \
         email_cipher = NULL, status = 'inactive', version = version + 1, updated_at = now(), \
         updated_by = $2, deleted_at = coalesce(deleted_at, now()), erased_at = now() \
         WHERE id = $1 RETURNING version, erased_at",
    )
    .bind(id)
    .bind(by)
    .fetch_one(&mut *tx)
    .await?;
    erasure.erased_at = person_row.try_get("erased_at")?;
    erasure.erased_now = true;
    let plots: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE plots SET geometry = $2::jsonb, area_ha = NULL, version = version + 1, \
         updated_at = now(), updated_by = $3, deleted_at = coalesce(deleted_at, now()) \
         WHERE person_id = $1 RETURNING id",
    )
    .bind(id)
    .bind(NO_LOCATION)
    .bind(by)
    .fetch_all(&mut *tx)
    .await?;
    erasure.plots = plots.len() as u64;
    let holdings: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE holdings SET version = version + 1, updated_at = now(), updated_by = $2, \
         deleted_at = now() WHERE plot_id = ANY($1) AND deleted_at IS NULL RETURNING id",
    )
    .bind(&plots)
    .bind(by)
    .fetch_all(&mut *tx)
    .await?;
    erasure.holdings = holdings.len() as u64;
    let profiles: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE farmer_profiles SET cooperative = NULL, years_farming = NULL, \
         version = version + 1, updated_at = now(), updated_by = $2, \
         deleted_at = coalesce(deleted_at, now()) WHERE person_id = $1 RETURNING id",
    )
    .bind(id)
    .bind(by)
    .fetch_all(&mut *tx)
    .await?;
    erasure.farmer_profiles = profiles.len() as u64;
    let consents: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE consents SET version = version + 1, updated_at = now(), updated_by = $2, \
         deleted_at = now() WHERE person_id = $1 AND deleted_at IS NULL RETURNING id",
    )
    .bind(id)
    .bind(by)
    .fetch_all(&mut *tx)
    .await?;
    erasure.consents = consents.len() as u64;
    let households: Vec<Uuid> = sqlx::query_scalar(
        "DELETE FROM household_members WHERE person_id = $1 RETURNING household_id",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    // A household whose members changed is a new version, so devices pull it again.
    sqlx::query(
        "UPDATE households SET version = version + 1, updated_at = now(), updated_by = $2 \
         WHERE id = ANY($1)",
    )
    .bind(&households)
    .bind(by)
    .execute(&mut *tx)
    .await?;
    erasure.households = households.len() as u64;
    let mut subjects = vec![id];
    subjects.extend(&plots);
    let submissions: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE form_submissions SET data = '{}'::jsonb, version = version + 1, \
         updated_at = now(), updated_by = $2, deleted_at = coalesce(deleted_at, now()) \
         WHERE subject_id = ANY($1) RETURNING id",
    )
    .bind(&subjects)
    .bind(by)
    .fetch_all(&mut *tx)
    .await?;
    erasure.form_submissions = submissions.len() as u64;
    let mut records = vec![id];
    records.extend(&submissions);
    records.extend(&plots);
    records.extend(&holdings);
    records.extend(&profiles);
    records.extend(&consents);
    erasure.sync_conflicts = sqlx::query(
        "UPDATE sync_conflicts SET client_data_cipher = NULL \
         WHERE record_id = ANY($1) AND client_data_cipher IS NOT NULL",
    )
    .bind(&records)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    erasure.user_accounts = sqlx::query(
        "UPDATE users SET person_id = NULL, disabled_at = coalesce(disabled_at, now()), \
         updated_at = now() WHERE person_id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let after_version: i32 = person_row.try_get("version")?;
    audit::record(
        tx,
        actor,
        "erase",
        "person",
        id.to_string(),
        Some(&json!({"id": id, "version": before_version})),
        Some(&json!({"id": id, "version": after_version, "erased": true})),
    )
    .await?;
    Ok(erasure)
}
