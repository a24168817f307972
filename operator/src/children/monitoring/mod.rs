//! What a kube-prometheus-stack user expects of each tenant: PodMonitors for the API's and
//! Patroni's /metrics, a PrometheusRule with the specification's alerts, and Grafana
//! dashboards as ConfigMaps labelled for the Grafana sidecar. Pure builders; the reconcile
//! applies the Prometheus Operator kinds only where the cluster has them (see
//! [`crate::monitoring`]), and the dashboards (plain ConfigMaps) always.
//!
//! No PostgreSQL exporter runs beside Patroni (the dfr-postgres image carries none): the
//! database dashboard reads Patroni's own metrics and the API's connection pool.

pub mod catalog;
pub mod dashboards;
#[cfg(test)]
mod promtool_tests;
pub mod resources;
pub mod rules;
pub mod schedule;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::children::{child_meta, patroni};
use crate::settings::Settings;
use crate::tenant::Tenant;
use crate::{labels, naming};
use resources::{
    PodMetricsEndpoint, PodMonitorSpec, SafeTlsConfig, SecretKeySelector, SecretOrConfigMap,
};
pub use resources::{PodMonitor, PrometheusRule};

/// Component label of the monitoring objects.
pub const COMPONENT: &str = "monitoring";
pub const RULES: &str = "dfr-alerts";
pub const API_MONITOR: &str = "dfr-api";
pub const PATRONI_MONITOR: &str = "postgres-patroni";
pub const EXPORTER_MONITOR: &str = "postgres-exporter";
/// The label kube-prometheus-stack's Grafana sidecar looks for on dashboard ConfigMaps.
pub const GRAFANA_DASHBOARD_LABEL: &str = "grafana_dashboard";
pub const SCRAPE_INTERVAL: &str = "30s";

fn meta_labels(tenant: &Tenant) -> BTreeMap<String, String> {
    labels::component(tenant, "dfr-monitoring", COMPONENT)
}

pub fn desired_prometheus_rules(tenant: &Tenant, settings: &Settings) -> Vec<PrometheusRule> {
    vec![PrometheusRule::new(
        child_meta(tenant, RULES, meta_labels(tenant)),
        rules::desired_rule_spec(tenant, settings),
    )]
}

pub fn desired_pod_monitors(tenant: &Tenant, _settings: &Settings) -> Vec<PodMonitor> {
    let monitor = |name: &str, selector: BTreeMap<String, String>, endpoint| {
        PodMonitor::new(
            child_meta(tenant, name, meta_labels(tenant)),
            PodMonitorSpec {
                selector: LabelSelector {
                    match_labels: Some(selector),
                    ..LabelSelector::default()
                },
                pod_metrics_endpoints: vec![endpoint],
            },
        )
    };
    vec![
        monitor(
            API_MONITOR,
            labels::selector(tenant, labels::APP_API),
            PodMetricsEndpoint {
                port: "metrics".into(),
                path: "/metrics".into(),
                scheme: None,
                interval: SCRAPE_INTERVAL.into(),
                tls_config: None,
            },
        ),
        // Patroni's REST API serves TLS with the tenant CA's certificate, issued for the
        // Services' names rather than pod addresses: the scrape names one of them.
        monitor(
            PATRONI_MONITOR,
            patroni::selector(tenant),
            PodMetricsEndpoint {
                port: "patroni".into(),
                path: "/metrics".into(),
                scheme: Some("https".into()),
                interval: SCRAPE_INTERVAL.into(),
                tls_config: Some(SafeTlsConfig {
                    ca: SecretOrConfigMap {
                        secret: SecretKeySelector {
                            name: naming::SECRET_POSTGRES_TLS.into(),
                            key: "ca.crt".into(),
                        },
                    },
                    server_name: format!("{}.{}.svc", naming::POSTGRES_HEADLESS, tenant.namespace),
                }),
            },
        ),
        // The PostgreSQL exporter beside each member: plain HTTP inside the tenant's policies.
        monitor(
            EXPORTER_MONITOR,
            patroni::selector(tenant),
            PodMetricsEndpoint {
                port: "exporter".into(),
                path: "/metrics".into(),
                scheme: None,
                interval: SCRAPE_INTERVAL.into(),
                tls_config: None,
            },
        ),
    ]
}

