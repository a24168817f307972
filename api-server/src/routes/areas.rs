//! Administrative areas: a hierarchy of codes (country, district, village...). Everyone reads
//! them; national admins add them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgPool, Row};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit;
use crate::auth::{Actor, Role};
use crate::db::begin_as;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create))
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Area {
    /// Upper-case letters, digits, '.' and '-', e.g. TO-01.
    pub code: String,
    pub parent_code: Option<String>,
    pub name: String,
    /// 0 for the country, then one more per level down.
    pub level: i16,
}

#[utoipa::path(get, path = "/api/dfr/areas", tag = "areas", security(("bearer" = [])),
    responses((status = 200, description = "Every area, parents before children", body = Vec<Area>)))]
pub async fn list(State(pool): State<PgPool>, _actor: Actor) -> ApiResult<Json<Vec<Area>>> {
    let rows = sqlx::query("SELECT code, parent_code, name, level FROM areas ORDER BY level, code")
        .fetch_all(&pool)
        .await?;
    let areas = rows
        .iter()
        .map(|r| {
            Ok(Area {
                code: r.try_get("code")?,
                parent_code: r.try_get("parent_code")?,
                name: r.try_get("name")?,
                level: r.try_get("level")?,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(areas))
}

#[utoipa::path(post, path = "/api/dfr/areas", tag = "areas", request_body = Area, security(("bearer" = [])),
    responses((status = 201, description = "Added", body = Area),
        (status = 409, description = "An area with this code exists (conflict)", body = crate::error::ProblemDoc),
        (status = 422, description = "Invalid code, parent or level", body = crate::error::ProblemDoc)))]
pub async fn create(
    State(pool): State<PgPool>,
    actor: Actor,
    ApiJson(area): ApiJson<Area>,
) -> ApiResult<(StatusCode, Json<Area>)> {
    if actor.role != Role::NationalAdmin {
        return Err(ApiError::Forbidden(
            "only national admins add administrative areas".into(),
        ));
    }
    let valid_code = !area.code.is_empty()
        && area.code.len() <= 63
        && area
            .code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '.' || c == '-');
    if !valid_code {
        return Err(ApiError::field(
            "code",
            "must be upper-case letters, digits, '.' or '-', at most 63",
        ));
    }
    if area.name.trim().is_empty() || area.name.chars().count() > 200 {
        return Err(ApiError::field("name", "must be 1 to 200 characters"));
    }
    let mut tx = begin_as(&pool, &actor).await?;
    let parent_level: Option<i16> = match &area.parent_code {
        Some(parent) => Some(
            sqlx::query_scalar("SELECT level FROM areas WHERE code = $1")
                .bind(parent)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| ApiError::field("parentCode", "is not a known area"))?,
        ),
        None => None,
    };
    if parent_level.map_or(area.level != 0, |level| area.level != level + 1) {
        return Err(ApiError::field(
            "level",
            "must be 0 for a root and the parent's level + 1 otherwise",
        ));
    }
    sqlx::query("INSERT INTO areas (code, parent_code, name, level) VALUES ($1, $2, $3, $4)")
        .bind(&area.code)
        .bind(&area.parent_code)
        .bind(area.name.trim())
        .bind(area.level)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        Some(actor.user_id),
        "create",
        "area",
        area.code.clone(),
        None,
        Some(&json!(area)),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(area)))
}
