//! Reads what the tenant's workloads report, for the status. Reads only.

use dfr_crds::DfrCountry;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, ListParams};

use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::status::Observed;
use crate::{labels, naming};

pub async fn observe(
    client: &Client,
    country: &DfrCountry,
    settings: &Settings,
) -> Result<Observed> {
    let namespace = naming::namespace(country);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);

    let postgres = statefulsets
        .get_opt(naming::POSTGRES)
        .await
        .map_err(Error::kube("reading the PostgreSQL StatefulSet"))?;
    let api = deployments
        .get_opt(naming::API)
        .await
        .map_err(Error::kube("reading the API Deployment"))?;

    let leader_selector = format!(
        "{}={},{}={},{}={}",
        labels::NAME,
        labels::APP_POSTGRES,
        labels::INSTANCE,
        kube::ResourceExt::name_any(country),
        labels::PATRONI_ROLE,
        labels::PATRONI_ROLE_PRIMARY
    );
    let leaders = pods
        .list(&ListParams::default().labels(&leader_selector))
        .await
        .map_err(Error::kube("listing the Patroni leader pod"))?;
    let primary = leaders
        .items
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none() && pod_ready(pod))
        .find_map(|pod| pod.metadata.name.clone());

    let api_status = api.as_ref().and_then(|d| d.status.as_ref());
    let api_deployment_available =
        api_status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Available" && c.status == "True")
            });

    let certificates_not_after = secrets
        .get_opt(naming::SECRET_POSTGRES_TLS)
        .await
        .map_err(Error::kube("reading the PostgreSQL certificate"))?
        .and_then(|secret| secret.data)
        .and_then(|data| data.get("tls.crt").cloned())
        .and_then(|pem| String::from_utf8(pem.0).ok())
        .and_then(|pem| crate::children::secrets::certificate_not_after(&pem));

    Ok(Observed {
        namespace,
        postgres_ready: postgres
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        postgres_desired: country.spec.postgres.instances,
        primary,
        api_available: api_status.and_then(|s| s.available_replicas).unwrap_or(0),
        api_desired: api
            .as_ref()
            .and_then(|d| d.spec.as_ref())
            .and_then(|s| s.replicas)
            .unwrap_or(country.spec.api.min_replicas),
        api_deployment_available,
        certificates_not_after,
        problem: None,
        suspended: country.spec.suspend,
        cluster_domain: settings.cluster_domain.clone(),
    })
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}
