//! The API pods. With autoscaling on there is no `replicas` field: the HorizontalPodAutoscaler
//! owns the count, and a server-side apply that set it would fight the autoscaler on every
//! reconcile. With it off the Deployment runs `api.minReplicas` pods.

use std::collections::BTreeMap;

use crate::tenant::Tenant;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction, KeyToPath, Lifecycle,
    LifecycleHandler, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SecretVolumeSource,
    SleepAction, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    REPLICAS_BY_AUTOSCALER, REPLICAS_BY_OPERATOR, REPLICAS_OWNER, metadata_labels, selector,
};
use crate::children::child_meta;
use crate::children::namespace::{DEFAULT_API_CPU, DEFAULT_API_MEMORY};
use crate::children::pod::{mount, restricted_container, restricted_pod, secret_env, value_env};
use crate::naming;
use crate::settings::Settings;

pub(super) const NONROOT_UID: i64 = 65532;
pub const JWT_KEY_FILE: &str = "/etc/dfr/jwt/private.pem";
pub const PII_KEYRING_FILE: &str = "/etc/dfr/pii/keyring.json";
pub const DATABASE_CA_FILE: &str = "/etc/dfr/tls/ca.crt";
const BOOTSTRAP_ADMIN_DIR: &str = "/etc/dfr/bootstrap-admin";
/// The API's own certificate and key (Secret dfr-api-tls), for HTTPS.
const API_TLS_DIR: &str = "/etc/dfr/api-tls";
const PRE_STOP_SECONDS: i64 = 5;
/// The pre-stop pause, the server's 20 s drain, and a margin before the kubelet's SIGKILL.
const TERMINATION_GRACE_SECONDS: i64 = 35;

/// Where the registry's database is and how to check its certificate, and the application
/// role's login (api-server/README.md).
pub(super) fn database_environment(tenant: &Tenant, settings: &Settings) -> Vec<EnvVar> {
    let namespace = tenant.namespace.clone();
    vec![
        value_env(
            "DFR_DATABASE_HOST",
            naming::cluster_dns(naming::POSTGRES_RW, &namespace, &settings.cluster_domain),
        ),
        value_env("DFR_DATABASE_PORT", naming::POSTGRES_PORT.to_string()),
        value_env("DFR_DATABASE_NAME", naming::DATABASE_NAME),
        secret_env("DFR_DATABASE_USER", naming::SECRET_DB_APP, "username"),
        secret_env("DFR_DATABASE_PASSWORD", naming::SECRET_DB_APP, "password"),
        value_env("DFR_DATABASE_SSLMODE", "verify-full"),
        value_env("DFR_DATABASE_SSLROOTCERT", DATABASE_CA_FILE),
        value_env("RUST_LOG", "info"),
    ]
}

/// The owner role's login: only the steps that change the schema or remove data get it
/// (migrations, retention), never the serving container.
pub(super) fn owner_environment() -> Vec<EnvVar> {
    vec![
        secret_env(
            "DFR_MIGRATION_DATABASE_USER",
            naming::SECRET_DB_OWNER,
            "username",
        ),
        secret_env(
            "DFR_MIGRATION_DATABASE_PASSWORD",
            naming::SECRET_DB_OWNER,
            "password",
        ),
    ]
}

