//! Retention: how long each country keeps each kind of record once it is deleted (or, for the
//! sync bookkeeping, once it was written), and the job that applies it: `dfr-api retention
//! apply`, run on a schedule (a CronJob) as the owner role. A kind a country's policy does not
//! name is kept for ever.
//!
//! The file: `{"countries": {"TO": {"person": 3650, "plot": 1825, "sync_conflict": 365}}}`,
//! days per kind. What a kind's period means:
//! - `person`: a person deleted longer ago is erased (PII overwritten as the erasure endpoint
//!   does, one audit event each); the emptied row stays, as the audit chain names it.
//! - `household`, `farmer_profile`, `plot`, `holding`, `consent`, `form_submission`: a
//!   tombstone older than that is removed (a plot only once no holding refers to it).
//! - `sync_conflict`, `sync_mutation`: removed that long after they were written (a device
//!   replaying a push older than `sync_mutation` would then apply it again).
//!
//! The sync change log keeps its tombstones, so devices still learn of a removed record.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::audit;
use crate::error::ApiResult;
use crate::routes::subjects::erase;

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Person,
    Holding,
    Plot,
    Consent,
    FarmerProfile,
    Household,
    FormSubmission,
    SyncConflict,
    SyncMutation,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Person => "person",
            Kind::Holding => "holding",
            Kind::Plot => "plot",
            Kind::Consent => "consent",
            Kind::FarmerProfile => "farmer_profile",
            Kind::Household => "household",
            Kind::FormSubmission => "form_submission",
            Kind::SyncConflict => "sync_conflict",
            Kind::SyncMutation => "sync_mutation",
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RetentionFile {
    countries: BTreeMap<String, BTreeMap<Kind, u32>>,
}

/// One country's periods, in days, by kind (the order of `Kind` is the order they apply in:
/// children before the records they refer to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub country: String,
    pub days: BTreeMap<Kind, u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the retention file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("the retention file is not valid: {0}")]
    Invalid(String),
    #[error("the retention file has no policy for country {0:?} (it has {1})")]
    NoCountry(String, String),
}

impl Policy {
    pub fn from_file(path: &Path, country: &str) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Unreadable {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_json(&text, country)
    }

    pub fn from_json(text: &str, country: &str) -> Result<Policy, PolicyError> {
        let file: RetentionFile =
            serde_json::from_str(text).map_err(|e| PolicyError::Invalid(e.to_string()))?;
        for (code, kinds) in &file.countries {
            for (kind, days) in kinds {
                if *days == 0 || *days > 36_500 {
                    return Err(PolicyError::Invalid(format!(
                        "countries.{code}.{}: must be 1 to 36500 days, not {days}",
                        kind.as_str()
                    )));
                }
            }
        }
        let known = file
            .countries
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let days = file
            .countries
            .get(country)
            .cloned()
            .ok_or_else(|| PolicyError::NoCountry(country.to_string(), known))?;
        Ok(Policy {
            country: country.to_string(),
            days,
        })
    }
}

/// What one kind's period came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub kind: Kind,
    pub days: u32,
    /// Persons erased, or rows removed.
    pub count: u64,
}

/// Applies the policy in one transaction (rolled back for a dry run, which only counts).
pub async fn apply(pool: &PgPool, policy: &Policy, dry_run: bool) -> ApiResult<Vec<Applied>> {
    let mut tx = pool.begin().await?;
    let mut report = Vec::new();
    for (&kind, &days) in &policy.days {
        let count = apply_kind(&mut tx, kind, i32::try_from(days).unwrap_or(i32::MAX)).await?;
        if count > 0 && kind != Kind::Person {
            audit::record(
                &mut tx,
                None,
                "retention_remove",
                "retention",
                kind.as_str().to_string(),
                None,
                Some(&json!({"country": policy.country, "days": days, "removed": count})),
            )
            .await?;
        }
        report.push(Applied { kind, days, count });
    }
    if dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(report)
}

