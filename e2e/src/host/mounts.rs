//! Reading /proc/self/mountinfo: which mounts lie under a directory. The image builder uses it
//! to clear what debootstrap mounted into a root filesystem, and `down` to find what the
//! kubelet and containerd left mounted.

use std::path::{Path, PathBuf};

pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// This process's mountinfo text, or none when it cannot be read.
pub fn current() -> String {
    std::fs::read_to_string(MOUNTINFO).unwrap_or_default()
}

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

/// Mount points at or under any of `roots`, deepest first.
pub fn mounts_under_any(mountinfo: &str, roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = roots
        .iter()
        .flat_map(|root| mounts_under(mountinfo, root))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
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

    #[test]
    fn finds_mounts_under_several_roots_deepest_first_and_unescaped() {
        let mountinfo = "\
22 1 0:21 / / rw - ext4 /dev/vda rw
30 22 0:40 / /s/kubelet rw - ext4 /dev/vda rw
31 30 0:41 / /s/kubelet/pods/a/volumes/x rw - tmpfs tmpfs rw
32 22 0:42 / /run/netns/cni-1 rw - nsfs nsfs rw
33 22 0:43 / /other\\040dir rw - tmpfs tmpfs rw
";
        let found = mounts_under_any(mountinfo, &["/s".into(), "/run/netns".into()]);
        assert_eq!(
            found,
            vec![
                PathBuf::from("/s/kubelet/pods/a/volumes/x"),
                PathBuf::from("/run/netns/cni-1"),
                PathBuf::from("/s/kubelet"),
            ]
        );
        assert_eq!(
            mounts_under_any(mountinfo, &["/other dir".into()]),
            vec![PathBuf::from("/other dir")]
        );
    }
}
