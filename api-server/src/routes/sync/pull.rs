//! The delta pull: what changed in the caller's areas since an opaque cursor, tombstones
//! included, a bounded page at a time. See `sync_changes` in migrations/0007_sync.sql for why
//! the cursor is a position in (transaction id, sequence) order and why a row is handed out
//! only once its transaction id is below the snapshot's xmin.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::records::{self, Entity};
use crate::auth::Actor;
use crate::crypto::KeyRing;
use crate::db::begin_as;
use crate::error::{ApiError, ApiResult};
use crate::routes::common::{WRITERS, require};
use crate::routes::persons::input::Pii;

pub const DEFAULT_PAGE: i64 = 200;
pub const MAX_PAGE: i64 = 1000;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PullQuery {
    /// The `cursor` of the previous pull; absent for the first.
    pub cursor: Option<String>,
    /// Changes per page, 1 to 1000 (200 if absent).
    pub limit: Option<i64>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub entity: Entity,
    pub id: Uuid,
    pub version: i32,
    /// A tombstone: the record was deleted, or is no longer one the caller may see (it moved
    /// to an area outside the caller's).
    pub deleted: bool,
    /// The record as its GET answers it; absent for a tombstone.
    pub record: Option<Value>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangesPage {
    pub changes: Vec<Change>,
    /// Where the next pull starts; unchanged when nothing new was ready.
    pub cursor: String,
    /// More changes are ready now: pull again with `cursor` at once.
    pub more: bool,
}

/// A position in the change log: after the change `seq` of transaction `xid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub xid: u64,
    pub seq: i64,
}

impl Cursor {
    pub const START: Cursor = Cursor { xid: 0, seq: 0 };

    pub fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}.{}", self.xid, self.seq))
    }

    pub fn decode(text: &str) -> ApiResult<Cursor> {
        let bad = || ApiError::field("cursor", "is not a cursor this server handed out");
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let plain = String::from_utf8(bytes).map_err(|_| bad())?;
        let (xid, seq) = plain.split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            xid: xid.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

#[utoipa::path(get, path = "/api/dfr/sync/changes", tag = "sync", params(PullQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "Changes in the caller's areas after the cursor, oldest first; tombstones for deletes", body = ChangesPage),
        (status = 410, description = "A cursor this registry never handed out, e.g. one kept from before a restore (stale_cursor): pull again without a cursor", body = crate::error::ProblemDoc),
        (status = 422, description = "Bad cursor or limit", body = crate::error::ProblemDoc)))]
pub async fn changes(
    State(pool): State<PgPool>,
    State(ring): State<Arc<KeyRing>>,
    actor: Actor,
    Query(query): Query<PullQuery>,
) -> ApiResult<Json<ChangesPage>> {
    require(&actor, WRITERS, "sync")?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    let after = match &query.cursor {
        Some(text) => Cursor::decode(text)?,
        None => Cursor::START,
    };
    let mut tx = begin_as(&pool, &actor).await?;
    // A pull hands out only xids below its snapshot's xmin, so a cursor at or past the xmax of
    // a snapshot now was never handed out here: resuming from it would skip every change
    // until the registry's transactions caught up with it.
    if query.cursor.is_some() {
        let ahead: bool =
            sqlx::query_scalar("SELECT $1::text::xid8 >= pg_snapshot_xmax(pg_current_snapshot())")
                .bind(after.xid.to_string())
                .fetch_one(&mut *tx)
                .await?;
        if ahead {
            return Err(ApiError::StaleCursor);
        }
    }
    // One statement, so the xmin and the rows come from the same snapshot: every row below
    // xmin that committed is visible in it, and no transaction below xmin is still running.
    // The xid is read as text under another name: ORDER BY xid must sort the xid8 column,
    // not a text output column of the same name.
    let rows = sqlx::query(
        "SELECT entity, record_id, version, deleted, xid::text AS xid_text, seq FROM sync_changes \
         WHERE (xid, seq) > ($1::text::xid8, $2) AND xid < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY xid, seq LIMIT $3",
    )
    .bind(after.xid.to_string())
    .bind(after.seq)
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await?;
    let more = rows.len() as i64 > limit;
    let mut log = Vec::new();
    for row in rows.iter().take(usize::try_from(limit).unwrap_or(0)) {
        let entity: String = row.try_get("entity")?;
        let xid: String = row.try_get("xid_text")?;
        log.push((
            Entity::parse(&entity).ok_or_else(|| {
                ApiError::Internal(format!("unknown entity {entity} in the change log"))
            })?,
            row.try_get::<Uuid, _>("record_id")?,
            row.try_get::<i32, _>("version")?,
            row.try_get::<bool, _>("deleted")?,
            Cursor {
                xid: xid
                    .parse()
                    .map_err(|_| ApiError::Internal(format!("xid {xid}")))?,
                seq: row.try_get("seq")?,
            },
        ));
    }
    // The live records, one query per kind.
    let mut wanted: BTreeMap<Entity, Vec<Uuid>> = BTreeMap::new();
    for (entity, id, _, deleted, _) in &log {
        if !deleted {
            wanted.entry(*entity).or_default().push(*id);
        }
    }
    let pii = Pii::for_role(actor.role);
    let mut found: HashMap<(Entity, Uuid), Value> = HashMap::new();
    for (entity, ids) in wanted {
        for (id, record) in records::views(&mut tx, &ring, pii, entity, &ids).await? {
            found.insert((entity, id), record);
        }
    }
    tx.commit().await?;
    let cursor = log.last().map_or(after, |change| change.4);
    let changes = log
        .into_iter()
        .map(|(entity, id, version, deleted, _)| {
            let record = if deleted {
                None
            } else {
                found.remove(&(entity, id))
            };
            Change {
                entity,
                id,
                version,
                deleted: record.is_none(),
                record,
            }
        })
        .collect();
    Ok(Json(ChangesPage {
        changes,
        cursor: cursor.encode(),
        more,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_names_the_field() {
        let cursor = Cursor {
            xid: 7_000_123,
            seq: 42,
        };
        assert_eq!(Cursor::decode(&cursor.encode()).ok(), Some(cursor));
        match Cursor::decode("not a cursor") {
            Err(ApiError::Validation { fields, .. }) => assert_eq!(fields[0].field, "cursor"),
            other => panic!("expected a field error, got {other:?}"),
        }
    }
}
