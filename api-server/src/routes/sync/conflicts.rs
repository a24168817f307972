//! Conflicts a push met: a device's update or delete based on a version the server had moved
//! past. The server's version stays the record; the device's data is kept here, encrypted with
//! the PII key ring, so neither side is lost and staff can reconcile them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use super::records::{Entity, Mutation, Op};
use crate::auth::Actor;
use crate::crypto::{KeyRing, mask};
use crate::db::begin_as;
use crate::error::{ApiError, ApiResult};
use crate::routes::common::{WRITERS, require};
use crate::routes::paging::{self, Page};
use crate::routes::persons::input::Pii;

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConflictView {
    pub id: Uuid,
    pub entity: Entity,
    pub record_id: Uuid,
    pub area_code: String,
    /// Who pushed the losing change.
    pub user_id: Uuid,
    pub client_mutation_id: Uuid,
    /// update or delete.
    pub operation: String,
    /// The version the device's change was based on.
    pub base_version: i32,
    /// The server's version when the change arrived.
    pub server_version: i32,
    /// The record as the device sent it (absent for a delete); a person's national ID, phone
    /// and e-mail are masked for roles that see them masked.
    pub client_data: Option<Value>,
    pub at: DateTime<Utc>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConflictQuery {
    /// person, household, farmer_profile, plot, holding or consent.
    pub entity: Option<Entity>,
    pub record_id: Option<Uuid>,
    /// The `next` cursor of the previous page.
    pub after: Option<Uuid>,
    pub limit: Option<i64>,
}

/// Keeps the device's side of a conflict; its id.
pub async fn record(
    tx: &mut PgConnection,
    ring: &KeyRing,
    actor: &Actor,
    mutation: &Mutation,
    area_code: &str,
    server_version: i32,
) -> ApiResult<Uuid> {
    let cipher = mutation
        .data
        .as_ref()
        .map(|data| ring.encrypt(&data.to_string()))
        .transpose()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO sync_conflicts (id, entity, record_id, area_code, user_id, client_mutation_id, \
         operation, base_version, server_version, client_data_cipher) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id)
    .bind(mutation.entity.as_str())
    .bind(mutation.id)
    .bind(area_code)
    .bind(actor.user_id)
    .bind(mutation.client_mutation_id)
    .bind(if mutation.op == Op::Delete { "delete" } else { "update" })
    .bind(mutation.base_version.unwrap_or_default())
    .bind(server_version)
    .bind(cipher)
    .execute(&mut *tx)
    .await?;
    Ok(id)
}

/// A person's identifiers masked as the person endpoints mask them.
fn masked_person(mut data: Value) -> Value {
    for pointer in ["/nationalId/value", "/phone", "/email"] {
        if let Some(field) = data.pointer_mut(pointer)
            && let Some(text) = field.as_str()
        {
            *field = Value::String(mask(text));
        }
    }
    data
}

pub fn view(ring: &KeyRing, pii: Pii, row: &PgRow) -> ApiResult<ConflictView> {
    let entity: String = row.try_get("entity")?;
    let entity = Entity::parse(&entity)
        .ok_or_else(|| ApiError::Internal(format!("unknown entity {entity} in sync_conflicts")))?;
    let client_data = row
        .try_get::<Option<String>, _>("client_data_cipher")?
        .map(|cipher| -> ApiResult<Value> {
            let plain = ring
                .decrypt(&cipher)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let data: Value =
                serde_json::from_str(&plain).map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok(if entity == Entity::Person && pii == Pii::Masked {
                masked_person(data)
            } else {
                data
            })
        })
        .transpose()?;
    Ok(ConflictView {
        id: row.try_get("id")?,
        entity,
        record_id: row.try_get("record_id")?,
        area_code: row.try_get("area_code")?,
        user_id: row.try_get("user_id")?,
        client_mutation_id: row.try_get("client_mutation_id")?,
        operation: row.try_get("operation")?,
        base_version: row.try_get("base_version")?,
        server_version: row.try_get("server_version")?,
        client_data,
        at: row.try_get("at")?,
    })
}

#[utoipa::path(get, path = "/api/dfr/sync/conflicts", tag = "sync", params(ConflictQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "A page of conflicts in the caller's areas, in id order; follow `next` with `after`", body = Page<ConflictView>)))]
pub async fn list(
    State(pool): State<PgPool>,
    State(ring): State<Arc<KeyRing>>,
    actor: Actor,
    Query(query): Query<ConflictQuery>,
) -> ApiResult<Json<Page<ConflictView>>> {
    require(&actor, WRITERS, "sync")?;
    let limit = paging::limit(query.limit)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let rows = sqlx::query(
        "SELECT id, entity, record_id, area_code, user_id, client_mutation_id, operation, base_version, \
         server_version, client_data_cipher, at FROM sync_conflicts \
         WHERE ($1::text IS NULL OR entity = $1) AND ($2::uuid IS NULL OR record_id = $2) \
         AND ($3::uuid IS NULL OR id > $3) ORDER BY id LIMIT $4",
    )
    .bind(query.entity.map(Entity::as_str))
    .bind(query.record_id)
    .bind(query.after)
    .bind(paging::fetch(limit))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let pii = Pii::for_role(actor.role);
    let items = rows
        .iter()
        .map(|row| view(&ring, pii, row))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(Page::of(items, limit, |c| c.id)))
}
