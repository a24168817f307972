//! A local cluster: a control plane and, with `up_with_node`, a real node beside it, under one
//! name and one state dir. `up` starts it and returns when it is ready; `down` stops exactly
//! what `up` started and puts the machine back; `env_lines` points kubectl and the tests at it.
//! This is the only module that knows both the control plane and the node.

mod down;
mod lock;
mod up;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::host::binaries;
pub use crate::host::{Error, Result};
pub use crate::node::s3::S3Endpoint;
use crate::{controlplane, node};

/// Runtime files of node clusters (containerd's state and sockets, the node lock): on tmpfs,
/// so none outlives a reboot.
const RUN_ROOT: &str = "/run/dfr";

/// Where one named cluster keeps its state.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub name: String,
    pub state_dir: PathBuf,
}

/// How long `up` took, for the figures people ask about.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    pub build: Option<Duration>,
    pub start_to_ready: Duration,
}

/// `~/.cache/dfr/clusters/<name>`, unless the caller names a state dir.
pub fn default_state_dir(name: &str) -> Result<PathBuf> {
    Ok(binaries::cache_root()?.join("clusters").join(name))
}

/// Builds what is missing from the image cache and returns every archive a node cluster
/// loads (for `up_with_node`), pause first.
pub fn build_node_images() -> Result<Vec<PathBuf>> {
    node::images::build_all()
}

/// The node's runtime dir for the cluster `name`.
fn run_dir(name: &str) -> PathBuf {
    Path::new(RUN_ROOT).join(name)
}

impl Cluster {
    pub fn new(name: &str, state_dir: Option<PathBuf>) -> Result<Self> {
        let state_dir = match state_dir {
            Some(dir) => dir,
            None => default_state_dir(name)?,
        };
        Ok(Self {
            name: name.to_string(),
            state_dir,
        })
    }

    pub fn kubeconfig(&self) -> PathBuf {
        controlplane::admin_kubeconfig(&self.state_dir)
    }

    /// A client for the admin, once the control plane is up.
    pub async fn client(&self) -> Result<kube::Client> {
        controlplane::client(&self.state_dir).await
    }

    /// Whether this cluster's control plane answers /readyz now.
    pub async fn is_ready(&self) -> bool {
        if !self.kubeconfig().exists() {
            return false;
        }
        let Ok(client) = self.client().await else {
            return false;
        };
        controlplane::readyz(&client).await
    }

    /// The S3 server of a node cluster (endpoint, bucket, region, root keys, CA file), read from
    /// the state dir; `None` for a control plane alone or one not up.
    pub fn s3(&self) -> Option<S3Endpoint> {
        node::s3::read(&self.state_dir)
    }

    pub fn has_node(&self) -> bool {
        node::record_path(&self.state_dir).exists()
    }

    /// Shell lines that point kubectl and the tests at this cluster.
    pub fn env_lines(&self) -> Result<Vec<String>> {
        if !self.kubeconfig().exists() {
            return Err(Error::NotRunning(self.name.clone(), self.state_dir.clone()));
        }
        let bin_dir = binaries::bin_dir()?;
        let kubeconfig = self.kubeconfig().display().to_string();
        let mut lines = vec![
            format!("export KUBECONFIG={kubeconfig}"),
            format!("export DFR_KUBECONFIG={kubeconfig}"),
            format!(
                "export DFR_KUBECTL={}",
                binaries::kubectl(&bin_dir).display()
            ),
            format!("export PATH={}:$PATH", bin_dir.display()),
        ];
        if let Some(s3) = self.s3() {
            lines.extend(s3_env_lines(&s3));
        }
        Ok(lines)
    }
}

/// The `DFR_S3_*` variables `testing::s3` reads. Values are quoted for the shell; none of ours
/// holds a single quote.
fn s3_env_lines(s3: &S3Endpoint) -> Vec<String> {
    [
        ("DFR_S3_ENDPOINT", s3.endpoint.clone()),
        ("DFR_S3_HOST", s3.host.to_string()),
        ("DFR_S3_PORT", s3.port.to_string()),
        ("DFR_S3_DNS_NAME", s3.dns_name.clone()),
        ("DFR_S3_BUCKET", s3.bucket.clone()),
        ("DFR_S3_REGION", s3.region.clone()),
        ("DFR_S3_ACCESS_KEY", s3.access_key.clone()),
        ("DFR_S3_SECRET_KEY", s3.secret_key.clone()),
        ("DFR_S3_CA_FILE", s3.ca_file.display().to_string()),
        ("DFR_S3_BUCKET_DIR", s3.bucket_dir.display().to_string()),
    ]
    .into_iter()
    .map(|(name, value)| format!("export {name}='{value}'"))
    .collect()
}
