//! Importing plots from a table: each row's id (required, so a re-run is recognised), person,
//! GeoJSON geometry (as text), tenure and land use checked as `POST /api/dfr/plots` checks a
//! plot, reported line by line, and written only when no line is wrong. A row that describes a
//! plot already registered under its id is unchanged.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::import::ImportReport;
use super::table::{ReportLine, Row, Table};
use crate::auth::Actor;
use crate::error::ApiResult;
use crate::routes::plots::record::{self as plots, PlotInput};

pub const COLUMNS: &[&str] = &["id", "person_id", "geometry", "tenure", "land_use"];

fn column_of(field: &str) -> &str {
    match field {
        "personId" => "person_id",
        "landUse" => "land_use",
        other => other,
    }
}

fn parse(positions: &HashMap<&str, usize>, row: &Row) -> Result<PlotInput, ReportLine> {
    let cell = |name: &str| {
        positions
            .get(name)
            .and_then(|&i| row.cells.get(i))
            .map_or("", String::as_str)
    };
    let bad = |name: &str, message: &str| ReportLine::new(row.number, name, "invalid", message);
    let id = cell("id").parse::<Uuid>().map_err(|_| {
        bad(
            "id",
            "must be the plot's UUID (a re-run recognises the plot by it)",
        )
    })?;
    let person_id = cell("person_id")
        .parse::<Uuid>()
        .map_err(|_| bad("person_id", "must be a person's UUID"))?;
    let geometry: Value = serde_json::from_str(cell("geometry"))
        .map_err(|_| bad("geometry", "must be a GeoJSON geometry, as JSON text"))?;
    let input = PlotInput {
        id: Some(id),
        person_id,
        geometry,
        tenure: cell("tenure").to_string(),
        land_use: cell("land_use").to_string(),
    };
    plots::checked(&input).map_err(|error| match error.field_errors().first() {
        Some(field) => ReportLine::new(
            row.number,
            column_of(&field.field),
            "invalid",
            field.message.clone(),
        ),
        None => ReportLine::new(row.number, "", "invalid", error.to_string()),
    })?;
    Ok(input)
}

/// Checks the table and, unless `dry_run` or a line is wrong, registers its new plots in the
/// caller's transaction.
pub async fn plots(
    tx: &mut PgConnection,
    actor: &Actor,
    table: Table,
    mut problems: Vec<ReportLine>,
    dry_run: bool,
) -> ApiResult<ImportReport> {
    let mut report = ImportReport {
        dry_run,
        rows: table.rows.len(),
        created: 0,
        unchanged: 0,
        problems: Vec::new(),
    };
    let mut positions = HashMap::new();
    for (i, name) in table.header.iter().enumerate() {
        match COLUMNS.iter().find(|c| **c == name.as_str()) {
            Some(column) if positions.insert(*column, i).is_none() => {}
            Some(_) => problems.push(ReportLine::new(1, name, "unknown_column", "appears twice")),
            None => problems.push(ReportLine::new(
                1,
                name,
                "unknown_column",
                format!("not a column of a plots file ({})", COLUMNS.join(", ")),
            )),
        }
    }
    for name in COLUMNS {
        if !positions.contains_key(name) {
            problems.push(ReportLine::new(1, name, "missing_column", "is required"));
        }
    }
    if !problems.is_empty() && problems.iter().any(|p| p.row == 1) {
        report.problems = problems;
        return Ok(report);
    }
    let mut candidates = Vec::new();
    let mut first_row_of: HashMap<Uuid, usize> = HashMap::new();
    for row in &table.rows {
        match parse(&positions, row) {
            Ok(input) => {
                let id = input.id.unwrap_or_default();
                if let Some(first) = first_row_of.insert(id, row.number) {
                    problems.push(ReportLine::new(
                        row.number,
                        "id",
                        "duplicate_in_file",
                        format!("the same id as row {first}"),
                    ));
                } else {
                    candidates.push((row.number, input));
                }
            }
            Err(line) => problems.push(line),
        }
    }
    // Row-level security: only persons the caller may see, so only their areas.
    let person_ids: Vec<Uuid> = candidates.iter().map(|(_, p)| p.person_id).collect();
    let visible: HashSet<Uuid> =
        sqlx::query_scalar("SELECT id FROM persons WHERE id = ANY($1) AND deleted_at IS NULL")
            .bind(&person_ids)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    let ids: Vec<Uuid> = candidates.iter().filter_map(|(_, p)| p.id).collect();
    let existing: HashMap<Uuid, plots::PlotView> = plots::by_ids(tx, &ids)
        .await?
        .into_iter()
        .map(|plot| (plot.id, plot))
        .collect();
    let mut new = Vec::new();
    for (row, input) in candidates {
        if !visible.contains(&input.person_id) {
            problems.push(ReportLine::new(
                row,
                "person_id",
                "invalid",
                "no such person in the areas you may see",
            ));
            continue;
        }
        match input.id.and_then(|id| existing.get(&id)) {
            None => new.push((row, input)),
            Some(plot)
                if plot.person_id == input.person_id
                    && plot.geometry == input.geometry
                    && plot.tenure == input.tenure
                    && plot.land_use == input.land_use =>
            {
                report.unchanged += 1
            }
            Some(_) => problems.push(ReportLine::new(
                row,
                "id",
                "duplicate_id",
                "a plot with this id is registered with other content",
            )),
        }
    }
    problems.sort_by_key(|line| line.row);
    report.created = new.len();
    report.problems = problems;
    if dry_run || !report.problems.is_empty() {
        return Ok(report);
    }
    for (row, input) in new {
        plots::create(tx, actor, input)
            .await
            .map_err(|error| super::import::in_row(row, error))?;
    }
    Ok(report)
}
