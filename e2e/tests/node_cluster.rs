//! The whole system on a real node: the operator installed from config/default runs in the
//! cluster, a DfrCountry with two Patroni members in synchronous mode becomes Ready, the leader
//! is deleted and then the next leader hangs while a client writes through the API, and
//! deleting the DfrCountry with deletionPolicy Retain keeps the data for the next apply.
//!
//! Needs `dfr-cluster up --node` (scripts/test starts one); run with
//! `cargo test -p dfr-e2e --features node --test node_cluster`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use dfr_crds::DfrCountry;
use dfr_e2e::testing::{kube_client, kubectl};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

#[path = "node_cluster/autoscaling.rs"]
mod autoscaling;
#[path = "node_cluster/backups.rs"]
mod backups;
#[path = "node_cluster/faults.rs"]
mod faults;
#[path = "node_cluster/isolation.rs"]
mod isolation;
#[path = "node_cluster/monitoring.rs"]
mod monitoring;
#[path = "node_cluster/outage.rs"]
mod outage;
#[path = "node_cluster/patroni.rs"]
mod patroni;
#[path = "node_cluster/repositories.rs"]
mod repositories;
#[path = "node_cluster/rotation.rs"]
mod rotation;

/// How many scenarios run on the node cluster at once: its two CPUs are what the tenants'
/// requests must fit in (more wait Pending for CPU).
const SCENARIOS_AT_ONCE: usize = 3;
/// A scenario holds one slot; one that stops the cluster's control plane holds them all, so no
/// other scenario sees the outage.
static CLUSTER: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(SCENARIOS_AT_ONCE);

/// A slot on the node cluster for one scenario.
async fn shared_cluster() -> tokio::sync::SemaphorePermit<'static> {
    CLUSTER.acquire().await.unwrap()
}

/// The whole node cluster, for a scenario no other may overlap.
async fn whole_cluster() -> tokio::sync::SemaphorePermit<'static> {
    CLUSTER
        .acquire_many(u32::try_from(SCENARIOS_AT_ONCE).unwrap())
        .await
        .unwrap()
}

