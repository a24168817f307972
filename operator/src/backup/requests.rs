//! The status of a DfrBackup, from the pod of its Job. Pure.

use dfr_crds::{BackupPhase, DfrBackupStatus};
use k8s_openapi::api::core::v1::Pod;

use super::report::Runs;

/// What a DfrBackup's status should say, given its Job's name, whether the Job exists, and the
/// pods of that Job.
pub fn request_status(job: &str, job_created: bool, pods: &[Pod]) -> DfrBackupStatus {
    let runs = Runs::from_pods(pods);
    let Some(run) = runs.last_backup() else {
        return DfrBackupStatus {
            phase: if runs.active {
                BackupPhase::Running
            } else {
                BackupPhase::Pending
            },
            job: job_created.then(|| job.to_string()),
            message: Some(if runs.active {
                "the backup is running".into()
            } else {
                "waiting for the backup Job to start".into()
            }),
            ..DfrBackupStatus::default()
        };
    };
    let report = run.report.as_ref();
    let completion_time = k8s_openapi::jiff::Timestamp::from_second(run.finished.timestamp())
        .ok()
        .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time);
    if run.succeeded {
        DfrBackupStatus {
            phase: BackupPhase::Succeeded,
            job: Some(job.to_string()),
            label: report.and_then(|r| r.label.clone()),
            r#type: report.and_then(|r| r.kind.clone()),
            size_bytes: report.and_then(|r| r.size),
            repository_size_bytes: report.and_then(|r| r.repo),
            completion_time,
            message: Some(format!(
                "backup finished in {} s{}",
                report.and_then(|r| r.seconds).unwrap_or(0),
                if report.and_then(|r| r.standby) == Some(true) {
                    ", copied from the synchronous standby"
                } else {
                    ""
                }
            )),
        }
    } else {
        DfrBackupStatus {
            phase: BackupPhase::Failed,
            job: Some(job.to_string()),
            completion_time,
            message: Some(match report {
                Some(report) => format!(
                    "{}: {}",
                    super::failure_reason(report.error.as_deref().unwrap_or_default()),
                    report.error.as_deref().unwrap_or("no error text")
                ),
                None => run
                    .raw_message
                    .clone()
                    .unwrap_or_else(|| "the run ended without a report".into()),
            }),
            ..DfrBackupStatus::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(exit_code: i32, message: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.labels = Some(
            [
                (
                    crate::children::backup::RUN_LABEL.to_string(),
                    "backup".to_string(),
                ),
                ("job-name".to_string(), "dfrbackup-now".to_string()),
            ]
            .into(),
        );
        pod.status = Some(PodStatus {
            phase: Some(
                if exit_code == 0 {
                    "Succeeded"
                } else {
                    "Failed"
                }
                .into(),
            ),
            container_statuses: Some(vec![ContainerStatus {
                name: "backup".into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code,
                        message: Some(message.into()),
                        finished_at: Some(Time(
                            k8s_openapi::jiff::Timestamp::from_second(1_764_556_300).unwrap(),
                        )),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        });
        pod
    }

    #[test]
    fn a_request_waits_runs_and_reports_its_set() {
        assert_eq!(
            request_status("dfrbackup-now", false, &[]).phase,
            BackupPhase::Pending
        );
        let done = request_status(
            "dfrbackup-now",
            true,
            &[pod(
                0,
                r#"{"v":1,"ok":true,"label":"20261201-101500F","type":"full","size":123,"repo":45,"seconds":7,"standby":true,"n":1,"sets":[["20261201-101500F","F",null,1764584100]]}"#,
            )],
        );
        assert_eq!(done.phase, BackupPhase::Succeeded);
        assert_eq!(done.label.as_deref(), Some("20261201-101500F"));
        assert_eq!(done.size_bytes, Some(123));
        assert!(done.message.unwrap().contains("standby"));
    }

    #[test]
    fn a_failed_request_says_why() {
        let failed = request_status(
            "dfrbackup-now",
            true,
            &[pod(
                1,
                r#"{"v":1,"ok":false,"step":"backup","error":"ERROR: [037]: backup command requires option: repo1-cipher-pass"}"#,
            )],
        );
        assert_eq!(failed.phase, BackupPhase::Failed);
        assert!(
            failed
                .message
                .unwrap()
                .starts_with("EncryptionKeyMissing: "),
            "the reason comes first"
        );
    }
}
