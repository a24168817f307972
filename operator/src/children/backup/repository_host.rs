//! The repository host of a volume repository, as Crunchy PGO runs one: a StatefulSet of one
//! pod holding the volume and serving the repository over pgBackRest's TLS server. A
//! ReadWriteOnce volume cannot follow the leader from node to node; the host stays put and the
//! members archive to it and restore from it, whoever leads.
//!
//! pgBackRest runs a backup only where the repository is local. The backup, expiry, check and
//! restore-check Jobs are therefore scheduled onto the host's node (required pod affinity) and
//! mount the same claim, which ReadWriteOnce allows for pods on one node; pgBackRest's locks
//! live on that volume, so the host's server and the Jobs exclude each other as processes of
//! one repository host do.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource,
    PodAffinity, PodAffinityTerm, PodSpec, PodTemplateSpec, Probe, Service, ServicePort,
    ServiceSpec, TCPSocketAction, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{COMPONENT, Process, SERVER_RESOURCES, pgbackrest, repository_env};
use crate::children::child_meta;
use crate::children::patroni::{POSTGRES_UID, TLS_DIR};
use crate::children::pod::{
    database_tls_volume, empty_dir, mount, restricted_container, restricted_pod, retained_claims,
};
use crate::settings::Settings;
use crate::tenant::Tenant;
use crate::{labels, naming};

/// The name of the repository volume in a pod that mounts it.
pub const VOLUME: &str = "repository";

fn host_labels(tenant: &Tenant) -> BTreeMap<String, String> {
    labels::component(tenant, naming::POSTGRES_REPOSITORY, COMPONENT)
}

/// The labels that select the repository host's pod.
pub fn selector(tenant: &Tenant) -> BTreeMap<String, String> {
    labels::selector(tenant, naming::POSTGRES_REPOSITORY)
}

/// The claim the StatefulSet makes for its only pod.
pub fn claim_name() -> String {
    format!(
        "{}-{}-0",
        naming::REPOSITORY_CLAIM_TEMPLATE,
        naming::POSTGRES_REPOSITORY
    )
}

/// The host's volume, for a Job that runs beside it.
pub fn claim_volume() -> Volume {
    Volume {
        name: VOLUME.into(),
        // No `readOnly: false`: the API server drops it, and the CronJobs would then differ
        // from their live objects on every reconcile.
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim_name(),
            read_only: None,
        }),
        ..Volume::default()
    }
}

/// Required affinity to the host's node: where its volume can be mounted.
pub fn beside_the_host(tenant: &Tenant) -> Affinity {
    Affinity {
        pod_affinity: Some(PodAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some(selector(tenant)),
                    ..LabelSelector::default()
                }),
                topology_key: "kubernetes.io/hostname".into(),
                ..PodAffinityTerm::default()
            }]),
            ..PodAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// The headless Service the members reach the host by; its name is in the database certificate.
