//! debootstrap mounts /proc and /sys (and, where it cannot create device nodes, binds /dev) into
//! the root filesystem it builds, and a killed run leaves them there. A tree under the cache is
//! only ever deleted after everything mounted below it is gone, and `rm --one-file-system`
//! guards against deleting through a mount that could not be removed.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::{Error, Result};

/// Mount points at or below `root` in /proc/self/mountinfo text, deepest first.
pub fn mounts_under(mountinfo: &str, root: &Path) -> Vec<PathBuf> {
    let mut mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .filter(|mount| mount.starts_with(root))
        .collect();
    mounts.sort_by(|a, b| (b.components().count(), a).cmp(&(a.components().count(), b)));
    mounts.dedup();
    mounts
}

/// mountinfo writes space, tab, newline and backslash as three octal digits after a backslash.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).and_then(|digits| {
            std::str::from_utf8(digits)
                .ok()
                .and_then(|digits| u8::from_str_radix(digits, 8).ok())
        });
        match (bytes[index], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn current_mounts_under(root: &Path) -> Result<Vec<PathBuf>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(Error::io("reading /proc/self/mountinfo"))?;
    Ok(mounts_under(&mountinfo, root))
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

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
90 22 0:5 / /work/cache/rootfs/x/proc rw - proc proc rw
91 90 0:6 / /work/cache/rootfs/x/proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw
92 22 0:7 / /work/cache/rootfs/x/sys rw - sysfs sysfs rw
93 22 0:8 / /work/cache/rootfs/x-other/proc rw - proc proc rw
94 22 0:9 / /work/cache/rootfs/with\\040space/dev rw - devtmpfs udev rw
";

    #[test]
    fn finds_the_mounts_below_a_root_deepest_first_and_nothing_beside_it() {
        let mounts = mounts_under(MOUNTINFO, Path::new("/work/cache/rootfs/x"));
        assert_eq!(
            mounts,
            vec![
                PathBuf::from("/work/cache/rootfs/x/proc/sys/fs/binfmt_misc"),
                PathBuf::from("/work/cache/rootfs/x/proc"),
                PathBuf::from("/work/cache/rootfs/x/sys"),
            ]
        );
    }

    #[test]
    fn decodes_escaped_mount_points() {
        let mounts = mounts_under(MOUNTINFO, Path::new("/work/cache/rootfs/with space"));
        assert_eq!(
            mounts,
            vec![PathBuf::from("/work/cache/rootfs/with space/dev")]
        );
    }
}
