//! The image cache under ~/.cache/dfr/images: artefacts named by a hash of everything that went
//! into them, built in a per-process scratch directory and renamed into place, so that an
//! interrupted build leaves scratch to sweep up but never a broken cache entry.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use super::error::{Error, Result};
use super::{layer, mounts};

/// Bump when the Rust side of a recipe changes what it produces, so every cached entry rebuilds.
pub const RECIPE_VERSION: &str = "dfr-images/1";

pub fn cache_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").ok_or(Error::NoHome)?;
    Ok(PathBuf::from(home).join(".cache/dfr/images"))
}

/// SHA-256 over named parts; names and lengths are hashed too, so parts cannot run together.
pub fn key(parts: &[(&str, &[u8])]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(RECIPE_VERSION.as_bytes());
    for (name, content) in parts {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((content.len() as u64).to_le_bytes());
        hasher.update(content);
    }
    hex::encode(hasher.finalize())
}

pub fn short(key: &str) -> &str {
    key.get(..12).unwrap_or(key)
}

pub fn logs_dir(cache: &Path) -> Result<PathBuf> {
    let dir = cache.join("logs");
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    Ok(dir)
}

/// The SHA-256 of a file, remembered by its inode, size and times: the binaries are large and
/// the debug build's sha2 manages some 30 MB/s, so a warm call would otherwise spend seconds
/// rehashing an unchanged binary. Any write changes the ctime and so misses the memo.
pub fn file_sha256(cache: &Path, path: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(Error::io(format!("reading {}", path.display())))?;
    let stamp = format!(
        "{}:{}:{}:{}.{}:{}.{}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    );
    let memos = cache.join("hashes");
    let memo = memos.join(layer::sha256_hex(stamp.as_bytes()));
    if let Ok(known) = std::fs::read_to_string(&memo)
        && known.len() == 64
    {
        return Ok(known);
    }
    let digest = layer::sha256_file(path)?;
    std::fs::create_dir_all(&memos).map_err(Error::io(format!("creating {}", memos.display())))?;
    let partial = memos.join(format!("partial-{}", std::process::id()));
    std::fs::write(&partial, &digest)
        .and_then(|()| std::fs::rename(&partial, &memo))
        .map_err(Error::io(format!("writing {}", memo.display())))?;
    Ok(digest)
}

/// Scratch space for one build, removed when dropped (after unmounting anything left in it).
pub struct Workspace {
    pub dir: PathBuf,
}

static WORKSPACES: AtomicUsize = AtomicUsize::new(0);

impl Workspace {
    pub fn new(cache: &Path) -> Result<Self> {
        let scratch = cache.join("tmp");
        sweep_abandoned(&scratch)?;
        let index = WORKSPACES.fetch_add(1, Ordering::Relaxed);
        let dir = scratch.join(format!("{}-{index}", std::process::id()));
        mounts::remove_tree(&dir)?;
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        Ok(Workspace { dir })
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if let Err(error) = mounts::remove_tree(&self.dir) {
            eprintln!("dfr-images: could not clean up: {error}");
        }
    }
}

/// Removes the scratch of builds whose process is gone (killed, or the machine went down).
fn sweep_abandoned(scratch: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(scratch) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = name.split('-').next().unwrap_or_default();
        if !Path::new("/proc").join(owner).exists() {
            mounts::remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// Moves a finished file or directory to its cache name. When another process got there first
/// with the same key, its entry is as good as ours, which is left for the workspace to remove.
pub fn install(built: &Path, entry: &Path) -> Result<()> {
    if let Some(parent) = entry.parent() {
        std::fs::create_dir_all(parent)
            .map_err(Error::io(format!("creating {}", parent.display())))?;
    }
    match std::fs::rename(built, entry) {
        Ok(()) => Ok(()),
        Err(_) if entry.is_dir() => Ok(()),
        Err(source) => Err(Error::Io {
            what: format!("moving {} to {}", built.display(), entry.display()),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_any_part_and_only_then() {
        let base = key(&[("packages", b"postgresql-15\n"), ("setup.sh", b"set -eu\n")]);
        let same = key(&[("packages", b"postgresql-15\n"), ("setup.sh", b"set -eu\n")]);
        assert_eq!(base, same);
        assert_eq!(base.len(), 64);
        assert_ne!(
            base,
            key(&[("packages", b"postgresql-16\n"), ("setup.sh", b"set -eu\n")])
        );
        assert_ne!(
            base,
            key(&[("packages", b"postgresql-15\n"), ("setup.sh", b"set -e\n")])
        );
        // Moving bytes from one part to the next is a different recipe.
        assert_ne!(
            key(&[("a", b"xy"), ("b", b"z")]),
            key(&[("a", b"x"), ("b", b"yz")])
        );
        assert_eq!(short(&base).len(), 12);
    }

    #[test]
    fn a_remembered_file_hash_follows_every_write() {
        let dir = std::env::temp_dir().join(format!("dfr-images-memo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("binary");
        std::fs::write(&file, b"one").expect("write");
        let first = file_sha256(&dir, &file).expect("hash");
        assert_eq!(first, file_sha256(&dir, &file).expect("remembered"));
        std::fs::write(&file, b"two").expect("write");
        let second = file_sha256(&dir, &file).expect("hash");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(first, layer::sha256_hex(b"one"));
        assert_eq!(second, layer::sha256_hex(b"two"));
    }
}
