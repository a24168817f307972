//! NetworkPolicy enforcement for the node: kube-router v2.1.0 (built from e2e/kube-router-build)
//! in firewall-only mode, as a host process beside the CNI bridge plugin and kube-proxy, like
//! metrics-server and the Prometheus Operator. `dfr-cluster up --node` starts it once the node
//! is Ready; `node::stop` stops it, then runs `cleanup` and reports `leftovers`.
//!
//! kube-router's network policy controller (pkg/controllers/netpol in v2.1.0) only ever writes
//! the filter table of iptables (and of ip6tables with IPv6 on, which is off here) and ipsets;
//! on SIGTERM it stops without removing any of them, and its own `--cleanup-config` also runs
//! the service proxy's and the router's clean-ups (IPVS, kube-bridge, routes), which this machine
//! must not have done to it. So `cleanup` removes, by name, exactly what the controller creates:
//!
//! - the chains KUBE-ROUTER-INPUT, KUBE-ROUTER-FORWARD, KUBE-ROUTER-OUTPUT and KUBE-NWPLCY-DEFAULT
//!   (network_policy_controller.go, the constants at the top and `ensureTopLevelChains`,
//!   `ensureDefaultNetworkPolicyChain`);
//! - the jumps into them that it inserts first in INPUT, FORWARD and OUTPUT, with the comment
//!   "kube-router netpol - <hash>" (`ensureTopLevelChains`);
//! - one KUBE-POD-FW-<16 base32> chain per pod on the node, policy or not (pod.go,
//!   `syncPodFirewallChains`, `podFirewallChainName`) and one KUBE-NWPLCY-<16 base32> chain per
//!   policy (policy.go, `networkPolicyChainName`), reached only from the chains above; their
//!   names include the sync's version, so each full sync makes new ones and drops the old;
//! - ipsets KUBE-SRC-<16 base32> and KUBE-DST-<16 base32> (policy.go, the `policy*IPSetName`
//!   functions), and TMP-<16 base32>, which pkg/utils/ipset.go `buildIPSetRestore` creates and
//!   destroys in one `ipset restore` and leaves behind only when that is interrupted.
//!
//! Beware on a shared machine: each full sync saves the whole filter table with `iptables-save`,
//! edits it and loads it back with `iptables-restore -T filter` without `--noflush`
//! (`fullPolicySync`, pkg/utils/iptables.go `Restore`). A rule another program adds to the
//! filter table between the two is lost.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};

use super::addons::{apply, meta};
use super::config::NodeLayout;
use crate::host::command::run;
use crate::host::iptables::{chains_and_jumps_where, split_rule};
use crate::host::{Error, Result, process};

pub const COMPONENT: &str = "kube-router";
/// Its informers' cache sync may take `--cache-sync-timeout` (1 min by default) before the
/// first full sync starts.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// The chains of kube-router's own names: the top-level chains its jumps lead to and the one
/// every pod without a policy goes through.
pub const FIXED_CHAINS: [&str; 4] = [
    "KUBE-ROUTER-INPUT",
    "KUBE-ROUTER-FORWARD",
    "KUBE-ROUTER-OUTPUT",
    "KUBE-NWPLCY-DEFAULT",
];
/// The built-in chains kube-router jumps from, each with its top-level chain (`defaultChains`).
pub const TOP_LEVEL_CHAINS: [(&str, &str); 3] = [
    ("INPUT", "KUBE-ROUTER-INPUT"),
    ("FORWARD", "KUBE-ROUTER-FORWARD"),
    ("OUTPUT", "KUBE-ROUTER-OUTPUT"),
];
/// Chains named per pod and per policy: the prefix, then the first 16 characters of a base32
/// SHA-256 (pod.go `podFirewallChainName`, policy.go `networkPolicyChainName`).
const HASHED_CHAIN_PREFIXES: [&str; 2] = ["KUBE-POD-FW-", "KUBE-NWPLCY-"];
/// ipsets named the same way (policy.go), and the temporary sets of pkg/utils/ipset.go, whose
/// suffix is the base32 of 10 bytes of a SHA-1, 16 characters too.
const HASHED_IPSET_PREFIXES: [&str; 3] = ["KUBE-SRC-", "KUBE-DST-", "TMP-"];
/// The prefix ipset requires on IPv6 sets (pkg/utils/ipset.go `IPv6SetPrefix`): kube-router
/// names them `inet6:KUBE-SRC-...`.
const IPV6_SET_PREFIX: &str = "inet6:";
/// Written by `ensureExplicitAccept` as the last rule of each top-level chain, and only by a full
/// sync, through `iptables-restore`: when all three have it, the first sync is in force.
const EXPLICIT_ACCEPT_MARK: &str = "0x20000/0x20000";
/// Each save tool with the tool that edits the same rules.
const FAMILIES: [(&str, &str); 2] = [
    ("iptables-save", "iptables"),
    ("ip6tables-save", "ip6tables"),
];

