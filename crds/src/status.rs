use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition types the operator maintains, in the standard metav1.Condition shape.
pub mod condition_type {
    pub const READY: &str = "Ready";
    pub const PROGRESSING: &str = "Progressing";
    pub const DEGRADED: &str = "Degraded";
    pub const DATABASE_READY: &str = "DatabaseReady";
    pub const API_READY: &str = "ApiReady";
    pub const BACKUPS_HEALTHY: &str = "BackupsHealthy";
    pub const CERTIFICATES_VALID: &str = "CertificatesValid";
    /// PodMonitors and PrometheusRule applied, or why not (MonitoringCRDsAbsent).
    pub const MONITORING_READY: &str = "MonitoringReady";
    /// Members wait for a restart (an update or a parameter that needs one), and when it runs.
    pub const MAINTENANCE_PENDING: &str = "MaintenancePending";
    /// Every running PostgreSQL member serves the certificate its Secret holds, or which ones
    /// still serve an older one while the operator has them reload.
    pub const CERTIFICATES_SERVED: &str = "CertificatesServed";
}

/// What the operator last observed of a tenant. Readable by `kubectl get`, Argo CD and Flux.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DfrCountryStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The tenant namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the pod holding the Patroni leader lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<BackupStatus>,
    /// What the backup repository holds, as of the last backup run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<BackupsStatus>,
    /// The newest restore check: the newest backup restored into a short-lived pod and checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restore_check: Option<RestoreCheckStatus>,
    /// Earliest expiry among the tenant's certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates_not_after: Option<Time>,
    /// Expiry of every certificate: the tenant CA (and the previous CA while a renewal keeps
    /// it trusted) and each certificate the CA issued.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateStatus>,
    /// A renewal of the tenant CA in progress; absent when none is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_renewal: Option<CaRenewalStatus>,
    /// The PII encryption key new rows are written under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii_key: Option<PiiKeyStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
}

/// One certificate the operator manages.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// The Secret holding it.
    pub secret: String,
    /// The key in the Secret: tls.crt, or previous.crt for the CA a renewal still trusts.
    pub key: String,
    pub not_after: Time,
}

/// Where a renewal of the tenant CA stands. Each phase waits for the operator's trust
/// propagation delay before the next, so every consumer trusts a CA before a certificate it
/// issued is served, and stops trusting the previous CA only once nothing serves its
/// certificates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaRenewalStatus {
    /// TrustPublished: the new CA signs nothing yet, every ca.crt holds both CAs.
    /// Reissued: every certificate is re-issued from the new CA; the previous CA leaves the
    /// bundles once every member serves its new certificate.
    pub phase: String,
    /// When the phase began (or its bundles or certificates last changed).
    pub since: Time,
}

/// The active key of the PII key ring (Secret dfr-api-pii-keys).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PiiKeyStatus {
    /// Its id in the key ring, e.g. k2; ciphertexts it wrote start with `<id>:`.
    pub id: String,
    /// Since when it has been active; the next key is added spec.piiKeys.rotationPeriod later.
    pub activated_at: Time,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresStatus {
    /// PostgreSQL pods ready.
    pub ready: i32,
    /// PostgreSQL pods desired.
    pub instances: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiStatus {
    pub ready: i32,
    pub desired: i32,
    /// "ready/desired", for the printer column.
    pub replicas: String,
    /// What the HorizontalPodAutoscaler reports; absent while autoscaling is off (the
    /// Deployment then runs api.minReplicas pods) or before the autoscaler has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<AutoscalerStatus>,
}

/// The API's HorizontalPodAutoscaler, as it last reported itself.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerStatus {
    /// API pods the autoscaler last counted.
    pub current_replicas: i32,
    /// API pods the autoscaler last asked for.
    pub desired_replicas: i32,
    /// When it last changed the number of pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
}

/// The newest backup run, scheduled or started by hand.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// When the run finished.
    pub time: Time,
    pub result: BackupResult,
    /// full, diff or incr (pgBackRest's backup types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// The pgBackRest label of the backup set it made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Size of the database the backup copied, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// What the backup stored in the repository (compressed, encrypted), in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_size_bytes: Option<i64>,
    /// Seconds the run took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    /// The Job that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Why a failed run failed, from its log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A restore check: the backup restored, PostgreSQL started on it, the registry's tables and
/// row counts checked and the audit chain verified.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreCheckStatus {
    /// When the check finished.
    pub time: Time,
    pub result: BackupResult,
    /// The backup set it restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_label: Option<String>,
    /// Seconds from start to a verified database (the time a real restore would take).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    /// The audit chain's verdict, or why the check failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// The backup sets in the repository and the window a restore can reach.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupsStatus {
    /// Backup sets kept after retention.
    pub count: i32,
    /// The earliest moment a point-in-time restore can reach: the end of the oldest backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_recoverable_time: Option<Time>,
    /// The end of the newest backup; with WAL archiving the window extends from here to the
    /// last archived WAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_backup_time: Option<Time>,
    /// The newest WAL segment in the archive when the last backup finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_archived_wal: Option<String>,
    /// Labels of the sets the GFS retention expired after the last backup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expired: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BackupResult {
    Succeeded,
    Failed,
}

/// In-cluster addresses of the tenant's services.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    pub api: String,
    pub read_write: String,
    pub read_only: String,
}
