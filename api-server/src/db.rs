//! Transactions that carry who is asking, so PostgreSQL's row-level security decides what each
//! statement may see and change.

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
