//! pgbackrest.conf for the tenant's repository, in two forms: the members' (archive-push,
//! archive-get, restore and the TLS server that backups reach them through) and the backup
//! Jobs' (which reach every member over that TLS server and pick the primary or the standby).
//! A volume repository is held by a repository host (a StatefulSet of one with the volume) that
//! serves it to the members over TLS; the Jobs run on its node and mount the same volume.
//! Secrets never appear here: pgBackRest reads them from PGBACKREST_* environment variables.

use dfr_crds::{BackupSpec, S3Destination};

use crate::children::patroni::{DATA_DIR, SOCKET_DIR, TLS_DIR};
use crate::naming;
use crate::settings::Settings;
use crate::tenant::Tenant;

/// One stanza per tenant; the repository path tells tenants apart.
pub const STANZA: &str = "dfr";
/// Where the members and the Jobs find their configuration.
pub const CONFIG_DIR: &str = "/etc/pgbackrest";
pub const MEMBER_CONFIG_KEY: &str = "member.conf";
pub const JOB_CONFIG_KEY: &str = "job.conf";
/// Where the S3 endpoint's CA (spec.backup.destination.s3.caSecretRef) is mounted.
pub const REPOSITORY_CA_DIR: &str = "/etc/pgbackrest-ca";
/// The port of the members' pgBackRest TLS server.
pub const SERVER_PORT: i32 = 8432;
/// Asynchronous archiving queues WAL here, on the data volume so a restart keeps the queue.
/// Where the repository host's volume is mounted (and the Jobs mount it), and the repository
/// and pgBackRest's locks on it.
pub const REPOSITORY_VOLUME_DIR: &str = "/pgbackrest";
pub const REPOSITORY_DIR: &str = "/pgbackrest/repository";
pub const REPOSITORY_LOCK_DIR: &str = "/pgbackrest/lock";
pub const REPOSITORY_HOST_CONFIG_KEY: &str = "repository.conf";
pub const SPOOL_DIR: &str = "/var/lib/postgresql/data/pgbackrest-spool";
/// The most WAL the archive queue may hold while the repository is unreachable. Past it
/// pgBackRest drops WAL (PostgreSQL may then recycle it) rather than fill the data volume: the
/// database keeps serving, and point-in-time recovery has a gap until the next backup.
pub const ARCHIVE_QUEUE_MAX: &str = "4GiB";
/// How often PostgreSQL switches to a new WAL segment when point-in-time recovery is on, so an
/// idle registry's last writes reach the repository within this time: the most data a lost
/// cluster can lose to its backups.
pub const ARCHIVE_TIMEOUT_SECONDS: u32 = 60;
/// The client certificate's common name the members' TLS server accepts: the database's own
/// certificate (CN postgres-rw), which the backup Jobs mount.
pub const CLIENT_COMMON_NAME: &str = naming::POSTGRES_RW;

/// Where in the bucket a tenant's repository lives.
pub fn repository_path(tenant_name: &str) -> String {
    format!("/dfr/{tenant_name}")
}

/// The host and port of an `https://host[:port][/]` endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Endpoint {
    pub host: String,
    pub port: Option<u16>,
}

/// Parses spec.backup.destination.s3.endpoint; the error says what is wrong with it.
pub fn s3_endpoint(endpoint: &str) -> Result<S3Endpoint, String> {
    let rest = endpoint.strip_prefix("https://").ok_or_else(|| {
        format!("{endpoint:?} is not an https URL (pgBackRest speaks S3 only over HTTPS)")
    })?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "{endpoint:?} must be https://host[:port] with no path, query or credentials"
        ));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("{endpoint:?} has an invalid port {port:?}"))?;
            Ok(S3Endpoint {
                host: host.to_string(),
                port: Some(port),
            })
        }
        _ => Ok(S3Endpoint {
            host: authority.to_string(),
            port: None,
        }),
    }
}

type Section = (String, Vec<(String, String)>);

fn render(sections: &[Section]) -> String {
    let mut text = String::new();
    for (name, options) in sections {
        text.push_str(&format!("[{name}]\n"));
        for (key, value) in options {
            text.push_str(&format!("{key}={value}\n"));
        }
        text.push('\n');
    }
    text
}

fn option(key: &str, value: impl ToString) -> (String, String) {
    (key.to_string(), value.to_string())
}

/// Options every pgBackRest process of the tenant shares, wherever the repository is.
fn general() -> Vec<(String, String)> {
    vec![
        option("compress-type", "zst"),
        option("process-max", 2),
        option("log-level-console", "info"),
        option("log-level-file", "off"),
        // What pgBackRest writes into the restore_command of a restore: the wrapper that reads
        // the secrets, since PostgreSQL's environment may not hold them.
        option("cmd", super::scripts::wrapper_path()),
    ]
}

