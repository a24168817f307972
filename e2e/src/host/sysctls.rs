//! Kernel settings under /proc/sys: recording their values and putting them back.

use std::path::{Path, PathBuf};

/// Where the kernel shows `name` (`net.ipv4.ip_forward` is /proc/sys/net/ipv4/ip_forward).
pub fn path(name: &str) -> PathBuf {
    Path::new("/proc/sys").join(name.replace('.', "/"))
}

/// The current value of each of `names` that this kernel has.
pub fn read(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|name| {
            std::fs::read_to_string(path(name))
                .ok()
                .map(|value| (name.to_string(), value.trim().to_string()))
        })
        .collect()
}

/// Writes back every recorded value that differs now. What failed is returned.
pub fn restore(recorded: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, value) in recorded {
        let path = path(name);
        let now = std::fs::read_to_string(&path).unwrap_or_default();
        if now.trim() != value
            && let Err(e) = std::fs::write(&path, value)
        {
            problems.push(format!("restoring {name}={value}: {e}"));
        }
    }
    problems
}

/// The recorded settings whose value differs now, as `name=now (was recorded)`.
pub fn changed(recorded: &[(String, String)]) -> Vec<String> {
    recorded
        .iter()
        .filter_map(|(name, value)| {
            let now = std::fs::read_to_string(path(name)).unwrap_or_default();
            (now.trim() != value).then(|| format!("sysctl {name}={} (was {value})", now.trim()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_names_map_to_proc_sys_paths() {
        assert_eq!(
            path("net.bridge.bridge-nf-call-iptables"),
            PathBuf::from("/proc/sys/net/bridge/bridge-nf-call-iptables")
        );
    }
}
