//! The command lines of etcd, kube-apiserver, kube-controller-manager and kube-scheduler,
//! with no I/O. Every file they name is under the cluster's state dir.

use std::net::IpAddr;
use std::path::Path;

use super::{CONTROLLER_MANAGER_KUBECONFIG, Ports, SCHEDULER_KUBECONFIG, SERVICE_CIDR, pki_dir};
use crate::host::pki::FRONT_PROXY_CLIENT;

pub fn etcd_args(state: &Path, ports: Ports) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    vec![
        "--name=dfr".into(),
        format!("--data-dir={}", state.join("etcd").display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=dfr={peer}"),
        // A throw-away test cluster: durability is not worth the fsync latency.
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]
}

/// `advertise` is loopback for a control plane alone; with a node it is the host interface's
/// address, where pods reach the API server through the `kubernetes` Service.
pub fn apiserver_args(state: &Path, ports: Ports, advertise: IpAddr) -> Vec<String> {
    let pki = pki_dir(state);
    let p = |name: &str| pki.join(name).display().to_string();
    let with_node = !advertise.is_loopback();
    let mut args = vec![
        format!("--etcd-servers=http://127.0.0.1:{}", ports.etcd_client),
        format!("--bind-address={advertise}"),
        format!("--secure-port={}", ports.apiserver),
        format!("--advertise-address={advertise}"),
        format!("--tls-cert-file={}", p("apiserver.crt")),
        format!("--tls-private-key-file={}", p("apiserver.key")),
        format!("--client-ca-file={}", p("ca.crt")),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", p("service-account.pub")),
        format!(
            "--service-account-signing-key-file={}",
            p("service-account.key")
        ),
        "--authorization-mode=Node,RBAC".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--allow-privileged=true".into(),
        "--profiling=false".into(),
    ];
    args.extend(aggregation_args(&pki));
    if with_node {
        args.extend([
            format!(
                "--kubelet-client-certificate={}",
                p("apiserver-kubelet-client.crt")
            ),
            format!("--kubelet-client-key={}", p("apiserver-kubelet-client.key")),
            "--kubelet-preferred-address-types=InternalIP".into(),
            // The metrics APIs run as host processes on the host interface, behind selectorless
            // Services whose EndpointSlices name that address. With this flag the aggregator
            // connects to the endpoint itself; without it, to the Service's ClusterIP, which
            // the API server (a host process) reaches only through kube-proxy's rules.
            "--enable-aggregator-routing=true".into(),
        ]);
    } else {
        // Without a node nothing could serve the `kubernetes` Service's endpoints.
        args.push("--endpoint-reconciler-type=none".into());
    }
    args
}

/// The aggregation layer: the API server proxies /apis/metrics.k8s.io and
/// /apis/custom.metrics.k8s.io to the metrics APIs as `front-proxy-client`, asserting the
/// caller in X-Remote-* headers, which they trust only from a certificate the front-proxy CA
/// issued under that name. It costs nothing until an APIService exists, so it is always on.
pub fn aggregation_args(pki: &Path) -> Vec<String> {
    let p = |name: &str| pki.join(name).display().to_string();
    vec![
        format!("--requestheader-client-ca-file={}", p("front-proxy-ca.crt")),
        format!("--requestheader-allowed-names={FRONT_PROXY_CLIENT}"),
        "--requestheader-username-headers=X-Remote-User".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        format!("--proxy-client-cert-file={}", p("front-proxy-client.crt")),
        format!("--proxy-client-key-file={}", p("front-proxy-client.key")),
    ]
}

pub fn scheduler_args(state: &Path, port: u16) -> Vec<String> {
    let kubeconfig = state.join(SCHEDULER_KUBECONFIG).display().to_string();
    vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        "--leader-elect=false".into(),
        "--profiling=false".into(),
    ]
}