/// The repository's storage, encryption and retention, for the processes that hold the
/// repository themselves: with S3 every process; with a volume the repository host and the Jobs
/// that mount its volume.
fn storage(tenant: &Tenant, backup: &BackupSpec) -> Vec<(String, String)> {
    let mut options = match &backup.destination.s3 {
        Some(s3) => s3_storage(tenant, s3),
        None => vec![
            option("repo1-type", "posix"),
            option("repo1-path", REPOSITORY_DIR),
            // On the volume, so the repository host's server and the Jobs that mount the same
            // volume on its node take the same locks, as processes of one repository host do.
            option("lock-path", REPOSITORY_LOCK_DIR),
        ],
    };
    options.extend([
        option("repo1-cipher-type", "aes-256-cbc"),
        // Retention is the operator's (GFS, see crate::backup::retention); pgBackRest's own
        // count-based expiry must never remove a set the policy keeps.
        option("repo1-retention-full-type", "count"),
        option("repo1-retention-full", 9_999_999),
    ]);
    if !backup.point_in_time_recovery {
        // Only the WAL that makes each kept backup consistent.
        options.push(option("repo1-retention-archive-type", "full"));
        options.push(option("repo1-retention-archive", 1));
    }
    options.extend(general());
    options
}

fn s3_storage(tenant: &Tenant, s3: &S3Destination) -> Vec<(String, String)> {
    let endpoint = s3_endpoint(&s3.endpoint).unwrap_or(S3Endpoint {
        host: s3.endpoint.clone(),
        port: None,
    });
    let mut options = vec![
        option("repo1-type", "s3"),
        option("repo1-path", repository_path(&tenant.name)),
        option("repo1-s3-endpoint", &endpoint.host),
        option("repo1-s3-bucket", &s3.bucket),
        option("repo1-s3-region", &s3.region),
        // Private S3 servers rarely have a DNS name per bucket.
        option("repo1-s3-uri-style", "path"),
        option("repo1-storage-verify-tls", "y"),
        option("lock-path", "/tmp/pgbackrest"),
    ];
    if let Some(port) = endpoint.port {
        options.push(option("repo1-s3-port", port));
    }
    if s3.ca_secret_ref.is_some() {
        options.push(option(
            "repo1-storage-ca-file",
            format!("{REPOSITORY_CA_DIR}/ca.crt"),
        ));
    }
    options
}

/// The repository as a member sees it: its own storage with S3; the repository host over TLS,
/// with the database certificate as client certificate, for a volume. The host encrypts, so a
/// member of a volume-backed tenant never holds the passphrase.
fn member_repository(
    tenant: &Tenant,
    settings: &Settings,
    backup: &BackupSpec,
) -> Vec<(String, String)> {
    if backup.destination.s3.is_some() {
        return storage(tenant, backup);
    }
    let mut options = vec![
        option("repo1-host", repository_host(tenant, settings)),
        option("repo1-host-type", "tls"),
        option("repo1-host-port", SERVER_PORT),
        option("repo1-host-cert-file", format!("{TLS_DIR}/tls.crt")),
        option("repo1-host-key-file", format!("{TLS_DIR}/tls.key")),
        option("repo1-host-ca-file", format!("{TLS_DIR}/ca.crt")),
        option("lock-path", "/tmp/pgbackrest"),
    ];
    options.extend(general());
    options
}

/// The TLS server's options: the members' (backup Jobs reach their data directories through
/// it) and the repository host's (the members reach the repository through it). Only the
/// database certificate's holders may connect.
fn tls_server() -> Vec<(String, String)> {
    vec![
        option("tls-server-address", "*"),
        option("tls-server-port", SERVER_PORT),
        option("tls-server-cert-file", format!("{TLS_DIR}/tls.crt")),
        option("tls-server-key-file", format!("{TLS_DIR}/tls.key")),
        option("tls-server-ca-file", format!("{TLS_DIR}/ca.crt")),
        option("tls-server-auth", format!("{CLIENT_COMMON_NAME}={STANZA}")),
    ]
}

fn local_database() -> Vec<(String, String)> {
    vec![
        option("pg1-path", DATA_DIR),
        option("pg1-socket-path", SOCKET_DIR),
        option("pg1-port", naming::POSTGRES_PORT),
        option("pg1-user", naming::SUPERUSER),
    ]
}

/// The members' configuration, or None when the tenant has no repository.
pub fn member_conf(tenant: &Tenant, settings: &Settings) -> Option<String> {
    let backup = tenant.spec.backup.as_ref()?;
    let mut global = member_repository(tenant, settings, backup);
    global.extend([
        option("archive-async", "y"),
        option("spool-path", SPOOL_DIR),
        option("archive-push-queue-max", ARCHIVE_QUEUE_MAX),
    ]);
    global.extend(tls_server());
    Some(render(&[
        ("global".into(), global),
        (STANZA.into(), local_database()),
    ]))
}

/// The repository host's configuration, or None unless the repository is on a volume.
pub fn repository_host_conf(tenant: &Tenant) -> Option<String> {
    let backup = tenant.spec.backup.as_ref()?;
    backup.destination.volume.as_ref()?;
    let mut global = storage(tenant, backup);
    global.extend(tls_server());
    Some(render(&[("global".into(), global)]))
}

