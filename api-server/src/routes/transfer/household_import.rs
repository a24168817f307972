//! Importing households with their members from a table of one row per member: the
//! household's id (required, so a re-run recognises the household), the member's person id
//! and role. The rows with one household id make one household, checked as `POST
//! /api/dfr/households` checks one (1 to 50 members, exactly one head, no person twice, every
//! member a person the caller may see, living in the head's area), reported line by line at
//! the member's row, and written only when no line is wrong. A household already registered
//! under its id with the same members and roles is unchanged.

use std::collections::{BTreeSet, HashMap, HashSet};

use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use super::jobs::Progress;
use super::rows::{
    Columns, FirstSeen, ImportReport, Registered, in_row, new_or_unchanged, taken_ids,
};
use super::table::{ReportLine, Row, Table};
use crate::auth::Actor;
use crate::error::ApiResult;
use crate::routes::households::record::{self as households, HouseholdInput, Member};

pub const COLUMNS: &[&str] = &["household_id", "person_id", "role"];
const ROLES: &[&str] = &["head", "spouse", "child", "other"];
const MAX_MEMBERS: usize = 50;

/// One member row: the household it belongs to and the member.
fn parse(columns: &Columns, row: &Row) -> Result<(Uuid, Member), ReportLine> {
    let cell = |name: &str| columns.cell(row, name);
    let bad = |name: &str, message: &str| ReportLine::new(row.number, name, "invalid", message);
    let household = cell("household_id").parse::<Uuid>().map_err(|_| {
        bad(
            "household_id",
            "must be the household's UUID (a re-run recognises the household by it)",
        )
    })?;
    let person_id = cell("person_id")
        .parse::<Uuid>()
        .map_err(|_| bad("person_id", "must be a person's UUID"))?;
    let role = cell("role");
    if !ROLES.contains(&role) {
        return Err(bad("role", "must be head, spouse, child or other"));
    }
    Ok((
        household,
        Member {
            person_id,
            role: role.to_string(),
        },
    ))
}

/// The member rows of one household, in file order.
struct Household {
    id: Uuid,
    members: Vec<(usize, Member)>,
}

impl Household {
    fn first_row(&self) -> usize {
        self.members.first().map_or(0, |(row, _)| *row)
    }

    /// Lines for a household not shaped as one: no head, a second head, too many members.
    fn shape_problems(&self) -> Vec<ReportLine> {
        let mut problems = Vec::new();
        let heads: Vec<usize> = self
            .members
            .iter()
            .filter(|(_, m)| m.role == "head")
            .map(|(row, _)| *row)
            .collect();
        match heads.as_slice() {
            [] => problems.push(ReportLine::new(
                self.first_row(),
                "role",
                "invalid",
                "the household has no head (exactly one member is the head)",
            )),
            [_] => {}
            [first, others @ ..] => problems.extend(others.iter().map(|row| {
                ReportLine::new(
                    *row,
                    "role",
                    "invalid",
                    format!("a second head: row {first} is the household's head"),
                )
            })),
        }
        if let Some((row, _)) = self.members.get(MAX_MEMBERS) {
            problems.push(ReportLine::new(
                *row,
                "household_id",
                "invalid",
                format!("a household has at most {MAX_MEMBERS} members"),
            ));
        }
        problems
    }

    /// Lines for members the caller may not see, or who live outside the head's area.
    fn area_problems(&self, areas: &HashMap<Uuid, String>) -> Vec<ReportLine> {
        let mut problems = Vec::new();
        let head_area = self
            .members
            .iter()
            .find(|(_, m)| m.role == "head")
            .and_then(|(_, m)| areas.get(&m.person_id));
        for (row, member) in &self.members {
            match (areas.get(&member.person_id), head_area) {
                (None, _) => problems.push(ReportLine::new(
                    *row,
                    "person_id",
                    "invalid",
                    "no such person in the areas you may see",
                )),
                (Some(area), Some(head)) if area != head => problems.push(ReportLine::new(
                    *row,
                    "person_id",
                    "invalid",
                    format!("lives in {area}, outside the head's area {head}"),
                )),
                _ => {}
            }
        }
        problems
    }

