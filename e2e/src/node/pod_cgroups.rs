//! The cgroups the kubelet makes for pods (cgroupfs driver, under `kubepods` in every v1
//! hierarchy): only this node's kubelet creates them, so whatever is inside is ours to kill.

use std::path::PathBuf;

use crate::host::cgroups;

const POD_CGROUP: &str = "kubepods";

/// Every pod cgroup, deepest first.
pub fn all() -> Vec<PathBuf> {
    cgroups::trees(POD_CGROUP)
}

/// Thaws every pod cgroup in the freezer hierarchy.
pub fn thaw() {
    cgroups::thaw(&all());
}

/// PIDs still inside the pod cgroups: what is left of containers whose shim was killed.
pub fn processes() -> Vec<i32> {
    cgroups::processes(&all())
}

/// Removes every pod cgroup; what failed is returned.
pub fn remove() -> Vec<String> {
    cgroups::remove(&all())
}
