//! What a node changes on the machine outside its state dir, recorded before `up` and put back
//! by `down`: sysctls the kubelet, kube-proxy and the bridge plugin set, host paths they create,
//! mounts, iptables chains, network interfaces and cgroups.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::config::{HOST_INTERFACE, HOST_IP, POD_BRIDGE};
use crate::controlplane::{Error, Result};

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
const CHAIN_PREFIXES: &[&str] = &["KUBE-", "CNI-"];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footprint {
    /// Each sysctl's value before the node started.
    pub sysctls: Vec<(String, String)>,
    /// Host paths that did not exist before the node started, so `down` removes them.
    pub created_paths: Vec<PathBuf>,
}

fn sysctl_path(name: &str) -> PathBuf {
    Path::new("/proc/sys").join(name.replace('.', "/"))
}

pub fn record() -> Footprint {
    let sysctls = SYSCTLS
        .iter()
        .filter_map(|name| {
            std::fs::read_to_string(sysctl_path(name))
                .ok()
                .map(|value| (name.to_string(), value.trim().to_string()))
        })
        .collect();
    let created_paths = HOST_PATHS
        .iter()
        .map(PathBuf::from)
        .filter(|p| std::fs::symlink_metadata(p).is_err())
        .collect();
    Footprint {
        sysctls,
        created_paths,
    }
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(Error::io(format!("running {program}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Io {
            what: format!("{program} {}", args.join(" ")),
            source: std::io::Error::other(
                String::from_utf8_lossy(&output.stderr).trim().to_string(),
            ),
        })
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

const BRIDGE_NF_CALL_IPTABLES: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// Traffic between two pods on the bridge must pass iptables, or a reply to a pod that reached
/// another through a Service IP skips the reverse NAT and is dropped. Recorded in SYSCTLS, so
/// `down` puts the old value back.
pub fn ensure_bridge_netfilter() -> Result<()> {
    match std::fs::read_to_string(BRIDGE_NF_CALL_IPTABLES) {
        Ok(value) if value.trim() == "1" => Ok(()),
        Ok(_) => std::fs::write(BRIDGE_NF_CALL_IPTABLES, "1")
            .map_err(Error::io(format!("setting {BRIDGE_NF_CALL_IPTABLES} to 1"))),
        Err(source) => Err(Error::Io {
            what: format!(
                "reading {BRIDGE_NF_CALL_IPTABLES}: the kernel's br_netfilter module is not loaded (load it with `modprobe br_netfilter`)"
            ),
            source,
        }),
    }
}

/// The address the API server advertises and the kubelet serves on: on an interface of our
/// own (a bridge without ports; these kernels have no dummy driver), so pods can route to it
/// and nothing depends on the machine's own addresses.
pub fn create_host_interface() -> Result<()> {
    if link_exists(HOST_INTERFACE) {
        run("ip", &["link", "del", HOST_INTERFACE])?;
    }
    run("ip", &["link", "add", HOST_INTERFACE, "type", "bridge"])?;
    run(
        "ip",
        &[
            "addr",
            "add",
            &format!("{HOST_IP}/32"),
            "dev",
            HOST_INTERFACE,
        ],
    )?;
    run("ip", &["link", "set", HOST_INTERFACE, "up"])?;
    Ok(())
}

/// Mount points at or under any of `roots`, deepest first.
pub fn mounts_under(mountinfo: &str, roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = roots
        .iter()
        .flat_map(|root| crate::images::mounts::mounts_under(mountinfo, root))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Splits an iptables-save rule the way iptables-restore reads it: words, with double-quoted
/// strings (comments) kept whole.
pub fn split_rule(rule: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = rule.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

fn is_ours(chain: &str) -> bool {
    CHAIN_PREFIXES
        .iter()
        .any(|prefix| chain.starts_with(prefix))
}

/// From one table's iptables-save output: the rules in other chains that jump to ours (to
/// delete), and our chains (to flush and delete).
pub fn our_iptables(save: &str) -> (Vec<Vec<String>>, Vec<String>) {
    let mut jumps = Vec::new();
    let mut chains = Vec::new();
    for line in save.lines() {
        if let Some(declaration) = line.strip_prefix(':') {
            if let Some(name) = declaration.split(' ').next().filter(|name| is_ours(name)) {
                chains.push(name.to_string());
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let words = split_rule(rule);
            let Some(chain) = words.first() else { continue };
            let target = words
                .windows(2)
                .find(|w| w[0] == "-j" || w[0] == "-g")
                .map(|w| w[1].as_str());
            if !is_ours(chain) && target.is_some_and(is_ours) {
                jumps.push(words);
            }
        }
    }
    (jumps, chains)
}

fn clean_iptables(problems: &mut Vec<String>) {
    for (save, tool) in [
        ("iptables-save", "iptables"),
        ("ip6tables-save", "ip6tables"),
    ] {
        for table in ["filter", "nat", "mangle", "raw"] {
            let Ok(saved) = run(save, &["-t", table]) else {
                continue;
            };
            let (jumps, chains) = our_iptables(&saved);
            for rule in jumps {
                let mut args: Vec<&str> = vec!["-w", "-t", table, "-D"];
                args.extend(rule.iter().map(String::as_str));
                if let Err(e) = run(tool, &args) {
                    problems.push(e.to_string());
                }
            }
            for verb in ["-F", "-X"] {
                for chain in &chains {
                    if let Err(e) = run(tool, &["-w", "-t", table, verb, chain]) {
                        problems.push(e.to_string());
                    }
                }
            }
        }
    }
}

/// Cgroups the kubelet made for pods (cgroupfs driver), in every v1 hierarchy.
fn kubepods_cgroups() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    for hierarchy in hierarchies.flatten() {
        let root = hierarchy.path().join("kubepods");
        if root.is_dir() {
            collect_dirs(&root, &mut found);
        }
    }
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

fn collect_dirs(dir: &Path, into: &mut Vec<PathBuf>) {
    into.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), into);
            }
        }
    }
}