    fn input(self) -> HouseholdInput {
        HouseholdInput {
            id: Some(self.id),
            members: self.members.into_iter().map(|(_, m)| m).collect(),
        }
    }
}

/// The registered household has exactly these members with these roles.
fn same_members(household: &Household, registered: &households::HouseholdView) -> bool {
    let of = |members: &mut dyn Iterator<Item = &Member>| -> BTreeSet<(Uuid, String)> {
        members.map(|m| (m.person_id, m.role.clone())).collect()
    };
    of(&mut household.members.iter().map(|(_, m)| m)) == of(&mut registered.members.iter())
}

/// Checks the table and, unless `dry_run` or a line is wrong, registers its new households in
/// the caller's transaction.
pub async fn households(
    tx: &mut PgConnection,
    actor: &Actor,
    table: Table,
    mut problems: Vec<ReportLine>,
    dry_run: bool,
    progress: &Progress,
) -> ApiResult<ImportReport> {
    let spec = ("households", COLUMNS, COLUMNS);
    let (mut report, columns) = match ImportReport::start(&table, dry_run, spec, &mut problems) {
        Ok(started) => started,
        Err(report) => return Ok(report),
    };
    let mut order = Vec::new();
    let mut members: HashMap<Uuid, Vec<(usize, Member)>> = HashMap::new();
    // A household with a bad row is not judged as a whole: its other rows alone could look
    // headless or in the wrong area only because a row is missing.
    let mut broken = HashSet::new();
    let mut seen = FirstSeen::new();
    for row in &table.rows {
        let (household, member) = match parse(&columns, row) {
            Ok(parsed) => parsed,
            Err(line) => {
                if let Ok(id) = columns.cell(row, "household_id").parse::<Uuid>() {
                    broken.insert(id);
                }
                problems.push(line);
                continue;
            }
        };
        let key = (household, member.person_id);
        if let Some(line) = seen.again(key, row.number, "person_id", "member of this household") {
            broken.insert(household);
            problems.push(line);
            continue;
        }
        members
            .entry(household)
            .or_insert_with(|| {
                order.push(household);
                Vec::new()
            })
            .push((row.number, member));
    }
    let mut candidates: Vec<Household> = order
        .into_iter()
        .filter(|id| !broken.contains(id))
        .map(|id| Household {
            id,
            members: members.remove(&id).unwrap_or_default(),
        })
        .collect();
    candidates.retain(|household| {
        let shape = household.shape_problems();
        let fine = shape.is_empty();
        problems.extend(shape);
        fine
    });
    // Row-level security: only the persons the caller may see answer, with their areas.
    let person_ids: Vec<Uuid> = candidates
        .iter()
        .flat_map(|h| h.members.iter().map(|(_, m)| m.person_id))
        .collect();
    let areas: HashMap<Uuid, String> =
        sqlx::query("SELECT id, area_code FROM persons WHERE id = ANY($1) AND deleted_at IS NULL")
            .bind(&person_ids)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("area_code")?)))
            .collect::<Result<_, sqlx::Error>>()?;
    candidates.retain(|household| {
        let misplaced = household.area_problems(&areas);
        let fine = misplaced.is_empty();
        problems.extend(misplaced);
        fine
    });
    let ids: Vec<Uuid> = candidates.iter().map(|h| h.id).collect();
    let registered = Registered {
        visible: households::by_ids(tx, &ids)
            .await?
            .into_iter()
            .map(|household| (household.id, household))
            .collect(),
        taken: taken_ids(tx, "household", &ids).await?,
    };
    let candidates = candidates
        .into_iter()
        .map(|household| (household.first_row(), household))
        .collect();
    let new = new_or_unchanged(
        candidates,
        &registered,
        |household| household.id,
        same_members,
        ("household_id", "household"),
        &mut report,
        &mut problems,
    );
    if !report.conclude(problems, new.len()) {
        return Ok(report);
    }
    progress.writing(new.len());
    for (row, household) in new {
        households::create(tx, actor, household.input())
            .await
            .map_err(|error| in_row(row, error))?;
        progress.written(1);
    }
    Ok(report)
}
