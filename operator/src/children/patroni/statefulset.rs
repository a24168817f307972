//! The PostgreSQL members: one StatefulSet, each pod running Patroni, which runs PostgreSQL.

use std::collections::BTreeMap;

use crate::tenant::Tenant;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction,
    KeyToPath, PersistentVolumeClaim, PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec,
    Probe, ProjectedVolumeSource, ResourceRequirements, SecretProjection, SecretVolumeSource,
    Volume, VolumeProjection, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{CLIENT_TLS_DIR, CONFIG_DIR, PATRONI_CONFIG_KEY, SOCKET_DIR, TLS_DIR};
use super::{metadata_labels, selector};
use crate::children::backup::{self, pgbackrest::MEMBER_CONFIG_KEY};
use crate::children::child_meta;
use crate::children::namespace::{DEFAULT_POSTGRES_CPU, DEFAULT_POSTGRES_MEMORY};
use crate::children::pod::{
    Budget, disruption_budget, field_env, mount, restricted_container, restricted_pod, secret_env,
    value_env,
};
use crate::naming;
use crate::settings::Settings;

/// The uid of the postgres user in the dfr-postgres image.
pub const POSTGRES_UID: i64 = 999;

fn patroni_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(naming::PATRONI_PORT),
            scheme: Some("HTTPS".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn resources(tenant: &Tenant) -> ResourceRequirements {
    tenant
        .spec
        .postgres
        .resources
        .clone()
        .unwrap_or_else(|| ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity(DEFAULT_POSTGRES_CPU.into())),
                (
                    "memory".to_string(),
                    Quantity(DEFAULT_POSTGRES_MEMORY.into()),
                ),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("2Gi".into()),
            )])),
            ..ResourceRequirements::default()
        })
}

fn container(tenant: &Tenant, settings: &Settings) -> Container {
    Container {
        name: "postgres".into(),
        image: Some(settings.postgres_image_for(tenant.spec.postgres.version)),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        command: Some(vec![
            "patroni".into(),
            format!("{CONFIG_DIR}/{PATRONI_CONFIG_KEY}"),
        ]),
        env: Some(vec![
            field_env("PATRONI_NAME", "metadata.name"),
            field_env("PATRONI_KUBERNETES_NAMESPACE", "metadata.namespace"),
            field_env("PATRONI_KUBERNETES_POD_IP", "status.podIP"),
            value_env("PATRONI_SCOPE", naming::POSTGRES),
            value_env(
                "PATRONI_POSTGRESQL_CONNECT_ADDRESS",
                format!("$(PATRONI_KUBERNETES_POD_IP):{}", naming::POSTGRES_PORT),
            ),
            value_env(
                "PATRONI_RESTAPI_CONNECT_ADDRESS",
                format!("$(PATRONI_KUBERNETES_POD_IP):{}", naming::PATRONI_PORT),
            ),
            secret_env(
                "PATRONI_SUPERUSER_USERNAME",
                naming::SECRET_POSTGRES_SUPERUSER,
                "username",
            ),
            secret_env(
                "PATRONI_SUPERUSER_PASSWORD",
                naming::SECRET_POSTGRES_SUPERUSER,
                "password",
            ),
            secret_env(
                "PATRONI_REPLICATION_USERNAME",
                naming::SECRET_POSTGRES_REPLICATION,
                "username",
            ),
            secret_env(
                "PATRONI_REPLICATION_PASSWORD",
                naming::SECRET_POSTGRES_REPLICATION,
                "password",
            ),
            secret_env(
                "PATRONI_REWIND_USERNAME",
                naming::SECRET_POSTGRES_REWIND,
                "username",
            ),
            secret_env(
                "PATRONI_REWIND_PASSWORD",
                naming::SECRET_POSTGRES_REWIND,
                "password",
            ),
            // Patroni asks for these on its REST API's unsafe calls and sends them on its own
            // (failsafe pings between members); patronictl in the container reads them too.
            secret_env(
                "PATRONI_RESTAPI_USERNAME",
                naming::SECRET_PATRONI_API,
                "username",
            ),
            secret_env(
                "PATRONI_RESTAPI_PASSWORD",
                naming::SECRET_PATRONI_API,
                "password",
            ),
            // For the post-bootstrap script that creates the registry's roles.
            secret_env("DFR_DB_OWNER_USER", naming::SECRET_DB_OWNER, "username"),
            secret_env("DFR_DB_OWNER_PASSWORD", naming::SECRET_DB_OWNER, "password"),
            secret_env("DFR_DB_APP_USER", naming::SECRET_DB_APP, "username"),
            secret_env("DFR_DB_APP_PASSWORD", naming::SECRET_DB_APP, "password"),
            value_env("PGHOST", SOCKET_DIR),
        ])
        .map(|mut env| {
            env.extend(role_certificate_env());
            // archive_command and the restore of a bootstrap run pgBackRest in this container.
            env.extend(backup::repository_env(
                tenant,
                backup::Process::Member,
                &format!("{}/{}", backup::CONFIG_DIR, MEMBER_CONFIG_KEY),
            ));
            env
        }),
        ports: Some(vec![
            ContainerPort {
                name: Some("postgresql".into()),
                container_port: naming::POSTGRES_PORT,
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("patroni".into()),
                container_port: naming::PATRONI_PORT,
                ..ContainerPort::default()
            },
        ]),
        // Readiness: serving as leader or as a replica that is streaming. Liveness only checks
        // that Patroni answers, so a slow recovery is not killed.
        readiness_probe: Some(patroni_probe("/readiness", 5, 3)),
        liveness_probe: Some(patroni_probe("/liveness", 10, 6)),
        resources: Some(resources(tenant)),
        security_context: Some(restricted_container()),
        volume_mounts: Some(vec![
            mount("data", "/var/lib/postgresql/data", false),
            mount("config", CONFIG_DIR, true),
            mount("tls", TLS_DIR, true),
            mount("client-tls", CLIENT_TLS_DIR, true),
            mount("run", SOCKET_DIR, false),
            mount("tmp", "/tmp", false),
        ])
        .map(|mut mounts| {
            if backup::has_repository(tenant) {
                mounts.extend(backup::repository_mounts(tenant, backup::Process::Member));
            }
            mounts
        }),
        ..Container::default()
    }
}

