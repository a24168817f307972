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
    country
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
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

    connections_are_tls13_per_role_and_patroni_changes_need_credentials(&leader_pod(NAMESPACE));
}

/// psql as the registry's application role from inside member `pod` to the read-write Service,
/// with `options` added to the connection string: its output, or the error it printed.
fn app_psql(pod: &str, options: &str, sql: &str) -> String {
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
            "PGPASSWORD=\"$DFR_DB_APP_PASSWORD\" psql -qAt \"host=postgres-rw port=5432 user=$DFR_DB_APP_USER {options}\" -c \"{sql}\" 2>&1"
        ),
    ]);
    String::from_utf8_lossy(&output.stdout).trim().to_string()
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
