use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::postgres::PostgresSpec;
use crate::status::DfrCountryStatus;

/// Five space-separated cron fields: minute hour day-of-month month day-of-week.
pub const CRON_PATTERN: &str =
    r"^\s*[0-9*,/-]+\s+[0-9*,/-]+\s+[0-9*,/?LW-]+\s+[0-9A-Za-z*,/-]+\s+[0-9A-Za-z*,/?L#-]+\s*$";

/// A Digital Farmer Registry for one country and environment, run in its own namespace.
// kube's printcolumn(...) attributes repeat `type_ = ...`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dfr.io",
    version = "v1alpha1",
    kind = "DfrCountry",
    plural = "dfrcountries",
    shortname = "dfrc",
    category = "dfr",
    status = "DfrCountryStatus",
    derive = "PartialEq",
    doc = "A Digital Farmer Registry for one country and environment, run by the dfr-operator in its own namespace.",
    printcolumn(name = "Country", type_ = "string", json_path = ".spec.countryCode"),
    printcolumn(name = "Env", type_ = "string", json_path = ".spec.environment"),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.appVersion"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Primary", type_ = "string", json_path = ".status.primary"),
    printcolumn(
        name = "API",
        type_ = "string",
        json_path = ".status.api.replicas",
        description = "API pods ready/desired"
    ),
    printcolumn(
        name = "HPA Current",
        type_ = "integer",
        json_path = ".status.api.autoscaler.currentReplicas",
        description = "API pods the autoscaler last counted",
        priority = 1
    ),
    printcolumn(
        name = "HPA Desired",
        type_ = "integer",
        json_path = ".status.api.autoscaler.desiredReplicas",
        description = "API pods the autoscaler last asked for",
        priority = 1
    ),
    printcolumn(
        name = "Last Backup",
        type_ = "date",
        json_path = ".status.lastBackup.time"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.environment != 'prod' || self.deletionPolicy == 'Retain'")
    .message("environment prod requires deletionPolicy Retain: a production registry's data is never deleted with its DfrCountry")
    .field_path(".deletionPolicy"))]
#[x_kube(validation = Rule::new("self.environment != 'prod' || self.postgres.instances >= 2")
    .message("environment prod requires postgres.instances >= 2 so that a standby can take over on failure")
    .field_path(".postgres.instances"))]
#[x_kube(validation = Rule::new("self.environment != 'prod' || self.postgres.synchronousMode != 'off'")
    .message("environment prod requires postgres.synchronousMode on or strict so that failover loses no acknowledged write")
    .field_path(".postgres.synchronousMode"))]
#[x_kube(validation = Rule::new("self.environment != 'prod' || !has(self.api) || !has(self.api.autoscaling) || !has(self.api.autoscaling.enabled) || self.api.autoscaling.enabled")
    .message("environment prod scales the API on CPU and p95 latency: api.autoscaling.enabled cannot be false (leave it out)")
    .field_path(".api.autoscaling.enabled"))]
#[x_kube(validation = Rule::new("!(self.environment in ['dev', 'test']) || !has(self.api) || !has(self.api.autoscaling) || !has(self.api.autoscaling.enabled) || !self.api.autoscaling.enabled")
    .message(Message::Expression("'environment ' + self.environment + ' runs a fixed number of API pods (api.minReplicas): api.autoscaling.enabled true is allowed only in prod, dr and staging'".into()))
    .field_path(".api.autoscaling.enabled"))]
#[x_kube(validation = Rule::new("self.dataPolicy != 'live' || self.environment in ['prod', 'dr']")
    .message(Message::Expression("'dataPolicy live (real farmer data) is allowed only in environments prod and dr, not ' + self.environment + '; use masked or synthetic'".into()))
    .field_path(".dataPolicy"))]
#[serde(rename_all = "camelCase")]
pub struct DfrCountrySpec {
    /// ISO 3166-1 alpha-3 country code in upper case, e.g. TON. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("countryCode is immutable: create a new DfrCountry for another country"))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Z]{3}$')").message("countryCode must be an ISO 3166-1 alpha-3 code in upper case, e.g. TON"))]
    #[schemars(length(min = 3, max = 3))]
    pub country_code: String,