/// Which client certificate the replication and rewind connections present, and how they check
/// the server: against the tenant CA (`verify-ca`). Not `verify-full`: members connect to each
/// other by pod IP, which no certificate names, and the tenant CA issues only this tenant's own
/// server certificates, so a server that passes holds one of them.
fn role_certificate_env() -> Vec<k8s_openapi::api::core::v1::EnvVar> {
    ["REPLICATION", "REWIND"]
        .into_iter()
        .flat_map(|role| {
            let file = role.to_lowercase();
            [
                value_env(&format!("PATRONI_{role}_SSLMODE"), "verify-ca"),
                value_env(
                    &format!("PATRONI_{role}_SSLROOTCERT"),
                    format!("{TLS_DIR}/ca.crt"),
                ),
                value_env(
                    &format!("PATRONI_{role}_SSLCERT"),
                    format!("{CLIENT_TLS_DIR}/{file}.crt"),
                ),
                value_env(
                    &format!("PATRONI_{role}_SSLKEY"),
                    format!("{CLIENT_TLS_DIR}/{file}.key"),
                ),
            ]
        })
        .collect()
}

fn role_certificates_volume() -> Volume {
    let source = |secret: &str, file: &str| VolumeProjection {
        secret: Some(SecretProjection {
            name: secret.into(),
            items: Some(vec![
                KeyToPath {
                    key: "tls.crt".into(),
                    path: format!("{file}.crt"),
                    mode: None,
                },
                KeyToPath {
                    key: "tls.key".into(),
                    path: format!("{file}.key"),
                    mode: None,
                },
            ]),
            optional: None,
        }),
        ..VolumeProjection::default()
    };
    Volume {
        name: "client-tls".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                source(naming::SECRET_REPLICATION_TLS, "replication"),
                source(naming::SECRET_REWIND_TLS, "rewind"),
            ]),
            // libpq refuses a key others can read; group-readable via fsGroup.
            default_mode: Some(0o440),
        }),
        ..Volume::default()
    }
}

/// What the exporter beside each member asks for: it answers one scrape every 30 s.
pub const EXPORTER_RESOURCES: backup::Resources = backup::Resources {
    cpu_request: "10m",
    memory_request: "32Mi",
    cpu_limit: "200m",
    // Generous: an exporter killed for memory would take its member out of the Services while it
    // restarts (a container that is not running is not ready).
    memory_limit: "128Mi",
};

