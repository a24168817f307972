//! Backups with pgBackRest: the repository's configuration and programs (one ConfigMap), the
//! members' additions (WAL archiving through Patroni, a pgBackRest TLS server beside
//! PostgreSQL, the repository's secrets in their environment), and the backup Jobs: scheduled by
//! a CronJob, started by hand from it, or started by the operator (the first backup, and the
//! expiry the GFS retention decides).
//!
//! The repository is on S3, which every process reaches itself, or on a volume held by a
//! repository host (see [`repository_host`]).

pub mod pgbackrest;
pub mod repository_host;
pub mod scripts;

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, KeyToPath, PodSpec,
    PodTemplateSpec, SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::children::child_meta;
use crate::children::patroni::{POSTGRES_UID, TLS_DIR};
use crate::children::pod::{
    database_tls_volume, empty_dir, mount, restricted_container, restricted_pod, value_env,
};
use crate::settings::Settings;
use crate::tenant::Tenant;
use crate::{labels, naming};

pub use pgbackrest::{CONFIG_DIR, REPOSITORY_CA_DIR, STANZA};

/// Component label value of the backup Jobs and their configuration.
pub const COMPONENT: &str = "backup";
/// The backup pods' `app.kubernetes.io/name`. Not `postgres`: the members' StatefulSet,
/// Services and PodDisruptionBudget select by that name, and must never count a Job's pod.
pub const APP_NAME: &str = "postgres-backup";
/// The label that tells backup runs from expiry runs on Jobs and their pods.
pub const RUN_LABEL: &str = "dfr.io/backup-run";
pub const RUN_BACKUP: &str = "backup";
pub const RUN_EXPIRE: &str = "expire";
pub const RUN_CHECK: &str = "check";
pub const RUN_VERIFY: &str = "verify";
/// The CronJob that restores the newest backup and checks it.
pub const RESTORE_CHECK_CRON_JOB: &str = "postgres-restore-check";
/// The CronJob that checks WAL archiving between backups.
pub const ARCHIVE_CHECK_CRON_JOB: &str = "postgres-archive-check";
/// How often archiving is checked: the longest a stalled archive goes unreported.
pub const ARCHIVE_CHECK_SCHEDULE: &str = "*/5 * * * *";
/// Name of the tenant's first backup, started by the operator once the database is up.
pub const INITIAL_JOB: &str = "postgres-backup-initial";
/// How long a finished Job (and the report its pod holds) stays for the operator to read.
const FINISHED_JOB_TTL_SECONDS: i32 = 7 * 24 * 3600;
/// A backup that has not finished in this time is stopped and reported failed.
const BACKUP_DEADLINE_SECONDS: i64 = 12 * 3600;

/// What the pgBackRest TLS server beside each member asks for: it only streams files.
pub const SERVER_RESOURCES: Resources = Resources {
    cpu_request: "50m",
    memory_request: "64Mi",
    cpu_limit: "500m",
    memory_limit: "256Mi",
};
/// What one backup, expiry or check run asks for (process-max 2, zstd).
pub const RUN_RESOURCES: Resources = Resources {
    cpu_request: "100m",
    memory_request: "128Mi",
    cpu_limit: "1",
    memory_limit: "512Mi",
};
/// Runs that may overlap: a backup, an archiving check and a restore check.
pub const CONCURRENT_RUNS: u32 = 3;

/// Requests and limits of one container.
#[derive(Clone, Copy, Debug)]
pub struct Resources {
    pub cpu_request: &'static str,
    pub memory_request: &'static str,
    pub cpu_limit: &'static str,
    pub memory_limit: &'static str,
}

impl Resources {
    pub fn requirements(self) -> k8s_openapi::api::core::v1::ResourceRequirements {
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let pair = |cpu: &str, memory: &str| {
            BTreeMap::from([
                ("cpu".to_string(), Quantity(cpu.into())),
                ("memory".to_string(), Quantity(memory.into())),
            ])
        };
        k8s_openapi::api::core::v1::ResourceRequirements {
            requests: Some(pair(self.cpu_request, self.memory_request)),
            limits: Some(pair(self.cpu_limit, self.memory_limit)),
            ..Default::default()
        }
    }
}

