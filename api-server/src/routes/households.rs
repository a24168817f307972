//! Households: a set of registered persons with their role, exactly one of them the head.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
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
        .routes(routes!(create))
        .routes(routes!(get))
}

const ROLES: &[&str] = &["head", "spouse", "child", "other"];

#[derive(Deserialize, Serialize, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Member {
    pub person_id: Uuid,
    /// head, spouse, child or other.
    pub role: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HouseholdInput {
    pub id: Option<Uuid>,
    pub members: Vec<Member>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HouseholdView {
    id: Uuid,
    version: i32,
    area_code: String,
    members: Vec<Member>,
}

fn check_members(members: &[Member]) -> ApiResult<()> {
    if members.is_empty() || members.len() > 50 {
        return Err(ApiError::field(
            "members",
            "a household has 1 to 50 members",
        ));
    }
    if let Some(bad) = members.iter().find(|m| !ROLES.contains(&m.role.as_str())) {
        return Err(ApiError::field(
            "members.role",
            format!("{:?} is not one of head, spouse, child, other", bad.role),
        ));
    }
    if members.iter().filter(|m| m.role == "head").count() != 1 {
        return Err(ApiError::field(
            "members",
            "a household has exactly one head",
        ));
    }
    let distinct: BTreeSet<Uuid> = members.iter().map(|m| m.person_id).collect();
    if distinct.len() != members.len() {
        return Err(ApiError::field("members", "a person is listed twice"));
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/dfr/households", tag = "households", request_body = HouseholdInput,
    security(("bearer" = [])),
    responses((status = 201, description = "Registered", body = HouseholdView),
        (status = 409, description = "The id is taken (duplicate_id)", body = crate::error::ProblemDoc),
        (status = 422, description = "Invalid members", body = crate::error::ProblemDoc)))]
pub async fn create(
    State(pool): State<PgPool>,
    actor: Actor,
    ApiJson(input): ApiJson<HouseholdInput>,
) -> ApiResult<(StatusCode, Json<HouseholdView>)> {
    require_staff(&actor, "register households")?;
    check_members(&input.members)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let head = input
        .members
        .iter()
        .find(|m| m.role == "head")
        .map(|m| m.person_id)
        .unwrap_or_default();
    let area = visible_person_area(&mut tx, head, "members.personId").await?;
    for member in &input.members {
        if visible_person_area(&mut tx, member.person_id, "members.personId").await? != area {
            return Err(ApiError::field(
                "members",
                "every member lives in the head's area",
            ));
        }
    }
    let id = input.id.unwrap_or_else(Uuid::new_v4);
    sqlx::query("INSERT INTO households (id, area_code, updated_by) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(&area)
        .bind(actor.user_id)
        .execute(&mut *tx)
        .await?;
    for member in &input.members {
        sqlx::query(
            "INSERT INTO household_members (household_id, person_id, role) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(member.person_id)
        .bind(&member.role)
        .execute(&mut *tx)
        .await?;
    }
    let snapshot = json!({"id": id, "members": input.members});
    audit::record(
        &mut tx,
        Some(actor.user_id),
        "create",
        "household",
        id.to_string(),
        None,
        Some(&snapshot),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(HouseholdView {
            id,
            version: 1,
            area_code: area,
            members: input.members,
        }),
    ))
}

#[utoipa::path(get, path = "/api/dfr/households/{id}", tag = "households", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "The household", body = HouseholdView),
        (status = 404, description = "No such household, or not in your areas", body = crate::error::ProblemDoc)))]
pub async fn get(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<HouseholdView>> {
    require_scope(&actor, "households:read")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let row = sqlx::query(
        "SELECT id, version, area_code FROM households WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound)?;
    let members = sqlx::query("SELECT person_id, role FROM household_members WHERE household_id = $1 ORDER BY role = 'head' DESC, person_id")
        .bind(id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|m| Ok(Member { person_id: m.try_get("person_id")?, role: m.try_get("role")? }))
        .collect::<ApiResult<Vec<_>>>()?;
    tx.commit().await?;
    Ok(Json(HouseholdView {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        area_code: row.try_get("area_code")?,
        members,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(role: &str) -> Member {
        Member {
            person_id: Uuid::new_v4(),
            role: role.into(),
        }
    }

    #[test]
    fn a_household_has_exactly_one_head_and_no_duplicates() {
        assert!(check_members(&[member("head"), member("spouse"), member("child")]).is_ok());
        assert!(check_members(&[member("spouse")]).is_err());
        assert!(check_members(&[member("head"), member("head")]).is_err());
        assert!(check_members(&[member("head"), member("cousin")]).is_err());
        let twice = member("head");
        assert!(
            check_members(&[
                twice.clone(),
                Member {
                    role: "child".into(),
                    ..twice
                }
            ])
            .is_err()
        );
    }
}