/// `--hostname-override` and the NODE_NAME variable both name the node: kube-router looks the
/// node up by $NODE_NAME first, then by the machine's hostname, and only then by the flag
/// (pkg/utils/node.go `GetNodeObject`), so a machine whose hostname is another node's name
/// would otherwise be taken for that node.
pub fn environment(layout: &NodeLayout) -> Vec<(&'static str, String)> {
    vec![("NODE_NAME", layout.node_name.clone())]
}

/// kube-router's arguments: the firewall (NetworkPolicy controller) and nothing else, and no
/// listening socket at all.
pub fn args(layout: &NodeLayout, service_cidr: &str) -> Vec<String> {
    vec![
        // The kubelet's kubeconfig (node::prepare writes it), as the node's identity; it is under
        // the state dir, which is how `process::stop_all` recognises the process.
        format!(
            "--kubeconfig={}",
            layout.state_dir.join("node.kubeconfig").display()
        ),
        format!("--hostname-override={}", layout.node_name),
        "--run-firewall=true".into(),
        // Pods are routed by the bridge plugin and Services by kube-proxy; kube-router's router
        // (BGP, its own CNI config) and service proxy (IPVS) would fight them, and are the two
        // parts with published advisories against v2.1.0 (see the README).
        "--run-router=false".into(),
        "--run-service-proxy=false".into(),
        "--run-loadbalancer=false".into(),
        "--enable-ipv4=true".into(),
        "--enable-ipv6=false".into(),
        // Traffic to Service addresses is let through KUBE-ROUTER-INPUT; its default,
        // 10.96.0.0/12, is wider than the cluster's range. (The node port range is left at its
        // default, 30000-32767, the API server's, which dfr-cluster does not change.)
        format!("--service-cluster-ip-range={service_cidr}"),
        // The health server listens on ":<port>", every interface, with no flag to narrow it, so
        // it is off; metrics (default off) and pprof (0.0.0.0:6060) are off too. Readiness is
        // read from iptables instead (`first_sync_applied`).
        "--health-port=0".into(),
        "--metrics-port=0".into(),
        "--enable-pprof=false".into(),
        // Level 1 logs each sync and how long it took, which is what its log is read for.
        "--v=1".into(),
    ]
}

/// Whether the filter table (`iptables-save -t filter`) shows kube-router's first full sync in
/// force: each built-in chain jumps to its top-level chain, and each top-level chain ends with
/// the explicit ACCEPT a full sync appends.
pub fn first_sync_applied(filter_save: &str) -> bool {
    let rules: Vec<Vec<String>> = filter_save
        .lines()
        .filter_map(|line| line.strip_prefix("-A "))
        .map(split_rule)
        .collect();
    let target = |rule: &[String]| {
        rule.windows(2)
            .find(|w| w[0] == "-j" || w[0] == "-g")
            .map(|w| w[1].clone())
    };
    TOP_LEVEL_CHAINS.iter().all(|(builtin, chain)| {
        let jumps = rules.iter().any(|r| {
            r.first() == Some(&builtin.to_string()) && target(r).as_deref() == Some(chain)
        });
        let last = rules
            .iter()
            .rfind(|r| r.first() == Some(&chain.to_string()));
        let accepts = last.is_some_and(|r| {
            r.iter().any(|word| word == EXPLICIT_ACCEPT_MARK)
                && target(r).as_deref() == Some("ACCEPT")
        });
        jumps && accepts
    })
}

