//! Monitoring objects against a real control plane, under the shipped ClusterRole: without the
//! Prometheus Operator's kinds the tenant says so on MonitoringReady and still gets its
//! dashboards; with them (the Prometheus Operator's own CRDs, in tests/fixtures, so the real
//! schemas validate, prune and default what the operator applies) it gets its PodMonitors and
//! PrometheusRule, and an operator that finds them unchanged writes nothing.
//!
//! One test, in a binary of its own: it installs and removes cluster-wide CRDs, which other
//! tests must not see appear mid-run (cargo runs test binaries one after another).
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use dfr_operator::children::monitoring::{self, PodMonitor, PrometheusRule};
use dfr_operator::naming;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use support::*;

const WAIT: Duration = Duration::from_secs(60);
const PLURALS: [&str; 2] = ["podmonitors", "prometheusrules"];

fn prometheus_operator_crd(plural: &str) -> CustomResourceDefinition {
    let path = repo_root().join(format!(
        "operator/tests/fixtures/prometheus-operator/monitoring.coreos.com_{plural}.yaml"
    ));
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn served(admin: &Client) -> bool {
    admin
        .list_api_group_resources("monitoring.coreos.com/v1")
        .await
        .map(|list| list.resources.iter().any(|r| r.name == "prometheusrules"))
        .unwrap_or(false)
}

async fn set_monitoring_crds(admin: &Client, installed: bool) {
    let api: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for plural in PLURALS {
        let crd = prometheus_operator_crd(plural);
        if installed {
            api.patch(
                &crd.name_any(),
                &PatchParams::apply("dfr-operator-tests").force(),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap();
        } else {
            let _ = api.delete(&crd.name_any(), &DeleteParams::default()).await;
        }
    }
    eventually(
        WAIT,
        &format!("monitoring.coreos.com served = {installed}"),
        || {
            let admin = admin.clone();
            async move { (served(&admin).await == installed).then_some(()) }
        },
    )
    .await;
}

async fn wait_for_condition(admin: &Client, name: &str, type_: &str, status: &str, reason: &str) {
    let api: Api<dfr_crds::DfrCountry> = Api::all(admin.clone());
    eventually(WAIT, &format!("{type_}={status} ({reason})"), || {
        let api = api.clone();
        async move {
            let country = api.get(name).await.ok()?;
            country
                .status?
                .conditions
                .iter()
                .any(|c| c.type_ == type_ && c.status == status && c.reason == reason)
                .then_some(())
        }
    })
    .await;
}

async fn wait_for<K>(api: &Api<K>, name: &str) -> K
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(WAIT, &format!("{} {name}", K::kind(&())), || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok().flatten() }
    })
    .await
}

#[tokio::test]
async fn monitoring_objects_follow_the_kinds_the_cluster_serves() {
    let admin = admin().await;
    install_crd(&admin).await;
    set_monitoring_crds(&admin, false).await;
    let id = unique_id();
    let country = country_from_sample("vut-test.yaml", &id);
    let name = country.name_any();
    let namespace = naming::namespace(&country);

    // Without the kinds: the condition says why, and the dashboards are there regardless.
    let first = RunningOperator::start(&admin, &id).await;
    apply_country(&admin, &country).await;
    wait_for_condition(
        &admin,
        &name,
        "MonitoringReady",
        "False",
        "MonitoringCRDsAbsent",
    )
    .await;
    let maps: Api<ConfigMap> = Api::namespaced(admin.clone(), &namespace);
    let dashboard = wait_for(&maps, "dfr-dashboard-operations").await;
    assert_eq!(dashboard.labels()[monitoring::GRAFANA_DASHBOARD_LABEL], "1");
    first.stop().await;

    // With them: a new operator (discovery is cached per process) applies the objects.
    set_monitoring_crds(&admin, true).await;
    let second = RunningOperator::start(&admin, &id).await;
    wait_for_condition(
        &admin,
        &name,
        "MonitoringReady",
        "True",
        "MonitoringConfigured",
    )
    .await;
    let rules: Api<PrometheusRule> = Api::namespaced(admin.clone(), &namespace);
    let monitors: Api<PodMonitor> = Api::namespaced(admin.clone(), &namespace);
    let rule = wait_for(&rules, monitoring::RULES).await;
    assert!(
        rule.spec.groups[0]
            .rules
            .iter()
            .any(|r| r.alert.as_deref() == Some("DfrApiLatencyHigh"))
    );
    let country_uid = Api::<dfr_crds::DfrCountry>::all(admin.clone())
        .get(&name)
        .await
        .unwrap()
        .uid();
    for monitor_name in [
        monitoring::API_MONITOR,
        monitoring::PATRONI_MONITOR,
        monitoring::EXPORTER_MONITOR,
    ] {
        let monitor = wait_for(&monitors, monitor_name).await;
        assert_eq!(
            monitor.owner_references()[0].uid,
            country_uid.clone().unwrap()
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    second.stop().await;

    // Unchanged: the next operator reads them and writes nothing.
    let third = RunningOperator::start(&admin, &id).await;
    eventually(WAIT, "the third operator to reconcile", || {
        let done = third.successful_reconciles();
        async move { (done >= 1).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(third.writes(), 0, "{}", third.metrics.render().unwrap());
    third.stop().await;

    set_monitoring_crds(&admin, false).await;
}
