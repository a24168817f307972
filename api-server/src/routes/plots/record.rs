//! Plots as stored: what a client sends and gets back, the checks, the SQL, and the writes as
//! operations on the caller's transaction (each with its audit event), shared by the HTTP
//! handlers and the sync push.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::audit;
use crate::auth::Actor;
use crate::error::{ApiError, ApiResult};
use crate::geometry;
use crate::routes::common::{
    Table, soft_delete_audited, stale_or_missing, visible_person_area, write_error,
};
use crate::routes::paging;

#[derive(Deserialize, Serialize, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlotInput {
    pub id: Option<Uuid>,
    pub person_id: Uuid,
    pub geometry: Value,
    pub tenure: String,
    pub land_use: String,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlotView {
    pub id: Uuid,
    pub version: i32,
    pub person_id: Uuid,
    pub area_code: String,
    pub geometry: Value,
    pub area_ha: Option<f64>,
    pub tenure: String,
    pub land_use: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PlotQuery {
    pub person_id: Option<Uuid>,
    pub area: Option<String>,
    pub tenure: Option<String>,
    pub land_use: Option<String>,
    /// The `next` cursor of the previous page.
    pub after: Option<Uuid>,
    pub limit: Option<i64>,
}

pub const TENURES: &[&str] = &["owned", "leased", "customary", "communal", "other"];
pub const LAND_USES: &[&str] = &["cropland", "pasture", "agroforestry", "fallow", "other"];
const COLUMNS: &str = "id, version, person_id, area_code, geometry, area_ha, tenure, land_use";

fn view(row: &PgRow) -> ApiResult<PlotView> {
    Ok(PlotView {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        person_id: row.try_get("person_id")?,
        area_code: row.try_get("area_code")?,
        geometry: row.try_get("geometry")?,
        area_ha: row.try_get("area_ha")?,
        tenure: row.try_get("tenure")?,
        land_use: row.try_get("land_use")?,
    })
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> ApiResult<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::field(
            field,
            format!("must be one of {}", allowed.join(", ")),
        ))
    }
}

/// The plot's area in hectares, once its fields are checked.
pub fn checked(input: &PlotInput) -> ApiResult<Option<f64>> {
    let plot = geometry::validate(&input.geometry).map_err(|e| ApiError::field("geometry", e.0))?;
    one_of("tenure", &input.tenure, TENURES)?;
    one_of("landUse", &input.land_use, LAND_USES)?;
    Ok(plot.area_ha)
}

fn snapshot(plot: &PlotView) -> Value {
    json!({"id": plot.id, "version": plot.version, "personId": plot.person_id, "geometry": plot.geometry, "tenure": plot.tenure, "landUse": plot.land_use})
}

pub async fn create(tx: &mut PgConnection, actor: &Actor, input: PlotInput) -> ApiResult<PlotView> {
    let area_ha = checked(&input)?;
    // Row-level security makes a person outside the caller's areas invisible here.
    let area = visible_person_area(tx, input.person_id, "personId").await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO plots (id, person_id, area_code, geometry, area_ha, tenure, land_use, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
    )))
    .bind(input.id.unwrap_or_else(Uuid::new_v4))
    .bind(input.person_id)
    .bind(&area)
    .bind(&input.geometry)
    .bind(area_ha)
    .bind(&input.tenure)
    .bind(&input.land_use)
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
        "plot",
        created.id.to_string(),
        None,
        Some(&after),
    )
    .await?;
    Ok(created)
}

/// Replaces the plot's fields; a plot given to a person in another area moves with them.
pub async fn update(
    tx: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    version: i32,
    input: PlotInput,
) -> ApiResult<PlotView> {
    let area_ha = checked(&input)?;
    let before = find(tx, id).await?.ok_or(ApiError::NotFound)?;
    let area = visible_person_area(tx, input.person_id, "personId").await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE plots SET person_id = $3, area_code = $4, geometry = $5, area_ha = $6, tenure = $7, \
         land_use = $8, updated_by = $9, version = version + 1, updated_at = now() \
         WHERE id = $1 AND version = $2 AND deleted_at IS NULL RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(version)
    .bind(input.person_id)
    .bind(&area)
    .bind(&input.geometry)
    .bind(area_ha)
    .bind(&input.tenure)
    .bind(&input.land_use)
    .bind(actor.user_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(write_error)?;
    let Some(row) = row else {
        return Err(stale_or_missing(tx, Table::Plots, id).await);
    };
    let updated = view(&row)?;
    let (before, after) = (snapshot(&before), snapshot(&updated));
    audit::record(
        tx,
        Some(actor.user_id),
        "update",
        "plot",
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
    soft_delete_audited(tx, Table::Plots, "plot", id, version, actor).await
}

pub async fn find(tx: &mut PgConnection, id: Uuid) -> ApiResult<Option<PlotView>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM plots WHERE id = $1 AND deleted_at IS NULL"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .as_ref()
    .map(view)
    .transpose()
}

pub async fn by_ids(tx: &mut PgConnection, ids: &[Uuid]) -> ApiResult<Vec<PlotView>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM plots WHERE id = ANY($1) AND deleted_at IS NULL"
    )))
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(view)
    .collect()
}

/// Up to `paging::fetch(limit)` live plots in id order after the cursor.
pub async fn list(
    tx: &mut PgConnection,
    query: &PlotQuery,
    limit: i64,
) -> ApiResult<Vec<PlotView>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM plots WHERE deleted_at IS NULL \
         AND ($1::uuid IS NULL OR person_id = $1) AND ($2::text IS NULL OR area_code = $2) \
         AND ($3::text IS NULL OR tenure = $3) AND ($4::text IS NULL OR land_use = $4) \
         AND ($5::uuid IS NULL OR id > $5) ORDER BY id LIMIT $6"
    )))
    .bind(query.person_id)
    .bind(&query.area)
    .bind(&query.tenure)
    .bind(&query.land_use)
    .bind(query.after)
    .bind(paging::fetch(limit))
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(view)
    .collect()
}