    /// Human-readable name, e.g. "Kingdom of Tonga".
    #[schemars(length(min = 1, max = 128))]
    pub display_name: String,

    /// Deployment environment. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("environment is immutable: create a new DfrCountry for another environment"))]
    pub environment: Environment,

    /// Tag of the DFR API image to run.
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$')").message("appVersion must be an image tag: letters, digits, '_', '.', '-', at most 128 characters"))]
    #[schemars(length(min = 1, max = 128))]
    pub app_version: String,

    #[serde(default)]
    pub postgres: PostgresSpec,

    #[serde(default)]
    pub api: ApiSpec,

    #[serde(default)]
    pub network: NetworkSpec,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,

    /// How the database is created. Without it, an empty registry; with `fromBackup`, a restore
    /// of another tenant's backups to a point in time. Immutable: it describes the creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("bootstrap is immutable: it describes how the tenant's database was created"))]
    pub bootstrap: Option<BootstrapSpec>,

    #[serde(default)]
    pub tls: TlsSpec,

    #[serde(default)]
    pub pii_keys: PiiKeysSpec,

    /// live: real farmer data; masked: a copy with PII masked; synthetic: generated data.
    #[serde(default)]
    pub data_policy: DataPolicy,

    /// What deleting this DfrCountry does to the tenant's data. Retain keeps the namespace, the
    /// PostgreSQL volumes and the Secrets; Delete removes the namespace and everything in it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<MaintenanceWindow>,

    /// How long the registry keeps each kind of record once it is deleted, in days, applied on a
    /// schedule by `dfr-api retention apply` as the owner role. Without it nothing is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_retention: Option<DataRetentionSpec>,

    /// When true the operator stops changing this tenant's resources and only reports status.
    #[serde(default)]
    pub suspend: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Dev,
    Test,
    Staging,
    Prod,
    Dr,
}

impl Environment {
    /// Whether the API autoscales when the spec does not say: production and its standby site
    /// follow their load; staging, dev and test run a fixed size.
    pub fn autoscales_by_default(self) -> bool {
        matches!(self, Environment::Prod | Environment::Dr)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Test => "test",
            Environment::Staging => "staging",
            Environment::Prod => "prod",
            Environment::Dr => "dr",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataPolicy {
    Live,
    Masked,
    #[default]
    Synthetic,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

/// The DFR API Deployment and its autoscaling. With autoscaling on, a HorizontalPodAutoscaler
/// keeps between minReplicas and maxReplicas pods; with it off, the Deployment runs minReplicas
/// pods and maxReplicas is not used.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas")
    .message("api.minReplicas must not exceed api.maxReplicas")
    .field_path(".minReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct ApiSpec {
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub min_replicas: i32,
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::resources_are_quantities!())
        .message("api.resources requests and limits must be Kubernetes quantities such as 500m, 2 or 1Gi"))]
    #[schemars(schema_with = "crate::bounded_resources")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,
}

impl Default for ApiSpec {
    fn default() -> Self {
        Self {
            min_replicas: default_min_replicas(),
            max_replicas: default_max_replicas(),
            resources: None,
            autoscaling: AutoscalingSpec::default(),
        }
    }
}

fn default_min_replicas() -> i32 {
    2
}

fn default_max_replicas() -> i32 {
    6
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Whether a HorizontalPodAutoscaler scales the API. Left out: on in prod and dr, off
    /// (api.minReplicas pods) in staging, dev and test. prod cannot turn it off; dev and test
    /// cannot turn it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Average CPU utilisation of the API pods the HPA aims for, in percent of requests.
    #[serde(default = "default_cpu_target", rename = "targetCPUUtilizationPercent")]
    #[schemars(range(min = 10, max = 100))]
    pub target_cpu_utilization_percent: i32,
    /// p95 request latency, in milliseconds, above which the HPA adds API pods.
    #[serde(default = "default_latency_target")]
    #[schemars(range(min = 50, max = 60000))]
    pub target_p95_latency_ms: i32,
    /// Scale-up and scale-down stabilization window of the HPA.
    #[serde(default = "default_stabilization_window")]
    #[schemars(range(min = 0, max = 3600))]
    pub stabilization_window_seconds: i32,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            enabled: None,
            target_cpu_utilization_percent: default_cpu_target(),
            target_p95_latency_ms: default_latency_target(),
            stabilization_window_seconds: default_stabilization_window(),
        }
    }
}

