//! dfr-images: the local cluster's container images, built without Docker or a registry from the
//! recipes under images/, and imported into containerd.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dfr_e2e::images::{self, BuiltImage};

#[derive(Parser)]
#[command(
    name = "dfr-images",
    about = "Build the local cluster's images without a registry and import them into containerd"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Build {
    /// A dfr-api binary (e.g. target/debug/dfr-api) to build the dfr-api image around.
    #[arg(long)]
    api_binary: Option<PathBuf>,
    #[arg(long, default_value = "dev")]
    api_tag: String,
    /// A dfr-operator binary to build the dfr-operator image around.
    #[arg(long)]
    operator_binary: Option<PathBuf>,
    #[arg(long, default_value = "dev")]
    operator_tag: String,
    /// Also build dfr-alertmanager (Debian's package), which node clusters run under the
    /// Prometheus Operator.
    #[arg(long)]
    monitoring: bool,
    /// A prometheus binary (dfr-cluster builds it from e2e/prometheus-build) to build
    /// dfr-prometheus around.
    #[arg(long)]
    prometheus_binary: Option<PathBuf>,
    /// A prometheus-config-reloader binary (dfr-cluster builds it from
    /// e2e/prometheus-operator-build) to build dfr-prometheus-config-reloader around.
    #[arg(long)]
    config_reloader_binary: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Build (or take from the cache) dfr-pause, dfr-postgres and the images of the binaries
    /// given; prints `reference archive built|cached` per image.
    Build(Build),
    /// Build as `build` does, then import every image into containerd's k8s.io namespace.
    Import {
        #[arg(long)]
        containerd_socket: PathBuf,
        #[command(flatten)]
        build: Build,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dfr-images: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), images::Error> {
    match command {
        Command::Build(build) => {
            build_all(&build)?;
        }
        Command::Import {
            containerd_socket,
            build,
        } => {
            for image in build_all(&build)? {
                images::import(&image.archive, &containerd_socket)?;
                println!("{} imported", image.reference);
            }
        }
    }
    Ok(())
}

fn build_all(build: &Build) -> Result<Vec<BuiltImage>, images::Error> {
    let mut built = vec![images::build_pause()?, images::build_postgres()?];
    if let Some(binary) = &build.api_binary {
        built.push(images::build_binary_image(
            "dfr-api",
            binary,
            &build.api_tag,
        )?);
    }
    if let Some(binary) = &build.operator_binary {
        built.push(images::build_binary_image(
            "dfr-operator",
            binary,
            &build.operator_tag,
        )?);
    }
    if build.monitoring {
        built.push(images::monitoring::build_alertmanager()?);
    }
    if let Some(binary) = &build.prometheus_binary {
        built.push(images::monitoring::build_prometheus(binary)?);
    }
    if let Some(binary) = &build.config_reloader_binary {
        built.push(images::monitoring::build_config_reloader(
            binary,
            dfr_e2e::host::binaries::PROMETHEUS_OPERATOR_VERSION,
        )?);
    }
    for image in &built {
        let how = if image.built { "built" } else { "cached" };
        println!("{} {} {how}", image.reference, image.archive.display());
    }
    Ok(built)
}
