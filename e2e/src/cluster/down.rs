//! Taking a cluster down: whatever runs against it, the controllers, the node (drained first),
//! then the API server and etcd; then the state dir goes.

use super::{Cluster, lock};
use crate::host::{Error, Result, process};
use crate::{controlplane, node};

impl Cluster {
    /// Stops what `up` started, puts the machine back as it was and removes the state dir.
    /// Safe to call twice. Returns what it stopped; problems restoring the machine are errors.
    pub async fn down(&self) -> Result<Vec<String>> {
        // Processes started against this cluster (the demo's operator) stop first, then the
        // controllers, so nothing makes new pods while the node drains.
        let mut stopped = process::stop_all(&self.state_dir, &["dfr-operator"])?;
        // The metrics APIs of a control plane alone (`up --metrics-apis`); a node's stop them
        // again, harmlessly.
        stopped.extend(node::metrics_apis::stop(&self.state_dir)?);
        stopped.extend(controlplane::stop_controllers(&self.state_dir)?);
        let mut problems = Vec::new();
        if let Some(record) = node::read_record(&self.state_dir) {
            if let Ok(client) = self.client().await {
                node::drain(&client, &record.layout).await;
            }
            let (node_stopped, node_problems) = node::stop(&record)?;
            lock::unlock(&self.state_dir);
            stopped.extend(node_stopped);
            problems = node_problems;
        }
        stopped.extend(controlplane::stop_api(&self.state_dir)?);
        if self.state_dir.exists() {
            std::fs::remove_dir_all(&self.state_dir)
                .map_err(Error::io(format!("removing {}", self.state_dir.display())))?;
        }
        if !problems.is_empty() {
            return Err(Error::Restore(problems.join("\n")));
        }
        Ok(stopped)
    }
}
