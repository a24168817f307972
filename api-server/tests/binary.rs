//! The `dfr-api` binary as a Deployment runs it: `serve` as the application role without the
//! owner's credentials, over HTTPS, /metrics on its own port, SIGTERM draining; and its refusal
//! to serve a schema behind its migrations.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use support::TestApp;
use support::postgres::PgServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// Files the binary reads: a signing key, the key ring, a certificate for localhost.
fn files(dir: &Path, app: &TestApp) -> CertificateDer<'static> {
    std::fs::create_dir_all(dir).unwrap();
    let signing = rcgen::KeyPair::generate().unwrap().serialize_pem();
    std::fs::write(dir.join("jwt.pem"), signing).unwrap();
    std::fs::write(dir.join("keyring.json"), &app.keyring_json).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
    cert.cert.der().clone()
}

fn serve(dir: &Path, app: &TestApp, port: u16, metrics_port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dfr-api"))
        .env_clear()
        .env(
            "DFR_DATABASE_URL",
            PgServer::shared().url("dfr_app", &app.database),
        )
        .env("DFR_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "DFR_METRICS_LISTEN_ADDR",
            format!("127.0.0.1:{metrics_port}"),
        )
        .env("DFR_JWT_SIGNING_KEY_FILE", dir.join("jwt.pem"))
        .env("DFR_PII_KEYRING_FILE", dir.join("keyring.json"))
        .env("DFR_TLS_CERT_FILE", dir.join("tls.crt"))
        .env("DFR_TLS_KEY_FILE", dir.join("tls.key"))
        .env("DFR_SHUTDOWN_GRACE_SECONDS", "5")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// One GET over HTTPS trusting `cert`; the status line and body, or None if not connected.
async fn https_get(port: u16, cert: &CertificateDer<'static>, path: &str) -> Option<String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    Some(answer)
}

fn output(child: Child) -> (Option<i32>, String) {
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[tokio::test]
async fn serve_runs_without_the_owner_over_https_and_drains_on_sigterm() {
    let app = TestApp::start().await;
    let dir = std::env::temp_dir().join(format!("dfr-binary-{}", rand::random::<u64>()));
    let cert = files(&dir, &app);
    let (port, metrics_port) = (free_port(), free_port());
    let child = serve(&dir, &app, port, metrics_port);
    let started = Instant::now();
    let ready = loop {
        if let Some(answer) = https_get(port, &cert, "/api/dfr/health/ready").await {
            break answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            output(child)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("dfr_http_requests_total")
    );
    let on_api_port = https_get(port, &cert, "/metrics").await.unwrap();
    assert!(on_api_port.starts_with("HTTP/1.1 404"), "{on_api_port}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (code, log) = output(child);
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("shutting down") && log.contains("drained"),
        "{log}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn serve_refuses_a_schema_behind_its_migrations() {
    let app = TestApp::start().await;
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(&app.owner)
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("dfr-binary-{}", rand::random::<u64>()));
    files(&dir, &app);
    let child = serve(&dir, &app, free_port(), free_port());
    let (code, log) = output(child);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("schema is behind") && log.contains("dfr-api migrate"),
        "{log}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