fn is_base32_hash(suffix: &str) -> bool {
    suffix.len() == 16
        && suffix
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
}

fn has_hashed_name(name: &str, prefixes: &[&str]) -> bool {
    prefixes
        .iter()
        .any(|prefix| name.strip_prefix(prefix).is_some_and(is_base32_hash))
}

/// A chain kube-router's NetworkPolicy controller creates. Exact names and hash-shaped names
/// only: kube-proxy's KUBE-* chains, and anyone else's, never match.
pub fn is_kube_router_chain(name: &str) -> bool {
    FIXED_CHAINS.contains(&name) || has_hashed_name(name, &HASHED_CHAIN_PREFIXES)
}

/// An ipset kube-router's NetworkPolicy controller creates (IPv4 or IPv6).
pub fn is_kube_router_ipset(name: &str) -> bool {
    let name = name.strip_prefix(IPV6_SET_PREFIX).unwrap_or(name);
    has_hashed_name(name, &HASHED_IPSET_PREFIXES)
}

/// What to remove from one family's rules, per table (kube-router writes only filter, but a
/// leftover elsewhere is found too).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IptablesCleanup {
    /// (table, the rule's words after `-A`): rules in other chains that jump to kube-router's.
    pub jumps: Vec<(String, Vec<String>)>,
    /// (table, chain): kube-router's chains, to flush and then delete.
    pub chains: Vec<(String, String)>,
}

impl IptablesCleanup {
    pub fn is_empty(&self) -> bool {
        self.jumps.is_empty() && self.chains.is_empty()
    }
}

/// From `iptables-save` output (every table): kube-router's chains, and the rules outside them
/// that jump into them. Rules inside its chains go with their chain's flush.
pub fn plan_iptables_cleanup(save: &str) -> IptablesCleanup {
    let (jumps, chains) = chains_and_jumps_where(save, is_kube_router_chain);
    IptablesCleanup { jumps, chains }
}

/// kube-router's ipsets among the names `ipset list -n` prints, one a line.
pub fn kube_router_ipsets(list: &str) -> Vec<String> {
    list.lines()
        .map(str::trim)
        .filter(|name| is_kube_router_ipset(name))
        .map(str::to_string)
        .collect()
}

/// The clean-up as commands (program, arguments), in the order they must run: the jumps, then
/// every chain flushed (pod chains jump to policy chains, and a chain still referenced cannot
/// be deleted), then deleted.
pub fn iptables_commands(tool: &str, plan: &IptablesCleanup) -> Vec<(String, Vec<String>)> {
    let mut commands = Vec::new();
    for (table, rule) in &plan.jumps {
        let mut args: Vec<String> = vec!["-w".into(), "-t".into(), table.clone(), "-D".into()];
        args.extend(rule.iter().cloned());
        commands.push((tool.to_string(), args));
    }
    for verb in ["-F", "-X"] {
        for (table, chain) in &plan.chains {
            commands.push((
                tool.to_string(),
                vec![
                    "-w".into(),
                    "-t".into(),
                    table.clone(),
                    verb.into(),
                    chain.clone(),
                ],
            ));
        }
    }
    commands
}

/// The names `ipset list -n` prints, or none where the ipset tool is not installed (then
/// kube-router cannot have run: it needs it, pkg/utils/ipset.go `NewIPSet`).
fn ipset_names() -> Result<Option<String>> {
    match Command::new("ipset").args(["list", "-n"]).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io {
            what: "running ipset list -n".into(),
            source: e,
        }),
        Ok(output) if output.status.success() => {
            Ok(Some(String::from_utf8_lossy(&output.stdout).into_owned()))
        }
        Ok(output) => Err(Error::Io {
            what: "ipset list -n".into(),
            source: std::io::Error::other(
                String::from_utf8_lossy(&output.stderr).trim().to_string(),
            ),
        }),
    }
}

