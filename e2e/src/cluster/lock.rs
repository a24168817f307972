//! One node cluster per machine: kube-proxy's chains and the kubelet's cgroups are
//! machine-wide. A lock file names the state dir of the cluster whose node holds the machine.

use std::path::{Path, PathBuf};

use super::RUN_ROOT;
use crate::host::{Error, Result};
use crate::node;

pub const LOCK_FILE: &str = "/run/dfr/node.lock";

/// Takes the machine's node lock, or names the cluster that holds it. A lock whose holder has
/// no node record any more is stale and taken over.
pub fn lock(state_dir: &Path) -> Result<()> {
    let lock = Path::new(LOCK_FILE);
    if let Ok(holder) = std::fs::read_to_string(lock) {
        let holder = PathBuf::from(holder.trim());
        if holder != state_dir && node::record_path(&holder).exists() {
            return Err(Error::NodeBusy(holder));
        }
    }
    if let Some(dir) = lock.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    }
    std::fs::write(lock, state_dir.display().to_string())
        .map_err(Error::io(format!("writing {LOCK_FILE}")))
}

/// Releases the lock if `state_dir` holds it, and the run dir if nothing else is in it.
pub fn unlock(state_dir: &Path) {
    let held_by_us = std::fs::read_to_string(LOCK_FILE)
        .is_ok_and(|holder| Path::new(holder.trim()) == state_dir);
    if held_by_us {
        let _ = std::fs::remove_file(LOCK_FILE);
        let _ = std::fs::remove_dir(RUN_ROOT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_lives_in_the_run_root() {
        assert!(Path::new(LOCK_FILE).starts_with(RUN_ROOT));
    }
}
