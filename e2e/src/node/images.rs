//! The images a node cluster loads into containerd: the sandbox's pause, CoreDNS, PostgreSQL
//! with Patroni, the monitoring pipeline's Prometheus, Alertmanager and config reloader, and our
//! own binaries as built next to dfr-cluster (`cargo build` puts dfr-api, dfr-operator and
//! dfr-cluster in the same target directory).

use std::path::{Path, PathBuf};

use crate::host::{Error, Result, binaries};
use crate::images::{self, BuiltImage};

/// The tag of our own images: the workspace version, which the samples' dev appVersion names.
pub const OUR_TAG: &str = env!("CARGO_PKG_VERSION");

pub(super) fn image_error(image: &str) -> impl FnOnce(images::Error) -> Error + '_ {
    move |error| Error::Image {
        image: image.to_string(),
        message: error.to_string(),
    }
}

/// Where cargo put the binary `name` of this build.
pub fn sibling_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(Error::io("finding dfr-cluster's own path"))?;
    let dir = exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    // Test binaries live one level deeper, in target/<profile>/deps.
    let candidates = [dir.join(name), dir.join("..").join(name)];
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Image {
            image: name.to_string(),
            message: format!(
                "no {name} binary next to {}; build it first with `cargo build -p {name}`",
                exe.display()
            ),
        })
}

fn report(image: &BuiltImage) {
    let how = if image.built { "built" } else { "cached" };
    eprintln!(
        "dfr-cluster: image {} {how} ({})",
        image.reference,
        image.archive.display()
    );
}

/// Builds what is missing from the cache and returns every archive, pause first.
pub fn build_all() -> Result<Vec<PathBuf>> {
    let mut built = vec![
        images::build_pause().map_err(image_error("dfr-pause"))?,
        images::build_coredns(&binaries::ensure_coredns()?, binaries::COREDNS_VERSION)
            .map_err(image_error("dfr-coredns"))?,
        images::build_postgres().map_err(image_error("dfr-postgres"))?,
        images::monitoring::build_prometheus(&binaries::ensure_prometheus()?.prometheus)
            .map_err(image_error("dfr-prometheus"))?,
        images::monitoring::build_alertmanager().map_err(image_error("dfr-alertmanager"))?,
        images::monitoring::build_config_reloader(
            &binaries::ensure_prometheus_operator()?.config_reloader,
            binaries::PROMETHEUS_OPERATOR_VERSION,
        )
        .map_err(image_error("dfr-prometheus-config-reloader"))?,
    ];
    for name in images::BINARY_IMAGES {
        let binary = sibling_binary(name)?;
        built.push(images::build_binary_image(name, &binary, OUR_TAG).map_err(image_error(name))?);
    }
    for image in &built {
        report(image);
    }
    Ok(built.into_iter().map(|image| image.archive).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_sample_runs_the_api_image_this_build_makes() {
        let sample = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/samples/ton-dev.yaml"),
        )
        .unwrap();
        let country: dfr_crds::DfrCountry = serde_yaml::from_str(&sample).unwrap();
        assert_eq!(country.spec.app_version, OUR_TAG);
    }
}