/// Removes what kube-router's NetworkPolicy controller left on the machine: the jumps into its
/// chains, its chains, then its ipsets (a set cannot be destroyed while a rule matches on it).
/// Run it after `stop`, or kube-router puts them back at its next sync. Touches nothing else;
/// best effort: every step runs and what failed is returned.
pub fn cleanup() -> Vec<String> {
    let mut problems = Vec::new();
    for (save, tool) in FAMILIES {
        let saved = match run(save, &[]) {
            Ok(saved) => saved,
            // ip6tables can be unusable where IPv6 is off; kube-router runs IPv4-only here, so
            // nothing of its is there to miss.
            Err(_) if save == "ip6tables-save" => continue,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        for (program, args) in iptables_commands(tool, &plan_iptables_cleanup(&saved)) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if let Err(e) = run(&program, &args) {
                problems.push(e.to_string());
            }
        }
    }
    match ipset_names() {
        Ok(Some(list)) => {
            for set in kube_router_ipsets(&list) {
                if let Err(e) = run("ipset", &["destroy", &set]) {
                    problems.push(e.to_string());
                }
            }
        }
        Ok(None) => {}
        Err(e) => problems.push(e.to_string()),
    }
    problems
}

/// kube-router's chains, jumps into them and ipsets still on the machine, for `down`'s check
/// that it left the machine as it found it.
pub fn leftovers() -> Vec<String> {
    let mut found = Vec::new();
    for (save, _) in FAMILIES {
        let Ok(saved) = run(save, &[]) else { continue };
        let plan = plan_iptables_cleanup(&saved);
        found.extend(
            plan.chains
                .iter()
                .map(|(table, chain)| format!("{save}: {table} chain {chain}")),
        );
        found.extend(
            plan.jumps
                .iter()
                .map(|(table, rule)| format!("{save}: {table} rule {}", rule.join(" "))),
        );
    }
    match ipset_names() {
        Ok(Some(list)) => found.extend(
            kube_router_ipsets(&list)
                .into_iter()
                .map(|set| format!("ipset {set}")),
        ),
        Ok(None) => {}
        Err(e) => found.push(format!("could not list ipsets: {e}")),
    }
    found
}

const RBAC_NAME: &str = "dfr-cluster:kube-router";

/// What kube-router reads beyond what the Node authorizer lets a node read: its informers
/// list and watch namespaces, pods, services, endpoints, endpointslices, nodes and
/// networkpolicies (pkg/cmd/kube-router.go `Run` starts all seven, and waits for all of them
/// whichever controllers run). Bound to this node's user only, not to the system:nodes group.
pub fn rbac(node_name: &str) -> (ClusterRole, ClusterRoleBinding) {
    let rule = |group: &str, resources: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: vec!["get".into(), "list".into(), "watch".into()],
        ..PolicyRule::default()
    };
    (
        ClusterRole {
            metadata: meta(RBAC_NAME, None, COMPONENT),
            rules: Some(vec![
                rule(
                    "",
                    &["namespaces", "pods", "services", "endpoints", "nodes"],
                ),
                rule("discovery.k8s.io", &["endpointslices"]),
                rule("networking.k8s.io", &["networkpolicies"]),
            ]),
            ..ClusterRole::default()
        },
        ClusterRoleBinding {
            metadata: meta(RBAC_NAME, None, COMPONENT),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: RBAC_NAME.into(),
            },
            subjects: Some(vec![Subject {
                kind: "User".into(),
                api_group: Some("rbac.authorization.k8s.io".into()),
                name: format!("system:node:{node_name}"),
                ..Subject::default()
            }]),
        },
    )
}

/// Applies `rbac`; the cluster must have it before `start`, or kube-router's cache sync times
/// out and it exits.
pub async fn install_rbac(client: &kube::Client, node_name: &str) -> Result<()> {
    let (role, binding) = rbac(node_name);
    apply(kube::Api::<ClusterRole>::all(client.clone()), &role).await?;
    apply(
        kube::Api::<ClusterRoleBinding>::all(client.clone()),
        &binding,
    )
    .await?;
    Ok(())
}

