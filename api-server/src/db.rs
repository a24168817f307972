//! Transactions that carry who is asking, so PostgreSQL's row-level security decides what each
//! statement may see and change in the registry tables that have it (persons, plots,
//! households and their members, farmer profiles, holdings, consents and their history, form
//! submissions) and the sync tables (the change log and conflicts by area, remembered
//! mutations by user). Users, refresh tokens, audit events, areas and form definitions have
//! none: grants alone limit the application role there.

use sqlx::{PgPool, Postgres, Transaction};

use crate::auth::Actor;
use crate::error::ApiResult;

/// Migrations embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub async fn begin_as<'a>(pool: &'a PgPool, actor: &Actor) -> ApiResult<Transaction<'a, Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT set_config('dfr.role', $1, true), set_config('dfr.areas', $2, true), \
         set_config('dfr.person_id', $3, true), set_config('dfr.user_id', $4, true)",
    )
    .bind(actor.role.as_str())
    .bind(actor.areas.join(","))
    .bind(actor.person.map(|p| p.to_string()).unwrap_or_default())
    .bind(actor.user_id.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(tx)
}

/// Refuses a connection that reached a standby. For a moment after a failover the read-write
/// Service can still route to the former leader (its role label changes a loop later); a
/// connection kept from that moment would serve stale reads and fail every write. The pool
/// then connects again, until it reaches the leader.
pub async fn refuse_standby(connection: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(connection)
        .await?;
    if standby {
        return Err(sqlx::Error::Protocol(
            "the read-write address reached a standby (a failover is in progress)".into(),
        ));
    }
    Ok(())
}

/// Checks, as the application role, that every migration this binary embeds is applied, so a
/// server never runs against an older schema (migrations run in their own step, `dfr-api
/// migrate`, as the owner). A schema newer than the binary is served: a rolling update
/// migrates before the old servers stop.
pub async fn check_schema(pool: &PgPool) -> Result<(), String> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await
            .map_err(|e| {
                format!(
                    "cannot read the applied migrations ({e}); the schema predates this \
                     version: run `dfr-api migrate` as the owner role first"
                )
            })?;
    let missing: Vec<String> = MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .map(|m| format!("{:04} {}", m.version, m.description))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the database schema is behind this version (not applied: {}): run `dfr-api \
             migrate` with DFR_MIGRATION_DATABASE_USER and DFR_MIGRATION_DATABASE_PASSWORD \
             (the owner role) first",
            missing.join(", ")
        ))
    }
}
