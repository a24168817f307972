use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The PostgreSQL major versions the operator has an image for (images/dfr-postgres).
pub const SUPPORTED_POSTGRES_VERSIONS: &[i32] = &[15];

/// Settings Patroni owns because replication, failover or TLS depend on them; letting a spec
/// override one would silently break the cluster.
pub const FORBIDDEN_POSTGRES_PARAMETERS: &[&str] = &[
    "wal_level",
    "hot_standby",
    "max_wal_senders",
    "max_replication_slots",
    "wal_log_hints",
    "wal_keep_size",
    "synchronous_commit",
    "synchronous_standby_names",
    "primary_conninfo",
    "primary_slot_name",
    "restore_command",
    "recovery_target",
    "archive_mode",
    "archive_command",
    "listen_addresses",
    "port",
    "cluster_name",
    "data_directory",
    "hba_file",
    "ident_file",
    "ssl",
    "ssl_cert_file",
    "ssl_key_file",
    "ssl_ca_file",
    "shared_preload_libraries",
];

/// The CEL list literal of [`FORBIDDEN_POSTGRES_PARAMETERS`], shared by the rule and its message.
macro_rules! forbidden_list {
    () => {
        "['wal_level', 'hot_standby', 'max_wal_senders', 'max_replication_slots', 'wal_log_hints', \
         'wal_keep_size', 'synchronous_commit', 'synchronous_standby_names', 'primary_conninfo', \
         'primary_slot_name', 'restore_command', 'recovery_target', 'archive_mode', \
         'archive_command', 'listen_addresses', 'port', 'cluster_name', 'data_directory', \
         'hba_file', 'ident_file', 'ssl', 'ssl_cert_file', 'ssl_key_file', 'ssl_ca_file', \
         'shared_preload_libraries']"
    };
}

/// The Patroni-managed PostgreSQL cluster of one tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// Number of PostgreSQL members (one leader, the rest streaming replicas).
    #[serde(default = "default_instances")]
    #[schemars(range(min = 1, max = 7))]
    pub instances: i32,

    /// off: asynchronous replication; on: Patroni synchronous_mode (no acknowledged write is lost
    /// on failover while a synchronous standby is healthy); strict: writes block when no
    /// synchronous standby is available.
    #[serde(default)]
    pub synchronous_mode: SynchronousMode,

    /// PostgreSQL major version: one the operator ships an image for (15).
    #[serde(default = "default_version")]
    #[x_kube(validation = kube::core::Rule::new(format!("self in {SUPPORTED_POSTGRES_VERSIONS:?}"))
        .message(kube::core::Message::Message(format!("postgres.version must be one of {SUPPORTED_POSTGRES_VERSIONS:?}: the operator ships PostgreSQL images (dfr-postgres) for these major versions only"))))]
    pub version: i32,

    #[serde(default)]
    pub storage: StorageSpec,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new(crate::resources_are_quantities!())
        .message("postgres.resources requests and limits must be Kubernetes quantities such as 500m, 2 or 1Gi"))]
    #[schemars(schema_with = "crate::bounded_resources")]
    pub resources: Option<ResourceRequirements>,

    /// Extra postgresql.conf parameters. Settings that replication, failover or TLS depend on are
    /// managed by the operator and rejected here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = kube::core::Rule::new(concat!(
        forbidden_list!(), ".all(k, !(k in self))"
    ))
    .message(concat!(
        "postgres.parameters must not set any of ", forbidden_list!(),
        ": the operator and Patroni manage these for replication, failover and TLS"
    )))]
    #[schemars(extend("maxProperties" = 64))]
    pub parameters: BTreeMap<String, String>,
}

impl Default for PostgresSpec {
    fn default() -> Self {
        Self {
            instances: default_instances(),
            synchronous_mode: SynchronousMode::default(),
            version: default_version(),
            storage: StorageSpec::default(),
            resources: None,
            parameters: BTreeMap::new(),
        }
    }
}

fn default_instances() -> i32 {
    2
}

fn default_version() -> i32 {
    15
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SynchronousMode {
    Off,
    #[default]
    On,
    Strict,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each member's data volume.
    #[serde(default = "default_storage_size")]
    #[x_kube(validation = kube::core::Rule::new(crate::is_quantity!())
        .message("postgres.storage.size must be a Kubernetes quantity such as 10Gi or 500Gi"))]
    pub size: Quantity,
    /// StorageClass of the data volumes; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

fn default_storage_size() -> Quantity {
    Quantity("10Gi".into())
}
