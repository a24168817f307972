//! debootstrap mounts /proc and /sys (and, where it cannot create device nodes, binds /dev) into
//! the root filesystem it builds, and a killed run leaves them there. A tree under the cache is
//! only ever deleted after everything mounted below it is gone, and `rm --one-file-system`
//! guards against deleting through a mount that could not be removed. Reading mountinfo is
//! the host's (crate::host::mounts), shared with `dfr-cluster down`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::{Error, Result};
use crate::host::mounts;

fn current_mounts_under(root: &Path) -> Result<Vec<PathBuf>> {
    let mountinfo = std::fs::read_to_string(mounts::MOUNTINFO)
        .map_err(Error::io(format!("reading {}", mounts::MOUNTINFO)))?;
    Ok(mounts::mounts_under(&mountinfo, root))
}

/// Unmounts everything at or below `root`, lazily where a plain unmount is refused.
pub fn unmount_under(root: &Path) -> Result<()> {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    // Mounts can be stacked on one path; each round removes the top one.
    for _ in 0..3 {
        for mount in current_mounts_under(&root)? {
            let plain = Command::new("umount").arg(&mount).output();
            if !plain.is_ok_and(|output| output.status.success()) {
                let _ = Command::new("umount").arg("--lazy").arg(&mount).output();
            }
        }
    }
    match current_mounts_under(&root)?.into_iter().next() {
        Some(mount) => Err(Error::StillMounted { root, mount }),
        None => Ok(()),
    }
}

/// Deletes `dir` (which may hold a root filesystem) once nothing is mounted below it.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    unmount_under(dir)?;
    let output = Command::new("rm")
        .args(["-rf", "--one-file-system", "--"])
        .arg(dir)
        .output()
        .map_err(Error::io(format!("running rm -rf {}", dir.display())))?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Io {
        what: format!("removing {}", dir.display()),
        source: std::io::Error::other(String::from_utf8_lossy(&output.stderr).trim().to_string()),
    })
}
