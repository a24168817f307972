//! The tenant namespace, with Pod Security `restricted`, and the quota and default limits that
//! keep one tenant from starving the others.

use std::collections::BTreeMap;

use crate::tenant::Tenant;
use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
    ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{child_meta, quantity};
use crate::labels;
use crate::settings::Settings;

pub const QUOTA: &str = "dfr-tenant";
pub const LIMITS: &str = "dfr-defaults";

/// Requests and limits a container gets when its spec sets none.
pub const DEFAULT_POSTGRES_CPU: &str = "500m";
pub const DEFAULT_POSTGRES_MEMORY: &str = "1Gi";
pub const DEFAULT_API_CPU: &str = "250m";
pub const DEFAULT_API_MEMORY: &str = "256Mi";

pub fn desired_namespace(tenant: &Tenant) -> Namespace {
    let mut labels = labels::tenant(tenant);
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".into(),
        );
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}-version"),
            "latest".into(),
        );
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(tenant.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![tenant.owner.clone()]),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// The amount of `resource` a container asks for, from the spec or the default.
fn amount(
    resources: Option<&ResourceRequirements>,
    kind: &str,
    resource: &str,
    default: &str,
) -> f64 {
    resources
        .and_then(|r| {
            if kind == "limits" {
                r.limits.as_ref()
            } else {
                r.requests.as_ref()
            }
        })
        .and_then(|values| values.get(resource))
        .and_then(|q| quantity::parse(&q.0))
        .or_else(|| quantity::parse(default))
        .unwrap_or(0.0)
}

/// Sized for the largest the tenant may become (all PostgreSQL members, the API at
/// maxReplicas) plus headroom for a rolling update and backup jobs.
pub fn desired_resource_quotas(tenant: &Tenant, _settings: &Settings) -> Vec<ResourceQuota> {
    vec![desired_resource_quota(tenant)]
}

pub fn desired_limit_ranges(tenant: &Tenant, _settings: &Settings) -> Vec<LimitRange> {
    vec![desired_limit_range(tenant)]
}

pub fn desired_resource_quota(tenant: &Tenant) -> ResourceQuota {
    let spec = &tenant.spec;
    let instances = f64::from(spec.postgres.instances);
    let api_pods = f64::from(spec.api.max_replicas);
    let pg = spec.postgres.resources.as_ref();
    let api = spec.api.resources.as_ref();
    // One extra API pod during a rolling update; one backup job at a time.
    let surge = 1.0;
    let sum = |kind: &str, resource: &str, pg_default: &str, api_default: &str| {
        instances * amount(pg, kind, resource, pg_default)
            + (api_pods + surge) * amount(api, kind, resource, api_default)
            + amount(pg, kind, resource, pg_default)
    };
    // With a repository: a pgBackRest server beside each member (and the repository host's for a
    // volume), and backup runs.
    let repository_host = if crate::children::backup::is_volume(tenant) {
        1.0
    } else {
        0.0
    };
    let backups = |pick: fn(&crate::children::backup::Resources) -> &'static str| {
        use crate::children::backup::{CONCURRENT_RUNS, RUN_RESOURCES, SERVER_RESOURCES};
        if !crate::children::backup::has_repository(tenant) {
            return 0.0;
        }
        let value = |text: &str| quantity::parse(text).unwrap_or(0.0);
        (instances + repository_host) * value(pick(&SERVER_RESOURCES))
            + f64::from(CONCURRENT_RUNS) * value(pick(&RUN_RESOURCES))
    };
    // The PostgreSQL exporter beside each member.
    let exporters = |pick: fn(&crate::children::backup::Resources) -> &'static str| {
        use crate::children::patroni::EXPORTER_RESOURCES;
        instances * quantity::parse(pick(&EXPORTER_RESOURCES)).unwrap_or(0.0)
    };
    let cpu_requests = sum("requests", "cpu", DEFAULT_POSTGRES_CPU, DEFAULT_API_CPU)
        + backups(|r| r.cpu_request)
        + exporters(|r| r.cpu_request);
    let memory_requests = sum(
        "requests",
        "memory",
        DEFAULT_POSTGRES_MEMORY,
        DEFAULT_API_MEMORY,
    ) + backups(|r| r.memory_request)
        + exporters(|r| r.memory_request);
    // Limits default to twice the requests when the spec gives none.
    let cpu_limits =
        (sum("limits", "cpu", "1", "500m") + backups(|r| r.cpu_limit) + exporters(|r| r.cpu_limit))
            .max(cpu_requests);
    let memory_limits = (sum("limits", "memory", "2Gi", "512Mi")
        + backups(|r| r.memory_limit)
        + exporters(|r| r.memory_limit))
    .max(memory_requests);
    let data = quantity::parse(&spec.postgres.storage.size.0).unwrap_or(0.0) * instances;
    let backup = spec
        .backup
        .as_ref()
        .and_then(|b| b.destination.volume.as_ref())
        .and_then(|v| quantity::parse(&v.size.0))
        .unwrap_or(0.0);
    let pods = spec.postgres.instances + spec.api.max_replicas + 4 + repository_host as i32;
    let claims = spec.postgres.instances + 2;
    let hard = BTreeMap::from([
        ("pods".to_string(), Quantity(pods.to_string())),
        (
            "persistentvolumeclaims".to_string(),
            Quantity(claims.to_string()),
        ),
        (
            "requests.storage".to_string(),
            quantity::bytes(data + backup),
        ),
        ("requests.cpu".to_string(), quantity::cores(cpu_requests)),
        (
            "requests.memory".to_string(),
            quantity::bytes(memory_requests),
        ),
        ("limits.cpu".to_string(), quantity::cores(cpu_limits)),
        ("limits.memory".to_string(), quantity::bytes(memory_limits)),
    ]);
    ResourceQuota {
        metadata: child_meta(tenant, QUOTA, labels::tenant(tenant)),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    }
}

