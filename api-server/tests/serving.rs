//! The listener of `dfr-api serve` (`dfr_api::server`), without a database: HTTPS with a
//! certificate renewed in place, and the drain on shutdown.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use dfr_api::server::tls::ReloadingCert;
use dfr_api::server::{self, Drained};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn app() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "finished"
            }),
        )
}

/// One HTTP/1.1 request on `stream`; the whole answer.
async fn request(mut stream: impl AsyncRead + AsyncWrite + Unpin, path: &str) -> String {
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

/// A self-signed certificate for localhost: (PEM certificate, PEM key, DER certificate).
fn certificate() -> (String, String, CertificateDer<'static>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (
        made.cert.pem(),
        made.signing_key.serialize_pem(),
        made.cert.der().clone(),
    )
}

/// Writes a version of the Secret as the kubelet does: files in a new directory, then the
/// `..data` symlink swapped to it in one rename. tls.crt and tls.key point through `..data`.
fn publish(dir: &Path, version: &str, cert: &str, key: &str) {
    let target = dir.join(version);
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("tls.crt"), cert).unwrap();
    std::fs::write(target.join("tls.key"), key).unwrap();
    let staged = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&staged);
    std::os::unix::fs::symlink(version, &staged).unwrap();
    std::fs::rename(&staged, dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        if !dir.join(name).exists() {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
    }
}

/// Connects with TLS trusting `trusted`; the certificate the server presented and its answer.
async fn fetch(
    addr: std::net::SocketAddr,
    trusted: &[CertificateDer<'static>],
) -> (CertificateDer<'static>, String) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted {
        roots.add(cert.clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let served = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    (served, request(stream, "/hello").await)
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = std::env::temp_dir().join(format!("dfr-tls-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let (first_pem, first_key, first) = certificate();
    let (second_pem, second_key, second) = certificate();
    publish(&dir, "..v1", &first_pem, &first_key);
    let cert = Arc::new(ReloadingCert::new(dir.join("tls.crt"), dir.join("tls.key")).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(
        listener,
        app(),
        Some(cert),
        std::future::pending(),
        Duration::from_secs(1),
    ));
    let trusted = [first.clone(), second.clone()];
    let (served, answer) = fetch(addr, &trusted).await;
    assert_eq!(served, first);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"),
        "{answer}"
    );

    publish(&dir, "..v2", &second_pem, &second_key);
    // Files are looked at once a second at most.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (served, answer) = fetch(addr, &trusted).await;
    assert_eq!(served, second, "the renewed certificate is served");
    assert!(answer.ends_with("hello"), "{answer}");

    // A renewal caught half written (a key that is not the certificate's) keeps the one in use.
    let (third_pem, _, _) = certificate();
    publish(&dir, "..v3", &third_pem, &second_key);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (served, _) = fetch(addr, &trusted).await;
    assert_eq!(served, second);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_plain_connection_to_the_https_port_gets_no_answer() {
    let dir = std::env::temp_dir().join(format!("dfr-tls-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pem, key, _) = certificate();
    publish(&dir, "..v1", &pem, &key);
    let cert = Arc::new(ReloadingCert::new(dir.join("tls.crt"), dir.join("tls.key")).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(
        listener,
        app(),
        Some(cert),
        std::future::pending(),
        Duration::from_secs(1),
    ));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    assert!(!String::from_utf8_lossy(&answer).contains("hello"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_missing_key_stops_the_start() {
    let error = ReloadingCert::new("/nonexistent/tls.crt".into(), "/nonexistent/tls.key".into())
        .err()
        .unwrap();
    assert!(error.contains("/nonexistent/tls.crt"), "{error}");
}

/// Starts serving `app()` over plain HTTP; the address, the trigger of the shutdown and the
/// task that returns how the drain ended.
async fn start(
    grace: Duration,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<Drained, String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(server::serve(
        listener,
        app(),
        None,
        async move {
            let _ = stopped.await;
        },
        grace,
    ));
    (addr, stop, served)
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish() {
    let (addr, stop, served) = start(Duration::from_secs(10)).await;
    let in_flight =
        tokio::spawn(
            async move { request(TcpStream::connect(addr).await.unwrap(), "/slow").await },
        );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(()).unwrap();
    let answer = in_flight.await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("finished"),
        "{answer}"
    );
    assert_eq!(served.await.unwrap().unwrap(), Drained::Complete);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connection is accepted after the drain"
    );
}

/// Reads one response (head and a body of the given length) from a kept-alive connection.
async fn response_on(stream: &mut TcpStream, body_length: usize) -> String {
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        answer.push(byte[0]);
    }
    let mut body = vec![0u8; body_length];
    stream.read_exact(&mut body).await.unwrap();
    answer.extend(body);
    String::from_utf8(answer).unwrap()
}

#[tokio::test]
async fn a_kept_alive_connection_is_told_to_close_before_it_is_closed() {
    let (addr, stop, served) = start(Duration::from_secs(10)).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let keep_alive = b"GET /hello HTTP/1.1\r\nhost: localhost\r\n\r\n";
    stream.write_all(keep_alive).await.unwrap();
    let first = response_on(&mut stream, "hello".len()).await.to_lowercase();
    assert!(!first.contains("connection: close"), "{first}");
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The client reuses its pooled connection after the shutdown began: it gets an answer,
    // and the answer says not to reuse the connection again.
    stream.write_all(keep_alive).await.unwrap();
    let second = response_on(&mut stream, "hello".len()).await.to_lowercase();
    assert!(
        second.starts_with("http/1.1 200") && second.contains("connection: close"),
        "{second}"
    );
    assert_eq!(served.await.unwrap().unwrap(), Drained::Complete);
}

#[tokio::test]
async fn the_drain_is_bounded_by_the_grace_period() {
    let (addr, stop, served) = start(Duration::from_millis(200)).await;
    let in_flight =
        tokio::spawn(
            async move { request(TcpStream::connect(addr).await.unwrap(), "/slow").await },
        );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    stop.send(()).unwrap();
    assert_eq!(
        served.await.unwrap().unwrap(),
        Drained::TimedOut { open: 1 }
    );
    assert!(started.elapsed() < Duration::from_millis(1000));
    in_flight.abort();
}

#[tokio::test]
async fn readiness_fails_once_shutdown_begins() {
    use axum::extract::State;
    use dfr_api::routes::health::{Readiness, ready};
    // Never connected: readiness answers before it asks the database.
    let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
    let readiness = Readiness::default();
    readiness.shut_down();
    let (status, body) = ready(State(pool), axum::Extension(readiness)).await;
    assert_eq!(status, 503);
    assert_eq!(body.0["reason"], "shutting down");
}
