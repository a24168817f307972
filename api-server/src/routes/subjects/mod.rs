//! Data-subject rights: a person's complete record as one document (access), and erasure that
//! overwrites the person's PII wherever the registry holds it (the audit chain keeps only ids
//! and digests, so it verifies after). Retention applies the same erasure on a schedule
//! (`dfr-api retention apply`, see `crate::retention`).

pub mod document;
pub mod erase;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use self::document::SubjectRecord;
use self::erase::Erasure;
use crate::auth::{Actor, Role};
use crate::crypto::KeyRing;
use crate::db::begin_as;
use crate::error::ApiResult;
use crate::routes::common::require;
use crate::state::AppState;

/// Staff who answer a subject access request (supervisors for persons in their areas).
const ACCESS: &[Role] = &[Role::NationalAdmin, Role::Supervisor];
/// Erasure cannot be undone: national admins only.
const ERASERS: &[Role] = &[Role::NationalAdmin];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(record))
        .routes(routes!(erasure))
}

#[utoipa::path(get, path = "/api/dfr/persons/{id}/record", tag = "subject rights",
    params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, description = "Everything the registry holds about the person, deleted records included", body = SubjectRecord),
        (status = 403, description = "Only national admins and supervisors (forbidden)", body = crate::error::ProblemDoc),
        (status = 404, description = "No such person, or not in your areas (not_found)", body = crate::error::ProblemDoc)))]
pub async fn record(
    State(pool): State<PgPool>,
    State(ring): State<Arc<KeyRing>>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<SubjectRecord>> {
    require(&actor, ACCESS, "persons:read")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let document = document::collect(&mut tx, &ring, id).await?;
    tx.commit().await?;
    Ok(Json(document))
}

#[utoipa::path(post, path = "/api/dfr/persons/{id}/erasure", tag = "subject rights",
    params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, description = "Erased (or erased before: erasedNow false, nothing written): PII overwritten, the person and their plots, holdings, profiles and consents deleted, households left, conflicts' device data dropped", body = Erasure),
        (status = 403, description = "Only national admins (forbidden)", body = crate::error::ProblemDoc),
        (status = 404, description = "No such person (not_found)", body = crate::error::ProblemDoc)))]
pub async fn erasure(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Erasure>> {
    require(&actor, ERASERS, "persons:erase")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let erased = erase::erase(&mut tx, Some(actor.user_id), id).await?;
    tx.commit().await?;
    Ok(Json(erased))
}
