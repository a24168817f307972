//! prometheus-adapter's rules file and the Prometheus address it is given, with no I/O.
//!
//! The adapter is a host process: the machine has no cluster DNS, and a headless Service (the
//! Prometheus Operator's `prometheus-operated`) has no address kube-proxy could route. So a
//! `<service>.<namespace>.svc` URL is turned into a ClusterIP one: the Service's own ClusterIP
//! if it has one, else that of a ClusterIP twin with the same selector (`dfr-cluster-<name>`),
//! which kube-proxy serves to the host. Its endpoints follow the Prometheus pods, so the URL
//! holds across their restarts and whether or not Prometheus exists yet at `up`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

use super::objects::labels;
use super::{LATENCY_METRIC, PROMETHEUS_ADAPTER};

/// The histogram every API pod serves on /metrics (port `metrics`, 9090), with the labels
/// `route`, `method` and `status`.
pub const HISTOGRAM: &str = "dfr_http_request_duration_seconds";
/// Scrapes are not API traffic. Today /metrics is served on its own port by a router that does
/// not record into the histogram, so this excludes nothing; it keeps the HPA's figure the one
/// the tenants' DfrApiLatencyHigh alert computes (`route!="/metrics"`) should that change.
const NOT_SCRAPES: &str = "route!=\"/metrics\"";

/// What the Prometheus Operator's governing Service `prometheus-operated` selects: every
/// Prometheus pod it runs. Used when the named Service does not exist yet.
const OPERATOR_PROMETHEUS_SELECTOR: (&str, &str) = ("app.kubernetes.io/name", "prometheus");

/// The adapter's `--config`, in upstream's format (pkg/config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub series_query: String,
    pub resources: Resources,
    pub name: NameMapping,
    pub metrics_query: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub overrides: BTreeMap<String, GroupResource>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupResource {
    pub resource: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NameMapping {
    pub matches: String,
    #[serde(rename = "as")]
    pub as_: String,
}

/// The p95 latency of each API pod over the last minute, in milliseconds, as the Pods metric
/// the tenants' HPA asks for. The series' `namespace` and `pod` labels (which Prometheus adds
/// from the scrape target) associate it with the pod.
pub fn config() -> AdapterConfig {
    let bucket = format!("{HISTOGRAM}_bucket");
    let resource = |name: &str| GroupResource {
        resource: name.to_string(),
    };
    AdapterConfig {
        rules: vec![Rule {
            series_query: format!("{bucket}{{namespace!=\"\",pod!=\"\"}}"),
            resources: Resources {
                overrides: BTreeMap::from([
                    ("namespace".to_string(), resource("namespace")),
                    ("pod".to_string(), resource("pod")),
                ]),
            },
            name: NameMapping {
                matches: format!("^{bucket}$"),
                as_: LATENCY_METRIC.to_string(),
            },
            metrics_query: format!(
                "histogram_quantile(0.95, sum by (namespace, pod, le) \
                 (rate({bucket}{{<<.LabelMatchers>>,{NOT_SCRAPES}}}[1m]))) * 1000"
            ),
        }],
    }
}

pub fn render(config: &AdapterConfig) -> String {
    serde_yaml::to_string(config).unwrap_or_default()
}

/// A URL whose host is a Service's cluster DNS name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceUrl {
    pub scheme: String,
    pub service: String,
    pub namespace: String,
    pub port: u16,
    /// Everything after the authority, possibly empty.
    pub rest: String,
}

/// `http://prometheus-operated.dfr-monitoring.svc:9090` and the like (`.svc.cluster.local` too);
/// `None` for any other URL, which is then used as it is.
pub fn parse_service_url(url: &str) -> Option<ServiceUrl> {
    let (scheme, after) = url.split_once("://")?;
    let (authority, rest) = match after.find('/') {
        Some(index) => after.split_at(index),
        None => (after, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()?),
        None => (authority, if scheme == "https" { 443 } else { 80 }),
    };
    let host = host
        .strip_suffix(".svc.cluster.local")
        .or_else(|| host.strip_suffix(".svc"))?;
    let (service, namespace) = host.split_once('.')?;
    if service.is_empty() || namespace.is_empty() || namespace.contains('.') {
        return None;
    }
    Some(ServiceUrl {
        scheme: scheme.to_string(),
        service: service.to_string(),
        namespace: namespace.to_string(),
        port,
        rest: rest.to_string(),
    })
}

