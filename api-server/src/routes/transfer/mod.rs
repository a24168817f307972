//! Bulk transfer: persons, plots and households imported from CSV or XLSX (a dry run reports
//! every problem by row; an import writes all rows or none, and writes nothing for rows already
//! registered), in the request or as a job to poll, and exports of persons (CSV, XLSX) and plots
//! (GeoJSON) under row-level security and masking.
//!
//! `table` reads and writes the files, `rows` holds what every import shares, `import`,
//! `plot_import` and `household_import` check and register rows of their kind, `jobs` runs an
//! import in its request or in the background, `export` reads.

pub mod export;
pub mod household_import;
pub mod import;
pub mod jobs;
pub mod plot_import;
pub mod rows;
pub mod table;

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use self::jobs::{ImportJob, Kind, Progress};
use self::rows::ImportReport;
use self::table::Format;
use crate::auth::Actor;
use crate::crypto::KeyRing;
use crate::db::begin_as;
use crate::error::{ApiError, ApiResult};
use crate::routes::common::{READERS, WRITERS, require};
use crate::routes::persons::input::Pii;
use crate::state::AppState;

/// The largest file an import takes (10,000 persons are about 1.5 MB of CSV).
pub const IMPORT_MAX_BYTES: usize = 32 * 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(import_persons))
        .routes(routes!(import_plots))
        .routes(routes!(import_households))
        .layer(DefaultBodyLimit::max(IMPORT_MAX_BYTES))
        .routes(routes!(import_job))
        .routes(routes!(export_persons))
        .routes(routes!(export_plots))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Check and report only; write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Answer `202` at once with a job to poll at `GET /api/dfr/imports/{id}` (the Location
    /// header) instead of the report; the file is read and its Content-Type checked first.
    #[serde(default)]
    pub background: bool,
}

/// The import of one request: answered with its report, or started as a job.
async fn import(
    state: (PgPool, Arc<KeyRing>),
    actor: Actor,
    kind: Kind,
    query: ImportQuery,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    require(&actor, WRITERS, kind.scope())?;
    let (pool, ring) = state;
    let read = table::read(format_of(headers)?, body)?;
    if query.background {
        let job = jobs::start(pool, ring, actor, kind, read, query.dry_run).await?;
        let location = format!("/api/dfr/imports/{}", job.id);
        let mut response = (StatusCode::ACCEPTED, Json(job)).into_response();
        if let Ok(value) = header::HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        return Ok(response);
    }
    let (table, problems) = read;
    let progress = Progress::none();
    let report = jobs::run(
        &pool,
        &ring,
        &actor,
        kind,
        table,
        problems,
        query.dry_run,
        &progress,
    )
    .await?;
    Ok(answer(report))
}

#[utoipa::path(post, path = "/api/dfr/imports/persons", tag = "transfer", params(ImportQuery),
    request_body(content = String, content_type = "text/csv",
        description = "A CSV file (or an XLSX workbook, Content-Type application/vnd.openxmlformats-officedocument.spreadsheetml.sheet, first sheet) with a header row of the columns id, national_id_system, national_id, given_name, family_name, sex, birth_date, birth_date_estimated, phone, email, area_code, status"),
    security(("bearer" = [])),
    responses((status = 200, description = "The report: a dry run's, or an import's that wrote its new rows (rows already registered with the same content are unchanged)", body = ImportReport),
        (status = 202, description = "With background=true: the job started (Location: its address)", body = ImportJob),
        (status = 422, description = "A file with problems (import_rejected, the report under `report`, nothing written), or one that cannot be read (validation_failed, field file or Content-Type)", body = crate::error::ProblemDoc),
        (status = 413, description = "Over 32 MiB (payload_too_large)", body = crate::error::ProblemDoc)))]
pub async fn import_persons(
    State(pool): State<PgPool>,
    State(ring): State<Arc<KeyRing>>,
    actor: Actor,
    Query(query): Query<ImportQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    import((pool, ring), actor, Kind::Persons, query, &headers, &body).await
}

#[utoipa::path(post, path = "/api/dfr/imports/plots", tag = "transfer", params(ImportQuery),
    request_body(content = String, content_type = "text/csv",
        description = "A CSV file (or an XLSX workbook, first sheet) with a header row of the columns id (the plot's UUID, required), person_id, geometry (a GeoJSON Point or Polygon as JSON text), tenure, land_use"),
    security(("bearer" = [])),
    responses((status = 200, description = "The report: a dry run's, or an import's that wrote its new rows (plots already registered under their id with the same content are unchanged)", body = ImportReport),
        (status = 202, description = "With background=true: the job started (Location: its address)", body = ImportJob),
        (status = 422, description = "A file with problems (import_rejected, the report under `report`, nothing written), or one that cannot be read (validation_failed)", body = crate::error::ProblemDoc)))]
pub async fn import_plots(
    State(pool): State<PgPool>,
    State(ring): State<Arc<KeyRing>>,
    actor: Actor,
    Query(query): Query<ImportQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    import((pool, ring), actor, Kind::Plots, query, &headers, &body).await
}

