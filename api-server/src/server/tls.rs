//! The HTTPS certificate, read from a PEM certificate chain and a PEM private key and read
//! again when either file changes (see [`crate::reload`]), so a renewed certificate is served
//! without a restart. Files are looked at during a handshake at most once a second; a renewal
//! that cannot be read (half written, a key that does not match) is logged and the certificate
//! in use is kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::reload::Reloading;

/// Reads the certificate chain and key into what rustls serves.
pub fn load(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("{}: {e}", key_file.display()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("{}: {e}", key_file.display()))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|e| {
        format!(
            "{} does not match {}: {e}",
            key_file.display(),
            cert_file.display()
        )
    })?;
    Ok(certified)
}

/// Serves the files' certificate and reloads it when they change.
#[derive(Debug)]
pub struct ReloadingCert(Reloading<CertifiedKey, String>);

impl ReloadingCert {
    /// Fails when the files cannot be read now: a server must not start without a certificate.
    pub fn new(cert_file: PathBuf, key_file: PathBuf) -> Result<Self, String> {
        let files = vec![cert_file.clone(), key_file.clone()];
        Reloading::new("TLS certificate", files, move || {
            load(&cert_file, &key_file)
        })
        .map(ReloadingCert)
    }

    /// The certificate to serve now, read again first if the files changed.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// A rustls server configuration (HTTP/1.1, ring) serving `cert`.
pub fn server_config(cert: Arc<ReloadingCert>) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