/// The ClusterIP of `service` if kube-proxy can route it (not headless, not missing).
pub fn routable_cluster_ip(service: Option<&Service>) -> Option<String> {
    let spec = service?.spec.as_ref()?;
    let ip = spec.cluster_ip.as_deref()?;
    (!ip.is_empty() && ip != "None" && spec.selector.is_some()).then(|| ip.to_string())
}

pub fn twin_name(url: &ServiceUrl) -> String {
    format!("dfr-cluster-{}", url.service)
}

/// A ClusterIP Service with the selector of `original` (the Operator's default if it does not
/// exist yet), forwarding `url.port` to the port `original` forwards it to.
pub fn clusterip_twin(url: &ServiceUrl, original: Option<&Service>) -> Service {
    let spec = original.and_then(|s| s.spec.as_ref());
    let selector = spec.and_then(|s| s.selector.clone()).unwrap_or_else(|| {
        BTreeMap::from([(
            OPERATOR_PROMETHEUS_SELECTOR.0.to_string(),
            OPERATOR_PROMETHEUS_SELECTOR.1.to_string(),
        )])
    });
    let port = i32::from(url.port);
    let target_port = spec
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| ports.iter().find(|p| p.port == port))
        .and_then(|p| p.target_port.clone())
        .unwrap_or(IntOrString::Int(port));
    Service {
        metadata: ObjectMeta {
            name: Some(twin_name(url)),
            namespace: Some(url.namespace.clone()),
            labels: Some(labels(PROMETHEUS_ADAPTER)),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some("web".into()),
                port,
                target_port: Some(target_port),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// `url` with its host replaced by `ip`.
pub fn with_ip(url: &ServiceUrl, ip: &str) -> String {
    format!("{}://{ip}:{}{}", url.scheme, url.port, url.rest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_serves_the_metric_the_hpa_asks_for() {
        let yaml = render(&config());
        let parsed: AdapterConfig = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(parsed, config());
        let rule = &parsed.rules[0];
        assert_eq!(rule.name.as_, "dfr_http_request_duration_p95_milliseconds");
        assert_eq!(
            rule.metrics_query,
            "histogram_quantile(0.95, sum by (namespace, pod, le) \
             (rate(dfr_http_request_duration_seconds_bucket{<<.LabelMatchers>>,route!=\"/metrics\"}[1m]))) \
             * 1000"
        );
        assert_eq!(rule.resources.overrides["pod"].resource, "pod");
        assert_eq!(rule.resources.overrides["namespace"].resource, "namespace");
        // Upstream's keys, as its loader reads them.
        assert!(yaml.contains("seriesQuery:"));
        assert!(yaml.contains("metricsQuery:"));
        assert!(yaml.contains("as: dfr_http_request_duration_p95_milliseconds"));
    }

    #[test]
    fn service_urls_are_recognised_and_others_left_alone() {
        let url = parse_service_url("http://prometheus-operated.dfr-monitoring.svc:9090").unwrap();
        assert_eq!(url.service, "prometheus-operated");
        assert_eq!(url.namespace, "dfr-monitoring");
        assert_eq!(url.port, 9090);
        assert_eq!(with_ip(&url, "10.96.3.4"), "http://10.96.3.4:9090");
        let long = parse_service_url("https://p.mon.svc.cluster.local/prefix").unwrap();
        assert_eq!((long.port, long.rest.as_str()), (443, "/prefix"));
        assert_eq!(parse_service_url("http://10.234.0.1:9090"), None);
        assert_eq!(
            parse_service_url("http://prometheus.example.org:9090"),
            None
        );
    }

    #[test]
    fn a_headless_service_gets_a_routable_twin_with_its_selector() {
        let url = parse_service_url("http://prometheus-operated.dfr-monitoring.svc:9090").unwrap();
        let headless = Service {
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                selector: Some(BTreeMap::from([("app".into(), "p".into())])),
                ports: Some(vec![ServicePort {
                    port: 9090,
                    target_port: Some(IntOrString::String("web".into())),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        assert_eq!(routable_cluster_ip(Some(&headless)), None);
        let twin = clusterip_twin(&url, Some(&headless));
        assert_eq!(
            twin.metadata.name.as_deref(),
            Some("dfr-cluster-prometheus-operated")
        );
        let spec = twin.spec.unwrap();
        assert_eq!(spec.selector.unwrap()["app"], "p");
        let port = &spec.ports.unwrap()[0];
        assert_eq!(port.port, 9090);
        assert_eq!(port.target_port, Some(IntOrString::String("web".into())));
        // Before the stack exists: the Operator's own selector.
        let early = clusterip_twin(&url, None).spec.unwrap();
        assert_eq!(
            early.selector.unwrap()["app.kubernetes.io/name"],
            "prometheus"
        );
    }
}
