//! One GET to a member's Patroni REST API over TLS, verified against the tenant CA, answered or
//! not within a deadline. A hung member still completes TCP handshakes (the kernel answers for
//! it), so only an HTTP status line proves its Patroni runs.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::naming;

/// A client that trusts one tenant's CA and checks a name every member's certificate carries.
#[derive(Clone)]
pub struct PatroniProbe {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    deadline: Duration,
}

impl PatroniProbe {
    /// `ca_pem` is the tenant CA bundle (the `ca.crt` of the database certificate's Secret).
    pub fn new(ca_pem: &[u8], namespace: &str, deadline: Duration) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(ca_pem) {
            let certificate = certificate.map_err(|e| format!("tenant CA: {e}"))?;
            roots
                .add(certificate)
                .map_err(|e| format!("tenant CA: {e}"))?;
        }
        if roots.is_empty() {
            return Err("tenant CA: no certificate".into());
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(format!("{}.{namespace}.svc", naming::POSTGRES_RW))
            .map_err(|e| format!("server name: {e}"))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            deadline,
        })
    }

    /// The HTTP status `path` answers with on the member at `ip`, or why there was none.
    pub async fn status(&self, ip: IpAddr, path: &str) -> Result<u16, String> {
        match tokio::time::timeout(self.deadline, self.get(ip, path)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", self.deadline.as_millis())),
        }
    }

    async fn get(&self, ip: IpAddr, path: &str) -> Result<u16, String> {
        let port = u16::try_from(naming::PATRONI_PORT).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect((ip, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut head = Vec::with_capacity(64);
        let mut buffer = [0u8; 256];
        while !head.contains(&b'\n') && head.len() < 1024 {
            let read = tls
                .read(&mut buffer)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if read == 0 {
                break;
            }
            head.extend_from_slice(&buffer[..read]);
        }
        status_code(&head).ok_or_else(|| "no HTTP status line".to_string())
    }
}

/// The status code of an HTTP/1.x status line at the start of `head`.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|byte| *byte == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts
        .next()
        .filter(|version| version.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_of_a_status_line_and_nothing_else() {
        assert_eq!(status_code(b"HTTP/1.0 200 OK\r\nServer: x\r\n"), Some(200));
        assert_eq!(
            status_code(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 abc\r\n"), None);
        assert_eq!(status_code(b""), None);
    }

    #[test]
    fn a_bundle_without_a_certificate_is_refused() {
        let Err(error) = PatroniProbe::new(b"not a pem", "dfr-x", Duration::from_secs(1)) else {
            panic!("accepted a CA bundle without a certificate");
        };
        assert!(error.contains("no certificate"), "{error}");
    }
}