pub fn controller_manager_args(state: &Path, ports: Ports) -> Vec<String> {
    let pki = pki_dir(state);
    let p = |name: &str| pki.join(name).display().to_string();
    let kubeconfig = state
        .join(CONTROLLER_MANAGER_KUBECONFIG)
        .display()
        .to_string();
    vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", ports.controller_manager),
        "--leader-elect=false".into(),
        "--use-service-account-credentials=true".into(),
        format!(
            "--service-account-private-key-file={}",
            p("service-account.key")
        ),
        format!("--root-ca-file={}", p("ca.crt")),
        format!("--cluster-signing-cert-file={}", p("ca.crt")),
        format!("--cluster-signing-key-file={}", p("ca.key")),
        "--controllers=*".into(),
        "--profiling=false".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> Ports {
        Ports {
            etcd_client: 1,
            etcd_peer: 2,
            apiserver: 3,
            controller_manager: 4,
        }
    }

    #[test]
    fn everything_listens_on_loopback_only() {
        let state = Path::new("/state");
        let etcd = etcd_args(state, ports()).join(" ");
        assert!(etcd.contains("--listen-client-urls=http://127.0.0.1:1"));
        assert!(etcd.contains("--listen-peer-urls=http://127.0.0.1:2"));
        let apiserver = apiserver_args(state, ports(), IpAddr::from([127, 0, 0, 1])).join(" ");
        assert!(apiserver.contains("--bind-address=127.0.0.1 --secure-port=3"));
        assert!(apiserver.contains("--etcd-servers=http://127.0.0.1:1"));
        let cm = controller_manager_args(state, ports()).join(" ");
        assert!(cm.contains("--bind-address=127.0.0.1 --secure-port=4"));
    }

    #[test]
    fn token_requests_and_rbac_are_enabled() {
        let apiserver =
            apiserver_args(Path::new("/s"), ports(), IpAddr::from([127, 0, 0, 1])).join(" ");
        assert!(
            apiserver.contains("--service-account-signing-key-file=/s/pki/service-account.key")
        );
        assert!(apiserver.contains("--authorization-mode=Node,RBAC"));
        let cm = controller_manager_args(Path::new("/s"), ports()).join(" ");
        assert!(cm.contains("--service-account-private-key-file=/s/pki/service-account.key"));
        assert!(cm.contains("--root-ca-file=/s/pki/ca.crt"));
    }

    #[test]
    fn the_aggregation_layer_trusts_only_the_front_proxy_ca() {
        let loopback =
            apiserver_args(Path::new("/s"), ports(), IpAddr::from([127, 0, 0, 1])).join(" ");
        assert!(loopback.contains("--requestheader-client-ca-file=/s/pki/front-proxy-ca.crt"));
        assert!(loopback.contains("--requestheader-allowed-names=front-proxy-client"));
        assert!(loopback.contains("--requestheader-username-headers=X-Remote-User"));
        assert!(loopback.contains("--requestheader-group-headers=X-Remote-Group"));
        assert!(loopback.contains("--requestheader-extra-headers-prefix=X-Remote-Extra-"));
        assert!(loopback.contains("--proxy-client-cert-file=/s/pki/front-proxy-client.crt"));
        assert!(loopback.contains("--proxy-client-key-file=/s/pki/front-proxy-client.key"));
        // The client CA stays the cluster CA: a front-proxy certificate is no login.
        assert!(loopback.contains("--client-ca-file=/s/pki/ca.crt"));
    }

    #[test]
    fn only_a_node_cluster_routes_to_endpoints() {
        // A control plane alone has no node address: its metrics APIs (if started) are behind
        // ExternalName Services, which only ClusterIP routing resolves.
        let loopback = apiserver_args(Path::new("/s"), ports(), IpAddr::from([127, 0, 0, 1]));
        assert!(
            !loopback
                .iter()
                .any(|a| a.starts_with("--enable-aggregator-routing"))
        );
        let node = apiserver_args(Path::new("/s"), ports(), IpAddr::from([10, 234, 0, 1]));
        assert!(node.contains(&"--enable-aggregator-routing=true".to_string()));
    }
}
