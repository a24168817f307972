//! Plots of land: a GeoJSON point or polygon per plot, its area computed, tied to a person and
//! visible under the same row-level security as that person.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::common::{require_scope, require_staff, visible_person_area};
use crate::audit;
use crate::auth::Actor;
use crate::db::begin_as;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::geometry;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(get))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlotInput {
    pub id: Option<Uuid>,
    pub person_id: Uuid,
    pub geometry: Value,
    pub tenure: String,
    pub land_use: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlotView {
    id: Uuid,
    version: i32,
    person_id: Uuid,
    area_code: String,
    geometry: Value,
    area_ha: Option<f64>,
    tenure: String,
    land_use: String,
}

const TENURES: &[&str] = &["owned", "leased", "customary", "communal", "other"];
const LAND_USES: &[&str] = &["cropland", "pasture", "agroforestry", "fallow", "other"];

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

#[utoipa::path(post, path = "/api/dfr/plots", tag = "plots", request_body = PlotInput,
    security(("bearer" = [])),
    responses((status = 201, description = "Registered, with its area in hectares", body = PlotView),
        (status = 409, description = "The id is taken (duplicate_id)", body = crate::error::ProblemDoc),
        (status = 422, description = "Invalid GeoJSON or field", body = crate::error::ProblemDoc)))]
pub async fn create(
    State(pool): State<PgPool>,
    actor: Actor,
    ApiJson(input): ApiJson<PlotInput>,
) -> ApiResult<(StatusCode, Json<PlotView>)> {
    require_staff(&actor, "register plots")?;
    let plot = geometry::validate(&input.geometry).map_err(|e| ApiError::field("geometry", e.0))?;
    if !TENURES.contains(&input.tenure.as_str()) {
        return Err(ApiError::field(
            "tenure",
            format!("must be one of {}", TENURES.join(", ")),
        ));
    }
    if !LAND_USES.contains(&input.land_use.as_str()) {
        return Err(ApiError::field(
            "landUse",
            format!("must be one of {}", LAND_USES.join(", ")),
        ));
    }
    let mut tx = begin_as(&pool, &actor).await?;
    // Row-level security makes a person outside the caller's areas invisible here.
    let area = visible_person_area(&mut tx, input.person_id, "personId").await?;
    let row = sqlx::query(
        "INSERT INTO plots (id, person_id, area_code, geometry, area_ha, tenure, land_use, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         RETURNING id, version, person_id, area_code, geometry, area_ha, tenure, land_use",
    )
    .bind(input.id.unwrap_or_else(Uuid::new_v4))
    .bind(input.person_id)
    .bind(&area)
    .bind(&input.geometry)
    .bind(plot.area_ha)
    .bind(&input.tenure)
    .bind(&input.land_use)
    .bind(actor.user_id)
    .fetch_one(&mut *tx)
    .await?;
    let created = view(&row)?;
    let snapshot = json!({"id": created.id, "personId": created.person_id, "geometry": created.geometry, "tenure": created.tenure});
    audit::record(
        &mut tx,
        Some(actor.user_id),
        "create",
        "plot",
        created.id.to_string(),
        None,
        Some(&snapshot),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/dfr/plots/{id}", tag = "plots", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "The plot", body = PlotView),
        (status = 404, description = "No such plot, or not in your areas", body = crate::error::ProblemDoc)))]
pub async fn get(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<PlotView>> {
    require_scope(&actor, "plots:read")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let row = sqlx::query(
        "SELECT id, version, person_id, area_code, geometry, area_ha, tenure, land_use FROM plots \
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(Json(view(&row)?))
}