fn default_cpu_target() -> i32 {
    70
}

fn default_latency_target() -> i32 {
    700
}

fn default_stabilization_window() -> i32 {
    300
}

/// Which traffic the tenant's NetworkPolicies let through besides its own flows.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Namespaces (e.g. the ingress controller's) allowed to reach the API. None: no ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_namespace_selector: Option<LabelSelector>,
    /// Namespaces (e.g. Prometheus's) allowed to scrape metrics. None: no scraping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring_namespace_selector: Option<LabelSelector>,
    /// External services the API may call, e.g. an SMS gateway or the national ID service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub egress: Vec<EgressRule>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    /// What this destination is, e.g. sms-gateway.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    #[x_kube(validation = Rule::new("isCIDR(self)").message("egress cidr must be a CIDR such as 203.0.113.0/24"))]
    #[schemars(length(min = 1, max = 43))]
    pub cidr: String,
    #[schemars(length(min = 1, max = 16))]
    pub ports: Vec<EgressPort>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressPort {
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Protocol {
    #[default]
    TCP,
    UDP,
}

/// Where a new tenant's database comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapSpec {
    pub from_backup: FromBackup,
}

/// A point-in-time restore from the backups of another tenant in the same repository
/// (spec.backup.destination, whose encryption Secret must hold that tenant's passphrase).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FromBackup {
    /// The name of the DfrCountry whose backups are restored; it may have been deleted with
    /// deletionPolicy Retain, its repository stays.
    #[schemars(length(min = 1, max = 63))]
    pub country: String,
    /// The moment to restore to, RFC 3339 (e.g. 2026-12-01T10:15:00Z). Without it, the latest
    /// archived state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$') && timestamp(self) > timestamp('2000-01-01T00:00:00Z')")
        .message("bootstrap.fromBackup.targetTime must be an RFC 3339 time such as 2026-12-01T10:15:00Z"))]
    #[schemars(length(min = 20, max = 40))]
    pub target_time: Option<String>,
}

/// Encrypted backups with retention and point-in-time recovery (pgBackRest).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// When the full/differential backup runs, as a 5-field cron expression in UTC.
    #[serde(default = "default_backup_schedule")]
    #[x_kube(validation = Rule::new(format!("self.matches('{}')", CRON_PATTERN.replace('\\', "\\\\")))
        .message("backup.schedule must be a 5-field cron expression: minute hour day-of-month month day-of-week, e.g. '30 2 * * *'"))]
    #[schemars(length(min = 9, max = 100))]
    pub schedule: String,
    #[serde(default)]
    pub retention: RetentionSpec,
    pub destination: BackupDestination,
    /// Secret holding the repository encryption passphrase (pgBackRest repo cipher).
    pub encryption_key_secret_ref: SecretKeyRef,
    /// Archive WAL continuously so the database can be restored to any moment.
    #[serde(default = "default_true")]
    pub point_in_time_recovery: bool,
    /// When the newest backup is restored into a short-lived pod and checked (5-field cron,
    /// UTC); weekly by default.
    #[serde(default = "default_restore_check_schedule")]
    #[x_kube(validation = Rule::new(format!("self.matches('{}')", CRON_PATTERN.replace('\\', "\\\\")))
        .message("backup.restoreCheckSchedule must be a 5-field cron expression, e.g. '0 5 * * 0'"))]
    #[schemars(length(min = 9, max = 100))]
    pub restore_check_schedule: String,
}

fn default_restore_check_schedule() -> String {
    "0 5 * * 0".into()
}

fn default_backup_schedule() -> String {
    "30 2 * * *".into()
}

