//! Bringing a cluster up: the control plane, then (for a node cluster) the scheduler, the
//! node and the S3 server. Everything `down` must undo is recorded before it is changed.

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
        self.start(None).await
    }

    /// The control plane plus a real node (containerd, kubelet, kube-proxy, CoreDNS, local
    /// volumes) with `images` (docker-archive tars) loaded into its containerd.
    pub async fn up_with_node(&self, images: &[PathBuf]) -> Result<Timings> {
        self.start(Some(images)).await
    }

    async fn start(&self, node_images: Option<&[PathBuf]>) -> Result<Timings> {
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
        controlplane::prepare(state, ports, advertise, &node_name)?;
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
                node::prepare(&layout, &server, &controlplane::pki_dir(state))?;
                Some((layout, images))
            }
            None => None,
        };
        let client = controlplane::start(state, &bin_dir, ports, advertise).await?;
        if let Some((layout, images)) = node {
            controlplane::start_scheduler(state, &bin_dir)?;
            node::start(&layout, &bin_dir, &client, images).await?;
            if let Some(binary) = s3_binary {
                let endpoint = node::s3::prepare(state)?;
                node::s3::start(state, &binary, &endpoint).await?;
            }
        }
        Ok(Timings {
            build,
            start_to_ready: started.elapsed(),
        })
    }
}
