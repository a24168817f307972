//! Patroni's dynamic configuration and the synchronous standby on the node cluster, beside the
//! other scenarios: a parameter changed in the spec reaches every running member, failsafe mode
//! is on, and a tenant whose synchronous standby stops answering is Degraded while it serves.

use std::time::{Duration, Instant};

use dfr_crds::DfrCountry;
use kube::Api;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::backups::{apply, leader_pod, superuser_sql, wait_ready};
use super::{Frozen, condition, eventually, run_kubectl};

const NAME: &str = "cok-e2e-patroni";
const NAMESPACE: &str = "dfr-cok-test";

fn degraded(country: &DfrCountry) -> Option<(String, String, String)> {
    super::condition_details(country, "Degraded")
}

#[tokio::test(flavor = "multi_thread")]
async fn spec_changes_reach_running_members_and_a_lost_synchronous_standby_degrades() {
    let _shared = super::shared_cluster().await;
    let client = dfr_e2e::testing::kube_client().await;
    super::install_operator();
    apply(
        &client,
        &super::repositories::country(NAME, "COK", 2, serde_json::Value::Null),
    )
    .await;
    wait_ready(&client, NAME, Duration::from_secs(420)).await;
    let leader = leader_pod(NAMESPACE);
    let config = super::patronictl(NAMESPACE, &leader, &["show-config"]);
    assert!(config.contains("failsafe_mode: true"), "{config}");

    // A reload-only parameter changed on the running cluster reaches every member.
    let countries: Api<DfrCountry> = Api::all(client.clone());
    let changed = Instant::now();
    countries
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"postgres": {"parameters": {
                "log_min_duration_statement": "250ms"}}}})),
        )
        .await
        .unwrap();
    for member in ["postgres-0", "postgres-1"] {
        eventually(
            &format!("log_min_duration_statement on {member}"),
            Duration::from_secs(120),
            || async {
                (superuser_sql(NAMESPACE, member, "SHOW log_min_duration_statement").trim()
                    == "250ms")
                    .then_some(())
            },
        )
        .await;
    }
    println!(
        "figure: a parameter change on every member {:.1} s after the spec changed",
        changed.elapsed().as_secs_f64()
    );

    // The synchronous standby stops answering: the leader still serves, the tenant is Degraded
    // with the reason; when the standby is back, Degraded clears by itself.
    let standby = run_kubectl(&[
        "-n",
        NAMESPACE,
        "get",
        "configmap",
        "postgres-sync",
        "-o",
        "jsonpath={.metadata.annotations.sync_standby}",
    ]);
    let standby = standby.trim().to_string();
    assert!(
        !standby.is_empty(),
        "a synchronous standby before the fault"
    );
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let uid = pods.get(&standby).await.unwrap().uid().unwrap();
    let frozen = Frozen::pod(&uid);
    let lost = Instant::now();
    let (_, reason, message) = eventually(
        "Degraded for the lost synchronous standby",
        Duration::from_secs(180),
        || async {
            let country = countries.get(NAME).await.ok()?;
            degraded(&country).filter(|(status, _, _)| status == "True")
        },
    )
    .await;
    println!(
        "figure: Degraded {:.1} s after the synchronous standby froze: {reason}: {message}",
        lost.elapsed().as_secs_f64()
    );
    assert_eq!(reason, "SynchronousStandbyLost", "{message}");
    let country = countries.get(NAME).await.unwrap();
    assert_eq!(
        condition(&country, "Ready").as_deref(),
        Some("True"),
        "the leader still serves"
    );
    drop(frozen);
    let back = Instant::now();
    eventually("Degraded cleared", Duration::from_secs(240), || async {
        let country = countries.get(NAME).await.ok()?;
        degraded(&country).filter(|(status, _, _)| status == "False")
    })
    .await;
    println!(
        "figure: Degraded cleared {:.1} s after the standby thawed",
        back.elapsed().as_secs_f64()
    );

    let leader = leader_pod(NAMESPACE);
    connections_are_tls13_per_role_and_patroni_changes_need_credentials(&leader);
    replication_needs_a_tenant_certificate_and_the_superuser_stays_local(&leader);
    pgaudit_logs_ddl_writes_and_role_changes(&leader).await;
    let (http, base, bearer) = area_rows_and_pii_stay_sealed_in_raw_sql(&client, &leader).await;
    the_api_rolls_under_load_without_a_failed_request(&client, http, base, bearer).await;
    super::release_tenant(&client, NAME).await;
}

