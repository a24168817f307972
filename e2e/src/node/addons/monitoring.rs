//! The monitoring pipeline of node clusters: the Prometheus Operator (a host process, see
//! `monitoring_operator`) with one Prometheus and one Alertmanager in `dfr-monitoring`, so the
//! PodMonitors and PrometheusRules the DFR operator makes in each tenant namespace are scraped
//! and evaluated live.
//!
//! Prometheus selects every PodMonitor, ServiceMonitor and PrometheusRule in every namespace
//! (monitors only in namespaces without `UNSCRAPED_NAMESPACE_LABEL`),
//! scrapes and evaluates every 15 s and sends alerts to the Alertmanager (the operator's default
//! configuration: one receiver that does nothing; read alerts from its `/api/v2/alerts`). Beside
//! the tenants' own monitors it scrapes the kubelet's cAdvisor (the CPU rules and dashboards read
//! `container_cpu_usage_seconds_total`) and the DFR operator's `/metrics` in `dfr-system` (the
//! backup, certificate, PII key and reconcile alerts read it). Services with stable names:
//! `PROMETHEUS_URL` and `ALERTMANAGER_URL`.
//!
//! `dfr-cluster up --node` installs it once DNS answers. Prometheus is 3.13.1 built from
//! e2e/prometheus-build (Debian's 2.42 has no Kubernetes service discovery, which every job the
//! operator writes uses); the Alertmanager is Debian's.

use std::collections::BTreeMap;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Namespace, Pod, ResourceRequirements, Service, ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint as SliceEndpoint, EndpointPort, EndpointSlice};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::monitoring_kinds::{
    AlertingSpec, Alertmanager, AlertmanagerEndpoints, AlertmanagerSpec, Endpoint,
    NamespaceSelector, PodMetricsEndpoint, PodMonitor, PodMonitorSpec, Prometheus, PrometheusSpec,
    RelabelConfig, ServiceMonitor, ServiceMonitorSpec, TlsConfig,
};
use super::{apply, meta, monitoring_operator};
use crate::host::binaries::PrometheusOperatorBinaries;
use crate::host::{Error, Result};
use crate::images::monitoring::{
    ALERTMANAGER_VERSION, PROMETHEUS_VERSION, alertmanager_reference, prometheus_reference,
};
use crate::node::NodeLayout;
use crate::node::config::HOST_IP;

pub const NAMESPACE: &str = "dfr-monitoring";
/// The name of the Prometheus and Alertmanager objects (their pods are `<kind>-dfr-0`).
pub const INSTANCE: &str = "dfr";
const PROMETHEUS_SERVICE: &str = "prometheus";
const ALERTMANAGER_SERVICE: &str = "alertmanager";
const PROMETHEUS_PORT: i32 = 9090;
const ALERTMANAGER_PORT: i32 = 9093;
/// What prometheus-adapter and tests query.
pub const PROMETHEUS_URL: &str = "http://prometheus.dfr-monitoring.svc:9090";
/// Where tests read firing alerts (`/api/v2/alerts`).
pub const ALERTMANAGER_URL: &str = "http://alertmanager.dfr-monitoring.svc:9093";
/// The service account Prometheus discovers and scrapes with.
const PROMETHEUS_ACCOUNT: &str = "prometheus";
const INTERVAL: &str = "15s";
/// Image pulls are local; this covers a slow start on a loaded machine.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// Where the DFR operator runs when installed from config/default, and its pods' labels.
const DFR_OPERATOR_NAMESPACE: &str = "dfr-system";
const DFR_OPERATOR_APP: &str = "dfr-operator";
const DFR_OPERATOR_PORT: &str = "http";
/// The selector-less Service whose EndpointSlice names the kubelet.
const KUBELET_SERVICE: &str = "kubelet";
const KUBELET_PORT_NAME: &str = "https-metrics";
/// Files every pod with a service account token has.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The cAdvisor series the DFR rules and dashboards read
/// (operator/src/children/monitoring/catalog.rs), plus memory for whoever looks; the rest of
/// cAdvisor's output is dropped at the scrape to keep Prometheus small.
const CADVISOR_KEEP: &str = "container_cpu_usage_seconds_total|container_memory_working_set_bytes";

fn app_labels(app: &str) -> BTreeMap<String, String> {
    super::labels(app)
}

fn selector(labels: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..LabelSelector::default()
    }
}

fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.to_string())),
            ("memory".to_string(), Quantity(memory.to_string())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity(memory_limit.to_string()),
        )])),
        ..ResourceRequirements::default()
    }
}

/// The namespace carries only the name label the API server sets itself: a tenant admits it with
/// `spec.network.monitoringNamespaceSelector: {matchLabels: {kubernetes.io/metadata.name:
/// dfr-monitoring}}`.
pub fn namespace() -> Namespace {
    Namespace {
        metadata: meta(NAMESPACE, None, "monitoring"),
        ..Namespace::default()
    }
}

/// Prometheus reads what its discovery needs and the kubelet's metrics (the kubelet authorises
/// `nodes/metrics` through the API server). It reads no Secret: the Prometheus Operator copies
/// the TLS material the PodMonitors name into Prometheus's own Secret.
pub fn prometheus_rbac() -> (ServiceAccount, ClusterRole, ClusterRoleBinding) {
    let name = "dfr-cluster:prometheus";
    let read = |group: &str, resources: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: vec!["get".into(), "list".into(), "watch".into()],
        ..PolicyRule::default()
    };
    (
        ServiceAccount {
            metadata: meta(PROMETHEUS_ACCOUNT, Some(NAMESPACE), "prometheus"),
            ..ServiceAccount::default()
        },
        ClusterRole {
            metadata: meta(name, None, "prometheus"),
            rules: Some(vec![
                read(
                    "",
                    &[
                        "nodes",
                        "nodes/metrics",
                        "services",
                        "endpoints",
                        "pods",
                        "configmaps",
                    ],
                ),
                read("discovery.k8s.io", &["endpointslices"]),
                PolicyRule {
                    non_resource_urls: Some(vec!["/metrics".into()]),
                    verbs: vec!["get".into()],
                    ..PolicyRule::default()
                },
            ]),
            ..ClusterRole::default()
        },
        ClusterRoleBinding {
            metadata: meta(name, None, "prometheus"),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: name.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: PROMETHEUS_ACCOUNT.into(),
                namespace: Some(NAMESPACE.into()),
                ..Subject::default()
            }]),
        },
    )
}

/// A namespace with this label is not scraped: the monitors in it select nothing. Tests use it
/// to take one tenant off Prometheus's view, as a broken scrape path would, without touching
/// the others.
pub const UNSCRAPED_NAMESPACE_LABEL: &str = "dfr-monitoring/unscraped";

pub fn prometheus() -> Prometheus {
    let everything = LabelSelector::default;
    let scraped_namespaces = || LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: UNSCRAPED_NAMESPACE_LABEL.into(),
            operator: "DoesNotExist".into(),
            values: None,
        }]),
        ..LabelSelector::default()
    };
    Prometheus::new(
        meta(INSTANCE, Some(NAMESPACE), "prometheus"),
        PrometheusSpec {
            image: prometheus_reference(),
            version: PROMETHEUS_VERSION.into(),
            replicas: 1,
            service_account_name: PROMETHEUS_ACCOUNT.into(),
            service_discovery_role: "EndpointSlice".into(),
            scrape_interval: INTERVAL.into(),
            evaluation_interval: INTERVAL.into(),
            // Its data is an emptyDir: tests need hours at most.
            retention: "1d".into(),
            pod_monitor_selector: everything(),
            pod_monitor_namespace_selector: scraped_namespaces(),
            service_monitor_selector: everything(),
            service_monitor_namespace_selector: scraped_namespaces(),
            rule_selector: everything(),
            rule_namespace_selector: everything(),
            alerting: AlertingSpec {
                alertmanagers: vec![AlertmanagerEndpoints {
                    namespace: NAMESPACE.into(),
                    name: ALERTMANAGER_SERVICE.into(),
                    port: "web".into(),
                }],
            },
            resources: resources("50m", "192Mi", "768Mi"),
        },
    )
}

/// Without a Secret `alertmanager-dfr` the Prometheus Operator gives it a configuration whose
/// only receiver does nothing, which is all the tests need: they read alerts from its API.
pub fn alertmanager() -> Alertmanager {
    Alertmanager::new(
        meta(INSTANCE, Some(NAMESPACE), "alertmanager"),
        AlertmanagerSpec {
            image: alertmanager_reference(),
            version: ALERTMANAGER_VERSION.into(),
            replicas: 1,
            resources: resources("10m", "32Mi", "128Mi"),
        },
    )
}

