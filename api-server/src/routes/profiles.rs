//! Farmer profiles (one per person) and holdings: what is grown or raised on a plot in a season.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
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
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_profile))
        .routes(routes!(get_profile))
        .routes(routes!(create_holding))
        .routes(routes!(get_holding))
}

const ACTIVITIES: &[&str] = &["crops", "livestock", "mixed", "fisheries", "forestry"];

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileInput {
    /// Client-generatable, like every record id.
    pub id: Option<Uuid>,
    pub person_id: Uuid,
    /// crops, livestock, mixed, fisheries or forestry.
    pub primary_activity: String,
    pub cooperative: Option<String>,
    pub years_farming: Option<i32>,
}

#[utoipa::path(post, path = "/api/dfr/farmer-profiles", tag = "farmers", request_body = ProfileInput,
    security(("bearer" = [])),
    responses((status = 201, description = "Registered", body = ProfileInput),
        (status = 409, description = "The person already has a profile (conflict), or the id is taken (duplicate_id)", body = crate::error::ProblemDoc)))]
pub async fn create_profile(
    State(pool): State<PgPool>,
    actor: Actor,
    ApiJson(mut input): ApiJson<ProfileInput>,
) -> ApiResult<(StatusCode, Json<ProfileInput>)> {
    require_staff(&actor, "register farmer profiles")?;
    let id = *input.id.get_or_insert_with(Uuid::new_v4);
    if !ACTIVITIES.contains(&input.primary_activity.as_str()) {
        return Err(ApiError::field(
            "primaryActivity",
            format!("must be one of {}", ACTIVITIES.join(", ")),
        ));
    }
    if input.years_farming.is_some_and(|y| !(0..=100).contains(&y)) {
        return Err(ApiError::field("yearsFarming", "must be between 0 and 100"));
    }
    let mut tx = begin_as(&pool, &actor).await?;
    let area = visible_person_area(&mut tx, input.person_id, "personId").await?;
    sqlx::query(
        "INSERT INTO farmer_profiles (id, person_id, area_code, primary_activity, cooperative, years_farming, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(input.person_id)
    .bind(&area)
    .bind(&input.primary_activity)
    .bind(&input.cooperative)
    .bind(input.years_farming)
    .bind(actor.user_id)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        Some(actor.user_id),
        "create",
        "farmer_profile",
        id.to_string(),
        None,
        Some(&json!(input)),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(input)))
}

#[utoipa::path(get, path = "/api/dfr/farmer-profiles/{personId}", tag = "farmers", params(("personId" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "The profile", body = ProfileInput),
        (status = 404, description = "None, or not in your areas", body = crate::error::ProblemDoc)))]
pub async fn get_profile(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(person): Path<Uuid>,
) -> ApiResult<Json<ProfileInput>> {
    require_scope(&actor, "farmers:read")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let row = sqlx::query(
        "SELECT id, person_id, primary_activity, cooperative, years_farming FROM farmer_profiles \
         WHERE person_id = $1 AND deleted_at IS NULL",
    )
    .bind(person)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(Json(ProfileInput {
        id: row.try_get("id")?,
        person_id: row.try_get("person_id")?,
        primary_activity: row.try_get("primary_activity")?,
        cooperative: row.try_get("cooperative")?,
        years_farming: row.try_get("years_farming")?,
    }))
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HoldingInput {
    pub id: Option<Uuid>,
    pub plot_id: Uuid,
    /// Year and optional season letter, e.g. 2026 or 2026A.
    pub season: String,
    /// crop or livestock.
    pub kind: String,
    /// Crop or species code, e.g. cassava, taro, pigs.
    pub item: String,
    /// Hectares for a crop, head count for livestock.
    pub quantity: f64,
}

fn holding(row: &PgRow) -> ApiResult<HoldingInput> {
    Ok(HoldingInput {
        id: row.try_get("id")?,
        plot_id: row.try_get("plot_id")?,
        season: row.try_get("season")?,
        kind: row.try_get("kind")?,
        item: row.try_get("item")?,
        quantity: row.try_get("quantity")?,
    })
}

fn valid_season(season: &str) -> bool {
    let (year, rest) = season.split_at(season.len().min(4));
    year.len() == 4
        && year.chars().all(|c| c.is_ascii_digit())
        && (rest.is_empty() || (rest.len() == 1 && rest.chars().all(|c| c.is_ascii_uppercase())))
}

#[utoipa::path(post, path = "/api/dfr/holdings", tag = "farmers", request_body = HoldingInput,
    security(("bearer" = [])),
    responses((status = 201, description = "Registered", body = HoldingInput),
        (status = 409, description = "The id is taken (duplicate_id)", body = crate::error::ProblemDoc),
        (status = 422, description = "Invalid field", body = crate::error::ProblemDoc)))]
pub async fn create_holding(
    State(pool): State<PgPool>,
    actor: Actor,
    ApiJson(input): ApiJson<HoldingInput>,
) -> ApiResult<(StatusCode, Json<HoldingInput>)> {
    require_staff(&actor, "register holdings")?;
    if !valid_season(&input.season) {
        return Err(ApiError::field(
            "season",
            "must be a year with an optional season letter, e.g. 2026 or 2026A",
        ));
    }
    if !["crop", "livestock"].contains(&input.kind.as_str()) {
        return Err(ApiError::field("kind", "must be crop or livestock"));
    }
    if input.item.trim().is_empty() || input.item.len() > 100 {
        return Err(ApiError::field("item", "must be 1 to 100 characters"));
    }
    if !(input.quantity.is_finite() && input.quantity > 0.0) {
        return Err(ApiError::field("quantity", "must be a positive number"));
    }
    let mut tx = begin_as(&pool, &actor).await?;
    let area: String =
        sqlx::query_scalar("SELECT area_code FROM plots WHERE id = $1 AND deleted_at IS NULL")
            .bind(input.plot_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| ApiError::field("plotId", "no such plot in the areas you may see"))?;
    let row = sqlx::query(
        "INSERT INTO holdings (id, plot_id, area_code, season, kind, item, quantity, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, plot_id, season, kind, item, quantity",
    )
    .bind(input.id.unwrap_or_else(Uuid::new_v4))
    .bind(input.plot_id)
    .bind(&area)
    .bind(&input.season)
    .bind(&input.kind)
    .bind(input.item.trim())
    .bind(input.quantity)
    .bind(actor.user_id)
    .fetch_one(&mut *tx)
    .await?;
    let created = holding(&row)?;
    let id = created.id.unwrap_or_default();
    audit::record(
        &mut tx,
        Some(actor.user_id),
        "create",
        "holding",
        id.to_string(),
        None,
        Some(&json!(created)),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/dfr/holdings/{id}", tag = "farmers", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "The holding", body = HoldingInput),
        (status = 404, description = "None, or not in your areas", body = crate::error::ProblemDoc)))]
pub async fn get_holding(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<HoldingInput>> {
    require_scope(&actor, "plots:read")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let row = sqlx::query("SELECT id, plot_id, season, kind, item, quantity FROM holdings WHERE id = $1 AND deleted_at IS NULL")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(Json(holding(&row)?))
}

#[cfg(test)]
mod tests {
    use super::valid_season;

    #[test]
    fn seasons_are_a_year_with_an_optional_letter() {
        assert!(valid_season("2026") && valid_season("2026B"));
        assert!(
            !valid_season("26A")
                && !valid_season("2026b")
                && !valid_season("2026AB")
                && !valid_season("")
        );
    }
}
