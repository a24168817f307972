//! The images of the local cluster's monitoring: Prometheus around the binary built from
//! e2e/prometheus-build, Alertmanager from Debian's package (images/dfr-alertmanager), and the
//! Prometheus Operator's config reloader around the binary built from
//! e2e/prometheus-operator-build. The Prometheus
//! Operator gives each container only arguments (the reloader a command too), so each image's
//! entrypoint is its binary.

use std::path::Path;

use super::recipe::Recipe;
use super::{BuiltImage, ImageConfig, Result, binary_config, build_cached, build_on_base};
use super::{image_key, images_dir, rootfs};

/// The Prometheus and Alertmanager objects name these versions, which decide the flags and
/// configuration the Prometheus Operator writes for them. Prometheus's is the one
/// e2e/prometheus-build pins (Debian's 2.42 has no Kubernetes service discovery, which every job
/// the operator writes uses); Alertmanager's is Debian bookworm's.
pub use crate::host::binaries::PROMETHEUS_VERSION;
pub const ALERTMANAGER_VERSION: &str = "v0.25.0";
pub const PROMETHEUS_PATH: &str = "/usr/bin/prometheus";
/// Debian's name for the binary.
pub const ALERTMANAGER_PATH: &str = "/usr/bin/prometheus-alertmanager";
pub const CONFIG_RELOADER_PATH: &str = "/usr/bin/prometheus-config-reloader";
/// What images/dfr-prometheus and images/dfr-alertmanager hold.
pub const PACKAGED_FILES: &[&str] = &["packages", "setup.sh"];

pub fn prometheus_reference() -> String {
    reference("dfr-prometheus", PROMETHEUS_VERSION)
}

pub fn alertmanager_reference() -> String {
    reference("dfr-alertmanager", ALERTMANAGER_VERSION)
}

/// `dfr-prometheus-config-reloader:<version without v>`, `version` being the operator's.
pub fn config_reloader_reference(version: &str) -> String {
    reference("dfr-prometheus-config-reloader", version)
}

fn reference(name: &str, version: &str) -> String {
    format!("{name}:{}", version.trim_start_matches('v'))
}

pub fn alertmanager_config() -> ImageConfig {
    binary_config(ALERTMANAGER_PATH)
}

/// The Prometheus `binary` built from e2e/prometheus-build on the slim base.
pub fn build_prometheus(binary: &Path) -> Result<BuiltImage> {
    build_on_base(
        "dfr-prometheus",
        &prometheus_reference(),
        binary,
        PROMETHEUS_PATH,
    )
}

pub fn build_alertmanager() -> Result<BuiltImage> {
    build_packaged(
        "dfr-alertmanager",
        &alertmanager_reference(),
        alertmanager_config(),
    )
}

/// The reloader `binary` of the Prometheus Operator `version` (`v0.93.0`) on the slim base.
pub fn build_config_reloader(binary: &Path, version: &str) -> Result<BuiltImage> {
    let reference = config_reloader_reference(version);
    super::check_tag(reference.rsplit(':').next().unwrap_or_default())?;
    build_on_base(
        "dfr-prometheus-config-reloader",
        &reference,
        binary,
        CONFIG_RELOADER_PATH,
    )
}

/// An image that is Debian's packages and nothing else: images/<name> prepared on the base root
/// filesystem, as dfr-postgres is.
fn build_packaged(name: &str, reference: &str, config: ImageConfig) -> Result<BuiltImage> {
    let images = images_dir();
    let recipe = Recipe {
        dir: images.join(name),
        files: PACKAGED_FILES,
    };
    let files = recipe.read()?;
    let prepared = rootfs::prepared_key(&rootfs::base_key(&images)?, &files);
    let key = image_key(reference, &config, &[("rootfs", prepared.as_bytes())]);
    build_cached(name, reference, &key, &config, |cache, _, _| {
        let base = rootfs::ensure_base(cache, &images)?;
        let tree = rootfs::ensure_prepared(cache, &base, &prepared, &recipe.dir, &files)?;
        Ok(vec![super::layer::Source {
            dir: tree,
            members: vec![".".into()],
        }])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_drop_the_v_of_the_version() {
        assert_eq!(prometheus_reference(), "dfr-prometheus:3.13.1");
        assert_eq!(alertmanager_reference(), "dfr-alertmanager:0.25.0");
        assert_eq!(
            config_reloader_reference("v0.93.0"),
            "dfr-prometheus-config-reloader:0.93.0"
        );
    }
}