/// The serving container's configuration (api-server/README.md): the database as the
/// application role, the keys, the first admin, the two listeners.
fn serving_environment(tenant: &Tenant, settings: &Settings) -> Vec<EnvVar> {
    let mut env = database_environment(tenant, settings);
    env.extend([
        value_env("DFR_LISTEN_ADDR", format!("0.0.0.0:{}", naming::API_PORT)),
        // HTTPS with the certificate the operator issues and renews; the server reads the files
        // again when the kubelet updates them, so a renewal needs no restart.
        value_env("DFR_TLS_CERT_FILE", format!("{API_TLS_DIR}/tls.crt")),
        value_env("DFR_TLS_KEY_FILE", format!("{API_TLS_DIR}/tls.key")),
        value_env(
            "DFR_METRICS_LISTEN_ADDR",
            format!("0.0.0.0:{}", naming::API_METRICS_PORT),
        ),
        value_env("DFR_JWT_SIGNING_KEY_FILE", JWT_KEY_FILE),
        value_env("DFR_PII_KEYRING_FILE", PII_KEYRING_FILE),
        // The first national admin, made at start when the registry has none; the API server
        // leaves an existing admin alone.
        secret_env(
            "DFR_BOOTSTRAP_ADMIN_USERNAME",
            naming::SECRET_API_BOOTSTRAP_ADMIN,
            "username",
        ),
        value_env(
            "DFR_BOOTSTRAP_ADMIN_PASSWORD_FILE",
            format!("{BOOTSTRAP_ADMIN_DIR}/password"),
        ),
        value_env(
            "DFR_BOOTSTRAP_ADMIN_TOTP_SECRET_FILE",
            format!("{BOOTSTRAP_ADMIN_DIR}/totp-secret"),
        ),
        value_env("DFR_COUNTRY_CODE", tenant.spec.country_code.clone()),
        value_env("DFR_ENVIRONMENT", tenant.spec.environment.as_str()),
    ]);
    env
}

/// `dfr-api migrate` as the owner role, before the server starts: the serving container never
/// holds the owner's password. It also seals TOTP secrets stored before they were encrypted,
/// so it reads the key ring.
fn migrate_container(tenant: &Tenant, settings: &Settings) -> Container {
    let mut env = database_environment(tenant, settings);
    env.extend(owner_environment());
    env.push(value_env("DFR_PII_KEYRING_FILE", PII_KEYRING_FILE));
    Container {
        name: "migrate".into(),
        image: Some(api_image(tenant, settings)),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        args: Some(vec!["migrate".into()]),
        env: Some(env),
        resources: Some(resources(tenant)),
        security_context: Some(restricted_container()),
        volume_mounts: Some(vec![
            mount("pii", "/etc/dfr/pii", true),
            mount("database-ca", "/etc/dfr/tls", true),
        ]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    }
}

pub(super) fn api_image(tenant: &Tenant, settings: &Settings) -> String {
    format!(
        "{}:{}",
        settings.api_image_repository, tenant.spec.app_version
    )
}

/// The tenant CA, to verify the database server's certificate.
pub(super) fn database_ca_volume() -> Volume {
    secret_volume(
        "database-ca",
        naming::SECRET_POSTGRES_TLS,
        "ca.crt",
        "ca.crt",
    )
}

fn secret_volume(name: &str, secret: &str, key: &str, path: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            items: Some(vec![KeyToPath {
                key: key.into(),
                path: path.into(),
                mode: None,
            }]),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("https".into()),
            scheme: Some("HTTPS".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

pub(super) fn resources(tenant: &Tenant) -> ResourceRequirements {
    tenant
        .spec
        .api
        .resources
        .clone()
        .unwrap_or_else(|| ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity(DEFAULT_API_CPU.into())),
                ("memory".to_string(), Quantity(DEFAULT_API_MEMORY.into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("512Mi".into()),
            )])),
            ..ResourceRequirements::default()
        })
}

