//! The HTTPS certificate, read from a PEM certificate chain and a PEM private key and read
//! again when either file changes, so a renewed certificate is served without a restart.
//! Kubernetes updates a mounted Secret by swapping a symlink to a new directory; the files'
//! metadata (followed through the link) then changes, which is what is compared. Files are
//! looked at during a handshake at most once a second; a renewal that cannot be read (half
//! written, a key that does not match) is logged and the certificate in use is kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often a handshake may look at the files.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What identifies one version of a file: modification time, size and inode.
type Stamp = (SystemTime, u64, u64);

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified()?, meta.len(), meta.ino()))
}

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

struct Current {
    key: Arc<CertifiedKey>,
    stamps: (Stamp, Stamp),
    checked: Instant,
}

/// Serves the files' certificate and reloads it when they change.
pub struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: Mutex<Current>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

impl ReloadingCert {
    /// Fails when the files cannot be read now: a server must not start without a certificate.
    pub fn new(cert_file: PathBuf, key_file: PathBuf) -> Result<Self, String> {
        let stamps = (
            stamp(&cert_file).map_err(|e| format!("{}: {e}", cert_file.display()))?,
            stamp(&key_file).map_err(|e| format!("{}: {e}", key_file.display()))?,
        );
        let key = Arc::new(load(&cert_file, &key_file)?);
        Ok(ReloadingCert {
            cert_file,
            key_file,
            current: Mutex::new(Current {
                key,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The certificate to serve now, read again first if the files changed.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        // A poisoned lock only means a panic elsewhere while holding it; the data is whole.
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.checked.elapsed() >= CHECK_EVERY {
            current.checked = Instant::now();
            self.reload_if_changed(&mut current);
        }
        Some(current.key.clone())
    }

    fn reload_if_changed(&self, current: &mut Current) {
        let (Ok(cert), Ok(key)) = (stamp(&self.cert_file), stamp(&self.key_file)) else {
            tracing::warn!(cert = %self.cert_file.display(), "TLS files unreadable; serving the certificate in use");
            return;
        };
        if (cert, key) == current.stamps {
            return;
        }
        match load(&self.cert_file, &self.key_file) {
            Ok(loaded) => {
                current.key = Arc::new(loaded);
                current.stamps = (cert, key);
                tracing::info!(cert = %self.cert_file.display(), "TLS certificate reloaded");
            }
            // Seen between the writes of a renewal; the next check reads it again.
            Err(error) => {
                tracing::warn!(%error, "TLS certificate not reloaded; serving the one in use")
            }
        }
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
