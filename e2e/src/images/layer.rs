//! Image layers written by GNU tar: sorted names, every mtime 0 and numeric owners as they are
//! in the root filesystem, so the same tree always gives the same bytes and the same digest.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::error::{Error, Result};
use super::run;

/// Runtime filesystems, which the container runtime mounts, what apt keeps between runs, and
/// the logs and caches that differ from one build to the next (as debuerreotype drops them), so
/// two builds from the same packages give the same layer.
pub const EXCLUDES: &[&str] = &[
    "./dev/*",
    "./proc/*",
    "./sys/*",
    "./tmp/*",
    "./var/tmp/*",
    "./var/lib/apt/lists/*",
    "./var/cache/apt/*",
    "./var/cache/debconf/*-old",
    "./var/cache/ldconfig/aux-cache",
    "./var/log/apt/*",
    "./var/log/alternatives.log",
    "./var/log/bootstrap.log",
    "./var/log/dpkg.log",
];

/// One tree to put in the layer: `members` (paths starting with `./`) relative to `dir`.
pub struct Source {
    pub dir: PathBuf,
    pub members: Vec<String>,
}

pub fn tar_args(out: &Path, sources: &[Source]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--create",
        "--format=gnu",
        "--sort=name",
        "--mtime=@0",
        "--numeric-owner",
        "--anchored",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    args.extend(
        EXCLUDES
            .iter()
            .map(|pattern| format!("--exclude={pattern}")),
    );
    args.push(format!("--file={}", out.display()));
    for source in sources {
        args.push(format!("--directory={}", source.dir.display()));
        args.extend(source.members.iter().cloned());
    }
    args
}

/// Writes the layer and returns its SHA-256 (hex), which is both its digest and its diff ID
/// since it stays uncompressed.
pub fn write_layer(out: &Path, sources: &[Source], log: &Path) -> Result<String> {
    run::logged(
        &format!("writing the layer {}", out.display()),
        Command::new("tar").args(tar_args(out, sources)),
        log,
    )?;
    sha256_file(out)
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let what = || format!("hashing {}", path.display());
    let mut file = std::fs::File::open(path).map_err(Error::io(what()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(Error::io(what()))?;
        if read == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buffer[..read]);
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dfr-images-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn listing(layer: &Path) -> String {
        let output = Command::new("tar")
            .arg("-tvf")
            .arg(layer)
            .output()
            .expect("tar runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    #[test]
    fn the_layer_leaves_out_runtime_mounts_and_apt_state_and_is_reproducible() {
        let dir = scratch("layer");
        let root = dir.join("root");
        for path in ["dev", "proc", "etc", "var/lib/apt/lists", "usr/dev"] {
            std::fs::create_dir_all(root.join(path)).expect("dir");
        }
        for path in [
            "dev/null-ish",
            "proc/x",
            "var/lib/apt/lists/index",
            "usr/dev/kept",
            "etc/os",
        ] {
            std::fs::write(root.join(path), path).expect("file");
        }
        let sources = [Source {
            dir: root.clone(),
            members: vec![".".into()],
        }];
        let log = dir.join("log");
        let first = write_layer(&dir.join("a.tar"), &sources, &log).expect("layer");
        std::fs::write(root.join("etc/os"), "etc/os").expect("touch");
        let second = write_layer(&dir.join("b.tar"), &sources, &log).expect("layer");
        let names = listing(&dir.join("a.tar"));
        let _ = std::fs::remove_dir_all(&dir);

        assert_eq!(
            first, second,
            "a rewrite with a new mtime gives the same layer"
        );
        assert!(names.contains("./usr/dev/kept"), "{names}");
        assert!(names.contains("./etc/os"), "{names}");
        assert!(names.contains("./dev/\n"), "{names}");
        assert!(!names.contains("null-ish"), "{names}");
        assert!(!names.contains("./proc/x"), "{names}");
        assert!(!names.contains("lists/index"), "{names}");
        assert!(names.contains("1970-01-01 00:00"), "{names}");
    }

    #[test]
    fn the_digest_is_sha256_of_the_bytes() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