/// Which pgBackRest process a pod runs: it decides whether the pod holds the repository (and so
/// its secrets) itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    /// A member: PostgreSQL's archiving and restores, and the TLS server backups reach.
    Member,
    /// The repository host of a volume repository.
    RepositoryHost,
    /// A backup, expiry, check or restore-check run.
    Run,
}

impl Process {
    /// Whether this process opens the repository itself: every process for S3; for a volume
    /// only the repository host and the runs on its volume, so the members of a volume-backed
    /// tenant never hold the passphrase.
    fn holds_repository(self, tenant: &Tenant) -> bool {
        self != Process::Member || !is_volume(tenant)
    }
}

/// The repository's keys in the environment of every pgBackRest process (pgBackRest reads
/// PGBACKREST_<OPTION>). Optional references: a missing Secret must not stop PostgreSQL from
/// starting; the backup then fails and the operator names the missing Secret.
pub fn repository_env(tenant: &Tenant, process: Process, config_file: &str) -> Vec<EnvVar> {
    let Some(backup) = tenant.spec.backup.as_ref() else {
        return Vec::new();
    };
    if !process.holds_repository(tenant) {
        return vec![value_env("PGBACKREST_CONFIG", config_file)];
    }
    let optional_secret = |name: &str, secret: &str, key: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(true),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let mut env = vec![
        value_env("PGBACKREST_CONFIG", config_file),
        optional_secret(
            "PGBACKREST_REPO1_CIPHER_PASS",
            &backup.encryption_key_secret_ref.name,
            &backup.encryption_key_secret_ref.key,
        ),
    ];
    if let Some(s3) = &backup.destination.s3 {
        env.push(optional_secret(
            "PGBACKREST_REPO1_S3_KEY",
            &s3.credentials_secret_ref.name,
            "accessKeyId",
        ));
        env.push(optional_secret(
            "PGBACKREST_REPO1_S3_KEY_SECRET",
            &s3.credentials_secret_ref.name,
            "secretAccessKey",
        ));
    }
    env
}

/// Whether the tenant has a repository (spec.backup is set; S3 or a volume).
pub fn has_repository(tenant: &Tenant) -> bool {
    tenant.spec.backup.is_some()
}

/// Whether the repository is on a volume, held by the repository host.
pub fn is_volume(tenant: &Tenant) -> bool {
    tenant
        .spec
        .backup
        .as_ref()
        .is_some_and(|backup| backup.destination.volume.is_some())
}

/// Whether the repository is on S3, where other tenants' restores can read it too.
pub fn has_s3_repository_spec(spec: &dfr_crds::DfrCountrySpec) -> bool {
    spec.backup
        .as_ref()
        .is_some_and(|backup| backup.destination.s3.is_some())
}