/// Four clients read the registry without pause while a spec change rolls the API pods
/// (a new pod first, then the old one drained): no request fails.
async fn the_api_rolls_under_load_without_a_failed_request(
    client: &kube::Client,
    http: reqwest::Client,
    base: String,
    bearer: String,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (http, base, bearer) = (http.clone(), base.clone(), bearer.clone());
        let (stop, served, failed, failures) = (
            stop.clone(),
            served.clone(),
            failed.clone(),
            failures.clone(),
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let outcome = http
                    .get(format!("{base}/api/dfr/persons?limit=5"))
                    .bearer_auth(&bearer)
                    .send()
                    .await;
                match outcome {
                    Ok(response) if response.status().is_success() => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(response) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{}", response.status()));
                    }
                    Err(error) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures.lock().unwrap().push(format!("{error:?}"));
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), NAMESPACE);
    let before = deployments.get("dfr-api").await.unwrap();
    let generation = before.metadata.generation.unwrap();
    let started = Instant::now();
    Api::<DfrCountry>::all(client.clone())
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"api": {"resources": {
                "requests": {"cpu": "30m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}}}})),
        )
        .await
        .unwrap();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NAMESPACE);
    eventually("the API rolled", Duration::from_secs(300), || async {
        let deployment = deployments.get("dfr-api").await.ok()?;
        let status = deployment.status?;
        let wanted = deployment.spec?.replicas.unwrap_or(1);
        let api_pods = pods
            .list(&kube::api::ListParams::default().labels("app.kubernetes.io/name=dfr-api"))
            .await
            .ok()?;
        (deployment.metadata.generation? > generation
            && status.observed_generation? > generation
            && status.updated_replicas == Some(wanted)
            && status.available_replicas == Some(wanted)
            && api_pods.items.len() == usize::try_from(wanted).ok()?)
        .then_some(())
    })
    .await;
    let rolled = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for task in clients {
        task.await.unwrap();
    }
    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!(
        "figure: API rolled in {:.1} s under load: {served} requests served, {failed} failed",
        rolled.as_secs_f64()
    );
    assert_eq!(
        failed,
        0,
        "no request fails while the API rolls: {:?}",
        failures.lock().unwrap()
    );
    assert!(served > 0);
}

/// As the application role in raw SQL, bypassing the API: a session set to one area reads none
/// of another area's persons, and the national id column holds ciphertext only.
async fn area_rows_and_pii_stay_sealed_in_raw_sql(
    client: &kube::Client,
    leader: &str,
) -> (reqwest::Client, String, String) {
    superuser_sql(
        NAMESPACE,
        leader,
        "INSERT INTO areas (code, parent_code, name, level) VALUES ('CK', NULL, 'Cook Islands', 0), ('WS-01', 'CK', 'Rarotonga', 1), ('CK-02', 'CK', 'Aitutaki', 1) ON CONFLICT DO NOTHING",
    );
    let username = format!("rls-{}", dfr_e2e::testing::unique_suffix());
    super::create_user(NAMESPACE, &username, "supervisor", "WS-01");
    let (http, base) = super::api_endpoint(client, NAMESPACE).await;
    let bearer = super::backups::token(&http, &base, &username).await;
    let number = 4242;
    super::backups::create_person(&http, &base, &bearer, number).await;
    let plaintext_id = format!("BKP{number:08}");

    let as_app = |settings: &str, sql: &str| {
        let output = member_psql(
            leader,
            "",
            "DFR_DB_APP_PASSWORD",
            "user=dfr_app dbname=dfr sslmode=require",
            &format!("BEGIN; {settings} {sql}; COMMIT"),
        );
        output.lines().last().unwrap_or_default().to_string()
    };
    let in_area = |areas: &str| {
        format!(
            "SELECT set_config('dfr.role', 'supervisor', true), set_config('dfr.areas', '{areas}', true);"
        )
    };
    let count = "SELECT count(*) FROM persons";
    let own: u64 = as_app(&in_area("WS-01"), count).parse().unwrap();
    let other = as_app(&in_area("CK-02"), count);
    let unset = as_app("", count);
    assert!(own >= 1, "the person is in its own area");
    assert_eq!(
        other, "0",
        "another area's session reads none of its persons"
    );
    assert_eq!(unset, "0", "a session with no role reads nothing");
    let national = "SELECT set_config('dfr.role', 'national_admin', true);";
    let cipher = as_app(
        national,
        &format!("SELECT national_id_cipher FROM persons WHERE family_name = 'Record {number}'"),
    );
    assert!(
        cipher.len() > plaintext_id.len() && !cipher.contains(&plaintext_id),
        "the national id is stored sealed: {cipher}"
    );
    println!(
        "security: raw SQL as dfr_app: {own} rows in its area, {other} in another, {unset} with no role; national_id_cipher holds ciphertext"
    );
    (http, base, bearer)
}

