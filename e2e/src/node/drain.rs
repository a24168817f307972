//! Emptying the node before its daemons stop, so no container or pod network outlives them.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};

use super::config::NodeLayout;
use super::pod_cgroups;

const CTR: &str = "/usr/bin/ctr";
const DRAIN_TIMEOUT: Duration = Duration::from_secs(90);

/// Deletes every pod and waits until the kubelet has stopped their containers and torn down
/// their networks, so nothing is left running when the kubelet stops. The controllers must be
/// stopped already, or they would make new pods.
pub async fn drain(client: &kube::Client, layout: &NodeLayout) {
    pod_cgroups::thaw();
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
