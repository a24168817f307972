//! An import as one unit of work, run either within its request or, with `?background=true`,
//! as a job after the request is answered `202` with the job (migrations/0014_import_jobs.sql).
//! The job's row says how far it is: while it writes, the import reports each record written
//! through a watch channel, and a task beside it copies the latest count to the row at most
//! four times a second (and at least every ten seconds, so a row left behind by a server that
//! stopped shows itself by its age). The import's own writes stay in their one transaction.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row as _};
use tokio::sync::watch;
use uuid::Uuid;

use super::rows::ImportReport;
use super::table::{ReportLine, Table};
use super::{household_import, import, plot_import};
use crate::auth::Actor;
use crate::crypto::KeyRing;
use crate::db::begin_as;
use crate::error::{ApiError, ApiResult};

/// How long a job's row may go unchanged while it runs before it is answered as failed.
const ABANDONED_AFTER_SECONDS: i64 = 60;
const HEARTBEAT: Duration = Duration::from_secs(10);
const REPORT_EVERY: Duration = Duration::from_millis(250);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Persons,
    Plots,
    Households,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Persons => "persons",
            Kind::Plots => "plots",
            Kind::Households => "households",
        }
    }

    fn parse(text: &str) -> Option<Kind> {
        [Kind::Persons, Kind::Plots, Kind::Households]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// The scope an API client would need (API clients are not importers; the role check
    /// refuses them first).
    pub fn scope(self) -> &'static str {
        match self {
            Kind::Persons => "persons:write",
            Kind::Plots => "plots:write",
            Kind::Households => "households:write",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Reading and checking the rows; nothing written yet.
    Checking,
    /// No line was wrong; writing the new records (`written` of `toWrite`).
    Writing,
    /// Written and committed (or, for a dry run, checked); the report is there.
    Done,
    /// A line was wrong: nothing written; the report says which.
    Rejected,
    /// A write was refused or the server failed (or stopped): nothing written.
    Failed,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Checking => "checking",
            JobState::Writing => "writing",
            JobState::Done => "done",
            JobState::Rejected => "rejected",
            JobState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> JobState {
        [
            JobState::Checking,
            JobState::Writing,
            JobState::Done,
            JobState::Rejected,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
        .unwrap_or(JobState::Failed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Status {
    state: JobState,
    to_write: usize,
    written: usize,
}

/// Where an import tells how far it is; `Progress::none()` for one answered in its request.
#[derive(Default)]
pub struct Progress(Option<watch::Sender<Status>>);

impl Progress {
    pub fn none() -> Progress {
        Progress(None)
    }

    /// Checking is over with no line wrong; `to_write` records follow.
    pub fn writing(&self, to_write: usize) {
        if let Some(sender) = &self.0 {
            sender.send_modify(|status| {
                status.state = JobState::Writing;
                status.to_write = to_write;
            });
        }
    }

    pub fn written(&self, records: usize) {
        if let Some(sender) = &self.0 {
            sender.send_modify(|status| status.written += records);
        }
    }
}

/// Checks the table and, when this is no dry run and no line is wrong, writes it in one
/// transaction of its own; the report.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    pool: &PgPool,
    ring: &KeyRing,
    actor: &Actor,
    kind: Kind,
    table: Table,
    problems: Vec<ReportLine>,
    dry_run: bool,
    progress: &Progress,
) -> ApiResult<ImportReport> {
    let mut tx = begin_as(pool, actor).await?;
    let report = match kind {
        Kind::Persons => {
            import::persons(&mut tx, ring, actor, table, problems, dry_run, progress).await?
        }
        Kind::Plots => {
            plot_import::plots(&mut tx, actor, table, problems, dry_run, progress).await?
        }
        Kind::Households => {
            household_import::households(&mut tx, actor, table, problems, dry_run, progress).await?
        }
    };
    if report.dry_run || !report.problems.is_empty() {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(report)
}

/// An import job as its starter polls it.
#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportJob {
    pub id: Uuid,
    pub kind: Kind,
    pub dry_run: bool,
    pub state: JobState,
    /// Rows read from the file (blank rows are skipped).
    pub rows: usize,
    /// Records the import writes, known once checking ends with no line wrong.
    pub to_write: usize,
    /// Records written so far (in the import's transaction: none is visible to others until
    /// the state is done).
    pub written: usize,
    /// Once done or rejected: the report the import would have answered in its request.
    pub report: Option<ImportReport>,
    /// Once failed: the code and detail an import answered in its request would carry.
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn count(row: &PgRow, column: &str) -> Result<usize, sqlx::Error> {
    Ok(usize::try_from(row.try_get::<i32, _>(column)?).unwrap_or(0))
}

fn job(row: &PgRow) -> ApiResult<ImportJob> {
    let kind: String = row.try_get("kind")?;
    let report: Option<serde_json::Value> = row.try_get("report")?;
    let mut job = ImportJob {
        id: row.try_get("id")?,
        kind: Kind::parse(&kind)
            .ok_or_else(|| ApiError::Internal(format!("import job of kind {kind}")))?,
        dry_run: row.try_get("dry_run")?,
        state: JobState::parse(&row.try_get::<String, _>("state")?),
        rows: count(row, "rows")?,
        to_write: count(row, "to_write")?,
        written: count(row, "written")?,
        report: report
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        error_code: row.try_get("error_code")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    };
    let running = matches!(job.state, JobState::Checking | JobState::Writing);
    if running && row.try_get::<bool, _>("abandoned")? {
        job.state = JobState::Failed;
        job.error_code = Some("internal".into());
        job.error = Some(
            "the server running the import stopped before it ended; nothing was written".into(),
        );
    }
    Ok(job)
}

/// The caller's job (row-level security hides everyone else's).
pub async fn find(pool: &PgPool, actor: &Actor, id: Uuid) -> ApiResult<Option<ImportJob>> {
    let mut tx = begin_as(pool, actor).await?;
    let row = sqlx::query(
        "SELECT *, updated_at < now() - make_interval(secs => $2) AS abandoned \
         FROM import_jobs WHERE id = $1",
    )
    .bind(id)
    .bind(ABANDONED_AFTER_SECONDS as f64)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.as_ref().map(job).transpose()
}

/// Records the job and starts it; the job as it is now (checking).
pub async fn start(
    pool: PgPool,
    ring: Arc<KeyRing>,
    actor: Actor,
    kind: Kind,
    (table, problems): (Table, Vec<ReportLine>),
    dry_run: bool,
) -> ApiResult<ImportJob> {
    let id = Uuid::new_v4();
    let rows = i32::try_from(table.rows.len())
        .map_err(|_| ApiError::field("file", "has too many rows"))?;
    let mut tx = begin_as(&pool, &actor).await?;
    sqlx::query(
        "INSERT INTO import_jobs (id, user_id, kind, dry_run, state, rows) \
         VALUES ($1, $2, $3, $4, 'checking', $5)",
    )
    .bind(id)
    .bind(actor.user_id)
    .bind(kind.as_str())
    .bind(dry_run)
    .bind(rows)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let job = find(&pool, &actor, id).await?.ok_or(ApiError::NotFound)?;
    tokio::spawn(work(pool, ring, actor, id, kind, table, problems, dry_run));
    Ok(job)
}

#[allow(clippy::too_many_arguments)]
async fn work(
    pool: PgPool,
    ring: Arc<KeyRing>,
    actor: Actor,
    id: Uuid,
    kind: Kind,
    table: Table,
    problems: Vec<ReportLine>,
    dry_run: bool,
) {
    let (sender, receiver) = watch::channel(Status {
        state: JobState::Checking,
        to_write: 0,
        written: 0,
    });
    let reporter = tokio::spawn(report_progress(pool.clone(), actor.clone(), id, receiver));
    let progress = Progress(Some(sender));
    let outcome = run(
        &pool, &ring, &actor, kind, table, problems, dry_run, &progress,
    )
    .await;
    // Dropping the sender ends the reporter, so its last write comes before the final one.
    let last = progress.0.as_ref().map(|sender| *sender.borrow());
    drop(progress);
    if let Err(error) = reporter.await {
        tracing::warn!(%error, job = %id, "import progress reporter");
    }
    let written = last.map_or(0, |status| status.written);
    if let Err(error) = finish(&pool, &actor, id, outcome, written).await {
        tracing::error!(%error, job = %id, "could not record the end of an import job");
    }
}

async fn report_progress(
    pool: PgPool,
    actor: Actor,
    id: Uuid,
    mut receiver: watch::Receiver<Status>,
) {
    loop {
        // Ok(Err) is the sender gone: the import ended. A timeout writes the row unchanged,
        // which keeps updated_at fresh.
        if let Ok(Err(_)) = tokio::time::timeout(HEARTBEAT, receiver.changed()).await {
            return;
        }
        let status = *receiver.borrow_and_update();
        if let Err(error) = write_status(&pool, &actor, id, status).await {
            tracing::warn!(%error, job = %id, "could not record an import job's progress");
        }
        tokio::time::sleep(REPORT_EVERY).await;
    }
}

async fn write_status(pool: &PgPool, actor: &Actor, id: Uuid, status: Status) -> ApiResult<()> {
    let mut tx = begin_as(pool, actor).await?;
    sqlx::query(
        "UPDATE import_jobs SET state = $2, to_write = $3, written = $4, updated_at = now() \
         WHERE id = $1 AND state IN ('checking', 'writing')",
    )
    .bind(id)
    .bind(status.state.as_str())
    .bind(i32::try_from(status.to_write).unwrap_or(i32::MAX))
    .bind(i32::try_from(status.written).unwrap_or(i32::MAX))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn finish(
    pool: &PgPool,
    actor: &Actor,
    id: Uuid,
    outcome: ApiResult<ImportReport>,
    written: usize,
) -> ApiResult<()> {
    let (state, report, code, error) = match outcome {
        Ok(report) => {
            let state = if report.problems.is_empty() {
                JobState::Done
            } else {
                JobState::Rejected
            };
            let json =
                serde_json::to_value(&report).map_err(|e| ApiError::Internal(e.to_string()))?;
            (state, Some(json), None, None)
        }
        Err(error) => {
            tracing::warn!(%error, job = %id, "import job failed");
            (
                JobState::Failed,
                None,
                Some(error.code()),
                Some(error.public_detail()),
            )
        }
    };
    let written = if state == JobState::Done { written } else { 0 };
    let mut tx = begin_as(pool, actor).await?;
    sqlx::query(
        "UPDATE import_jobs SET state = $2, written = $3, report = $4, error_code = $5, \
         error = $6, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(i32::try_from(written).unwrap_or(i32::MAX))
    .bind(report)
    .bind(code)
    .bind(error)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
