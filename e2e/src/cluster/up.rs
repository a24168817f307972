//! Bringing a cluster up: the control plane, then (for a node cluster) the scheduler, the
//! node, its NetworkPolicy enforcer, the S3 server and the metrics APIs. Everything `down` must undo is recorded before it is changed.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Cluster, Timings, lock, run_dir};
use crate::controlplane::{self, Ports};
use crate::host::ports::free_port;
use crate::host::{Error, Result, binaries};
use crate::node::{self, NodeLayout};

impl Cluster {
    pub async fn up(&self) -> Result<Timings> {
        self.start(None, false).await
    }

    /// A control plane alone with the metrics APIs (metrics-server, prometheus-adapter) behind
    /// its aggregation layer, on loopback: checks the aggregation without a node. metrics-server
    /// then has no kubelet to read, and the adapter no Prometheus to ask.
    pub async fn up_with_metrics_apis(&self) -> Result<Timings> {
        self.start(None, true).await
    }

    /// The control plane plus a real node (containerd, kubelet, kube-proxy, CoreDNS, local
    /// volumes) with `images` (docker-archive tars) loaded into its containerd.
    pub async fn up_with_node(&self, images: &[PathBuf]) -> Result<Timings> {
        self.start(Some(images), true).await
    }

    async fn start(&self, node_images: Option<&[PathBuf]>, metrics_apis: bool) -> Result<Timings> {
        if self.is_ready().await {
            if node_images.is_some() && !self.has_node() {
                return Err(Error::RunningWithoutNode(self.name.clone()));
            }
            return Ok(Timings {
                build: None,
                start_to_ready: Duration::ZERO,
            });
        }
        // A half-started or crashed earlier run: clear it out first.
        self.down().await?;
        if node_images.is_some() {
            lock::lock(&self.state_dir)?;
        }
        let (bin_dir, build) = binaries::ensure_built()?;
        let s3_binary = match node_images {
            Some(_) => Some(binaries::ensure_versitygw()?),
            None => None,
        };
        let monitoring_binaries = match node_images {
            Some(_) => Some(binaries::ensure_prometheus_operator()?),
            None => None,
        };
        let policy_binary = match node_images {
            Some(_) => Some(binaries::ensure_kube_router()?),
            None => None,
        };
        let metrics_binaries = if metrics_apis {
            Some((
                binaries::ensure_metrics_server()?,
                binaries::ensure_prometheus_adapter()?,
            ))
        } else {
            None
        };
        let started = Instant::now();
        let ports = Ports::free()?;
        let state = &self.state_dir;
        // Loopback for a control plane alone; with a node, the host interface's address, where
        // pods reach the API server through the `kubernetes` Service.
        let advertise = match node_images {
            Some(_) => IpAddr::from(node::config::HOST_IP),
            None => IpAddr::from(Ipv4Addr::LOCALHOST),
        };
        let node_name = node::node_name(&self.name);
        let placement = match node_images {
            Some(_) => node::metrics_apis::Placement::node(),
            None => node::metrics_apis::Placement::loopback()?,
        };
        controlplane::prepare(state, ports, advertise, &node_name, &placement.serving())?;
        let pki_dir = controlplane::pki_dir(state);
        if metrics_binaries.is_some() {
            let server = controlplane::server_url(advertise, ports);
            node::metrics_apis::prepare(state, &server, &pki_dir, &placement)?;
        }
        let node = match node_images {
            Some(images) => {
                let layout = NodeLayout {
                    node_name,
                    state_dir: state.clone(),
                    run_dir: run_dir(&self.name),
                    kubelet_port: free_port()?,
                    kubelet_healthz_port: free_port()?,
                    proxy_healthz_port: free_port()?,
                    proxy_metrics_port: free_port()?,
                };
                let server = controlplane::server_url(advertise, ports);
                node::prepare(&layout, &server, &pki_dir)?;
                Some((layout, images))
            }
            None => None,
        };
        let client = controlplane::start(state, &bin_dir, ports, advertise).await?;
        if let Some((layout, images)) = node {
            controlplane::start_scheduler(state, &bin_dir)?;
            node::start(&layout, &bin_dir, &client, images).await?;
            if let Some(binary) = &policy_binary {
                // Before any tenant: a NetworkPolicy must be in force from the tenant's first
                // pod on, or the isolation the operator writes is only objects.
                node::network_policy::install_rbac(&client, &layout.node_name).await?;
                node::network_policy::start(&layout, binary, controlplane::SERVICE_CIDR).await?;
            }
            if let Some(binaries) = &monitoring_binaries {
                node::addons::monitoring::install(&client, &layout, binaries).await?;
            }
            if let Some(binary) = s3_binary {
                let endpoint = node::s3::prepare(state)?;
                node::s3::start(state, &binary, &endpoint).await?;
            }
        }
        if let Some((metrics_server, adapter)) = metrics_binaries {
            node::metrics_apis::start(state, &pki_dir, &client, &metrics_server, &adapter).await?;
        }
        if monitoring_binaries.is_some() {
            // Prometheus and the Alertmanager start while the rest comes up; a cluster is
            // up once they are Ready too.
            node::addons::monitoring::wait_ready(&client).await?;
        }
        Ok(Timings {
            build,
            start_to_ready: started.elapsed(),
        })
    }
}
