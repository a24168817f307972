//! A local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) on loopback,
//! built from the upstream Go modules. `up` starts it and returns when the API server is ready
//! and the controller-manager is working; `down` stops exactly what `up` started.

pub mod binaries;
pub mod error;
pub mod kubeconfig;
pub mod pki;
pub mod process;

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use error::{Error, Result};

pub const SERVICE_CIDR: &str = "10.96.0.0/16";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where one named control plane keeps its state.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    pub name: String,
    pub state_dir: PathBuf,
}

/// Ports of one control plane, all on 127.0.0.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
    pub controller_manager: u16,
}

/// How long `up` took, for the figures people ask about.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    pub build: Option<Duration>,
    pub start_to_ready: Duration,
}

pub fn etcd_args(state: &Path, ports: Ports) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    vec![
        "--name=dfr".into(),
        format!("--data-dir={}", state.join("etcd").display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=dfr={peer}"),
        // A throw-away test cluster: durability is not worth the fsync latency.
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]
}

/// `advertise` is loopback for a control plane alone; with a node it is the host interface's
/// address, where pods reach the API server through the `kubernetes` Service.
pub fn apiserver_args(state: &Path, ports: Ports, advertise: IpAddr) -> Vec<String> {
    let pki = state.join("pki");
    let p = |name: &str| pki.join(name).display().to_string();
    let with_node = !advertise.is_loopback();
    let mut args = vec![
        format!("--etcd-servers=http://127.0.0.1:{}", ports.etcd_client),
        format!("--bind-address={advertise}"),
        format!("--secure-port={}", ports.apiserver),
        format!("--advertise-address={advertise}"),
        format!("--tls-cert-file={}", p("apiserver.crt")),
        format!("--tls-private-key-file={}", p("apiserver.key")),
        format!("--client-ca-file={}", p("ca.crt")),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", p("service-account.pub")),
        format!(
            "--service-account-signing-key-file={}",
            p("service-account.key")
        ),
        "--authorization-mode=Node,RBAC".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--allow-privileged=true".into(),
        "--profiling=false".into(),
    ];
    if with_node {
        args.extend([
            format!(
                "--kubelet-client-certificate={}",
                p("apiserver-kubelet-client.crt")
            ),
            format!("--kubelet-client-key={}", p("apiserver-kubelet-client.key")),
            "--kubelet-preferred-address-types=InternalIP".into(),
        ]);
    } else {
        // Without a node nothing could serve the `kubernetes` Service's endpoints.
        args.push("--endpoint-reconciler-type=none".into());
    }
    args
}

pub fn scheduler_args(state: &Path, port: u16) -> Vec<String> {
    let kubeconfig = state.join("scheduler.kubeconfig").display().to_string();
    vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        "--leader-elect=false".into(),
        "--profiling=false".into(),
    ]
}

pub fn controller_manager_args(state: &Path, ports: Ports) -> Vec<String> {
    let pki = state.join("pki");
    let p = |name: &str| pki.join(name).display().to_string();
    let kubeconfig = state
        .join("controller-manager.kubeconfig")
        .display()
        .to_string();
    vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", ports.controller_manager),
        "--leader-elect=false".into(),
        "--use-service-account-credentials=true".into(),
        format!(
            "--service-account-private-key-file={}",
            p("service-account.key")
        ),
        format!("--root-ca-file={}", p("ca.crt")),
        format!("--cluster-signing-cert-file={}", p("ca.crt")),
        format!("--cluster-signing-key-file={}", p("ca.key")),
        "--controllers=*".into(),
        "--profiling=false".into(),
    ]
}

fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::io("finding a free port"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(Error::io("finding a free port"))
}

impl ControlPlane {
    pub fn new(name: &str, state_dir: Option<PathBuf>) -> Result<Self> {
        let state_dir = match state_dir {
            Some(dir) => dir,
            None => binaries::cache_root()?.join("clusters").join(name),
        };
        Ok(Self {
            name: name.to_string(),
            state_dir,
        })
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.state_dir.join("kubeconfig")
    }