/// prometheus-postgres-exporter (Debian's, in the PostgreSQL image) beside each member, on port
/// 9187. It logs in as the monitoring role over the member's own socket, by peer: it holds no
/// password, and the role has no network login. It reads its own member (leader or replica);
/// the PodMonitor `postgres-exporter` scrapes it.
fn exporter_container(tenant: &Tenant, settings: &Settings) -> Container {
    Container {
        name: "exporter".into(),
        image: Some(settings.postgres_image_for(tenant.spec.postgres.version)),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        command: Some(vec![
            "prometheus-postgres-exporter".into(),
            format!("--web.listen-address=:{}", naming::EXPORTER_PORT),
            "--log.level=warn".into(),
        ]),
        env: Some(vec![value_env(
            "DATA_SOURCE_NAME",
            format!(
                "host={SOCKET_DIR} port={} user={} dbname=postgres sslmode=disable",
                naming::POSTGRES_PORT,
                naming::MONITOR_USER
            ),
        )]),
        ports: Some(vec![ContainerPort {
            name: Some("exporter".into()),
            container_port: naming::EXPORTER_PORT,
            ..ContainerPort::default()
        }]),
        // No readiness probe: a member must not leave its Services because its exporter cannot
        // log in (the role is made on the leader after the first start).
        resources: Some(EXPORTER_RESOURCES.requirements()),
        security_context: Some(restricted_container()),
        volume_mounts: Some(vec![mount("run", SOCKET_DIR, true)]),
        ..Container::default()
    }
}

fn volumes(tenant: &Tenant) -> Vec<Volume> {
    let empty = |name: &str| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    };
    vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: naming::POSTGRES_CONFIG.into(),
                // The post-bootstrap script must be executable.
                default_mode: Some(0o555),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(naming::SECRET_POSTGRES_TLS.into()),
                // PostgreSQL refuses a key readable by others; group-readable via fsGroup.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        role_certificates_volume(),
        empty("run"),
        empty("tmp"),
    ]
    .into_iter()
    .chain(if backup::has_repository(tenant) {
        backup::repository_volumes(tenant, backup::Process::Member)
    } else {
        Vec::new()
    })
    .collect()
}

fn data_claim(tenant: &Tenant) -> PersistentVolumeClaim {
    let storage = &tenant.spec.postgres.storage;
    crate::children::pod::claim_template(
        "data",
        metadata_labels(tenant),
        &storage.size,
        storage.storage_class_name.clone(),
    )
}

/// The members' labels: the StatefulSet's, plus the scope label Patroni selects members by.
fn pod_labels(tenant: &Tenant) -> BTreeMap<String, String> {
    let mut labels = metadata_labels(tenant);
    labels.insert(
        crate::labels::PATRONI_SCOPE.to_string(),
        naming::POSTGRES.to_string(),
    );
    labels
}