/// Starts kube-router and returns once its first full sync is in force. What an earlier run
/// that was killed left behind is removed first: kube-router would adopt it, and it would make
/// the first sync look done before it is.
pub async fn start(layout: &NodeLayout, binary: &Path, service_cidr: &str) -> Result<()> {
    if ipset_names()?.is_none() {
        return Err(Error::Io {
            what: "starting kube-router".into(),
            source: std::io::Error::other(
                "it needs the ipset tool (Debian's ipset; scripts/prereqs installs it)",
            ),
        });
    }
    let problems = cleanup();
    if !problems.is_empty() {
        return Err(Error::Restore(problems.join("\n")));
    }
    let environment = environment(layout);
    let environment: Vec<(&str, &str)> = environment
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    let mut router = process::spawn_program_with_env(
        binary,
        COMPONENT,
        &args(layout, service_cidr),
        &environment,
        &layout.state_dir,
    )?;
    let deadline = Instant::now() + SYNC_TIMEOUT;
    loop {
        router.check_alive()?;
        if run("iptables-save", &["-t", "filter"]).is_ok_and(|save| first_sync_applied(&save)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(router.not_ready(SYNC_TIMEOUT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Stops kube-router by the PID it recorded. Its rules stay in force until `cleanup`.
pub fn stop(state_dir: &Path) -> Result<Vec<String>> {
    process::stop_all(state_dir, &[COMPONENT])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn layout() -> NodeLayout {
        NodeLayout {
            node_name: "dfr-node".into(),
            state_dir: "/var/lib/dfr/node-state".into(),
            run_dir: "/run/dfr/t".into(),
            kubelet_port: 1,
            kubelet_healthz_port: 2,
            proxy_healthz_port: 3,
            proxy_metrics_port: 4,
        }
    }

    /// The filter table of a node with kube-proxy and kube-router after a sync, one pod under
    /// an ingress policy: the rules as kube-router's source writes them (the comments, marks
    /// and ipset matches of network_policy_controller.go, pod.go and policy.go), as
    /// iptables-save prints them, beside kube-proxy's and another program's.
    const FILTER: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables) on Mon Jan  1 00:00:00 2024
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:CI-RUNNER - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-NWPLCY-DEFAULT - [0:0]
:KUBE-NWPLCY-UE3LLSAT2BJYWKLZ - [0:0]
:KUBE-POD-FW-7MPZ2RHXBYG3RS3Q - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-ROUTER-FORWARD - [0:0]
:KUBE-ROUTER-INPUT - [0:0]
:KUBE-ROUTER-OUTPUT - [0:0]
:KUBE-SERVICES - [0:0]
-A INPUT -m comment --comment "kube-router netpol - 4IA2OSFRMVNDXBVV" -j KUBE-ROUTER-INPUT
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
-A INPUT -j KUBE-FIREWALL
-A INPUT -s 10.99.0.0/24 -j CI-RUNNER
-A FORWARD -m comment --comment "kube-router netpol - TEMCG2JMHZYE7H7T" -j KUBE-ROUTER-FORWARD
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A OUTPUT -m comment --comment "kube-router netpol - VEAAIY32XVBHCSCJ" -j KUBE-ROUTER-OUTPUT
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -j KUBE-FIREWALL
-A CI-RUNNER -j ACCEPT
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
-A KUBE-NWPLCY-DEFAULT -m comment --comment "rule to mark traffic matching a network policy" -j MARK --set-xmark 0x10000/0x10000
-A KUBE-NWPLCY-UE3LLSAT2BJYWKLZ -m comment --comment "rule to ACCEPT traffic from source pods to dest pods selected by policy name allow-api namespace default" -m set --match-set KUBE-SRC-PX3TQI3RM6GGYU5W src -m set --match-set KUBE-DST-Z2J7WDN6LK5IJMBY dst -m tcp -p tcp --dport 8080 -j MARK --set-xmark 0x10000/0x10000
-A KUBE-NWPLCY-UE3LLSAT2BJYWKLZ -m comment --comment "rule to ACCEPT traffic from source pods to dest pods selected by policy name allow-api namespace default" -m set --match-set KUBE-SRC-PX3TQI3RM6GGYU5W src -m set --match-set KUBE-DST-Z2J7WDN6LK5IJMBY dst -m tcp -p tcp --dport 8080 -m mark --mark 0x10000/0x10000 -j RETURN
-A KUBE-POD-FW-7MPZ2RHXBYG3RS3Q -m comment --comment "rule for stateful firewall for pod" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-POD-FW-7MPZ2RHXBYG3RS3Q -m comment --comment "rule to drop invalid state for pod" -m conntrack --ctstate INVALID -j DROP
-A KUBE-POD-FW-7MPZ2RHXBYG3RS3Q -d 10.244.0.5/32 -m comment --comment "rule to permit the traffic traffic to pods when source is the pod's local node" -m addrtype --src-type LOCAL -j ACCEPT
-A KUBE-POD-FW-7MPZ2RHXBYG3RS3Q -s 10.244.0.5/32 -m comment --comment "run through default egress network policy chain" -j KUBE-NWPLCY-DEFAULT
-A KUBE-POD-FW-7MPZ2RHXBYG3RS3Q -d 10.244.0.5/32 -m comment --comment "run through nw policy allow-api" -j KUBE-NWPLCY-UE3LLSAT2BJYWKLZ
-A KUBE-POD-FW-7MPZ2RHXBYG3RS3Q -m comment --comment "rule to log dropped traffic POD name:api-0 namespace: default" -m mark ! --mark 0x10000/0x10000 -m limit --limit 10/min --limit-burst 10 -j NFLOG --nflog-group 100
-A KUBE-POD-FW-7MPZ2RHXBYG3RS3Q -m comment --comment "rule to REJECT traffic destined for POD name:api-0 namespace: default" -m mark ! --mark 0x10000/0x10000 -j REJECT --reject-with icmp-port-unreachable
-A KUBE-POD-FW-7MPZ2RHXBYG3RS3Q -j MARK --set-xmark 0x0/0x10000
-A KUBE-POD-FW-7MPZ2RHXBYG3RS3Q -m comment --comment "set mark to ACCEPT traffic that comply to network policies" -j MARK --set-xmark 0x20000/0x20000
-A KUBE-ROUTER-FORWARD -d 10.244.0.5/32 -m comment --comment "rule to jump traffic destined to POD name:api-0 namespace: default to chain KUBE-POD-FW-7MPZ2RHXBYG3RS3Q" -j KUBE-POD-FW-7MPZ2RHXBYG3RS3Q
-A KUBE-ROUTER-FORWARD -d 10.244.0.5/32 -m physdev --physdev-is-bridged -m comment --comment "rule to jump traffic destined to POD name:api-0 namespace: default to chain KUBE-POD-FW-7MPZ2RHXBYG3RS3Q" -j KUBE-POD-FW-7MPZ2RHXBYG3RS3Q
-A KUBE-ROUTER-FORWARD -m comment --comment "rule to explicitly ACCEPT traffic that comply to network policies" -m mark --mark 0x20000/0x20000 -j ACCEPT
-A KUBE-ROUTER-INPUT -d 10.96.0.0/16 -m comment --comment "allow traffic to primary/secondary cluster IP range - 4QHPBEDEYTF6PZPK" -j RETURN
-A KUBE-ROUTER-INPUT -p tcp -m comment --comment "allow LOCAL TCP traffic to node ports - LR7XO7NXDBGQJD2M" -m addrtype --dst-type LOCAL -m multiport --dports 30000:32767 -j RETURN
-A KUBE-ROUTER-INPUT -p udp -m comment --comment "allow LOCAL UDP traffic to node ports - 76UCBPIZNGJNWNUZ" -m addrtype --dst-type LOCAL -m multiport --dports 30000:32767 -j RETURN
-A KUBE-ROUTER-INPUT -m comment --comment "rule to explicitly ACCEPT traffic that comply to network policies" -m mark --mark 0x20000/0x20000 -j ACCEPT
-A KUBE-ROUTER-OUTPUT -d 10.244.0.5/32 -m comment --comment "rule to jump traffic destined to POD name:api-0 namespace: default to chain KUBE-POD-FW-7MPZ2RHXBYG3RS3Q" -j KUBE-POD-FW-7MPZ2RHXBYG3RS3Q
-A KUBE-ROUTER-OUTPUT -m comment --comment "rule to explicitly ACCEPT traffic that comply to network policies" -m mark --mark 0x20000/0x20000 -j ACCEPT
COMMIT
"#;

    #[test]
    fn kube_router_runs_its_firewall_alone_and_listens_nowhere() {
        let args = args(&layout(), "10.96.0.0/16");
        for expected in [
            "--kubeconfig=/var/lib/dfr/node-state/node.kubeconfig",
            "--hostname-override=dfr-node",
            "--run-firewall=true",
            "--run-router=false",
            "--run-service-proxy=false",
            "--run-loadbalancer=false",
            "--enable-ipv6=false",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--health-port=0",
            "--metrics-port=0",
            "--enable-pprof=false",
        ] {
            assert!(args.contains(&expected.to_string()), "{expected}");
        }
        assert!(
            args.iter().any(|a| a.contains("/var/lib/dfr/node-state")),
            "stop_all's marker"
        );
        assert_eq!(
            environment(&layout()),
            vec![("NODE_NAME", "dfr-node".to_string())]
        );
    }

    #[test]
    fn only_kube_routers_own_chains_and_ipsets_are_recognised() {
        for chain in [
            "KUBE-ROUTER-INPUT",
            "KUBE-ROUTER-FORWARD",
            "KUBE-ROUTER-OUTPUT",
            "KUBE-NWPLCY-DEFAULT",
            "KUBE-POD-FW-7MPZ2RHXBYG3RS3Q",
            "KUBE-NWPLCY-UE3LLSAT2BJYWKLZ",
        ] {
            assert!(is_kube_router_chain(chain), "{chain}");
        }
        for chain in [
            "INPUT",
            "KUBE-SERVICES",
            "KUBE-FORWARD",
            "KUBE-FIREWALL",
            "KUBE-PROXY-FIREWALL",
            "KUBE-NODEPORTS",
            "KUBE-SVC-NPX46M4PTMTKRN6Y",
            "KUBE-SEP-ABCDEFGHIJKLMNOP",
            // kube-router's router and proxy chains: never created in firewall-only mode.
            "KUBE-ROUTER-SERVICES",
            "KUBE-POD-FW-short",
            "KUBE-POD-FW-7MPZ2RHXBYG3RS3QX",
            "KUBE-NWPLCY-ue3llsat2bjywklz",
            "CNI-HOSTPORT-DNAT",
        ] {
            assert!(!is_kube_router_chain(chain), "{chain}");
        }
        let list = "KUBE-SRC-PX3TQI3RM6GGYU5W\nKUBE-DST-Z2J7WDN6LK5IJMBY\nTMP-ORSXG5DJNZTXGZLU\ninet6:KUBE-DST-Z2J7WDN6LK5IJMBY\nKUBE-CLUSTER-IP\nKUBE-LOOP-BACK\nci-allowlist\nTMP-mine\nKUBE-SRC-PX3TQI3RM6GGYU5W-old\n";
        assert_eq!(
            kube_router_ipsets(list),
            vec![
                "KUBE-SRC-PX3TQI3RM6GGYU5W",
                "KUBE-DST-Z2J7WDN6LK5IJMBY",
                "TMP-ORSXG5DJNZTXGZLU",
                "inet6:KUBE-DST-Z2J7WDN6LK5IJMBY",
            ]
        );
        assert!(kube_router_ipsets("").is_empty());
    }

    #[test]
    fn the_cleanup_removes_the_three_jumps_and_its_chains_and_nothing_else() {
        let mut save = FILTER.to_string();
        save.push_str("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\nCOMMIT\n");
        let plan = plan_iptables_cleanup(&save);
        let jumps: Vec<(&str, &str, &str)> = plan
            .jumps
            .iter()
            .map(|(table, rule)| {
                (
                    table.as_str(),
                    rule[0].as_str(),
                    rule.last().unwrap().as_str(),
                )
            })
            .collect();
        assert_eq!(
            jumps,
            vec![
                ("filter", "INPUT", "KUBE-ROUTER-INPUT"),
                ("filter", "FORWARD", "KUBE-ROUTER-FORWARD"),
                ("filter", "OUTPUT", "KUBE-ROUTER-OUTPUT"),
            ]
        );
        assert!(
            plan.jumps[0]
                .1
                .contains(&"kube-router netpol - 4IA2OSFRMVNDXBVV".to_string())
        );
        let chains: Vec<&str> = plan.chains.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(
            chains,
            vec![
                "KUBE-NWPLCY-DEFAULT",
                "KUBE-NWPLCY-UE3LLSAT2BJYWKLZ",
                "KUBE-POD-FW-7MPZ2RHXBYG3RS3Q",
                "KUBE-ROUTER-FORWARD",
                "KUBE-ROUTER-INPUT",
                "KUBE-ROUTER-OUTPUT",
            ]
        );
        assert!(plan.chains.iter().all(|(table, _)| table == "filter"));

        let commands = iptables_commands("iptables", &plan);
        assert_eq!(commands.len(), 3 + 6 + 6);
        // The jump is deleted by its full specification, quoted comment as one word.
        assert_eq!(
            commands[0].1,
            [
                "-w",
                "-t",
                "filter",
                "-D",
                "INPUT",
                "-m",
                "comment",
                "--comment",
                "kube-router netpol - 4IA2OSFRMVNDXBVV",
                "-j",
                "KUBE-ROUTER-INPUT"
            ]
        );
        // Every flush before the first delete.
        let verbs: Vec<&str> = commands[3..]
            .iter()
            .map(|(_, args)| args[3].as_str())
            .collect();
        assert_eq!(verbs[..6], ["-F"; 6]);
        assert_eq!(verbs[6..], ["-X"; 6]);
        assert!(commands.iter().all(|(tool, _)| tool == "iptables"));
        // Never a whole table, never a chain that is not kube-router's.
        for (_, args) in &commands[3..] {
            assert_eq!(args.len(), 5);
            assert!(is_kube_router_chain(&args[4]));
        }
    }

    #[test]
    fn a_machine_without_kube_router_has_nothing_to_clean() {
        let without: String = FILTER
            .lines()
            .filter(|line| !line.contains("KUBE-ROUTER") && !line.contains("KUBE-POD-FW"))
            .filter(|line| !line.contains("KUBE-NWPLCY"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(plan_iptables_cleanup(&without).is_empty());
        assert!(plan_iptables_cleanup("").is_empty());
        assert!(iptables_commands("iptables", &IptablesCleanup::default()).is_empty());
    }

    #[test]
    fn the_first_sync_is_in_force_only_with_every_jump_and_explicit_accept() {
        assert!(first_sync_applied(FILTER));
        // Before the first full sync: the top-level chains and jumps exist
        // (`ensureTopLevelChains` runs first), the explicit ACCEPTs do not.
        let before: String = FILTER
            .lines()
            .filter(|line| !line.contains("explicitly ACCEPT"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(!first_sync_applied(&before));
        let no_output_jump: String = FILTER
            .lines()
            .filter(|line| !line.starts_with("-A OUTPUT -m comment --comment \"kube-router"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(!first_sync_applied(&no_output_jump));
        // The ACCEPT must be the chain's last rule: a pod jump after it means a sync is midway.
        let accept_not_last = FILTER.replace(
            "COMMIT",
            "-A KUBE-ROUTER-INPUT -s 10.244.0.5/32 -j KUBE-POD-FW-7MPZ2RHXBYG3RS3Q\nCOMMIT",
        );
        assert!(!first_sync_applied(&accept_not_last));
        assert!(!first_sync_applied(""));
    }

    #[test]
    fn the_rbac_grants_reads_to_this_node_alone() {
        let (role, binding) = rbac("dfr-node");
        let rules = role.rules.unwrap();
        let resources: Vec<String> = rules
            .iter()
            .flat_map(|r| r.resources.clone().unwrap_or_default())
            .collect();
        for resource in [
            "namespaces",
            "pods",
            "services",
            "endpoints",
            "nodes",
            "endpointslices",
            "networkpolicies",
        ] {
            assert!(resources.contains(&resource.to_string()), "{resource}");
        }
        assert!(rules.iter().all(|r| r.verbs == ["get", "list", "watch"]));
        let subjects = binding.subjects.unwrap();
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].kind, "User");
        assert_eq!(subjects[0].name, "system:node:dfr-node");
        assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
    }
}
