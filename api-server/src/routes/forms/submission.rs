//! Form submissions as stored: what a client sends and gets back, the checks (against the form
//! version the submission names), the SQL, and the writes as operations on the caller's
//! transaction with their audit events, shared by the HTTP handlers and the sync push.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::answers;
use super::definition::{self, FormView, Subject, invalid};
use crate::audit;
use crate::auth::Actor;
use crate::constraint;
use crate::error::{ApiError, ApiResult};
use crate::routes::common::{
    Table, soft_delete_audited, stale_or_missing, visible_person_area, write_error,
};
use crate::routes::paging;
use crate::routes::persons::ops::Created;

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubmissionInput {
    /// The instance id the device gave the submission: sending it again is recognised.
    pub id: Option<Uuid>,
    pub form_key: String,
    pub form_version: i32,
    /// The person, household or plot the form is about (the form says which).
    pub subject_id: Uuid,
    /// Answers by field name.
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
}

#[derive(Serialize, Debug, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmissionView {
    pub id: Uuid,
    pub version: i32,
    pub form_key: String,
    pub form_version: i32,
    pub subject: Subject,
    pub subject_id: Uuid,
    pub area_code: String,
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Uuid,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubmissionQuery {
    pub form_key: Option<String>,
    pub form_version: Option<i32>,
    pub subject_id: Option<Uuid>,
    pub area: Option<String>,
    /// The `next` cursor of the previous page.
    pub after: Option<Uuid>,
    pub limit: Option<i64>,
}

const COLUMNS: &str = "id, version, form_key, form_version, subject, subject_id, area_code, data, \
    updated_at, updated_by";

