//! `DfrBackup`: one backup of a tenant, started by hand, that reports its own result. Created in
//! the tenant namespace (`kubectl -n dfr-ton-prod create -f backup.yaml`); the operator runs it
//! as a Job beside the scheduled ones. Deleting a DfrBackup deletes its Job, never the backup set
//! in the repository: that follows the tenant's retention.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A backup of the tenant whose namespace this is, taken now.
// kube's printcolumn(...) attributes repeat `type_ = ...`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "dfr.io",
    version = "v1alpha1",
    kind = "DfrBackup",
    plural = "dfrbackups",
    shortname = "dfrb",
    category = "dfr",
    namespaced,
    status = "DfrBackupStatus",
    derive = "PartialEq",
    doc = "One backup of the tenant whose namespace it is in, run by the dfr-operator and reporting its own result.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Set", type_ = "string", json_path = ".status.label"),
    printcolumn(name = "Size", type_ = "integer", json_path = ".status.sizeBytes"),
    printcolumn(
        name = "Completed",
        type_ = "date",
        json_path = ".status.completionTime"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DfrBackupSpec {
    /// full, diff (changes since the last full) or incr (changes since the last backup); auto
    /// takes a full when the newest is more than a week old, a diff otherwise.
    #[serde(default)]
    pub r#type: BackupType,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    #[default]
    Auto,
    Full,
    Diff,
    Incr,
}

impl BackupType {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Auto => "auto",
            BackupType::Full => "full",
            BackupType::Diff => "diff",
            BackupType::Incr => "incr",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DfrBackupStatus {
    pub phase: BackupPhase,
    /// The Job that runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The pgBackRest label of the set it made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// full, diff or incr: what pgBackRest took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_size_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// What happened, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BackupPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl BackupPhase {
    pub fn is_finished(self) -> bool {
        matches!(self, BackupPhase::Succeeded | BackupPhase::Failed)
    }
}
