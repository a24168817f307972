//! Names of the tenant namespace and of the objects in it. Each tenant has a namespace of its
//! own, so names inside it are fixed.

use dfr_crds::DfrCountry;

/// `dfr-<country>-<env>`, lower case, e.g. dfr-ton-prod.
pub fn namespace(country: &DfrCountry) -> String {
    format!(
        "dfr-{}-{}",
        country.spec.country_code.to_lowercase(),
        country.spec.environment.as_str()
    )
}

/// Patroni scope (cluster name) and StatefulSet name.
pub const POSTGRES: &str = "postgres";
/// Service selecting the Patroni leader (read-write).
pub const POSTGRES_RW: &str = "postgres-rw";
/// Service selecting the replicas (read-only).
pub const POSTGRES_RO: &str = "postgres-ro";
/// Headless Service giving each member a stable DNS name.
pub const POSTGRES_HEADLESS: &str = "postgres-headless";
pub const POSTGRES_CONFIG: &str = "postgres-patroni";
/// pgBackRest's configuration and the backup programs.
pub const POSTGRES_BACKUP_CONFIG: &str = "postgres-pgbackrest";
/// The CronJob of scheduled backups; `kubectl create job --from=cronjob/postgres-backup` starts
/// one by hand.
pub const POSTGRES_BACKUP: &str = "postgres-backup";
/// The repository host of a volume repository: its StatefulSet, headless Service and pods'
/// `app.kubernetes.io/name`.
pub const POSTGRES_REPOSITORY: &str = "postgres-repo";
/// The volume claim template of the repository host, and so its claim's name.
pub const REPOSITORY_CLAIM_TEMPLATE: &str = "repository";
pub const POSTGRES_SERVICE_ACCOUNT: &str = "postgres";
pub const API: &str = "dfr-api";
pub const API_SERVICE_ACCOUNT: &str = "dfr-api";

/// Secrets generated once and never overwritten.
pub const SECRET_POSTGRES_SUPERUSER: &str = "postgres-superuser";
pub const SECRET_POSTGRES_REPLICATION: &str = "postgres-replication";
/// Basic-auth credentials for Patroni's REST API: every call that changes something (restart,
/// switchover, reinitialize, failsafe) needs them; reads stay open to probes and monitoring.
pub const SECRET_PATRONI_API: &str = "postgres-patroni-api";
/// The client certificate the replication role presents to the leader (pg_hba asks for it).
pub const SECRET_REPLICATION_TLS: &str = "postgres-replication-tls";
/// The login pg_rewind uses on the new leader when a former leader rejoins: a role of its own
/// with only the functions pg_rewind needs, so the superuser never logs in over the network.
pub const SECRET_POSTGRES_REWIND: &str = "postgres-rewind";
pub const SECRET_REWIND_TLS: &str = "postgres-rewind-tls";
pub const PATRONI_API_USER: &str = "patroni";
pub const SECRET_DB_OWNER: &str = "dfr-db-owner";
pub const SECRET_DB_APP: &str = "dfr-db-app";
pub const SECRET_API_JWT: &str = "dfr-api-jwt";
pub const SECRET_API_PII_KEYS: &str = "dfr-api-pii-keys";
pub const SECRET_TENANT_CA: &str = "dfr-tenant-ca";
pub const SECRET_POSTGRES_TLS: &str = "postgres-tls";
pub const SECRET_API_TLS: &str = "dfr-api-tls";
/// The first national admin's sign-in (username, password, TOTP secret), made once.
pub const SECRET_API_BOOTSTRAP_ADMIN: &str = "dfr-api-bootstrap-admin";
/// The username of the first national admin.
pub const BOOTSTRAP_ADMIN_USER: &str = "national-admin";
/// The data-retention job and its policy file.
pub const RETENTION: &str = "dfr-retention";

/// Every Secret the operator generates; when all exist, nothing is generated.
pub const GENERATED_SECRETS: &[&str] = &[
    SECRET_POSTGRES_SUPERUSER,
    SECRET_POSTGRES_REPLICATION,
    SECRET_POSTGRES_REWIND,
    SECRET_REPLICATION_TLS,
    SECRET_REWIND_TLS,
    SECRET_PATRONI_API,
    SECRET_DB_OWNER,
    SECRET_DB_APP,
    SECRET_API_JWT,
    SECRET_API_PII_KEYS,
    SECRET_TENANT_CA,
    SECRET_POSTGRES_TLS,
    SECRET_API_TLS,
    SECRET_API_BOOTSTRAP_ADMIN,
];

pub const DATABASE_NAME: &str = "dfr";
pub const DB_OWNER_USER: &str = "dfr_owner";
pub const DB_APP_USER: &str = "dfr_app";
pub const REPLICATION_USER: &str = "replicator";
pub const REWIND_USER: &str = "dfr_rewind";
pub const SUPERUSER: &str = "postgres";
/// The PostgreSQL exporter's role: pg_monitor only, and only over the pod's own socket.
pub const MONITOR_USER: &str = "dfr_monitor";

pub const POSTGRES_PORT: i32 = 5432;
pub const PATRONI_PORT: i32 = 8008;
pub const API_PORT: i32 = 8080;
/// The API's /metrics, on a listener of its own that only monitoring may reach.
pub const API_METRICS_PORT: i32 = 9090;
/// The PostgreSQL exporter beside each member (container port `exporter`).
pub const EXPORTER_PORT: i32 = 9187;

/// Finalizer that lets the operator apply the deletionPolicy before a DfrCountry goes away.
pub const FINALIZER: &str = "dfr.io/cleanup";
/// The one field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "dfr-operator";

pub fn cluster_dns(service: &str, namespace: &str, cluster_domain: &str) -> String {
    format!("{service}.{namespace}.svc.{cluster_domain}")
}
