//! patroni.yml, built from typed structs so every setting is checked by the compiler and
//! serialized with YAML 1.1-safe quoting (Patroni reads YAML 1.1, where a bare `on` is true).

use std::collections::BTreeMap;

use crate::tenant::Tenant;
use dfr_crds::{FORBIDDEN_POSTGRES_PARAMETERS, SynchronousMode};
use k8s_openapi::api::core::v1::ConfigMap;
use serde::Serialize;

use super::{metadata_labels, selector};
use crate::children::child_meta;
use crate::settings::Settings;
use crate::{labels, naming};

pub const PATRONI_CONFIG_KEY: &str = "patroni.yml";
/// Where the ConfigMap is mounted in the PostgreSQL pods.
pub const CONFIG_DIR: &str = "/etc/patroni";
pub const DATA_DIR: &str = "/var/lib/postgresql/data/pgdata";
pub const TLS_DIR: &str = "/etc/dfr/tls";
/// The replication and rewind roles' client certificates, as `<role kind>.crt` / `.key`.
pub const CLIENT_TLS_DIR: &str = "/etc/dfr/client-tls";
pub const SOCKET_DIR: &str = "/var/run/postgresql";
/// How often Patroni runs its loop, and so renews the leader lock.
pub const LOOP_WAIT_SECONDS: u32 = 5;

