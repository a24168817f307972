//! The API's autoscaler on the node cluster, with metrics-server and prometheus-adapter behind
//! the aggregation layer and the cluster's Prometheus scraping the API: a staging tenant that
//! asks for autoscaling scales its API up under a CPU load and back down when it stops; then,
//! with a latency target below what a contended database gives, up on p95 latency alone and
//! back down; and when Prometheus stops scraping the tenant, its status says why the autoscaler
//! cannot read the latency metric, until scraping resumes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dfr_crds::DfrCountry;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::Api;
use serde_json::json;

use super::backups::{apply, leader_pod, superuser_sql, token, wait_ready};
use super::{PASSWORD, eventually};

const NAME: &str = "nru-e2e-hpa";
const NAMESPACE: &str = "dfr-nru-staging";
const CPU_TARGET: i32 = 50;
/// The latency target of the second phase: the lowest the CRD allows, above what the API
/// answers in when nothing contends.
const LATENCY_TARGET_MS: i32 = 50;

fn country() -> DfrCountry {
    let mut country = super::repositories::country(NAME, "NRU", 1, serde_json::Value::Null);
    let mut spec = serde_json::to_value(&country.spec).unwrap();
    spec["environment"] = json!("staging");
    spec["api"]["minReplicas"] = json!(1);
    spec["api"]["maxReplicas"] = json!(2);
    // Latency out of the way (the CRD's maximum) while CPU is under test.
    spec["api"]["autoscaling"] = json!({
        "enabled": true,
        "targetCPUUtilizationPercent": CPU_TARGET,
        "targetP95LatencyMs": 60000,
        "stabilizationWindowSeconds": 15,
    });
    country.spec = serde_json::from_value(spec).unwrap();
    country
}

/// The CPU utilisation the autoscaler last measured, in percent of the request.
fn cpu_utilization(hpa: &HorizontalPodAutoscaler) -> Option<i32> {
    hpa.status
        .as_ref()?
        .current_metrics
        .as_ref()?
        .iter()
        .find_map(|metric| metric.resource.as_ref()?.current.average_utilization)
}

fn degraded(country: &DfrCountry) -> Option<(String, String, String)> {
    super::condition_details(country, "Degraded")
}

/// The autoscaler's `SuccessfulRescale` Event messages, oldest first: each names the metric
/// that decided ("New size: 2; reason: pods metric ... above target").
fn rescale_messages() -> Vec<String> {
    super::run_kubectl(&[
        "-n",
        NAMESPACE,
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=HorizontalPodAutoscaler,reason=SuccessfulRescale",
        "--sort-by=.lastTimestamp",
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ])
    .lines()
    .map(String::from)
    .collect()
}

/// Waits until the Deployment has `pods` available and the autoscaler wants no other count;
/// returns how long that took.
async fn settles_at(
    hpas: &Api<HorizontalPodAutoscaler>,
    deployments: &Api<Deployment>,
    pods: i32,
    timeout: Duration,
) -> Duration {
    let started = Instant::now();
    eventually(&format!("the API at {pods} pod(s)"), timeout, || async {
        let desired = hpas.get("dfr-api").await.ok()?.status?.desired_replicas;
        let status = deployments.get("dfr-api").await.ok()?.status?;
        (desired == pods
            && status.available_replicas.unwrap_or(0) == pods
            && status.replicas.unwrap_or(0) == pods)
            .then_some(())
    })
    .await;
    started.elapsed()
}

