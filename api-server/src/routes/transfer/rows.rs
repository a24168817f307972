//! What every import does the same way, whatever it imports: the header read against the
//! columns of its kind, a cell by column name, a refused check turned into a report line,
//! duplicates within the file, a row already registered under its id recognised as unchanged
//! (so a file imported again writes nothing), and the decision to write only when no line is
//! wrong.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::table::{ReportLine, Row, Table};
use crate::error::{ApiError, ApiResult};

#[derive(Serialize, serde::Deserialize, Debug, Clone, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub dry_run: bool,
    /// Rows read (blank rows are skipped).
    pub rows: usize,
    /// Records registered, or for a dry run that would be.
    pub created: usize,
    /// Records the file describes that are already registered with the same content: nothing
    /// to do.
    pub unchanged: usize,
    /// Every problem, by row; an import with any is not written.
    pub problems: Vec<ReportLine>,
}

impl ImportReport {
    pub fn new(dry_run: bool, rows: usize) -> ImportReport {
        ImportReport {
            dry_run,
            rows,
            ..ImportReport::default()
        }
    }

    /// The report of an import of `table` and its columns; when the header is wrong, the
    /// finished report with every header line (the rows are not read against a bad header).
    pub fn start(
        table: &Table,
        dry_run: bool,
        (kind, known, required): (&str, &[&str], &[&str]),
        problems: &mut Vec<ReportLine>,
    ) -> Result<(ImportReport, Columns), ImportReport> {
        let mut report = ImportReport::new(dry_run, table.rows.len());
        match Columns::read(&table.header, kind, known, required) {
            Ok(columns) => Ok((report, columns)),
            Err(header_problems) => {
                problems.extend(header_problems);
                report.problems = std::mem::take(problems);
                Err(report)
            }
        }
    }

    /// Records the problems (in row order) and how many records are new; whether to write
    /// them, which is only when this is no dry run and no line is wrong.
    pub fn conclude(&mut self, mut problems: Vec<ReportLine>, created: usize) -> bool {
        problems.sort_by_key(|line| line.row);
        self.created = created;
        self.problems = problems;
        !self.dry_run && self.problems.is_empty()
    }
}

/// Where each column of a file is.
pub struct Columns(HashMap<String, usize>);

impl Columns {
    /// The header's columns, or every line about what is wrong with it: a name that is not one
    /// of `known`, a name given twice, a name of `required` missing.
    pub fn read(
        header: &[String],
        kind: &str,
        known: &[&str],
        required: &[&str],
    ) -> Result<Columns, Vec<ReportLine>> {
        let mut problems = Vec::new();
        let mut positions = HashMap::new();
        for (i, name) in header.iter().enumerate() {
            if !known.contains(&name.as_str()) {
                problems.push(ReportLine::new(
                    1,
                    name,
                    "unknown_column",
                    format!("not a column of a {kind} file ({})", known.join(", ")),
                ));
            } else if positions.insert(name.clone(), i).is_some() {
                problems.push(ReportLine::new(1, name, "unknown_column", "appears twice"));
            }
        }
        for name in required {
            if !positions.contains_key(*name) {
                problems.push(ReportLine::new(1, name, "missing_column", "is required"));
            }
        }
        if problems.is_empty() {
            Ok(Columns(positions))
        } else {
            Err(problems)
        }
    }

    /// The row's cell in the column `name` (empty when the file has no such column).
    pub fn cell<'a>(&self, row: &'a Row, name: &str) -> &'a str {
        self.0
            .get(name)
            .and_then(|&i| row.cells.get(i))
            .map_or("", String::as_str)
    }
}

/// A check the record's endpoint makes, refused, as the report line of `row`: the first field
/// it names, in the file's column name (`column_of` maps the API's field names).
pub fn refused(row: usize, error: &ApiError, column_of: fn(&str) -> &str) -> ReportLine {
    match error.field_errors().first() {
        Some(field) => ReportLine::new(
            row,
            column_of(&field.field),
            "invalid",
            field.message.clone(),
        ),
        None => ReportLine::new(row, "", "invalid", error.to_string()),
    }
}

/// The first row each key was seen on, so a second row with the same key is reported.
pub struct FirstSeen<K>(HashMap<K, usize>);

impl<K: Hash + Eq> FirstSeen<K> {
    pub fn new() -> FirstSeen<K> {
        FirstSeen(HashMap::new())
    }

    /// None the first time `key` is seen; after that, a duplicate_in_file line for `row`.
    pub fn again(&mut self, key: K, row: usize, field: &str, what: &str) -> Option<ReportLine> {
        match self.0.get(&key) {
            Some(first) => Some(ReportLine::new(
                row,
                field,
                "duplicate_in_file",
                format!("the same {what} as row {first}"),
            )),
            None => {
                self.0.insert(key, row);
                None
            }
        }
    }
}

impl<K: Hash + Eq> Default for FirstSeen<K> {
    fn default() -> Self {
        Self::new()
    }
}

/// What the registry holds under an import's ids.
pub struct Registered<R> {
    /// The live records the caller may see, by id.
    pub visible: HashMap<Uuid, R>,
    /// Every id taken, in any area, tombstones included.
    pub taken: HashSet<Uuid>,
}

/// The ids among `ids` that a record of `kind` (person, plot, household) holds, wherever it
/// is and deleted or not: a create with one of them would be refused.
pub async fn taken_ids(
    tx: &mut PgConnection,
    kind: &str,
    ids: &[Uuid],
) -> ApiResult<HashSet<Uuid>> {
    Ok(sqlx::query_scalar("SELECT dfr_taken_ids($1, $2)")
        .bind(kind)
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect())
}

/// The line for a new record whose id another record holds, one the caller may not see.
pub fn taken(row: usize, id_column: &str, what: &str) -> ReportLine {
    ReportLine::new(
        row,
        id_column,
        "duplicate_id",
        format!("the id is taken by a {what} you may not see (another area's, or deleted)"),
    )
}

/// Sorts candidates keyed by their record id against the records already registered: one with
/// no record is new; one whose record has the same content is unchanged (counted in the
/// report); one whose record differs, or whose id a record the caller cannot see holds, is a
/// duplicate_id line at its row, in the column `id_column`. The new ones.
pub fn new_or_unchanged<T, R>(
    candidates: Vec<(usize, T)>,
    registered: &Registered<R>,
    id: impl Fn(&T) -> Uuid,
    same: impl Fn(&T, &R) -> bool,
    (id_column, what): (&str, &str),
    report: &mut ImportReport,
    problems: &mut Vec<ReportLine>,
) -> Vec<(usize, T)> {
    let mut new = Vec::new();
    for (row, candidate) in candidates {
        let id = id(&candidate);
        match registered.visible.get(&id) {
            None if registered.taken.contains(&id) => problems.push(taken(row, id_column, what)),
            None => new.push((row, candidate)),
            Some(record) if same(&candidate, record) => report.unchanged += 1,
            Some(_) => problems.push(ReportLine::new(
                row,
                id_column,
                "duplicate_id",
                format!("a {what} with this id is registered with other content"),
            )),
        }
    }
    new
}

/// A write refused while importing names its row.
pub fn in_row(row: usize, error: ApiError) -> ApiError {
    match error {
        ApiError::Database(_) | ApiError::Internal(_) => error,
        other => ApiError::Conflict(format!("row {row}: {other}")),
    }
}
