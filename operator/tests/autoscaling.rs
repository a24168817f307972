//! Autoscaling by environment against a real control plane, under the shipped ClusterRole. Its
//! kube-controller-manager runs the HPA controller and no metrics API is served, so an
//! autoscaler reports that it cannot read its metrics, as on a cluster without metrics-server:
//! the tenant must say so with the autoscaler's own reason.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use dfr_crds::DfrCountry;
use dfr_operator::autoscaling::HANDOVER_FIELD_MANAGER;
use dfr_operator::children::api::REPLICAS_OWNER;
use dfr_operator::naming;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(90);

/// Whether `manager` holds `spec.replicas` of the Deployment.
fn holds_replicas(deployment: &Deployment, manager: &str) -> bool {
    deployment.managed_fields().iter().any(|entry| {
        entry.manager.as_deref() == Some(manager)
            && entry
                .fields_v1
                .as_ref()
                .is_some_and(|fields| fields.0["f:spec"].get("f:replicas").is_some())
    })
}

#[tokio::test]
async fn staging_scales_only_when_asked_and_a_tenant_without_metrics_says_why() {
    let admin = admin().await;
    install_crd(&admin).await;
    let id = unique_id();
    let country = country_from_sample("cok-staging.yaml", &id);
    let name = country.name_any();
    let namespace = naming::namespace(&country);
    let countries: Api<DfrCountry> = Api::all(admin.clone());
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(admin.clone(), &namespace);
    let operator = RunningOperator::start(&admin, &id).await;
    apply_country(&admin, &country).await;

    // Staging without a word in the spec: a fixed size, api.minReplicas, and no autoscaler.
    let fixed = eventually(WAIT, "the API Deployment", || {
        let api = deployments.clone();
        async move { api.get_opt(naming::API).await.ok().flatten() }
    })
    .await;
    assert_eq!(fixed.spec.as_ref().unwrap().replicas, Some(2));
    assert!(holds_replicas(&fixed, naming::FIELD_MANAGER));
    assert!(hpas.get_opt(naming::API).await.unwrap().is_none());

    // Switched on: the autoscaler appears; the count stays at 2 instead of falling back to 1,
    // held by the handover manager, and the operator's own apply no longer sets it.
    countries
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"api": {"autoscaling": {"enabled": true}}}})),
        )
        .await
        .unwrap();
    eventually(WAIT, "the autoscaler", || {
        let api = hpas.clone();
        async move { api.get_opt(naming::API).await.ok().flatten() }
    })
    .await;
    let handed = eventually(WAIT, "the replicas handed to the autoscaler", || {
        let api = deployments.clone();
        async move {
            let deployment = api.get(naming::API).await.ok()?;
            (deployment
                .annotations()
                .get(REPLICAS_OWNER)
                .map(String::as_str)
                == Some("autoscaler"))
            .then_some(deployment)
        }
    })
    .await;
    assert_eq!(handed.spec.as_ref().unwrap().replicas, Some(2));
    assert!(holds_replicas(&handed, HANDOVER_FIELD_MANAGER));
    assert!(!holds_replicas(&handed, naming::FIELD_MANAGER));

    // No metrics API here: the autoscaler cannot read CPU, and the tenant says so.
    let degraded = eventually(WAIT, "Degraded with the autoscaler's reason", || {
        let api = countries.clone();
        let name = name.clone();
        async move {
            let country = api.get(&name).await.ok()?;
            let status = country.status?;
            let condition = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Degraded" && c.reason == "FailedGetResourceMetric")?
                .clone();
            Some((condition, status.api?.autoscaler?))
        }
    })
    .await;
    assert_eq!(degraded.0.status, "True");
    assert!(
        degraded.0.message.contains("cannot read its metrics"),
        "{}",
        degraded.0.message
    );
    assert_eq!(degraded.1.current_replicas, 2);
    assert_eq!(
        deployments
            .get(naming::API)
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(2)
    );

    // Switched off again: the autoscaler goes, the operator sets the count, the status forgets
    // the autoscaler.
    countries
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"api": {"autoscaling": {"enabled": false}}}})),
        )
        .await
        .unwrap();
    eventually(WAIT, "the autoscaler deleted", || {
        let api = hpas.clone();
        async move { api.get_opt(naming::API).await.ok()?.is_none().then_some(()) }
    })
    .await;
    eventually(WAIT, "the status without the autoscaler", || {
        let api = countries.clone();
        let name = name.clone();
        async move {
            let status = api.get(&name).await.ok()?.status?;
            let degraded = status.conditions.iter().find(|c| c.type_ == "Degraded")?;
            (status.api?.autoscaler.is_none() && degraded.reason != "FailedGetResourceMetric")
                .then_some(())
        }
    })
    .await;
    let back = deployments.get(naming::API).await.unwrap();
    assert_eq!(back.spec.as_ref().unwrap().replicas, Some(2));
    assert!(holds_replicas(&back, naming::FIELD_MANAGER));
    operator.stop().await;
}
