//! What tests share: the control plane the test command started (one per run, named by
//! DFR_KUBECONFIG), a client for it, kubectl, the node cluster's S3 server (DFR_S3_*), and
//! unique names so tests run in parallel.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::host::binaries;

const HOW_TO_RUN: &str = "DFR_KUBECONFIG is not set: these tests need the local control plane. \
     Run the whole suite with `scripts/test`, or start one with \
     `target/debug/dfr-cluster up && eval \"$(target/debug/dfr-cluster env)\"` and run cargo test again";

pub fn kubeconfig_path() -> PathBuf {
    match std::env::var_os("DFR_KUBECONFIG") {
        Some(path) => PathBuf::from(path),
        None => panic!("{HOW_TO_RUN}"),
    }
}

pub async fn kube_client() -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig_path())
        .unwrap_or_else(|e| panic!("reading DFR_KUBECONFIG: {e}"));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("loading DFR_KUBECONFIG: {e}"));
    kube::Client::try_from(config).unwrap_or_else(|e| panic!("building a client: {e}"))
}

/// The bundled kubectl (v1.34.4) against the test control plane.
pub fn kubectl(args: &[&str]) -> Output {
    let mut command = kubectl_command();
    command
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {:?}: {e}", command.get_program()))
}

/// kubectl against the test cluster, for a test that runs it as a child it talks to.
pub fn kubectl_command() -> Command {
    let kubectl = match std::env::var_os("DFR_KUBECTL") {
        Some(path) => PathBuf::from(path),
        None => binaries::kubectl(&binaries::bin_dir().unwrap_or_else(|e| panic!("{e}"))),
    };
    let mut command = Command::new(kubectl);
    command.arg("--kubeconfig").arg(kubeconfig_path());
    command
}

const HOW_TO_RUN_S3: &str = "DFR_S3_ENDPOINT is not set: this test needs a node cluster's S3 \
     server. Start one with `target/debug/dfr-cluster up --node --name node && eval \
     \"$(target/debug/dfr-cluster env --name node)\"` and run cargo test again";

/// The S3 server of the node cluster the tests run against, from the `DFR_S3_*` variables that
/// `dfr-cluster env` prints: versitygw at `https://10.234.0.1:9000` (reachable from the machine
/// and from pods; in pods also as `s3.dfr.internal`), TLS from `ca_file`'s CA, SigV4 with the
/// root keys, path-style URLs, bucket `dfr-backups` already made. Panics with how to start one.
pub fn s3() -> crate::cluster::S3Endpoint {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{HOW_TO_RUN_S3}"));
    let host = var("DFR_S3_HOST");
    let port = var("DFR_S3_PORT");
    crate::cluster::S3Endpoint {
        endpoint: var("DFR_S3_ENDPOINT"),
        host: host
            .parse()
            .unwrap_or_else(|e| panic!("DFR_S3_HOST {host}: {e}")),
        port: port
            .parse()
            .unwrap_or_else(|e| panic!("DFR_S3_PORT {port}: {e}")),
        dns_name: var("DFR_S3_DNS_NAME"),
        bucket: var("DFR_S3_BUCKET"),
        region: var("DFR_S3_REGION"),
        access_key: var("DFR_S3_ACCESS_KEY"),
        secret_key: var("DFR_S3_SECRET_KEY"),
        ca_file: PathBuf::from(var("DFR_S3_CA_FILE")),
        bucket_dir: PathBuf::from(var("DFR_S3_BUCKET_DIR")),
    }
}

/// Six lower-case letters and digits, different for every call in every test process.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let alphabet: Vec<char> = ('a'..='z').chain('0'..='9').collect();
    let mut value = rand::random::<u32>() ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(16);
    let mut suffix = String::new();
    for i in 0..6 {
        // The first character is a letter so the suffix can start a DNS label.
        let base = if i == 0 { 26 } else { alphabet.len() as u32 };
        suffix.push(alphabet[(value % base) as usize]);
        value /= base;
    }
    suffix
}

/// A second S3 server a test can stop and start: versitygw from the same cache, on another port
/// of the same address, with the node cluster's server certificate (issued for the address, any
/// port) and root keys, and a data directory of its own. Dropping it stops the process and
/// removes the directory, also when the test panics.
pub struct StoppableS3 {
    endpoint: crate::cluster::S3Endpoint,
    data_dir: PathBuf,
    server: Option<std::process::Child>,
}

impl StoppableS3 {
    /// Starts one on `port` (of the node cluster's S3 address) and waits until it listens.
    pub fn start(port: u16) -> Self {
        let mut endpoint = s3();
        endpoint.port = port;
        endpoint.endpoint = format!("https://{}:{port}", endpoint.host);
        // Beside the cluster's own S3 data (ext4, where the posix backend's xattrs work; `down`
        // removes it should the test be killed before its Drop).
        let s3_dir = endpoint
            .bucket_dir
            .parent()
            .and_then(|data| data.parent())
            .unwrap_or_else(|| panic!("DFR_S3_BUCKET_DIR has no parent"))
            .to_path_buf();
        let data_dir = s3_dir.join(format!("stoppable-{port}-{}", unique_suffix()));
        endpoint.bucket_dir = data_dir.join(&endpoint.bucket);
        std::fs::create_dir_all(&endpoint.bucket_dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", endpoint.bucket_dir.display()));
        let mut server = Self {
            endpoint,
            data_dir,
            server: None,
        };
        server.resume();
        server
    }

    pub fn endpoint(&self) -> &crate::cluster::S3Endpoint {
        &self.endpoint
    }

    /// Starts the process again (same port, same data) and waits until it listens.
    pub fn resume(&mut self) {
        assert!(self.server.is_none(), "the S3 server is running already");
        let binary = binaries::ensure_versitygw().unwrap_or_else(|e| panic!("{e}"));
        let certificates = self
            .endpoint
            .ca_file
            .parent()
            .unwrap_or_else(|| panic!("DFR_S3_CA_FILE has no directory"))
            .to_path_buf();
        let address = std::net::SocketAddr::new(self.endpoint.host, self.endpoint.port);
        assert!(
            std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_millis(500))
                .is_err(),
            "{address} is taken already (an S3 server left by a killed test run?): stop it first"
        );
        let child = Command::new(binary)
            .env("ROOT_ACCESS_KEY", &self.endpoint.access_key)
            .env("ROOT_SECRET_KEY", &self.endpoint.secret_key)
            .arg("--port")
            .arg(format!("{}:{}", self.endpoint.host, self.endpoint.port))
            .arg("--cert")
            .arg(certificates.join("server.crt"))
            .arg("--key")
            .arg(certificates.join("server.key"))
            .arg("--region")
            .arg(&self.endpoint.region)
            .arg("--quiet")
            .arg("posix")
            .arg(&self.data_dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting versitygw: {e}"));
        self.server = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_millis(500))
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "versitygw on {address} did not listen within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Stops the process (the repository is then unreachable: connections are refused).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for StoppableS3 {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::unique_suffix;

    #[test]
    fn suffixes_are_dns_safe_and_differ() {
        let a = unique_suffix();
        let b = unique_suffix();
        assert_ne!(a, b);
        assert_eq!(a.len(), 6);
        assert!(a.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }
}
