//! dfr-cluster: the local Kubernetes cluster (a control plane, optionally with a node) for the
//! demo and the tests.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dfr_e2e::cluster::Cluster;

#[derive(Parser)]
#[command(
    name = "dfr-cluster",
    about = "A local Kubernetes control plane built from the upstream modules"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Target {
    /// Several control planes can run side by side under different names.
    #[arg(long, default_value = "dfr")]
    name: String,
    /// Defaults to ~/.cache/dfr/clusters/<name>.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct UpArgs {
    #[command(flatten)]
    target: Target,
    /// Also run a real node: containerd, kubelet, kube-scheduler, kube-proxy, CoreDNS, local
    /// volumes, an S3 server (versitygw, TLS) on 10.234.0.1:9000 and the metrics APIs
    /// (metrics-server, prometheus-adapter) behind the aggregation layer, with the pause, dfr-postgres, dfr-api and dfr-operator images built and loaded.
    /// One node cluster per machine.
    #[arg(long)]
    node: bool,
    /// Without --node: also run metrics-server and prometheus-adapter on loopback behind the
    /// aggregation layer (to check it without a node; they have no kubelet or Prometheus).
    #[arg(long, conflicts_with = "node")]
    metrics_apis: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Build the components if needed, start etcd, kube-apiserver and kube-controller-manager
    /// (and, with --node, a node).
    Up(UpArgs),
    /// Stop what `up` started and remove its state.
    Down(Target),
    /// Print shell lines (for eval) that point kubectl and the tests at the control cluster.
    Env(Target),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("dfr-cluster: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dfr-cluster: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), dfr_e2e::cluster::Error> {
    match command {
        Command::Up(UpArgs {
            target,
            node,
            metrics_apis,
        }) => {
            let cluster = Cluster::new(&target.name, target.state_dir)?;
            let timings = if node {
                let images = dfr_e2e::cluster::build_node_images()?;
                cluster.up_with_node(&images).await?
            } else if metrics_apis {
                cluster.up_with_metrics_apis().await?
            } else {
                cluster.up().await?
            };
            if let Some(build) = timings.build {
                eprintln!(
                    "dfr-cluster: built the Kubernetes components in {:.1} s",
                    build.as_secs_f64()
                );
            }
            if timings.start_to_ready.is_zero() {
                eprintln!(
                    "dfr-cluster: control plane {} is already running",
                    cluster.name
                );
            } else {
                eprintln!(
                    "dfr-cluster: {} ready in {:.1} s ({})",
                    cluster.name,
                    timings.start_to_ready.as_secs_f64(),
                    if node {
                        "etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet, kube-proxy, CoreDNS, kube-router (NetworkPolicy), versitygw (S3), metrics-server, prometheus-adapter, Prometheus Operator, Prometheus, Alertmanager"
                    } else if metrics_apis {
                        "etcd, kube-apiserver, kube-controller-manager, metrics-server, prometheus-adapter"
                    } else {
                        "etcd, kube-apiserver, kube-controller-manager"
                    }
                );
            }
            eprintln!(
                "dfr-cluster: use it with: eval \"$(dfr-cluster env --name {})\"",
                cluster.name
            );
        }
        Command::Down(target) => {
            let cluster = Cluster::new(&target.name, target.state_dir)?;
            let stopped = cluster.down().await?;
            if stopped.is_empty() {
                eprintln!(
                    "dfr-cluster: nothing of {} was running; state removed",
                    cluster.name
                );
            } else {
                eprintln!("dfr-cluster: stopped {}", stopped.join(", "));
            }
        }
        Command::Env(target) => {
            let cluster = Cluster::new(&target.name, target.state_dir)?;
            for line in cluster.env_lines()? {
                println!("{line}");
            }
        }
    }
    Ok(())
}
