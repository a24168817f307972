//! What a node changes on the machine outside its state dir, recorded before `up` and put back
//! by `down`: sysctls the kubelet, kube-proxy and the bridge plugin set, host paths they create,
//! mounts, iptables chains, network interfaces and cgroups. The mechanisms are the host's; the
//! lists of what this node touches are here.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{network, pod_cgroups};
use crate::host::{command::run, iptables, mounts, sysctls};

/// Kernel settings the node's components may change (the kubelet's kernel tunables, the bridge
/// plugin's forwarding, kube-proxy's conntrack and localnet settings).
pub const SYSCTLS: &[&str] = &[
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
];

/// Paths the kubelet and containerd create whatever their configured roots are.
pub const HOST_PATHS: &[&str] = &[
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/cni",
    "/run/netns",
    "/run/containerd",
];

/// Chains of kube-proxy, the kubelet and the CNI plugins.
pub const CHAIN_PREFIXES: &[&str] = &["KUBE-", "CNI-"];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footprint {
    /// Each sysctl's value before the node started.
    pub sysctls: Vec<(String, String)>,
    /// Host paths that did not exist before the node started, so `down` removes them.
    pub created_paths: Vec<PathBuf>,
}

pub fn record() -> Footprint {
    let created_paths = HOST_PATHS
        .iter()
        .map(PathBuf::from)
        .filter(|p| std::fs::symlink_metadata(p).is_err())
        .collect();
    Footprint {
        sysctls: sysctls::read(SYSCTLS),
        created_paths,
    }
}

/// Puts the machine back as `record` found it. Best effort: every step runs, and what failed
/// is returned so `down` can report it.
pub fn restore(footprint: &Footprint, private_roots: &[PathBuf], pod_logs: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let mut roots = private_roots.to_vec();
    roots.extend(
        footprint
            .created_paths
            .iter()
            .filter(|p| !p.starts_with("/sys"))
            .cloned(),
    );
    for mount in mounts::mounts_under_any(&mounts::current(), &roots) {
        let target = mount.display().to_string();
        if let Err(e) = run("umount", &["-l", &target]) {
            problems.push(e.to_string());
        }
    }
    iptables::remove_chains(CHAIN_PREFIXES, &mut problems);
    problems.extend(network::remove_interfaces());
    problems.extend(pod_cgroups::remove());
    problems.extend(sysctls::restore(&footprint.sysctls));
    // Log links the kubelet made into our pod log dir, where /var/log/containers was shared.
    if let Ok(entries) = std::fs::read_dir("/var/log/containers") {
        for entry in entries.flatten() {
            if std::fs::read_link(entry.path()).is_ok_and(|target| target.starts_with(pod_logs)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    for path in &footprint.created_paths {
        if std::fs::symlink_metadata(path).is_ok()
            && let Err(e) = std::fs::remove_dir_all(path)
        {
            problems.push(format!("removing {}: {e}", path.display()));
        }
    }
    problems
}

/// What is still on the machine after `restore`: mounts, chains, interfaces, cgroups, host
/// paths or sysctls. `down` fails with this list rather than claim a clean machine.
pub fn leftovers(footprint: &Footprint, private_roots: &[PathBuf]) -> Vec<String> {
    let mut found = Vec::new();
    let mut roots = private_roots.to_vec();
    roots.extend(footprint.created_paths.iter().cloned());
    for mount in mounts::mounts_under_any(&mounts::current(), &roots) {
        found.push(format!("mount {}", mount.display()));
    }
    found.extend(iptables::remaining_chains(CHAIN_PREFIXES));
    found.extend(
        network::remaining_interfaces()
            .into_iter()
            .map(|link| format!("interface {link}")),
    );
    found.extend(
        pod_cgroups::all()
            .iter()
            .map(|c| format!("cgroup {}", c.display())),
    );
    for path in &footprint.created_paths {
        if std::fs::symlink_metadata(path).is_ok() {
            found.push(format!("path {}", path.display()));
        }
    }
    found.extend(sysctls::changed(&footprint.sysctls));
    found
}
