//! The command lines of etcd, kube-apiserver, kube-controller-manager and kube-scheduler,
//! with no I/O. Every file they name is under the cluster's state dir.

use std::net::IpAddr;
use std::path::Path;

use super::{CONTROLLER_MANAGER_KUBECONFIG, Ports, SCHEDULER_KUBECONFIG, SERVICE_CIDR, pki_dir};

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
    if with_node {
        args.extend([
            format!(
                "--kubelet-client-certificate={}",
                p("apiserver-kubelet-client.crt")
            ),
            format!("--kubelet-client-key={}", p("apiserver-kubelet-client.key")),
            "--kubelet-preferred-address-types=InternalIP".into(),
        ]);
    } else {
        // Without a node nothing could serve the `kubernetes` Service's endpoints.
        args.push("--endpoint-reconciler-type=none".into());
    }
    args
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
}
