//! Root filesystems without a registry: debootstrap's minimal Debian, made to match
//! debian:bookworm-slim by images/base/slim.sh (the "base"), then one image's setup.sh run in a
//! chroot on a copy of it (the "prepared" tree). Both are cached by the hash of their inputs.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::archive::DEFAULT_PATH;
use super::cache::{self, Workspace};
use super::error::{Error, Result};
use super::recipe::BUILD_DIR;
use super::{mounts, run};

pub const SUITE: &str = "bookworm";
pub const VARIANT: &str = "minbase";
pub const MIRROR: &str = "http://deb.debian.org/debian";
const SLIM_SCRIPT: &str = "base/slim.sh";

fn read_slim(images: &Path) -> Result<Vec<u8>> {
    let path = images.join(SLIM_SCRIPT);
    std::fs::read(&path).map_err(Error::io(format!("reading {}", path.display())))
}

pub fn base_key(images: &Path) -> Result<String> {
    let slim = read_slim(images)?;
    Ok(cache::key(&[
        ("suite", SUITE.as_bytes()),
        ("variant", VARIANT.as_bytes()),
        ("mirror", MIRROR.as_bytes()),
        ("slim.sh", &slim),
    ]))
}

pub fn prepared_key(base_key: &str, files: &[(&str, Vec<u8>)]) -> String {
    let mut parts: Vec<(&str, &[u8])> = vec![("base", base_key.as_bytes())];
    parts.extend(
        files
            .iter()
            .map(|(name, content)| (*name, content.as_slice())),
    );
    cache::key(&parts)
}

fn cached_tree(cache: &Path, name: &str) -> PathBuf {
    cache.join("rootfs").join(name)
}

/// The debootstrapped and slimmed Debian, built on first use.
pub fn ensure_base(cache: &Path, images: &Path) -> Result<PathBuf> {
    let key = base_key(images)?;
    let name = format!("base-{SUITE}-{VARIANT}-{}", cache::short(&key));
    let dir = cached_tree(cache, &name);
    if dir.is_dir() {
        return Ok(dir);
    }
    run::require_root()?;
    let log = cache::logs_dir(cache)?.join(format!("{name}.log"));
    eprintln!(
        "dfr-images: debootstrapping Debian {SUITE} for the image root filesystems (first run only, \
         about two minutes); log {}",
        log.display()
    );
    let workspace = Workspace::new(cache)?;
    let root = workspace.dir.join("rootfs");
    // Downloaded .debs survive a failed or changed base, so a retry does not fetch them again.
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs).map_err(Error::io(format!("creating {}", debs.display())))?;
    let bootstrapped = run::logged(
        "debootstrap",
        Command::new("debootstrap")
            .arg(format!("--variant={VARIANT}"))
            .arg(format!("--cache-dir={}", debs.display()))
            .arg(SUITE)
            .arg(&root)
            .arg(MIRROR),
        &log,
    );
    // debootstrap unmounts its /proc and /sys when it exits, but not when it is killed.
    mounts::unmount_under(&root)?;
    bootstrapped?;
    let slim = read_slim(images)?;
    in_chroot(
        &root,
        "slim.sh",
        &[("slim.sh", slim)],
        "slimming the base",
        &log,
    )?;
    cache::install(&root, &dir)?;
    Ok(dir)
}

/// A copy of `base` with the recipe's setup.sh run in it, built on first use.
pub fn ensure_prepared(
    cache: &Path,
    base: &Path,
    key: &str,
    recipe_dir: &Path,
    files: &[(&'static str, Vec<u8>)],
) -> Result<PathBuf> {
    let name = format!("prepared-{}", cache::short(key));
    let dir = cached_tree(cache, &name);
    if dir.is_dir() {
        return Ok(dir);
    }
    run::require_root()?;
    let log = cache::logs_dir(cache)?.join(format!("{name}.log"));
    let workspace = Workspace::new(cache)?;
    let root = workspace.dir.join("rootfs");
    run::logged(
        &format!("copying the base root filesystem {}", base.display()),
        Command::new("cp")
            .args(["--archive", "--reflink=auto"])
            .arg(base)
            .arg(&root),
        &log,
    )?;
    if files.iter().any(|(name, _)| *name == "requirements.txt") {
        download_wheels(&recipe_dir.join("requirements.txt"), &root, &log)?;
    }
    in_chroot(
        &root,
        "setup.sh",
        files,
        &format!("running {}/setup.sh in a chroot", recipe_dir.display()),
        &log,
    )?;
    cache::install(&root, &dir)?;
    Ok(dir)
}

/// pip on the host fetches the pinned wheels (checking their hashes), so the chroot's pip
/// installs offline and needs neither PyPI nor the host's TLS setup.
fn download_wheels(requirements: &Path, root: &Path, log: &Path) -> Result<()> {
    let wheels = build_dir(root).join("wheels");
    run::logged(
        &format!("downloading the wheels of {}", requirements.display()),
        Command::new("pip")
            .args([
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--require-hashes",
            ])
            // The interpreter of Debian bookworm, which runs them.
            .args(["--python-version", "3.11", "--dest"])
            .arg(&wheels)
            .arg("--requirement")
            .arg(requirements),
        log,
    )
}

fn build_dir(root: &Path) -> PathBuf {
    root.join(BUILD_DIR.trim_start_matches('/'))
}

/// Runs `script` from `files`, copied to BUILD_DIR as the Dockerfiles copy them, as root in
/// `root` with a clean environment.
fn in_chroot(
    root: &Path,
    script: &str,
    files: &[(&str, Vec<u8>)],
    step: &str,
    log: &Path,
) -> Result<()> {
    let build = build_dir(root);
    std::fs::create_dir_all(&build).map_err(Error::io(format!("creating {}", build.display())))?;
    for (name, content) in files {
        let path = build.join(name);
        std::fs::write(&path, content).map_err(Error::io(format!("writing {}", path.display())))?;
    }
    // apt in the chroot resolves the mirror with the host's resolver.
    let host_resolver = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    replace_file(&root.join("etc/resolv.conf"), &host_resolver)?;
    let result = run::logged(
        step,
        Command::new("chroot")
            .arg(root)
            .arg("/bin/sh")
            .arg(format!("{BUILD_DIR}/{script}"))
            .env_clear()
            .env("PATH", DEFAULT_PATH)
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive"),
        log,
    );
    // Nothing of the build host stays behind; the runtime provides resolv.conf and hostname.
    let cleaned = replace_file(&root.join("etc/resolv.conf"), b"")
        .and_then(|()| replace_file(&root.join("etc/hostname"), b""))
        .and_then(|()| {
            std::fs::remove_dir_all(&build)
                .map_err(Error::io(format!("removing {}", build.display())))
        });
    result.and(cleaned)
}

/// Replaces rather than writes through: debootstrap may have copied the host's file as a symlink
/// whose absolute target would then be the host's own file.
fn replace_file(path: &Path, content: &[u8]) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Io {
                what: format!("removing {}", path.display()),
                source,
            });
        }
    }
    std::fs::write(path, content).map_err(Error::io(format!("writing {}", path.display())))
}
