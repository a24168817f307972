//! What a backup or expiry run reports in its termination message (written by the programs in
//! [`crate::children::backup::scripts`]), and what the operator makes of the runs it sees.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;

use super::retention::{BackupKind, BackupSet};
use crate::children::backup::{RUN_BACKUP, RUN_CHECK, RUN_EXPIRE, RUN_LABEL, RUN_VERIFY};

/// One run's report. `sets` lists the repository's backup sets as
/// `[label, type letter, prior (when the label does not imply it), stop (Unix seconds)]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Report {
    pub ok: bool,
    #[serde(default)]
    pub step: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub size: Option<i64>,
    #[serde(default)]
    pub repo: Option<i64>,
    #[serde(default)]
    pub seconds: Option<i64>,
    #[serde(default)]
    pub standby: Option<bool>,
    /// How many sets the repository holds; more than `sets` when the report had to be cut.
    #[serde(default)]
    pub n: Option<usize>,
    #[serde(default)]
    pub wal: Option<String>,
    #[serde(default)]
    pub sets: Vec<(String, String, Option<String>, i64)>,
    #[serde(default)]
    pub expired: Vec<String>,
    /// A restore check's audit verdict.
    #[serde(default)]
    pub audit: Option<String>,
}

impl Report {
    /// Every set in the repository, or None when the report lists only some of them (then
    /// nothing may be expired on its word).
    pub fn backup_sets(&self) -> Option<Vec<BackupSet>> {
        if self.n != Some(self.sets.len()) {
            return None;
        }
        self.sets
            .iter()
            .map(|(label, kind, prior, stop)| {
                let kind = match kind.as_str() {
                    "F" => BackupKind::Full,
                    "D" => BackupKind::Differential,
                    "I" => BackupKind::Incremental,
                    _ => return None,
                };
                // A differential's full is the part of its label before the underscore.
                let prior = match (kind, prior) {
                    (_, Some(prior)) => Some(prior.clone()),
                    (BackupKind::Differential, None) => {
                        label.split_once('_').map(|(full, _)| full.to_string())
                    }
                    _ => None,
                };
                Some(BackupSet {
                    label: label.clone(),
                    kind,
                    prior,
                    stop: DateTime::<Utc>::from_timestamp(*stop, 0)?,
                })
            })
            .collect()
    }
}

/// A finished backup or expiry run, as its pod shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub kind: RunKind,
    /// The Job that ran it.
    pub job: String,
    pub finished: DateTime<Utc>,
    pub succeeded: bool,
    /// The parsed report, when the termination message is one.
    pub report: Option<Report>,
    /// The termination message when it is not a report (the log's tail after a crash).
    pub raw_message: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunKind {
    Backup,
    Expire,
    /// The archiving check between backups.
    Check,
    /// A restore of the newest backup, checked.
    Verify,
}

/// What the tenant's backup pods show: finished runs (oldest first) and whether one is running.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Runs {
    pub finished: Vec<Run>,
    pub active: bool,
}

impl Runs {
    pub fn from_pods(pods: &[Pod]) -> Self {
        let mut runs = Runs::default();
        for pod in pods {
            let run = pod.metadata.labels.as_ref().and_then(|l| l.get(RUN_LABEL));
            let kind = match run.map(String::as_str) {
                Some(RUN_BACKUP) => RunKind::Backup,
                Some(RUN_EXPIRE) => RunKind::Expire,
                Some(RUN_CHECK) => RunKind::Check,
                Some(RUN_VERIFY) => RunKind::Verify,
                _ => continue,
            };
            // The container named after the run writes the report.
            let terminated = pod
                .status
                .as_ref()
                .and_then(|status| status.container_statuses.as_ref())
                .and_then(|statuses| {
                    statuses
                        .iter()
                        .find(|status| Some(&status.name) == run)
                        .or(statuses.first())
                })
                .and_then(|status| status.state.as_ref())
                .and_then(|state| state.terminated.as_ref());
            let Some(terminated) = terminated else {
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                if !matches!(phase, Some("Succeeded" | "Failed")) {
                    runs.active = true;
                }
                continue;
            };
            let finished = terminated
                .finished_at
                .as_ref()
                .and_then(|time| DateTime::<Utc>::from_timestamp(time.0.as_second(), 0))
                .unwrap_or_default();
            let message = terminated.message.clone().unwrap_or_default();
            let report = serde_json::from_str::<Report>(message.trim()).ok();
            runs.finished.push(Run {
                kind,
                job: pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|labels| labels.get("job-name"))
                    .cloned()
                    .unwrap_or_default(),
                finished,
                succeeded: terminated.exit_code == 0 && report.as_ref().is_some_and(|r| r.ok),
                raw_message: report.is_none().then_some(message),
                report,
            });
        }
        runs.finished
            .sort_by(|a, b| (a.finished, &a.job).cmp(&(b.finished, &b.job)));
        runs
    }

    /// The newest backup run.
    pub fn last_backup(&self) -> Option<&Run> {
        self.finished
            .iter()
            .rev()
            .find(|run| run.kind == RunKind::Backup)
    }

    /// The newest restore check.
    pub fn last_restore_check(&self) -> Option<&Run> {
        self.finished
            .iter()
            .rev()
            .find(|run| run.kind == RunKind::Verify)
    }

    /// The newest backup or archiving check: what says whether backups work now.
    pub fn last_health_signal(&self) -> Option<&Run> {
        self.finished
            .iter()
            .rev()
            .find(|run| matches!(run.kind, RunKind::Backup | RunKind::Check))
    }

    /// The newest report that lists the repository's sets.
    pub fn last_inventory(&self) -> Option<&Report> {
        self.finished
            .iter()
            .rev()
            .filter_map(|run| run.report.as_ref())
            .find(|report| report.ok && report.n.is_some())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_report_lists_every_set_with_its_base() {
        let report: Report = serde_json::from_str(
            r#"{"v":1,"ok":true,"n":3,"wal":"000000010000000000000007","sets":[
            ["20261201-023000F","F",null,1764556300],
            ["20261201-023000F_20261202-023000D","D",null,1764642700],
            ["20261201-023000F_20261202-053000I","I","20261201-023000F_20261202-023000D",1764653500]]}"#,
        )
        .unwrap();
        let sets = report.backup_sets().unwrap();
        assert_eq!(sets[1].prior.as_deref(), Some("20261201-023000F"));
        assert_eq!(
            sets[2].prior.as_deref(),
            Some("20261201-023000F_20261202-023000D")
        );
        assert_eq!(sets[0].prior, None);
        assert_eq!(sets[0].kind, BackupKind::Full);
    }

    #[test]
    fn a_cut_report_expires_nothing() {
        let report: Report = serde_json::from_str(
            r#"{"v":1,"ok":true,"n":40,"sets":[["20261201-023000F","F",null,1764556300]]}"#,
        )
        .unwrap();
        assert!(report.backup_sets().is_none());
    }

    #[test]
    fn a_failure_report_keeps_the_error() {
        let report: Report = serde_json::from_str(
            r#"{"v":1,"ok":false,"step":"backup","error":"ERROR: [039]: HTTP request failed"}"#,
        )
        .unwrap();
        assert!(!report.ok);
        assert_eq!(report.step.as_deref(), Some("backup"));
    }
}