/// A ClusterIP Service in front of the pods the Prometheus Operator makes for `kind`
/// (`prometheus`, `alertmanager`), which label them `app.kubernetes.io/name: <kind>` and
/// `<kind>: <name>`; its port is theirs, `web`.
fn stable_service(name: &str, kind: &str, port: i32) -> Service {
    Service {
        metadata: meta(name, Some(NAMESPACE), kind),
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([
                ("app.kubernetes.io/name".to_string(), kind.to_string()),
                (kind.to_string(), INSTANCE.to_string()),
            ])),
            ports: Some(vec![ServicePort {
                name: Some("web".into()),
                port,
                target_port: Some(IntOrString::String("web".into())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub fn services() -> [Service; 2] {
    [
        stable_service(PROMETHEUS_SERVICE, "prometheus", PROMETHEUS_PORT),
        stable_service(ALERTMANAGER_SERVICE, "alertmanager", ALERTMANAGER_PORT),
    ]
}

/// The kubelet listens on the host interface on a port `up` picked, which the Prometheus
/// Operator's own `--kubelet-service` cannot know (it writes 10250): a selector-less Service and
/// the EndpointSlice that names the kubelet's address and port.
pub fn kubelet_endpoints(layout: &NodeLayout) -> (Service, EndpointSlice) {
    let mut slice_labels = app_labels("kubelet");
    slice_labels.insert(
        "kubernetes.io/service-name".into(),
        KUBELET_SERVICE.to_string(),
    );
    // Tells the EndpointSlice controller the slice is not its own.
    slice_labels.insert(
        "endpointslice.kubernetes.io/managed-by".into(),
        "dfr-cluster".into(),
    );
    let port = i32::from(layout.kubelet_port);
    (
        Service {
            metadata: meta(KUBELET_SERVICE, Some(NAMESPACE), "kubelet"),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                ports: Some(vec![ServicePort {
                    name: Some(KUBELET_PORT_NAME.into()),
                    port,
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        },
        EndpointSlice {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                labels: Some(slice_labels),
                ..meta(KUBELET_SERVICE, Some(NAMESPACE), "kubelet")
            },
            address_type: "IPv4".into(),
            endpoints: vec![SliceEndpoint {
                addresses: vec![HOST_IP.to_string()],
                node_name: Some(layout.node_name.clone()),
                ..SliceEndpoint::default()
            }],
            ports: Some(vec![EndpointPort {
                name: Some(KUBELET_PORT_NAME.into()),
                port: Some(port),
                protocol: Some("TCP".into()),
                ..EndpointPort::default()
            }]),
        },
    )
}

/// cAdvisor through the kubelet, over HTTPS with Prometheus's token; the kubelet's serving
/// certificate comes from the cluster CA, which every service account's `ca.crt` holds, and
/// names the host address Prometheus connects to.
pub fn kubelet_monitor() -> ServiceMonitor {
    ServiceMonitor::new(
        meta("kubelet-cadvisor", Some(NAMESPACE), "kubelet"),
        ServiceMonitorSpec {
            selector: selector(&[("app.kubernetes.io/name", "kubelet")]),
            endpoints: vec![Endpoint {
                port: KUBELET_PORT_NAME.into(),
                path: "/metrics/cadvisor".into(),
                scheme: "https".into(),
                interval: INTERVAL.into(),
                honor_labels: true,
                bearer_token_file: format!("{SERVICE_ACCOUNT_DIR}/token"),
                tls_config: TlsConfig {
                    ca_file: format!("{SERVICE_ACCOUNT_DIR}/ca.crt"),
                },
                metric_relabelings: vec![RelabelConfig {
                    source_labels: vec!["__name__".into()],
                    regex: CADVISOR_KEEP.into(),
                    action: "keep".into(),
                }],
            }],
        },
    )
}

/// The DFR operator's `/metrics` (port `http`) as config/default deploys it; kept here rather
/// than in its namespace, which may not exist yet when the cluster comes up.
pub fn dfr_operator_monitor() -> PodMonitor {
    PodMonitor::new(
        meta(DFR_OPERATOR_APP, Some(NAMESPACE), "dfr-operator"),
        PodMonitorSpec {
            selector: selector(&[("app.kubernetes.io/name", DFR_OPERATOR_APP)]),
            namespace_selector: NamespaceSelector {
                match_names: vec![DFR_OPERATOR_NAMESPACE.into()],
            },
            pod_metrics_endpoints: vec![PodMetricsEndpoint {
                port: DFR_OPERATOR_PORT.into(),
                path: "/metrics".into(),
                interval: INTERVAL.into(),
            }],
        },
    )
}

/// The CRDs, everything above, then the Prometheus Operator, which goes on to create Prometheus
/// and the Alertmanager: [`wait_ready`] waits for them.
pub async fn install(
    client: &kube::Client,
    layout: &NodeLayout,
    binaries: &PrometheusOperatorBinaries,
) -> Result<()> {
    monitoring_operator::install_crds(client, &binaries.operator).await?;
    apply_objects(client, layout).await?;
    // The node's kubeconfig names the API server as pods and the machine reach it.
    let access = monitoring_operator::api_access(&layout.state_dir.join("node.kubeconfig"))?;
    monitoring_operator::start(&layout.state_dir, binaries, &access).await
}

/// Waits for the pods the Prometheus Operator makes, `prometheus-dfr-0` and
/// `alertmanager-dfr-0`, to be Ready; the error names each one's state.
pub async fn wait_ready(client: &kube::Client) -> Result<()> {
    let timeout = READY_TIMEOUT;
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), NAMESPACE);
    let names = [
        format!("prometheus-{INSTANCE}-0"),
        format!("alertmanager-{INSTANCE}-0"),
    ];
    let deadline = Instant::now() + timeout;
    loop {
        let mut waiting = Vec::new();
        for name in &names {
            let pod = pods.get_opt(name).await.ok().flatten();
            if !pod.as_ref().is_some_and(pod_ready) {
                waiting.push(format!("{name}: {}", describe(pod.as_ref())));
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Io {
                what: format!("waiting for the monitoring pods in {NAMESPACE}"),
                source: std::io::Error::other(format!(
                    "not Ready after {} s: {}",
                    timeout.as_secs(),
                    waiting.join("; ")
                )),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The phase and each container's waiting or terminated reason, for an error message.
fn describe(pod: Option<&Pod>) -> String {
    let Some(status) = pod.and_then(|p| p.status.as_ref()) else {
        return "no pod".into();
    };
    let mut parts = vec![status.phase.clone().unwrap_or_default()];
    for container in status.container_statuses.iter().flatten() {
        let state = container.state.as_ref();
        let reason = state
            .and_then(|s| s.waiting.as_ref().and_then(|w| w.reason.clone()))
            .or_else(|| state.and_then(|s| s.terminated.as_ref().and_then(|t| t.reason.clone())))
            .unwrap_or_else(|| "running".into());
        parts.push(format!("{} {reason}", container.name));
    }
    parts.join(", ")
}

/// Applies everything above (the CRDs must be established first).
pub async fn apply_objects(client: &kube::Client, layout: &NodeLayout) -> Result<()> {
    use kube::Api;
    apply(Api::all(client.clone()), &namespace()).await?;
    let (account, role, binding) = prometheus_rbac();
    apply(Api::namespaced(client.clone(), NAMESPACE), &account).await?;
    apply(Api::all(client.clone()), &role).await?;
    apply(Api::all(client.clone()), &binding).await?;
    for service in services() {
        apply(Api::namespaced(client.clone(), NAMESPACE), &service).await?;
    }
    let (kubelet_service, kubelet_slice) = kubelet_endpoints(layout);
    apply(Api::namespaced(client.clone(), NAMESPACE), &kubelet_service).await?;
    apply(Api::namespaced(client.clone(), NAMESPACE), &kubelet_slice).await?;
    apply(
        Api::namespaced(client.clone(), NAMESPACE),
        &kubelet_monitor(),
    )
    .await?;
    apply(
        Api::namespaced(client.clone(), NAMESPACE),
        &dfr_operator_monitor(),
    )
    .await?;
    apply(Api::namespaced(client.clone(), NAMESPACE), &alertmanager()).await?;
    apply(Api::namespaced(client.clone(), NAMESPACE), &prometheus())
        .await
        .map(|_| ())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn layout() -> NodeLayout {
        NodeLayout {
            node_name: "dfr-x".into(),
            state_dir: "/s".into(),
            run_dir: "/r".into(),
            kubelet_port: 41234,
            kubelet_healthz_port: 2,
            proxy_healthz_port: 3,
            proxy_metrics_port: 4,
        }
    }

    #[test]
    fn prometheus_selects_every_monitor_and_rule_everywhere() {
        let json = serde_json::to_value(prometheus()).unwrap();
        let spec = &json["spec"];
        for field in [
            "podMonitorSelector",
            "serviceMonitorSelector",
            "ruleSelector",
            "ruleNamespaceSelector",
        ] {
            // `{}` selects everything; a missing selector would select nothing.
            assert_eq!(spec[field], serde_json::json!({}), "{field}");
        }
        for field in [
            "podMonitorNamespaceSelector",
            "serviceMonitorNamespaceSelector",
        ] {
            assert_eq!(
                spec[field],
                serde_json::json!({"matchExpressions": [
                    {"key": UNSCRAPED_NAMESPACE_LABEL, "operator": "DoesNotExist"}
                ]}),
                "{field}"
            );
        }
        assert_eq!(spec["scrapeInterval"], "15s");
        assert_eq!(spec["evaluationInterval"], "15s");
        assert_eq!(spec["image"], "dfr-prometheus:3.13.1");
        assert_eq!(spec["version"], "v3.13.1");
        assert_eq!(json["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(json["kind"], "Prometheus");
        let alertmanagers = &spec["alerting"]["alertmanagers"][0];
        assert_eq!(alertmanagers["name"], ALERTMANAGER_SERVICE);
        assert_eq!(alertmanagers["namespace"], NAMESPACE);
    }

    #[test]
    fn the_stable_urls_name_the_services_that_select_the_operators_pods() {
        let [prometheus, alertmanager] = services();
        for (service, url, kind) in [
            (prometheus, PROMETHEUS_URL, "prometheus"),
            (alertmanager, ALERTMANAGER_URL, "alertmanager"),
        ] {
            let name = service.metadata.name.clone().unwrap();
            let spec = service.spec.unwrap();
            let port = spec.ports.unwrap()[0].port;
            assert_eq!(url, format!("http://{name}.{NAMESPACE}.svc:{port}"));
            let selector = spec.selector.unwrap();
            assert_eq!(selector[kind], INSTANCE);
            assert_eq!(selector["app.kubernetes.io/name"], kind);
        }
    }

    #[test]
    fn the_kubelet_slice_names_the_port_up_picked_and_the_monitor_selects_it() {
        let (service, slice) = kubelet_endpoints(&layout());
        let labels = slice.metadata.labels.clone().unwrap();
        assert_eq!(
            labels["kubernetes.io/service-name"],
            service.metadata.name.clone().unwrap()
        );
        assert_eq!(slice.endpoints[0].addresses, vec!["10.234.0.1".to_string()]);
        assert_eq!(slice.ports.unwrap()[0].port, Some(41234));
        let monitor = kubelet_monitor();
        let wanted = monitor.spec.selector.match_labels.unwrap();
        let service_labels = service.metadata.labels.unwrap();
        assert!(wanted.iter().all(|(k, v)| service_labels.get(k) == Some(v)));
        let endpoint = &monitor.spec.endpoints[0];
        assert_eq!(
            endpoint.port,
            service.spec.unwrap().ports.unwrap()[0]
                .name
                .clone()
                .unwrap()
        );
        assert!(endpoint.honor_labels, "cAdvisor's namespace label is kept");
        assert!(
            endpoint.metric_relabelings[0]
                .regex
                .split('|')
                .any(|name| name == "container_cpu_usage_seconds_total")
        );
    }

    #[test]
    fn the_dfr_operator_monitor_matches_its_deployment() {
        let deployment = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../config/operator/deployment.yaml"),
        )
        .unwrap();
        let deployment: k8s_openapi::api::apps::v1::Deployment =
            serde_yaml::from_str(&deployment).unwrap();
        assert_eq!(
            deployment.metadata.namespace.as_deref(),
            Some(DFR_OPERATOR_NAMESPACE)
        );
        let template = deployment.spec.unwrap().template;
        let pod_labels = template.metadata.unwrap().labels.unwrap();
        let monitor = dfr_operator_monitor();
        let wanted = monitor.spec.selector.match_labels.unwrap();
        assert!(wanted.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
        let ports = template.spec.unwrap().containers[0].ports.clone().unwrap();
        assert!(
            ports
                .iter()
                .any(|p| p.name.as_deref() == Some(DFR_OPERATOR_PORT))
        );
        assert_eq!(
            monitor.spec.namespace_selector.match_names,
            vec![DFR_OPERATOR_NAMESPACE.to_string()]
        );
    }
}