#[utoipa::path(post, path = "/api/dfr/imports/households", tag = "transfer", params(ImportQuery),
    request_body(content = String, content_type = "text/csv",
        description = "A CSV file (or an XLSX workbook, first sheet), one row per member, with a header row of the columns household_id (the household's UUID, required; the rows with one id make one household), person_id, role (head, spouse, child or other; exactly one head per household)"),
    security(("bearer" = [])),
    responses((status = 200, description = "The report (`created` and `unchanged` count households, `rows` member rows): a dry run's, or an import's that wrote its new households (households already registered under their id with the same members and roles are unchanged)", body = ImportReport),
        (status = 202, description = "With background=true: the job started (Location: its address)", body = ImportJob),
        (status = 422, description = "A file with problems (import_rejected, the report under `report`, nothing written), or one that cannot be read (validation_failed)", body = crate::error::ProblemDoc)))]
pub async fn import_households(
    State(pool): State<PgPool>,
    State(ring): State<Arc<KeyRing>>,
    actor: Actor,
    Query(query): Query<ImportQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    import(
        (pool, ring),
        actor,
        Kind::Households,
        query,
        &headers,
        &body,
    )
    .await
}

#[utoipa::path(get, path = "/api/dfr/imports/{id}", tag = "transfer", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's import job: state, rows, toWrite and written so far, and at the end its report or error", body = ImportJob),
        (status = 404, description = "No such job of the caller's", body = crate::error::ProblemDoc)))]
pub async fn import_job(
    State(pool): State<PgPool>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ImportJob>> {
    require(&actor, WRITERS, "imports")?;
    let job = jobs::find(&pool, &actor, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(job))
}

fn format_of(headers: &HeaderMap) -> ApiResult<Format> {
    Format::of_content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )
}

/// The report of an import answered in its request, or for one with problems `422
/// import_rejected` carrying it (nothing was written).
fn answer(report: ImportReport) -> Response {
    if report.problems.is_empty() || report.dry_run {
        return (StatusCode::OK, Json(report)).into_response();
    }
    let first = &report.problems[0];
    let problem = json!({
        "type": "https://dfr.io/problems/import_rejected",
        "title": "Import rejected",
        "status": 422,
        "detail": format!("{} problems, nothing imported; the first: row {}, {}: {}",
            report.problems.len(), first.row, first.field, first.message),
        "code": "import_rejected",
        "report": report,
    });
    let mut response = (StatusCode::UNPROCESSABLE_ENTITY, Json(problem)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/problem+json"),
    );
    response
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// csv or xlsx for persons, geojson for plots.
    pub format: String,
    /// Only this area's records.
    pub area: Option<String>,
}

fn file(content_type: &'static str, name: &str, bytes: Vec<u8>) -> Response {
    let disposition = format!("attachment; filename=\"{name}\"");
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    if let Ok(value) = header::HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

#[utoipa::path(get, path = "/api/dfr/exports/persons", tag = "transfer", params(ExportQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "Every person the caller may see, as CSV (text/csv) or XLSX, with the columns an import reads; national IDs, phones and e-mails masked for roles that see them masked"),
        (status = 422, description = "format is not csv or xlsx (validation_failed)", body = crate::error::ProblemDoc)))]
pub async fn export_persons(
    State(pool): State<PgPool>,
    State(ring): State<Arc<KeyRing>>,
    actor: Actor,
    Query(query): Query<ExportQuery>,
) -> ApiResult<Response> {
    require(&actor, READERS, "persons:read")?;
    let (format, content_type, name) = match query.format.as_str() {
        "csv" => (Format::Csv, table::CSV, "persons.csv"),
        "xlsx" => (Format::Xlsx, table::XLSX, "persons.xlsx"),
        _ => return Err(ApiError::field("format", "must be csv or xlsx")),
    };
    let mut tx = begin_as(&pool, &actor).await?;
    let bytes = export::persons(
        &mut tx,
        &ring,
        Pii::for_role(actor.role),
        query.area,
        format,
    )
    .await?;
    tx.commit().await?;
    Ok(file(content_type, name, bytes))
}

#[utoipa::path(get, path = "/api/dfr/exports/plots", tag = "transfer", params(ExportQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "Every plot the caller may see as a GeoJSON FeatureCollection (application/geo+json)"),
        (status = 422, description = "format is not geojson (validation_failed)", body = crate::error::ProblemDoc)))]
pub async fn export_plots(
    State(pool): State<PgPool>,
    actor: Actor,
    Query(query): Query<ExportQuery>,
) -> ApiResult<Response> {
    require(&actor, READERS, "plots:read")?;
    if query.format != "geojson" {
        return Err(ApiError::field("format", "must be geojson"));
    }
    let mut tx = begin_as(&pool, &actor).await?;
    let collection = export::plots_geojson(&mut tx, query.area).await?;
    tx.commit().await?;
    let bytes = serde_json::to_vec(&collection).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(file("application/geo+json", "plots.geojson", bytes))
}
