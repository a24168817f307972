//! The metrics APIs the HorizontalPodAutoscaler reads, served for real through the API server's
//! aggregation layer: metrics-server (`v1beta1.metrics.k8s.io`: pods' and nodes' CPU and memory,
//! scraped from the kubelet) and prometheus-adapter (`v1beta1.custom.metrics.k8s.io`: the API
//! pods' p95 latency from Prometheus), built from their Go modules (e2e/metrics-server-build,
//! e2e/prometheus-adapter-build).
//!
//! Both run as host processes, like the kubelet: no image to build, and their logs and PIDs sit
//! with the other daemons'. Each logs in to the API server with a client certificate of its own
//! (users `dfr-cluster:metrics-server`, `dfr-cluster:prometheus-adapter`) under the RBAC
//! upstream ships, and serves TLS with a certificate the cluster CA issued for its Service's
//! name, which its APIService's caBundle (the cluster CA) verifies. With a node they listen on
//! the host interface behind selectorless Services in `dfr-monitoring` whose EndpointSlices
//! name that address; a control plane alone (`dfr-cluster up --metrics-apis`, for checking the
//! aggregation without a node) runs them on loopback behind ExternalName Services.
//!
//! `prepare` writes their kubeconfigs and the adapter's rules, `start` applies the objects,
//! starts both and waits until both APIServices are Available, `stop` stops them by PID.

pub mod adapter;
pub mod objects;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde::{Deserialize, Serialize};

use super::addons::apply;
use super::config::HOST_IP;
use crate::host::ports::free_port;
use crate::host::{Error, Result, kubeconfig, pki, process};

pub use super::addons::monitoring::NAMESPACE;
/// Where prometheus-adapter asks Prometheus: the Service in front of the node cluster's
/// Prometheus (`addons::monitoring`). Change it here to point the adapter elsewhere; a headless
/// Service is reached through a ClusterIP twin (see `adapter`).
pub use super::addons::monitoring::PROMETHEUS_URL;
/// The Pods metric the tenants' HPA asks for (operator/src/children/api/hpa.rs).
pub const LATENCY_METRIC: &str = "dfr_http_request_duration_p95_milliseconds";
pub const METRICS_SERVER: &str = "metrics-server";
pub const PROMETHEUS_ADAPTER: &str = "prometheus-adapter";
/// As `process::stop_all` stops them.
pub const COMPONENTS: &[&str] = &[PROMETHEUS_ADAPTER, METRICS_SERVER];
/// On the host interface, which only the one node cluster of a machine has.
const NODE_METRICS_SERVER_PORT: u16 = 4443;
const NODE_ADAPTER_PORT: u16 = 4444;
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Where the two servers listen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub address: IpAddr,
    pub metrics_server_port: u16,
    pub adapter_port: u16,
}

impl Placement {
    /// Beside a node: the host interface's address, where the API server reaches them.
    pub fn node() -> Self {
        Self {
            address: IpAddr::from(HOST_IP),
            metrics_server_port: NODE_METRICS_SERVER_PORT,
            adapter_port: NODE_ADAPTER_PORT,
        }
    }

    /// With a control plane alone: loopback, on ports free now (several may run side by side).
    pub fn loopback() -> Result<Self> {
        Ok(Self {
            address: IpAddr::from(Ipv4Addr::LOCALHOST),
            metrics_server_port: free_port()?,
            adapter_port: free_port()?,
        })
    }

    /// Whether the aggregator reaches them through EndpointSlices (a node cluster, with
    /// --enable-aggregator-routing) rather than an ExternalName Service (loopback).
    pub fn routed_by_endpoints(&self) -> bool {
        !self.address.is_loopback()
    }

    /// What their serving certificates name, for `controlplane::prepare`.
    pub fn serving(&self) -> pki::MetricsApisServing<'static> {
        pki::MetricsApisServing {
            metrics_server: pki::ServingNames {
                service_dns: METRICS_SERVER_DNS,
                ip: self.address,
            },
            prometheus_adapter: pki::ServingNames {
                service_dns: PROMETHEUS_ADAPTER_DNS,
                ip: self.address,
            },
        }
    }
}

