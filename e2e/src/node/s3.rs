//! An S3 server for backup tests: versitygw (built from e2e/versitygw-build) as a host process
//! on the host interface, where both the machine and the pods reach it, with TLS from a CA of
//! its own and the posix backend under the state dir, so `down` removes every object with it.
//!
//! `prepare` writes its certificates, root credentials and the bucket; `start` runs it and waits
//! until it accepts connections; `read` gives what a client needs (also `dfr-cluster env`). The
//! node's `stop` stops it by PID like the other daemons.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::config::HOST_IP;
use crate::host::{Error, Result, pki, process};

pub const COMPONENT: &str = "versitygw";
pub const PORT: u16 = 9000;
pub const BUCKET: &str = "dfr-backups";
/// versitygw checks the region in each request's SigV4 scope against this one.
pub const REGION: &str = "us-east-1";
/// A name for the server besides its address. CoreDNS answers it in pods (a `hosts` entry);
/// on the machine itself it resolves nowhere, so clients there use the address.
pub const DNS_NAME: &str = "s3.dfr.internal";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a client of the S3 server needs, kept in the state dir (mode 0600: it holds the root
/// secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Endpoint {
    /// `https://10.234.0.1:9000`.
    pub endpoint: String,
    pub host: IpAddr,
    pub port: u16,
    pub dns_name: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// The PEM of the CA that issued the server's certificate; it vouches for nothing else.
    pub ca_file: PathBuf,
    /// Where the posix backend keeps the bucket's objects, one file per object at its key's
    /// path, so a test can check on disk what a client stored (that it is encrypted, say).
    pub bucket_dir: PathBuf,
}

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("s3")
}

fn record_path(state_dir: &Path) -> PathBuf {
    dir(state_dir).join("s3.json")
}

/// The backend's root: one directory per bucket.
fn data_dir(state_dir: &Path) -> PathBuf {
    dir(state_dir).join("data")
}

/// The S3 server of the cluster whose state dir this is, if it has one.
pub fn read(state_dir: &Path) -> Option<S3Endpoint> {
    let text = std::fs::read_to_string(record_path(state_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

fn random_string(alphabet: &[u8], length: usize) -> String {
    let mut rng = rand::rng();
    (0..length)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// Writes the server's certificate (with its own CA), fresh root credentials and the bucket.
pub fn prepare(state_dir: &Path) -> Result<S3Endpoint> {
    let dir = dir(state_dir);
    let bucket_dir = data_dir(state_dir).join(BUCKET);
    // A bucket is a directory in the backend's root. Made here rather than with CreateBucket, so
    // `up` needs no S3 client; such a bucket has no ACL attributes, which the root account (the
    // only one) does not need.
    std::fs::create_dir_all(&bucket_dir)
        .map_err(Error::io(format!("creating {}", bucket_dir.display())))?;
    let host = IpAddr::from(HOST_IP);
    let address = host.to_string();
    // pgBackRest 2.45 matches the host it connects to against the certificate's DNS names only,
    // never its IP addresses: the address is a DNS name too, so `repo1-s3-endpoint=10.234.0.1`
    // verifies. Other clients match the IP address entry.
    let (ca, server) =
        pki::server_with_own_ca("dfr-s3-ca", DNS_NAME, &[DNS_NAME, &address], &[host])?;
    let ca_file = dir.join("ca.crt");
    pki::write_file(&ca_file, &ca.cert_pem, false)?;
    pki::write_file(&dir.join("server.crt"), &server.cert_pem, false)?;
    pki::write_file(&dir.join("server.key"), &server.key_pem, true)?;
    // AWS's shapes: a 20-character upper-case key id and a 40-character secret.
    let upper: Vec<u8> = (b'A'..=b'Z').chain(b'0'..=b'9').collect();
    let mixed: Vec<u8> = (b'A'..=b'Z')
        .chain(b'a'..=b'z')
        .chain(b'0'..=b'9')
        .collect();
    let endpoint = S3Endpoint {
        endpoint: format!("https://{address}:{PORT}"),
        host,
        port: PORT,
        dns_name: DNS_NAME.to_string(),
        bucket: BUCKET.to_string(),
        region: REGION.to_string(),
        access_key: random_string(&upper, 20),
        secret_key: random_string(&mixed, 40),
        ca_file,
        bucket_dir,
    };
    pki::write_file(
        &record_path(state_dir),
        &serde_json::to_string_pretty(&endpoint).unwrap_or_default(),
        true,
    )?;
    Ok(endpoint)
}

/// The server's arguments. Every path is absolute: the posix backend changes into its root
/// before it loads the certificate. Global options come before the `posix` command.
fn args(state_dir: &Path, endpoint: &S3Endpoint) -> Vec<String> {
    let dir = dir(state_dir);
    vec![
        "--port".into(),
        format!("{}:{}", endpoint.host, endpoint.port),
        "--cert".into(),
        dir.join("server.crt").display().to_string(),
        "--key".into(),
        dir.join("server.key").display().to_string(),
        "--region".into(),
        endpoint.region.clone(),
        // Without it every request is logged to stdout, which fills the log during a backup.
        "--quiet".into(),
        "posix".into(),
        data_dir(state_dir).display().to_string(),
    ]
}

/// Starts the server (the host interface must exist) and returns once it accepts connections.
pub async fn start(state_dir: &Path, binary: &Path, endpoint: &S3Endpoint) -> Result<()> {
    // The root credentials go in the environment, not the command line, which any user can read.
    let env = [
        ("ROOT_ACCESS_KEY", endpoint.access_key.as_str()),
        ("ROOT_SECRET_KEY", endpoint.secret_key.as_str()),
    ];
    let mut server = process::spawn_program_with_env(
        binary,
        COMPONENT,
        &args(state_dir, endpoint),
        &env,
        state_dir,
    )?;
    let address = SocketAddr::new(endpoint.host, endpoint.port);
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        server.check_alive()?;
        if TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(server.not_ready(READY_TIMEOUT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn prepare_keeps_the_secret_private_and_makes_the_bucket() {
        use std::os::unix::fs::PermissionsExt;
        let state = std::env::temp_dir().join(format!("dfr-s3-{}", std::process::id()));
        let endpoint = prepare(&state).unwrap();
        assert_eq!(endpoint.endpoint, "https://10.234.0.1:9000");
        assert_eq!(endpoint.access_key.len(), 20);
        assert_eq!(endpoint.secret_key.len(), 40);
        assert_eq!(read(&state), Some(endpoint.clone()));
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&record_path(&state)), 0o600);
        assert_eq!(mode(&dir(&state).join("server.key")), 0o600);
        assert!(data_dir(&state).join(BUCKET).is_dir());
        let args = args(&state, &endpoint);
        assert!(args.iter().all(|a| !a.contains(&endpoint.secret_key)));
        assert_eq!(args[args.len() - 2], "posix");
        std::fs::remove_dir_all(&state).unwrap();
    }
}
