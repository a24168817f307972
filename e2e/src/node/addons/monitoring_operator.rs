//! The Prometheus Operator (built from e2e/prometheus-operator-build) as a host process beside
//! the kubelet, and its CRDs, which the binary itself prints (`prometheus-operator crds`), so
//! they always match the version that runs.
//!
//! It talks to the API server as the cluster admin, with the address and certificates from the
//! node's kubeconfig (it has no `--kubeconfig` flag), and serves its own metrics on loopback
//! only. The node's `stop` stops it by PID like the other daemons.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use serde::Deserialize;

use super::apply;
use crate::host::binaries::{PROMETHEUS_OPERATOR_VERSION, PrometheusOperatorBinaries};
use crate::host::{Error, Result, ports, process};
use crate::images::monitoring::config_reloader_reference;

pub const COMPONENT: &str = "prometheus-operator";
const CRD_TIMEOUT: Duration = Duration::from_secs(60);
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The kinds the Prometheus and Alertmanager controllers watch. PrometheusAgent, ScrapeConfig
/// and ThanosRuler are left out: the operator checks for them and runs without them, and each
/// is hundreds of kilobytes of schema the API server would keep in memory.
pub const CRDS: &[&str] = &[
    "prometheuses.monitoring.coreos.com",
    "alertmanagers.monitoring.coreos.com",
    "alertmanagerconfigs.monitoring.coreos.com",
    "servicemonitors.monitoring.coreos.com",
    "podmonitors.monitoring.coreos.com",
    "probes.monitoring.coreos.com",
    "prometheusrules.monitoring.coreos.com",
];

/// The CRDs among the YAML documents `prometheus-operator crds` prints that `CRDS` names.
pub fn parse_crds(yaml: &str) -> Result<Vec<CustomResourceDefinition>> {
    let mut crds = Vec::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        // An empty document (a leading or trailing `---`) reads as None.
        let crd =
            Option::<CustomResourceDefinition>::deserialize(document).map_err(|e| Error::Io {
                what: "reading the Prometheus Operator's CRDs".into(),
                source: std::io::Error::other(e),
            })?;
        let Some(crd) = crd else {
            continue;
        };
        if CRDS.contains(&crd.metadata.name.as_deref().unwrap_or_default()) {
            crds.push(crd);
        }
    }
    if crds.len() != CRDS.len() {
        return Err(Error::Io {
            what: "reading the Prometheus Operator's CRDs".into(),
            source: std::io::Error::other(format!(
                "found {} of the {} it needs",
                crds.len(),
                CRDS.len()
            )),
        });
    }
    Ok(crds)
}