/// Thaws every pod cgroup in the freezer hierarchy.
pub fn thaw_pods() {
    for cgroup in kubepods_cgroups() {
        let state = cgroup.join("freezer.state");
        if cgroup.starts_with("/sys/fs/cgroup/freezer") && state.exists() {
            let _ = std::fs::write(state, "THAWED");
        }
    }
}

/// PIDs still inside the pod cgroups: what is left of containers whose shim was killed.
pub fn pod_processes() -> Vec<i32> {
    let mut pids: Vec<i32> = kubepods_cgroups()
        .iter()
        .filter_map(|dir| std::fs::read_to_string(dir.join("cgroup.procs")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
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
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for mount in mounts_under(&mountinfo, &roots) {
        let target = mount.display().to_string();
        if let Err(e) = run("umount", &["-l", &target]) {
            problems.push(e.to_string());
        }
    }
    clean_iptables(&mut problems);
    for link in [POD_BRIDGE, HOST_INTERFACE] {
        if link_exists(link)
            && let Err(e) = run("ip", &["link", "del", link])
        {
            problems.push(e.to_string());
        }
    }
    for cgroup in kubepods_cgroups() {
        if let Err(e) = std::fs::remove_dir(&cgroup) {
            problems.push(format!("removing cgroup {}: {e}", cgroup.display()));
        }
    }
    for (name, value) in &footprint.sysctls {
        let path = sysctl_path(name);
        let now = std::fs::read_to_string(&path).unwrap_or_default();
        if now.trim() != value
            && let Err(e) = std::fs::write(&path, value)
        {
            problems.push(format!("restoring {name}={value}: {e}"));
        }
    }
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
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for mount in mounts_under(&mountinfo, &roots) {
        found.push(format!("mount {}", mount.display()));
    }
    for save in ["iptables-save", "ip6tables-save"] {
        if let Ok(saved) = run(save, &[]) {
            let (jumps, chains) = our_iptables(&saved);
            found.extend(chains.iter().map(|c| format!("{save}: chain {c}")));
            found.extend(
                jumps
                    .iter()
                    .map(|j| format!("{save}: rule {}", j.join(" "))),
            );
        }
    }
    for link in [POD_BRIDGE, HOST_INTERFACE] {
        if link_exists(link) {
            found.push(format!("interface {link}"));
        }
    }
    found.extend(
        kubepods_cgroups()
            .iter()
            .map(|c| format!("cgroup {}", c.display())),
    );
    for path in &footprint.created_paths {
        if std::fs::symlink_metadata(path).is_ok() {
            found.push(format!("path {}", path.display()));
        }
    }
    for (name, value) in &footprint.sysctls {
        let now = std::fs::read_to_string(sysctl_path(name)).unwrap_or_default();
        if now.trim() != value {
            found.push(format!("sysctl {name}={} (was {value})", now.trim()));
        }
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_mounts_under_the_roots_deepest_first_and_unescaped() {
        let mountinfo = "\
22 1 0:21 / / rw - ext4 /dev/vda rw
30 22 0:40 / /s/kubelet rw - ext4 /dev/vda rw
31 30 0:41 / /s/kubelet/pods/a/volumes/x rw - tmpfs tmpfs rw
32 22 0:42 / /run/netns/cni-1 rw - nsfs nsfs rw
33 22 0:43 / /other\\040dir rw - tmpfs tmpfs rw
";
        let found = mounts_under(mountinfo, &["/s".into(), "/run/netns".into()]);
        assert_eq!(
            found,
            vec![
                PathBuf::from("/s/kubelet/pods/a/volumes/x"),
                PathBuf::from("/run/netns/cni-1"),
                PathBuf::from("/s/kubelet"),
            ]
        );
        assert_eq!(
            mounts_under(mountinfo, &["/other dir".into()]),
            vec![PathBuf::from("/other dir")]
        );
    }

    #[test]
    fn splits_rules_keeping_quoted_comments_whole() {
        let rule = r#"KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -j KUBE-SVC-NPX"#;
        let words = split_rule(rule);
        assert_eq!(words[0], "KUBE-SERVICES");
        assert!(words.contains(&"default/kubernetes:https cluster IP".to_string()));
        assert_eq!(words.last().unwrap(), "KUBE-SVC-NPX");
    }

    #[test]
    fn only_our_chains_and_the_jumps_into_them_are_selected() {
        let save = "\
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:KUBE-SERVICES - [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -j DOCKER
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A KUBE-SERVICES -j RETURN
COMMIT
";
        let (jumps, chains) = our_iptables(save);
        assert_eq!(chains, vec!["KUBE-SERVICES", "CNI-HOSTPORT-DNAT"]);
        assert_eq!(jumps.len(), 2);
        assert_eq!(jumps[0][0], "PREROUTING");
        assert!(jumps[0].contains(&"kubernetes service portals".to_string()));
        assert_eq!(jumps[1].last().unwrap(), "CNI-HOSTPORT-DNAT");
    }
}
