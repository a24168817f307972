//! Container images for the local cluster, built without Docker or a registry and imported into
//! containerd, from the same files under images/ that the Dockerfiles there read. Each image is a
//! single-layer docker-archive cached under ~/.cache/dfr/images by the hash of its inputs.

pub mod archive;
pub mod cache;
pub mod error;
pub mod layer;
pub mod monitoring;
pub mod mounts;
pub mod recipe;
pub mod rootfs;
mod run;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use archive::ImageConfig;
pub use error::{Error, Result};

use archive::DEFAULT_PATH;
use cache::Workspace;
use layer::Source;
use recipe::{BINARY_FILES, POSTGRES_FILES, Recipe};

/// containerd's `sandbox_image` for the local cluster.
pub const PAUSE_REFERENCE: &str = "dfr-pause:3";
/// What the operator's StatefulSets run for PostgreSQL 15.
pub const POSTGRES_REFERENCE: &str = "dfr-postgres:15";
pub const BINARY_IMAGES: &[&str] = &["dfr-api", "dfr-operator"];
/// The recipe directory shared by the images of a single binary (ours and CoreDNS).
pub const RUNTIME_RECIPE: &str = "runtime";
/// Where CoreDNS sits in dfr-coredns, as in the upstream image.
pub const COREDNS_PATH: &str = "/coredns";
/// Also in images/pause/Dockerfile, which a test holds to these.
pub const PAUSE_CFLAGS: &[&str] = &["-static", "-Os", "-s", "-Wall", "-Werror"];
/// The operator's pod specs run PostgreSQL as this user.
pub const POSTGRES_USER: &str = "999:999";
/// The conventional non-root user of distroless images.
pub const NONROOT_USER: &str = "65532:65532";
const CONTAINERD_NAMESPACE: &str = "k8s.io";

/// One image archive ready for `ctr images import`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltImage {
    pub reference: String,
    pub archive: PathBuf,
    /// False when the archive came from the cache.
    pub built: bool,
}

/// The repository's images/ directory.
pub fn images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("images")
}

pub fn pause_config() -> ImageConfig {
    ImageConfig {
        env: vec![],
        user: String::new(),
        working_dir: String::new(),
        entrypoint: vec!["/pause".into()],
        cmd: vec![],
    }
}

pub fn postgres_config() -> ImageConfig {
    ImageConfig {
        env: vec![format!("PATH=/usr/lib/postgresql/15/bin:{DEFAULT_PATH}")],
        user: POSTGRES_USER.into(),
        working_dir: "/var/lib/postgresql".into(),
        entrypoint: vec![],
        // What the operator's pod spec runs anyway; without it the image would run bash.
        cmd: vec!["patroni".into(), "/etc/patroni/patroni.yml".into()],
    }
}

/// A binary image running `entrypoint` (where the binary is installed).
pub fn binary_config(entrypoint: &str) -> ImageConfig {
    ImageConfig {
        // debian:bookworm-slim's, which the Dockerfile inherits.
        env: vec![format!("PATH={DEFAULT_PATH}")],
        user: NONROOT_USER.into(),
        working_dir: String::new(),
        entrypoint: vec![entrypoint.into()],
        cmd: vec![],
    }
}

pub fn build_pause() -> Result<BuiltImage> {
    let source_path = images_dir().join("pause/pause.c");
    let source = std::fs::read(&source_path)
        .map_err(Error::io(format!("reading {}", source_path.display())))?;
    let config = pause_config();
    let key = image_key(
        PAUSE_REFERENCE,
        &config,
        &[
            ("pause.c", &source),
            ("cflags", PAUSE_CFLAGS.join(" ").as_bytes()),
        ],
    );
    build_cached(
        "dfr-pause",
        PAUSE_REFERENCE,
        &key,
        &config,
        |_, scratch, log| {
            let stage = scratch.join("stage");
            std::fs::create_dir_all(&stage)
                .map_err(Error::io(format!("creating {}", stage.display())))?;
            run::logged(
                &format!("compiling {}", source_path.display()),
                Command::new("gcc")
                    .args(PAUSE_CFLAGS)
                    .arg("-o")
                    .arg(stage.join("pause"))
                    .arg(&source_path),
                log,
            )?;
            Ok(vec![Source {
                dir: stage,
                members: vec!["./pause".into()],
            }])
        },
    )
}

pub fn build_postgres() -> Result<BuiltImage> {
    let images = images_dir();
    let recipe = Recipe {
        dir: images.join("dfr-postgres"),
        files: POSTGRES_FILES,
    };
    let files = recipe.read()?;
    let prepared = rootfs::prepared_key(&rootfs::base_key(&images)?, &files);
    let config = postgres_config();
    let key = image_key(
        POSTGRES_REFERENCE,
        &config,
        &[("rootfs", prepared.as_bytes())],
    );
    build_cached(
        "dfr-postgres",
        POSTGRES_REFERENCE,
        &key,
        &config,
        |cache, _, _| {
            let base = rootfs::ensure_base(cache, &images)?;
            let tree = rootfs::ensure_prepared(cache, &base, &prepared, &recipe.dir, &files)?;
            Ok(vec![Source {
                dir: tree,
                members: vec![".".into()],
            }])
        },
    )
}

/// The image of one of our binaries (`dfr-api` or `dfr-operator`), tagged `<name>:<tag>`.
pub fn build_binary_image(name: &str, binary: &Path, tag: &str) -> Result<BuiltImage> {
    let name = BINARY_IMAGES
        .iter()
        .find(|known| **known == name)
        .ok_or_else(|| Error::UnknownImage(name.to_string()))?;
    check_tag(tag)?;
    let install = format!("/usr/local/bin/{name}");
    build_on_base(name, &format!("{name}:{tag}"), binary, &install)
}