/// Defaults for containers that set no resources, so the quota admits them.
pub fn desired_limit_range(tenant: &Tenant) -> LimitRange {
    let values = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ])
    };
    LimitRange {
        metadata: child_meta(tenant, LIMITS, labels::tenant(tenant)),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default_request: Some(values("100m", "128Mi")),
                default: Some(values("500m", "512Mi")),
                ..LimitRangeItem::default()
            }],
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::tests::sample;

    /// The quota admits every pod the builders make at once: all members with their pgBackRest
    /// servers, the API at maxReplicas plus a surge pod, and the backup runs that may overlap.
    #[test]
    fn the_quota_admits_the_members_the_api_and_the_backup_runs_together() {
        let mut tenant = sample("ton-dev.yaml");
        tenant.spec.backup = Some(
            serde_json::from_value(serde_json::json!({
                "destination": {"s3": {"endpoint": "https://10.0.0.1:9000", "bucket": "b",
                    "region": "r", "credentialsSecretRef": {"name": "s3"}}},
                "encryptionKeySecretRef": {"name": "k", "key": "p"}
            }))
            .unwrap(),
        );
        let settings = Settings::default();
        let limits = |pod: &k8s_openapi::api::core::v1::PodSpec| {
            pod.containers
                .iter()
                .map(|c| {
                    let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
                    quantity::parse(&limits["memory"].0).unwrap()
                })
                .sum::<f64>()
        };
        let members = crate::children::patroni::desired_statefulset(&tenant, &settings);
        let member = members.spec.unwrap().template.spec.unwrap();
        assert_eq!(
            member.containers.len(),
            3,
            "postgres, the exporter and pgbackrest"
        );
        let api = crate::children::api::desired_deployments(&tenant, &settings).remove(0);
        let api_pod = api.spec.unwrap().template.spec.unwrap();
        let run = crate::children::backup::desired_cron_jobs(&tenant, &settings)
            .remove(0)
            .spec
            .unwrap()
            .job_template
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        let needed = f64::from(tenant.spec.postgres.instances) * limits(&member)
            + f64::from(tenant.spec.api.max_replicas + 1) * limits(&api_pod)
            + 2.0 * limits(&run);
        let quota = desired_resource_quota(&tenant);
        let hard = quota.spec.unwrap().hard.unwrap();
        let admitted = quantity::parse(&hard["limits.memory"].0).unwrap();
        assert!(
            admitted >= needed,
            "quota limits.memory {admitted} < {needed} needed"
        );
    }

    #[test]
    fn the_namespace_enforces_restricted_pod_security_and_names_the_tenant() {
        let tenant = sample("ton-prod.yaml");
        let ns = desired_namespace(&tenant);
        assert_eq!(ns.metadata.name.as_deref(), Some("dfr-ton-prod"));
        let labels = ns.metadata.labels.unwrap();
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
        assert_eq!(labels[labels::COUNTRY], "ton");
        assert_eq!(labels[labels::ENVIRONMENT], "prod");
        assert_eq!(ns.metadata.owner_references.unwrap()[0].kind, "DfrCountry");
    }

    #[test]
    fn the_quota_grows_with_the_spec() {
        let mut tenant = sample("ton-prod.yaml");
        let hard = |c: &Tenant| desired_resource_quota(c).spec.unwrap().hard.unwrap();
        let small = hard(&tenant);
        // ton-prod: 3 members of 50Gi each.
        assert_eq!(small["requests.storage"].0, format!("{}Mi", 3 * 50 * 1024));
        assert_eq!(small["pods"].0, (3 + 8 + 4).to_string());
        tenant.spec.postgres.instances = 5;
        tenant.spec.api.max_replicas = 20;
        let large = hard(&tenant);
        assert_eq!(large["pods"].0, (5 + 20 + 4).to_string());
        let cpu = |h: &BTreeMap<String, Quantity>| quantity::parse(&h["requests.cpu"].0).unwrap();
        assert!(cpu(&large) > cpu(&small));
    }

    #[test]
    fn containers_without_resources_get_defaults() {
        let limits = desired_limit_range(&sample("ton-dev.yaml"))
            .spec
            .unwrap()
            .limits;
        assert_eq!(limits[0].type_, "Container");
        assert!(
            limits[0]
                .default_request
                .as_ref()
                .unwrap()
                .contains_key("memory")
        );
    }
}
