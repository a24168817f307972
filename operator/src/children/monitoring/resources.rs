//! Typed forms of the Prometheus Operator kinds the operator creates (monitoring.coreos.com/v1),
//! only the fields it sets. k8s-openapi has no types for them; implementing its `Resource` and
//! `Metadata` traits gives them kube's `Resource` too, so they are applied like every built-in
//! child. Deserialising a live object ignores the fields not listed here.

use std::collections::BTreeMap;

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

monitoring_kind!(PrometheusRule, PrometheusRuleSpec, "prometheusrules");
monitoring_kind!(PodMonitor, PodMonitorSpec, "podmonitors");

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusRuleSpec {
    pub groups: Vec<RuleGroup>,
}

/// A rule group as Prometheus reads it from a rules file (the same shape `promtool` checks).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleGroup {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    pub rules: Vec<Rule>,
}

/// A recording rule (`record`) or an alerting rule (`alert`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    pub expr: String,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitorSpec {
    /// Pods in the PodMonitor's own namespace that carry these labels.
    pub selector: LabelSelector,
    pub pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMetricsEndpoint {
    /// The container port's name.
    pub port: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    pub interval: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<SafeTlsConfig>,
}

/// TLS towards the target, with the CA taken from a Secret in the PodMonitor's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SafeTlsConfig {
    pub ca: SecretOrConfigMap,
    pub server_name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretOrConfigMap {
    pub secret: SecretKeySelector,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    pub name: String,
    pub key: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kube::Resource;

    #[test]
    fn the_kinds_have_their_group_version_and_plural() {
        let rule = PrometheusRule::new(ObjectMeta::default(), PrometheusRuleSpec::default());
        let json = serde_json::to_value(&rule).unwrap();
        assert_eq!(json["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(json["kind"], "PrometheusRule");
        assert_eq!(PodMonitor::plural(&()), "podmonitors");
        assert_eq!(PrometheusRule::group(&()), "monitoring.coreos.com");
    }

    #[test]
    fn a_rule_serialises_for_as_the_rules_file_spells_it() {
        let rule = Rule {
            alert: Some("A".into()),
            expr: "up == 0".into(),
            for_: Some("5m".into()),
            ..Rule::default()
        };
        let json = serde_json::to_value(&rule).unwrap();
        assert_eq!(json["for"], "5m");
        assert!(json.get("record").is_none());
    }
}
