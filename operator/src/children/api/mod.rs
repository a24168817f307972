//! The DFR API: Deployment, Service, PodDisruptionBudget, HorizontalPodAutoscaler.

mod deployment;
mod hpa;
pub mod retention;

pub use deployment::desired_deployment;
pub use hpa::desired_hpa;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Service, ServiceAccount, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::children::child_meta;
use crate::children::pod::{Budget, disruption_budget};
use crate::settings::Settings;
use crate::tenant::Tenant;
use crate::{labels, naming};

pub fn desired_deployments(tenant: &Tenant, settings: &Settings) -> Vec<Deployment> {
    vec![desired_deployment(tenant, settings)]
}

/// The autoscaler where the spec (or the environment's default) asks for one; none otherwise,
/// and the staged apply removes one made earlier.
pub fn desired_autoscalers(tenant: &Tenant, settings: &Settings) -> Vec<HorizontalPodAutoscaler> {
    if tenant.spec.api_autoscaled() {
        vec![desired_hpa(tenant, settings)]
    } else {
        Vec::new()
    }
}

/// On the API Deployment: who owns its `replicas`, [`REPLICAS_BY_AUTOSCALER`] or
/// [`REPLICAS_BY_OPERATOR`]. The reconcile reads it to see the switch to autoscaling coming
/// (crate::autoscaling::hand_over_replicas), since the watch caches drop managedFields.
pub const REPLICAS_OWNER: &str = "dfr.io/replicas-owner";
pub const REPLICAS_BY_AUTOSCALER: &str = "autoscaler";
pub const REPLICAS_BY_OPERATOR: &str = "operator";

pub const COMPONENT: &str = "api";

pub fn metadata_labels(tenant: &Tenant) -> BTreeMap<String, String> {
    let mut labels = labels::component(tenant, labels::APP_API, COMPONENT);
    labels.insert(labels::VERSION.into(), tenant.spec.app_version.clone());
    labels
}

pub fn selector(tenant: &Tenant) -> BTreeMap<String, String> {
    labels::selector(tenant, labels::APP_API)
}

/// The API talks to PostgreSQL with passwords, not with the Kubernetes API: no token mounted.
pub fn desired_service_account(tenant: &Tenant) -> ServiceAccount {
    ServiceAccount {
        metadata: child_meta(tenant, naming::API_SERVICE_ACCOUNT, metadata_labels(tenant)),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

pub fn desired_service(tenant: &Tenant) -> Service {
    Service {
        metadata: child_meta(tenant, naming::API, metadata_labels(tenant)),
        spec: Some(ServiceSpec {
            selector: Some(selector(tenant)),
            ports: Some(vec![ServicePort {
                name: Some("https".into()),
                port: naming::API_PORT,
                target_port: Some(IntOrString::String("https".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            type_: Some("ClusterIP".into()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Keeps one API pod serving through voluntary disruptions when there are two or more.
pub fn desired_pdb(tenant: &Tenant) -> Option<PodDisruptionBudget> {
    (tenant.spec.api.min_replicas >= 2).then(|| {
        let labels = metadata_labels(tenant);
        disruption_budget(
            tenant,
            naming::API,
            labels,
            selector(tenant),
            Budget::MinAvailable(1),
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::tests::sample;

    #[test]
    fn the_service_selects_api_pods_by_stable_labels_only() {
        let selector = desired_service(&sample("ton-prod.yaml"))
            .spec
            .unwrap()
            .selector
            .unwrap();
        assert_eq!(selector.len(), 2);
        assert_eq!(selector[labels::NAME], "dfr-api");
        assert!(
            !selector.contains_key(labels::VERSION),
            "a version in the selector breaks upgrades"
        );
    }

    #[test]
    fn a_budget_only_when_two_pods_are_promised() {
        let mut tenant = sample("ton-dev.yaml");
        tenant.spec.api.min_replicas = 1;
        assert!(desired_pdb(&tenant).is_none());
        tenant.spec.api.min_replicas = 2;
        assert_eq!(
            desired_pdb(&tenant).unwrap().spec.unwrap().min_available,
            Some(IntOrString::Int(1))
        );
    }

    #[test]
    fn the_api_account_mounts_no_token() {
        assert_eq!(
            desired_service_account(&sample("ton-dev.yaml")).automount_service_account_token,
            Some(false)
        );
    }
}