fn default_true() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    #[serde(default = "default_daily")]
    #[schemars(range(min = 0, max = 366))]
    pub daily: i32,
    #[serde(default = "default_weekly")]
    #[schemars(range(min = 0, max = 520))]
    pub weekly: i32,
    #[serde(default = "default_monthly")]
    #[schemars(range(min = 0, max = 240))]
    pub monthly: i32,
    #[serde(default = "default_yearly")]
    #[schemars(range(min = 0, max = 100))]
    pub yearly: i32,
}

impl Default for RetentionSpec {
    fn default() -> Self {
        Self {
            daily: default_daily(),
            weekly: default_weekly(),
            monthly: default_monthly(),
            yearly: default_yearly(),
        }
    }
}

fn default_daily() -> i32 {
    7
}
fn default_weekly() -> i32 {
    4
}
fn default_monthly() -> i32 {
    6
}
fn default_yearly() -> i32 {
    1
}

/// Exactly one of s3 or volume.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.s3) != has(self.volume)").message("backup.destination must set exactly one of s3 or volume"))]
#[serde(rename_all = "camelCase")]
pub struct BackupDestination {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Destination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeDestination>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Destination {
    /// https://host[:port]; pgBackRest speaks S3 only over HTTPS.
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() == 'https'").message("backup.destination.s3.endpoint must be an https URL such as https://s3.example.org:9000 (pgBackRest speaks S3 only over HTTPS)"))]
    #[schemars(length(min = 1, max = 2048))]
    pub endpoint: String,
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    #[schemars(length(min = 1, max = 64))]
    pub region: String,
    /// Secret with keys `accessKeyId` and `secretAccessKey`.
    pub credentials_secret_ref: SecretRef,
    /// Secret with key `ca.crt`: the CA that issued the endpoint's certificate, when it is not
    /// one the PostgreSQL image trusts already (a private S3 server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeDestination {
    #[x_kube(validation = Rule::new(crate::is_quantity!())
        .message("backup.destination.volume.size must be a Kubernetes quantity such as 100Gi"))]
    pub size: Quantity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// A Secret in the tenant namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// One key of a Secret in the tenant namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Certificates for PostgreSQL and the API. Without issuerRef the operator runs its own CA.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("duration(self.renewBefore) < duration(self.duration)").message("tls.renewBefore must be shorter than tls.duration"))]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// A cert-manager Issuer or ClusterIssuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
    /// Certificate lifetime as a Go duration, e.g. 2160h (90 days).
    #[serde(default = "default_tls_duration")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1h')").message("tls.duration must be a duration of at least 1h, e.g. 2160h"))]
    #[schemars(length(min = 2, max = 32))]
    pub duration: String,
    /// How long before expiry a certificate is renewed, e.g. 720h (30 days).
    #[serde(default = "default_tls_renew_before")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('5m')").message("tls.renewBefore must be a duration of at least 5m, e.g. 720h"))]
    #[schemars(length(min = 2, max = 32))]
    pub renew_before: String,
}

impl Default for TlsSpec {
    fn default() -> Self {
        Self {
            issuer_ref: None,
            duration: default_tls_duration(),
            renew_before: default_tls_renew_before(),
        }
    }
}

fn default_tls_duration() -> String {
    "2160h".into()
}

fn default_tls_renew_before() -> String {
    "720h".into()
}

/// The key ring that encrypts personal data at rest (Secret dfr-api-pii-keys). The operator adds
/// a new active key once the active one is older than rotationPeriod; older keys stay in the
/// ring so rows written under them remain readable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PiiKeysSpec {
    /// How long a PII encryption key stays active before the operator adds a new one, as a Go
    /// duration: 1m to 2160h (90 days, the longest a key may be in use). The default, 1440h
    /// (60 days), rotates well before the DfrPiiKeyOld alert's 75-day warning. Periods of
    /// minutes are meant for tests.
    #[serde(default = "default_pii_key_rotation_period")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m') && duration(self) <= duration('2160h')").message("piiKeys.rotationPeriod must be a duration between 1m and 2160h (90 days, the longest a PII key may stay active), e.g. 1440h"))]
    #[schemars(length(min = 2, max = 32))]
    pub rotation_period: String,
}

