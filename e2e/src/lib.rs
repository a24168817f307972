//! Tooling that runs the whole system against a real Kubernetes on this machine: the local
//! control plane (`dfr-cluster`) and what the tests share.

pub mod controlplane;
pub mod images;
pub mod node;
pub mod testing;