    /// A client for the admin, once the control plane is up.
    pub async fn client(&self) -> Result<kube::Client> {
        let kubeconfig =
            kube::config::Kubeconfig::read_from(self.kubeconfig()).map_err(|e| Error::Io {
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

    /// Whether this control plane answers /readyz now.
    pub async fn is_ready(&self) -> bool {
        if !self.kubeconfig().exists() {
            return false;
        }
        let Ok(client) = self.client().await else {
            return false;
        };
        readyz(&client).await
    }

    pub async fn up(&self) -> Result<Timings> {
        self.start(None).await
    }

    /// The control plane plus a real node (containerd, kubelet, kube-proxy, CoreDNS, local
    /// volumes) with `images` (docker-archive tars) loaded into its containerd.
    pub async fn up_with_node(&self, images: &[PathBuf]) -> Result<Timings> {
        self.start(Some(images)).await
    }

    pub fn has_node(&self) -> bool {
        crate::node::record_path(&self.state_dir).exists()
    }

    async fn start(&self, node_images: Option<&[PathBuf]>) -> Result<Timings> {
        if self.is_ready().await {
            if node_images.is_some() && !self.has_node() {
                return Err(Error::RunningWithoutNode(self.name.clone()));
            }
            return Ok(Timings {
                build: None,
                start_to_ready: Duration::ZERO,
            });
        }
        // A half-started or crashed earlier run: clear it out first.
        self.down().await?;
        if node_images.is_some() {
            crate::node::lock(&self.state_dir)?;
        }
        let (bin_dir, build) = binaries::ensure_built()?;
        let started = Instant::now();
        let ports = Ports {
            etcd_client: free_port()?,
            etcd_peer: free_port()?,
            apiserver: free_port()?,
            controller_manager: free_port()?,
        };
        let state = &self.state_dir;
        let advertise = match node_images {
            Some(_) => IpAddr::from(crate::node::config::HOST_IP),
            None => IpAddr::from(Ipv4Addr::LOCALHOST),
        };
        let node_name = crate::node::node_name(&self.name);
        let service_ip = IpAddr::from([10, 96, 0, 1]);
        pki::generate(advertise, service_ip, &node_name)?.write(&state.join("pki"))?;
        let server = format!("https://{advertise}:{}", ports.apiserver);
        let pki_dir = state.join("pki");
        let write = |file: &str, content: String| {
            let path = state.join(file);
            std::fs::write(&path, content).map_err(Error::io(format!("writing {}", path.display())))
        };
        write(
            "kubeconfig",
            kubeconfig::render(&server, &pki_dir, "admin", "admin.crt", "admin.key"),
        )?;
        write(
            "controller-manager.kubeconfig",
            kubeconfig::render(
                &server,
                &pki_dir,
                "controller-manager",
                "controller-manager.crt",
                "controller-manager.key",
            ),
        )?;
        write(
            "scheduler.kubeconfig",
            kubeconfig::render(
                &server,
                &pki_dir,
                "scheduler",
                "scheduler.crt",
                "scheduler.key",
            ),
        )?;
        let node = match node_images {
            Some(images) => {
                let layout = crate::node::NodeLayout {
                    node_name,
                    state_dir: state.clone(),
                    run_dir: PathBuf::from("/run/dfr").join(&self.name),
                    kubelet_port: free_port()?,
                    kubelet_healthz_port: free_port()?,
                    proxy_healthz_port: free_port()?,
                    proxy_metrics_port: free_port()?,
                };
                crate::node::prepare(&layout, &server, &pki_dir)?;
                Some((layout, images))
            }
            None => None,
        };

        let mut etcd = process::spawn(&bin_dir, "etcd", &etcd_args(state, ports), state)?;
        let mut apiserver = process::spawn(
            &bin_dir,
            "kube-apiserver",
            &apiserver_args(state, ports, advertise),
            state,
        )?;
        let client = self.client().await?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while !readyz(&client).await {
            etcd.check_alive()?;
            apiserver.check_alive()?;
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    component: "kube-apiserver".into(),
                    seconds: READY_TIMEOUT.as_secs(),
                    log: apiserver.log.clone(),
                    tail: process::tail(&apiserver.log, 20),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut controller_manager = process::spawn(
            &bin_dir,
            "kube-controller-manager",
            &controller_manager_args(state, ports),
            state,
        )?;
        // The token controller creating `default` ServiceAccounts proves the controller-manager works.
        let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
            kube::Api::namespaced(client.clone(), "default");
        while accounts.get_opt("default").await.ok().flatten().is_none() {
            controller_manager.check_alive()?;
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    component: "kube-controller-manager".into(),
                    seconds: READY_TIMEOUT.as_secs(),
                    log: controller_manager.log.clone(),
                    tail: process::tail(&controller_manager.log, 20),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some((layout, images)) = node {
            process::spawn(
                &bin_dir,
                "kube-scheduler",
                &scheduler_args(state, free_port()?),
                state,
            )?;
            crate::node::start(&layout, &bin_dir, &client, images).await?;
        }
        Ok(Timings {
            build,
            start_to_ready: started.elapsed(),
        })
    }

    /// Stops what `up` started, puts the machine back as it was and removes the state dir.
    /// Safe to call twice. Returns what it stopped; problems restoring the machine are errors.
    pub async fn down(&self) -> Result<Vec<String>> {
        // Processes started against this control plane (the demo's operator) stop first, then
        // the controllers, so nothing makes new pods while the node drains.
        let mut stopped = process::stop_all(
            &self.state_dir,
            &["dfr-operator", "kube-controller-manager", "kube-scheduler"],
        )?;
        let mut problems = Vec::new();
        if let Some(record) = crate::node::read_record(&self.state_dir) {
            if let Ok(client) = self.client().await {
                crate::node::drain(&client, &record.layout).await;
            }
            let (node_stopped, node_problems) = crate::node::stop(&record)?;
            stopped.extend(node_stopped);
            problems = node_problems;
        }
        stopped.extend(process::stop_all(
            &self.state_dir,
            &["kube-apiserver", "etcd"],
        )?);
        if self.state_dir.exists() {
            std::fs::remove_dir_all(&self.state_dir)
                .map_err(Error::io(format!("removing {}", self.state_dir.display())))?;
        }
        if !problems.is_empty() {
            return Err(Error::Restore(problems.join("\n")));
        }
        Ok(stopped)
    }

    /// Shell lines that point kubectl and the tests at this control plane.
    pub fn env_lines(&self) -> Result<Vec<String>> {
        if !self.kubeconfig().exists() {
            return Err(Error::NotRunning(self.name.clone(), self.state_dir.clone()));
        }
        let bin_dir = binaries::bin_dir()?;
        let kubeconfig = self.kubeconfig().display().to_string();
        Ok(vec![
            format!("export KUBECONFIG={kubeconfig}"),
            format!("export DFR_KUBECONFIG={kubeconfig}"),
            format!("export DFR_KUBECTL={}", bin_dir.join("kubectl").display()),
            format!("export PATH={}:$PATH", bin_dir.display()),
        ])
    }
}

async fn readyz(client: &kube::Client) -> bool {
    let Ok(request) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    matches!(client.request_text(request).await, Ok(body) if body.trim() == "ok")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> Ports {
        Ports {
            etcd_client: 1,
            etcd_peer: 2,
            apiserver: 3,
            controller_manager: 4,
        }
    }

    #[test]
    fn everything_listens_on_loopback_only() {
        let state = Path::new("/state");
        let etcd = etcd_args(state, ports()).join(" ");
        assert!(etcd.contains("--listen-client-urls=http://127.0.0.1:1"));
        assert!(etcd.contains("--listen-peer-urls=http://127.0.0.1:2"));
        let apiserver = apiserver_args(state, ports(), IpAddr::from([127, 0, 0, 1])).join(" ");
        assert!(apiserver.contains("--bind-address=127.0.0.1 --secure-port=3"));
        assert!(apiserver.contains("--etcd-servers=http://127.0.0.1:1"));
        let cm = controller_manager_args(state, ports()).join(" ");
        assert!(cm.contains("--bind-address=127.0.0.1 --secure-port=4"));
    }

    #[test]
    fn token_requests_and_rbac_are_enabled() {
        let apiserver =
            apiserver_args(Path::new("/s"), ports(), IpAddr::from([127, 0, 0, 1])).join(" ");
        assert!(
            apiserver.contains("--service-account-signing-key-file=/s/pki/service-account.key")
        );
        assert!(apiserver.contains("--authorization-mode=Node,RBAC"));
        let cm = controller_manager_args(Path::new("/s"), ports()).join(" ");
        assert!(cm.contains("--service-account-private-key-file=/s/pki/service-account.key"));
        assert!(cm.contains("--root-ca-file=/s/pki/ca.crt"));
    }
}
