//! The node's configuration files, rendered from its layout with no I/O: containerd, the CNI
//! network, the kubelet and kube-proxy.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Addresses and names of the one node cluster a machine runs. They are fixed, not derived from
/// the cluster's name, because kube-proxy's iptables chains and the kubelet's cgroups are
/// machine-wide anyway: a lock file keeps a second node cluster from starting.
pub const HOST_INTERFACE: &str = "dfrhost0";
pub const POD_BRIDGE: &str = "dfrcni0";
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 234, 0, 1);
pub const POD_SUBNET: &str = "10.244.0.0/24";
pub const POD_GATEWAY: &str = "10.244.0.1";
pub const CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub const CNI_NETWORK: &str = "dfr-pods";
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
pub const PAUSE_IMAGE: &str = crate::images::PAUSE_REFERENCE;

/// Where one node keeps its files, and the ports it listens on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeLayout {
    pub node_name: String,
    /// Under the cluster's state dir: containerd's content, the kubelet's root, logs, volumes.
    pub state_dir: PathBuf,
    /// On tmpfs: containerd's state and sockets, which must not outlive a reboot.
    pub run_dir: PathBuf,
    pub kubelet_port: u16,
    pub kubelet_healthz_port: u16,
    pub proxy_healthz_port: u16,
    pub proxy_metrics_port: u16,
}

impl NodeLayout {
    pub fn containerd_config(&self) -> PathBuf {
        self.state_dir.join("containerd").join("config.toml")
    }
    pub fn containerd_root(&self) -> PathBuf {
        self.state_dir.join("containerd").join("root")
    }
    pub fn containerd_state(&self) -> PathBuf {
        self.run_dir.join("containerd")
    }
    pub fn containerd_socket(&self) -> PathBuf {
        self.run_dir.join("containerd.sock")
    }
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.state_dir.join("cni").join("net.d")
    }
    pub fn cni_ipam_dir(&self) -> PathBuf {
        self.state_dir.join("cni").join("ipam")
    }
    pub fn kubelet_root(&self) -> PathBuf {
        self.state_dir.join("kubelet")
    }
    pub fn kubelet_config(&self) -> PathBuf {
        self.state_dir.join("kubelet-config.json")
    }
    pub fn pod_logs(&self) -> PathBuf {
        self.state_dir.join("pod-logs")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.state_dir.join("resolv.conf")
    }
    pub fn proxy_config(&self) -> PathBuf {
        self.state_dir.join("kube-proxy-config.json")
    }
    pub fn volumes_dir(&self) -> PathBuf {
        self.state_dir.join("volumes")
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// containerd 1.6 as a private daemon: its own root, state and socket, the local pause image,
/// cgroupfs. `restrict_oom_score_adj` because these VMs deny CAP_SYS_RESOURCE, without which
/// every sandbox fails in runc with "can't get final child's PID from pipe".
pub fn containerd_toml(layout: &NodeLayout) -> String {
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
# Plugins a CRI node does not use; "opt" would create /opt/containerd on the host.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
"#,
        root = path(&layout.containerd_root()),
        state = path(&layout.containerd_state()),
        socket = path(&layout.containerd_socket()),
        pause = PAUSE_IMAGE,
        cni_bin = CNI_BIN_DIR,
        cni_conf = path(&layout.cni_conf_dir()),
    )
}

/// One bridge for every pod, addresses from host-local. No masquerading: nothing leaves this
/// machine.
pub fn cni_conflist(layout: &NodeLayout) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": POD_BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": POD_SUBNET, "gateway": POD_GATEWAY }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": path(&layout.cni_ipam_dir()),
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    })
}

pub fn kubelet_config(layout: &NodeLayout, pki: &Path) -> Value {
    json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": HOST_IP.to_string(),
        "port": layout.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": layout.kubelet_healthz_port,
        // These machines mount cgroup v1 and run no systemd.
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": false,
        "failSwapOn": false,
        // The kubelet may not raise its own OOM protection here (no CAP_SYS_RESOURCE).
        "oomScoreAdj": 0,
        "containerRuntimeEndpoint": format!("unix://{}", path(&layout.containerd_socket())),
        "authentication": {
            "anonymous": { "enabled": false },
            "webhook": { "enabled": true },
            "x509": { "clientCAFile": path(&pki.join("ca.crt")) }
        },
        "authorization": { "mode": "Webhook" },
        "tlsCertFile": path(&pki.join("kubelet-serving.crt")),
        "tlsPrivateKeyFile": path(&pki.join("kubelet-serving.key")),
        "clusterDomain": "cluster.local",
        "clusterDNS": [CLUSTER_DNS.to_string()],
        "resolvConf": path(&layout.resolv_conf()),
        "podLogsDir": path(&layout.pod_logs()),
        "serializeImagePulls": false,
        // A shared test machine: evict only when it is really out of room, and never garbage-
        // collect the locally built images, which no registry could give back.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%"
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "registerNode": true,
        "maxPods": 110
    })
}

