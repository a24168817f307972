//! The cluster's certificates (the control plane's and the node's) and the service-account
//! signing key, generated fresh for every cluster with rcgen (ECDSA P-256).

use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::error::{Error, Result};

pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

pub struct Pki {
    pub ca: CertifiedKey,
    pub apiserver: CertifiedKey,
    pub admin: CertifiedKey,
    pub controller_manager: CertifiedKey,
    pub scheduler: CertifiedKey,
    /// The kubelet's client identity (`system:node:<node>`), its serving certificate, the API
    /// server's client certificate towards kubelets, and kube-proxy's identity.
    pub node: CertifiedKey,
    pub kubelet_serving: CertifiedKey,
    pub apiserver_kubelet_client: CertifiedKey,
    pub kube_proxy: CertifiedKey,
    /// The aggregation layer: a CA of its own for requestheader authentication (extension API
    /// servers trust only it for the X-Remote-* headers, so no other client certificate can
    /// assert a user that way) and the API server's proxy client certificate it issued.
    pub front_proxy_ca: CertifiedKey,
    pub front_proxy_client: CertifiedKey,
    /// The metrics APIs' client identities (towards the API server and the kubelet) and their
    /// serving certificates, issued by the cluster CA for their Services' DNS names, which the
    /// aggregator verifies, and the address they listen on.
    pub metrics_server: CertifiedKey,
    pub metrics_server_serving: CertifiedKey,
    pub prometheus_adapter: CertifiedKey,
    pub prometheus_adapter_serving: CertifiedKey,
    pub service_account_private_pem: String,
    pub service_account_public_pem: String,
}

fn distinguished_name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    if let Some(organization) = organization {
        name.push(DnType::OrganizationName, organization);
    }
    name
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    organization: Option<&str>,
    names: &[SanType],
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertifiedKey> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = distinguished_name(common_name, organization);
    params.subject_alt_names = names.to_vec();
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer)?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// `advertise` is the address the API server tells clients and pods to use; `node_name` is the
/// name the kubelet registers under.
fn new_ca(common_name: &str) -> Result<(CertifiedKey, Issuer<'static, KeyPair>)> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = distinguished_name(common_name, None);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca = CertifiedKey {
        cert_pem: ca_cert.pem(),
        key_pem: ca_key.serialize_pem(),
    };
    Ok((ca, Issuer::new(ca_params, ca_key)))
}

