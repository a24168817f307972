//! One request to a member's Patroni REST API over TLS, verified against the tenant CA, answered
//! or not within a deadline: a GET for the failover guard, the certificate the member serves,
//! and an authenticated POST (Patroni's unsafe endpoints, such as /reload). A hung member still completes TCP handshakes (the kernel answers for
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
        let request = request_text("GET", path, ip, None);
        self.within_deadline(self.exchange(ip, request))
            .await
            .map(|answer| answer.status)
    }

    /// The certificate the member at `ip` serves on its REST API (DER), which is the one its
    /// PostgreSQL serves too: both read the same files and reload them together.
    pub async fn served_certificate(&self, ip: IpAddr) -> Result<Vec<u8>, String> {
        let request = request_text("GET", "/liveness", ip, None);
        self.within_deadline(self.exchange(ip, request))
            .await?
            .certificate
            .ok_or_else(|| "no certificate was presented".to_string())
    }

    /// POSTs to `path` with HTTP basic authentication, as Patroni's unsafe endpoints need; the
    /// HTTP status.
    pub async fn post(
        &self,
        ip: IpAddr,
        path: &str,
        user: &str,
        password: &str,
    ) -> Result<u16, String> {
        let request = request_text("POST", path, ip, Some((user, password)));
        self.within_deadline(self.exchange(ip, request))
            .await
            .map(|answer| answer.status)
    }

    async fn within_deadline(
        &self,
        exchange: impl std::future::Future<Output = Result<Answer, String>>,
    ) -> Result<Answer, String> {
        match tokio::time::timeout(self.deadline, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", self.deadline.as_millis())),
        }
    }

    async fn exchange(&self, ip: IpAddr, request: String) -> Result<Answer, String> {
        let port = u16::try_from(naming::PATRONI_PORT).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect((ip, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let certificate = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|certificate| certificate.as_ref().to_vec());
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
        let status = status_code(&head).ok_or_else(|| "no HTTP status line".to_string())?;
        Ok(Answer {
            status,
            certificate,
        })
    }
}

/// What one request brought back.
struct Answer {
    status: u16,
    /// The server's own certificate, DER.
    certificate: Option<Vec<u8>>,
}

/// An HTTP/1.1 request without a body, optionally with basic authentication.
fn request_text(method: &str, path: &str, ip: IpAddr, basic: Option<(&str, &str)>) -> String {
    let host = match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some((user, password)) = basic {
        let credentials = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{user}:{password}"),
        );
        request.push_str(&format!("Authorization: Basic {credentials}\r\n"));
    }
    if method != "GET" {
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    request
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
    fn a_post_carries_basic_authentication_and_an_empty_body() {
        let ip: IpAddr = "10.0.0.7".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(
            request_text("POST", "/reload", ip, Some(("patroni", "s3cret"))),
            "POST /reload HTTP/1.1\r\nHost: 10.0.0.7\r\nAuthorization: Basic cGF0cm9uaTpzM2NyZXQ=\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            request_text("GET", "/liveness", ip, None),
            "GET /liveness HTTP/1.1\r\nHost: 10.0.0.7\r\nConnection: close\r\n\r\n"
        );
        let v6: IpAddr = "fd00::1".parse().unwrap_or(ip);
        assert!(request_text("GET", "/", v6, None).contains("Host: [fd00::1]\r\n"));
    }

    #[test]
    fn a_bundle_without_a_certificate_is_refused() {
        let Err(error) = PatroniProbe::new(b"not a pem", "dfr-x", Duration::from_secs(1)) else {
            panic!("accepted a CA bundle without a certificate");
        };
        assert!(error.contains("no certificate"), "{error}");
    }
}
