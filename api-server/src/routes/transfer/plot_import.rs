//! Importing plots from a table: each row's id (required, so a re-run is recognised), person,
//! GeoJSON geometry (as text), tenure and land use checked as `POST /api/dfr/plots` checks a
//! plot, reported line by line, and written only when no line is wrong. A row that describes a
//! plot already registered under its id is unchanged.

use std::collections::HashSet;

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::jobs::Progress;
use super::rows::{
    Columns, FirstSeen, ImportReport, Registered, in_row, new_or_unchanged, refused, taken_ids,
};
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

/// The row as a plot to create (its id always set), or the line that says why not.
fn parse(columns: &Columns, row: &Row) -> Result<(Uuid, PlotInput), ReportLine> {
    let cell = |name: &str| columns.cell(row, name);
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
    plots::checked(&input).map_err(|error| refused(row.number, &error, column_of))?;
    Ok((id, input))
}

/// Checks the table and, unless `dry_run` or a line is wrong, registers its new plots in the
/// caller's transaction.
pub async fn plots(
    tx: &mut PgConnection,
    actor: &Actor,
    table: Table,
    mut problems: Vec<ReportLine>,
    dry_run: bool,
    progress: &Progress,
) -> ApiResult<ImportReport> {
    let spec = ("plots", COLUMNS, COLUMNS);
    let (mut report, columns) = match ImportReport::start(&table, dry_run, spec, &mut problems) {
        Ok(started) => started,
        Err(report) => return Ok(report),
    };
    let mut candidates = Vec::new();
    let mut seen = FirstSeen::new();
    for row in &table.rows {
        match parse(&columns, row) {
            Ok((id, input)) => match seen.again(id, row.number, "id", "id") {
                Some(line) => problems.push(line),
                None => candidates.push((row.number, (id, input))),
            },
            Err(line) => problems.push(line),
        }
    }
    // Row-level security: only persons the caller may see, so only their areas.
    let person_ids: Vec<Uuid> = candidates.iter().map(|(_, (_, p))| p.person_id).collect();
    let visible: HashSet<Uuid> =
        sqlx::query_scalar("SELECT id FROM persons WHERE id = ANY($1) AND deleted_at IS NULL")
            .bind(&person_ids)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    candidates.retain(|(row, (_, input))| {
        let seen = visible.contains(&input.person_id);
        if !seen {
            problems.push(ReportLine::new(
                *row,
                "person_id",
                "invalid",
                "no such person in the areas you may see",
            ));
        }
        seen
    });
    let ids: Vec<Uuid> = candidates.iter().map(|(_, (id, _))| *id).collect();
    let registered = Registered {
        visible: plots::by_ids(tx, &ids)
            .await?
            .into_iter()
            .map(|plot| (plot.id, plot))
            .collect(),
        taken: taken_ids(tx, "plot", &ids).await?,
    };
    let new = new_or_unchanged(
        candidates,
        &registered,
        |(id, _)| *id,
        |(_, input), plot| {
            plot.person_id == input.person_id
                && plot.geometry == input.geometry
                && plot.tenure == input.tenure
                && plot.land_use == input.land_use
        },
        ("id", "plot"),
        &mut report,
        &mut problems,
    );
    if !report.conclude(problems, new.len()) {
        return Ok(report);
    }
    progress.writing(new.len());
    for (row, (_, input)) in new {
        plots::create(tx, actor, input)
            .await
            .map_err(|error| in_row(row, error))?;
        progress.written(1);
    }
    Ok(report)
}