#[derive(Serialize, Debug, PartialEq)]
pub struct PatroniConfig {
    pub scope: String,
    pub restapi: RestApi,
    pub kubernetes: Kubernetes,
    pub bootstrap: Bootstrap,
    pub postgresql: Postgresql,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct RestApi {
    pub listen: String,
    pub certfile: String,
    pub keyfile: String,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Kubernetes {
    /// ConfigMaps, not Endpoints: the leader lock then needs no Service of Patroni's own.
    pub use_endpoints: bool,
    pub bypass_api_service: bool,
    pub labels: BTreeMap<String, String>,
    pub scope_label: String,
    pub role_label: String,
    pub leader_label_value: String,
    pub follower_label_value: String,
    pub standby_leader_label_value: String,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Bootstrap {
    /// A custom bootstrap (a restore) instead of initdb, named by the key of its settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pgbackrest: Option<CustomBootstrap>,
    pub dcs: Dcs,
    /// Creates the registry's database and roles once, after initdb.
    pub post_bootstrap: String,
    pub initdb: Vec<serde_yaml::Value>,
}

/// Patroni runs `command` (split like a shell would) instead of initdb on the first member.
#[derive(Serialize, Debug, PartialEq)]
pub struct CustomBootstrap {
    pub command: String,
    /// pgBackRest writes the recovery settings; Patroni must not replace them.
    pub keep_existing_recovery_conf: bool,
    /// Patroni would append --scope and --datadir, which pgBackRest does not take.
    pub no_params: bool,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Dcs {
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
    pub maximum_lag_on_failover: u64,
    pub synchronous_mode: bool,
    pub synchronous_mode_strict: bool,
    /// A leader that cannot reach the Kubernetes API keeps leading while it can reach every
    /// other member over Patroni's REST API, instead of demoting itself: an API-server restart
    /// or upgrade must not stop the registry's writes.
    pub failsafe_mode: bool,
    pub postgresql: DcsPostgresql,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct DcsPostgresql {
    pub use_pg_rewind: bool,
    pub use_slots: bool,
    pub parameters: BTreeMap<String, String>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Postgresql {
    pub listen: String,
    pub data_dir: String,
    pub bin_dir: String,
    pub pgpass: String,
    /// Options for pg_basebackup when a replica clones the leader.
    pub basebackup: Vec<serde_yaml::Value>,
    pub pg_hba: Vec<String>,
    /// Maps the pod's OS user to the exporter's role for the `peer` line of pg_hba.
    pub pg_ident: Vec<String>,
    /// Scripts Patroni runs on events (action, role, scope as arguments).
    pub callbacks: BTreeMap<String, String>,
    pub parameters: BTreeMap<String, String>,
    /// Patroni's own connections as the superuser go over the socket: the superuser has no
    /// network line in pg_hba, loopback included.
    pub use_unix_socket: bool,
}

/// The pg_ident map that lets the pod's OS user (uid 999, `postgres`) log in as the exporter's
/// role over the socket.
pub const MONITOR_IDENT_MAP: &str = "dfr-monitor";

/// The leader lock's ttl in seconds (see the Dcs settings below).
pub fn lock_ttl_seconds(synchronous_mode: SynchronousMode) -> u32 {
    match synchronous_mode {
        SynchronousMode::Off => 20,
        SynchronousMode::On | SynchronousMode::Strict => 75,
    }
}

pub fn patroni_config(tenant: &Tenant) -> PatroniConfig {
    let spec = &tenant.spec.postgres;
    // The spec's parameters live in Patroni's dynamic configuration, which the operator keeps
    // equal to the spec on a running cluster (crate::patroni_state): Patroni applies a change on
    // every member. The operator's fixed settings stay in the local configuration.
    let mut dcs_parameters: BTreeMap<String, String> = spec
        .parameters
        .iter()
        .filter(|(key, _)| !FORBIDDEN_POSTGRES_PARAMETERS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let mut local_parameters = BTreeMap::new();
    dcs_parameters
        .entry("max_connections".into())
        .or_insert_with(|| "200".into());
    let fixed = [
        ("ssl", "on".to_string()),
        ("ssl_cert_file", format!("{TLS_DIR}/tls.crt")),
        ("ssl_key_file", format!("{TLS_DIR}/tls.key")),
        ("ssl_ca_file", format!("{TLS_DIR}/ca.crt")),
        // Every client speaks TLS 1.3: the API (rustls), Patroni and the PostgreSQL tools
        // (libpq on OpenSSL 3).
        ("ssl_min_protocol_version", "TLSv1.3".to_string()),
        ("password_encryption", "scram-sha-256".to_string()),
        ("shared_preload_libraries", "pgaudit".to_string()),
        ("pgaudit.log", "ddl, role, write".to_string()),
        ("pgaudit.log_relation", "on".to_string()),
        ("unix_socket_directories", SOCKET_DIR.to_string()),
    ];
    for (key, value) in fixed.into_iter().chain(archive_parameters(tenant)) {
        local_parameters.insert(key.to_string(), value);
    }
    PatroniConfig {
        scope: naming::POSTGRES.into(),
        restapi: RestApi {
            listen: format!("0.0.0.0:{}", naming::PATRONI_PORT),
            certfile: format!("{TLS_DIR}/tls.crt"),
            keyfile: format!("{TLS_DIR}/tls.key"),
        },
        kubernetes: Kubernetes {
            use_endpoints: false,
            bypass_api_service: true,
            labels: selector(tenant),
            scope_label: labels::PATRONI_SCOPE.into(),
            role_label: labels::PATRONI_ROLE.into(),
            leader_label_value: labels::PATRONI_ROLE_PRIMARY.into(),
            follower_label_value: labels::PATRONI_ROLE_REPLICA.into(),
            standby_leader_label_value: labels::PATRONI_ROLE_PRIMARY.into(),
        },
        bootstrap: Bootstrap {
            method: restore_bootstrap(tenant).map(|_| "pgbackrest".to_string()),
            pgbackrest: restore_bootstrap(tenant),
            post_bootstrap: format!("{CONFIG_DIR}/{}", super::bootstrap::SCRIPT_KEY),
            dcs: Dcs {
                // The ttl is how long a leader may go without renewing its lock. A leader that
                // could not renew through a Kubernetes API outage longer than the ttl finds its
                // own lock expired when the API returns, tries to take it as if new, and demotes
                // itself when that fails. With a synchronous standby the operator's failover
                // guard replaces a hung leader within seconds (crate::failover), so the ttl can
                // outlast an API-server restart: 75 s. Without one (synchronous mode off) the
                // ttl is the failover time: 20 s, Patroni's floor. Patroni needs
                // loop_wait + 2 * retry_timeout <= ttl.
                ttl: lock_ttl_seconds(spec.synchronous_mode),
                loop_wait: LOOP_WAIT_SECONDS,
                retry_timeout: 5,
                maximum_lag_on_failover: 1024 * 1024,
                synchronous_mode: spec.synchronous_mode != SynchronousMode::Off,
                synchronous_mode_strict: spec.synchronous_mode == SynchronousMode::Strict,
                failsafe_mode: true,
                postgresql: DcsPostgresql {
                    use_pg_rewind: true,
                    use_slots: true,
                    parameters: dcs_parameters,
                },
            },
            initdb: vec![
                serde_yaml::Value::String("data-checksums".into()),
                yaml_pair("encoding", "UTF8"),
                yaml_pair("locale", "C.UTF-8"),
            ],
        },
        postgresql: Postgresql {
            listen: format!("0.0.0.0:{}", naming::POSTGRES_PORT),
            data_dir: DATA_DIR.into(),
            bin_dir: format!("/usr/lib/postgresql/{}/bin", spec.version),
            pgpass: "/tmp/pgpass".into(),
            // Without it pg_basebackup waits for the leader's next scheduled checkpoint (up to
            // checkpoint_timeout, 5 minutes) before a new replica starts copying.
            basebackup: vec![yaml_pair("checkpoint", "fast")],
            pg_hba: pg_hba(),
            pg_ident: vec![format!(
                "{MONITOR_IDENT_MAP} postgres {}",
                naming::MONITOR_USER
            )],
            callbacks: ["on_start", "on_role_change"]
                .into_iter()
                .map(|event| {
                    (
                        event.to_string(),
                        format!("{CONFIG_DIR}/{}", super::bootstrap::MONITOR_ROLE_SCRIPT_KEY),
                    )
                })
                .collect(),
            parameters: local_parameters,
            use_unix_socket: true,
        },
    }
}

/// Who may connect to what. Inside the pod, over the socket: the exporter's role by peer (the
/// pod's OS user, no password; it has no other line, so never over the network), then Patroni,
/// pgBackRest and the operator's tooling with passwords, the superuser among them; the superuser
/// has no network line. Over the network, TLS and SCRAM only, each role to its own database: the
/// replication role to replication and the rewind role to `postgres` (pg_rewind's source
/// connection when a former leader rejoins), each also with a client certificate from the tenant
/// CA whose common name is the role (`clientcert=verify-full`); the registry's two roles to the
/// registry. Anything else matches no line and is refused, a connection without TLS included.
pub fn pg_hba() -> Vec<String> {
    let mut lines = vec![
        format!(
            "local all {} peer map={MONITOR_IDENT_MAP}",
            naming::MONITOR_USER
        ),
        "local all all scram-sha-256".to_string(),
    ];
    for network in ["0.0.0.0/0", "::/0"] {
        lines.extend([
            format!(
                "hostssl replication {} {network} scram-sha-256 clientcert=verify-full",
                naming::REPLICATION_USER
            ),
            format!(
                "hostssl postgres {} {network} scram-sha-256 clientcert=verify-full",
                naming::REWIND_USER
            ),
            format!(
                "hostssl {} {},{} {network} scram-sha-256",
                naming::DATABASE_NAME,
                naming::DB_OWNER_USER,
                naming::DB_APP_USER
            ),
        ]);
    }
    lines
}

/// WAL archiving, always on so that adding a repository later needs no restart: to the
/// tenant's pgBackRest repository when it has one, nowhere otherwise. It is part of the members'
/// own configuration, so it follows the leader through a failover.
fn archive_parameters(tenant: &Tenant) -> Vec<(&'static str, String)> {
    use crate::children::backup::{self, STANZA, pgbackrest::ARCHIVE_TIMEOUT_SECONDS};
    let mut parameters = vec![("archive_mode", "on".to_string())];
    if !backup::has_repository(tenant) {
        // PostgreSQL counts a segment archived when the command succeeds; `true` discards it.
        parameters.push(("archive_command", "/bin/true".to_string()));
        return parameters;
    }
    parameters.push((
        "archive_command",
        format!(
            "{} --stanza={STANZA} archive-push \"%p\"",
            backup::scripts::wrapper_path()
        ),
    ));
    let pitr = tenant
        .spec
        .backup
        .as_ref()
        .is_some_and(|b| b.point_in_time_recovery);
    if pitr {
        parameters.push(("archive_timeout", format!("{ARCHIVE_TIMEOUT_SECONDS}s")));
    }
    parameters
}

/// For a tenant made from another's backups: Patroni's custom bootstrap running the restore.
fn restore_bootstrap(tenant: &Tenant) -> Option<CustomBootstrap> {
    let from = &tenant.spec.bootstrap.as_ref()?.from_backup;
    if !crate::children::backup::has_repository(tenant) {
        return None;
    }
    let args = crate::children::backup::pgbackrest::restore_arguments(
        &from.country,
        from.target_time.as_deref(),
    );
    Some(CustomBootstrap {
        // Patroni runs the command without a shell; the data directory must exist first.
        command: format!(
            "/bin/sh -c 'mkdir -p -m 0700 {DATA_DIR} && exec {} {}'",
            crate::children::backup::scripts::wrapper_path(),
            args.join(" ")
        ),
        keep_existing_recovery_conf: true,
        no_params: true,
    })
}

fn yaml_pair(key: &str, value: &str) -> serde_yaml::Value {
    let mut map = serde_yaml::Mapping::new();
    map.insert(key.into(), value.into());
    serde_yaml::Value::Mapping(map)
}

/// Serialization of plain structs of strings, numbers and maps cannot fail; an error here is a
/// programming mistake, reported in the file rather than as a panic.
pub fn render(config: &PatroniConfig) -> String {
    match serde_yaml::to_string(config) {
        Ok(yaml) => dfr_crds::quote_yaml11_booleans(&yaml),
        Err(error) => format!("# could not render the Patroni configuration: {error}\n"),
    }
}

pub fn desired_config_map(tenant: &Tenant, _settings: &Settings) -> ConfigMap {
    ConfigMap {
        metadata: child_meta(tenant, naming::POSTGRES_CONFIG, metadata_labels(tenant)),
        data: Some(BTreeMap::from([
            (
                PATRONI_CONFIG_KEY.to_string(),
                render(&patroni_config(tenant)),
            ),
            (
                super::bootstrap::SCRIPT_KEY.to_string(),
                super::bootstrap::POST_BOOTSTRAP_SCRIPT.to_string(),
            ),
            (
                super::bootstrap::MONITOR_ROLE_SCRIPT_KEY.to_string(),
                super::bootstrap::MONITOR_ROLE_SCRIPT.to_string(),
            ),
        ])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::tests::sample;

    fn parsed(tenant: &Tenant) -> serde_yaml::Value {
        let map = desired_config_map(tenant, &Settings::default());
        serde_yaml::from_str(&map.data.unwrap()[PATRONI_CONFIG_KEY]).unwrap()
    }

    #[test]
    fn the_lock_outlasts_an_api_outage_only_where_the_operator_can_fail_over() {
        let mut tenant = sample("ton-prod.yaml");
        for (mode, longest) in [("on", 80), ("strict", 80), ("off", 30)] {
            tenant.spec.postgres.synchronous_mode =
                serde_json::from_value(serde_json::json!(mode)).unwrap();
            let dcs = &parsed(&tenant)["bootstrap"]["dcs"];
            let number = |key: &str| dcs[key].as_u64().unwrap();
            assert!(number("ttl") >= 20, "Patroni refuses a shorter ttl");
            assert!(number("loop_wait") + 2 * number("retry_timeout") <= number("ttl"));
            // Without the operator's guard, Patroni's expiry is the failover time.
            assert!(number("ttl") + number("loop_wait") <= longest, "{mode}");
        }
        // A 60 s API-server outage is shorter than the lock where the guard can act.
        assert!(lock_ttl_seconds(SynchronousMode::On) > 60 + LOOP_WAIT_SECONDS);
    }

    #[test]
    fn the_network_reaches_each_role_only_over_tls_and_only_its_database() {
        let lines = pg_hba();
        assert!(
            lines
                .iter()
                .all(|line| line.starts_with("local ") || line.starts_with("hostssl ")),
            "no plaintext line: {lines:?}"
        );
        let (peer, passwords): (Vec<&String>, Vec<&String>) =
            lines.iter().partition(|line| line.contains(" peer "));
        assert!(passwords.iter().all(|line| line.contains(" scram-sha-256")));
        // Only the exporter's role logs in without a password, and only over the socket.
        assert_eq!(peer, ["local all dfr_monitor peer map=dfr-monitor"]);
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("hostssl") && l.contains("dfr_monitor"))
        );
        assert!(
            !lines.iter().any(|line| line.starts_with("hostssl all ")),
            "no line for any database: {lines:?}"
        );
        assert!(lines.contains(&"hostssl dfr dfr_owner,dfr_app 0.0.0.0/0 scram-sha-256".into()));
    }

    #[test]
    fn the_superuser_stays_local_and_the_server_roles_need_their_certificates() {
        let lines = pg_hba();
        let network: Vec<&String> = lines.iter().filter(|l| l.starts_with("hostssl ")).collect();
        assert!(
            !network
                .iter()
                .any(|line| line.split_whitespace().nth(2) == Some(naming::SUPERUSER)),
            "{network:?}"
        );
        for role in [naming::REPLICATION_USER, naming::REWIND_USER] {
            let role_lines: Vec<_> = network
                .iter()
                .filter(|line| line.split_whitespace().nth(2) == Some(role))
                .collect();
            assert_eq!(role_lines.len(), 2, "IPv4 and IPv6: {role_lines:?}");
            assert!(
                role_lines
                    .iter()
                    .all(|line| line.ends_with("scram-sha-256 clientcert=verify-full"))
            );
        }
    }

    #[test]
    fn synchronous_mode_follows_the_spec() {
        let mut tenant = sample("ton-prod.yaml");
        let dcs = |c: &Tenant| parsed(c)["bootstrap"]["dcs"].clone();
        assert_eq!(dcs(&tenant)["synchronous_mode"], true);
        assert_eq!(dcs(&tenant)["synchronous_mode_strict"], false);
        tenant.spec.postgres.synchronous_mode = SynchronousMode::Strict;
        assert_eq!(dcs(&tenant)["synchronous_mode_strict"], true);
        tenant.spec.postgres.synchronous_mode = SynchronousMode::Off;
        assert_eq!(dcs(&tenant)["synchronous_mode"], false);
    }

    #[test]
    fn only_tls_scram_connections_are_allowed_over_the_network() {
        let yaml = parsed(&sample("ton-prod.yaml"));
        let hba: Vec<String> =
            serde_yaml::from_value(yaml["postgresql"]["pg_hba"].clone()).unwrap();
        for line in &hba {
            assert!(
                line.split_whitespace().any(|word| word == "scram-sha-256")
                    || line.starts_with("local all dfr_monitor peer"),
                "{line}"
            );
            assert!(
                line.starts_with("local ") || line.starts_with("hostssl "),
                "{line}"
            );
        }
        // The exporter's peer login maps the pod's OS user to its role, and its role is made on
        // the leader by a callback.
        assert_eq!(
            yaml["postgresql"]["pg_ident"][0],
            "dfr-monitor postgres dfr_monitor"
        );
        for event in ["on_start", "on_role_change"] {
            assert_eq!(
                yaml["postgresql"]["callbacks"][event],
                "/etc/patroni/monitor-role.sh"
            );
        }
        let map = desired_config_map(&sample("ton-prod.yaml"), &Settings::default());
        let script = &map.data.unwrap()[super::super::bootstrap::MONITOR_ROLE_SCRIPT_KEY];
        assert!(script.contains("GRANT pg_monitor"), "{script}");
        let parameters = &yaml["postgresql"]["parameters"];
        // Quoted, so YAML 1.1 readers see the string `on`, not a boolean.
        assert_eq!(yaml["postgresql"]["use_unix_socket"], true);
        assert_eq!(parameters["ssl"], "on");
        assert_eq!(parameters["shared_preload_libraries"], "pgaudit");
        assert_eq!(parameters["pgaudit.log"], "ddl, role, write");
        let initdb = format!("{:?}", yaml["bootstrap"]["initdb"]);
        assert!(initdb.contains("data-checksums"));
    }

    #[test]
    fn replicas_clone_with_a_fast_checkpoint_and_members_are_found_by_their_scope_label() {
        let yaml = parsed(&sample("ton-dev.yaml"));
        assert_eq!(yaml["postgresql"]["basebackup"][0]["checkpoint"], "fast");
        assert_eq!(yaml["kubernetes"]["scope_label"], labels::PATRONI_SCOPE);
    }

    #[test]
    fn the_rendered_file_quotes_yaml11_booleans() {
        let map = desired_config_map(&sample("ton-prod.yaml"), &Settings::default());
        let text = &map.data.unwrap()[PATRONI_CONFIG_KEY];
        assert!(text.contains("ssl: 'on'"), "{text}");
        assert!(!text.contains("ssl: on\n"));
    }

    #[test]
    fn spec_parameters_land_where_patroni_honours_them_and_forbidden_ones_never() {
        let mut tenant = sample("ton-prod.yaml");
        tenant
            .spec
            .postgres
            .parameters
            .insert("wal_level".into(), "minimal".into());
        let yaml = parsed(&tenant);
        assert_eq!(
            yaml["bootstrap"]["dcs"]["postgresql"]["parameters"]["max_connections"],
            "200"
        );
        // The spec's parameters go to the dynamic configuration, which the operator keeps equal
        // to the spec after bootstrap too.
        assert_eq!(
            yaml["bootstrap"]["dcs"]["postgresql"]["parameters"]["shared_buffers"],
            "512MB"
        );
        assert!(
            yaml["postgresql"]["parameters"]
                .get("shared_buffers")
                .is_none()
        );
        assert_eq!(yaml["bootstrap"]["dcs"]["failsafe_mode"], true);
        assert!(yaml["postgresql"]["parameters"].get("wal_level").is_none());
        assert!(
            yaml["bootstrap"]["dcs"]["postgresql"]["parameters"]
                .get("wal_level")
                .is_none()
        );
    }

    #[test]
    fn patroni_labels_the_leader_primary_as_the_services_expect() {
        let kubernetes = &parsed(&sample("ton-dev.yaml"))["kubernetes"];
        assert_eq!(kubernetes["use_endpoints"], false);
        assert_eq!(kubernetes["role_label"], labels::PATRONI_ROLE);
        assert_eq!(
            kubernetes["leader_label_value"],
            labels::PATRONI_ROLE_PRIMARY
        );
        assert_eq!(kubernetes["labels"][labels::INSTANCE], "ton-dev");
        assert!(
            kubernetes["labels"].get(labels::MANAGED_BY).is_none(),
            "Patroni's own ConfigMaps are not ours"
        );
    }
}