pub fn desired_deployment(tenant: &Tenant, settings: &Settings) -> Deployment {
    let labels = metadata_labels(tenant);
    let container = Container {
        name: "api".into(),
        image: Some(api_image(tenant, settings)),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        ports: Some(vec![
            ContainerPort {
                name: Some("https".into()),
                container_port: naming::API_PORT,
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("metrics".into()),
                container_port: naming::API_METRICS_PORT,
                ..ContainerPort::default()
            },
        ]),
        env: Some(serving_environment(tenant, settings)),
        // The endpoints controller and kube-proxy take a moment to stop sending new connections
        // to a pod being deleted; the server refuses them the moment SIGTERM arrives, so it is
        // sent after this pause. Then requests in flight get DFR_SHUTDOWN_GRACE_SECONDS (20 s).
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRE_STOP_SECONDS,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        liveness_probe: Some(probe("/api/dfr/health", 10)),
        readiness_probe: Some(probe("/api/dfr/health/ready", 5)),
        resources: Some(resources(tenant)),
        security_context: Some(restricted_container()),
        volume_mounts: Some(vec![
            mount("jwt", "/etc/dfr/jwt", true),
            mount("pii", "/etc/dfr/pii", true),
            mount("database-ca", "/etc/dfr/tls", true),
            mount("api-tls", API_TLS_DIR, true),
            mount("bootstrap-admin", BOOTSTRAP_ADMIN_DIR, true),
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    };
    let autoscaled = tenant.spec.api_autoscaled();
    let mut metadata = child_meta(tenant, naming::API, labels.clone());
    metadata.annotations = Some(BTreeMap::from([(
        REPLICAS_OWNER.to_string(),
        if autoscaled {
            REPLICAS_BY_AUTOSCALER
        } else {
            REPLICAS_BY_OPERATOR
        }
        .to_string(),
    )]));
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: (!autoscaled).then_some(tenant.spec.api.min_replicas),
            selector: LabelSelector {
                match_labels: Some(selector(tenant)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([
                        ("prometheus.io/scrape".to_string(), "true".to_string()),
                        (
                            "prometheus.io/port".to_string(),
                            naming::API_METRICS_PORT.to_string(),
                        ),
                        ("prometheus.io/path".to_string(), "/metrics".to_string()),
                    ])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(naming::API_SERVICE_ACCOUNT.into()),
                    automount_service_account_token: Some(false),
                    security_context: Some(restricted_pod(NONROOT_UID)),
                    topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                        max_skew: 1,
                        topology_key: "kubernetes.io/hostname".into(),
                        when_unsatisfiable: "ScheduleAnyway".into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector(tenant)),
                            ..LabelSelector::default()
                        }),
                        ..TopologySpreadConstraint::default()
                    }]),
                    init_containers: Some(vec![migrate_container(tenant, settings)]),
                    termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
                    containers: vec![container],
                    volumes: Some(vec![
                        secret_volume("jwt", naming::SECRET_API_JWT, "private.pem", "private.pem"),
                        secret_volume(
                            "pii",
                            naming::SECRET_API_PII_KEYS,
                            crate::pii_keys::KEYRING_FILE,
                            crate::pii_keys::KEYRING_FILE,
                        ),
                        database_ca_volume(),
                        Volume {
                            name: "api-tls".into(),
                            secret: Some(SecretVolumeSource {
                                secret_name: Some(naming::SECRET_API_TLS.into()),
                                items: Some(
                                    ["tls.crt", "tls.key"]
                                        .map(|key| KeyToPath {
                                            key: key.into(),
                                            path: key.into(),
                                            mode: None,
                                        })
                                        .into(),
                                ),
                                default_mode: Some(0o440),
                                ..SecretVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                        Volume {
                            name: "bootstrap-admin".into(),
                            secret: Some(SecretVolumeSource {
                                secret_name: Some(naming::SECRET_API_BOOTSTRAP_ADMIN.into()),
                                items: Some(
                                    ["password", "totp-secret"]
                                        .into_iter()
                                        .map(|key| KeyToPath {
                                            key: key.into(),
                                            path: key.into(),
                                            mode: None,
                                        })
                                        .collect(),
                                ),
                                default_mode: Some(0o440),
                                ..SecretVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                        Volume {
                            name: "tmp".into(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Volume::default()
                        },
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::tests::sample;

    #[test]
    fn only_the_migrate_step_holds_the_owner_login() {
        let deployment = desired_deployment(&sample("ton-prod.yaml"), &Settings::default());
        let pod = deployment.spec.unwrap().template.spec.unwrap();
        let names = |container: &Container| -> Vec<String> {
            container
                .env
                .iter()
                .flatten()
                .map(|e| e.name.clone())
                .collect()
        };
        let serving = names(&pod.containers[0]);
        assert!(
            !serving
                .iter()
                .any(|name| name.starts_with("DFR_MIGRATION_")),
            "{serving:?}"
        );
        assert!(serving.contains(&"DFR_METRICS_LISTEN_ADDR".to_string()));
        let migrate = &pod.init_containers.unwrap()[0];
        assert_eq!(migrate.args.as_deref(), Some(&["migrate".to_string()][..]));
        let step = names(migrate);
        assert!(step.contains(&"DFR_MIGRATION_DATABASE_PASSWORD".to_string()));
        assert!(!step.contains(&"DFR_JWT_SIGNING_KEY_FILE".to_string()));
    }

    #[test]
    fn serves_https_with_the_tenant_certificate_and_probes_over_https() {
        let deployment = desired_deployment(&sample("ton-prod.yaml"), &Settings::default());
        let pod = deployment.spec.unwrap().template.spec.unwrap();
        let api = &pod.containers[0];
        let env = api.env.as_ref().unwrap();
        let value = |name: &str| {
            env.iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
                .unwrap()
        };
        assert_eq!(value("DFR_TLS_CERT_FILE"), "/etc/dfr/api-tls/tls.crt");
        assert_eq!(value("DFR_TLS_KEY_FILE"), "/etc/dfr/api-tls/tls.key");
        let mount = api
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.mount_path == API_TLS_DIR)
            .unwrap();
        let volume = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == mount.name)
            .unwrap();
        assert_eq!(
            volume.secret.as_ref().unwrap().secret_name.as_deref(),
            Some(naming::SECRET_API_TLS)
        );
        for probe in [&api.readiness_probe, &api.liveness_probe] {
            let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
            assert_eq!(get.scheme.as_deref(), Some("HTTPS"));
        }
    }

    #[test]
    fn the_autoscaler_owns_the_replica_count_in_prod_and_the_spec_elsewhere() {
        let owner = |deployment: &Deployment| {
            deployment.metadata.annotations.as_ref().unwrap()[REPLICAS_OWNER].clone()
        };
        let prod = desired_deployment(&sample("ton-prod.yaml"), &Settings::default());
        assert_eq!(prod.spec.as_ref().unwrap().replicas, None);
        assert_eq!(owner(&prod), "autoscaler");

        let mut staging = sample("wsm-staging.yaml");
        let fixed = desired_deployment(&staging, &Settings::default());
        assert_eq!(fixed.spec.as_ref().unwrap().replicas, Some(2));
        assert_eq!(owner(&fixed), "operator");
        staging.spec.api.autoscaling.enabled = Some(true);
        let scaled = desired_deployment(&staging, &Settings::default());
        assert_eq!(scaled.spec.as_ref().unwrap().replicas, None);

        let dev = desired_deployment(&sample("ton-dev.yaml"), &Settings::default());
        assert_eq!(dev.spec.unwrap().replicas, Some(1));
    }

    #[test]
    fn runs_the_spec_version_with_the_database_and_keys_wired_in() {
        let tenant = sample("ton-prod.yaml");
        let spec = desired_deployment(&tenant, &Settings::default())
            .spec
            .unwrap();
        let pod = spec.template.spec.unwrap();
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("dfr-api:1.4.2"));
        let env: BTreeMap<&str, &EnvVar> = container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| (e.name.as_str(), e))
            .collect();
        assert_eq!(
            env["DFR_DATABASE_HOST"].value.as_deref(),
            Some("postgres-rw.dfr-ton-prod.svc.cluster.local")
        );
        let password = env["DFR_DATABASE_PASSWORD"]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(password.name, naming::SECRET_DB_APP);
        assert_eq!(
            env["DFR_JWT_SIGNING_KEY_FILE"].value.as_deref(),
            Some(JWT_KEY_FILE)
        );
        let readiness = container
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(readiness.path.as_deref(), Some("/api/dfr/health/ready"));
        assert_eq!(
            container
                .security_context
                .as_ref()
                .unwrap()
                .read_only_root_filesystem,
            Some(true)
        );
    }
}
