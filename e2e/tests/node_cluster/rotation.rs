//! Certificate rotation under load, the specification's acceptance test: a tenant whose
//! certificates live one hour and are renewed 8 minutes after they are made (tls.duration 1h,
//! renewBefore 52m; its CA lives 2h and is due when an hour and 52 minutes remain), so that
//! about 8 minutes after the tenant is made the operator renews the tenant CA and re-issues every
//! leaf under it, while
//!
//! - clients call the API over HTTPS continuously (reads and registrations), trusting the CA
//!   bundle the tenant publishes in the API certificate's Secret, as an in-cluster client that
//!   mounts it would;
//! - one application session, over TLS with the server verified, stays open on the read-write
//!   Service and answers every second;
//! - the synchronous standby streams from the leader over its client-certificate connection.
//!
//! A renewal takes about twice the operator's certificate propagation delay (2 minutes by
//! default), and the next one is due 8 minutes after the first began: the end state is checked
//! in between. It passes when every request succeeded, the session and the replication connection are the
//! same backends at the end as at the start, and every member's PostgreSQL and Patroni serve a
//! certificate issued by the new CA, with the old CA gone from the bundle.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::json;

use super::backups::{apply, leader_pod, superuser_sql, token, wait_ready};
use super::eventually;

const NAME: &str = "kir-e2e-tls";
const NAMESPACE: &str = "dfr-kir-test";
const AREA: &str = "KI-01";
/// The whole rotation, CA and leaves with the trust-propagation waits between them, fits in
/// this with room to spare.
const ROTATION_TIMEOUT: Duration = Duration::from_secs(900);

fn country() -> dfr_crds::DfrCountry {
    let mut country = super::repositories::country(NAME, "KIR", 2, serde_json::Value::Null);
    let mut spec = serde_json::to_value(&country.spec).unwrap();
    spec["tls"] = json!({"duration": "1h", "renewBefore": "52m"});
    country.spec = serde_json::from_value(spec).unwrap();
    country
}

fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// The PEM blocks of a bundle, each normalised to its base64 body.
fn pem_blocks(bundle: &str) -> Vec<String> {
    bundle
        .split("-----END CERTIFICATE-----")
        .filter_map(|block| {
            let body: String = block
                .lines()
                .filter(|line| !line.starts_with("-----") && !line.trim().is_empty())
                .collect();
            (!body.is_empty()).then_some(body)
        })
        .collect()
}

/// Whether `leaf` verifies against `ca` alone (openssl verify, no system roots).
fn issued_by(leaf: &str, ca: &str) -> bool {
    let dir = std::env::temp_dir().join(format!(
        "dfr-rotation-{}",
        dfr_e2e::testing::unique_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca).unwrap();
    std::fs::write(dir.join("leaf.pem"), leaf).unwrap();
    let verified = Command::new("openssl")
        .args([
            "verify",
            "-no-CApath",
            "-no-CAstore",
            "-purpose",
            "any",
            "-CAfile",
        ])
        .arg(dir.join("ca.pem"))
        .arg(dir.join("leaf.pem"))
        .output()
        .unwrap()
        .status
        .success();
    let _ = std::fs::remove_dir_all(&dir);
    verified
}

/// The certificate a member serves on `port`, as a base64 body: PostgreSQL after its
/// STARTTLS-like request (`-starttls postgres`), Patroni's REST API directly.
fn served_certificate(ip: &str, port: u16, postgres: bool) -> Option<String> {
    let mut command = Command::new("timeout");
    command.args([
        "10",
        "openssl",
        "s_client",
        "-connect",
        &format!("{ip}:{port}"),
    ]);
    if postgres {
        command.args(["-starttls", "postgres"]);
    }
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text.find("-----END CERTIFICATE-----")? + "-----END CERTIFICATE-----".len();
    pem_blocks(&text[start..end]).into_iter().next()
}

/// The IPs of the tenant's members.
async fn member_ips(client: &Client) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    pods.list(&ListParams::default().labels(&format!(
        "app.kubernetes.io/name=postgres,app.kubernetes.io/instance={NAME}"
    )))
    .await
    .unwrap()
    .items
    .into_iter()
    .filter_map(|pod| pod.status?.pod_ip)
    .collect()
}