async fn removed(tx: &mut PgConnection, sql: &'static str, days: i32) -> ApiResult<u64> {
    Ok(sqlx::query(sql)
        .bind(days)
        .execute(&mut *tx)
        .await?
        .rows_affected())
}

async fn apply_kind(tx: &mut PgConnection, kind: Kind, days: i32) -> ApiResult<u64> {
    match kind {
        Kind::Person => {
            let ids: Vec<Uuid> = sqlx::query_scalar(
                "SELECT id FROM persons WHERE erased_at IS NULL \
                 AND deleted_at < now() - make_interval(days => $1) ORDER BY id",
            )
            .bind(days)
            .fetch_all(&mut *tx)
            .await?;
            for id in &ids {
                erase::erase(tx, None, *id).await?;
            }
            Ok(ids.len() as u64)
        }
        Kind::Holding => {
            removed(
                tx,
                "DELETE FROM holdings WHERE deleted_at < now() - make_interval(days => $1)",
                days,
            )
            .await
        }
        Kind::Plot => {
            removed(
                tx,
                "DELETE FROM plots p WHERE deleted_at < now() - make_interval(days => $1) \
                 AND NOT EXISTS (SELECT 1 FROM holdings h WHERE h.plot_id = p.id)",
                days,
            )
            .await
        }
        Kind::Consent => {
            removed(
                tx,
                "DELETE FROM consent_history WHERE consent_id IN (SELECT id FROM consents \
                 WHERE deleted_at < now() - make_interval(days => $1))",
                days,
            )
            .await?;
            removed(
                tx,
                "DELETE FROM consents WHERE deleted_at < now() - make_interval(days => $1)",
                days,
            )
            .await
        }
        Kind::FarmerProfile => {
            removed(
                tx,
                "DELETE FROM farmer_profiles WHERE deleted_at < now() - make_interval(days => $1)",
                days,
            )
            .await
        }
        Kind::Household => {
            removed(
                tx,
                "DELETE FROM household_members WHERE household_id IN (SELECT id FROM households \
                 WHERE deleted_at < now() - make_interval(days => $1))",
                days,
            )
            .await?;
            removed(
                tx,
                "DELETE FROM households WHERE deleted_at < now() - make_interval(days => $1)",
                days,
            )
            .await
        }
        Kind::FormSubmission => {
            removed(
                tx,
                "DELETE FROM form_submissions WHERE deleted_at < now() - make_interval(days => $1)",
                days,
            )
            .await
        }
        Kind::SyncConflict => {
            removed(
                tx,
                "DELETE FROM sync_conflicts WHERE at < now() - make_interval(days => $1)",
                days,
            )
            .await
        }
        Kind::SyncMutation => {
            removed(
                tx,
                "DELETE FROM sync_mutations WHERE at < now() - make_interval(days => $1)",
                days,
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_country_policy_is_read_by_kind() {
        let policy = Policy::from_json(
            r#"{"countries": {"TO": {"person": 3650, "sync_conflict": 90}, "FJ": {}}}"#,
            "TO",
        );
        let policy = policy.map_err(|e| e.to_string());
        assert_eq!(
            policy.map(|p| p.days.into_iter().collect::<Vec<_>>()),
            Ok(vec![(Kind::Person, 3650), (Kind::SyncConflict, 90)])
        );
    }

    #[test]
    fn bad_files_name_what_is_wrong() {
        let error = |text: &str, country: &str| {
            Policy::from_json(text, country)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(error(r#"{"countries": {"TO": {"parcel": 5}}}"#, "TO").contains("parcel"));
        assert!(error(r#"{"countries": {"TO": {"plot": 0}}}"#, "TO").contains("countries.TO.plot"));
        assert!(error(r#"{"countries": {"FJ": {}}}"#, "TO").contains("\"TO\""));
    }
}
