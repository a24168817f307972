//! The monitoring pipeline on the node cluster, end to end: the Prometheus that `dfr-cluster up
//! --node` runs under the Prometheus Operator scrapes every target the DFR operator declares for
//! a tenant (the API, Patroni and the PostgreSQL exporter of each member) and the operator
//! itself; every query of the tenant's dashboards returns data once the tenant has done its
//! daily work (sign-ins, a refused one, a registration, a consent change, a backup and a restore
//! check); and a real fault, the synchronous standby hung, raises the members alert in the
//! Alertmanager, which resolves once the standby answers again. Prints what scraping and
//! evaluating one tenant costs.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::{Value, json};

use super::backups::{
    apply, create_repository_secrets, leader_pod, restore_check, s3_backup, superuser_sql, token,
    wait_backup, wait_ready,
};
use super::{Frozen, eventually};

const NAME: &str = "tuv-e2e-mon";
const NAMESPACE: &str = "dfr-tuv-test";
const AREA: &str = "TV-01";
const MONITORING: &str = dfr_e2e::node::addons::monitoring::NAMESPACE;
/// Raised by a hung member: fewer than two Patroni members running for a minute.
const MEMBERS_ALERT: &str = "DfrPatroniMembersMissing";

/// `http://<ClusterIP>:<port>` of a Service: the test runs on the node's host, where kube-proxy
/// routes ClusterIPs but no cluster DNS answers.
pub(super) async fn service_url(client: &Client, namespace: &str, name: &str) -> String {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let spec = services.get(name).await.unwrap().spec.unwrap();
    let ip = spec.cluster_ip.unwrap();
    let port = spec.ports.unwrap()[0].port;
    format!("http://{ip}:{port}")
}

/// The result vector of an instant query, or the error Prometheus gave.
pub(super) async fn query(
    http: &reqwest::Client,
    prometheus: &str,
    expr: &str,
) -> Result<Vec<Value>, String> {
    let response = http
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(body.to_string());
    }
    Ok(body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The value of a one-series query, as a number.
pub(super) async fn scalar(http: &reqwest::Client, prometheus: &str, expr: &str) -> Option<f64> {
    let result = query(http, prometheus, expr).await.ok()?;
    result.first()?["value"][1].as_str()?.parse().ok()
}

/// Every expression of the tenant's dashboards, from the ConfigMaps the Grafana sidecar reads.
async fn dashboard_queries(client: &Client) -> Vec<(String, String)> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let listed = maps
        .list(&ListParams::default().labels("grafana_dashboard=1"))
        .await
        .unwrap();
    assert!(
        listed.items.len() >= 4,
        "dashboards in {NAMESPACE}: {}",
        listed.items.len()
    );
    let mut queries = Vec::new();
    for map in listed.items {
        for text in map.data.unwrap_or_default().values() {
            let board: Value = serde_json::from_str(text).unwrap();
            for panel in board["panels"].as_array().unwrap() {
                for target in panel["targets"].as_array().into_iter().flatten() {
                    if let Some(expr) = target["expr"].as_str() {
                        let title = panel["title"].as_str().unwrap_or_default();
                        queries.push((title.to_string(), expr.to_string()));
                    }
                }
            }
        }
    }
    queries
}

/// The active alerts named `name` for this tenant in the Alertmanager; resolved ones are not
/// listed by its API.
async fn active_alerts(http: &reqwest::Client, alertmanager: &str, name: &str) -> Vec<Value> {
    let Ok(response) = http
        .get(format!("{alertmanager}/api/v2/alerts"))
        .query(&[
            ("active", "true"),
            ("filter", &format!("alertname=\"{name}\"")),
            ("filter", &format!("tenant=\"{NAME}\"")),
        ])
        .send()
        .await
    else {
        return Vec::new();
    };
    response.json().await.unwrap_or_default()
}