/// Waits, showing `watch` the autoscaler each second, until the autoscaler wants two pods and
/// the Deployment has them available; returns the time since `load_started`.
async fn until_two_pods(
    hpas: &Api<HorizontalPodAutoscaler>,
    deployments: &Api<Deployment>,
    load_started: Instant,
    metric: &str,
    mut watch: impl FnMut(&HorizontalPodAutoscaler),
) -> Duration {
    let deadline = load_started + Duration::from_secs(300);
    loop {
        assert!(
            Instant::now() < deadline,
            "the API did not scale up on {metric} within 300 s of the load"
        );
        let mut desired = 0;
        if let Ok(hpa) = hpas.get("dfr-api").await {
            watch(&hpa);
            desired = hpa.status.as_ref().map_or(0, |s| s.desired_replicas);
        }
        let available = deployments
            .get("dfr-api")
            .await
            .ok()
            .and_then(|d| d.status)
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        if desired >= 2 && available >= 2 {
            return load_started.elapsed();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Clients that call `request` in a loop until `stop`, counting successes.
fn load<F, Fut>(
    workers: usize,
    stop: &Arc<AtomicBool>,
    done: &Arc<AtomicU64>,
    request: F,
) -> Vec<tokio::task::JoinHandle<()>>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    (0..workers)
        .map(|_| {
            let (stop, done, request) = (stop.clone(), done.clone(), request.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if request().await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect()
}

async fn finish(stop: &Arc<AtomicBool>, workers: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
}

/// The p95 latency the autoscaler last read, in milliseconds.
fn latency_ms(hpa: &HorizontalPodAutoscaler) -> Option<f64> {
    hpa.status
        .as_ref()?
        .current_metrics
        .as_ref()?
        .iter()
        .find_map(|metric| {
            let quantity = metric.pods.as_ref()?.current.average_value.as_ref()?;
            parse_quantity(&quantity.0)
        })
}

/// A Kubernetes quantity as the autoscaler writes averages ("734", "734500m", "1k").
fn parse_quantity(text: &str) -> Option<f64> {
    let (number, scale) = match text.char_indices().last()? {
        (i, 'm') => (&text[..i], 0.001),
        (i, 'k') => (&text[..i], 1000.0),
        _ => (text, 1.0),
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_scales_on_cpu_and_on_p95_latency_and_says_when_it_cannot_read_them() {
    let _shared = super::shared_cluster().await;
    let client = dfr_e2e::testing::kube_client().await;
    super::install_operator();
    apply(&client, &country()).await;
    wait_ready(&client, NAME, Duration::from_secs(420)).await;

    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), NAMESPACE);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let countries: Api<DfrCountry> = Api::all(client.clone());
    eventually(
        "the autoscaler's counts on the status",
        Duration::from_secs(120),
        || async {
            let country = countries.get(NAME).await.ok()?;
            let autoscaler = country.status?.api?.autoscaler?;
            (autoscaler.current_replicas == 1).then_some(())
        },
    )
    .await;

    let leader = leader_pod(NAMESPACE);
    superuser_sql(
        NAMESPACE,
        &leader,
        "INSERT INTO areas (code, parent_code, name, level) VALUES ('NR', NULL, 'Nauru', 0), ('NR-01', 'NR', 'Yaren', 1) ON CONFLICT DO NOTHING",
    );
    let username = format!("hpa-{}", dfr_e2e::testing::unique_suffix());
    super::create_user(NAMESPACE, &username, "enumerator", "NR-01");
    let (http, base) = super::api_endpoint(&client, NAMESPACE).await;
    let bearer = token(&http, &base, &username).await;

    // CPU: a bounded load of sign-ins (each one a password hash), well above the target.
    let stop = Arc::new(AtomicBool::new(false));
    let signed_in = Arc::new(AtomicU64::new(0));
    let sign_in = {
        let (http, base, username) = (http.clone(), base.clone(), username.clone());
        move || {
            let (http, base, username) = (http.clone(), base.clone(), username.clone());
            async move {
                http.post(format!("{base}/oauth/token"))
                    .form(&[
                        ("grant_type", "password"),
                        ("username", username.as_str()),
                        ("password", PASSWORD),
                    ])
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        }
    };
    let workers = load(3, &stop, &signed_in, sign_in);
    let load_started = Instant::now();
    let mut crossed: Option<Duration> = None;
    let mut asked: Option<Duration> = None;
    let ready = until_two_pods(&hpas, &deployments, load_started, "CPU", |hpa| {
        if crossed.is_none() && cpu_utilization(hpa).is_some_and(|cpu| cpu > CPU_TARGET) {
            crossed = Some(load_started.elapsed());
        }
        let desired = hpa.status.as_ref().map_or(0, |s| s.desired_replicas);
        if asked.is_none() && desired >= 2 {
            asked = Some(load_started.elapsed());
        }
    })
    .await;
    finish(&stop, workers).await;
    let crossed = crossed.expect("the autoscaler saw CPU above the target");
    let asked = asked.expect("the autoscaler asked for a second pod");
    println!(
        "figure: autoscaling on CPU: load started, the autoscaler saw CPU above {CPU_TARGET} % after {:.1} s, asked for 2 pods after {:.1} s, the second pod Ready after {:.1} s: {:.1} s from the threshold seen to the new pod Ready ({} sign-ins)",
        crossed.as_secs_f64(),
        asked.as_secs_f64(),
        ready.as_secs_f64(),
        (ready - crossed).as_secs_f64(),
        signed_in.load(Ordering::Relaxed)
    );
    assert!(
        rescale_messages()
            .iter()
            .any(|m| m.contains("New size: 2") && m.contains("cpu")),
        "{:?}",
        rescale_messages()
    );
    // The load is gone: CPU falls, the latency of what is left (probes) is far below 700 ms.
    let down = settles_at(&hpas, &deployments, 1, Duration::from_secs(300)).await;
    println!(
        "figure: autoscaling on CPU: back to 1 pod {:.1} s after the load stopped",
        down.as_secs_f64()
    );

    // p95 latency alone: a target of 50 ms and CPU's at 100 %, then reads that wait on a
    // contended table (a maintenance session takes it for 1.5 s of every 2 s), so the latency
    // rises while the API pods' CPU stays low.
    let mut latency_bound = country();
    let mut spec = serde_json::to_value(&latency_bound.spec).unwrap();
    spec["api"]["autoscaling"]["targetCPUUtilizationPercent"] = json!(100);
    spec["api"]["autoscaling"]["targetP95LatencyMs"] = json!(LATENCY_TARGET_MS);
    latency_bound.spec = serde_json::from_value(spec).unwrap();
    apply(&client, &latency_bound).await;
    eventually(
        "the autoscaler to aim at the new latency target",
        Duration::from_secs(60),
        || async {
            let hpa = hpas.get("dfr-api").await.ok()?;
            let metrics = hpa.spec?.metrics?;
            metrics
                .iter()
                .any(|m| {
                    m.pods.as_ref().is_some_and(|p| {
                        p.target.average_value.as_ref().map(|q| q.0.as_str())
                            == Some(&LATENCY_TARGET_MS.to_string())
                    })
                })
                .then_some(())
        },
    )
    .await;
    // The sign-ins' latency must have left the autoscaler's one-minute window first, so that
    // what crosses the target below is the contention alone.
    eventually(
        "the autoscaler to read a latency below the target",
        Duration::from_secs(180),
        || async {
            let hpa = hpas.get("dfr-api").await.ok()?;
            latency_ms(&hpa)
                .filter(|ms| *ms < f64::from(LATENCY_TARGET_MS))
                .map(|_| ())
        },
    )
    .await;
    let contention = {
        let leader = leader.clone();
        std::thread::spawn(move || {
            superuser_sql(
                NAMESPACE,
                &leader,
                "DO \\$\\$ BEGIN FOR i IN 1..60 LOOP LOCK TABLE persons IN ACCESS EXCLUSIVE MODE; PERFORM pg_sleep(1.5); COMMIT; PERFORM pg_sleep(0.5); END LOOP; END \\$\\$",
            )
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let read = Arc::new(AtomicU64::new(0));
    let list = {
        let (http, base, bearer) = (http.clone(), base.clone(), bearer.clone());
        move || {
            let (http, base, bearer) = (http.clone(), base.clone(), bearer.clone());
            async move {
                let answered = http
                    .get(format!("{base}/api/dfr/persons?limit=5"))
                    .bearer_auth(&bearer)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                // Paced, so the reads between the locks add little CPU: at 100 ms a loaded
                // run's readers took the API pod over its CPU target too, and the autoscaler
                // scaled on CPU before the latency figure reached it.
                tokio::time::sleep(Duration::from_millis(500)).await;
                answered
            }
        }
    };
    let workers = load(2, &stop, &read, list);
    let load_started = Instant::now();
    let mut crossed: Option<(Duration, f64)> = None;
    let mut asked: Option<Duration> = None;
    let mut highest_cpu = 0;
    let ready = until_two_pods(&hpas, &deployments, load_started, "p95 latency", |hpa| {
        if let Some(latency) = latency_ms(hpa)
            && crossed.is_none()
            && latency > f64::from(LATENCY_TARGET_MS)
        {
            crossed = Some((load_started.elapsed(), latency));
        }
        if asked.is_none() && hpa.status.as_ref().is_some_and(|s| s.desired_replicas >= 2) {
            asked = Some(load_started.elapsed());
        }
        highest_cpu = highest_cpu.max(cpu_utilization(hpa).unwrap_or(0));
    })
    .await;
    finish(&stop, workers).await;
    let messages = rescale_messages();
    // The status shows the figure of the autoscaler's last evaluation only: one that scaled up
    // and was overwritten, with the new pod's reads averaged in, within the poll's second leaves
    // no value above the target to see. The rescale Event below, which names the metric, is
    // then the evidence, and the time it was asked for stands for the crossing.
    let (crossed, latency) = crossed.unwrap_or_else(|| {
        println!(
            "the autoscaler's status never showed p95 above the target between polls; its rescale Events: {messages:?}"
        );
        (asked.unwrap_or(ready), f64::NAN)
    });
    let decided = messages.last().cloned().unwrap_or_default();
    assert!(
        decided.contains("New size: 2")
            && decided.contains("dfr_http_request_duration_p95_milliseconds above target"),
        "the last rescale was not for latency: {messages:?}"
    );
    println!(
        "figure: autoscaling on p95 latency: the autoscaler read {latency:.0} ms (target {LATENCY_TARGET_MS}) after {:.1} s of contended reads, the second pod Ready after {:.1} s: {:.1} s from the threshold seen to the new pod Ready; API CPU at most {highest_cpu} % of its request ({} reads)",
        crossed.as_secs_f64(),
        ready.as_secs_f64(),
        (ready - crossed).as_secs_f64(),
        read.load(Ordering::Relaxed)
    );
    // The readers stopped when the second pod was Ready; the latency left is the probes'.
    let down = settles_at(&hpas, &deployments, 1, Duration::from_secs(300)).await;
    println!(
        "figure: autoscaling on p95 latency: back to 1 pod {:.1} s after the contended reads stopped",
        down.as_secs_f64()
    );
    contention.join().unwrap();

    // Prometheus stops scraping the tenant (its namespace taken off the monitors' selector, as
    // a broken scrape path would): the latency metric has no value for the API pods, and the
    // tenant says so with the autoscaler's reason, until scraping resumes.
    let label = dfr_e2e::node::addons::monitoring::UNSCRAPED_NAMESPACE_LABEL;
    super::run_kubectl(&["label", "namespace", NAMESPACE, &format!("{label}=true")]);
    let unscraped = Instant::now();
    let (_, reason, message) = eventually(
        "Degraded with the autoscaler's reason",
        Duration::from_secs(300),
        || async {
            let country = countries.get(NAME).await.ok()?;
            degraded(&country).filter(|(status, reason, message)| {
                status == "True"
                    && (reason.starts_with("FailedGet") || reason == "MetricUnavailable")
                    && message.contains("dfr_http_request_duration_p95_milliseconds")
            })
        },
    )
    .await;
    println!(
        "figure: {:.1} s after Prometheus stopped scraping the tenant it is Degraded: {reason}: {message}",
        unscraped.elapsed().as_secs_f64()
    );
    assert_eq!(
        super::condition(&countries.get(NAME).await.unwrap(), "Ready").as_deref(),
        Some("True"),
        "the API still serves"
    );
    super::run_kubectl(&["label", "namespace", NAMESPACE, &format!("{label}-")]);
    let resumed = Instant::now();
    eventually(
        "Degraded to clear once scraping resumes",
        Duration::from_secs(300),
        || async {
            let country = countries.get(NAME).await.ok()?;
            (super::condition(&country, "Degraded").as_deref() == Some("False")).then_some(())
        },
    )
    .await;
    println!(
        "figure: Degraded cleared {:.1} s after scraping resumed",
        resumed.elapsed().as_secs_f64()
    );
    super::release_tenant(&client, NAME).await;
}
