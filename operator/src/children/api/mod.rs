//! The DFR API: Deployment, Service, PodDisruptionBudget, HorizontalPodAutoscaler.

mod deployment;
mod hpa;

pub use deployment::desired_deployment;
pub use hpa::desired_hpa;

use std::collections::BTreeMap;

use dfr_crds::DfrCountry;
use k8s_openapi::api::core::v1::{Service, ServiceAccount, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::children::child_meta;
use crate::children::pod::{Budget, disruption_budget};
use crate::{labels, naming};

pub const COMPONENT: &str = "api";

pub fn metadata_labels(country: &DfrCountry) -> BTreeMap<String, String> {
    let mut labels = labels::component(country, labels::APP_API, COMPONENT);
    labels.insert(labels::VERSION.into(), country.spec.app_version.clone());
    labels
}

pub fn selector(country: &DfrCountry) -> BTreeMap<String, String> {
    labels::selector(country, labels::APP_API)
}

/// The API talks to PostgreSQL with passwords, not with the Kubernetes API: no token mounted.
pub fn desired_service_account(country: &DfrCountry) -> ServiceAccount {
    ServiceAccount {
        metadata: child_meta(
            country,
            naming::API_SERVICE_ACCOUNT,
            metadata_labels(country),
        ),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

pub fn desired_service(country: &DfrCountry) -> Service {
    Service {
        metadata: child_meta(country, naming::API, metadata_labels(country)),
        spec: Some(ServiceSpec {
            selector: Some(selector(country)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: naming::API_PORT,
                target_port: Some(IntOrString::String("http".into())),
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
pub fn desired_pdb(country: &DfrCountry) -> Option<PodDisruptionBudget> {
    (country.spec.api.min_replicas >= 2).then(|| {
        let labels = metadata_labels(country);
        disruption_budget(
            country,
            naming::API,
            labels,
            selector(country),
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
        let mut country = sample("ton-dev.yaml");
        country.spec.api.min_replicas = 1;
        assert!(desired_pdb(&country).is_none());
        country.spec.api.min_replicas = 2;
        assert_eq!(
            desired_pdb(&country).unwrap().spec.unwrap().min_available,
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