pub fn desired_service(tenant: &Tenant) -> Option<Service> {
    super::is_volume(tenant).then(|| Service {
        metadata: child_meta(tenant, naming::POSTGRES_REPOSITORY, host_labels(tenant)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector(tenant)),
            ports: Some(vec![ServicePort {
                name: Some("pgbackrest".into()),
                port: pgbackrest::SERVER_PORT,
                target_port: Some(IntOrString::Int(pgbackrest::SERVER_PORT)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

fn repository_claim(tenant: &Tenant) -> Option<PersistentVolumeClaim> {
    let volume = tenant.spec.backup.as_ref()?.destination.volume.as_ref()?;
    Some(crate::children::pod::claim_template(
        naming::REPOSITORY_CLAIM_TEMPLATE,
        host_labels(tenant),
        &volume.size,
        volume.storage_class_name.clone(),
    ))
}

fn server(tenant: &Tenant, settings: &Settings) -> Container {
    let mut mounts = vec![
        mount(VOLUME, pgbackrest::REPOSITORY_VOLUME_DIR, false),
        mount("tls", TLS_DIR, true),
        mount("tmp", "/tmp", false),
    ];
    mounts.extend(super::repository_mounts(tenant, Process::RepositoryHost));
    let listening = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(pgbackrest::SERVER_PORT),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    };
    Container {
        name: "pgbackrest".into(),
        image: Some(settings.postgres_image_for(tenant.spec.postgres.version)),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        command: Some(vec![format!(
            "{}/{}",
            super::CONFIG_DIR,
            super::scripts::REPOSITORY_HOST_KEY
        )]),
        env: Some(repository_env(
            tenant,
            Process::RepositoryHost,
            &format!(
                "{}/{}",
                super::CONFIG_DIR,
                pgbackrest::REPOSITORY_HOST_CONFIG_KEY
            ),
        )),
        ports: Some(vec![ContainerPort {
            name: Some("pgbackrest".into()),
            container_port: pgbackrest::SERVER_PORT,
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(listening.clone()),
        liveness_probe: Some(Probe {
            failure_threshold: Some(6),
            ..listening
        }),
        resources: Some(SERVER_RESOURCES.requirements()),
        security_context: Some(restricted_container()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// The repository host, for a tenant whose repository is on a volume.
pub fn desired_statefulset(tenant: &Tenant, settings: &Settings) -> Option<StatefulSet> {
    let claim = repository_claim(tenant)?;
    let mut volumes = vec![database_tls_volume(), empty_dir("tmp")];
    volumes.extend(super::repository_volumes(tenant, Process::RepositoryHost));
    Some(StatefulSet {
        metadata: child_meta(tenant, naming::POSTGRES_REPOSITORY, host_labels(tenant)),
        spec: Some(StatefulSetSpec {
            replicas: Some(if tenant.spec.suspend { 0 } else { 1 }),
            service_name: Some(naming::POSTGRES_REPOSITORY.into()),
            selector: LabelSelector {
                match_labels: Some(selector(tenant)),
                ..LabelSelector::default()
            },
            persistent_volume_claim_retention_policy: Some(retained_claims()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(host_labels(tenant)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    security_context: Some(restricted_pod(POSTGRES_UID)),
                    containers: vec![server(tenant, settings)],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::backup::{RUN_BACKUP, operator_job};
    use crate::children::tests::sample;

    fn with_volume() -> Tenant {
        let mut tenant = sample("ton-dev.yaml");
        let backup: dfr_crds::BackupSpec = serde_json::from_value(serde_json::json!({
            "destination": {"volume": {"size": "20Gi", "storageClassName": "local"}},
            "encryptionKeySecretRef": {"name": "backup-key", "key": "passphrase"}
        }))
        .unwrap();
        tenant.spec.backup = Some(backup);
        tenant
    }

    #[test]
    fn an_s3_tenant_has_no_repository_host() {
        let mut tenant = with_volume();
        tenant.spec.backup.as_mut().unwrap().destination = serde_json::from_value(
            serde_json::json!({"s3": {"endpoint": "https://s3.example.org", "bucket": "b",
                "region": "r", "credentialsSecretRef": {"name": "s3"}}}),
        )
        .unwrap();
        assert!(desired_statefulset(&tenant, &Settings::default()).is_none());
        assert!(desired_service(&tenant).is_none());
    }

    #[test]
    fn the_host_keeps_the_repository_on_its_claim_and_serves_it_over_tls() {
        let tenant = with_volume();
        let sts = desired_statefulset(&tenant, &Settings::default()).unwrap();
        let spec = sts.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
        let claim_spec = claim.spec.as_ref().unwrap();
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("local"));
        assert_eq!(
            claim_spec
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"]
                .0,
            "20Gi"
        );
        assert_eq!(
            format!(
                "{}-{}-0",
                claim.metadata.name.as_deref().unwrap(),
                sts.metadata.name.as_deref().unwrap()
            ),
            claim_name()
        );
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let container = &pod.containers[0];
        let env: Vec<&str> = container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert!(env.contains(&"PGBACKREST_REPO1_CIPHER_PASS"), "{env:?}");
        assert!(
            container.command.as_ref().unwrap()[0].ends_with("repository-host.sh"),
            "{:?}",
            container.command
        );
        // Members' labels must never select the host: the Patroni Services and budget count them.
        assert_ne!(
            spec.template.metadata.unwrap().labels.unwrap()[labels::NAME],
            naming::POSTGRES
        );
    }

    #[test]
    fn runs_go_to_the_hosts_node_and_mount_its_claim() {
        let tenant = with_volume();
        let job = operator_job(&tenant, &Settings::default(), "x", RUN_BACKUP, Vec::new());
        let pod = job.spec.unwrap().template.spec.unwrap();
        let term = &pod
            .affinity
            .unwrap()
            .pod_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()[0];
        assert_eq!(term.topology_key, "kubernetes.io/hostname");
        assert_eq!(
            term.label_selector.as_ref().unwrap().match_labels.as_ref(),
            Some(&selector(&tenant))
        );
        let claim = pod
            .volumes
            .unwrap()
            .into_iter()
            .find_map(|v| v.persistent_volume_claim)
            .unwrap();
        assert_eq!(claim.claim_name, claim_name());
    }

    #[test]
    fn members_reach_the_host_and_never_hold_the_passphrase() {
        let tenant = with_volume();
        let settings = Settings::default();
        let member = pgbackrest::member_conf(&tenant, &settings).unwrap();
        assert!(
            member.contains("repo1-host=postgres-repo.dfr-ton-dev.svc.cluster.local"),
            "{member}"
        );
        assert!(member.contains("repo1-host-type=tls"), "{member}");
        assert!(!member.contains("repo1-cipher-type"), "{member}");
        assert!(!member.contains("repo1-path"), "{member}");
        let env = super::super::repository_env(&tenant, Process::Member, "x");
        assert!(env.iter().all(|e| e.name != "PGBACKREST_REPO1_CIPHER_PASS"));
        let host = pgbackrest::repository_host_conf(&tenant).unwrap();
        assert!(host.contains("repo1-type=posix"), "{host}");
        assert!(host.contains("repo1-cipher-type=aes-256-cbc"), "{host}");
        assert!(host.contains("tls-server-auth=postgres-rw=dfr"), "{host}");
        let job = pgbackrest::job_conf(&tenant, &settings).unwrap();
        assert!(job.contains("repo1-path=/pgbackrest/repository"), "{job}");
        assert!(job.contains("lock-path=/pgbackrest/lock"), "{job}");
        assert!(job.contains("pg1-host-type=tls"), "{job}");
    }
}
