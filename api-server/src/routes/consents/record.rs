//! Consent records as stored, with their history: the checks, the SQL, and the writes as
//! operations on the caller's transaction (each with its audit event), shared by the HTTP
//! handlers and the sync push. Only a consent still `requested` can be edited or deleted:
//! once answered, what was agreed (or refused) stays on record.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::audit;
use crate::auth::Actor;
use crate::consent;
use crate::error::{ApiError, ApiResult};
use crate::routes::common::{
    Table, soft_delete_audited, stale_or_missing, visible_person_area, write_error,
};
use crate::routes::paging;

#[derive(Deserialize, Serialize, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsentRequest {
    pub id: Option<Uuid>,
    pub person_id: Uuid,
    pub purpose: String,
    pub recipient: String,
    pub terms: String,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    /// given, refused, withdrawn or expired.
    pub state: String,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub state: String,
    pub at: DateTime<Utc>,
    pub actor: Uuid,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsentView {
    pub id: Uuid,
    pub version: i32,
    pub person_id: Uuid,
    pub area_code: String,
    pub purpose: String,
    pub recipient: String,
    pub terms: String,
    pub state: String,
    pub given_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub history: Vec<HistoryEntry>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsentQuery {
    pub person_id: Option<Uuid>,
    pub area: Option<String>,
    pub state: Option<String>,
    pub recipient: Option<String>,
    /// The `next` cursor of the previous page.
    pub after: Option<Uuid>,
    pub limit: Option<i64>,
}

const COLUMNS: &str =
    "id, version, person_id, area_code, purpose, recipient, terms, state, given_at, expires_at";

fn check(input: &ConsentRequest) -> ApiResult<()> {
    for (field, value, max) in [
        ("purpose", &input.purpose, 500),
        ("recipient", &input.recipient, 200),
        ("terms", &input.terms, 20_000),
    ] {
        if value.trim().is_empty() || value.chars().count() > max {
            return Err(ApiError::field(
                field,
                format!("must be 1 to {max} characters"),
            ));
        }
    }
    if input.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(ApiError::field("expiresAt", "must be in the future"));
    }
    Ok(())
}

/// The consents of these rows with their histories (one query for all of them).
async fn with_history(tx: &mut PgConnection, rows: &[PgRow]) -> ApiResult<Vec<ConsentView>> {
    let ids = rows
        .iter()
        .map(|row| row.try_get("id"))
        .collect::<Result<Vec<Uuid>, _>>()?;
    let mut histories: BTreeMap<Uuid, Vec<HistoryEntry>> = BTreeMap::new();
    let history_rows = sqlx::query(
        "SELECT consent_id, state, at, actor FROM consent_history WHERE consent_id = ANY($1) \
         ORDER BY consent_id, seq",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    for h in &history_rows {
        histories
            .entry(h.try_get("consent_id")?)
            .or_default()
            .push(HistoryEntry {
                state: h.try_get("state")?,
                at: h.try_get("at")?,
                actor: h.try_get("actor")?,
            });
    }
    rows.iter()
        .map(|row| {
            let id: Uuid = row.try_get("id")?;
            Ok(ConsentView {
                id,
                version: row.try_get("version")?,
                person_id: row.try_get("person_id")?,
                area_code: row.try_get("area_code")?,
                purpose: row.try_get("purpose")?,
                recipient: row.try_get("recipient")?,
                terms: row.try_get("terms")?,
                state: row.try_get("state")?,
                given_at: row.try_get("given_at")?,
                expires_at: row.try_get("expires_at")?,
                history: histories.remove(&id).unwrap_or_default(),
            })
        })
        .collect()
}

pub async fn by_ids(tx: &mut PgConnection, ids: &[Uuid]) -> ApiResult<Vec<ConsentView>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM consents WHERE id = ANY($1) AND deleted_at IS NULL"
    )))
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    with_history(tx, &rows).await
}

pub async fn load(tx: &mut PgConnection, id: Uuid) -> ApiResult<ConsentView> {
    by_ids(tx, &[id]).await?.pop().ok_or(ApiError::NotFound)
}

/// Up to `paging::fetch(limit)` live consents in id order after the cursor.
pub async fn list(
    tx: &mut PgConnection,
    query: &ConsentQuery,
    limit: i64,
) -> ApiResult<Vec<ConsentView>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM consents WHERE deleted_at IS NULL \
         AND ($1::uuid IS NULL OR person_id = $1) AND ($2::text IS NULL OR area_code = $2) \
         AND ($3::text IS NULL OR state = $3) AND ($4::text IS NULL OR recipient = $4) \
         AND ($5::uuid IS NULL OR id > $5) ORDER BY id LIMIT $6"
    )))
    .bind(query.person_id)
    .bind(&query.area)
    .bind(&query.state)
    .bind(&query.recipient)
    .bind(query.after)
    .bind(paging::fetch(limit))
    .fetch_all(&mut *tx)
    .await?;
    with_history(tx, &rows).await
}

