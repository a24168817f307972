//! A Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager and, for a node,
//! kube-scheduler) built from the upstream Go modules, its files in a state dir it is given.
//! `prepare` writes its certificates and kubeconfigs, `start` returns when the API server is
//! ready and the controller-manager is working, and the `stop_*` functions stop exactly what it
//! started. Whether a node runs beside it is the cluster's business: here it is only the
//! address to advertise and the node name to certify.

pub mod args;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::host::ports::free_port;
use crate::host::{Error, Result, kubeconfig, pki, process};

pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The `kubernetes` Service's address, the first of SERVICE_CIDR.
pub const SERVICE_IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 96, 0, 1));
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const CONTROLLER_MANAGER_KUBECONFIG: &str = "controller-manager.kubeconfig";
const SCHEDULER_KUBECONFIG: &str = "scheduler.kubeconfig";
/// Stopped first, so nothing makes new pods while a node drains.
const CONTROLLERS: &[&str] = &["kube-controller-manager", "kube-scheduler"];
/// Stopped last, newest first.
const API: &[&str] = &["kube-apiserver", "etcd"];

/// Ports of one control plane, all on 127.0.0.1 (the API server's on the advertised address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
    pub controller_manager: u16,
}

impl Ports {
    pub fn free() -> Result<Self> {
        Ok(Self {
            etcd_client: free_port()?,
            etcd_peer: free_port()?,
            apiserver: free_port()?,
            controller_manager: free_port()?,
        })
    }
}

/// The certificates and keys under the state dir.
pub fn pki_dir(state: &Path) -> PathBuf {
    state.join("pki")
}

/// The admin's kubeconfig, which `dfr-cluster env` and the tests point at.
pub fn admin_kubeconfig(state: &Path) -> PathBuf {
    state.join("kubeconfig")
}

/// Where the API server listens, as its clients write it.
pub fn server_url(advertise: IpAddr, ports: Ports) -> String {
    format!("https://{advertise}:{}", ports.apiserver)
}

/// Generates the cluster's certificates (with the node's, named `node_name`, and the metrics
/// APIs' serving certificates named by `metrics_apis`) and writes them and the kubeconfigs of
/// the admin, the controller-manager and the scheduler.
pub fn prepare(
    state: &Path,
    ports: Ports,
    advertise: IpAddr,
    node_name: &str,
    metrics_apis: &pki::MetricsApisServing<'_>,
) -> Result<()> {
    let pki_dir = pki_dir(state);
    pki::generate(advertise, SERVICE_IP, node_name, metrics_apis)?.write(&pki_dir)?;
    let server = server_url(advertise, ports);
    let write = |path: PathBuf, content: String| {
        std::fs::write(&path, content).map_err(Error::io(format!("writing {}", path.display())))
    };
    write(
        admin_kubeconfig(state),
        kubeconfig::render(&server, &pki_dir, "admin", "admin.crt", "admin.key"),
    )?;
    write(
        state.join(CONTROLLER_MANAGER_KUBECONFIG),
        kubeconfig::render(
            &server,
            &pki_dir,
            "controller-manager",
            "controller-manager.crt",
            "controller-manager.key",
        ),
    )?;
    write(
        state.join(SCHEDULER_KUBECONFIG),
        kubeconfig::render(
            &server,
            &pki_dir,
            "scheduler",
            "scheduler.crt",
            "scheduler.key",
        ),
    )
}

/// A client for the admin, from the kubeconfig `prepare` wrote.
pub async fn client(state: &Path) -> Result<kube::Client> {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(admin_kubeconfig(state)).map_err(|e| Error::Io {
            what: "reading the kubeconfig".into(),
            source: std::io::Error::other(e),
        })?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| Error::Io {
            what: "loading the kubeconfig".into(),
            source: std::io::Error::other(e),
        })?;
    kube::Client::try_from(config).map_err(|e| Error::Io {
        what: "building a client".into(),
        source: std::io::Error::other(e),
    })
}

/// Whether the API server answers /readyz with `ok`.
pub async fn readyz(client: &kube::Client) -> bool {
    let Ok(request) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    matches!(client.request_text(request).await, Ok(body) if body.trim() == "ok")
}

/// Starts etcd and kube-apiserver, waits for /readyz, then starts kube-controller-manager and
/// waits for it to work. Returns the admin's client.
pub async fn start(
    state: &Path,
    bin_dir: &Path,
    ports: Ports,
    advertise: IpAddr,
) -> Result<kube::Client> {
    let mut etcd = process::spawn(bin_dir, "etcd", &args::etcd_args(state, ports), state)?;
    let mut apiserver = process::spawn(
        bin_dir,
        "kube-apiserver",
        &args::apiserver_args(state, ports, advertise),
        state,
    )?;
    let client = client(state).await?;
    let deadline = Instant::now() + READY_TIMEOUT;
    while !readyz(&client).await {
        etcd.check_alive()?;
        apiserver.check_alive()?;
        if Instant::now() > deadline {
            return Err(apiserver.not_ready(READY_TIMEOUT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut controller_manager = process::spawn(
        bin_dir,
        "kube-controller-manager",
        &args::controller_manager_args(state, ports),
        state,
    )?;
    // The token controller creating `default` ServiceAccounts proves the controller-manager works.
    let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(client.clone(), "default");
    while accounts.get_opt("default").await.ok().flatten().is_none() {
        controller_manager.check_alive()?;
        if Instant::now() > deadline {
            return Err(controller_manager.not_ready(READY_TIMEOUT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(client)
}

/// The scheduler, which only a cluster with a node needs.
pub fn start_scheduler(state: &Path, bin_dir: &Path) -> Result<()> {
    process::spawn(
        bin_dir,
        "kube-scheduler",
        &args::scheduler_args(state, free_port()?),
        state,
    )?;
    Ok(())
}

/// Stops the controller-manager and the scheduler. Returns what it stopped.
pub fn stop_controllers(state: &Path) -> Result<Vec<String>> {
    process::stop_all(state, CONTROLLERS)
}

/// Stops the API server and etcd. Returns what it stopped.
pub fn stop_api(state: &Path) -> Result<Vec<String>> {
    process::stop_all(state, API)
}