/// The cluster DNS image around a CoreDNS binary of `version` (`v1.13.2` gives the reference
/// `dfr-coredns:1.13.2`).
pub fn build_coredns(binary: &Path, version: &str) -> Result<BuiltImage> {
    let tag = version.trim_start_matches('v');
    check_tag(tag)?;
    build_on_base(
        "dfr-coredns",
        &format!("dfr-coredns:{tag}"),
        binary,
        COREDNS_PATH,
    )
}

/// `binary` at `install` on the Debian base with ca-certificates, which images/runtime prepares
/// for every image of a single binary.
fn build_on_base(name: &str, reference: &str, binary: &Path, install: &str) -> Result<BuiltImage> {
    let images = images_dir();
    let recipe = Recipe {
        dir: images.join(RUNTIME_RECIPE),
        files: BINARY_FILES,
    };
    let files = recipe.read()?;
    let prepared = rootfs::prepared_key(&rootfs::base_key(&images)?, &files);
    let binary_sha256 = cache::file_sha256(&cache::cache_dir()?, binary)?;
    let config = binary_config(install);
    let key = image_key(
        reference,
        &config,
        &[
            ("rootfs", prepared.as_bytes()),
            ("binary", binary_sha256.as_bytes()),
        ],
    );
    build_cached(name, reference, &key, &config, |cache, scratch, _| {
        let base = rootfs::ensure_base(cache, &images)?;
        let tree = rootfs::ensure_prepared(cache, &base, &prepared, &recipe.dir, &files)?;
        let stage = scratch.join("stage");
        let installed = stage.join(install.trim_start_matches('/'));
        if let Some(dir) = installed.parent() {
            std::fs::create_dir_all(dir)
                .map_err(Error::io(format!("creating {}", dir.display())))?;
        }
        std::fs::copy(binary, &installed).map_err(Error::io(format!(
            "copying {} to {}",
            binary.display(),
            installed.display()
        )))?;
        std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o755)).map_err(
            Error::io(format!("making {} executable", installed.display())),
        )?;
        Ok(vec![
            Source {
                dir: tree,
                members: vec![".".into()],
            },
            Source {
                dir: stage,
                members: vec![format!(".{install}")],
            },
        ])
    })
}

/// Imports an archive into containerd's `k8s.io` namespace, where the CRI plugin (and so the
/// kubelet) sees it, unpacked for the default snapshotter.
pub fn import(archive: &Path, containerd_socket: &Path) -> Result<()> {
    let log = cache::logs_dir(&cache::cache_dir()?)?.join("import.log");
    run::logged(
        &format!(
            "importing {} into the containerd at {}",
            archive.display(),
            containerd_socket.display()
        ),
        Command::new("ctr")
            .arg("--address")
            .arg(containerd_socket)
            .args(["--namespace", CONTAINERD_NAMESPACE, "images", "import"])
            .arg(archive),
        &log,
    )
}

/// Docker's rule for tags.
fn check_tag(tag: &str) -> Result<()> {
    let valid = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidTag(tag.to_string()))
    }
}

fn created_by(reference: &str) -> String {
    format!("{} {reference}", cache::RECIPE_VERSION)
}

/// The cache key of an image: its reference, its config, what the layer leaves out and whatever
/// it is made from.
pub fn image_key(reference: &str, config: &ImageConfig, inputs: &[(&str, &[u8])]) -> String {
    let config_json = config.to_json(&[], &created_by(reference)).to_string();
    let excludes = layer::EXCLUDES.join("\n");
    let mut parts: Vec<(&str, &[u8])> = vec![
        ("reference", reference.as_bytes()),
        ("config", config_json.as_bytes()),
        ("excludes", excludes.as_bytes()),
    ];
    parts.extend_from_slice(inputs);
    cache::key(&parts)
}

/// Returns the cached archive for `key`, or builds it: `sources` (given the cache, a scratch
/// directory and the log) says what goes into the layer.
fn build_cached(
    name: &str,
    reference: &str,
    key: &str,
    config: &ImageConfig,
    sources: impl FnOnce(&Path, &Path, &Path) -> Result<Vec<Source>>,
) -> Result<BuiltImage> {
    let cache = cache::cache_dir()?;
    let archive = cache.join(format!("{name}-{}.tar", cache::short(key)));
    if archive.is_file() {
        return Ok(BuiltImage {
            reference: reference.to_string(),
            archive,
            built: false,
        });
    }
    let log = cache::logs_dir(&cache)?.join(format!("{name}-{}.log", cache::short(key)));
    eprintln!("dfr-images: building {reference}; log {}", log.display());
    let workspace = Workspace::new(&cache)?;
    let layer_path = workspace.dir.join("layer.tar");
    let layer_sources = sources(&cache, &workspace.dir, &log)?;
    let layer_sha256 = layer::write_layer(&layer_path, &layer_sources, &log)?;
    let config_json = config.to_json(&[format!("sha256:{layer_sha256}")], &created_by(reference));
    let partial = workspace.dir.join("image.tar");
    archive::write_archive(
        &partial,
        reference,
        &config_json,
        &layer_path,
        &layer_sha256,
    )?;
    cache::install(&partial, &archive)?;
    Ok(BuiltImage {
        reference: reference.to_string(),
        archive,
        built: true,
    })
}

#[cfg(test)]
mod tests;