/// What the tenant does on an ordinary day, so every dashboard panel has something to show:
/// sign-ins (one refused), a registration and a consent given.
async fn daily_work(client: &Client) {
    let leader = leader_pod(NAMESPACE);
    superuser_sql(
        NAMESPACE,
        &leader,
        "INSERT INTO areas (code, parent_code, name, level) VALUES ('TV', NULL, 'Tuvalu', 0), ('TV-01', 'TV', 'Funafuti', 1) ON CONFLICT DO NOTHING",
    );
    let username = format!("mon-{}", dfr_e2e::testing::unique_suffix());
    super::create_user(NAMESPACE, &username, "enumerator", AREA);
    let (http, base) = super::api_endpoint(client, NAMESPACE).await;
    let bearer = token(&http, &base, &username).await;
    let refused = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", username.as_str()),
            ("password", "not the password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let created = http
        .post(format!("{base}/api/dfr/persons"))
        .bearer_auth(&bearer)
        .json(&json!({
            "nationalId": {"system": "TUV-NID", "value": format!("MON{}", super::rand_number())},
            "givenName": "Monitored",
            "familyName": "Farmer",
            "sex": 9,
            "birthDate": "1990-01-01",
            "areaCode": AREA,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let person: Value = created.json().await.unwrap();
    let consent = http
        .post(format!("{base}/api/dfr/consents"))
        .bearer_auth(&bearer)
        .json(&json!({
            "personId": person["id"],
            "purpose": "registry",
            "recipient": "Ministry of Agriculture",
            "terms": "Kept in the national farmer registry",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), 201, "{}", consent.text().await.unwrap());
    let version = consent.headers()["etag"].to_str().unwrap().to_string();
    let consent: Value = consent.json().await.unwrap();
    let given = http
        .post(format!(
            "{base}/api/dfr/consents/{}/transitions",
            consent["id"].as_str().unwrap()
        ))
        .bearer_auth(&bearer)
        .header("If-Match", version)
        .json(&json!({"state": "given"}))
        .send()
        .await
        .unwrap();
    assert_eq!(given.status(), 200, "{}", given.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_the_tenant_its_dashboards_have_data_and_a_hung_standby_alerts() {
    let _shared = super::shared_cluster().await;
    let client = dfr_e2e::testing::kube_client().await;
    super::install_operator();
    let s3 = dfr_e2e::testing::s3();
    let country = super::repositories::country(NAME, "TUV", 2, s3_backup(&s3));
    apply(&client, &country).await;
    create_repository_secrets(&s3, NAMESPACE).await;
    wait_ready(&client, NAME, Duration::from_secs(420)).await;
    wait_backup(&client, NAME, None).await;
    restore_check(&client, NAME, NAMESPACE, "monitoring-check").await;
    daily_work(&client).await;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let prometheus = service_url(&client, MONITORING, "prometheus").await;
    let alertmanager = service_url(&client, MONITORING, "alertmanager").await;

    // Every target of the tenant (one API pod, Patroni and the exporter on two members) is up,
    // and so is the operator, whose /metrics carries the tenant's backup, certificate and key
    // figures.
    let scraped = Instant::now();
    let targets = eventually(
        "every target of the tenant up in Prometheus",
        Duration::from_secs(300),
        || async {
            let response = http
                .get(format!("{prometheus}/api/v1/targets"))
                .query(&[("state", "active")])
                .send()
                .await
                .ok()?;
            let body: Value = response.json().await.ok()?;
            let active = body["data"]["activeTargets"].as_array()?.clone();
            let ours: Vec<Value> = active
                .iter()
                .filter(|t| t["labels"]["namespace"] == NAMESPACE)
                .cloned()
                .collect();
            let pools: BTreeSet<&str> = ours
                .iter()
                .filter_map(|t| t["scrapePool"].as_str())
                .collect();
            let operator_up = active
                .iter()
                .any(|t| t["labels"]["namespace"] == "dfr-system" && t["health"] == "up");
            (ours.len() >= 5
                && pools.len() >= 3
                && ours.iter().all(|t| t["health"] == "up")
                && operator_up)
                .then_some(ours)
        },
    )
    .await;
    let pools: BTreeSet<String> = targets
        .iter()
        .filter_map(|t| t["scrapePool"].as_str().map(String::from))
        .collect();
    println!(
        "figure: {} targets of {NAMESPACE} up in Prometheus after {:.0} s: {pools:?}",
        targets.len(),
        scraped.elapsed().as_secs_f64()
    );

    // Every dashboard query returns data. Rates need two scrapes in their window and the
    // operator's gauges its next reconcile, so this waits for the slowest.
    let queries = dashboard_queries(&client).await;
    let checked = Instant::now();
    let empty = eventually(
        "every dashboard query to return data",
        Duration::from_secs(300),
        || async {
            let mut empty = Vec::new();
            for (title, expr) in &queries {
                match query(&http, &prometheus, expr).await {
                    Ok(result) if !result.is_empty() => {}
                    Ok(_) => empty.push(format!("{title}: {expr}")),
                    Err(error) => panic!("{title}: {expr}: {error}"),
                }
            }
            if !empty.is_empty() {
                println!("dashboard queries without data yet: {empty:#?}");
            }
            empty.is_empty().then_some(empty)
        },
    )
    .await;
    assert!(empty.is_empty());
    println!(
        "figure: all {} dashboard queries return data ({:.0} s after the targets were up)",
        queries.len(),
        checked.elapsed().as_secs_f64()
    );

    // What one tenant costs Prometheus: samples and time per scrape round, series kept, and
    // the evaluation of its rule group.
    let [samples, scrape_seconds, series] = [
        "sum(scrape_samples_scraped{namespace=\"NS\"})",
        "sum(scrape_duration_seconds{namespace=\"NS\"})",
        "count({namespace=\"NS\"})",
    ]
    .map(|expr| expr.replace("NS", NAMESPACE));
    let [samples, scrape_seconds, series] = [
        scalar(&http, &prometheus, &samples).await,
        scalar(&http, &prometheus, &scrape_seconds).await,
        scalar(&http, &prometheus, &series).await,
    ]
    .map(Option::unwrap_or_default);
    let rules: Value = http
        .get(format!("{prometheus}/api/v1/rules"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let groups: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["file"].as_str().is_some_and(|f| f.contains(NAMESPACE)))
        .collect();
    assert!(!groups.is_empty(), "no rule group of {NAMESPACE} loaded");
    let rule_count: usize = groups
        .iter()
        .map(|g| g["rules"].as_array().map_or(0, Vec::len))
        .sum();
    let evaluation: f64 = groups
        .iter()
        .filter_map(|g| g["evaluationTime"].as_f64())
        .sum();
    println!(
        "figure: one tenant costs Prometheus {samples:.0} samples and {:.1} ms of scraping per round (every 30 s) ({} targets), {series:.0} series, and {:.2} ms per evaluation of its {rule_count} rules",
        scrape_seconds * 1000.0,
        targets.len(),
        evaluation * 1000.0
    );
    assert!(
        active_alerts(&http, &alertmanager, MEMBERS_ALERT)
            .await
            .is_empty(),
        "{MEMBERS_ALERT} fires before any fault"
    );

    // The fault: the synchronous standby hangs. Its Patroni stops answering the scrape, and
    // the members alert must reach the Alertmanager.
    let (_, standby) = super::healthy_pair_in(NAMESPACE).await;
    let uid = super::faults::current_uid_in(NAMESPACE, &standby).unwrap();
    let frozen = Frozen::pod(&uid);
    let hung = Instant::now();
    let alert = eventually(
        &format!("{MEMBERS_ALERT} in the Alertmanager"),
        Duration::from_secs(300),
        || async {
            active_alerts(&http, &alertmanager, MEMBERS_ALERT)
                .await
                .into_iter()
                .next()
        },
    )
    .await;
    let raised = hung.elapsed();
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert_eq!(alert["labels"]["namespace"], NAMESPACE, "{alert}");
    drop(frozen);
    let thawed = Instant::now();
    eventually(
        &format!("{MEMBERS_ALERT} to resolve"),
        Duration::from_secs(420),
        || async {
            active_alerts(&http, &alertmanager, MEMBERS_ALERT)
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    println!(
        "figure: standby {standby} hung: {MEMBERS_ALERT} in the Alertmanager after {:.0} s (rule `for` 1m); resolved {:.0} s after the thaw",
        raised.as_secs_f64(),
        thawed.elapsed().as_secs_f64()
    );
    super::healthy_pair_in(NAMESPACE).await;
    super::release_tenant(&client, NAME).await;
}