fn view(row: &PgRow) -> ApiResult<SubmissionView> {
    let subject: String = row.try_get("subject")?;
    let data: Value = row.try_get("data")?;
    Ok(SubmissionView {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        form_key: row.try_get("form_key")?,
        form_version: row.try_get("form_version")?,
        subject: Subject::parse(&subject)
            .ok_or_else(|| ApiError::Internal(format!("unknown subject {subject}")))?,
        subject_id: row.try_get("subject_id")?,
        area_code: row.try_get("area_code")?,
        data: match data {
            Value::Object(map) => map,
            _ => Map::new(),
        },
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

fn snapshot(s: &SubmissionView) -> Value {
    json!({"id": s.id, "version": s.version, "formKey": s.form_key, "formVersion": s.form_version,
           "subjectId": s.subject_id, "data": s.data})
}

/// The form version the submission names, and the subject's area, once the answers pass.
async fn checked(tx: &mut PgConnection, input: &SubmissionInput) -> ApiResult<(FormView, String)> {
    let form = definition::find(tx, &input.form_key, input.form_version)
        .await?
        .ok_or_else(|| {
            ApiError::field(
                "formVersion",
                format!(
                    "form {:?} has no version {}",
                    input.form_key, input.form_version
                ),
            )
        })?;
    let problems = answers::problems(&form, &input.data);
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    let area = match form.subject {
        Subject::Person => visible_person_area(tx, input.subject_id, "subjectId").await?,
        Subject::Household | Subject::Plot => {
            let sql = if form.subject == Subject::Household {
                "SELECT area_code FROM households WHERE id = $1 AND deleted_at IS NULL"
            } else {
                "SELECT area_code FROM plots WHERE id = $1 AND deleted_at IS NULL"
            };
            sqlx::query_scalar(sql)
                .bind(input.subject_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| {
                    ApiError::field(
                        "subjectId",
                        format!("no such {} in the areas you may see", form.subject.as_str()),
                    )
                })?
        }
    };
    Ok((form, area))
}

pub async fn find(tx: &mut PgConnection, id: Uuid) -> ApiResult<Option<SubmissionView>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM form_submissions WHERE id = $1 AND deleted_at IS NULL"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .as_ref()
    .map(view)
    .transpose()
}

/// Records a submission under its instance id; the same submission sent again is answered
/// with what was recorded, and writes nothing.
pub async fn create(
    tx: &mut PgConnection,
    actor: &Actor,
    input: SubmissionInput,
) -> ApiResult<(Created, SubmissionView)> {
    let id = input.id.ok_or_else(|| {
        ApiError::field(
            "id",
            "the instance id the device gave the submission is required",
        )
    })?;
    let (form, area) = checked(tx, &input).await?;
    if let Some(existing) = find(tx, id).await? {
        let same = existing.form_key == input.form_key
            && existing.form_version == input.form_version
            && existing.subject_id == input.subject_id
            && existing.data == input.data;
        return if same {
            Ok((Created::Replayed, existing))
        } else {
            Err(ApiError::Taken(&constraint::FORM_SUBMISSION_ID))
        };
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO form_submissions (id, form_key, form_version, subject, subject_id, area_code, data, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(&form.key)
    .bind(form.version)
    .bind(form.subject.as_str())
    .bind(input.subject_id)
    .bind(&area)
    .bind(Value::Object(input.data))
    .bind(actor.user_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(write_error)?;
    let submission = view(&row)?;
    audit::record(
        tx,
        Some(actor.user_id),
        "create",
        "form_submission",
        id.to_string(),
        None,
        Some(&snapshot(&submission)),
    )
    .await?;
    Ok((Created::New, submission))
}

/// Replaces the answers (checked against the form version the edit names) if the submission
/// is at `version`.
pub async fn update(
    tx: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    version: i32,
    input: SubmissionInput,
) -> ApiResult<SubmissionView> {
    let before = find(tx, id).await?.ok_or(ApiError::NotFound)?;
    if input.form_key != before.form_key {
        return Err(ApiError::field(
            "formKey",
            "a submission stays with its form; submit a new one for another form",
        ));
    }
    let (form, area) = checked(tx, &input).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE form_submissions SET form_version = $3, subject = $4, subject_id = $5, area_code = $6, \
         data = $7, updated_by = $8, version = version + 1, updated_at = now() \
         WHERE id = $1 AND version = $2 AND deleted_at IS NULL RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(version)
    .bind(form.version)
    .bind(form.subject.as_str())
    .bind(input.subject_id)
    .bind(&area)
    .bind(Value::Object(input.data))
    .bind(actor.user_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(write_error)?;
    let Some(row) = row else {
        return Err(stale_or_missing(tx, Table::FormSubmissions, id).await);
    };
    let after = view(&row)?;
    audit::record(
        tx,
        Some(actor.user_id),
        "update",
        "form_submission",
        id.to_string(),
        Some(&snapshot(&before)),
        Some(&snapshot(&after)),
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
    soft_delete_audited(
        tx,
        Table::FormSubmissions,
        "form_submission",
        id,
        version,
        actor,
    )
    .await
}

pub async fn list(
    tx: &mut PgConnection,
    query: &SubmissionQuery,
    limit: i64,
) -> ApiResult<Vec<SubmissionView>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM form_submissions WHERE deleted_at IS NULL \
         AND ($1::text IS NULL OR form_key = $1) AND ($2::int IS NULL OR form_version = $2) \
         AND ($3::uuid IS NULL OR subject_id = $3) AND ($4::text IS NULL OR area_code = $4) \
         AND ($5::uuid IS NULL OR id > $5) ORDER BY id LIMIT $6"
    )))
    .bind(&query.form_key)
    .bind(query.form_version)
    .bind(query.subject_id)
    .bind(&query.area)
    .bind(query.after)
    .bind(paging::fetch(limit))
    .fetch_all(&mut *tx)
    .await?;
    rows.iter().map(view).collect()
}

/// The live submissions among `ids` the caller may see.
pub async fn by_ids(tx: &mut PgConnection, ids: &[Uuid]) -> ApiResult<Vec<SubmissionView>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM form_submissions WHERE id = ANY($1) AND deleted_at IS NULL"
    )))
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter().map(view).collect()
}