pub async fn record_history(
    tx: &mut PgConnection,
    id: Uuid,
    state: &str,
    actor: Uuid,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO consent_history (consent_id, seq, state, actor) \
         SELECT $1, coalesce(max(seq), 0) + 1, $2, $3 FROM consent_history WHERE consent_id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Requests consent: a new record in state `requested`.
pub async fn create(
    tx: &mut PgConnection,
    actor: &Actor,
    input: ConsentRequest,
) -> ApiResult<ConsentView> {
    check(&input)?;
    let area = visible_person_area(tx, input.person_id, "personId").await?;
    let id = input.id.unwrap_or_else(Uuid::new_v4);
    sqlx::query(
        "INSERT INTO consents (id, person_id, area_code, purpose, recipient, terms, state, expires_at, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, 'requested', $7, $8)",
    )
    .bind(id)
    .bind(input.person_id)
    .bind(&area)
    .bind(input.purpose.trim())
    .bind(input.recipient.trim())
    .bind(&input.terms)
    .bind(input.expires_at)
    .bind(actor.user_id)
    .execute(&mut *tx)
    .await
    .map_err(write_error)?;
    record_history(tx, id, "requested", actor.user_id).await?;
    let created = load(tx, id).await?;
    let snapshot = json!({"id": id, "personId": input.person_id, "purpose": created.purpose, "state": "requested"});
    audit::record(
        tx,
        Some(actor.user_id),
        "request",
        "consent",
        id.to_string(),
        None,
        Some(&snapshot),
    )
    .await?;
    Ok(created)
}

/// The current consent, if it is still open to edits at `version`.
async fn still_requested(tx: &mut PgConnection, id: Uuid, version: i32) -> ApiResult<ConsentView> {
    let current = load(tx, id).await?;
    if current.version != version {
        return Err(ApiError::StaleVersion {
            current: current.version,
        });
    }
    if current.state != "requested" {
        return Err(ApiError::field(
            "state",
            format!(
                "a {} consent cannot be edited or deleted; request a new one",
                current.state
            ),
        ));
    }
    Ok(current)
}

/// Edits the purpose, recipient, terms or expiry of a consent not yet answered.
pub async fn update(
    tx: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    version: i32,
    input: ConsentRequest,
) -> ApiResult<ConsentView> {
    check(&input)?;
    let before = still_requested(tx, id, version).await?;
    if before.person_id != input.person_id {
        return Err(ApiError::field(
            "personId",
            "a consent belongs to its person for good",
        ));
    }
    let updated = sqlx::query(
        "UPDATE consents SET purpose = $3, recipient = $4, terms = $5, expires_at = $6, updated_by = $7, \
         version = version + 1, updated_at = now() WHERE id = $1 AND version = $2 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(version)
    .bind(input.purpose.trim())
    .bind(input.recipient.trim())
    .bind(&input.terms)
    .bind(input.expires_at)
    .bind(actor.user_id)
    .execute(&mut *tx)
    .await
    .map_err(write_error)?;
    if updated.rows_affected() == 0 {
        return Err(stale_or_missing(tx, Table::Consents, id).await);
    }
    let after = load(tx, id).await?;
    let before_snapshot = json!({"purpose": before.purpose, "recipient": before.recipient, "version": before.version});
    let after_snapshot =
        json!({"purpose": after.purpose, "recipient": after.recipient, "version": after.version});
    audit::record(
        tx,
        Some(actor.user_id),
        "update",
        "consent",
        id.to_string(),
        Some(&before_snapshot),
        Some(&after_snapshot),
    )
    .await?;
    Ok(after)
}

/// Deletes a consent request not yet answered.
pub async fn delete(
    tx: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    version: i32,
) -> ApiResult<i32> {
    still_requested(tx, id, version).await?;
    soft_delete_audited(tx, Table::Consents, "consent", id, version, actor).await
}

/// The state a transition asks for is one a consent can move to.
pub fn check_transition(change: &Transition) -> ApiResult<()> {
    if !consent::STATES.contains(&change.state.as_str()) || change.state == "requested" {
        return Err(ApiError::field(
            "state",
            "must be given, refused, withdrawn or expired",
        ));
    }
    Ok(())
}

/// Moves a consent to a new state (the farmer's answer, or its end), kept in the history.
pub async fn transition(
    tx: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    version: i32,
    change: &Transition,
) -> ApiResult<ConsentView> {
    check_transition(change)?;
    let current = load(tx, id).await?;
    if current.version != version {
        return Err(ApiError::StaleVersion {
            current: current.version,
        });
    }
    if !consent::may_follow(&current.state, &change.state) {
        return Err(ApiError::field(
            "state",
            format!("a {} consent cannot become {}", current.state, change.state),
        ));
    }
    sqlx::query(
        "UPDATE consents SET state = $2, version = version + 1, updated_at = now(), updated_by = $3, \
         given_at = CASE WHEN $2 = 'given' THEN now() ELSE given_at END WHERE id = $1 AND version = $4",
    )
    .bind(id)
    .bind(&change.state)
    .bind(actor.user_id)
    .bind(version)
    .execute(&mut *tx)
    .await
    .map_err(write_error)?;
    record_history(tx, id, &change.state, actor.user_id).await?;
    let updated = load(tx, id).await?;
    let before = json!({"state": current.state, "version": current.version});
    let after = json!({"state": updated.state, "version": updated.version});
    audit::record(
        tx,
        Some(actor.user_id),
        &change.state,
        "consent",
        id.to_string(),
        Some(&before),
        Some(&after),
    )
    .await?;
    Ok(updated)
}