/// A CA of its own and one server certificate it issued for `dns_names` and `ips`, for a
/// service whose clients should trust it and nothing else (the S3 server: tenants are given
/// this CA, which must not also vouch for the API server). The CA's key is not kept.
pub fn server_with_own_ca(
    ca_name: &str,
    common_name: &str,
    dns_names: &[&str],
    ips: &[IpAddr],
) -> Result<(CertifiedKey, CertifiedKey)> {
    let (mut ca, issuer) = new_ca(ca_name)?;
    let mut names = dns_names
        .iter()
        .map(|name| Ok(SanType::DnsName((*name).try_into()?)))
        .collect::<Result<Vec<_>>>()?;
    names.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let server = leaf(
        &issuer,
        common_name,
        None,
        &names,
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    ca.key_pem.clear();
    Ok((ca, server))
}

/// Writes `content` to `path`, readable by root only when `private`.
pub fn write_file(path: &Path, content: &str, private: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if private { 0o600 } else { 0o644 };
    // Created with its final mode, so a secret is never readable by others even for a moment.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(Error::io(format!("writing {}", path.display())))?;
    std::io::Write::write_all(&mut file, content.as_bytes())
        .map_err(Error::io(format!("writing {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(Error::io(format!("setting the mode of {}", path.display())))
}

/// The client certificate's common name the API server presents to extension API servers, and
/// the only name they accept (`--requestheader-allowed-names`).
pub const FRONT_PROXY_CLIENT: &str = "front-proxy-client";

/// The identities of the metrics APIs, as RBAC names them (`User` subjects).
pub const METRICS_SERVER_USER: &str = "dfr-cluster:metrics-server";
pub const PROMETHEUS_ADAPTER_USER: &str = "dfr-cluster:prometheus-adapter";

/// What a metrics API's serving certificate names: `<service>.<namespace>.svc` (the name the
/// aggregator checks) and the address it listens on.
pub struct ServingNames<'a> {
    pub service_dns: &'a str,
    pub ip: IpAddr,
}

fn serving(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    names: &ServingNames<'_>,
) -> Result<CertifiedKey> {
    leaf(
        issuer,
        common_name,
        None,
        &[
            SanType::DnsName(names.service_dns.try_into()?),
            SanType::IpAddress(names.ip),
        ],
        ExtendedKeyUsagePurpose::ServerAuth,
    )
}

/// The serving certificates of the metrics APIs behind the aggregation layer.
pub struct MetricsApisServing<'a> {
    pub metrics_server: ServingNames<'a>,
    pub prometheus_adapter: ServingNames<'a>,
}

/// `metrics_apis` names the metrics APIs' serving certificates.
pub fn generate(
    advertise: IpAddr,
    service_ip: IpAddr,
    node_name: &str,
    metrics_apis: &MetricsApisServing<'_>,
) -> Result<Pki> {
    let (ca, issuer) = new_ca("dfr-cluster-ca")?;
    let (front_proxy_ca, front_proxy_issuer) = new_ca("dfr-front-proxy-ca")?;

    let mut names: Vec<SanType> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .map(|name| Ok(SanType::DnsName((*name).try_into()?)))
    .collect::<Result<_>>()?;
    for ip in [IpAddr::from([127, 0, 0, 1]), advertise, service_ip] {
        if !names.contains(&SanType::IpAddress(ip)) {
            names.push(SanType::IpAddress(ip));
        }
    }
    let server = ExtendedKeyUsagePurpose::ServerAuth;
    let client = ExtendedKeyUsagePurpose::ClientAuth;
    let service_account = KeyPair::generate()?;
    Ok(Pki {
        apiserver: leaf(&issuer, "kube-apiserver", None, &names, server.clone())?,
        admin: leaf(
            &issuer,
            "dfr-cluster-admin",
            Some("system:masters"),
            &[],
            client.clone(),
        )?,
        controller_manager: leaf(
            &issuer,
            "system:kube-controller-manager",
            None,
            &[],
            client.clone(),
        )?,
        scheduler: leaf(&issuer, "system:kube-scheduler", None, &[], client.clone())?,
        node: leaf(
            &issuer,
            &format!("system:node:{node_name}"),
            Some("system:nodes"),
            &[],
            client.clone(),
        )?,
        kubelet_serving: leaf(
            &issuer,
            node_name,
            None,
            &[
                SanType::DnsName(node_name.try_into()?),
                SanType::IpAddress(advertise),
            ],
            server,
        )?,
        apiserver_kubelet_client: leaf(
            &issuer,
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
            &[],
            client.clone(),
        )?,
        kube_proxy: leaf(&issuer, "system:kube-proxy", None, &[], client.clone())?,
        front_proxy_client: leaf(
            &front_proxy_issuer,
            FRONT_PROXY_CLIENT,
            None,
            &[],
            client.clone(),
        )?,
        front_proxy_ca,
        metrics_server: leaf(&issuer, METRICS_SERVER_USER, None, &[], client.clone())?,
        metrics_server_serving: serving(&issuer, "metrics-server", &metrics_apis.metrics_server)?,
        prometheus_adapter: leaf(&issuer, PROMETHEUS_ADAPTER_USER, None, &[], client)?,
        prometheus_adapter_serving: serving(
            &issuer,
            "prometheus-adapter",
            &metrics_apis.prometheus_adapter,
        )?,
        service_account_private_pem: service_account.serialize_pem(),
        service_account_public_pem: service_account.public_key_pem(),
        ca,
    })
}

impl Pki {
    /// Writes every file the components read, private keys readable by root only.
    pub fn write(&self, dir: &Path) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let files: [(&str, &str, bool); 32] = [
            ("ca.crt", &self.ca.cert_pem, false),
            ("ca.key", &self.ca.key_pem, true),
            ("apiserver.crt", &self.apiserver.cert_pem, false),
            ("apiserver.key", &self.apiserver.key_pem, true),
            ("admin.crt", &self.admin.cert_pem, false),
            ("admin.key", &self.admin.key_pem, true),
            (
                "controller-manager.crt",
                &self.controller_manager.cert_pem,
                false,
            ),
            (
                "controller-manager.key",
                &self.controller_manager.key_pem,
                true,
            ),
            ("scheduler.crt", &self.scheduler.cert_pem, false),
            ("scheduler.key", &self.scheduler.key_pem, true),
            ("node.crt", &self.node.cert_pem, false),
            ("node.key", &self.node.key_pem, true),
            ("kubelet-serving.crt", &self.kubelet_serving.cert_pem, false),
            ("kubelet-serving.key", &self.kubelet_serving.key_pem, true),
            (
                "apiserver-kubelet-client.crt",
                &self.apiserver_kubelet_client.cert_pem,
                false,
            ),
            (
                "apiserver-kubelet-client.key",
                &self.apiserver_kubelet_client.key_pem,
                true,
            ),
            ("kube-proxy.crt", &self.kube_proxy.cert_pem, false),
            ("kube-proxy.key", &self.kube_proxy.key_pem, true),
            ("front-proxy-ca.crt", &self.front_proxy_ca.cert_pem, false),
            // Not needed after `up` (nothing else is issued from it), but kept like ca.key.
            ("front-proxy-ca.key", &self.front_proxy_ca.key_pem, true),
            (
                "front-proxy-client.crt",
                &self.front_proxy_client.cert_pem,
                false,
            ),
            (
                "front-proxy-client.key",
                &self.front_proxy_client.key_pem,
                true,
            ),
            ("metrics-server.crt", &self.metrics_server.cert_pem, false),
            ("metrics-server.key", &self.metrics_server.key_pem, true),
            (
                "metrics-server-serving.crt",
                &self.metrics_server_serving.cert_pem,
                false,
            ),
            (
                "metrics-server-serving.key",
                &self.metrics_server_serving.key_pem,
                true,
            ),
            (
                "prometheus-adapter.crt",
                &self.prometheus_adapter.cert_pem,
                false,
            ),
            (
                "prometheus-adapter.key",
                &self.prometheus_adapter.key_pem,
                true,
            ),
            (
                "prometheus-adapter-serving.crt",
                &self.prometheus_adapter_serving.cert_pem,
                false,
            ),
            (
                "prometheus-adapter-serving.key",
                &self.prometheus_adapter_serving.key_pem,
                true,
            ),
            (
                "service-account.key",
                &self.service_account_private_pem,
                true,
            ),
            (
                "service-account.pub",
                &self.service_account_public_pem,
                false,
            ),
        ];
        for (name, content, private) in files {
            let path = dir.join(name);
            std::fs::write(&path, content)
                .map_err(Error::io(format!("writing {}", path.display())))?;
            let mode = if private { 0o600 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(Error::io(format!("setting the mode of {}", path.display())))?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_certificate_is_distinct_and_pem() {
        let pki = generate(
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([10, 96, 0, 1]),
            "dfr-node",
            &MetricsApisServing {
                metrics_server: ServingNames {
                    service_dns: "metrics-server.dfr-monitoring.svc",
                    ip: IpAddr::from([127, 0, 0, 1]),
                },
                prometheus_adapter: ServingNames {
                    service_dns: "prometheus-adapter.dfr-monitoring.svc",
                    ip: IpAddr::from([127, 0, 0, 1]),
                },
            },
        )
        .unwrap();
        let certs = [
            &pki.ca,
            &pki.apiserver,
            &pki.admin,
            &pki.controller_manager,
            &pki.scheduler,
            &pki.node,
            &pki.kubelet_serving,
            &pki.apiserver_kubelet_client,
            &pki.kube_proxy,
            &pki.front_proxy_ca,
            &pki.front_proxy_client,
            &pki.metrics_server,
            &pki.metrics_server_serving,
            &pki.prometheus_adapter,
            &pki.prometheus_adapter_serving,
        ];
        for cert in certs {
            assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
            assert!(cert.key_pem.contains("PRIVATE KEY"));
        }
        assert_ne!(pki.ca.key_pem, pki.apiserver.key_pem);
        // The requestheader CA must not be the client CA: any client certificate the cluster CA
        // issued could otherwise assert another user through X-Remote-User.
        assert_ne!(pki.front_proxy_ca.cert_pem, pki.ca.cert_pem);
        assert!(pki.service_account_public_pem.contains("PUBLIC KEY"));
    }

    #[test]
    fn a_server_with_its_own_ca_keeps_no_ca_key() {
        let (ca, server) = server_with_own_ca(
            "test-ca",
            "test",
            &["s3.example.internal"],
            &[IpAddr::from([10, 234, 0, 1])],
        )
        .unwrap();
        assert!(ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(ca.key_pem.is_empty());
        assert!(server.key_pem.contains("PRIVATE KEY"));
    }
}