/// The volumes pgBackRest needs in a pod: its configuration, the repository's secrets where the
/// process holds the repository, and the S3 CA.
pub fn repository_volumes(tenant: &Tenant, process: Process) -> Vec<Volume> {
    let mut volumes = Vec::new();
    if process.holds_repository(tenant) {
        volumes.push(secrets_volume(tenant));
    }
    volumes.extend([Volume {
        name: "pgbackrest".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: naming::POSTGRES_BACKUP_CONFIG.into(),
            default_mode: Some(0o555),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }]);
    if let Some(ca) = tenant
        .spec
        .backup
        .as_ref()
        .and_then(|backup| backup.destination.s3.as_ref())
        .and_then(|s3| s3.ca_secret_ref.as_ref())
    {
        volumes.push(Volume {
            name: "repository-ca".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(ca.name.clone()),
                items: Some(vec![KeyToPath {
                    key: "ca.crt".into(),
                    path: "ca.crt".into(),
                    ..KeyToPath::default()
                }]),
                optional: Some(true),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    volumes
}

/// The repository's secrets as files, for [`scripts::WRAPPER`]. Optional sources: a pod starts
/// without them, and the kubelet adds them when the Secrets appear or change.
fn secrets_volume(tenant: &Tenant) -> Volume {
    use k8s_openapi::api::core::v1::{ProjectedVolumeSource, SecretProjection, VolumeProjection};
    let project = |secret: &str, items: Vec<(&str, &str)>| VolumeProjection {
        secret: Some(SecretProjection {
            name: secret.into(),
            items: Some(
                items
                    .into_iter()
                    .map(|(key, path)| KeyToPath {
                        key: key.into(),
                        path: path.into(),
                        ..KeyToPath::default()
                    })
                    .collect(),
            ),
            optional: Some(true),
        }),
        ..VolumeProjection::default()
    };
    let mut sources = Vec::new();
    if let Some(backup) = tenant.spec.backup.as_ref() {
        let key = &backup.encryption_key_secret_ref;
        sources.push(project(&key.name, vec![(&key.key, "cipher-pass")]));
        if let Some(s3) = &backup.destination.s3 {
            sources.push(project(
                &s3.credentials_secret_ref.name,
                vec![
                    ("accessKeyId", "s3-key"),
                    ("secretAccessKey", "s3-key-secret"),
                ],
            ));
        }
    }
    Volume {
        name: "repository-secrets".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            default_mode: Some(0o440),
        }),
        ..Volume::default()
    }
}

pub fn repository_mounts(tenant: &Tenant, process: Process) -> Vec<VolumeMount> {
    let mut mounts = vec![mount("pgbackrest", CONFIG_DIR, true)];
    if process.holds_repository(tenant) {
        mounts.push(mount("repository-secrets", scripts::SECRETS_DIR, true));
    }
    if tenant
        .spec
        .backup
        .as_ref()
        .and_then(|backup| backup.destination.s3.as_ref())
        .is_some_and(|s3| s3.ca_secret_ref.is_some())
    {
        mounts.push(mount("repository-ca", REPOSITORY_CA_DIR, true));
    }
    mounts
}

/// The members' pgBackRest TLS server: how backup Jobs reach a member's data directory.
pub fn server_container(tenant: &Tenant, settings: &Settings) -> Container {
    let mut env = repository_env(
        tenant,
        Process::Member,
        &format!("{CONFIG_DIR}/{}", pgbackrest::MEMBER_CONFIG_KEY),
    );
    env.push(crate::children::pod::secret_env(
        "PGPASSWORD",
        naming::SECRET_POSTGRES_SUPERUSER,
        "password",
    ));
    let mut mounts = vec![
        mount("data", "/var/lib/postgresql/data", false),
        mount("tls", TLS_DIR, true),
        mount("run", crate::children::patroni::SOCKET_DIR, false),
        mount("tmp", "/tmp", false),
    ];
    mounts.extend(repository_mounts(tenant, Process::Member));
    Container {
        name: "pgbackrest".into(),
        image: Some(settings.postgres_image_for(tenant.spec.postgres.version)),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        command: Some(vec!["pgbackrest".into(), "server".into()]),
        env: Some(env),
        ports: Some(vec![k8s_openapi::api::core::v1::ContainerPort {
            name: Some("pgbackrest".into()),
            container_port: pgbackrest::SERVER_PORT,
            ..Default::default()
        }]),
        resources: Some(SERVER_RESOURCES.requirements()),
        security_context: Some(restricted_container()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

pub fn desired_config_map(tenant: &Tenant, settings: &Settings) -> Option<ConfigMap> {
    let member = pgbackrest::member_conf(tenant, settings)?;
    let job = pgbackrest::job_conf(tenant, settings)?;
    let repository_host = pgbackrest::repository_host_conf(tenant)
        .map(|conf| {
            [
                (pgbackrest::REPOSITORY_HOST_CONFIG_KEY.to_string(), conf),
                (
                    scripts::REPOSITORY_HOST_KEY.to_string(),
                    scripts::REPOSITORY_HOST.to_string(),
                ),
            ]
        })
        .into_iter()
        .flatten();
    Some(ConfigMap {
        metadata: child_meta(
            tenant,
            naming::POSTGRES_BACKUP_CONFIG,
            labels::component(tenant, APP_NAME, COMPONENT),
        ),
        data: Some(
            BTreeMap::from([
                (pgbackrest::MEMBER_CONFIG_KEY.to_string(), member),
                (pgbackrest::JOB_CONFIG_KEY.to_string(), job),
                (
                    scripts::WRAPPER_KEY.to_string(),
                    scripts::WRAPPER.to_string(),
                ),
                (
                    scripts::BACKUP_KEY.to_string(),
                    scripts::program(scripts::BACKUP_PY),
                ),
                (
                    scripts::EXPIRE_KEY.to_string(),
                    scripts::program(scripts::EXPIRE_PY),
                ),
                (
                    scripts::CHECK_KEY.to_string(),
                    scripts::program(scripts::CHECK_PY),
                ),
                (
                    scripts::VERIFY_KEY.to_string(),
                    scripts::program(scripts::VERIFY_PY),
                ),
            ])
            .into_iter()
            .chain(repository_host)
            .collect(),
        ),
        ..ConfigMap::default()
    })
}

fn run_labels(tenant: &Tenant, run: &str) -> BTreeMap<String, String> {
    let mut labels = labels::component(tenant, APP_NAME, COMPONENT);
    labels.insert(RUN_LABEL.into(), run.into());
    labels
}

/// The pod of a backup or expiry run: the PostgreSQL image with the tenant's pgBackRest job
/// configuration, the database's certificate to reach the members' TLS servers, no
/// Kubernetes credentials.
fn run_pod(tenant: &Tenant, settings: &Settings, run: &str, args: Vec<String>) -> PodTemplateSpec {
    let script = match run {
        RUN_EXPIRE => scripts::EXPIRE_KEY,
        RUN_CHECK => scripts::CHECK_KEY,
        RUN_VERIFY => scripts::VERIFY_KEY,
        _ => scripts::BACKUP_KEY,
    };
    let mut env = repository_env(
        tenant,
        Process::Run,
        &format!("{CONFIG_DIR}/{}", pgbackrest::JOB_CONFIG_KEY),
    );
    env.push(value_env(
        "DFR_PATRONI_HOST",
        naming::cluster_dns(
            naming::POSTGRES_HEADLESS,
            &tenant.namespace,
            &settings.cluster_domain,
        ),
    ));
    let mut mounts = vec![mount("tls", TLS_DIR, true), mount("tmp", "/tmp", false)];
    mounts.extend(repository_mounts(tenant, Process::Run));
    let mut volumes = vec![database_tls_volume(), empty_dir("tmp")];
    volumes.extend(repository_volumes(tenant, Process::Run));
    // A volume repository is opened where it is: on the repository host's node, from its volume.
    let affinity = is_volume(tenant).then(|| {
        volumes.push(repository_host::claim_volume());
        mounts.push(mount(
            repository_host::VOLUME,
            pgbackrest::REPOSITORY_VOLUME_DIR,
            false,
        ));
        repository_host::beside_the_host(tenant)
    });
    let mut command = vec!["python3".to_string(), format!("{CONFIG_DIR}/{script}")];
    command.extend(args);
    // A restore check restores into a volume of its own and verifies the audit chain with the
    // registry's own verifier, copied from the API image of the tenant's version.
    let mut init_containers = Vec::new();
    if run == RUN_VERIFY {
        volumes.push(empty_dir("restore"));
        volumes.push(empty_dir("verifier"));
        mounts.push(mount("restore", "/restore", false));
        mounts.push(mount("verifier", "/verifier", true));
        init_containers.push(Container {
            name: "verifier".into(),
            image: Some(format!(
                "{}:{}",
                settings.api_image_repository, tenant.spec.app_version
            )),
            image_pull_policy: Some(settings.image_pull_policy.clone()),
            command: Some(vec![
                "cp".into(),
                "/usr/local/bin/dfr-api".into(),
                scripts::VERIFIER.into(),
            ]),
            resources: Some(SERVER_RESOURCES.requirements()),
            security_context: Some(restricted_container()),
            volume_mounts: Some(vec![mount("verifier", "/verifier", false)]),
            ..Container::default()
        });
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(run_labels(tenant, run)),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            security_context: Some(restricted_pod(POSTGRES_UID)),
            init_containers: (!init_containers.is_empty()).then_some(init_containers),
            affinity,
            containers: vec![Container {
                name: run.into(),
                image: Some(settings.postgres_image_for(tenant.spec.postgres.version)),
                image_pull_policy: Some(settings.image_pull_policy.clone()),
                command: Some(command),
                env: Some(env),
                resources: Some(RUN_RESOURCES.requirements()),
                security_context: Some(restricted_container()),
                volume_mounts: Some(mounts),
                // The report is the termination message; a crash before it leaves the log's
                // tail there instead.
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                ..Container::default()
            }],
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
    }
}

fn job_spec(tenant: &Tenant, settings: &Settings, run: &str, args: Vec<String>) -> JobSpec {
    JobSpec {
        // A failed backup is reported, not retried at once: the next run is the schedule's.
        backoff_limit: Some(0),
        active_deadline_seconds: Some(BACKUP_DEADLINE_SECONDS),
        ttl_seconds_after_finished: Some(FINISHED_JOB_TTL_SECONDS),
        template: run_pod(tenant, settings, run, args),
        ..JobSpec::default()
    }
}

fn cron_job(
    tenant: &Tenant,
    settings: &Settings,
    name: &str,
    schedule: &str,
    run: &str,
    history: i32,
) -> CronJob {
    let labels = run_labels(tenant, run);
    CronJob {
        metadata: child_meta(tenant, name, labels.clone()),
        spec: Some(CronJobSpec {
            schedule: schedule.trim().to_string(),
            time_zone: Some("Etc/UTC".into()),
            // One run at a time; pgBackRest would refuse a second backup anyway.
            concurrency_policy: Some("Forbid".into()),
            starting_deadline_seconds: Some(3600),
            successful_jobs_history_limit: Some(history),
            failed_jobs_history_limit: Some(history),
            suspend: Some(tenant.spec.suspend),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(job_spec(tenant, settings, run, Vec::new())),
            },
        }),
        ..CronJob::default()
    }
}

/// The scheduled backups (spec.backup.schedule) and the archiving check.
pub fn desired_cron_jobs(tenant: &Tenant, settings: &Settings) -> Vec<CronJob> {
    let Some(backup) = tenant.spec.backup.as_ref() else {
        return Vec::new();
    };
    vec![
        cron_job(
            tenant,
            settings,
            naming::POSTGRES_BACKUP,
            &backup.schedule,
            RUN_BACKUP,
            3,
        ),
        cron_job(
            tenant,
            settings,
            ARCHIVE_CHECK_CRON_JOB,
            ARCHIVE_CHECK_SCHEDULE,
            RUN_CHECK,
            1,
        ),
        cron_job(
            tenant,
            settings,
            RESTORE_CHECK_CRON_JOB,
            &backup.restore_check_schedule,
            RUN_VERIFY,
            2,
        ),
    ]
}

/// A Job the operator starts: the first backup, or an expiry of the sets in `labels`.
pub fn operator_job(
    tenant: &Tenant,
    settings: &Settings,
    name: &str,
    run: &str,
    args: Vec<String>,
) -> Job {
    Job {
        metadata: child_meta(tenant, name, run_labels(tenant, run)),
        spec: Some(job_spec(tenant, settings, run, args)),
        ..Job::default()
    }
}

/// The label that ties a Job and its pod to the DfrBackup it runs.
pub const REQUEST_LABEL: &str = "dfr.io/backup-request";

/// The Job of a DfrBackup: a backup run of the type it asks for, deleted with it.
pub fn request_job(tenant: &Tenant, settings: &Settings, request: &dfr_crds::DfrBackup) -> Job {
    use kube::{Resource, ResourceExt};
    let name = request_job_name(&request.name_any());
    let mut job = operator_job(
        tenant,
        settings,
        &name,
        RUN_BACKUP,
        vec![request.spec.r#type.as_str().to_string()],
    );
    let request_name = request.name_any();
    for labels in [
        job.metadata.labels.as_mut(),
        job.spec
            .as_mut()
            .and_then(|spec| spec.template.metadata.as_mut())
            .and_then(|meta| meta.labels.as_mut()),
    ]
    .into_iter()
    .flatten()
    {
        labels.insert(REQUEST_LABEL.into(), request_name.clone());
    }
    // Owned by the DfrBackup (not as its controller: the tenant's reconcile runs it), so deleting
    // the DfrBackup deletes the Job; the backup set stays in the repository.
    if let Some(mut owner) = request.controller_owner_ref(&()) {
        owner.controller = None;
        owner.block_owner_deletion = None;
        job.metadata.owner_references = Some(vec![owner]);
    }
    job
}

/// `dfrbackup-<name>`, cut to the 63 characters a Job name (and its pods' label) may have.
pub fn request_job_name(request: &str) -> String {
    let mut name = format!("dfrbackup-{request}");
    name.truncate(63);
    name.trim_end_matches(['-', '.']).to_string()
}

/// The name of the Job that expires exactly `labels`: the same set gives the same name, so a
/// second reconcile before the first Job is seen does not start another.
pub fn expire_job_name(labels: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for label in labels {
        hasher.update(label.as_bytes());
        hasher.update(b"\n");
    }
    let digest = hasher.finalize();
    let short: String = digest
        .iter()
        .take(5)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("postgres-expire-{short}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::tests::sample;

    fn with_s3(mut tenant: Tenant) -> Tenant {
        let backup: dfr_crds::BackupSpec = serde_json::from_value(serde_json::json!({
            "schedule": "*/5 * * * *",
            "destination": {"s3": {
                "endpoint": "https://10.234.0.1:9000", "bucket": "dfr-backups",
                "region": "us-east-1", "credentialsSecretRef": {"name": "s3"},
                "caSecretRef": {"name": "s3-ca"}}},
            "encryptionKeySecretRef": {"name": "backup-key", "key": "passphrase"}
        }))
        .unwrap();
        tenant.spec.backup = Some(backup);
        tenant
    }

    #[test]
    fn a_tenant_without_an_s3_repository_gets_no_backup_objects() {
        let mut tenant = sample("ton-dev.yaml");
        tenant.spec.backup = None;
        assert!(desired_cron_jobs(&tenant, &Settings::default()).is_empty());
        assert!(desired_config_map(&tenant, &Settings::default()).is_none());
        assert!(repository_env(&tenant, Process::Member, "x").is_empty());
    }

    #[test]
    fn the_schedule_runs_one_backup_at_a_time_in_utc() {
        let tenant = with_s3(sample("ton-dev.yaml"));
        let cron = desired_cron_jobs(&tenant, &Settings::default()).remove(0);
        let spec = cron.spec.unwrap();
        assert_eq!(spec.schedule, "*/5 * * * *");
        assert_eq!(spec.time_zone.as_deref(), Some("Etc/UTC"));
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
        let pod = spec.job_template.spec.unwrap().template;
        let labels = pod.metadata.unwrap().labels.unwrap();
        assert_eq!(labels[RUN_LABEL], RUN_BACKUP);
        assert_eq!(labels[labels::TENANT], tenant.name);
        let pod = pod.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let container = &pod.containers[0];
        assert_eq!(
            container.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        let env: Vec<&str> = container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        for name in [
            "PGBACKREST_REPO1_CIPHER_PASS",
            "PGBACKREST_REPO1_S3_KEY",
            "PGBACKREST_REPO1_S3_KEY_SECRET",
        ] {
            assert!(env.contains(&name), "{name} in {env:?}");
        }
    }

    #[test]
    fn the_repository_is_encrypted_and_its_secrets_stay_out_of_the_config_map() {
        let tenant = with_s3(sample("ton-dev.yaml"));
        let config = desired_config_map(&tenant, &Settings::default()).unwrap();
        let data = config.data.unwrap();
        for key in [pgbackrest::MEMBER_CONFIG_KEY, pgbackrest::JOB_CONFIG_KEY] {
            let conf = &data[key];
            assert!(conf.contains("repo1-cipher-type=aes-256-cbc"), "{conf}");
            assert!(conf.contains("repo1-s3-port=9000"), "{conf}");
            assert!(conf.contains("repo1-path=/dfr/ton-dev"), "{conf}");
            assert!(
                conf.contains("repo1-storage-ca-file=/etc/pgbackrest-ca/ca.crt"),
                "{conf}"
            );
            assert!(!conf.contains("cipher-pass"), "{conf}");
            assert!(!conf.contains("s3-key"), "{conf}");
        }
        let member = &data[pgbackrest::MEMBER_CONFIG_KEY];
        assert!(member.contains("archive-push-queue-max=4GiB"));
        assert!(member.contains("tls-server-auth=postgres-rw=dfr"));
        let job = &data[pgbackrest::JOB_CONFIG_KEY];
        assert!(
            job.contains("pg2-host=postgres-1.postgres-headless.dfr-ton-dev.svc.cluster.local")
        );
        assert!(job.contains("pg1-host-type=tls"));
    }

    #[test]
    fn an_expiry_job_is_named_by_what_it_expires() {
        let a = expire_job_name(&["20261201-023000F".into()]);
        assert_eq!(a, expire_job_name(&["20261201-023000F".into()]));
        assert_ne!(a, expire_job_name(&["20261202-023000F".into()]));
        assert!(a.len() <= 63);
    }
}
