//! Typed forms of the Prometheus Operator kinds the monitoring add-on applies
//! (monitoring.coreos.com/v1), only the fields it sets. k8s-openapi has no types for them;
//! implementing its `Resource` and `Metadata` traits gives them kube's `Resource` too, so they are
//! applied like the built-in kinds.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

macro_rules! monitoring_kind {
    ($kind:ident, $spec:ty, $plural:literal) => {
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $kind {
            /// Always `monitoring.coreos.com/v1`; a field so that server-side apply sees it.
            pub api_version: String,
            pub kind: String,
            pub metadata: ObjectMeta,
            pub spec: $spec,
        }

        impl $kind {
            pub fn new(metadata: ObjectMeta, spec: $spec) -> Self {
                Self {
                    api_version: <Self as k8s_openapi::Resource>::API_VERSION.to_string(),
                    kind: <Self as k8s_openapi::Resource>::KIND.to_string(),
                    metadata,
                    spec,
                }
            }
        }

        impl k8s_openapi::Resource for $kind {
            const API_VERSION: &'static str = "monitoring.coreos.com/v1";
            const GROUP: &'static str = "monitoring.coreos.com";
            const KIND: &'static str = stringify!($kind);
            const VERSION: &'static str = "v1";
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = k8s_openapi::NamespaceResourceScope;
        }

        impl k8s_openapi::Metadata for $kind {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

monitoring_kind!(Prometheus, PrometheusSpec, "prometheuses");
monitoring_kind!(Alertmanager, AlertmanagerSpec, "alertmanagers");
monitoring_kind!(ServiceMonitor, ServiceMonitorSpec, "servicemonitors");
monitoring_kind!(PodMonitor, PodMonitorSpec, "podmonitors");

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSpec {
    pub image: String,
    /// Decides which flags and configuration fields the operator writes for the image.
    pub version: String,
    pub replicas: i32,
    pub service_account_name: String,
    /// `EndpointSlice`: how ServiceMonitors and the Alertmanager endpoints are discovered.
    pub service_discovery_role: String,
    pub scrape_interval: String,
    pub evaluation_interval: String,
    pub retention: String,
    /// An empty selector selects everything; a missing one selects nothing.
    pub pod_monitor_selector: LabelSelector,
    pub pod_monitor_namespace_selector: LabelSelector,
    pub service_monitor_selector: LabelSelector,
    pub service_monitor_namespace_selector: LabelSelector,
    pub rule_selector: LabelSelector,
    pub rule_namespace_selector: LabelSelector,
    pub alerting: AlertingSpec,
    pub resources: ResourceRequirements,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertingSpec {
    pub alertmanagers: Vec<AlertmanagerEndpoints>,
}

/// The Service (its endpoints) in front of an Alertmanager.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerEndpoints {
    pub namespace: String,
    pub name: String,
    pub port: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerSpec {
    pub image: String,
    pub version: String,
    pub replicas: i32,
    pub resources: ResourceRequirements,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    pub selector: LabelSelector,
    pub endpoints: Vec<Endpoint>,
}

/// A ServiceMonitor's scrape endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub port: String,
    pub path: String,
    pub scheme: String,
    pub interval: String,
    /// Keeps the target's own `namespace`, `pod` and `container` labels (cAdvisor's) over the
    /// ones discovery would add for the Service.
    pub honor_labels: bool,
    /// A file in the Prometheus container: its service account's token.
    pub bearer_token_file: String,
    pub tls_config: TlsConfig,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_relabelings: Vec<RelabelConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    /// A file in the Prometheus container.
    pub ca_file: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub regex: String,
    pub action: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitorSpec {
    pub selector: LabelSelector,
    pub namespace_selector: NamespaceSelector,
    pub pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    pub match_names: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMetricsEndpoint {
    pub port: String,
    pub path: String,
    pub interval: String,
}
