//! Households as stored: a set of registered persons with their role, exactly one of them the
//! head, in the head's area. The checks, the SQL, and the writes as operations on the caller's
//! transaction (each with its audit event), shared by the HTTP handlers and the sync push.

use std::collections::{BTreeMap, BTreeSet};

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

pub const ROLES: &[&str] = &["head", "spouse", "child", "other"];

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Member {
    pub person_id: Uuid,
    /// head, spouse, child or other.
    pub role: String,
}

#[derive(Deserialize, Serialize, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HouseholdInput {
    pub id: Option<Uuid>,
    pub members: Vec<Member>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HouseholdView {
    pub id: Uuid,
    pub version: i32,
    pub area_code: String,
    /// The head first.
    pub members: Vec<Member>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HouseholdQuery {
    pub area: Option<String>,
    /// Households this person is a member of.
    pub person_id: Option<Uuid>,
    /// The `next` cursor of the previous page.
    pub after: Option<Uuid>,
    pub limit: Option<i64>,
}

pub fn check_members(members: &[Member]) -> ApiResult<()> {
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

/// The head's area, once every member is checked to be a person the caller sees in it.
async fn members_area(tx: &mut PgConnection, members: &[Member]) -> ApiResult<String> {
    check_members(members)?;
    let head = members
        .iter()
        .find(|m| m.role == "head")
        .map(|m| m.person_id)
        .unwrap_or_default();
    let area = visible_person_area(tx, head, "members.personId").await?;
    for member in members {
        if visible_person_area(tx, member.person_id, "members.personId").await? != area {
            return Err(ApiError::field(
                "members",
                "every member lives in the head's area",
            ));
        }
    }
    Ok(area)
}

async fn write_members(tx: &mut PgConnection, id: Uuid, members: &[Member]) -> ApiResult<()> {
    for member in members {
        sqlx::query(
            "INSERT INTO household_members (household_id, person_id, role) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(member.person_id)
        .bind(&member.role)
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
    }
    Ok(())
}

fn snapshot(household: &HouseholdView) -> Value {
    json!({"id": household.id, "version": household.version, "members": household.members})
}

pub async fn create(
    tx: &mut PgConnection,
    actor: &Actor,
    input: HouseholdInput,
) -> ApiResult<HouseholdView> {
    let area = members_area(tx, &input.members).await?;
    let id = input.id.unwrap_or_else(Uuid::new_v4);
    sqlx::query("INSERT INTO households (id, area_code, updated_by) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(&area)
        .bind(actor.user_id)
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
    write_members(tx, id, &input.members).await?;
    let created = find(tx, id).await?.ok_or(ApiError::NotFound)?;
    let after = snapshot(&created);
    audit::record(
        tx,
        Some(actor.user_id),
        "create",
        "household",
        id.to_string(),
        None,
        Some(&after),
    )
    .await?;
    Ok(created)
}

/// Replaces the members (and so the area, the head's).
pub async fn update(
    tx: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    version: i32,
    input: HouseholdInput,
) -> ApiResult<HouseholdView> {
    let before = find(tx, id).await?.ok_or(ApiError::NotFound)?;
    let area = members_area(tx, &input.members).await?;
    let updated = sqlx::query(
        "UPDATE households SET area_code = $3, updated_by = $4, version = version + 1, updated_at = now() \
         WHERE id = $1 AND version = $2 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(version)
    .bind(&area)
    .bind(actor.user_id)
    .execute(&mut *tx)
    .await
    .map_err(write_error)?;
    if updated.rows_affected() == 0 {
        return Err(stale_or_missing(tx, Table::Households, id).await);
    }
    sqlx::query("DELETE FROM household_members WHERE household_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    write_members(tx, id, &input.members).await?;
    let after = find(tx, id).await?.ok_or(ApiError::NotFound)?;
    let (before_snapshot, after_snapshot) = (snapshot(&before), snapshot(&after));
    audit::record(
        tx,
        Some(actor.user_id),
        "update",
        "household",
        id.to_string(),
        Some(&before_snapshot),
        Some(&after_snapshot),
    )
    .await?;
    Ok(after)
}

pub async fn delete(
    tx: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    version: i32,
) -> ApiResult<i32> {
    soft_delete_audited(tx, Table::Households, "household", id, version, actor).await
}

/// The households of these rows, with their members (one query for all of them).
async fn with_members(tx: &mut PgConnection, rows: &[PgRow]) -> ApiResult<Vec<HouseholdView>> {
    let ids = rows
        .iter()
        .map(|row| row.try_get("id"))
        .collect::<Result<Vec<Uuid>, _>>()?;
    let mut members: BTreeMap<Uuid, Vec<Member>> = BTreeMap::new();
    let member_rows = sqlx::query(
        "SELECT household_id, person_id, role FROM household_members WHERE household_id = ANY($1) \
         ORDER BY household_id, role = 'head' DESC, person_id",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    for row in &member_rows {
        members
            .entry(row.try_get("household_id")?)
            .or_default()
            .push(Member {
                person_id: row.try_get("person_id")?,
                role: row.try_get("role")?,
            });
    }
    rows.iter()
        .map(|row| {
            let id: Uuid = row.try_get("id")?;
            Ok(HouseholdView {
                id,
                version: row.try_get("version")?,
                area_code: row.try_get("area_code")?,
                members: members.remove(&id).unwrap_or_default(),
            })
        })
        .collect()
}

pub async fn find(tx: &mut PgConnection, id: Uuid) -> ApiResult<Option<HouseholdView>> {
    Ok(by_ids(tx, &[id]).await?.pop())
}

pub async fn by_ids(tx: &mut PgConnection, ids: &[Uuid]) -> ApiResult<Vec<HouseholdView>> {
    let rows = sqlx::query(
        "SELECT id, version, area_code FROM households WHERE id = ANY($1) AND deleted_at IS NULL",
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    with_members(tx, &rows).await
}

/// Up to `paging::fetch(limit)` live households in id order after the cursor.
pub async fn list(
    tx: &mut PgConnection,
    query: &HouseholdQuery,
    limit: i64,
) -> ApiResult<Vec<HouseholdView>> {
    let rows = sqlx::query(
        "SELECT id, version, area_code FROM households h WHERE deleted_at IS NULL \
         AND ($1::text IS NULL OR area_code = $1) \
         AND ($2::uuid IS NULL OR EXISTS (SELECT 1 FROM household_members m WHERE m.household_id = h.id AND m.person_id = $2)) \
         AND ($3::uuid IS NULL OR id > $3) ORDER BY id LIMIT $4",
    )
    .bind(&query.area)
    .bind(query.person_id)
    .bind(query.after)
    .bind(paging::fetch(limit))
    .fetch_all(&mut *tx)
    .await?;
    with_members(tx, &rows).await
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
