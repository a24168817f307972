//! The node's two interfaces on the machine: the host interface the API server and the kubelet
//! listen on (made here), and the pods' bridge (made by the CNI bridge plugin); and the bridge
//! netfilter setting that Service traffic between pods needs.

use super::config::{HOST_INTERFACE, HOST_IP, POD_BRIDGE};
use crate::host::{Error, Result, interfaces};

/// Every interface the node makes, which `down` removes.
pub const INTERFACES: &[&str] = &[POD_BRIDGE, HOST_INTERFACE];

const BRIDGE_NF_CALL_IPTABLES: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// Traffic between two pods on the bridge must pass iptables, or a reply to a pod that reached
/// another through a Service IP skips the reverse NAT and is dropped. Recorded in the footprint's
/// SYSCTLS, so `down` puts the old value back.
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
    interfaces::create_bridge_with_address(HOST_INTERFACE, HOST_IP)
}

/// Removes the node's interfaces; what failed is returned.
pub fn remove_interfaces() -> Vec<String> {
    INTERFACES
        .iter()
        .filter_map(|link| interfaces::delete(link).err().map(|e| e.to_string()))
        .collect()
}

/// The node's interfaces still on the machine.
pub fn remaining_interfaces() -> Vec<&'static str> {
    INTERFACES
        .iter()
        .copied()
        .filter(|link| interfaces::exists(link))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bridge_setting_is_one_the_footprint_restores() {
        let name = "net.bridge.bridge-nf-call-iptables";
        assert!(crate::node::footprint::SYSCTLS.contains(&name));
        assert_eq!(
            crate::host::sysctls::path(name).display().to_string(),
            BRIDGE_NF_CALL_IPTABLES
        );
    }
}
