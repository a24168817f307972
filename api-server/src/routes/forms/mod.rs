//! Dynamic forms: national admins publish versioned definitions (`/api/dfr/forms`), staff
//! record submissions about a person, household or plot (`/api/dfr/form-submissions`), each
//! checked against the version it names, recognised when sent again under the same instance
//! id, listed, edited with If-Match and soft-deleted like every registry record, and synced
//! (entity `form_submission`).
//!
//! `definition` is the form and its checks, `answers` the checks of a submission's answers,
//! `submission` the submissions' SQL and writes.

pub mod answers;
pub mod definition;
pub mod submission;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use self::definition::{FormInput, FormView};
use self::submission::{SubmissionInput, SubmissionQuery, SubmissionView};
use super::common::{DELETERS, READERS, WRITERS, expected_version, require, same_id, with_etag};
use super::paging::{self, Page};
use crate::audit;
use crate::auth::{Actor, Role};
use crate::db::begin_as;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::routes::persons::ops::Created;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(publish, list_forms))
        .routes(routes!(get_form))
        .routes(routes!(submit, list_submissions))
        .routes(routes!(
            get_submission,
            update_submission,
            delete_submission
        ))
}

#[utoipa::path(post, path = "/api/dfr/forms", tag = "forms", request_body = FormInput,
    security(("bearer" = [])),
    responses((status = 201, description = "Published as the form's next version", body = FormView),
        (status = 422, description = "Every problem of the definition, each naming its place, e.g. fields[2].choices (validation_failed)", body = crate::error::ProblemDoc)))]
pub async fn publish(
    State(pool): State<PgPool>,
    actor: Actor,
    ApiJson(input): ApiJson<FormInput>,
) -> ApiResult<(StatusCode, Json<FormView>)> {
    require(&actor, &[Role::NationalAdmin], "forms:write")?;
    let problems = definition::problems(&input);
    if !problems.is_empty() {
        return Err(definition::invalid(problems));
    }
    let mut tx = begin_as(&pool, &actor).await?;
    let form = definition::publish(&mut tx, actor.user_id, &input).await?;
    let after = serde_json::to_value(&form).map_err(|e| ApiError::Internal(e.to_string()))?;
    audit::record(
        &mut tx,
        Some(actor.user_id),
        "publish",
        "form",
        format!("{}/{}", form.key, form.version),
        None,
        Some(&after),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(form)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FormQuery {
    /// Every version of this form; without it, the newest version of every form.
    pub key: Option<String>,
}

#[utoipa::path(get, path = "/api/dfr/forms", tag = "forms", params(FormQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "Form definitions by key and version", body = Vec<FormView>)))]
pub async fn list_forms(
    State(pool): State<PgPool>,
    actor: Actor,
    Query(query): Query<FormQuery>,
) -> ApiResult<Json<Vec<FormView>>> {
    require(&actor, READERS, "forms:read")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let forms = definition::list(&mut tx, query.key.as_deref()).await?;
    tx.commit().await?;
    Ok(Json(forms))
}

#[utoipa::path(get, path = "/api/dfr/forms/{key}/versions/{version}", tag = "forms",
    params(("key" = String, Path), ("version" = i32, Path)), security(("bearer" = [])),
    responses((status = 200, description = "One version of a form", body = FormView),
        (status = 404, description = "No such form version", body = crate::error::ProblemDoc)))]
pub async fn get_form(
    State(pool): State<PgPool>,
    actor: Actor,
    Path((key, version)): Path<(String, i32)>,
) -> ApiResult<Json<FormView>> {
    require(&actor, READERS, "forms:read")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let form = definition::find(&mut tx, &key, version)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(Json(form))
}

#[utoipa::path(post, path = "/api/dfr/form-submissions", tag = "forms", request_body = SubmissionInput,
    security(("bearer" = [])),
    responses((status = 201, description = "Recorded; ETag is the version", body = SubmissionView),
        (status = 200, description = "The same submission sent again under its instance id: as recorded, nothing written", body = SubmissionView),
        (status = 409, description = "The instance id holds another submission (duplicate_id)", body = crate::error::ProblemDoc),
        (status = 422, description = "Every bad answer, each named data.<field>; an unknown form version (formVersion) or subject (subjectId)", body = crate::error::ProblemDoc)))]
pub async fn submit(
    State(pool): State<PgPool>,
    actor: Actor,
    ApiJson(input): ApiJson<SubmissionInput>,
) -> ApiResult<Response> {
    require(&actor, WRITERS, "forms:write")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let (created, submission) = submission::create(&mut tx, &actor, input).await?;
    tx.commit().await?;
    let status = match created {
        Created::New => StatusCode::CREATED,
        Created::Replayed => StatusCode::OK,
    };
    Ok(with_etag(status, submission.version, submission))
}

#[utoipa::path(get, path = "/api/dfr/form-submissions", tag = "forms", params(SubmissionQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "A page of submissions in id order; follow `next` with `after`", body = Page<SubmissionView>)))]
pub async fn list_submissions(
    State(pool): State<PgPool>,
    actor: Actor,
    Query(query): Query<SubmissionQuery>,
) -> ApiResult<Json<Page<SubmissionView>>> {
    require(&actor, READERS, "forms:read")?;
    let limit = paging::limit(query.limit)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let items = submission::list(&mut tx, &query, limit).await?;
    tx.commit().await?;
    Ok(Json(Page::of(items, limit, |s| s.id)))
}

#[utoipa::path(get, path = "/api/dfr/form-submissions/{id}", tag = "forms", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "The submission; ETag is the version", body = SubmissionView),
        (status = 404, description = "No such submission, or not in your areas", body = crate::error::ProblemDoc)))]
pub async fn get_submission(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    require(&actor, READERS, "forms:read")?;
    let mut tx = begin_as(&pool, &actor).await?;
    let found = submission::find(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(with_etag(StatusCode::OK, found.version, found))
}

#[utoipa::path(put, path = "/api/dfr/form-submissions/{id}", tag = "forms", request_body = SubmissionInput,
    params(("id" = Uuid, Path), ("If-Match" = String, Header, description = "The ETag last read")),
    security(("bearer" = [])),
    responses((status = 200, description = "Answers replaced; ETag is the new version", body = SubmissionView),
        (status = 412, description = "Stale version (stale_version)", body = crate::error::ProblemDoc),
        (status = 428, description = "If-Match missing", body = crate::error::ProblemDoc)))]
pub async fn update_submission(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<SubmissionInput>,
) -> ApiResult<Response> {
    require(&actor, WRITERS, "forms:write")?;
    let version = expected_version(&headers)?;
    same_id(input.id, id)?;
    let mut tx = begin_as(&pool, &actor).await?;
    let updated = submission::update(&mut tx, &actor, id, version, input).await?;
    tx.commit().await?;
    Ok(with_etag(StatusCode::OK, updated.version, updated))
}

#[utoipa::path(delete, path = "/api/dfr/form-submissions/{id}", tag = "forms",
    params(("id" = Uuid, Path), ("If-Match" = String, Header, description = "The ETag last read")),
    security(("bearer" = [])),
    responses((status = 204, description = "Soft-deleted (tombstone kept)"),
        (status = 412, description = "Stale version (stale_version)", body = crate::error::ProblemDoc),
        (status = 428, description = "If-Match missing", body = crate::error::ProblemDoc)))]
pub async fn delete_submission(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    require(&actor, DELETERS, "forms:write")?;
    let version = expected_version(&headers)?;
    let mut tx = begin_as(&pool, &actor).await?;
    submission::delete(&mut tx, &actor, id, version).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