impl Default for PiiKeysSpec {
    fn default() -> Self {
        Self {
            rotation_period: default_pii_key_rotation_period(),
        }
    }
}

fn default_pii_key_rotation_period() -> String {
    "1440h".into()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    pub name: String,
    #[serde(default = "default_issuer_kind")]
    pub kind: String,
    #[serde(default = "default_issuer_group")]
    pub group: String,
}

fn default_issuer_kind() -> String {
    "ClusterIssuer".into()
}

fn default_issuer_group() -> String {
    "cert-manager.io".into()
}

/// When disruptive work (a switchover, a minor upgrade) may happen.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindow {
    #[schemars(length(min = 1, max = 7))]
    pub days: Vec<Weekday>,
    /// Local start time, HH:MM (24 h).
    #[x_kube(validation = Rule::new("self.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$')").message("maintenanceWindow.start must be HH:MM in 24-hour time, e.g. 02:30"))]
    #[schemars(length(min = 5, max = 5))]
    pub start: String,
    /// Length of the window as a Go duration, e.g. 2h.
    #[x_kube(validation = Rule::new("duration(self) > duration('0s') && duration(self) <= duration('24h')").message("maintenanceWindow.duration must be a duration between 1s and 24h, e.g. 2h"))]
    #[schemars(length(min = 2, max = 32))]
    pub duration: String,
    /// IANA time zone, e.g. Pacific/Tongatapu.
    #[serde(default = "default_time_zone")]
    #[x_kube(validation = Rule::new("self.matches('^(UTC|[A-Za-z]+(/[A-Za-z0-9_+-]+){1,2})$')").message("maintenanceWindow.timeZone must be an IANA time zone such as Pacific/Tongatapu or UTC"))]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "UTC".into()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl DfrCountrySpec {
    /// Whether a HorizontalPodAutoscaler owns the API's replica count.
    pub fn api_autoscaled(&self) -> bool {
        self.api
            .autoscaling
            .enabled
            .unwrap_or_else(|| self.environment.autoscales_by_default())
    }
}

/// Labels every object of a tenant carries.
pub fn tenant_labels(spec: &DfrCountrySpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "dfr.io/country".to_string(),
            spec.country_code.to_lowercase(),
        ),
        (
            "dfr.io/environment".to_string(),
            spec.environment.as_str().to_string(),
        ),
    ])
}

/// Days each kind of record is kept once deleted (a person's PII is then erased; other kinds'
/// tombstones removed), or, for the sync bookkeeping, once written. A kind left out is kept for
/// ever.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataRetentionSpec {
    /// When the retention job runs, as a 5-field cron expression in UTC.
    #[serde(default = "default_data_retention_schedule")]
    #[x_kube(validation = Rule::new(format!("self.matches('{}')", CRON_PATTERN.replace('\\', "\\\\")))
        .message("dataRetention.schedule must be a 5-field cron expression, e.g. '15 3 * * *'"))]
    #[schemars(length(min = 9, max = 100))]
    pub schedule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36500))]
    pub person: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36500))]
    pub household: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36500))]
    pub farmer_profile: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36500))]
    pub plot: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36500))]
    pub holding: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36500))]
    pub consent: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36500))]
    pub form_submission: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36500))]
    pub sync_conflict: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36500))]
    pub sync_mutation: Option<i32>,
}

fn default_data_retention_schedule() -> String {
    "15 3 * * *".into()
}

impl DataRetentionSpec {
    /// Each kind given, by the name `dfr-api retention apply` reads, with its days.
    pub fn periods(&self) -> Vec<(&'static str, i32)> {
        [
            ("person", self.person),
            ("household", self.household),
            ("farmer_profile", self.farmer_profile),
            ("plot", self.plot),
            ("holding", self.holding),
            ("consent", self.consent),
            ("form_submission", self.form_submission),
            ("sync_conflict", self.sync_conflict),
            ("sync_mutation", self.sync_mutation),
        ]
        .into_iter()
        .filter_map(|(kind, days)| days.map(|days| (kind, days)))
        .collect()
    }
}
