//! Finding and removing iptables chains by name prefix, with the rules elsewhere that jump to
//! them, in every table of iptables and ip6tables.

use super::command::run;

const TABLES: &[&str] = &["filter", "nat", "mangle", "raw"];
/// Each save tool with the tool that edits the same rules.
const FAMILIES: &[(&str, &str)] = &[
    ("iptables-save", "iptables"),
    ("ip6tables-save", "ip6tables"),
];

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

fn has_prefix(chain: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|prefix| chain.starts_with(prefix))
}

/// From one table's iptables-save output: the rules in other chains that jump to a chain
/// named with one of `prefixes` (to delete), and those chains (to flush and delete).
pub fn chains_and_jumps(save: &str, prefixes: &[&str]) -> (Vec<Vec<String>>, Vec<String>) {
    let (jumps, chains) = chains_and_jumps_where(save, |name| has_prefix(name, prefixes));
    (
        jumps.into_iter().map(|(_, rule)| rule).collect(),
        chains.into_iter().map(|(_, chain)| chain).collect(),
    )
}

/// (table, the rule's words after `-A`).
pub type Jumps = Vec<(String, Vec<String>)>;
/// (table, chain).
pub type Chains = Vec<(String, String)>;

/// The rules outside the chains `is_ours` names that jump into one of them (to delete), and
/// those chains (to flush and delete), from iptables-save output of one table or several (each
/// starts with its `*table` line).
pub fn chains_and_jumps_where(save: &str, is_ours: impl Fn(&str) -> bool) -> (Jumps, Chains) {
    let mut jumps = Vec::new();
    let mut chains = Vec::new();
    let mut table = String::new();
    for line in save.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name.trim().to_string();
        } else if let Some(declaration) = line.strip_prefix(':') {
            if let Some(name) = declaration.split(' ').next().filter(|name| is_ours(name)) {
                chains.push((table.clone(), name.to_string()));
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let words = split_rule(rule);
            let Some(chain) = words.first() else { continue };
            let target = words
                .windows(2)
                .find(|w| w[0] == "-j" || w[0] == "-g")
                .map(|w| w[1].as_str());
            if !is_ours(chain) && target.is_some_and(&is_ours) {
                jumps.push((table.clone(), words));
            }
        }
    }
    (jumps, chains)
}

/// Deletes the jumps into the chains named with `prefixes`, then flushes and deletes those
/// chains, in every table. Best effort: what failed is added to `problems`.
pub fn remove_chains(prefixes: &[&str], problems: &mut Vec<String>) {
    for (save, tool) in FAMILIES {
        for table in TABLES {
            let Ok(saved) = run(save, &["-t", table]) else {
                continue;
            };
            let (jumps, chains) = chains_and_jumps(&saved, prefixes);
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

/// The chains named with `prefixes`, and the jumps into them, still on the machine.
pub fn remaining_chains(prefixes: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (save, _) in FAMILIES {
        if let Ok(saved) = run(save, &[]) {
            let (jumps, chains) = chains_and_jumps(&saved, prefixes);
            found.extend(chains.iter().map(|c| format!("{save}: chain {c}")));
            found.extend(
                jumps
                    .iter()
                    .map(|j| format!("{save}: rule {}", j.join(" "))),
            );
        }
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn splits_rules_keeping_quoted_comments_whole() {
        let rule = r#"KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -j KUBE-SVC-NPX"#;
        let words = split_rule(rule);
        assert_eq!(words[0], "KUBE-SERVICES");
        assert!(words.contains(&"default/kubernetes:https cluster IP".to_string()));
        assert_eq!(words.last().unwrap(), "KUBE-SVC-NPX");
    }

    #[test]
    fn only_the_named_chains_and_the_jumps_into_them_are_selected() {
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
        let (jumps, chains) = chains_and_jumps(save, &["KUBE-", "CNI-"]);
        assert_eq!(chains, vec!["KUBE-SERVICES", "CNI-HOSTPORT-DNAT"]);
        assert_eq!(jumps.len(), 2);
        assert_eq!(jumps[0][0], "PREROUTING");
        assert!(jumps[0].contains(&"kubernetes service portals".to_string()));
        assert_eq!(jumps[1].last().unwrap(), "CNI-HOSTPORT-DNAT");
    }
}