pub fn kube_proxy_config(layout: &NodeLayout, kubeconfig: &Path) -> Value {
    json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": { "kubeconfig": path(kubeconfig) },
        "hostnameOverride": layout.node_name,
        "bindAddress": HOST_IP.to_string(),
        "healthzBindAddress": format!("127.0.0.1:{}", layout.proxy_healthz_port),
        "metricsBindAddress": format!("127.0.0.1:{}", layout.proxy_metrics_port),
        "clusterCIDR": POD_SUBNET,
        // These VMs do not let kube-proxy raise nf_conntrack_max or its own OOM score.
        // Zero leaves each setting as the machine has it.
        "conntrack": {
            "maxPerCore": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s"
        },
        "oomScoreAdj": 0,
        // Otherwise kube-proxy sets route_localnet so NodePorts answer on 127.0.0.1.
        "iptables": { "localhostNodePorts": false }
    })
}

pub fn kubelet_args(layout: &NodeLayout, kubeconfig: &Path) -> Vec<String> {
    vec![
        format!("--config={}", path(&layout.kubelet_config())),
        format!("--kubeconfig={}", path(kubeconfig)),
        format!("--root-dir={}", path(&layout.kubelet_root())),
        format!("--hostname-override={}", layout.node_name),
        format!("--node-ip={HOST_IP}"),
        // cAdvisor inside the kubelet names containers by asking containerd at this address
        // (a cAdvisor flag the kubelet still takes); at its default, which is not our
        // containerd's, it reports pod cgroups only and no per-container CPU series.
        format!("--containerd={}", path(&layout.containerd_socket())),
        "--v=1".into(),
    ]
}

pub fn kube_proxy_args(layout: &NodeLayout) -> Vec<String> {
    vec![format!("--config={}", path(&layout.proxy_config()))]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn layout() -> NodeLayout {
        NodeLayout {
            node_name: "dfr-node".into(),
            state_dir: "/s".into(),
            run_dir: "/run/dfr/t".into(),
            kubelet_port: 1,
            kubelet_healthz_port: 2,
            proxy_healthz_port: 3,
            proxy_metrics_port: 4,
        }
    }

    #[test]
    fn containerd_keeps_everything_private_and_restricts_oom_score_adj() {
        let toml = containerd_toml(&layout());
        assert!(toml.contains(r#"address = "/run/dfr/t/containerd.sock""#));
        assert!(toml.contains(r#"root = "/s/containerd/root""#));
        assert!(toml.contains("restrict_oom_score_adj = true"));
        assert!(toml.contains("SystemdCgroup = false"));
        assert!(toml.contains(r#"conf_dir = "/s/cni/net.d""#));
        assert!(toml.contains(PAUSE_IMAGE));
    }

    #[test]
    fn pods_get_addresses_from_one_bridge_without_masquerading() {
        let conf = cni_conflist(&layout());
        let bridge = &conf["plugins"][0];
        assert_eq!(bridge["bridge"], POD_BRIDGE);
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["ipam"]["dataDir"], "/s/cni/ipam");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], POD_SUBNET);
    }

    #[test]
    fn the_kubelet_listens_on_the_host_address_and_writes_logs_under_the_state_dir() {
        let config = kubelet_config(&layout(), Path::new("/s/pki"));
        assert_eq!(config["address"], "10.234.0.1");
        assert_eq!(config["port"], 1);
        assert_eq!(config["readOnlyPort"], 0);
        assert_eq!(config["cgroupDriver"], "cgroupfs");
        assert_eq!(config["podLogsDir"], "/s/pod-logs");
        assert_eq!(config["clusterDNS"][0], "10.96.0.10");
        assert_eq!(
            config["containerRuntimeEndpoint"],
            "unix:///run/dfr/t/containerd.sock"
        );
        let args = kubelet_args(&layout(), Path::new("/s/node.kubeconfig")).join(" ");
        assert!(args.contains("--root-dir=/s/kubelet"));
        assert!(args.contains("--node-ip=10.234.0.1"));
        // cAdvisor's containerd: the same socket the kubelet runs pods through.
        assert!(args.contains("--containerd=/run/dfr/t/containerd.sock"));
    }

    #[test]
    fn kube_proxy_leaves_conntrack_and_localnet_alone() {
        let config = kube_proxy_config(&layout(), Path::new("/s/kp.kubeconfig"));
        assert_eq!(config["mode"], "iptables");
        assert_eq!(config["conntrack"]["maxPerCore"], 0);
        assert_eq!(config["iptables"]["localhostNodePorts"], false);
        assert_eq!(config["healthzBindAddress"], "127.0.0.1:3");
    }
}
