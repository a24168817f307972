//! dfr-operator: `crd` prints the CustomResourceDefinition; `run` runs the controller.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use dfr_operator::controller::{self, RunOptions};
use dfr_operator::metrics::Metrics;
use dfr_operator::settings::Settings;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, ListParams};
use kube_lease_manager::LeaseManagerBuilder;
use tracing::{error, info, warn};

#[derive(Parser)]
#[command(
    name = "dfr-operator",
    version,
    about = "Runs one isolated Digital Farmer Registry per DfrCountry"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a CustomResourceDefinition as YAML: dfrcountries (the default) or dfrbackups.
    Crd {
        #[arg(default_value = "dfrcountries", value_parser = ["dfrcountries", "dfrbackups"])]
        plural: String,
    },
    /// Print the Prometheus rules file the operator builds for a DfrCountry manifest (the
    /// PrometheusRule's groups), e.g. for `promtool test rules`.
    AlertRules {
        /// A DfrCountry manifest, e.g. config/samples/ton-prod.yaml.
        file: std::path::PathBuf,
    },
    /// Run the controller.
    Run(Box<RunArgs>),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = "DFR_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Only reconcile DfrCountry objects matching this label selector.
    #[arg(long, env = "DFR_TENANT_SELECTOR")]
    tenant_selector: Option<String>,
    /// Reconciles that may run at once (each for a different DfrCountry).
    #[arg(long, env = "DFR_CONCURRENCY", default_value_t = controller::DEFAULT_CONCURRENCY)]
    concurrency: u16,
    /// Run without a Lease (a single replica, or tests).
    #[arg(long, env = "DFR_NO_LEADER_ELECTION")]
    no_leader_election: bool,
    /// Namespace of the leader-election Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "dfr-system")]
    lease_namespace: String,
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, env = "DFR_LEASE_NAME", default_value = "dfr-operator-leader")]
    lease_name: String,
    #[arg(long, env = "DFR_API_IMAGE_REPOSITORY", default_value = "dfr-api")]
    api_image_repository: String,
    /// PostgreSQL image; `{version}` becomes the PostgreSQL major version.
    #[arg(
        long,
        env = "DFR_POSTGRES_IMAGE",
        default_value = "dfr-postgres:{version}"
    )]
    postgres_image: String,
    #[arg(long, env = "DFR_IMAGE_PULL_POLICY", default_value = "IfNotPresent")]
    image_pull_policy: String,
    #[arg(long, env = "DFR_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// Addresses of the Kubernetes API server for the Patroni egress NetworkPolicy; discovered
    /// from the `kubernetes` Service's EndpointSlice when not given.
    #[arg(
        long = "kubernetes-api-cidr",
        env = "DFR_KUBERNETES_API_CIDRS",
        value_delimiter = ','
    )]
    kubernetes_api_cidrs: Vec<String>,
    /// A kubeconfig to use instead of the in-cluster account or $KUBECONFIG (running outside
    /// the cluster, as the local demo does).
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// How long a changed certificate Secret takes to reach every pod (Go duration, e.g. 2m):
    /// a tenant CA renewal waits this long before the new CA's certificates are served and
    /// again before the previous CA is dropped; members reload a renewed certificate no sooner.
    #[arg(
        long,
        env = "DFR_CERTIFICATE_PROPAGATION_DELAY",
        default_value = "2m",
        value_parser = propagation_delay
    )]
    certificate_propagation_delay: Duration,
    /// Log format: json or text.
    #[arg(long, env = "DFR_LOG_FORMAT", default_value = "json")]
    log_format: String,
}