/// One ConfigMap per dashboard, each holding one JSON file, as the Grafana sidecar reads them.
pub fn desired_dashboard_config_maps(tenant: &Tenant, settings: &Settings) -> Vec<ConfigMap> {
    dashboards::desired_dashboards(tenant, settings)
        .into_iter()
        .map(|dashboard| {
            let mut labels = meta_labels(tenant);
            labels.insert(GRAFANA_DASHBOARD_LABEL.into(), "1".into());
            ConfigMap {
                metadata: child_meta(tenant, &format!("dfr-dashboard-{}", dashboard.slug), labels),
                data: Some(BTreeMap::from([(
                    format!("dfr-{}-{}.json", tenant.name, dashboard.slug),
                    dashboard.json.to_string(),
                )])),
                ..ConfigMap::default()
            }
        })
        .collect()
}

/// The Prometheus rules file (`groups:`) the operator builds for a DfrCountry manifest, for
/// promtool or a Prometheus run without the Prometheus Operator. A manifest not read from a
/// cluster has no uid; the rules do not depend on it.
pub fn rules_file(manifest: &str, settings: &Settings) -> Result<String, String> {
    let mut country: dfr_crds::DfrCountry =
        serde_yaml::from_str(manifest).map_err(|e| format!("not a DfrCountry: {e}"))?;
    country
        .metadata
        .uid
        .get_or_insert_with(|| "00000000-0000-0000-0000-000000000000".into());
    let tenant = crate::validate::validate(&country).map_err(|e| e.to_string())?;
    serde_yaml::to_string(&rules::desired_rule_spec(&tenant, settings)).map_err(|e| e.to_string())
}

/// Whether the tenant's monitoring objects are in place, for its MonitoringReady condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitoringState {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::tests::sample;

    #[test]
    fn monitors_select_the_pods_and_ports_the_workloads_have() {
        let tenant = sample("ton-prod.yaml");
        let settings = Settings::default();
        let monitors = desired_pod_monitors(&tenant, &settings);
        let deployment = crate::children::api::desired_deployment(&tenant, &settings);
        let statefulset = patroni::desired_statefulset(&tenant, &settings);
        let template_labels = |spec: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>| {
            spec.unwrap().metadata.clone().unwrap().labels.unwrap()
        };
        let ports = |spec: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>| -> Vec<String> {
            spec.unwrap()
                .spec
                .clone()
                .unwrap()
                .containers
                .iter()
                .flat_map(|c| c.ports.clone().unwrap_or_default())
                .filter_map(|p| p.name)
                .collect()
        };
        let api_template = deployment.spec.as_ref().map(|s| &s.template);
        let db_template = statefulset.spec.as_ref().map(|s| &s.template);
        assert_eq!(monitors.len(), 3);
        for (monitor, template) in monitors
            .iter()
            .zip([api_template, db_template, db_template])
        {
            let wanted = monitor.spec.selector.match_labels.clone().unwrap();
            let have = template_labels(template);
            for (key, value) in &wanted {
                assert_eq!(have.get(key), Some(value), "{key}");
            }
            let port = &monitor.spec.pod_metrics_endpoints[0].port;
            assert!(ports(template).contains(port), "{port}");
            assert_eq!(monitor.metadata.namespace.as_deref(), Some("dfr-ton-prod"));
        }
        let tls = monitors[1].spec.pod_metrics_endpoints[0]
            .tls_config
            .clone()
            .unwrap();
        let names =
            crate::children::secrets::tls_names(&tenant, &settings, naming::SECRET_POSTGRES_TLS);
        assert!(
            names.contains(&tls.server_name),
            "{} not in {names:?}",
            tls.server_name
        );
    }

    #[test]
    fn a_manifest_becomes_a_rules_file() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/samples/ton-prod.yaml");
        let text = rules_file(
            &std::fs::read_to_string(path).unwrap(),
            &Settings::default(),
        )
        .unwrap();
        assert!(text.starts_with("groups:"), "{text}");
        assert!(text.contains("alert: DfrApiLatencyHigh"));
        assert!(rules_file("kind: Pod", &Settings::default()).is_err());
    }

    #[test]
    fn dashboards_are_labelled_for_the_grafana_sidecar() {
        let tenant = sample("ton-prod.yaml");
        let maps = desired_dashboard_config_maps(&tenant, &Settings::default());
        assert_eq!(maps.len(), 4);
        for map in maps {
            assert_eq!(
                map.metadata.labels.as_ref().unwrap()[GRAFANA_DASHBOARD_LABEL],
                "1"
            );
            let (file, json) = map.data.unwrap().into_iter().next().unwrap();
            assert!(file.ends_with(".json"));
            let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert!(!parsed["panels"].as_array().unwrap().is_empty());
        }
    }
}
