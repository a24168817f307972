//! What the control plane and the node both stand on: this machine and the tools on it. Errors,
//! processes started as daemons and stopped by PID, certificates and kubeconfigs, the cached
//! Kubernetes binaries, and the machine-wide state a node changes (mounts, iptables chains,
//! cgroups, sysctls, network interfaces), as primitives that know nothing of either.
//!
//! Nothing here imports `controlplane`, `node`, `cluster` or `images`: they build on this.

pub mod binaries;
pub mod cgroups;
pub mod command;
pub mod error;
pub mod interfaces;
pub mod iptables;
pub mod kubeconfig;
pub mod mounts;
pub mod pki;
pub mod ports;
pub mod process;
pub mod sysctls;

pub use error::{Error, Result};