/// The DNS name of member `ordinal`, which the database certificate covers.
pub fn member_host(tenant: &Tenant, settings: &Settings, ordinal: i32) -> String {
    format!(
        "{}-{ordinal}.{}",
        naming::POSTGRES,
        naming::cluster_dns(
            naming::POSTGRES_HEADLESS,
            &tenant.namespace,
            &settings.cluster_domain
        )
    )
}

/// The DNS name of the repository host's Service, which the database certificate covers.
pub fn repository_host(tenant: &Tenant, settings: &Settings) -> String {
    naming::cluster_dns(
        naming::POSTGRES_REPOSITORY,
        &tenant.namespace,
        &settings.cluster_domain,
    )
}

/// The backup Jobs' configuration: every member as a TLS host; pgBackRest finds the primary.
pub fn job_conf(tenant: &Tenant, settings: &Settings) -> Option<String> {
    let backup = tenant.spec.backup.as_ref()?;
    let global = storage(tenant, backup);
    let mut stanza = vec![option("start-fast", "y")];
    for ordinal in 0..tenant.spec.postgres.instances {
        let index = ordinal + 1;
        stanza.extend([
            option(
                &format!("pg{index}-host"),
                member_host(tenant, settings, ordinal),
            ),
            option(&format!("pg{index}-host-type"), "tls"),
            option(&format!("pg{index}-host-port"), SERVER_PORT),
            option(
                &format!("pg{index}-host-cert-file"),
                format!("{TLS_DIR}/tls.crt"),
            ),
            option(
                &format!("pg{index}-host-key-file"),
                format!("{TLS_DIR}/tls.key"),
            ),
            option(
                &format!("pg{index}-host-ca-file"),
                format!("{TLS_DIR}/ca.crt"),
            ),
            option(&format!("pg{index}-path"), DATA_DIR),
            option(&format!("pg{index}-socket-path"), SOCKET_DIR),
            option(&format!("pg{index}-port"), naming::POSTGRES_PORT),
            option(&format!("pg{index}-user"), naming::SUPERUSER),
        ]);
    }
    Some(render(&[
        ("global".into(), global),
        (STANZA.into(), stanza),
    ]))
}

/// The restore a tenant bootstrapped from another's backups runs, as its arguments.
pub fn restore_arguments(source_tenant: &str, target_time: Option<&str>) -> Vec<String> {
    let mut args = vec![
        format!("--stanza={STANZA}"),
        format!("--repo1-path={}", repository_path(source_tenant)),
        format!("--pg1-path={DATA_DIR}"),
    ];
    match target_time {
        Some(time) => args.extend([
            "--type=time".into(),
            format!("--target=\"{}\"", recovery_time(time)),
            "--target-action=promote".into(),
        ]),
        None => args.push("--type=default".into()),
    }
    args.push("restore".into());
    args
}

/// An RFC 3339 time as pgBackRest and PostgreSQL's recovery_target_time read it: pgBackRest
/// 2.45 selects the backup set only from `YYYY-MM-DD HH:MM:SS+00` (it refuses `T` and `Z`).
pub fn recovery_time(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(time) => time
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S%.f+00")
            .to_string(),
        Err(_) => rfc3339.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_split_into_host_and_port() {
        assert_eq!(
            s3_endpoint("https://10.234.0.1:9000").unwrap(),
            S3Endpoint {
                host: "10.234.0.1".into(),
                port: Some(9000)
            }
        );
        assert_eq!(
            s3_endpoint("https://s3.example.org/").unwrap(),
            S3Endpoint {
                host: "s3.example.org".into(),
                port: None
            }
        );
        assert!(
            s3_endpoint("http://s3.example.org")
                .unwrap_err()
                .contains("HTTPS")
        );
        assert!(
            s3_endpoint("https://s3.example.org/bucket")
                .unwrap_err()
                .contains("no path")
        );
        assert!(
            s3_endpoint("https://s3.example.org:http")
                .unwrap_err()
                .contains("invalid port")
        );
    }

    #[test]
    fn a_point_in_time_restore_promotes_at_the_target() {
        let args = restore_arguments("ton-dev", Some("2026-12-01T10:15:00Z"));
        assert!(args.contains(&"--repo1-path=/dfr/ton-dev".to_string()));
        assert!(args.contains(&"--target=\"2026-12-01 10:15:00+00\"".to_string()));
        assert_eq!(
            recovery_time("2026-12-01T12:15:00.25+02:00"),
            "2026-12-01 10:15:00.250+00"
        );
        assert!(args.contains(&"--target-action=promote".to_string()));
        assert_eq!(args.last().unwrap(), "restore");
        let latest = restore_arguments("ton-dev", None);
        assert!(latest.contains(&"--type=default".to_string()));
        assert!(!latest.iter().any(|arg| arg.starts_with("--target")));
    }
}
