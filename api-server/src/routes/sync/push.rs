//! The push: a batch of mutations a device made offline, each answered on its own. Each runs
//! in a transaction of its own (inside it, a savepoint around the change), so a refused
//! mutation leaves nothing behind and an applied one stays applied whatever follows. The
//! answer is remembered with the mutation, in the same transaction, under the device's client
//! mutation id, so a replay (a device that lost the answer) applies nothing twice.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::conflicts;
use super::records::{self, Entity, Mutation, Op};
use crate::auth::Actor;
use crate::crypto::KeyRing;
use crate::db::begin_as;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::ApiJson;
use crate::routes::common::{WRITERS, require};
use crate::routes::persons::input::Pii;

/// The most mutations one push may carry, which bounds the time one request holds the server.
pub const MAX_MUTATIONS: usize = 200;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// Applied in order, at most 200.
    pub mutations: Vec<Mutation>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Written; `version` is the record's new version.
    Applied,
    /// Seen before under this client mutation id; nothing written. `firstOutcome` and the
    /// other fields are the first answer.
    Duplicate,
    /// Based on a version the server had moved past; nothing written to the record. `version`
    /// is the server's, `current` the server's record, and the device's data is kept as the
    /// conflict `conflictId` (GET /api/dfr/sync/conflicts).
    Conflict,
    /// Refused like the endpoint would refuse it; `code`, `detail` and `errors` say why.
    Rejected,
}

#[derive(Serialize, Deserialize, Clone, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MutationResult {
    pub client_mutation_id: Uuid,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_outcome: Option<Outcome>,
    pub entity: Entity,
    pub id: Uuid,
    pub version: Option<i32>,
    pub conflict_id: Option<Uuid>,
    pub code: Option<String>,
    pub detail: Option<String>,
    #[serde(default)]
    pub errors: Vec<FieldError>,
    /// For a conflict, the server's record as its GET answers it (absent when the server has
    /// deleted it). Not kept for a replay: pull for the record as it stands.
    #[serde(default, skip_deserializing)]
    pub current: Option<Value>,
}

impl MutationResult {
    fn new(mutation: &Mutation, outcome: Outcome) -> MutationResult {
        MutationResult {
            client_mutation_id: mutation.client_mutation_id,
            outcome,
            first_outcome: None,
            entity: mutation.entity,
            id: mutation.id,
            version: None,
            conflict_id: None,
            code: None,
            detail: None,
            errors: Vec::new(),
            current: None,
        }
    }

    fn rejected(mutation: &Mutation, error: &ApiError) -> MutationResult {
        MutationResult {
            code: Some(error.code().into()),
            detail: Some(error.to_string()),
            errors: error.field_errors(),
            ..MutationResult::new(mutation, Outcome::Rejected)
        }
    }

