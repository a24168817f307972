//! What the operator decides about a tenant's backups from what its backup runs report: the
//! status (last backup, the repository's sets, BackupsHealthy) and the GFS retention plan.
//! Pure; the reconciler starts the Jobs the plan asks for (see [`crate::lifecycle`]).

pub mod report;
pub mod requests;
pub mod retention;

use chrono::{DateTime, Utc};
use dfr_crds::{BackupResult, BackupStatus, BackupsStatus, RestoreCheckStatus, RetentionSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use report::{Run, RunKind, Runs};
use retention::{Plan, Policy};

/// How the tenant's spec asks for backups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Repository {
    #[default]
    None,
    S3,
    /// spec.backup.destination.volume, held by the repository host.
    Volume,
}

/// BackupsHealthy as (status, reason, message).
pub type Health = (&'static str, &'static str, String);

pub fn policy(retention: &RetentionSpec) -> Policy {
    let count = |value: i32| u32::try_from(value).unwrap_or(0);
    Policy {
        daily: count(retention.daily),
        weekly: count(retention.weekly),
        monthly: count(retention.monthly),
        yearly: count(retention.yearly),
    }
}

fn time(at: DateTime<Utc>) -> Option<Time> {
    k8s_openapi::jiff::Timestamp::from_second(at.timestamp())
        .ok()
        .map(Time)
}

/// The condition reason for a failed run, from pgBackRest's error text.
pub fn failure_reason(error: &str) -> &'static str {
    let error = error.to_ascii_lowercase();
    if error.contains("repo1-cipher-pass") || error.contains("cipher pass") {
        "EncryptionKeyMissing"
    } else if error.contains("repo1-s3-key") {
        "RepositoryCredentialsMissing"
    } else if error.contains("unable to decrypt")
        || error.contains("cipher")
        || error.contains("crypto")
    {
        "EncryptionKeyWrong"
    } else if error.contains("was not archived") || error.contains("archive_command") {
        "ArchivingStalled"
    } else if error.contains("403") || error.contains("accessdenied") {
        "RepositoryAccessDenied"
    } else if error.contains("nosuchbucket") {
        "BucketNotFound"
    } else if error.contains("unable to find primary") || error.contains("database") {
        "DatabaseUnreachable"
    } else if error.contains("unable to get address")
        || error.contains("unable to connect")
        || error.contains("timeout")
        || error.contains("tls")
        || error.contains("connection refused")
    {
        "RepositoryUnreachable"
    } else {
        "BackupFailed"
    }
}

fn run_error(run: &Run) -> String {
    match &run.report {
        Some(report) => format!(
            "{} (in {})",
            report.error.as_deref().unwrap_or("no error text"),
            report.step.as_deref().unwrap_or("?")
        ),
        None => run
            .raw_message
            .as_deref()
            .map(|text| text.trim().chars().take(1024).collect())
            .filter(|text: &String| !text.is_empty())
            .unwrap_or_else(|| "the run ended without a report".into()),
    }
}

/// status.lastBackup: the newest run the pods still show, else what the status already said.
pub fn last_backup(runs: &Runs, previous: Option<&BackupStatus>) -> Option<BackupStatus> {
    let Some(run) = runs.last_backup() else {
        return previous.cloned();
    };
    let report = run.report.as_ref().filter(|_| run.succeeded);
    Some(BackupStatus {
        time: time(run.finished)?,
        result: if run.succeeded {
            BackupResult::Succeeded
        } else {
            BackupResult::Failed
        },
        r#type: report.and_then(|r| r.kind.clone()),
        label: report.and_then(|r| r.label.clone()),
        size_bytes: report.and_then(|r| r.size),
        repository_size_bytes: report.and_then(|r| r.repo),
        duration_seconds: report.and_then(|r| r.seconds),
        job: Some(run.job.clone()),
        message: (!run.succeeded).then(|| run_error(run)),
    })
}

/// status.lastRestoreCheck: the newest check the pods still show, else the status's.
pub fn last_restore_check(
    runs: &Runs,
    previous: Option<&RestoreCheckStatus>,
) -> Option<RestoreCheckStatus> {
    let Some(run) = runs.last_restore_check() else {
        return previous.cloned();
    };
    let report = run.report.as_ref().filter(|_| run.succeeded);
    Some(RestoreCheckStatus {
        time: time(run.finished)?,
        result: if run.succeeded {
            BackupResult::Succeeded
        } else {
            BackupResult::Failed
        },
        backup_label: report.and_then(|r| r.label.clone()),
        duration_seconds: report.and_then(|r| r.seconds),
        message: if run.succeeded {
            report.and_then(|r| r.audit.clone())
        } else {
            Some(run_error(run))
        },
        job: Some(run.job.clone()),
    })
}