/// The names the aggregator checks their certificates against: `<service>.<namespace>.svc`.
const METRICS_SERVER_DNS: &str = "metrics-server.dfr-monitoring.svc";
const PROMETHEUS_ADAPTER_DNS: &str = "prometheus-adapter.dfr-monitoring.svc";

fn dir(state: &Path) -> PathBuf {
    state.join("metrics-apis")
}

fn kubeconfig_path(state: &Path, app: &str) -> PathBuf {
    dir(state).join(format!("{app}.kubeconfig"))
}

fn adapter_config_path(state: &Path) -> PathBuf {
    dir(state).join("adapter-config.yaml")
}

fn placement_path(state: &Path) -> PathBuf {
    dir(state).join("placement.json")
}

/// Writes both kubeconfigs (for the API server at `server`), the adapter's rules and where they
/// listen.
pub fn prepare(state: &Path, server: &str, pki_dir: &Path, placement: &Placement) -> Result<()> {
    let dir = dir(state);
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    for app in [METRICS_SERVER, PROMETHEUS_ADAPTER] {
        let content = kubeconfig::render(
            server,
            pki_dir,
            app,
            &format!("{app}.crt"),
            &format!("{app}.key"),
        );
        pki::write_file(&kubeconfig_path(state, app), &content, false)?;
    }
    pki::write_file(
        &adapter_config_path(state),
        &adapter::render(&adapter::config()),
        false,
    )?;
    pki::write_file(
        &placement_path(state),
        &serde_json::to_string_pretty(placement).unwrap_or_default(),
        false,
    )
}

/// metrics-server's command line. It reads each node's kubelet at the node's InternalIP and
/// status port (ours is not 10250) and verifies the kubelet's serving certificate against the
/// cluster CA, which issued it for the node's address.
pub fn metrics_server_args(state: &Path, pki_dir: &Path, placement: &Placement) -> Vec<String> {
    let p = |name: &str| pki_dir.join(name).display().to_string();
    let kubeconfig = kubeconfig_path(state, METRICS_SERVER).display().to_string();
    vec![
        format!("--bind-address={}", placement.address),
        format!("--secure-port={}", placement.metrics_server_port),
        format!("--tls-cert-file={}", p("metrics-server-serving.crt")),
        format!("--tls-private-key-file={}", p("metrics-server-serving.key")),
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        format!("--kubelet-certificate-authority={}", p("ca.crt")),
        format!("--kubelet-client-certificate={}", p("metrics-server.crt")),
        format!("--kubelet-client-key={}", p("metrics-server.key")),
        "--kubelet-preferred-address-types=InternalIP".into(),
        "--kubelet-use-node-status-port".into(),
        "--metric-resolution=15s".into(),
    ]
}

/// prometheus-adapter's command line; `prometheus_url` must be reachable from the host.
pub fn adapter_args(
    state: &Path,
    pki_dir: &Path,
    placement: &Placement,
    prometheus_url: &str,
) -> Vec<String> {
    let p = |name: &str| pki_dir.join(name).display().to_string();
    let kubeconfig = kubeconfig_path(state, PROMETHEUS_ADAPTER)
        .display()
        .to_string();
    vec![
        format!("--bind-address={}", placement.address),
        format!("--secure-port={}", placement.adapter_port),
        format!("--tls-cert-file={}", p("prometheus-adapter-serving.crt")),
        format!(
            "--tls-private-key-file={}",
            p("prometheus-adapter-serving.key")
        ),
        format!("--lister-kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        format!("--prometheus-url={prometheus_url}"),
        format!("--config={}", adapter_config_path(state).display()),
        // Upstream's default is 10 minutes: a new API pod's series would reach the HPA that
        // late.
        "--metrics-relist-interval=1m".into(),
    ]
}

fn kube_error(what: &str) -> impl FnOnce(kube::Error) -> Error + '_ {
    move |e| Error::Io {
        what: what.to_string(),
        source: std::io::Error::other(e),
    }
}