fn propagation_delay(text: &str) -> Result<Duration, String> {
    dfr_operator::duration::parse_go_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 2m or 90s"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { plural } => match if plural == "dfrbackups" {
            dfr_crds::backup_crd_yaml()
        } else {
            dfr_crds::crd_yaml()
        } {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("dfr-operator crd: {error}");
                ExitCode::FAILURE
            }
        },
        Command::AlertRules { file } => {
            let rules = std::fs::read_to_string(&file)
                .map_err(|e| format!("{}: {e}", file.display()))
                .and_then(|text| {
                    dfr_operator::children::monitoring::rules_file(&text, &Settings::default())
                });
            match rules {
                Ok(yaml) => {
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("dfr-operator alert-rules: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            init_tracing(&args.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("dfr-operator: cannot start the async runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    error!("{message}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "text" {
        builder.init();
    } else {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    }
}

async fn run(args: RunArgs) -> Result<(), String> {
    let metrics = Metrics::new().map_err(|e| format!("metrics registry: {e}"))?;
    let server = tokio::spawn(dfr_operator::metrics::serve(
        args.metrics_addr,
        metrics.clone(),
    ));
    let config = match &args.kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("cannot configure a Kubernetes client: {e}"))?,
    };
    let client = dfr_operator::client::counting_client(config, metrics.kube_requests.clone())
        .map_err(|e| format!("cannot build the Kubernetes client: {e}"))?;
    client
        .apiserver_version()
        .await
        .map_err(|e| format!("the Kubernetes API server does not answer: {e}"))?;
    metrics
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);

    let discovered = discover_api_server_endpoints(&client).await;
    let mut kubernetes_api_cidrs = args.kubernetes_api_cidrs.clone();
    if kubernetes_api_cidrs.is_empty() {
        kubernetes_api_cidrs = discovered.addresses;
    }
    // The Service's port (443) is not what the policy sees after the DNAT: the endpoint's is,
    // and an API server may listen on any port, not only the usual 443 or 6443.
    let mut kubernetes_api_ports = Settings::default().kubernetes_api_ports;
    for port in discovered.ports {
        if !kubernetes_api_ports.contains(&port) {
            kubernetes_api_ports.push(port);
        }
    }
    let settings = Settings {
        api_image_repository: args.api_image_repository.clone(),
        postgres_image: args.postgres_image.clone(),
        image_pull_policy: args.image_pull_policy.clone(),
        kubernetes_api_cidrs,
        kubernetes_api_ports,
        cluster_domain: args.cluster_domain.clone(),
        operator_namespace: args.lease_namespace.clone(),
        certificate_propagation_delay: args.certificate_propagation_delay,
        ..Settings::default()
    };
    let options = RunOptions {
        tenant_selector: args.tenant_selector.clone(),
        concurrency: args.concurrency,
        instance: args.pod_name.clone(),
    };

    if args.no_leader_election {
        info!("running without leader election");
        controller::run(client, settings, metrics, options, shutdown_signal()).await;
    } else {
        let identity = args
            .pod_name
            .clone()
            .unwrap_or_else(|| format!("dfr-operator-{}", std::process::id()));
        let manager = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
            .with_namespace(&args.lease_namespace)
            .with_identity(&identity)
            .with_duration(15)
            .with_grace(5)
            .with_field_manager("dfr-operator")
            .build()
            .await
            .map_err(|e| format!("leader election: {e}"))?;
        let (mut leader, lease_task) = manager.watch().await;
        info!(%identity, lease_namespace = %args.lease_namespace, "waiting to become the leader");
        loop {
            if *leader.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = leader.changed() => changed.map_err(|e| format!("leader election stopped: {e}"))?,
                () = shutdown_signal() => return Ok(()),
            }
        }
        info!(%identity, "became the leader; starting the controller");
        let mut lost = leader.clone();
        let stop = async move {
            tokio::select! {
                () = shutdown_signal() => {}
                _ = async { while lost.changed().await.is_ok() && *lost.borrow() {} } => {
                    warn!("lost the leader lease; stopping");
                }
            }
        };
        controller::run(client, settings, metrics, options, stop).await;
        drop(leader);
        // Releasing the lease lets a standby take over at once instead of after its expiry.
        match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
            Ok(Ok(Ok(_))) => info!("released the leader lease"),
            other => warn!(?other, "could not release the leader lease cleanly"),
        }
    }
    server.abort();
    Ok(())
}

/// Where the API server's endpoints are: NetworkPolicies see traffic after the Service DNAT.
#[derive(Default)]
struct ApiServerEndpoints {
    addresses: Vec<String>,
    ports: Vec<i32>,
}

/// The `kubernetes` Service's endpoint addresses (as /32 or /128) and ports.
async fn discover_api_server_endpoints(client: &Client) -> ApiServerEndpoints {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let params = ListParams::default().labels("kubernetes.io/service-name=kubernetes");
    match slices.list(&params).await {
        Ok(list) => ApiServerEndpoints {
            addresses: list
                .items
                .iter()
                .flat_map(|slice| slice.endpoints.iter())
                .flat_map(|endpoint| endpoint.addresses.iter())
                .map(|address| {
                    if address.contains(':') {
                        format!("{address}/128")
                    } else {
                        format!("{address}/32")
                    }
                })
                .collect(),
            ports: list
                .items
                .iter()
                .flat_map(|slice| slice.ports.iter().flatten())
                .filter_map(|port| port.port)
                .collect(),
        },
        Err(error) => {
            warn!(error = %error, "could not discover the API server endpoints; Patroni egress will allow any address on ports 443 and 6443");
            ApiServerEndpoints::default()
        }
    }
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