/// An application session held open from the standby's pod to the read-write Service, over
/// TLS with the server's name and CA verified, printing its backend pid and the time every
/// second. It ends itself after `seconds`.
fn open_session(standby: &str, password: &str, seconds: u64) -> Child {
    let connection = format!(
        "host=postgres-rw.{NAMESPACE}.svc port=5432 dbname=dfr user=dfr_app sslmode=verify-full sslrootcert=/etc/dfr/tls/ca.crt"
    );
    let mut session = dfr_e2e::testing::kubectl_command()
        .args([
            "-n",
            NAMESPACE,
            "exec",
            "-i",
            standby,
            "-c",
            "postgres",
            "--",
            "env",
            &format!("PGPASSWORD={password}"),
            "timeout",
            &seconds.to_string(),
            "psql",
            "-qAt",
            "-v",
            "ON_ERROR_STOP=1",
            &connection,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = session.stdin.take().unwrap();
    input
        .write_all(b"SELECT pg_backend_pid(), ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid() \\watch 1\n")
        .unwrap();
    // stdin stays open (leaked into the thread) so psql never sees its end.
    std::thread::spawn(move || {
        let _input = input;
        std::thread::sleep(Duration::from_secs(seconds + 5));
    });
    session
}

/// Counters of the load.
#[derive(Default)]
struct Load {
    served: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<String>>,
    stop: AtomicBool,
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_and_the_ca_rotate_under_load_without_a_failed_request_or_dropped_session() {
    let _shared = super::shared_cluster().await;
    let client = dfr_e2e::testing::kube_client().await;
    super::install_operator();
    apply(&client, &country()).await;
    wait_ready(&client, NAME, Duration::from_secs(420)).await;
    let leader = leader_pod(NAMESPACE);
    superuser_sql(
        NAMESPACE,
        &leader,
        "INSERT INTO areas (code, parent_code, name, level) VALUES ('KI', NULL, 'Kiribati', 0), ('KI-01', 'KI', 'Tarawa', 1) ON CONFLICT DO NOTHING",
    );
    let username = format!("tls-{}", dfr_e2e::testing::unique_suffix());
    super::create_user(NAMESPACE, &username, "enumerator", AREA);

    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let ca_before = secret_text(&secrets.get("dfr-tenant-ca").await.unwrap(), "tls.crt").unwrap();
    let replication_before = superuser_sql(
        NAMESPACE,
        &leader,
        "SELECT pid FROM pg_stat_replication ORDER BY pid",
    );
    assert!(!replication_before.trim().is_empty(), "the standby streams");

    // The API over HTTPS, trusting the bundle of the API certificate's Secret, re-read every
    // second: a new connection uses what the tenant publishes at that moment.
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let spec = services.get("dfr-api").await.unwrap().spec.unwrap();
    let port = u16::try_from(spec.ports.unwrap()[0].port).unwrap();
    let address = std::net::SocketAddr::new(spec.cluster_ip.unwrap().parse().unwrap(), port);
    let host = format!("dfr-api.{NAMESPACE}.svc");
    let base = format!("https://{host}:{port}");
    let bundle = |secret: &Secret| secret_text(secret, "ca.crt").unwrap_or_default();
    let first_bundle = bundle(&secrets.get("dfr-api-tls").await.unwrap());
    let http = Arc::new(Mutex::new((
        first_bundle.clone(),
        super::api_client(&first_bundle, &host, address, Duration::from_secs(20)),
    )));
    let first_client = http.lock().unwrap().1.clone();
    let bearer = token(&first_client, &base, &username).await;
    let load = Arc::new(Load::default());
    let refresher = {
        let (http, load, secrets, host) =
            (http.clone(), load.clone(), secrets.clone(), host.clone());
        tokio::spawn(async move {
            while !load.stop.load(Ordering::Relaxed) {
                if let Ok(secret) = secrets.get("dfr-api-tls").await {
                    let current = bundle(&secret);
                    let mut held = http.lock().unwrap();
                    if !current.is_empty() && current != held.0 {
                        *held = (
                            current.clone(),
                            super::api_client(&current, &host, address, Duration::from_secs(20)),
                        );
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let mut clients = Vec::new();
    for worker in 0..2u32 {
        let (http, load, base, bearer) = (http.clone(), load.clone(), base.clone(), bearer.clone());
        clients.push(tokio::spawn(async move {
            let mut number = 0u32;
            while !load.stop.load(Ordering::Relaxed) {
                number += 1;
                let current = http.lock().unwrap().1.clone();
                let request = if number.is_multiple_of(2) {
                    current
                        .post(format!("{base}/api/dfr/persons"))
                        .bearer_auth(&bearer)
                        .json(&json!({
                            "nationalId": {"system": "KIR-NID", "value": format!("TLS{worker}{number:07}")},
                            "givenName": "Rotated",
                            "familyName": format!("Farmer {worker}-{number}"),
                            "sex": 9,
                            "birthDate": "1990-01-01",
                            "areaCode": AREA,
                        }))
                } else {
                    current
                        .get(format!("{base}/api/dfr/persons?limit=5"))
                        .bearer_auth(&bearer)
                };
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        load.served.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(response) => {
                        load.failed.fetch_add(1, Ordering::Relaxed);
                        let status = response.status();
                        let body = response.text().await.unwrap_or_default();
                        load.failures.lock().unwrap().push(format!("{status} {body}"));
                    }
                    Err(error) => {
                        load.failed.fetch_add(1, Ordering::Relaxed);
                        load.failures.lock().unwrap().push(format!("{error:?}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }

    let standby = super::backups::replica_pod(NAMESPACE);
    let app_password = super::secret_value_in(NAMESPACE, "dfr-db-app", "password");
    let session = open_session(&standby, &app_password, ROTATION_TIMEOUT.as_secs() + 120);
    let started = Instant::now();

    // The CA renewed; the old one still trusted beside it while the leaves are re-issued.
    let ca_after = eventually("the tenant CA renewed", ROTATION_TIMEOUT, || async {
        let ca = secret_text(&secrets.get("dfr-tenant-ca").await.ok()?, "tls.crt")?;
        (ca != ca_before).then_some(ca)
    })
    .await;
    let renewed_at = started.elapsed();
    let old = pem_blocks(&ca_before).remove(0);
    let new = pem_blocks(&ca_after).remove(0);
    let overlap = eventually(
        "both CAs in every leaf's bundle",
        ROTATION_TIMEOUT,
        || async {
            for name in ["postgres-tls", "dfr-api-tls"] {
                let blocks = pem_blocks(&bundle(&secrets.get(name).await.ok()?));
                if !(blocks.contains(&old) && blocks.contains(&new)) {
                    return None;
                }
            }
            Some(started.elapsed())
        },
    )
    .await;

    // Every leaf re-issued under the new CA, served by every member, and the old CA dropped.
    let done = eventually(
        "every leaf under the new CA, served, and the old CA dropped",
        ROTATION_TIMEOUT,
        || async {
            let database = secrets.get("postgres-tls").await.ok()?;
            let leaf = secret_text(&database, "tls.crt")?;
            let leaf_body = pem_blocks(&leaf).into_iter().next()?;
            for name in [
                "postgres-tls",
                "dfr-api-tls",
                "postgres-replication-tls",
                "postgres-rewind-tls",
            ] {
                let secret = secrets.get(name).await.ok()?;
                let blocks = pem_blocks(&bundle(&secret));
                if !issued_by(&secret_text(&secret, "tls.crt")?, &ca_after) || blocks.contains(&old)
                {
                    return None;
                }
            }
            for ip in member_ips(&client).await {
                if served_certificate(&ip, 5432, true)? != leaf_body
                    || served_certificate(&ip, 8008, false)? != leaf_body
                {
                    return None;
                }
            }
            Some(started.elapsed())
        },
    )
    .await;
    // Some more load on the new certificates alone.
    tokio::time::sleep(Duration::from_secs(10)).await;
    load.stop.store(true, Ordering::Relaxed);
    for task in clients {
        task.await.unwrap();
    }
    refresher.await.unwrap();

    let mut session = session;
    let session_alive = session.try_wait().unwrap().is_none();
    let _ = session.kill();
    let output = session.wait_with_output().unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(String::from)
        .collect();
    let backends: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter_map(|line| line.split('|').next())
        .collect();
    let replication_after = superuser_sql(
        NAMESPACE,
        &leader_pod(NAMESPACE),
        "SELECT pid FROM pg_stat_replication ORDER BY pid",
    );
    let (served, failed) = (
        load.served.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    println!(
        "figure: certificate rotation under load: CA renewed at {:.0} s, both CAs trusted at {:.0} s, every leaf re-issued, served and the old CA dropped at {:.0} s; {served} requests served, {failed} failed; one session answered {} times from backend(s) {backends:?}; replication pids {} -> {}",
        renewed_at.as_secs_f64(),
        overlap.as_secs_f64(),
        done.as_secs_f64(),
        lines.len(),
        replication_before.trim(),
        replication_after.trim(),
    );
    assert_eq!(
        failed,
        0,
        "no request fails while the certificates rotate: {:?}",
        load.failures.lock().unwrap()
    );
    assert!(served > 0);
    assert!(
        session_alive && backends.len() == 1 && lines.len() as u64 >= done.as_secs() / 2,
        "the session stayed open on one backend: alive {session_alive}, {} lines, backends {backends:?}, stderr {}",
        lines.len(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        replication_before.trim(),
        replication_after.trim(),
        "the standby's replication connection is the same walsender"
    );
    super::release_tenant(&client, NAME).await;
}