/// `PROMETHEUS_URL` as the host can reach it: through the named Service's ClusterIP, or that of
/// its ClusterIP twin when it is headless or not there yet.
async fn host_reachable_prometheus(client: &kube::Client, url: &str) -> Result<String> {
    let Some(parsed) = adapter::parse_service_url(url) else {
        return Ok(url.to_string());
    };
    let services: kube::Api<Service> = kube::Api::namespaced(client.clone(), &parsed.namespace);
    let original = services
        .get_opt(&parsed.service)
        .await
        .map_err(kube_error("reading the Prometheus Service"))?;
    if let Some(ip) = adapter::routable_cluster_ip(original.as_ref()) {
        return Ok(adapter::with_ip(&parsed, &ip));
    }
    let twin = apply(
        services,
        &adapter::clusterip_twin(&parsed, original.as_ref()),
    )
    .await?;
    let ip = adapter::routable_cluster_ip(Some(&twin)).ok_or_else(|| Error::Io {
        what: format!("allocating a ClusterIP for {}", adapter::twin_name(&parsed)),
        source: std::io::Error::other("the Service has no ClusterIP"),
    })?;
    Ok(adapter::with_ip(&parsed, &ip))
}

/// Applies the namespace, RBAC, Services and APIServices, starts both servers and waits until
/// both APIServices are Available.
pub async fn start(
    state: &Path,
    pki_dir: &Path,
    client: &kube::Client,
    metrics_server: &Path,
    prometheus_adapter: &Path,
) -> Result<()> {
    let text = std::fs::read_to_string(placement_path(state))
        .map_err(Error::io("reading the metrics APIs' placement"))?;
    let placement: Placement = serde_json::from_str(&text).map_err(|e| Error::Io {
        what: "parsing the metrics APIs' placement".into(),
        source: std::io::Error::other(e),
    })?;
    apply(
        kube::Api::<Namespace>::all(client.clone()),
        // The monitoring stack's: both apply it, so neither depends on the other's order.
        &super::addons::monitoring::namespace(),
    )
    .await?;
    let rbac = objects::rbac(pki::METRICS_SERVER_USER, pki::PROMETHEUS_ADAPTER_USER);
    for role in &rbac.cluster_roles {
        apply(kube::Api::<ClusterRole>::all(client.clone()), role).await?;
    }
    for binding in &rbac.cluster_role_bindings {
        apply(
            kube::Api::<ClusterRoleBinding>::all(client.clone()),
            binding,
        )
        .await?;
    }
    for binding in &rbac.role_bindings {
        let api = kube::Api::<RoleBinding>::namespaced(client.clone(), "kube-system");
        apply(api, binding).await?;
    }
    let ca = std::fs::read(pki_dir.join("ca.crt")).map_err(Error::io("reading the cluster CA"))?;
    let servers = [
        (
            METRICS_SERVER,
            objects::METRICS_GROUP,
            placement.metrics_server_port,
        ),
        (
            PROMETHEUS_ADAPTER,
            objects::CUSTOM_METRICS_GROUP,
            placement.adapter_port,
        ),
    ];
    for (app, group, port) in servers {
        let (service, slice) = objects::service(app, &placement, port);
        apply(kube::Api::namespaced(client.clone(), NAMESPACE), &service).await?;
        if let Some(slice) = slice {
            apply(
                kube::Api::<EndpointSlice>::namespaced(client.clone(), NAMESPACE),
                &slice,
            )
            .await?;
        }
        apply(
            kube::Api::<APIService>::all(client.clone()),
            &objects::api_service(group, app, port, &ca),
        )
        .await?;
    }
    let prometheus = host_reachable_prometheus(client, PROMETHEUS_URL).await?;
    let mut started = [
        process::spawn_program(
            metrics_server,
            METRICS_SERVER,
            &metrics_server_args(state, pki_dir, &placement),
            state,
        )?,
        process::spawn_program(
            prometheus_adapter,
            PROMETHEUS_ADAPTER,
            &adapter_args(state, pki_dir, &placement, &prometheus),
            state,
        )?,
    ];
    let api_services: kube::Api<APIService> = kube::Api::all(client.clone());
    let deadline = Instant::now() + READY_TIMEOUT;
    for (index, (_, group, _)) in servers.iter().enumerate() {
        let name = format!("{}.{group}", objects::VERSION);
        while !available(&api_services, &name).await {
            started[index].check_alive()?;
            if Instant::now() > deadline {
                return Err(started[index].not_ready(READY_TIMEOUT.as_secs()));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}

async fn available(api: &kube::Api<APIService>, name: &str) -> bool {
    let Ok(Some(service)) = api.get_opt(name).await else {
        return false;
    };
    service
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Available" && c.status == "True")
}

/// Stops both servers. Returns what it stopped.
pub fn stop(state: &Path) -> Result<Vec<String>> {
    process::stop_all(state, COMPONENTS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn certificates_name_the_services_the_aggregator_verifies() {
        assert_eq!(
            METRICS_SERVER_DNS,
            format!("{METRICS_SERVER}.{NAMESPACE}.svc")
        );
        assert_eq!(
            PROMETHEUS_ADAPTER_DNS,
            format!("{PROMETHEUS_ADAPTER}.{NAMESPACE}.svc")
        );
        let serving = Placement::node().serving();
        assert_eq!(serving.metrics_server.ip, IpAddr::from(HOST_IP));
    }

    #[test]
    fn metrics_server_trusts_the_kubelet_through_the_cluster_ca() {
        let args = metrics_server_args(Path::new("/s"), Path::new("/s/pki"), &Placement::node());
        assert!(args.contains(&"--kubelet-certificate-authority=/s/pki/ca.crt".to_string()));
        assert!(!args.iter().any(|a| a.contains("insecure")));
        assert!(args.contains(&"--kubelet-preferred-address-types=InternalIP".to_string()));
        assert!(args.contains(&"--kubelet-use-node-status-port".to_string()));
        assert!(args.contains(&"--bind-address=10.234.0.1".to_string()));
        assert!(args.contains(&"--secure-port=4443".to_string()));
        // Every path under the state dir: how `stop` recognises the process.
        assert!(
            args.iter()
                .any(|a| a.contains("/s/metrics-apis/metrics-server.kubeconfig"))
        );
    }

    #[test]
    fn the_adapter_asks_the_given_prometheus_with_the_generated_rules() {
        let args = adapter_args(
            Path::new("/s"),
            Path::new("/s/pki"),
            &Placement::node(),
            "http://10.96.7.7:9090",
        );
        assert!(args.contains(&"--prometheus-url=http://10.96.7.7:9090".to_string()));
        assert!(args.contains(&"--config=/s/metrics-apis/adapter-config.yaml".to_string()));
        assert!(args.contains(&"--secure-port=4444".to_string()));
        assert!(args.contains(
            &"--lister-kubeconfig=/s/metrics-apis/prometheus-adapter.kubeconfig".to_string()
        ));
    }

    #[test]
    fn prepare_writes_what_the_servers_read() {
        let state = std::env::temp_dir().join(format!("dfr-metrics-apis-{}", std::process::id()));
        let placement = Placement::loopback().unwrap();
        prepare(
            &state,
            "https://127.0.0.1:6443",
            &state.join("pki"),
            &placement,
        )
        .unwrap();
        let kubeconfig = std::fs::read_to_string(kubeconfig_path(&state, METRICS_SERVER)).unwrap();
        assert!(kubeconfig.contains("metrics-server.crt"));
        let config = std::fs::read_to_string(adapter_config_path(&state)).unwrap();
        assert!(config.contains(LATENCY_METRIC));
        let read: Placement =
            serde_json::from_str(&std::fs::read_to_string(placement_path(&state)).unwrap())
                .unwrap();
        assert_eq!(read, placement);
        assert!(!placement.routed_by_endpoints());
        std::fs::remove_dir_all(&state).unwrap();
    }
}
