//! Importing persons from a table: every row checked as the create endpoint checks a person
//! (plus the caller's areas, duplicates within the file and against the registry by national
//! ID), reported line by line, and written only when no line is wrong, all in one transaction.
//! A row that describes a person already registered (same national ID and content) is
//! unchanged, so an import run again writes nothing.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use super::jobs::Progress;
use super::rows::{self, Columns, FirstSeen, ImportReport, in_row, refused, taken_ids};
use super::table::{ReportLine, Row, Table};
use crate::audit;
use crate::auth::{Actor, Role};
use crate::crypto::KeyRing;
use crate::error::ApiResult;
use crate::routes::persons::input::{NationalId, PersonInput, Pii};
use crate::routes::persons::ops;

/// The columns of a persons file, as the export writes them.
pub const COLUMNS: &[&str] = &[
    "id",
    "national_id_system",
    "national_id",
    "given_name",
    "family_name",
    "sex",
    "birth_date",
    "birth_date_estimated",
    "phone",
    "email",
    "area_code",
    "status",
];
const REQUIRED: &[&str] = &[
    "national_id_system",
    "national_id",
    "given_name",
    "family_name",
    "sex",
    "birth_date",
    "area_code",
];

/// The column a person field is read from, for report lines.
fn column_of(field: &str) -> &str {
    match field {
        "nationalId.system" => "national_id_system",
        "nationalId.value" | "nationalId" => "national_id",
        "givenName" => "given_name",
        "familyName" => "family_name",
        "birthDate" => "birth_date",
        "birthDateEstimated" => "birth_date_estimated",
        "areaCode" => "area_code",
        other => other,
    }
}

fn parse(columns: &Columns, row: &Row) -> Result<PersonInput, ReportLine> {
    let cell = |name: &str| columns.cell(row, name);
    let bad = |name: &str, message: &str| ReportLine::new(row.number, name, "invalid", message);
    let optional = |name: &str| Some(cell(name).to_string()).filter(|v| !v.is_empty());
    let id = match cell("id") {
        "" => None,
        text => Some(
            text.parse::<Uuid>()
                .map_err(|_| bad("id", "must be a UUID or empty"))?,
        ),
    };
    let sex = cell("sex")
        .parse::<i16>()
        .map_err(|_| bad("sex", "must be an ISO 5218 code: 0, 1, 2 or 9"))?;
    let birth_date = NaiveDate::parse_from_str(cell("birth_date"), "%Y-%m-%d")
        .map_err(|_| bad("birth_date", "must be a date, YYYY-MM-DD"))?;
    let birth_date_estimated = match cell("birth_date_estimated").to_lowercase().as_str() {
        "" | "false" | "no" | "0" => false,
        "true" | "yes" | "1" => true,
        _ => return Err(bad("birth_date_estimated", "must be true or false")),
    };
    let input = PersonInput {
        id,
        national_id: NationalId {
            system: cell("national_id_system").to_string(),
            value: cell("national_id").to_string(),
        },
        given_name: cell("given_name").to_string(),
        family_name: cell("family_name").to_string(),
        sex,
        birth_date,
        birth_date_estimated,
        phone: optional("phone"),
        email: optional("email"),
        area_code: cell("area_code").to_string(),
        status: optional("status").unwrap_or_else(|| "active".into()),
    };
    input
        .checked()
        .map_err(|error| refused(row.number, &error, column_of))
}

struct Candidate {
    row: usize,
    input: PersonInput,
    index: String,
}

