//! Cgroup v1 trees by name, in every hierarchy under /sys/fs/cgroup: listing them, thawing
//! their freezers and finding the processes left inside.

use std::path::{Path, PathBuf};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const FREEZER: &str = "/sys/fs/cgroup/freezer";

/// Every cgroup at or below `<hierarchy>/<name>` in every v1 hierarchy, deepest first, so they
/// can be removed in order.
pub fn trees(name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir(CGROUP_ROOT) else {
        return found;
    };
    for hierarchy in hierarchies.flatten() {
        let root = hierarchy.path().join(name);
        if root.is_dir() {
            collect_dirs(&root, &mut found);
        }
    }
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

fn collect_dirs(dir: &Path, into: &mut Vec<PathBuf>) {
    into.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), into);
            }
        }
    }
}

/// Thaws those of `cgroups` that are in the freezer hierarchy: a frozen process cannot die.
pub fn thaw(cgroups: &[PathBuf]) {
    for cgroup in cgroups {
        let state = cgroup.join("freezer.state");
        if cgroup.starts_with(FREEZER) && state.exists() {
            let _ = std::fs::write(state, "THAWED");
        }
    }
}

/// PIDs inside any of `cgroups`, sorted and without repeats.
pub fn processes(cgroups: &[PathBuf]) -> Vec<i32> {
    let mut pids: Vec<i32> = cgroups
        .iter()
        .filter_map(|dir| std::fs::read_to_string(dir.join("cgroup.procs")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Removes `cgroups` (deepest first, as `trees` lists them). What failed is returned.
pub fn remove(cgroups: &[PathBuf]) -> Vec<String> {
    cgroups
        .iter()
        .filter_map(|cgroup| {
            std::fs::remove_dir(cgroup)
                .err()
                .map(|e| format!("removing cgroup {}: {e}", cgroup.display()))
        })
        .collect()
}
