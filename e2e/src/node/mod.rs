//! A real node for the local cluster: containerd with the CNI bridge, the kubelet, kube-proxy,
//! local volumes, in-cluster DNS, an S3 server and the metrics APIs on the host interface. `prepare` and `start`
//! bring it up next to a running control plane; `drain` and `stop` take it down and put the
//! machine back as it was. It knows the control plane only through the API server's address,
//! its certificates and a client.

pub mod addons;
pub mod config;
pub mod drain;
pub mod footprint;
pub mod images;
pub mod metrics_apis;
pub mod network;
pub mod network_policy;
pub mod pod_cgroups;
pub mod s3;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use serde::{Deserialize, Serialize};

pub use config::NodeLayout;
pub use drain::drain;

use crate::host::{Error, Result, kubeconfig, process};

const CONTAINERD: &str = "/usr/bin/containerd";
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// What `down` needs to know about a node that `up` started, kept in the state dir.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeRecord {
    pub layout: NodeLayout,
    pub footprint: footprint::Footprint,
}

pub fn record_path(state_dir: &Path) -> PathBuf {
    state_dir.join("node.json")
}

pub fn read_record(state_dir: &Path) -> Option<NodeRecord> {
    let text = std::fs::read_to_string(record_path(state_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn node_name(cluster: &str) -> String {
    format!("dfr-{cluster}")
}

/// Writes the node's configuration and kubeconfigs, records the host's state and creates the
/// host interface. Everything `down` undoes is recorded before it is changed.
pub fn prepare(layout: &NodeLayout, server: &str, pki: &Path) -> Result<()> {
    let record = NodeRecord {
        layout: layout.clone(),
        footprint: footprint::record(),
    };
    let write = |path: PathBuf, content: String| {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(Error::io(format!("creating {}", dir.display())))?;
        }
        std::fs::write(&path, content).map_err(Error::io(format!("writing {}", path.display())))
    };
    let json = |value: &serde_json::Value| serde_json::to_string_pretty(value).unwrap_or_default();
    write(
        record_path(&layout.state_dir),
        serde_json::to_string_pretty(&record).unwrap_or_default(),
    )?;
    write(layout.containerd_config(), config::containerd_toml(layout))?;
    write(
        layout.cni_conf_dir().join("10-dfr-pods.conflist"),
        json(&config::cni_conflist(layout)),
    )?;
    write(
        layout.kubelet_config(),
        json(&config::kubelet_config(layout, pki)),
    )?;
    // Pods resolve through the cluster DNS only; the machine's resolvers are not theirs.
    write(layout.resolv_conf(), String::new())?;
    let node_kubeconfig = layout.state_dir.join("node.kubeconfig");
    write(
        node_kubeconfig,
        kubeconfig::render(server, pki, "node", "node.crt", "node.key"),
    )?;
    let proxy_kubeconfig = layout.state_dir.join("kube-proxy.kubeconfig");
    write(
        proxy_kubeconfig.clone(),
        kubeconfig::render(
            server,
            pki,
            "kube-proxy",
            "kube-proxy.crt",
            "kube-proxy.key",
        ),
    )?;
    write(
        layout.proxy_config(),
        json(&config::kube_proxy_config(layout, &proxy_kubeconfig)),
    )?;
    for dir in [
        layout.containerd_root(),
        layout.containerd_state(),
        layout.pod_logs(),
        layout.volumes_dir(),
    ] {
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    }
    network::ensure_bridge_netfilter()?;
    network::create_host_interface()
}

/// Starts containerd, loads the images, starts the kubelet and kube-proxy, and installs the
/// cluster add-ons. Returns when the node is Ready and DNS answers.
pub async fn start(
    layout: &NodeLayout,
    bin_dir: &Path,
    client: &kube::Client,
    images: &[PathBuf],
) -> Result<()> {
    let state = &layout.state_dir;
    let mut containerd = process::spawn_program(
        Path::new(CONTAINERD),
        "containerd",
        &[
            "--config".to_string(),
            layout.containerd_config().display().to_string(),
        ],
        state,
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !layout.containerd_socket().exists() {
        containerd.check_alive()?;
        if Instant::now() > deadline {
            return Err(containerd.not_ready(30));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for archive in images {
        let name = archive.display().to_string();
        crate::images::import(archive, &layout.containerd_socket())
            .map_err(images::image_error(&name))?;
    }
    let mut kubelet = process::spawn(
        bin_dir,
        "kubelet",
        &config::kubelet_args(layout, &state.join("node.kubeconfig")),
        state,
    )?;
    let mut proxy = process::spawn(
        bin_dir,
        "kube-proxy",
        &config::kube_proxy_args(layout),
        state,
    )?;
    let nodes: kube::Api<Node> = kube::Api::all(client.clone());
    let deadline = Instant::now() + NODE_READY_TIMEOUT;
    while !node_ready(&nodes, &layout.node_name).await {
        kubelet.check_alive()?;
        proxy.check_alive()?;
        containerd.check_alive()?;
        if Instant::now() > deadline {
            return Err(kubelet.not_ready(NODE_READY_TIMEOUT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    addons::install(client, layout).await?;
    addons::dns_check::wait_for_dns(client, NODE_READY_TIMEOUT).await
}

async fn node_ready(nodes: &kube::Api<Node>, name: &str) -> bool {
    let Ok(Some(node)) = nodes.get_opt(name).await else {
        return false;
    };
    node.status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Stops the node's daemons and restores the machine. Containers that survived the drain are
/// killed through their cgroups, which only this node's kubelet creates. Returns what it
/// stopped and what it could not put back.
pub fn stop(record: &NodeRecord) -> Result<(Vec<String>, Vec<String>)> {
    let layout = &record.layout;
    let state = &layout.state_dir;
    // The metrics APIs and the S3 server first: they listen on the host interface, which
    // `restore` removes.
    let mut stopped = metrics_apis::stop(state)?;
    stopped.extend(process::stop_all(
        state,
        &[
            addons::monitoring_operator::COMPONENT,
            s3::COMPONENT,
            network_policy::COMPONENT,
            "kube-proxy",
            "kubelet",
        ],
    )?);
    // What a killed test started against this cluster and no pid file names.
    if let Ok(programs) = crate::host::binaries::cache_root() {
        stopped.extend(process::stop_strays(state, &programs)?);
    }
    // A frozen process cannot die; a test that froze a pod and failed may have left one.
    pod_cgroups::thaw();
    for pid in pod_cgroups::processes() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    stopped.extend(process::stop_all(state, &["containerd"])?);
    // Shims exit with their last container; give them a moment before cgroups are removed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pod_cgroups::processes().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let private_roots = [layout.state_dir.clone(), layout.run_dir.clone()];
    // kube-router's chains and ipsets: after it stopped (it would put them back) and before the
    // footprint's restore, which knows nothing of ipsets.
    let mut problems = network_policy::cleanup();
    problems.extend(footprint::restore(
        &record.footprint,
        &private_roots,
        &layout.pod_logs(),
    ));
    let _ = std::fs::remove_dir_all(&layout.run_dir);
    problems.extend(
        footprint::leftovers(&record.footprint, &private_roots)
            .into_iter()
            .chain(network_policy::leftovers())
            .map(|left| format!("left behind: {left}")),
    );
    Ok((stopped, problems))
}
