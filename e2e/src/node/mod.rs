//! A real node for the local cluster: containerd with the CNI bridge, the kubelet, kube-proxy,
//! local volumes and in-cluster DNS. `start` brings it up next to a running control plane;
//! `stop` drains it and puts the machine back as it was.

pub mod addons;
pub mod config;
pub mod host;
pub mod images;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams};
use serde::{Deserialize, Serialize};

pub use config::NodeLayout;

use crate::controlplane::{Error, Result, kubeconfig, process};

/// One node cluster per machine: kube-proxy's chains and the kubelet's cgroups are global.
pub const LOCK_FILE: &str = "/run/dfr/node.lock";
const CONTAINERD: &str = "/usr/bin/containerd";
const CTR: &str = "/usr/bin/ctr";
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(120);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(90);

/// What `down` needs to know about a node that `up` started, kept in the state dir.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeRecord {
    pub layout: NodeLayout,
    pub footprint: host::Footprint,
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

/// Takes the machine's node lock, or names the cluster that holds it.
pub fn lock(state_dir: &Path) -> Result<()> {
    let lock = Path::new(LOCK_FILE);
    if let Ok(holder) = std::fs::read_to_string(lock) {
        let holder = PathBuf::from(holder.trim());
        if holder != state_dir && record_path(&holder).exists() {
            return Err(Error::NodeBusy(holder));
        }
    }
    if let Some(dir) = lock.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    }
    std::fs::write(lock, state_dir.display().to_string())
        .map_err(Error::io(format!("writing {LOCK_FILE}")))
}

fn unlock(state_dir: &Path) {
    let held_by_us = std::fs::read_to_string(LOCK_FILE)
        .is_ok_and(|holder| Path::new(holder.trim()) == state_dir);
    if held_by_us {
        let _ = std::fs::remove_file(LOCK_FILE);
        let _ = std::fs::remove_dir("/run/dfr");
    }
}

/// Writes the node's configuration and kubeconfigs, records the host's state and creates the
/// host interface. Everything `down` undoes is recorded before it is changed.
pub fn prepare(layout: &NodeLayout, server: &str, pki: &Path) -> Result<()> {
    let record = NodeRecord {
        layout: layout.clone(),
        footprint: host::record(),
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
    host::ensure_bridge_netfilter()?;
    host::create_host_interface()
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
            return Err(not_ready(&containerd, 30));
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
            return Err(not_ready(&kubelet, NODE_READY_TIMEOUT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    addons::install(client, layout).await?;
    addons::wait_for_dns(client, NODE_READY_TIMEOUT).await
}

fn not_ready(started: &process::Started, seconds: u64) -> Error {
    Error::NotReady {
        component: started.component.clone(),
        seconds,
        log: started.log.clone(),
        tail: process::tail(&started.log, 20),
    }
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

/// Deletes every pod and waits until the kubelet has stopped their containers and torn down
/// their networks, so nothing is left running when the kubelet stops. The controllers must be
/// stopped already, or they would make new pods.
pub async fn drain(client: &kube::Client, layout: &NodeLayout) {
    host::thaw_pods();
    let pods: kube::Api<Pod> = kube::Api::all(client.clone());
    let Ok(list) = pods.list(&ListParams::default()).await else {
        return;
    };
    for pod in list.items {
        let (Some(namespace), Some(name)) = (pod.metadata.namespace, pod.metadata.name) else {
            continue;
        };
        let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), &namespace);
        let _ = api
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await;
    }
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while Instant::now() < deadline {
        if running_tasks(layout).is_some_and(|n| n == 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Processes containerd still runs: containers and the pause process of each sandbox. The
/// CRI stops a sandbox's pause process only after tearing down its network.
fn running_tasks(layout: &NodeLayout) -> Option<usize> {
    let output = std::process::Command::new(CTR)
        .arg("--address")
        .arg(layout.containerd_socket())
        .args(["-n", "k8s.io", "tasks", "ls", "-q"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).lines().count())
}

/// Stops the node's daemons and restores the machine. Containers that survived the drain are
/// killed through their cgroups, which only this node's kubelet creates.
pub fn stop(record: &NodeRecord) -> Result<(Vec<String>, Vec<String>)> {
    let layout = &record.layout;
    let state = &layout.state_dir;
    let stopped = process::stop_all(state, &["kube-proxy", "kubelet"])?;
    // A frozen process cannot die; a test that froze a pod and failed may have left one.
    host::thaw_pods();
    for pid in host::pod_processes() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let mut stopped = stopped;
    stopped.extend(process::stop_all(state, &["containerd"])?);
    // Shims exit with their last container; give them a moment before cgroups are removed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !host::pod_processes().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let private_roots = [layout.state_dir.clone(), layout.run_dir.clone()];
    let mut problems = host::restore(&record.footprint, &private_roots, &layout.pod_logs());
    let _ = std::fs::remove_dir_all(&layout.run_dir);
    problems.extend(
        host::leftovers(&record.footprint, &private_roots)
            .into_iter()
            .map(|left| format!("left behind: {left}")),
    );
    unlock(state);
    Ok((stopped, problems))
}
