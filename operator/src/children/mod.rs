//! Pure builders: what a DfrCountry asks for, as typed Kubernetes objects. No I/O here; the
//! reconciler diffs these against the cluster and applies them.

pub mod api;
pub mod backup;
pub mod certificates;
pub mod kinds;
pub mod monitoring;
pub mod namespace;
pub mod network_policy;
pub mod patroni;
pub mod pod;
pub mod quantity;
pub mod secrets;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::ApiResource;

use crate::settings::Settings;
use crate::tenant::Tenant;

macro_rules! define_desired {
    ($($field:ident: $kind:ty => $stage:ident, $build:path;)*) => {
        /// Every object a DfrCountry asks for, except the generated Secrets (see [`secrets`]),
        /// which are created once and renewed in place rather than re-applied.
        #[derive(Clone, Debug, Default)]
        pub struct Desired {
            pub namespace: Namespace,
            $(pub $field: Vec<$kind>,)*
        }

        /// Builds the whole desired state of one tenant.
        pub fn desired_state(tenant: &Tenant, settings: &Settings) -> Desired {
            Desired {
                namespace: namespace::desired_namespace(tenant),
                $($field: $build(tenant, settings),)*
            }
        }

        impl Desired {
            /// Every object as JSON with its API resource, the namespace first and then in the
            /// table's order: for tools that create the same objects without the operator.
            pub fn erased(&self) -> Result<Vec<(ApiResource, serde_json::Value)>, serde_json::Error> {
                let mut objects = vec![(
                    ApiResource::erase::<Namespace>(&()),
                    serde_json::to_value(&self.namespace)?,
                )];
                $(for object in &self.$field {
                    objects.push((ApiResource::erase::<$kind>(&()), serde_json::to_value(object)?));
                })*
                Ok(objects)
            }

            /// The metadata of every object, the namespace first.
            pub fn metadata(&self) -> Vec<&ObjectMeta> {
                let mut metas = vec![&self.namespace.metadata];
                $(metas.extend(self.$field.iter().map(|object| &object.metadata));)*
                metas
            }
        }
    };
}
kinds::for_each_child_kind!(define_desired);

pub fn desired_service_accounts(tenant: &Tenant, _settings: &Settings) -> Vec<ServiceAccount> {
    vec![
        patroni::desired_service_account(tenant),
        api::desired_service_account(tenant),
    ]
}

/// Patroni's and pgBackRest's configuration and the Grafana dashboards.
pub fn desired_config_maps(tenant: &Tenant, settings: &Settings) -> Vec<ConfigMap> {
    let mut maps = patroni::desired_config_maps(tenant, settings);
    maps.extend(monitoring::desired_dashboard_config_maps(tenant, settings));
    maps.extend(api::retention::desired_config_maps(tenant));
    maps
}

/// The scheduled backups and checks, and the data-retention job.
pub fn desired_cron_jobs(
    tenant: &Tenant,
    settings: &Settings,
) -> Vec<k8s_openapi::api::batch::v1::CronJob> {
    let mut jobs = backup::desired_cron_jobs(tenant, settings);
    jobs.extend(api::retention::desired_cron_jobs(tenant, settings));
    jobs
}

pub fn desired_services(tenant: &Tenant, _settings: &Settings) -> Vec<Service> {
    vec![
        patroni::desired_rw_service(tenant),
        patroni::desired_ro_service(tenant),
        patroni::desired_headless_service(tenant),
        api::desired_service(tenant),
    ]
    .into_iter()
    .chain(backup::repository_host::desired_service(tenant))
    .collect()
}

pub fn desired_disruption_budgets(
    tenant: &Tenant,
    _settings: &Settings,
) -> Vec<PodDisruptionBudget> {
    patroni::desired_pdb(tenant)
        .into_iter()
        .chain(api::desired_pdb(tenant))
        .collect()
}

/// Metadata of a child in the tenant namespace: name, labels and the controller owner reference
/// that lets Kubernetes garbage-collect it and the controller watch it.
pub fn child_meta(tenant: &Tenant, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(tenant.namespace.clone()),
        labels: Some(labels),
        owner_references: Some(vec![tenant.owner.clone()]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use dfr_crds::DfrCountry;

    /// A sample from config/samples as the API server would hand it over (with a uid).
    pub fn sample_country(file: &str) -> DfrCountry {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/samples")
            .join(file);
        let mut country: DfrCountry =
            serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        country.metadata.uid = Some("3f1c2a9e-0000-4000-8000-000000000001".into());
        country
    }

    /// The checked view of a sample.
    pub fn sample(file: &str) -> Tenant {
        crate::validate::validate(&sample_country(file)).unwrap()
    }

    #[test]
    fn every_object_carries_the_tenant_labels_and_an_owner() {
        let tenant = sample("ton-prod.yaml");
        let desired = desired_state(&tenant, &Settings::default());
        let metas = desired.metadata();
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
