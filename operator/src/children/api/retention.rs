//! Data retention (spec.dataRetention): the policy file `dfr-api retention apply` reads, in a
//! ConfigMap, and the CronJob that runs it on the tenant's schedule as the owner role, with the
//! API's image and database settings. Without spec.dataRetention there is neither.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, PodSpec, PodTemplateSpec,
    Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::deployment::{api_image, database_ca_volume, database_environment, owner_environment};
use crate::children::child_meta;
use crate::children::pod::{mount, restricted_container, restricted_pod, value_env};
use crate::settings::Settings;
use crate::tenant::Tenant;
use crate::{labels, naming};

pub const APP_NAME: &str = "dfr-retention";
const POLICY_KEY: &str = "retention.json";
const POLICY_DIR: &str = "/etc/dfr/retention";
/// A run that has not finished in an hour is stuck; the next schedule tries again.
const DEADLINE_SECONDS: i64 = 3600;

/// The labels of the retention runs: their own name, so the API's Service never selects them.
pub fn selector(tenant: &Tenant) -> BTreeMap<String, String> {
    labels::selector(tenant, APP_NAME)
}

/// The policy in the format `dfr-api retention apply` reads: days per kind, for this country.
pub fn policy_json(tenant: &Tenant) -> Option<String> {
    let retention = tenant.spec.data_retention.as_ref()?;
    let periods: serde_json::Map<String, serde_json::Value> = retention
        .periods()
        .into_iter()
        .map(|(kind, days)| (kind.to_string(), days.into()))
        .collect();
    Some(serde_json::json!({"countries": {tenant.spec.country_code.clone(): periods}}).to_string())
}

pub fn desired_config_maps(tenant: &Tenant) -> Vec<ConfigMap> {
    policy_json(tenant)
        .map(|policy| ConfigMap {
            metadata: child_meta(
                tenant,
                naming::RETENTION,
                labels::component(tenant, APP_NAME, "retention"),
            ),
            data: Some(BTreeMap::from([(POLICY_KEY.to_string(), policy)])),
            ..ConfigMap::default()
        })
        .into_iter()
        .collect()
}

pub fn desired_cron_jobs(tenant: &Tenant, settings: &Settings) -> Vec<CronJob> {
    let Some(retention) = tenant.spec.data_retention.as_ref() else {
        return Vec::new();
    };
    let labels = labels::component(tenant, APP_NAME, "retention");
    let mut env = database_environment(tenant, settings);
    env.extend(owner_environment());
    env.push(value_env(
        "DFR_COUNTRY_CODE",
        tenant.spec.country_code.clone(),
    ));
    env.push(value_env(
        "DFR_RETENTION_FILE",
        format!("{POLICY_DIR}/{POLICY_KEY}"),
    ));
    let container = Container {
        name: "retention".into(),
        image: Some(api_image(tenant, settings)),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        args: Some(vec!["retention".into(), "apply".into()]),
        env: Some(env),
        security_context: Some(restricted_container()),
        volume_mounts: Some(vec![
            mount("policy", POLICY_DIR, true),
            mount("database-ca", "/etc/dfr/tls", true),
            mount("tmp", "/tmp", false),
        ]),
        resources: Some(super::deployment::resources(tenant)),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };
    let pod = PodSpec {
        restart_policy: Some("Never".into()),
        automount_service_account_token: Some(false),
        security_context: Some(restricted_pod(super::deployment::NONROOT_UID)),
        containers: vec![container],
        volumes: Some(vec![
            Volume {
                name: "policy".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: naming::RETENTION.into(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            database_ca_volume(),
            Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    };
    vec![CronJob {
        metadata: child_meta(tenant, naming::RETENTION, labels.clone()),
        spec: Some(CronJobSpec {
            schedule: retention.schedule.trim().to_string(),
            time_zone: Some("Etc/UTC".into()),
            concurrency_policy: Some("Forbid".into()),
            starting_deadline_seconds: Some(3600),
            successful_jobs_history_limit: Some(1),
            failed_jobs_history_limit: Some(2),
            suspend: Some(tenant.spec.suspend),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(JobSpec {
                    // Each run is whole or nothing (one transaction per kind); a failed one is
                    // reported by the Job and tried again at the next schedule.
                    backoff_limit: Some(0),
                    active_deadline_seconds: Some(DEADLINE_SECONDS),
                    ttl_seconds_after_finished: Some(7 * 24 * 3600),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(labels),
                            ..ObjectMeta::default()
                        }),
                        spec: Some(pod),
                    },
                    ..JobSpec::default()
                }),
            },
        }),
        ..CronJob::default()
    }]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::tests::sample;

    fn with_retention() -> Tenant {
        let mut tenant = sample("ton-prod.yaml");
        tenant.spec.data_retention = serde_json::from_value(serde_json::json!({
            "person": 3650, "plot": 1825, "syncMutation": 90
        }))
        .unwrap();
        tenant
    }

    #[test]
    fn nothing_without_a_retention_policy() {
        let tenant = sample("ton-prod.yaml");
        assert!(tenant.spec.data_retention.is_none());
        assert!(desired_config_maps(&tenant).is_empty());
        assert!(desired_cron_jobs(&tenant, &Settings::default()).is_empty());
    }

    #[test]
    fn the_policy_file_names_the_country_and_only_the_kinds_given() {
        let tenant = with_retention();
        let policy: serde_json::Value =
            serde_json::from_str(&policy_json(&tenant).unwrap()).unwrap();
        assert_eq!(
            policy,
            serde_json::json!({"countries": {"TON": {"person": 3650, "plot": 1825, "sync_mutation": 90}}})
        );
    }

    #[test]
    fn the_job_runs_retention_apply_as_the_owner_on_the_schedule() {
        let tenant = with_retention();
        let jobs = desired_cron_jobs(&tenant, &Settings::default());
        let spec = jobs[0].spec.as_ref().unwrap();
        assert_eq!(spec.schedule, "15 3 * * *");
        let job = spec.job_template.spec.as_ref().unwrap();
        let pod = job.template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        assert_eq!(
            container.args.as_deref().unwrap(),
            &["retention".to_string(), "apply".to_string()]
        );
        let env: BTreeMap<&str, _> = container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| (e.name.as_str(), e))
            .collect();
        let owner = env["DFR_MIGRATION_DATABASE_PASSWORD"]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(owner.name, naming::SECRET_DB_OWNER);
        assert_eq!(
            env["DFR_RETENTION_FILE"].value.as_deref(),
            Some("/etc/dfr/retention/retention.json")
        );
        assert_eq!(env["DFR_COUNTRY_CODE"].value.as_deref(), Some("TON"));
        // Not the API's labels: its Service must never send requests to a retention run.
        let labels = job
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(labels[labels::NAME], APP_NAME);
    }
}