/// Checks the table and, unless `dry_run` or a line is wrong, registers its new persons in the
/// caller's transaction.
pub async fn persons(
    tx: &mut PgConnection,
    ring: &KeyRing,
    actor: &Actor,
    table: Table,
    mut problems: Vec<ReportLine>,
    dry_run: bool,
    progress: &Progress,
) -> ApiResult<ImportReport> {
    let spec = ("persons", COLUMNS, REQUIRED);
    let (mut report, columns) = match ImportReport::start(&table, dry_run, spec, &mut problems) {
        Ok(started) => started,
        Err(report) => return Ok(report),
    };
    let areas: HashSet<String> = sqlx::query_scalar("SELECT code FROM areas")
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
    let in_areas = matches!(actor.role, Role::Supervisor | Role::Enumerator);
    let mut candidates = Vec::new();
    let mut seen = FirstSeen::new();
    let mut seen_ids = FirstSeen::new();
    for row in &table.rows {
        let input = match parse(&columns, row) {
            Ok(input) => input,
            Err(line) => {
                problems.push(line);
                continue;
            }
        };
        if !areas.contains(&input.area_code) {
            problems.push(ReportLine::new(
                row.number,
                "area_code",
                "unknown_area",
                "is not a known administrative area",
            ));
            continue;
        }
        if in_areas && !actor.areas.contains(&input.area_code) {
            problems.push(ReportLine::new(
                row.number,
                "area_code",
                "outside_areas",
                "is outside the areas you may change",
            ));
            continue;
        }
        let index = ring.blind_index(&input.national_id.system, &input.national_id.value);
        let key = (input.national_id.system.clone(), index.clone());
        if let Some(line) = seen.again(key, row.number, "national_id", "national ID") {
            problems.push(line);
            continue;
        }
        if let Some(line) = input
            .id
            .and_then(|id| seen_ids.again(id, row.number, "id", "id"))
        {
            problems.push(line);
            continue;
        }
        candidates.push(Candidate {
            row: row.number,
            input,
            index,
        });
    }
    let holders = holders(tx, &candidates).await?;
    let held: Vec<Uuid> = holders.values().copied().collect();
    let registered: HashMap<Uuid, _> = ops::by_ids(tx, ring, Pii::Clear, &held)
        .await?
        .into_iter()
        .map(|person| (person.id, person))
        .collect();
    let ids: Vec<Uuid> = candidates.iter().filter_map(|c| c.input.id).collect();
    let taken = taken_ids(tx, "person", &ids).await?;
    let mut new = Vec::new();
    for candidate in candidates {
        let key = (
            candidate.input.national_id.system.clone(),
            candidate.index.clone(),
        );
        let Some(holder) = holders.get(&key) else {
            match candidate.input.id {
                Some(id) if taken.contains(&id) => {
                    problems.push(rows::taken(candidate.row, "id", "person"))
                }
                _ => new.push(candidate),
            }
            continue;
        };
        let same = candidate.input.id.is_none_or(|id| id == *holder)
            && registered
                .get(holder)
                .is_some_and(|person| candidate.input.describes(person));
        if same {
            report.unchanged += 1;
        } else {
            problems.push(ReportLine {
                existing: Some(format!("/api/dfr/persons/{holder}")),
                ..ReportLine::new(
                    candidate.row,
                    "national_id",
                    "duplicate_national_id",
                    "a person with this national ID is registered with other content",
                )
            });
        }
    }
    if !report.conclude(problems, new.len()) {
        return Ok(report);
    }
    let mut chain = audit::Chain::lock(tx).await?;
    progress.writing(new.len());
    for candidate in new {
        ops::register(tx, ring, actor, &candidate.input, &mut chain)
            .await
            .map_err(|error| in_row(candidate.row, error))?;
        progress.written(1);
    }
    Ok(report)
}

/// The live persons, in any area, holding the candidates' national IDs.
async fn holders(
    tx: &mut PgConnection,
    candidates: &[Candidate],
) -> ApiResult<HashMap<(String, String), Uuid>> {
    let systems: Vec<&str> = candidates
        .iter()
        .map(|c| c.input.national_id.system.as_str())
        .collect();
    let indexes: Vec<&str> = candidates.iter().map(|c| c.index.as_str()).collect();
    let rows = sqlx::query("SELECT id_system, id_index, id FROM dfr_find_national_ids($1, $2)")
        .bind(&systems)
        .bind(&indexes)
        .fetch_all(&mut *tx)
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                (row.try_get("id_system")?, row.try_get("id_index")?),
                row.try_get("id")?,
            ))
        })
        .collect()
}
