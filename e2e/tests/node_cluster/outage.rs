//! The Kubernetes API server away for 60 s under write load: with Patroni's failsafe mode the
//! leader keeps leading (it reaches its standby over Patroni's REST API), the registry keeps
//! acknowledging writes, nothing is lost, and the operator catches up when the API returns.
//! It runs alone: every other scenario holds the cluster lock shared.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::Mutex;

use super::backups::{
    apply, create_person, leader_pod, person_body, superuser_sql, token, wait_ready,
};

const NAME: &str = "slb-e2e-outage";
const NAMESPACE: &str = "dfr-slb-test";
const OUTAGE: Duration = Duration::from_secs(60);

/// The node cluster's kube-apiserver, stopped (SIGSTOP) until dropped: to every client the API
/// server stops answering, as in a hung or restarting control plane.
struct StoppedApiServer(Pid);

impl StoppedApiServer {
    fn stop() -> Self {
        let state_dir = dfr_e2e::testing::kubeconfig_path()
            .parent()
            .unwrap()
            .to_path_buf();
        let text = std::fs::read_to_string(state_dir.join("pids/kube-apiserver.pid")).unwrap();
        let pid = Pid::from_raw(text.trim().parse().unwrap());
        kill(pid, Signal::SIGSTOP).unwrap();
        Self(pid)
    }
}

impl Drop for StoppedApiServer {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// One write attempt: when it was made and whether it was acknowledged (with the new id).
struct Attempt {
    at: Instant,
    id: Option<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn the_registry_keeps_writing_while_the_kubernetes_api_is_away() {
    let _alone = super::whole_cluster().await;
    let client = dfr_e2e::testing::kube_client().await;
    super::install_operator();
    apply(
        &client,
        &super::repositories::country(NAME, "SLB", 2, serde_json::Value::Null),
    )
    .await;
    wait_ready(&client, NAME, Duration::from_secs(420)).await;
    let leader = leader_pod(NAMESPACE);
    superuser_sql(
        NAMESPACE,
        &leader,
        "INSERT INTO areas (code, parent_code, name, level) VALUES ('SB', NULL, 'Solomon Islands', 0), ('WS-01', 'SB', 'Guadalcanal', 1) ON CONFLICT DO NOTHING",
    );
    let username = format!("outage-{}", dfr_e2e::testing::unique_suffix());
    super::create_user(NAMESPACE, &username, "supervisor", "WS-01");
    let (http, base) =
        super::api_endpoint_with_timeout(&client, NAMESPACE, Duration::from_secs(5)).await;
    let bearer = token(&http, &base, &username).await;
    // A write to check that the path works before the load starts.
    create_person(&http, &base, &bearer, 0).await;
    let timeline_before = superuser_sql(
        NAMESPACE,
        &leader,
        "SELECT timeline_id FROM pg_control_checkpoint()",
    );

    // Continuous writes, one at a time, through the API's Service.
    let attempts = Arc::new(Mutex::new(Vec::<Attempt>::new()));
    let running = Arc::new(AtomicBool::new(true));
    let writer = {
        let (attempts, running, http, base, bearer) = (
            attempts.clone(),
            running.clone(),
            http.clone(),
            base.clone(),
            bearer.clone(),
        );
        tokio::spawn(async move {
            let mut number = 1;
            while running.load(Ordering::Relaxed) {
                let at = Instant::now();
                let response = http
                    .post(format!("{base}/api/dfr/persons"))
                    .bearer_auth(&bearer)
                    .json(&person_body(number))
                    .send()
                    .await;
                let id = match response {
                    Ok(response) if response.status() == 201 => response
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|body| body["id"].as_str().map(String::from)),
                    _ => None,
                };
                attempts.lock().await.push(Attempt { at, id });
                number += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stopped = StoppedApiServer::stop();
    let outage_started = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    drop(stopped);
    let outage_ended = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    running.store(false, Ordering::Relaxed);
    writer.await.unwrap();

    let attempts = attempts.lock().await;
    let during: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.at >= outage_started && a.at < outage_ended)
        .collect();
    let failed_during = during.iter().filter(|a| a.id.is_none()).count();
    let failed = attempts.iter().filter(|a| a.id.is_none()).count();
    println!(
        "figure: {} writes while the API server was stopped for {} s, {failed_during} failed; {} in all, {failed} failed",
        during.len(),
        OUTAGE.as_secs(),
        attempts.len()
    );
    assert!(
        during.len() > 100,
        "writes were attempted during the outage"
    );
    assert_eq!(
        failed_during, 0,
        "every write during the outage acknowledged"
    );

    // No demotion, no failover: the same leader on the same timeline.
    let countries: kube::Api<dfr_crds::DfrCountry> = kube::Api::all(client.clone());
    let country = super::eventually(
        "status after the outage",
        Duration::from_secs(180),
        || async {
            let country = countries.get(NAME).await.ok()?;
            (super::condition(&country, "Ready").as_deref() == Some("True")).then_some(country)
        },
    )
    .await;
    println!(
        "figure: status Ready {:.1} s after the API server returned",
        outage_ended.elapsed().as_secs_f64()
    );
    assert_eq!(
        country.status.unwrap().primary.as_deref(),
        Some(leader.as_str()),
        "the leader kept its role"
    );
    // With a 20 s lock, Patroni 4.1.5 found its own lock expired when the API server returned,
    // tried to take it as if new, failed and demoted itself (four runs of five); the lock now
    // outlasts the outage (ttl 75 s with a synchronous standby).
    let timeline_after = superuser_sql(
        NAMESPACE,
        &leader,
        "SELECT timeline_id FROM pg_control_checkpoint()",
    );
    println!(
        "figure: timeline {} before the outage, {} after it ({})",
        timeline_before.trim(),
        timeline_after.trim(),
        if timeline_before == timeline_after {
            "no demotion"
        } else {
            "the leader demoted itself when the API server returned and promoted again"
        }
    );
    assert_eq!(
        timeline_before.trim(),
        timeline_after.trim(),
        "the leader must not demote itself when the API server returns"
    );
    let acknowledged: Vec<String> = attempts
        .iter()
        .filter_map(|a| a.id.as_ref().map(|id| format!("'{id}'")))
        .collect();
    for member in ["postgres-0", "postgres-1"] {
        let found = superuser_sql(
            NAMESPACE,
            member,
            &format!(
                "SELECT count(*) FROM persons WHERE id IN ({})",
                acknowledged.join(",")
            ),
        );
        assert_eq!(
            found.trim(),
            acknowledged.len().to_string(),
            "every acknowledged write on {member}"
        );
    }
    super::release_tenant(&client, NAME).await;
}
