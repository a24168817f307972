//! The audit log: one event per registry write through the API, sync pushes included (persons,
//! plots, households, farmer profiles and holdings created, updated and deleted; areas
//! created; consents requested, edited, deleted and changed; persons erased; users created,
//! disabled, enabled, unlocked, given a new password or new access, and the bootstrap admin;
//! retention removals), append-only for the application role, each event's hash covering the
//! previous event's hash, so an edit anywhere breaks every link after it. Sign-in bookkeeping
//! (failed attempts, lockouts, refresh tokens), users made with `create-user` and key rotation
//! write no event.
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::error::ApiResult;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Serializes appends so the chain has one order.
const CHAIN_LOCK: i64 = 0x0df0_a0d1;

pub fn digest(value: &Value) -> String {
    // serde_json's Map is ordered by key, so equal documents give equal digests.
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

pub struct Event<'a> {
    pub at: DateTime<Utc>,
    pub actor: Option<Uuid>,
    pub action: &'a str,
    pub entity: &'a str,
    pub entity_id: String,
    pub before_hash: Option<String>,
    pub after_hash: Option<String>,
}

pub fn chain_hash(previous: &str, event: &Event<'_>) -> String {
    let mut hasher = Sha256::new();
    for part in [
        previous.to_string(),
        event
            .at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        event.actor.map(|a| a.to_string()).unwrap_or_default(),
        event.action.to_string(),
        event.entity.to_string(),
        event.entity_id.clone(),
        event.before_hash.clone().unwrap_or_default(),
        event.after_hash.clone().unwrap_or_default(),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0x1f]);
    }
    hex::encode(hasher.finalize())
}

/// Appends an event in the caller's transaction: the write and its audit commit together.
pub async fn record(
    tx: &mut PgConnection,
    actor: Option<Uuid>,
    action: &str,
    entity: &str,
    entity_id: String,
    before: Option<&Value>,
    after: Option<&Value>,
) -> ApiResult<()> {
    Chain::lock(tx)
        .await?
        .append(tx, actor, action, entity, entity_id, before, after)
        .await
}

/// The chain's end, held by the caller's transaction: appends serialize on a lock the
/// transaction keeps until it ends, so a run of appends (an import) reads the last hash once
/// and then costs one insert each.
pub struct Chain {
    previous: String,
}

impl Chain {
    pub async fn lock(tx: &mut PgConnection) -> ApiResult<Chain> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CHAIN_LOCK)
            .execute(&mut *tx)
            .await?;
        let previous: Option<String> =
            sqlx::query_scalar("SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        Ok(Chain {
            previous: previous.unwrap_or_else(|| GENESIS.to_string()),
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn append(
        &mut self,
        tx: &mut PgConnection,
        actor: Option<Uuid>,
        action: &str,
        entity: &str,
        entity_id: String,
        before: Option<&Value>,
        after: Option<&Value>,
    ) -> ApiResult<()> {
        let event = Event {
            at: Utc::now().trunc_subsecs(6),
            actor,
            action,
            entity,
            entity_id,
            before_hash: before.map(digest),
            after_hash: after.map(digest),
        };
        let hash = chain_hash(&self.previous, &event);
        sqlx::query(
            "INSERT INTO audit_events (at, actor, action, entity, entity_id, before_hash, after_hash, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(event.at)
        .bind(event.actor)
        .bind(event.action)
        .bind(event.entity)
        .bind(&event.entity_id)
        .bind(&event.before_hash)
        .bind(&event.after_hash)
        .bind(&self.previous)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        self.previous = hash;
        Ok(())
    }
}

/// The outcome of checking the whole chain.
#[derive(Debug, PartialEq, Eq)]
pub enum Verification {
    Intact { events: u64 },
    Broken { seq: i64, reason: String },
}

pub async fn verify(pool: &PgPool) -> ApiResult<Verification> {
    let rows = sqlx::query(
        "SELECT seq, at, actor, action, entity, entity_id, before_hash, after_hash, prev_hash, hash \
         FROM audit_events ORDER BY seq",
    )
    .fetch_all(pool)
    .await?;
    let mut previous = GENESIS.to_string();
    let mut count = 0;
    for row in rows {
        let seq: i64 = row.try_get("seq")?;
        let stored_prev: String = row.try_get("prev_hash")?;
        if stored_prev != previous {
            return Ok(Verification::Broken {
                seq,
                reason: "prev_hash does not match the previous event's hash".into(),
            });
        }
        let event = Event {
            at: row.try_get("at")?,
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            entity: row.try_get("entity")?,
            entity_id: row.try_get("entity_id")?,
            before_hash: row.try_get("before_hash")?,
            after_hash: row.try_get("after_hash")?,
        };
        let stored: String = row.try_get("hash")?;
        if chain_hash(&previous, &event) != stored {
            return Ok(Verification::Broken {
                seq,
                reason: "the event was altered after it was written".into(),
            });
        }
        previous = stored;
        count += 1;
    }
    Ok(Verification::Intact { events: count })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str) -> Event<'_> {
        Event {
            at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            actor: None,
            action,
            entity: "person",
            entity_id: "1".into(),
            before_hash: None,
            after_hash: Some("ab".into()),
        }
    }

    #[test]
    fn the_hash_covers_the_previous_link_and_every_field() {
        let a = chain_hash(GENESIS, &event("create"));
        assert_ne!(a, chain_hash(GENESIS, &event("update")));
        assert_ne!(a, chain_hash(&a, &event("create")));
        assert_eq!(a, chain_hash(GENESIS, &event("create")));
    }

    #[test]
    fn digests_do_not_depend_on_key_order() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap_or_default();
        let b: Value = serde_json::from_str(r#"{"a":2,"b":1}"#).unwrap_or_default();
        assert_eq!(digest(&a), digest(&b));
    }
}
