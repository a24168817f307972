//! Farmer profiles as stored (one per person, in the person's area): the checks, the SQL, and
//! the writes as operations on the caller's transaction (each with its audit event), shared by
//! the HTTP handlers and the sync push.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::audit;
use crate::auth::Actor;
use crate::error::{ApiError, ApiResult};
use crate::routes::common::{
    Table, soft_delete_audited, stale_or_missing, visible_person_area, write_error,
};
use crate::routes::paging;

pub const ACTIVITIES: &[&str] = &["crops", "livestock", "mixed", "fisheries", "forestry"];
const COLUMNS: &str =
    "id, version, person_id, area_code, primary_activity, cooperative, years_farming";

#[derive(Deserialize, Serialize, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileInput {
    /// Client-generatable, like every record id.
    pub id: Option<Uuid>,
    /// The person cannot change once the profile exists.
    pub person_id: Uuid,
    /// crops, livestock, mixed, fisheries or forestry.
    pub primary_activity: String,
    pub cooperative: Option<String>,
    pub years_farming: Option<i32>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileView {
    pub id: Uuid,
    pub version: i32,
    pub person_id: Uuid,
    pub area_code: String,
    pub primary_activity: String,
    pub cooperative: Option<String>,
    pub years_farming: Option<i32>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProfileQuery {
    pub area: Option<String>,
    pub primary_activity: Option<String>,
    pub cooperative: Option<String>,
    /// The `next` cursor of the previous page.
    pub after: Option<Uuid>,
    pub limit: Option<i64>,
}

fn check(input: &ProfileInput) -> ApiResult<()> {
    if !ACTIVITIES.contains(&input.primary_activity.as_str()) {
        return Err(ApiError::field(
            "primaryActivity",
            format!("must be one of {}", ACTIVITIES.join(", ")),
        ));
    }
    if input
        .cooperative
        .as_ref()
        .is_some_and(|c| c.trim().is_empty() || c.chars().count() > 200)
    {
        return Err(ApiError::field(
            "cooperative",
            "must be 1 to 200 characters",
        ));
    }
    if input.years_farming.is_some_and(|y| !(0..=100).contains(&y)) {
        return Err(ApiError::field("yearsFarming", "must be between 0 and 100"));
    }
    Ok(())
}

fn view(row: &PgRow) -> ApiResult<ProfileView> {
    Ok(ProfileView {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        person_id: row.try_get("person_id")?,
        area_code: row.try_get("area_code")?,
        primary_activity: row.try_get("primary_activity")?,
        cooperative: row.try_get("cooperative")?,
        years_farming: row.try_get("years_farming")?,
    })
}

fn snapshot(profile: &ProfileView) -> Value {
    json!(profile)
}

pub async fn create(
    tx: &mut PgConnection,
    actor: &Actor,
    input: ProfileInput,
) -> ApiResult<ProfileView> {
    check(&input)?;
    let area = visible_person_area(tx, input.person_id, "personId").await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO farmer_profiles (id, person_id, area_code, primary_activity, cooperative, years_farming, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    )))
    .bind(input.id.unwrap_or_else(Uuid::new_v4))
    .bind(input.person_id)
    .bind(&area)
    .bind(&input.primary_activity)
    .bind(&input.cooperative)
    .bind(input.years_farming)
    .bind(actor.user_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(write_error)?;
    let created = view(&row)?;
    let after = snapshot(&created);
    audit::record(
        tx,
        Some(actor.user_id),
        "create",
        "farmer_profile",
        created.id.to_string(),
        None,
        Some(&after),
    )
    .await?;
    Ok(created)
}

pub async fn update(
    tx: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    version: i32,
    input: ProfileInput,
) -> ApiResult<ProfileView> {
    check(&input)?;
    let before = find(tx, id).await?.ok_or(ApiError::NotFound)?;
    if before.person_id != input.person_id {
        return Err(ApiError::field(
            "personId",
            "a farmer profile belongs to its person for good",
        ));
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE farmer_profiles SET primary_activity = $3, cooperative = $4, years_farming = $5, \
         updated_by = $6, version = version + 1, updated_at = now() \
         WHERE id = $1 AND version = $2 AND deleted_at IS NULL RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(version)
    .bind(&input.primary_activity)
    .bind(&input.cooperative)
    .bind(input.years_farming)
    .bind(actor.user_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(write_error)?;
    let Some(row) = row else {
        return Err(stale_or_missing(tx, Table::FarmerProfiles, id).await);
    };
    let updated = view(&row)?;
    let (before, after) = (snapshot(&before), snapshot(&updated));
    audit::record(
        tx,
        Some(actor.user_id),
        "update",
        "farmer_profile",
        id.to_string(),
        Some(&before),
        Some(&after),
    )
    .await?;
    Ok(updated)
}

pub async fn delete(
    tx: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    version: i32,
) -> ApiResult<i32> {
    soft_delete_audited(
        tx,
        Table::FarmerProfiles,
        "farmer_profile",
        id,
        version,
        actor,
    )
    .await
}

pub async fn find(tx: &mut PgConnection, id: Uuid) -> ApiResult<Option<ProfileView>> {
    Ok(by_ids(tx, &[id]).await?.pop())
}

/// The live profile of a person, if the caller may see it.
pub async fn of_person(tx: &mut PgConnection, person: Uuid) -> ApiResult<Option<ProfileView>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM farmer_profiles WHERE person_id = $1 AND deleted_at IS NULL"
    )))
    .bind(person)
    .fetch_optional(&mut *tx)
    .await?
    .as_ref()
    .map(view)
    .transpose()
}

pub async fn by_ids(tx: &mut PgConnection, ids: &[Uuid]) -> ApiResult<Vec<ProfileView>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM farmer_profiles WHERE id = ANY($1) AND deleted_at IS NULL"
    )))
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(view)
    .collect()
}

/// Up to `paging::fetch(limit)` live profiles in id order after the cursor.
pub async fn list(
    tx: &mut PgConnection,
    query: &ProfileQuery,
    limit: i64,
) -> ApiResult<Vec<ProfileView>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM farmer_profiles WHERE deleted_at IS NULL \
         AND ($1::text IS NULL OR area_code = $1) AND ($2::text IS NULL OR primary_activity = $2) \
         AND ($3::text IS NULL OR cooperative = $3) AND ($4::uuid IS NULL OR id > $4) \
         ORDER BY id LIMIT $5"
    )))
    .bind(&query.area)
    .bind(&query.primary_activity)
    .bind(&query.cooperative)
    .bind(query.after)
    .bind(paging::fetch(limit))
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(view)
    .collect()
}