/// psql as the registry's application role from inside member `pod` to the read-write Service,
/// with `options` added to the connection string: its output, or the error it printed.
fn app_psql(pod: &str, options: &str, sql: &str) -> String {
    member_psql(
        pod,
        "",
        "DFR_DB_APP_PASSWORD",
        &format!("user=$DFR_DB_APP_USER {options}"),
        sql,
    )
}

/// psql from inside member `pod` to the read-write Service with the connection string
/// `conninfo` and `password_env` (a variable of the container) as the password: its output, or
/// the error it printed. `prelude` runs first in the same shell.
fn member_psql(pod: &str, prelude: &str, password_env: &str, conninfo: &str, sql: &str) -> String {
    let output = dfr_e2e::testing::kubectl(&[
        "-n",
        NAMESPACE,
        "exec",
        pod,
        "-c",
        "postgres",
        "--",
        "sh",
        "-c",
        &format!(
            "{prelude} PGPASSWORD=\"${password_env}\" psql -qAt \"host=postgres-rw port=5432 {conninfo}\" -c \"{sql}\" 2>&1"
        ),
    ]);
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A CA no one in this tenant trusts and a replication certificate from it, as another
/// tenant's operator would issue them.
fn foreign_replication_certificate() -> (String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "dfr dfr-wsm-prod CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "replicator");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let certificate = leaf.signed_by(&key, &issuer).unwrap();
    (certificate.pem(), key.serialize_pem())
}

/// Replication takes the tenant's client certificate for its role and nothing less; the
/// superuser cannot log in over the network at all.
fn replication_needs_a_tenant_certificate_and_the_superuser_stays_local(pod: &str) {
    let replication = "user=replicator dbname=replication replication=true sslmode=verify-ca sslrootcert=/etc/dfr/tls/ca.crt";
    let own = member_psql(
        pod,
        "",
        "PATRONI_REPLICATION_PASSWORD",
        &format!(
            "{replication} sslcert=/etc/dfr/client-tls/replication.crt sslkey=/etc/dfr/client-tls/replication.key"
        ),
        "IDENTIFY_SYSTEM",
    );
    assert!(
        own.split('|')
            .next()
            .is_some_and(|id| id.parse::<u64>().is_ok()),
        "replication with the tenant's certificate works: {own}"
    );
    let without = member_psql(
        pod,
        "",
        "PATRONI_REPLICATION_PASSWORD",
        &format!("{replication} sslcert=/nonexistent sslkey=/nonexistent"),
        "IDENTIFY_SYSTEM",
    );
    assert!(
        without.contains("certificate"),
        "replication without a client certificate is refused: {without}"
    );
    let (certificate, key) = foreign_replication_certificate();
    let b64 = |text: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text);
    let foreign = member_psql(
        pod,
        &format!(
            "umask 077; echo {} | base64 -d > /tmp/foreign.crt; echo {} | base64 -d > /tmp/foreign.key;",
            b64(&certificate),
            b64(&key)
        ),
        "PATRONI_REPLICATION_PASSWORD",
        &format!("{replication} sslcert=/tmp/foreign.crt sslkey=/tmp/foreign.key"),
        "IDENTIFY_SYSTEM",
    );
    assert!(
        foreign
            .split('|')
            .next()
            .is_none_or(|id| id.parse::<u64>().is_err())
            && (foreign.contains("certificate") || foreign.contains("alert")),
        "replication with another CA's certificate is refused: {foreign}"
    );
    // What pg_rewind does on the new leader when a former leader rejoins: list and read files.
    let rewind = member_psql(
        pod,
        "",
        "PATRONI_REWIND_PASSWORD",
        "user=dfr_rewind dbname=postgres sslmode=verify-ca sslrootcert=/etc/dfr/tls/ca.crt sslcert=/etc/dfr/client-tls/rewind.crt sslkey=/etc/dfr/client-tls/rewind.key",
        "SELECT count(*) > 0 FROM pg_ls_dir('global', false, false)",
    );
    assert_eq!(
        rewind, "t",
        "the rewind role logs in with its certificate: {rewind}"
    );
    let superuser = member_psql(
        pod,
        "",
        "PATRONI_SUPERUSER_PASSWORD",
        "user=postgres dbname=postgres sslmode=require",
        "SELECT 1",
    );
    assert!(
        superuser.contains("no pg_hba.conf entry"),
        "a remote superuser login is refused: {superuser}"
    );
    println!(
        "security: replication with the tenant's client certificate works; without one: {without}; with another CA's: {foreign}; remote superuser: refused"
    );
}

