//! Tooling that runs the whole system against a real Kubernetes on this machine: the local
//! cluster (`dfr-cluster`) and what the tests share.
//!
//! Layers, each importing only those below it:
//! - `cluster`: a control plane and an optional node under one name, `up`/`down`/`env`;
//! - `controlplane` and `node`: peers that never import each other;
//! - `images`: the container images a node loads;
//! - `host`: the machine itself (errors, processes, PKI, mounts, iptables, cgroups, ...).
//!
//! `testing` serves the tests on top of all of it. `layering_tests` holds the rule.

pub mod cluster;
pub mod controlplane;
pub mod host;
pub mod images;
pub mod node;
pub mod testing;

#[cfg(test)]
mod layering_tests;