pub fn desired_statefulset(tenant: &Tenant, settings: &Settings) -> StatefulSet {
    StatefulSet {
        metadata: child_meta(tenant, naming::POSTGRES, metadata_labels(tenant)),
        spec: Some(StatefulSetSpec {
            replicas: Some(tenant.spec.postgres.instances),
            service_name: Some(naming::POSTGRES_HEADLESS.into()),
            // Patroni, not the StatefulSet, decides who leads: members may start together.
            pod_management_policy: Some("Parallel".into()),
            // The operator replaces members itself, replicas first and the leader after one
            // switchover, inside the maintenance window (crate::maintenance).
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(selector(tenant)),
                ..LabelSelector::default()
            },
            persistent_volume_claim_retention_policy: Some(crate::children::pod::retained_claims()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels(tenant)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(naming::POSTGRES_SERVICE_ACCOUNT.into()),
                    automount_service_account_token: Some(true),
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(restricted_pod(POSTGRES_UID)),
                    // Preferred, not required: a one-node cluster must still run two members.
                    affinity: Some(Affinity {
                        pod_anti_affinity: Some(PodAntiAffinity {
                            preferred_during_scheduling_ignored_during_execution: Some(vec![
                                WeightedPodAffinityTerm {
                                    weight: 100,
                                    pod_affinity_term: PodAffinityTerm {
                                        label_selector: Some(LabelSelector {
                                            match_labels: Some(selector(tenant)),
                                            ..LabelSelector::default()
                                        }),
                                        topology_key: "kubernetes.io/hostname".into(),
                                        ..PodAffinityTerm::default()
                                    },
                                },
                            ]),
                            ..PodAntiAffinity::default()
                        }),
                        ..Affinity::default()
                    }),
                    containers: [
                        container(tenant, settings),
                        exporter_container(tenant, settings),
                    ]
                    .into_iter()
                    .chain(
                        backup::has_repository(tenant)
                            .then(|| backup::server_container(tenant, settings)),
                    )
                    .collect(),
                    volumes: Some(volumes(tenant)),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![data_claim(tenant)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// At most one member down by choice; none for a single member, which would block node drains
/// forever.
pub fn desired_pdb(tenant: &Tenant) -> Option<PodDisruptionBudget> {
    (tenant.spec.postgres.instances >= 2).then(|| {
        let labels = metadata_labels(tenant);
        disruption_budget(
            tenant,
            naming::POSTGRES,
            labels,
            selector(tenant),
            Budget::MaxUnavailable(1),
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::tests::sample;

    #[test]
    fn members_follow_the_spec() {
        let tenant = sample("ton-prod.yaml");
        let sts = desired_statefulset(&tenant, &Settings::default());
        let spec = sts.spec.unwrap();
        assert_eq!(spec.replicas, Some(3));
        let claim = &spec.volume_claim_templates.unwrap()[0];
        let size = &claim
            .spec
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"];
        assert_eq!(size.0, "50Gi");
        let container = &spec.template.spec.unwrap().containers[0];
        assert_eq!(container.image.as_deref(), Some("dfr-postgres:15"));
        assert_eq!(
            container
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["cpu"]
                .0,
            "500m"
        );
    }

    #[test]
    fn patroni_finds_the_members_by_its_labels_and_scope_label() {
        let tenant = sample("ton-dev.yaml");
        let statefulset = desired_statefulset(&tenant, &Settings::default());
        let pod_labels = statefulset
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .labels
            .unwrap();
        let patroni = super::super::patroni_config(&tenant);
        for (key, value) in &patroni.kubernetes.labels {
            assert_eq!(pod_labels.get(key), Some(value), "label {key}");
        }
        assert_eq!(
            pod_labels.get(&patroni.kubernetes.scope_label),
            Some(&patroni.scope)
        );
    }

    #[test]
    fn pods_meet_the_restricted_pod_security_standard() {
        let spec = desired_statefulset(&sample("ton-dev.yaml"), &Settings::default())
            .spec
            .unwrap();
        let pod = spec.template.spec.unwrap();
        let pod_security = pod.security_context.unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(
            pod_security.seccomp_profile.unwrap().type_,
            "RuntimeDefault"
        );
        let container = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(container.allow_privilege_escalation, Some(false));
        assert_eq!(container.read_only_root_filesystem, Some(true));
        assert_eq!(container.capabilities.unwrap().drop.unwrap(), ["ALL"]);
    }

    #[test]
    fn probes_ask_patroni_over_tls() {
        let spec = desired_statefulset(&sample("ton-dev.yaml"), &Settings::default())
            .spec
            .unwrap();
        let container = &spec.template.spec.unwrap().containers[0];
        let readiness = container
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(readiness.path.as_deref(), Some("/readiness"));
        assert_eq!(readiness.scheme.as_deref(), Some("HTTPS"));
        assert_eq!(readiness.port, IntOrString::Int(8008));
        let env: Vec<&str> = container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert!(
            env.contains(&"PATRONI_SUPERUSER_PASSWORD")
                && env.contains(&"PATRONI_KUBERNETES_POD_IP")
        );
    }

    #[test]
    fn the_exporter_reads_its_member_over_the_socket_without_a_password() {
        let spec = desired_statefulset(&sample("ton-dev.yaml"), &Settings::default())
            .spec
            .unwrap();
        let pod = spec.template.spec.unwrap();
        let exporter = pod
            .containers
            .iter()
            .find(|c| c.name == "exporter")
            .unwrap();
        let port = &exporter.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.container_port),
            (Some("exporter"), 9187)
        );
        let env = exporter.env.as_ref().unwrap();
        assert_eq!(env.len(), 1, "a DSN and nothing else: {env:?}");
        let dsn = env[0].value.as_deref().unwrap();
        assert!(dsn.contains("host=/var/run/postgresql"), "{dsn}");
        assert!(dsn.contains("user=dfr_monitor"), "{dsn}");
        assert!(!dsn.contains("password"), "{dsn}");
        let mounts = exporter.volume_mounts.as_ref().unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].read_only, Some(true));
        assert!(exporter.readiness_probe.is_none());
        assert_eq!(
            exporter
                .security_context
                .as_ref()
                .unwrap()
                .read_only_root_filesystem,
            Some(true)
        );
    }

    #[test]
    fn a_single_member_gets_no_disruption_budget() {
        let mut tenant = sample("ton-dev.yaml");
        tenant.spec.postgres.instances = 1;
        assert!(desired_pdb(&tenant).is_none());
        tenant.spec.postgres.instances = 2;
        let pdb = desired_pdb(&tenant).unwrap();
        assert_eq!(pdb.spec.unwrap().max_unavailable, Some(IntOrString::Int(1)));
    }
}