/// What every scenario's tenant needs on the shared node: small CPU requests, so three fit side
/// by side, and the node's Prometheus (namespace dfr-monitoring) let in to scrape it, which the
/// tenant's NetworkPolicies, enforced on the node, otherwise keep out.
fn shared_node_spec(spec: &mut serde_json::Value) {
    spec["postgres"]["resources"] =
        json!({"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}});
    spec["api"]["resources"] =
        json!({"requests": {"cpu": "25m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}});
    spec["network"]["monitoringNamespaceSelector"] = json!({"matchLabels": {
        "kubernetes.io/metadata.name": dfr_e2e::node::addons::monitoring::NAMESPACE,
    }});
}

const COUNTRY: &str = "ton-e2e";
const NAMESPACE: &str = "dfr-ton-test";
const AREA: &str = "TO-01";
const PASSWORD: &str = "an e2e password that is long enough";

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn run_kubectl(args: &[&str]) -> String {
    let output = kubectl(args);
    assert!(
        output.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The Tonga dev sample as the failover scenario needs it: two members in synchronous mode, two
/// API pods running this build, and data kept when the resource goes.
fn country() -> DfrCountry {
    let sample = std::fs::read_to_string(repo().join("config/samples/ton-dev.yaml")).unwrap();
    let mut country: DfrCountry = serde_yaml::from_str(&sample).unwrap();
    country.metadata.name = Some(COUNTRY.into());
    let spec = &mut country.spec;
    spec.environment = serde_json::from_value(json!("test")).unwrap();
    spec.app_version = env!("CARGO_PKG_VERSION").into();
    spec.deletion_policy = serde_json::from_value(json!("Retain")).unwrap();
    spec.postgres.instances = 2;
    spec.postgres.synchronous_mode = serde_json::from_value(json!("on")).unwrap();
    spec.api.min_replicas = 2;
    spec.api.max_replicas = 2;
    let mut value = serde_json::to_value(&country.spec).unwrap();
    shared_node_spec(&mut value);
    country.spec = serde_json::from_value(value).unwrap();
    country
}

async fn apply_country(client: &Client) {
    let countries: Api<DfrCountry> = Api::all(client.clone());
    countries
        .patch(
            COUNTRY,
            &PatchParams::apply("dfr-e2e").force(),
            &Patch::Apply(&country()),
        )
        .await
        .unwrap();
}

/// A condition of the DfrCountry as (status, reason, message).
fn condition_details(country: &DfrCountry, kind: &str) -> Option<(String, String, String)> {
    country
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn condition(country: &DfrCountry, kind: &str) -> Option<String> {
    condition_details(country, kind).map(|(status, _, _)| status)
}

async fn wait_ready(client: &Client, timeout: Duration) -> DfrCountry {
    let countries: Api<DfrCountry> = Api::all(client.clone());
    eventually("the DfrCountry to be Ready", timeout, || async {
        let country = countries.get_opt(COUNTRY).await.ok().flatten()?;
        let generation = country.metadata.generation;
        let observed = country.status.as_ref()?.observed_generation;
        (condition(&country, "Ready").as_deref() == Some("True") && observed == generation)
            .then_some(country)
    })
    .await
}

/// `patronictl <args>` inside member `pod` of `namespace`, with the members' configuration.
fn patronictl(namespace: &str, pod: &str, args: &[&str]) -> String {
    let mut command = vec![
        "-n",
        namespace,
        "exec",
        pod,
        "-c",
        "postgres",
        "--",
        "patronictl",
        "-c",
        "/etc/patroni/patroni.yml",
    ];
    command.extend_from_slice(args);
    run_kubectl(&command)
}

/// `dfr-api <args>` in an API pod as an administrator runs it: with the owner role's login from
/// its Secret (the serving container does not hold it) and `extra_env` added.
fn dfr_api_as_owner(namespace: &str, extra_env: &[String], args: &[&str]) -> String {
    let owner = secret_value_in(namespace, "dfr-db-owner", "username");
    let owner_password = secret_value_in(namespace, "dfr-db-owner", "password");
    let owner_env = [
        format!("DFR_MIGRATION_DATABASE_USER={owner}"),
        format!("DFR_MIGRATION_DATABASE_PASSWORD={owner_password}"),
    ];
    let mut command = vec!["-n", namespace, "exec", "deploy/dfr-api", "--", "env"];
    command.extend(owner_env.iter().chain(extra_env).map(String::as_str));
    command.push("dfr-api");
    command.extend_from_slice(args);
    run_kubectl(&command)
}

/// A user of the registry with `role` in `area`, made as on a new installation: `dfr-api
/// create-user` with the shared test password.
fn create_user(namespace: &str, username: &str, role: &str, area: &str) {
    dfr_api_as_owner(
        namespace,
        &[format!("DFR_NEW_USER_PASSWORD={PASSWORD}")],
        &[
            "create-user",
            "--username",
            username,
            "--role",
            role,
            "--areas",
            area,
        ],
    );
}

/// The pod Patroni labelled leader (name and uid), ignoring pods on their way out and the pod
/// `except`, which may still carry the label: a hung member cannot take its own label off.
async fn leader(client: &Client, except: Option<&str>) -> Option<(String, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let leaders = pods
        .list(&ListParams::default().labels("role=primary"))
        .await
        .ok()?;
    leaders
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none() && p.uid().as_deref() != except)
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
}

/// Freezes every process of a pod through its cgroup v1 freezer, until dropped: to Patroni and
/// the API server the member simply stops answering, as when its node hangs or is cut off.
struct Frozen(std::path::PathBuf);

impl Frozen {
    fn pod(uid: &str) -> Self {
        let root = Path::new("/sys/fs/cgroup/freezer/kubepods");
        let cgroup = ["burstable", "besteffort", ""]
            .iter()
            .map(|class| root.join(class).join(format!("pod{uid}")))
            .find(|dir| dir.is_dir())
            .unwrap_or_else(|| panic!("no freezer cgroup for pod {uid} under {}", root.display()));
        std::fs::write(cgroup.join("freezer.state"), "FROZEN").unwrap();
        Self(cgroup)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("freezer.state"), "THAWED");
    }
}

async fn leader_pod(client: &Client) -> Option<String> {
    leader(client, None).await.map(|(name, _)| name)
}

/// Runs `sql` in the registry database of the member `pod` as the superuser; returns its
/// unaligned output.
fn superuser_sql(pod: &str, sql: &str) -> String {
    run_kubectl(&[
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
            "PGPASSWORD=\"$PATRONI_SUPERUSER_PASSWORD\" psql -v ON_ERROR_STOP=1 -qAt -U \"$PATRONI_SUPERUSER_USERNAME\" -d dfr -c \"{sql}\""
        ),
    ])
}

/// An HTTPS client for a tenant's API and its base URL, as a client inside the cluster sees it:
/// it trusts only the tenant CA and checks the Service's DNS name, which it resolves to the
/// ClusterIP itself (this host has no cluster DNS). Requests time out after `timeout`.
async fn api_endpoint_with_timeout(
    client: &Client,
    namespace: &str,
    timeout: Duration,
) -> (reqwest::Client, String) {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let spec = services.get("dfr-api").await.unwrap().spec.unwrap();
    let port = u16::try_from(spec.ports.unwrap()[0].port).unwrap();
    let ip: std::net::IpAddr = spec.cluster_ip.unwrap().parse().unwrap();
    let host = format!("dfr-api.{namespace}.svc");
    let ca = secret_value_in(namespace, "dfr-api-tls", "ca.crt");
    let http = api_client(&ca, &host, std::net::SocketAddr::new(ip, port), timeout);
    (http, format!("https://{host}:{port}"))
}

/// An HTTPS client that trusts only the certificates of `ca_bundle` and sends requests for
/// `host` to `address`.
fn api_client(
    ca_bundle: &str,
    host: &str,
    address: std::net::SocketAddr,
    timeout: Duration,
) -> reqwest::Client {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(ca_bundle.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve(host, address)
        .timeout(timeout)
        .build()
        .unwrap()
}

async fn api_endpoint(client: &Client, namespace: &str) -> (reqwest::Client, String) {
    api_endpoint_with_timeout(client, namespace, Duration::from_secs(30)).await
}

/// One key of a Secret in the test tenant, decoded.
fn secret_value(name: &str, key: &str) -> String {
    secret_value_in(NAMESPACE, name, key)
}

/// One key of a Secret in `namespace`, decoded.
fn secret_value_in(namespace: &str, name: &str, key: &str) -> String {
    let encoded = run_kubectl(&[
        "-n",
        namespace,
        "get",
        "secret",
        name,
        "-o",
        &format!("jsonpath={{.data.{}}}", key.replace('.', "\\.")),
    ]);
    use base64::Engine;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .unwrap(),
    )
    .unwrap()
}

/// The first national admin the operator made from its generated Secret signs in (password and
/// TOTP code, as a person would with an authenticator app), and the data-retention CronJob,
/// started by hand, runs `dfr-api retention apply` against the tenant's database to the end.
async fn registry_administration_works(http: &reqwest::Client, base: &str) {
    // On a re-run against a tenant made by an older operator, its API pods restart to take the
    // admin's Secret.
    run_kubectl(&[
        "-n",
        NAMESPACE,
        "rollout",
        "status",
        "deploy/dfr-api",
        "--timeout=180s",
    ]);
    let username = secret_value("dfr-api-bootstrap-admin", "username");
    let password = secret_value("dfr-api-bootstrap-admin", "password");
    let secret = secret_value("dfr-api-bootstrap-admin", "totp-secret");
    let code = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(&secret).unwrap())
        .build()
        .unwrap()
        .generate_current()
        .to_string();
    let response = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", username.as_str()),
            ("password", password.as_str()),
            ("totp", code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let token: Value = response.json().await.unwrap();
    let users = http
        .get(format!("{base}/api/dfr/users"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), 200, "the national admin lists users");

    let job = format!("retention-e2e-{}", dfr_e2e::testing::unique_suffix());
    run_kubectl(&[
        "-n",
        NAMESPACE,
        "create",
        "job",
        &job,
        "--from=cronjob/dfr-retention",
    ]);
    run_kubectl(&[
        "-n",
        NAMESPACE,
        "wait",
        "--for=condition=Complete",
        &format!("job/{job}"),
        "--timeout=180s",
    ]);
    let log = run_kubectl(&["-n", NAMESPACE, "logs", &format!("job/{job}")]);
    println!("retention job: {}", log.trim());
    assert!(log.contains("retention TON person: 3650 days"), "{log}");
}

/// The area the writes go to, and an enumerator for it, made the way an administrator would on
/// a new installation: SQL as the superuser on the leader, `dfr-api create-user` in an API pod.
async fn enumerator_token(client: &Client, http: &reqwest::Client, base: &str) -> String {
    let leader = leader_pod(client).await.unwrap();
    superuser_sql(
        &leader,
        "INSERT INTO areas (code, parent_code, name, level) VALUES ('TO', NULL, 'Tonga', 0), ('TO-01', 'TO', 'Tongatapu', 1) ON CONFLICT DO NOTHING",
    );
    let username = format!("e2e-{}", dfr_e2e::testing::unique_suffix());
    create_user(NAMESPACE, &username, "enumerator", AREA);
    login(http, base, &username).await
}

async fn login(http: &reqwest::Client, base: &str, username: &str) -> String {
    let response = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

fn person(number: u32) -> Value {
    json!({
        "nationalId": {"system": "TON-NID", "value": format!("E2E{number:08}")},
        "givenName": "Failover",
        "familyName": format!("Write {number}"),
        "sex": 9,
        "birthDate": "1990-01-01",
        "areaCode": AREA,
    })
}

/// What a writer saw: the ids the API acknowledged (201), how many writes it tried, and the
/// stale reads: an acknowledged id that a read right after answered 404.
struct Written {
    acknowledged: Vec<String>,
    /// When each of `acknowledged` was acknowledged.
    acknowledged_at: Vec<Instant>,
    attempts: u32,
    stale_reads: Vec<String>,
}

/// Writes numbered persons until told to stop. After each acknowledged write it reads back that
/// record and the first one acknowledged: a read that reaches a member without them (a former
/// leader still answering as a primary) answers 404 and counts as stale. Errors and timeouts
/// are unavailability, not staleness.
async fn write_until(
    http: reqwest::Client,
    base: String,
    token: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Written {
    let mut written = Written {
        acknowledged: Vec::new(),
        acknowledged_at: Vec::new(),
        attempts: 0,
        stale_reads: Vec::new(),
    };
    // National IDs are unique among live persons: a run on a retained tenant's data must not
    // repeat an earlier run's.
    let first_number = (rand_number() % 90_000) * 1_000;
    while !*stop.borrow() {
        written.attempts += 1;
        let response = http
            .post(format!("{base}/api/dfr/persons"))
            .bearer_auth(&token)
            .json(&person(first_number + written.attempts))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(response) = response
            && response.status() == 201
        {
            let body: Value = response.json().await.unwrap_or_default();
            if let Some(id) = body["id"].as_str() {
                written.acknowledged.push(id.to_string());
                written.acknowledged_at.push(Instant::now());
                let first = written.acknowledged[0].clone();
                for id in [id.to_string(), first] {
                    let read = http
                        .get(format!("{base}/api/dfr/persons/{id}"))
                        .bearer_auth(&token)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    if let Ok(read) = read
                        && read.status() == 404
                    {
                        written.stale_reads.push(id);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    written
}

/// Returns when the API acknowledges a write again.
async fn writes_accepted(http: &reqwest::Client, base: &str, token: &str) -> Instant {
    eventually(
        "the API to accept writes again",
        Duration::from_secs(120),
        || async {
            let response = http
                .post(format!("{base}/api/dfr/persons"))
                .bearer_auth(token)
                .json(&person(900_000 + rand_number()))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .ok()?;
            (response.status() == 201).then(Instant::now)
        },
    )
    .await
}

/// How many of `ids` the member `pod` holds, asked in SQL as the superuser.
fn stored(pod: &str, ids: &[String]) -> usize {
    stored_in(NAMESPACE, pod, ids)
}

/// How many of `ids` the member `pod` of `namespace` holds, asked in SQL as the superuser.
fn stored_in(namespace: &str, pod: &str, ids: &[String]) -> usize {
    let list = ids.join(",");
    backups::superuser_sql(
        namespace,
        pod,
        &format!("SELECT count(*) FROM persons WHERE id = ANY('{{{list}}}'::uuid[])"),
    )
    .trim()
    .parse()
    .unwrap()
}

async fn missing(http: &reqwest::Client, base: &str, token: &str, ids: &[String]) -> Vec<String> {
    let mut missing = Vec::new();
    for id in ids {
        let status = http
            .get(format!("{base}/api/dfr/persons/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status();
        if status != 200 {
            missing.push(format!("{id} ({status})"));
        }
    }
    missing
}

async fn healthy_pair(_client: &Client) -> (String, String) {
    healthy_pair_in(NAMESPACE).await
}

/// The leader and its synchronous standby in `namespace`, once Patroni reports the one running
/// and the other streaming. A former leader that was cut off still shows its last state,
/// `running`, until its Patroni catches up; a standby reports `streaming` only once it
/// replicates again.
async fn healthy_pair_in(namespace: &str) -> (String, String) {
    eventually(
        "one leader and one streaming synchronous standby",
        Duration::from_secs(240),
        || async {
            let leader = backups::leader_pod(namespace);
            if leader.is_empty() {
                return None;
            }
            let listing = dfr_e2e::testing::kubectl(&[
                "-n",
                namespace,
                "exec",
                &leader,
                "-c",
                "postgres",
                "--",
                "patronictl",
                "-c",
                "/etc/patroni/patroni.yml",
                "list",
                "-f",
                "json",
            ]);
            let members: Vec<Value> = serde_json::from_slice(&listing.stdout).ok()?;
            let member = |role: &str, state: &str| {
                members
                    .iter()
                    .find(|m| m["Role"] == role && m["State"] == state)
                    .and_then(|m| m["Member"].as_str().map(String::from))
            };
            Some((
                member("Leader", "running")?,
                member("Sync Standby", "streaming")?,
            ))
        },
    )
    .await
}

/// Deletes a scenario's tenant (deletionPolicy Delete: its namespace goes too) once the
/// scenario is done with it, so that the scenarios after it find the node's CPU free: the
/// tenants' pods together request nearly all of it.
async fn release_tenant(client: &Client, name: &str) {
    let countries: Api<DfrCountry> = Api::all(client.clone());
    countries
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
}

/// Installs the operator from config/default and waits for it; every scenario calls it (the
/// apply is idempotent), since they run side by side on the one node cluster.
fn install_operator() {
    let config = repo().join("config/default");
    run_kubectl(&["apply", "--server-side", "-k", config.to_str().unwrap()]);
    run_kubectl(&[
        "-n",
        "dfr-system",
        "rollout",
        "status",
        "deploy/dfr-operator",
        "--timeout=180s",
    ]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_country_runs_fails_over_without_losing_writes_and_keeps_its_data() {
    let _shared = shared_cluster().await;
    let client = kube_client().await;
    install_operator();

    apply_country(&client).await;
    let started = Instant::now();
    let ready = wait_ready(&client, Duration::from_secs(420)).await;
    println!(
        "figure: DfrCountry Ready {:.1} s after apply",
        started.elapsed().as_secs_f64()
    );

    let (leader, standby) = healthy_pair(&client).await;
    assert_ne!(leader, standby);
    let status = ready.status.clone().unwrap();
    assert_eq!(status.primary.as_deref(), Some(leader.as_str()));
    let listing = run_kubectl(&["get", "dfrcountries", COUNTRY]);
    println!("{listing}");
    let row = listing.lines().nth(1).unwrap();
    assert!(row.contains(" True "), "Ready column: {row}");
    assert!(row.contains(&leader), "Primary column: {row}");
    assert!(row.contains(" 2/2 "), "API column: {row}");

    let (http, base) = api_endpoint(&client, NAMESPACE).await;
    let health = http
        .get(format!("{base}/api/dfr/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "{}", health.text().await.unwrap());
    registry_administration_works(&http, &base).await;

    // Failover while a client writes.
    let token = enumerator_token(&client, &http, &base).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(write_until(
        http.clone(),
        base.clone(),
        token.clone(),
        stopped,
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let (_, old_uid) = self::leader(&client, None).await.unwrap();
    let deleted_at = Instant::now();
    pods.delete(&leader, &DeleteParams::default())
        .await
        .unwrap();
    // The StatefulSet recreates the deleted pod under its old name, so a new leader is told
    // apart by its pod's uid.
    let new_leader = eventually("a new leader", Duration::from_secs(120), || async {
        self::leader(&client, Some(&old_uid))
            .await
            .map(|(name, _)| name)
    })
    .await;
    let without_leader = deleted_at.elapsed();
    let writes_back = writes_accepted(&http, &base, &token).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.send(true).unwrap();
    let Written {
        acknowledged,
        acknowledged_at,
        attempts,
        stale_reads,
    } = writer.await.unwrap();
    // Read back once both members agree again: until then the -rw Service may still reach a
    // member that is no longer the leader.
    let (leader_now, standby_now) = healthy_pair(&client).await;
    let lost = missing(&http, &base, &token, &acknowledged).await;
    let on_leader = stored(&leader_now, &acknowledged);
    let on_standby = eventually("the standby to replay", Duration::from_secs(30), || async {
        let count = stored(&standby_now, &acknowledged);
        (count == acknowledged.len()).then_some(count)
    })
    .await;
    println!(
        "figure: leader {leader} deleted; new leader {new_leader} after {:.1} s; writes accepted again after {:.1} s; {} of {attempts} writes acknowledged, {on_leader} on the leader, {on_standby} on the standby, {} unreadable through the API",
        without_leader.as_secs_f64(),
        writes_back.duration_since(deleted_at).as_secs_f64(),
        acknowledged.len(),
        lost.len()
    );
    assert_eq!(on_leader, acknowledged.len(), "acknowledged writes lost");
    assert!(
        acknowledged_at.iter().any(|at| *at < deleted_at)
            && acknowledged_at.iter().any(|at| *at > writes_back),
        "the writer must have written before the fault and after writes came back"
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(stale_reads.is_empty(), "stale reads: {stale_reads:?}");

    // A leader that hangs, as when its node is lost: nobody tells Patroni. The operator's
    // failover guard sees the lock go unrenewed and the leader's Patroni silent, fences the
    // leader (deletes its pod) and releases the lock to the synchronous standby.
    let (hung, hung_uid) = self::leader(&client, None).await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(write_until(
        http.clone(),
        base.clone(),
        token.clone(),
        stopped,
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let frozen = Frozen::pod(&hung_uid);
    let frozen_at = Instant::now();
    let successor = eventually(
        "a leader other than the hung one",
        Duration::from_secs(90),
        || async {
            self::leader(&client, Some(&hung_uid))
                .await
                .map(|(name, _)| name)
        },
    )
    .await;
    let without_leader = frozen_at.elapsed();
    let writes_back = writes_accepted(&http, &base, &token).await;
    drop(frozen);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.send(true).unwrap();
    let Written {
        acknowledged: hung_acknowledged,
        acknowledged_at: _,
        attempts,
        stale_reads,
    } = writer.await.unwrap();
    let (leader_now, standby_now) = healthy_pair(&client).await;
    let fenced = run_kubectl(&[
        "get",
        "events",
        "--all-namespaces",
        "--field-selector",
        &format!("involvedObject.name={COUNTRY},reason=LeaderFenced"),
        "-o",
        "jsonpath={range .items[*]}{.note}{.message}{\"\\n\"}{end}",
    ]);
    // A resumed former leader must not answer a single read as a primary: the guard deleted its
    // pod before the thaw, so the kubelet's SIGKILL runs before any of its code.
    let unreadable = missing(&http, &base, &token, &hung_acknowledged).await;
    let on_leader = stored(&leader_now, &hung_acknowledged);
    // The standby has flushed every acknowledged commit; replaying them may take a moment.
    let on_standby = eventually("the standby to replay", Duration::from_secs(30), || async {
        let count = stored(&standby_now, &hung_acknowledged);
        (count == hung_acknowledged.len()).then_some(count)
    })
    .await;
    println!(
        "figure: leader {hung} hung (frozen); {successor} leads after {:.1} s; writes accepted again after {:.1} s; {} of {attempts} writes acknowledged, {} on the leader, {} on the standby, {} stale reads while writing, {} unreadable after the thaw",
        without_leader.as_secs_f64(),
        writes_back.duration_since(frozen_at).as_secs_f64(),
        hung_acknowledged.len(),
        on_leader,
        on_standby,
        stale_reads.len(),
        unreadable.len()
    );
    println!("operator: {}", fenced.trim());
    assert!(
        fenced.contains(&format!("leader {hung}")),
        "the operator's failover guard fenced the hung leader: {fenced:?}"
    );
    assert_eq!(
        on_leader,
        hung_acknowledged.len(),
        "acknowledged writes lost"
    );
    assert_eq!(on_standby, hung_acknowledged.len(), "not on the standby");
    assert!(stale_reads.is_empty(), "stale reads: {stale_reads:?}");
    assert!(
        unreadable.is_empty(),
        "unreadable after the thaw: {unreadable:?}"
    );
    let mut acknowledged = acknowledged;
    acknowledged.extend(hung_acknowledged);

    // Retain: the resource goes, the data stays, and comes back with the resource.
    let countries: Api<DfrCountry> = Api::all(client.clone());
    countries
        .delete(COUNTRY, &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the DfrCountry to be gone",
        Duration::from_secs(120),
        || async {
            countries
                .get_opt(COUNTRY)
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = namespaces.get(NAMESPACE).await.unwrap();
    assert!(namespace.metadata.deletion_timestamp.is_none());
    let kept = claim_names(&client).await;
    // The sample keeps its backups on a volume of the repository host: data too.
    for claim in [
        "data-postgres-0",
        "data-postgres-1",
        "repository-postgres-repo-0",
    ] {
        assert!(kept.contains(claim), "{claim} is kept: {kept:?}");
    }

    let reapplied = Instant::now();
    apply_country(&client).await;
    wait_ready(&client, Duration::from_secs(420)).await;
    println!(
        "figure: re-applied DfrCountry Ready on its retained data {:.1} s after apply",
        reapplied.elapsed().as_secs_f64()
    );
    assert_eq!(
        claim_names(&client).await,
        kept,
        "the re-applied country uses the same volumes"
    );
    // The re-applied tenant's Service has a new ClusterIP: a new client resolves to it.
    let (http, base) = api_endpoint(&client, NAMESPACE).await;
    let username_token = token_after_reapply(&http, &base, &token).await;
    // Ready may come while the retained members restart under the new StatefulSet (reads then
    // fail for a moment): every acknowledged record must be readable again, soon.
    let mut lost = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        lost = missing(&http, &base, &username_token, &acknowledged).await;
        if lost.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(lost.is_empty(), "records missing after re-apply: {lost:?}");
    println!(
        "figure: after delete (Retain) and re-apply, all {} acknowledged records are back",
        acknowledged.len()
    );
}

async fn claim_names(client: &Client) -> BTreeSet<String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    claims
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect()
}

/// The old token still verifies if the JWT signing key was retained with the other Secrets;
/// that is itself part of what Retain must keep.
async fn token_after_reapply(http: &reqwest::Client, base: &str, token: &str) -> String {
    let probe = eventually(
        "the API to answer after re-apply",
        Duration::from_secs(120),
        || async {
            http.get(format!("{base}/api/dfr/health/ready"))
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
        },
    )
    .await;
    drop(probe);
    token.to_string()
}

fn rand_number() -> u32 {
    rand::random::<u32>() % 99_999
}
