//! Pure builders: what a DfrCountry asks for, as typed Kubernetes objects. No I/O here; the
//! reconciler diffs these against the cluster and applies them.

pub mod api;
pub mod namespace;
pub mod network_policy;
pub mod patroni;
pub mod secrets;

use std::collections::BTreeMap;

use dfr_crds::DfrCountry;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, ResourceQuota, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use crate::naming;
use crate::settings::Settings;

/// Every object a DfrCountry asks for, except the generated Secrets (see [`secrets`]), which are
/// created once and never re-applied.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub namespace: Namespace,
    pub resource_quotas: Vec<ResourceQuota>,
    pub limit_ranges: Vec<LimitRange>,
    pub service_accounts: Vec<ServiceAccount>,
    pub roles: Vec<Role>,
    pub role_bindings: Vec<RoleBinding>,
    pub config_maps: Vec<ConfigMap>,
    pub stateful_sets: Vec<StatefulSet>,
    pub deployments: Vec<Deployment>,
    pub services: Vec<Service>,
    pub pod_disruption_budgets: Vec<PodDisruptionBudget>,
    pub horizontal_pod_autoscalers: Vec<HorizontalPodAutoscaler>,
    pub network_policies: Vec<NetworkPolicy>,
}

/// Builds the whole desired state of one tenant.
pub fn desired_state(country: &DfrCountry, settings: &Settings) -> Desired {
    let mut service_accounts = vec![patroni::desired_service_account(country)];
    service_accounts.push(api::desired_service_account(country));
    Desired {
        namespace: namespace::desired_namespace(country),
        resource_quotas: vec![namespace::desired_resource_quota(country)],
        limit_ranges: vec![namespace::desired_limit_range(country)],
        service_accounts,
        roles: vec![patroni::desired_role(country)],
        role_bindings: vec![patroni::desired_role_binding(country)],
        config_maps: vec![patroni::desired_config_map(country, settings)],
        stateful_sets: vec![patroni::desired_statefulset(country, settings)],
        deployments: vec![api::desired_deployment(country, settings)],
        services: vec![
            patroni::desired_rw_service(country),
            patroni::desired_ro_service(country),
            patroni::desired_headless_service(country),
            api::desired_service(country),
        ],
        pod_disruption_budgets: patroni::desired_pdb(country)
            .into_iter()
            .chain(api::desired_pdb(country))
            .collect(),
        horizontal_pod_autoscalers: vec![api::desired_hpa(country, settings)],
        network_policies: network_policy::desired_network_policies(country, settings),
    }
}

/// Metadata of a child in the tenant namespace: name, labels and the controller owner reference
/// that lets Kubernetes garbage-collect it and the controller watch it.
pub fn child_meta(country: &DfrCountry, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(naming::namespace(country)),
        labels: Some(labels),
        owner_references: country.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}