/// Applies the CRDs and waits until the API server serves them.
pub async fn install_crds(client: &kube::Client, operator: &Path) -> Result<()> {
    let output = Command::new(operator)
        .arg("crds")
        .output()
        .map_err(Error::io(format!("running {} crds", operator.display())))?;
    if !output.status.success() {
        return Err(Error::Io {
            what: format!("running {} crds", operator.display()),
            source: std::io::Error::other(String::from_utf8_lossy(&output.stderr).into_owned()),
        });
    }
    let crds = parse_crds(&String::from_utf8_lossy(&output.stdout))?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in &crds {
        // The documents carry no managed-by label; the field manager records who applied them.
        apply(api.clone(), crd).await?;
    }
    let deadline = Instant::now() + CRD_TIMEOUT;
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        while !established(&api, &name).await {
            if Instant::now() > deadline {
                return Err(Error::Io {
                    what: format!("waiting for the CRD {name}"),
                    source: std::io::Error::other(format!(
                        "not Established after {} s",
                        CRD_TIMEOUT.as_secs()
                    )),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Established is not yet served by discovery, and the operator reads discovery once at
    // start: seeing no Prometheus kind there, it exits ("no controller can be started").
    while !served_by_discovery(client).await {
        if Instant::now() > deadline {
            return Err(Error::Io {
                what: "waiting for discovery to list prometheuses and alertmanagers".into(),
                source: std::io::Error::other(format!(
                    "not listed after {} s",
                    CRD_TIMEOUT.as_secs()
                )),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn served_by_discovery(client: &kube::Client) -> bool {
    client
        .list_api_group_resources("monitoring.coreos.com/v1")
        .await
        .is_ok_and(|list| {
            ["prometheuses", "alertmanagers"]
                .iter()
                .all(|kind| list.resources.iter().any(|r| r.name == *kind))
        })
}

async fn established(api: &Api<CustomResourceDefinition>, name: &str) -> bool {
    let Ok(crd) = api.get(name).await else {
        return false;
    };
    crd.status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True")
}

/// The API server's address and the admin's certificate files, read from a kubeconfig that
/// `kubeconfig::render` wrote (the admin's files sit beside its CA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiAccess {
    pub server: String,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

pub fn api_access(kubeconfig: &Path) -> Result<ApiAccess> {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| Error::Io {
        what: format!("reading {}", kubeconfig.display()),
        source: std::io::Error::other(e),
    })?;
    let cluster = config
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .unwrap_or_default();
    let (Some(server), Some(ca)) = (cluster.server, cluster.certificate_authority) else {
        return Err(Error::Io {
            what: format!("reading {}", kubeconfig.display()),
            source: std::io::Error::other("no server or certificate-authority"),
        });
    };
    let pki = Path::new(&ca)
        .parent()
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    Ok(ApiAccess {
        server,
        ca_file: PathBuf::from(&ca),
        cert_file: pki.join("admin.crt"),
        key_file: pki.join("admin.key"),
    })
}

/// The operator's arguments. The certificate paths are under the state dir, which is how
/// `process::stop_all` recognises the process as this cluster's.
pub fn args(access: &ApiAccess, metrics_port: u16) -> Vec<String> {
    vec![
        format!("--apiserver={}", access.server),
        format!("--ca-file={}", access.ca_file.display()),
        format!("--cert-file={}", access.cert_file.display()),
        format!("--key-file={}", access.key_file.display()),
        format!(
            "--prometheus-config-reloader={}",
            config_reloader_reference(PROMETHEUS_OPERATOR_VERSION)
        ),
        // Its default, :8080, would listen on every interface of the machine.
        format!("--web.listen-address=127.0.0.1:{metrics_port}"),
        "--cluster-domain=cluster.local".into(),
        "--log-level=info".into(),
    ]
}

/// Starts the operator and returns once it answers /healthz.
pub async fn start(
    state_dir: &Path,
    binaries: &PrometheusOperatorBinaries,
    access: &ApiAccess,
) -> Result<()> {
    let port = ports::free_port()?;
    // The operator's client prefers $KUBECONFIG to --apiserver, and the calling shell's may name
    // another cluster (scripts/test exports the shared control plane's): it then looked for its
    // kinds there and exited. An empty value is the same as none to it.
    let mut operator = process::spawn_program_with_env(
        &binaries.operator,
        COMPONENT,
        &args(access, port),
        &[("KUBECONFIG", "")],
        state_dir,
    )?;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        operator.check_alive()?;
        if std::net::TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(operator.not_ready(READY_TIMEOUT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn access_comes_from_the_kubeconfig_and_the_admin_files_beside_its_ca() {
        let dir = std::env::temp_dir().join(format!("dfr-promop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("node.kubeconfig");
        std::fs::write(
            &kubeconfig,
            crate::host::kubeconfig::render(
                "https://10.234.0.1:6443",
                &dir.join("pki"),
                "node",
                "node.crt",
                "node.key",
            ),
        )
        .unwrap();
        let access = api_access(&kubeconfig).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(access.server, "https://10.234.0.1:6443");
        assert_eq!(access.cert_file, dir.join("pki/admin.crt"));
        assert_eq!(access.key_file, dir.join("pki/admin.key"));
        let args = args(&access, 4242);
        let state = dir.display().to_string();
        assert!(args.iter().any(|a| a.contains(&state)), "stop_all's marker");
        assert!(args.contains(&"--web.listen-address=127.0.0.1:4242".to_string()));
        assert!(args.contains(
            &"--prometheus-config-reloader=dfr-prometheus-config-reloader:0.93.0".to_string()
        ));
    }

    #[test]
    fn only_the_crds_the_controllers_need_are_kept_and_all_of_them_must_be_there() {
        let document = |name: &str| {
            format!(
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {name}\nspec:\n  group: monitoring.coreos.com\n  names: {{kind: X, plural: x}}\n  scope: Namespaced\n  versions: []\n"
            )
        };
        let mut all: Vec<String> = CRDS.iter().map(|name| document(name)).collect();
        all.push(document("thanosrulers.monitoring.coreos.com"));
        let crds = parse_crds(&all.join("---\n")).unwrap();
        assert_eq!(crds.len(), CRDS.len());
        assert!(parse_crds(&all[1..].join("---\n")).is_err());
    }
}