/// status.backups from the newest report of the repository.
pub fn inventory(runs: &Runs, previous: Option<&BackupsStatus>) -> Option<BackupsStatus> {
    let Some(report) = runs.last_inventory() else {
        return previous.cloned();
    };
    let stops = report.sets.iter().map(|(_, _, _, stop)| *stop);
    let at = |seconds: Option<i64>| {
        seconds
            .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
            .and_then(time)
    };
    Some(BackupsStatus {
        count: i32::try_from(report.n.unwrap_or(report.sets.len())).unwrap_or(i32::MAX),
        first_recoverable_time: at(stops.clone().min()),
        newest_backup_time: at(stops.max()),
        newest_archived_wal: report.wal.clone(),
        expired: report.expired.clone(),
    })
}

/// The sets the retention policy expires now, or nothing while a run is active or when the
/// newest report does not list the whole repository.
pub fn expiry(runs: &Runs, retention: &RetentionSpec) -> Vec<String> {
    if runs.active {
        return Vec::new();
    }
    let Some(sets) = runs.last_inventory().and_then(|r| r.backup_sets()) else {
        return Vec::new();
    };
    let Plan { expire, .. } = retention::plan(&sets, &policy(retention));
    expire
}

pub fn health(
    repository: Repository,
    runs: &Runs,
    last: Option<&BackupStatus>,
    inventory: Option<&BackupsStatus>,
    restore_check: Option<&RestoreCheckStatus>,
) -> Health {
    match repository {
        Repository::None => {
            return (
                "False",
                "NotConfigured",
                "spec.backup is not set: this tenant has no backups".into(),
            );
        }
        Repository::S3 | Repository::Volume => {}
    }
    if let Some(run) = runs.last_health_signal().filter(|run| !run.succeeded) {
        let error = run_error(run);
        let (reason, what) = match run.kind {
            RunKind::Check => (
                match failure_reason(&error) {
                    "BackupFailed" => "ArchivingStalled",
                    other => other,
                },
                "the WAL archiving check",
            ),
            _ => (failure_reason(&error), "backup"),
        };
        return (
            "False",
            reason,
            format!(
                "{what} Job {} failed at {}: {error}",
                run.job,
                run.finished.to_rfc3339()
            ),
        );
    }
    if let Some(check) = restore_check.filter(|check| check.result == BackupResult::Failed) {
        return (
            "False",
            "RestoreCheckFailed",
            format!(
                "the newest backup could not be restored and verified at {} (Job {}): {}",
                check.time.0,
                check.job.as_deref().unwrap_or("?"),
                check.message.as_deref().unwrap_or("no error text")
            ),
        );
    }
    // A passing archiving check after a failed backup: the repository takes WAL again, and the
    // newest good backup plus the archive can restore the registry.
    if let (Some(run), Some(newest)) = (
        runs.last_health_signal()
            .filter(|run| run.kind == RunKind::Check),
        inventory.and_then(|backups| backups.newest_backup_time.as_ref()),
    ) && last.is_some_and(|status| status.result == BackupResult::Failed)
    {
        return (
            "True",
            "ArchivingHealthy",
            format!(
                "WAL archiving checked at {}; the newest good backup finished at {}; the last backup attempt failed and the next runs on schedule",
                run.finished.to_rfc3339(),
                newest.0
            ),
        );
    }
    match last {
        Some(status) if status.result == BackupResult::Succeeded => (
            "True",
            "BackupSucceeded",
            format!(
                "last backup {} ({}) finished at {}",
                status.label.as_deref().unwrap_or("?"),
                status.r#type.as_deref().unwrap_or("?"),
                status.time.0
            ),
        ),
        Some(status) => (
            "False",
            status
                .message
                .as_deref()
                .map(failure_reason)
                .unwrap_or("BackupFailed"),
            format!(
                "the last backup failed at {}: {}",
                status.time.0,
                status.message.as_deref().unwrap_or("no error text")
            ),
        ),
        None if runs.active => (
            "Unknown",
            "BackupRunning",
            "the first backup is running".into(),
        ),
        None => (
            "Unknown",
            "NoBackupRecorded",
            "no backup has completed yet".into(),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use report::Report;

    fn run(succeeded: bool, report: Option<Report>, raw: Option<&str>) -> Run {
        Run {
            kind: RunKind::Backup,
            job: "postgres-backup-1".into(),
            finished: DateTime::<Utc>::from_timestamp(1_764_556_300, 0).unwrap(),
            succeeded,
            report,
            raw_message: raw.map(String::from),
        }
    }

    #[test]
    fn errors_map_to_reasons_a_person_can_act_on() {
        assert_eq!(
            failure_reason("ERROR: [037]: backup command requires option: repo1-cipher-pass"),
            "EncryptionKeyMissing"
        );
        assert_eq!(
            failure_reason("ERROR: [037]: backup command requires option: repo1-s3-key"),
            "RepositoryCredentialsMissing"
        );
        assert_eq!(
            failure_reason(
                "ERROR: [049]: unable to get address for 's3.invalid': [-2] Name or service not known"
            ),
            "RepositoryUnreachable"
        );
        assert_eq!(
            failure_reason("HTTP request failed with 403 (Forbidden): AccessDenied"),
            "RepositoryAccessDenied"
        );
        assert_eq!(
            failure_reason("HTTP request failed with 404 (Not Found): NoSuchBucket"),
            "BucketNotFound"
        );
        assert_eq!(failure_reason("something else"), "BackupFailed");
    }

    #[test]
    fn a_failed_run_makes_backups_unhealthy_with_its_error() {
        let report = Report {
            ok: false,
            step: Some("backup".into()),
            error: Some("ERROR: [049]: unable to get address for 's3.invalid'".into()),
            ..Report::default()
        };
        let runs = Runs {
            finished: vec![run(false, Some(report), None)],
            active: false,
        };
        let last = last_backup(&runs, None).unwrap();
        assert_eq!(last.result, BackupResult::Failed);
        let (status, reason, message) = health(Repository::S3, &runs, Some(&last), None, None);
        assert_eq!((status, reason), ("False", "RepositoryUnreachable"));
        assert!(message.contains("postgres-backup-1"), "{message}");
        assert!(message.contains("s3.invalid"), "{message}");
    }

    #[test]
    fn a_failed_archiving_check_after_a_good_backup_is_a_stalled_archive() {
        let good = Report {
            ok: true,
            label: Some("20261201-023000F".into()),
            n: Some(1),
            sets: vec![("20261201-023000F".into(), "F".into(), None, 1_764_556_300)],
            ..Report::default()
        };
        let mut check = run(
            false,
            Some(Report {
                ok: false,
                step: Some("check".into()),
                error: Some(
                    "ERROR: [082]: WAL segment 000000010000000000000009 was not archived before the 60000ms timeout"
                        .into(),
                ),
                ..Report::default()
            }),
            None,
        );
        check.kind = RunKind::Check;
        check.finished += chrono::Duration::minutes(5);
        let runs = Runs {
            finished: vec![run(true, Some(good), None), check.clone()],
            active: false,
        };
        let last = last_backup(&runs, None).unwrap();
        assert_eq!(
            last.result,
            BackupResult::Succeeded,
            "a check is not a backup"
        );
        let (status, reason, message) = health(Repository::S3, &runs, Some(&last), None, None);
        assert_eq!((status, reason), ("False", "ArchivingStalled"));
        assert!(message.contains("WAL archiving check"), "{message}");

        // The next check passes: healthy again, with no one touching the tenant.
        let mut passed = run(
            true,
            Some(Report {
                ok: true,
                ..Report::default()
            }),
            None,
        );
        passed.kind = RunKind::Check;
        passed.finished = check.finished + chrono::Duration::minutes(5);
        let runs = Runs {
            finished: vec![runs.finished[0].clone(), check, passed],
            active: false,
        };
        assert_eq!(
            health(Repository::S3, &runs, Some(&last), None, None).0,
            "True"
        );
        assert_eq!(
            inventory(&runs, None).unwrap().count,
            1,
            "a check lists no sets"
        );
    }

    #[test]
    fn a_failed_restore_check_makes_backups_unhealthy_until_one_passes() {
        let good_backup = run(
            true,
            Some(Report {
                ok: true,
                label: Some("20261201-023000F".into()),
                ..Report::default()
            }),
            None,
        );
        let mut failed = run(
            false,
            Some(Report {
                ok: false,
                step: Some("restore".into()),
                error: Some("ERROR: [041]: unable to decrypt ... bad block".into()),
                ..Report::default()
            }),
            None,
        );
        failed.kind = RunKind::Verify;
        failed.finished += chrono::Duration::minutes(10);
        let runs = Runs {
            finished: vec![good_backup.clone(), failed.clone()],
            active: false,
        };
        let last = last_backup(&runs, None);
        let check = last_restore_check(&runs, None).unwrap();
        assert_eq!(check.result, BackupResult::Failed);
        let (status, reason, message) =
            health(Repository::S3, &runs, last.as_ref(), None, Some(&check));
        assert_eq!((status, reason), ("False", "RestoreCheckFailed"));
        assert!(message.contains("bad block"), "{message}");

        let mut passed = run(
            true,
            Some(Report {
                ok: true,
                label: Some("20261201-023000F".into()),
                seconds: Some(42),
                audit: Some("audit chain intact: 7 events".into()),
                ..Report::default()
            }),
            None,
        );
        passed.kind = RunKind::Verify;
        passed.finished = failed.finished + chrono::Duration::minutes(10);
        let runs = Runs {
            finished: vec![good_backup, failed, passed],
            active: false,
        };
        let check = last_restore_check(&runs, None).unwrap();
        assert_eq!(check.duration_seconds, Some(42));
        assert_eq!(
            check.message.as_deref(),
            Some("audit chain intact: 7 events")
        );
        let last = last_backup(&runs, None);
        assert_eq!(
            health(Repository::S3, &runs, last.as_ref(), None, Some(&check)).0,
            "True"
        );
    }

    #[test]
    fn a_passing_archiving_check_after_a_failed_backup_is_healthy_again() {
        let good = Report {
            ok: true,
            label: Some("20261201-023000F".into()),
            n: Some(1),
            sets: vec![("20261201-023000F".into(), "F".into(), None, 1_764_556_300)],
            ..Report::default()
        };
        let mut denied = run(
            false,
            Some(Report {
                ok: false,
                step: Some("stanza-create".into()),
                error: Some("ERROR: [039]: HTTP request failed with 403 (Forbidden)".into()),
                ..Report::default()
            }),
            None,
        );
        denied.finished += chrono::Duration::minutes(1);
        let mut check = run(
            true,
            Some(Report {
                ok: true,
                ..Report::default()
            }),
            None,
        );
        check.kind = RunKind::Check;
        check.finished = denied.finished + chrono::Duration::minutes(5);
        let failing = Runs {
            finished: vec![run(true, Some(good), None), denied],
            active: false,
        };
        let last = last_backup(&failing, None);
        let backups = inventory(&failing, None);
        assert_eq!(
            health(
                Repository::S3,
                &failing,
                last.as_ref(),
                backups.as_ref(),
                None
            )
            .1,
            "RepositoryAccessDenied"
        );
        let mut runs = failing.clone();
        runs.finished.push(check);
        let (status, reason, _) =
            health(Repository::S3, &runs, last.as_ref(), backups.as_ref(), None);
        assert_eq!((status, reason), ("True", "ArchivingHealthy"));
        // Without any good backup a passing check proves nothing about restores.
        let (status, _, _) = health(Repository::S3, &runs, last.as_ref(), None, None);
        assert_eq!(status, "False");
    }

    #[test]
    fn a_crash_without_a_report_shows_the_log_tail() {
        let runs = Runs {
            finished: vec![run(false, None, Some("Traceback ... boom"))],
            active: false,
        };
        let (_, reason, message) = health(Repository::S3, &runs, None, None, None);
        assert_eq!(reason, "BackupFailed");
        assert!(message.contains("boom"));
    }

    #[test]
    fn a_good_run_is_healthy_and_listed() {
        let report = Report {
            ok: true,
            label: Some("20261201-023000F".into()),
            kind: Some("full".into()),
            size: Some(1000),
            n: Some(1),
            sets: vec![("20261201-023000F".into(), "F".into(), None, 1_764_556_300)],
            ..Report::default()
        };
        let runs = Runs {
            finished: vec![run(true, Some(report), None)],
            active: false,
        };
        let last = last_backup(&runs, None).unwrap();
        assert_eq!(last.label.as_deref(), Some("20261201-023000F"));
        assert_eq!(
            health(Repository::S3, &runs, Some(&last), None, None).0,
            "True"
        );
        let backups = inventory(&runs, None).unwrap();
        assert_eq!(backups.count, 1);
        assert!(backups.first_recoverable_time.is_some());
        assert!(expiry(&runs, &RetentionSpec::default()).is_empty());
    }

    #[test]
    fn without_runs_the_previous_status_stands() {
        let runs = Runs::default();
        assert_eq!(last_backup(&runs, None), None);
        assert_eq!(
            health(Repository::S3, &runs, None, None, None).1,
            "NoBackupRecorded"
        );
        assert_eq!(
            health(Repository::None, &runs, None, None, None).1,
            "NotConfigured"
        );
        assert_eq!(
            health(Repository::Volume, &runs, None, None, None).1,
            "NoBackupRecorded"
        );
    }
}
