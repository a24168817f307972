//! Pure builders: what a DfrCountry asks for, as typed Kubernetes objects. No I/O here; the
//! reconciler diffs these against the cluster and applies them.

pub mod api;
pub mod namespace;
pub mod network_policy;
pub mod patroni;
pub mod pod;
pub mod quantity;
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
pub fn child_meta(
    country: &DfrCountry,
    name: &str,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(naming::namespace(country)),
        labels: Some(labels),
        owner_references: country.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// A sample from config/samples as the API server would hand it over (with a uid).
    pub fn sample(file: &str) -> DfrCountry {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/samples")
            .join(file);
        let mut country: DfrCountry =
            serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        country.metadata.uid = Some("3f1c2a9e-0000-4000-8000-000000000001".into());
        country
    }

    #[test]
    fn every_object_carries_the_tenant_labels_and_an_owner() {
        let country = sample("ton-prod.yaml");
        let desired = desired_state(&country, &Settings::default());
        let mut metas: Vec<&ObjectMeta> = vec![&desired.namespace.metadata];
        metas.extend(desired.resource_quotas.iter().map(|o| &o.metadata));
        metas.extend(desired.limit_ranges.iter().map(|o| &o.metadata));
        metas.extend(desired.service_accounts.iter().map(|o| &o.metadata));
        metas.extend(desired.roles.iter().map(|o| &o.metadata));
        metas.extend(desired.role_bindings.iter().map(|o| &o.metadata));
        metas.extend(desired.config_maps.iter().map(|o| &o.metadata));
        metas.extend(desired.stateful_sets.iter().map(|o| &o.metadata));
        metas.extend(desired.deployments.iter().map(|o| &o.metadata));
        metas.extend(desired.services.iter().map(|o| &o.metadata));
        metas.extend(desired.pod_disruption_budgets.iter().map(|o| &o.metadata));
        metas.extend(
            desired
                .horizontal_pod_autoscalers
                .iter()
                .map(|o| &o.metadata),
        );
        metas.extend(desired.network_policies.iter().map(|o| &o.metadata));
        assert!(metas.len() > 20);
        for meta in metas {
            let name = meta.name.clone().unwrap();
            let labels = meta.labels.as_ref().unwrap();
            assert_eq!(labels[crate::labels::MANAGED_BY], "dfr-operator", "{name}");
            assert_eq!(labels[crate::labels::TENANT], "ton-prod", "{name}");
            let owner = &meta.owner_references.as_ref().unwrap()[0];
            assert_eq!(owner.uid, "3f1c2a9e-0000-4000-8000-000000000001", "{name}");
            assert_eq!(owner.controller, Some(true), "{name}");
        }
    }
}