    fn replayed(self) -> MutationResult {
        MutationResult {
            first_outcome: Some(self.outcome),
            outcome: Outcome::Duplicate,
            ..self
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PushResponse {
    /// One per mutation, in the order sent.
    pub results: Vec<MutationResult>,
}

#[utoipa::path(post, path = "/api/dfr/sync/push", tag = "sync", request_body = PushRequest,
    security(("bearer" = [])),
    responses((status = 200, description = "Each mutation's outcome: applied, duplicate, conflict or rejected", body = PushResponse),
        (status = 413, description = "More mutations than one push may carry (batch_too_large), or a body over the size limit", body = crate::error::ProblemDoc),
        (status = 422, description = "A mutation that is not one (unknown entity or op, missing id)", body = crate::error::ProblemDoc)))]
pub async fn push(
    State(pool): State<PgPool>,
    State(ring): State<Arc<KeyRing>>,
    actor: Actor,
    ApiJson(request): ApiJson<PushRequest>,
) -> ApiResult<Json<PushResponse>> {
    require(&actor, WRITERS, "sync")?;
    if request.mutations.len() > MAX_MUTATIONS {
        return Err(ApiError::TooManyMutations { max: MAX_MUTATIONS });
    }
    // A server fault stops the push with 500; what was applied before it is remembered, so
    // the device sends the batch again and gets `duplicate` for those.
    let mut results = Vec::with_capacity(request.mutations.len());
    for mutation in &request.mutations {
        results.push(one(&pool, &ring, &actor, mutation).await?);
    }
    Ok(Json(PushResponse { results }))
}

async fn remembered(
    tx: &mut PgConnection,
    mutation: &Mutation,
) -> ApiResult<Option<MutationResult>> {
    let stored: Option<Value> = sqlx::query_scalar(
        "SELECT result FROM sync_mutations WHERE user_id = dfr_user()::uuid AND client_mutation_id = $1",
    )
    .bind(mutation.client_mutation_id)
    .fetch_optional(&mut *tx)
    .await?;
    stored
        .map(|value| serde_json::from_value(value).map_err(|e| ApiError::Internal(e.to_string())))
        .transpose()
}

async fn one(
    pool: &PgPool,
    ring: &KeyRing,
    actor: &Actor,
    mutation: &Mutation,
) -> ApiResult<MutationResult> {
    let mut tx = begin_as(pool, actor).await?;
    if let Some(first) = remembered(&mut tx, mutation).await? {
        tx.commit().await?;
        return Ok(first.replayed());
    }
    sqlx::query("SAVEPOINT mutation").execute(&mut *tx).await?;
    let result = match records::apply(&mut tx, ring, actor, mutation).await {
        Ok(version) => {
            sqlx::query("RELEASE SAVEPOINT mutation")
                .execute(&mut *tx)
                .await?;
            MutationResult {
                version: Some(version),
                ..MutationResult::new(mutation, Outcome::Applied)
            }
        }
        Err(error) => {
            sqlx::query("ROLLBACK TO SAVEPOINT mutation")
                .execute(&mut *tx)
                .await?;
            outcome_of_failure(&mut tx, ring, actor, mutation, error).await?
        }
    };
    let mut stored = result.clone();
    stored.current = None;
    let stored = serde_json::to_value(&stored).map_err(|e| ApiError::Internal(e.to_string()))?;
    // Another push of the same mutation may be running: the insert waits for it, and if it
    // committed first, this one is dropped whole and answered with that one's result.
    let inserted = sqlx::query(
        "INSERT INTO sync_mutations (user_id, client_mutation_id, entity, record_id, result) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(actor.user_id)
    .bind(mutation.client_mutation_id)
    .bind(mutation.entity.as_str())
    .bind(mutation.id)
    .bind(stored)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        tx.rollback().await?;
        let mut tx = begin_as(pool, actor).await?;
        let first = remembered(&mut tx, mutation)
            .await?
            .ok_or_else(|| ApiError::Internal("a remembered mutation vanished".into()))?;
        tx.commit().await?;
        return Ok(first.replayed());
    }
    tx.commit().await?;
    Ok(result)
}

/// What a mutation that failed comes to: a conflict when it was based on a version the server
/// moved past (or deleted), else a rejection. A server fault fails the push.
async fn outcome_of_failure(
    tx: &mut PgConnection,
    ring: &KeyRing,
    actor: &Actor,
    mutation: &Mutation,
    error: ApiError,
) -> ApiResult<MutationResult> {
    if let Some(refused) = refused_by_database(mutation, &error) {
        return Ok(refused);
    }
    Ok(match error {
        ApiError::Database(_) | ApiError::Internal(_) => return Err(error),
        ApiError::StaleVersion { current } => {
            conflict(tx, ring, actor, mutation, current, false).await?
        }
        ApiError::NotFound if mutation.op != Op::Create => {
            match tombstone_version(tx, mutation).await? {
                Some(version) => conflict(tx, ring, actor, mutation, version, true).await?,
                None => MutationResult::rejected(mutation, &error),
            }
        }
        other => MutationResult::rejected(mutation, &other),
    })
}

/// A rule of the schema the API does not name (an integrity constraint violation, SQLSTATE
/// class 23) refused this mutation: its data is at fault, not the server, so the mutation is
/// rejected and the batch goes on. The answer names the constraint, never the SQL.
fn refused_by_database(mutation: &Mutation, error: &ApiError) -> Option<MutationResult> {
    let ApiError::Database(sqlx::Error::Database(database)) = error else {
        return None;
    };
    if !database.code().is_some_and(|code| code.starts_with("23")) {
        return None;
    }
    Some(MutationResult {
        code: Some("refused_by_database".into()),
        detail: Some(match database.constraint() {
            Some(constraint) => format!("the database refused the change (rule {constraint})"),
            None => "the database refused the change".into(),
        }),
        ..MutationResult::new(mutation, Outcome::Rejected)
    })
}

/// The version of the record's tombstone, when the server deleted what the device changed.
async fn tombstone_version(tx: &mut PgConnection, mutation: &Mutation) -> ApiResult<Option<i32>> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM {} WHERE id = $1 AND deleted_at IS NOT NULL",
        mutation.entity.table().name()
    )))
    .bind(mutation.id)
    .fetch_optional(&mut *tx)
    .await?)
}

/// The server keeps its version; the device's is kept as a conflict beside it.
async fn conflict(
    tx: &mut PgConnection,
    ring: &KeyRing,
    actor: &Actor,
    mutation: &Mutation,
    server_version: i32,
    deleted: bool,
) -> ApiResult<MutationResult> {
    let area: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT area_code FROM {} WHERE id = $1",
        mutation.entity.table().name()
    )))
    .bind(mutation.id)
    .fetch_one(&mut *tx)
    .await?;
    let current = if deleted {
        None
    } else {
        records::views(
            tx,
            ring,
            Pii::for_role(actor.role),
            mutation.entity,
            &[mutation.id],
        )
        .await?
        .pop()
        .map(|(_, record)| record)
    };
    let conflict_id = conflicts::record(tx, ring, actor, mutation, &area, server_version).await?;
    Ok(MutationResult {
        version: Some(server_version),
        conflict_id: Some(conflict_id),
        code: Some(
            if deleted {
                "deleted_on_server"
            } else {
                "stale_version"
            }
            .into(),
        ),
        detail: Some(format!(
            "the server's record is at version {server_version}{}; your change is kept as conflict {conflict_id}",
            if deleted { " (deleted)" } else { "" }
        )),
        current,
        ..MutationResult::new(mutation, Outcome::Conflict)
    })
}