/// pgAudit writes a DDL statement, a write to a registry table and a role change to the server
/// log (the container's output).
async fn pgaudit_logs_ddl_writes_and_role_changes(leader: &str) {
    let marker = format!("audit_probe_{}", std::process::id());
    superuser_sql(
        NAMESPACE,
        leader,
        &format!(
            "CREATE TABLE {marker} (id int); UPDATE persons SET version = version WHERE false; ALTER ROLE dfr_app CONNECTION LIMIT -1; DROP TABLE {marker};"
        ),
    );
    eventually(
        "pgAudit lines in the log",
        Duration::from_secs(30),
        || async {
            let log = run_kubectl(&[
                "-n",
                NAMESPACE,
                "logs",
                leader,
                "-c",
                "postgres",
                "--since=5m",
            ]);
            let audit: Vec<&str> = log
                .lines()
                .filter(|line| line.contains("AUDIT: SESSION"))
                .collect();
            let has = |needle: &str| audit.iter().any(|line| line.contains(needle));
            (has(&format!("CREATE TABLE {marker}"))
                && has("UPDATE persons")
                && has("ALTER ROLE dfr_app"))
            .then_some(())
        },
    )
    .await;
    println!("security: pgAudit logged CREATE TABLE, UPDATE persons and ALTER ROLE");
}

/// Over the network: TLS 1.3 only, no plaintext, each role to its own database; Patroni's REST
/// API takes no change without its credentials.
fn connections_are_tls13_per_role_and_patroni_changes_need_credentials(leader: &str) {
    let version = app_psql(
        leader,
        "dbname=dfr sslmode=require",
        "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert_eq!(version, "TLSv1.3", "{version}");
    let plaintext = app_psql(leader, "dbname=dfr sslmode=disable", "SELECT 1");
    assert!(
        plaintext.contains("no encryption"),
        "a plaintext connection is refused: {plaintext}"
    );
    let old_tls = app_psql(
        leader,
        "dbname=dfr sslmode=require ssl_max_protocol_version=TLSv1.2",
        "SELECT 1",
    );
    assert!(
        old_tls.contains("protocol version") || old_tls.contains("unsupported protocol"),
        "TLS 1.2 is refused: {old_tls}"
    );
    let other_database = app_psql(leader, "dbname=postgres sslmode=require", "SELECT 1");
    assert!(
        other_database.contains("no pg_hba.conf entry"),
        "the application role reaches only the registry's database: {other_database}"
    );

    let ip = run_kubectl(&[
        "-n",
        NAMESPACE,
        "get",
        "pod",
        leader,
        "-o",
        "jsonpath={.status.podIP}",
    ]);
    let status = |extra: &[&str]| {
        let output = std::process::Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args(extra)
            .arg(format!("https://{}:8008/restart", ip.trim()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    assert_eq!(status(&[]), "401", "an unauthenticated restart is refused");
    assert_eq!(
        status(&["-u", "patroni:wrong"]),
        "401",
        "a wrong password is refused"
    );
    println!(
        "security: TLS 1.3 to the registry, plaintext, TLS 1.2 and other databases refused; Patroni restart without credentials 401"
    );
}
