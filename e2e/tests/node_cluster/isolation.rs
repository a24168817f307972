//! The specification's isolation acceptance test, with the node's NetworkPolicy enforcer
//! (kube-router, started by `dfr-cluster up --node`) in force. Two tenants side by side, and two
//! plain namespaces: one the first tenant selects for ingress, one it does not. Every check is a
//! TCP connect from inside a real pod (`bash`'s /dev/tcp in the API image, a Python listener in
//! the probe pods), and every refusal has a control showing that the same source reaches
//! something else, or the same destination is reachable from elsewhere, so a refusal is the
//! policy's and not a dead pod's.
//!
//! - From the other tenant's API pod, whose own egress rules let it out to the pod network on
//!   the PostgreSQL and API ports (it reaches its own API pod that way), this tenant's PostgreSQL
//!   and API pods are unreachable.
//! - From the selected namespace the API is reachable and PostgreSQL is not; from another
//!   namespace neither is.
//! - The API reaches PostgreSQL, and DNS answers it.
//! - The API reaches the address spec.network.egress names, and not an address it does not name
//!   (Prometheus's pod, which the unselected namespace reaches).

use std::collections::BTreeMap;
use std::time::Duration;

use dfr_crds::DfrCountry;
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::backups::{apply, wait_ready};
use super::eventually;

const TENANT: &str = "plw-e2e-iso";
const TENANT_NAMESPACE: &str = "dfr-plw-test";
const OTHER: &str = "fsm-e2e-iso";
const OTHER_NAMESPACE: &str = "dfr-fsm-test";
/// Selected by the tenant's spec.network.ingressNamespaceSelector.
const SELECTED: &str = "iso-e2e-selected";
/// Selected by nothing: a namespace with no policies of its own.
const ELSEWHERE: &str = "iso-e2e-elsewhere";
const INGRESS_LABEL: &str = "dfr-e2e/ingress";
const LISTENER_PORT: i32 = 8081;
/// The API pods' port (the operator's naming::API_PORT), checked against a pod below.
const API_PORT: i32 = 8080;
/// Long enough for a SYN dropped by a policy to be told from a slow answer on this node.
const CONNECT_TIMEOUT_S: u32 = 4;
const POD_SUBNET: &str = dfr_e2e::node::config::POD_SUBNET;

/// What a connect attempt came to.
#[derive(Debug, PartialEq)]
enum Connect {
    Connected,
    /// Refused or timed out, with what the shell said.
    Failed(String),
}

/// A TCP connect from `pod` to `ip:port`, with `bash`'s /dev/tcp and `timeout`. Panics when the
/// exec itself fails, so a broken harness is never read as a policy's refusal.
fn connect(namespace: &str, pod: &str, ip: &str, port: i32) -> Connect {
    let script = format!("exec 3<>/dev/tcp/{ip}/{port}");
    let container = if pod.starts_with("dfr-api-") {
        "api"
    } else {
        "probe"
    };
    let output = dfr_e2e::testing::kubectl(&[
        "-n",
        namespace,
        "exec",
        pod,
        "-c",
        container,
        "--",
        "timeout",
        &CONNECT_TIMEOUT_S.to_string(),
        "bash",
        "-c",
        &script,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !stderr.contains("Error from server") && !stderr.starts_with("error:"),
        "kubectl exec in {namespace}/{pod}: {stderr}"
    );
    match output.status.code() {
        Some(0) => Connect::Connected,
        // 124: `timeout` ended it, the SYN went unanswered.
        Some(124) => Connect::Failed(format!("no answer within {CONNECT_TIMEOUT_S} s")),
        _ => Connect::Failed(stderr.trim().to_string()),
    }
}

async fn wait_connected(namespace: &str, pod: &str, ip: &str, port: i32, what: &str) {
    eventually(what, Duration::from_secs(90), || async {
        (connect(namespace, pod, ip, port) == Connect::Connected).then_some(())
    })
    .await;
}

fn assert_refused(namespace: &str, pod: &str, ip: &str, port: i32, what: &str) {
    match connect(namespace, pod, ip, port) {
        Connect::Connected => panic!("{what}: {namespace}/{pod} reached {ip}:{port}"),
        Connect::Failed(reason) => println!("isolation: {what} refused ({reason})"),
    }
}

/// The first Running pod matching `selector` in `namespace`, as (name, IP).
async fn running_pod(client: &Client, namespace: &str, selector: &str) -> (String, String) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    eventually(
        &format!("a running pod {selector} in {namespace}"),
        Duration::from_secs(240),
        || async {
            let listed = pods
                .list(&ListParams::default().labels(selector))
                .await
                .ok()?;
            listed.items.into_iter().find_map(|pod| {
                let status = pod.status?;
                let running = status.phase.as_deref() == Some("Running")
                    && status
                        .container_statuses
                        .unwrap_or_default()
                        .iter()
                        .all(|c| c.ready);
                running.then_some((pod.metadata.name?, status.pod_ip?))
            })
        },
    )
    .await
}

fn api_selector(tenant: &str) -> String {
    format!("app.kubernetes.io/name=dfr-api,app.kubernetes.io/instance={tenant}")
}

fn postgres_selector(tenant: &str) -> String {
    format!("app.kubernetes.io/name=postgres,app.kubernetes.io/instance={tenant}")
}

/// A tenant with one member and one API pod; `network` is its spec.network.
fn country(name: &str, code: &str, network: serde_json::Value) -> DfrCountry {
    let mut country = super::repositories::country(name, code, 1, serde_json::Value::Null);
    let mut spec = serde_json::to_value(&country.spec).unwrap();
    let monitoring = spec["network"]["monitoringNamespaceSelector"].clone();
    spec["network"] = network;
    spec["network"]["monitoringNamespaceSelector"] = monitoring;
    country.spec = serde_json::from_value(spec).unwrap();
    country
}

/// A plain namespace with a pod that listens on LISTENER_PORT (Python's HTTP server, from the
/// PostgreSQL image, which the node already has), as (pod name, IP).
async fn probe_namespace(
    client: &Client,
    name: &str,
    labels: BTreeMap<String, String>,
    image: &str,
) -> (String, String) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), name);
    let labels = BTreeMap::from([("app.kubernetes.io/name".to_string(), "probe".to_string())]);
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("probe".into()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "probe".into(),
                image: Some(image.into()),
                image_pull_policy: Some("IfNotPresent".into()),
                command: Some(
                    [
                        "python3",
                        "-m",
                        "http.server",
                        &LISTENER_PORT.to_string(),
                        "--bind",
                        "0.0.0.0",
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
                ..Container::default()
            }],
            termination_grace_period_seconds: Some(1),
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    pods.create(&PostParams::default(), &pod).await.unwrap();
    running_pod(client, name, "app.kubernetes.io/name=probe").await
}

/// The PostgreSQL image the members run, which the probe pods reuse.
async fn postgres_image(client: &Client, namespace: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let listed = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=postgres"))
        .await
        .unwrap();
    listed.items[0].spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn network_policies_isolate_a_tenant_and_let_through_only_what_its_spec_names() {
    let _shared = super::shared_cluster().await;
    let client = dfr_e2e::testing::kube_client().await;
    super::install_operator();

    // The other tenant lets its API out to the pod network on both ports and its own API in, so
    // what stops it below is this tenant's ingress policy, not its own egress.
    let peer_ports = json!([
        {"port": 5432, "protocol": "TCP"},
        {"port": API_PORT, "protocol": "TCP"},
    ]);
    apply(
        &client,
        &country(
            OTHER,
            "FSM",
            json!({
                "ingressNamespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": OTHER_NAMESPACE}},
                "egress": [{"name": "peers", "cidr": POD_SUBNET, "ports": peer_ports}],
            }),
        ),
    )
    .await;
    wait_ready(&client, OTHER, Duration::from_secs(420)).await;
    let image = postgres_image(&client, OTHER_NAMESPACE).await;
    let (selected_probe, _) = probe_namespace(
        &client,
        SELECTED,
        BTreeMap::from([(INGRESS_LABEL.to_string(), "plw".to_string())]),
        &image,
    )
    .await;
    let (elsewhere_probe, elsewhere_ip) =
        probe_namespace(&client, ELSEWHERE, BTreeMap::new(), &image).await;

    // This tenant: ingress from the selected namespace only; egress to the unselected probe's
    // listener, and nothing else.
    apply(
        &client,
        &country(
            TENANT,
            "PLW",
            json!({
                "ingressNamespaceSelector": {"matchLabels": {INGRESS_LABEL: "plw"}},
                "egress": [{
                    "name": "listener",
                    "cidr": format!("{elsewhere_ip}/32"),
                    "ports": [{"port": LISTENER_PORT, "protocol": "TCP"}],
                }],
            }),
        ),
    )
    .await;
    wait_ready(&client, TENANT, Duration::from_secs(420)).await;
    let (api_pod, api_ip) = running_pod(&client, TENANT_NAMESPACE, &api_selector(TENANT)).await;
    let (_, postgres_ip) = running_pod(&client, TENANT_NAMESPACE, &postgres_selector(TENANT)).await;
    let (other_api_pod, other_api_ip) =
        running_pod(&client, OTHER_NAMESPACE, &api_selector(OTHER)).await;
    let api_port = api_port(&client, TENANT_NAMESPACE, &api_pod).await;
    assert_eq!(
        api_port, API_PORT,
        "the API's port, which the other tenant's egress names"
    );

    // The API reaches PostgreSQL (its readiness needs it, and a raw connect), and DNS answers.
    wait_connected(
        TENANT_NAMESPACE,
        &api_pod,
        &postgres_ip,
        5432,
        "the API reaching PostgreSQL",
    )
    .await;
    let resolved = super::run_kubectl(&[
        "-n",
        TENANT_NAMESPACE,
        "exec",
        &api_pod,
        "-c",
        "api",
        "--",
        "getent",
        "hosts",
        &format!("postgres-rw.{TENANT_NAMESPACE}.svc.cluster.local"),
    ]);
    assert!(!resolved.trim().is_empty(), "DNS: {resolved}");
    println!("isolation: DNS from the API pod: {}", resolved.trim());

    // Another tenant's namespace: its API gets out to its own API pod on the pod network, and
    // not into this tenant.
    wait_connected(
        OTHER_NAMESPACE,
        &other_api_pod,
        &other_api_ip,
        api_port,
        "the other tenant's API reaching its own API pod over the pod network",
    )
    .await;
    assert_refused(
        OTHER_NAMESPACE,
        &other_api_pod,
        &postgres_ip,
        5432,
        "the other tenant's API to this tenant's PostgreSQL",
    );
    assert_refused(
        OTHER_NAMESPACE,
        &other_api_pod,
        &api_ip,
        api_port,
        "the other tenant's API to this tenant's API",
    );

    // Ingress only from the selected namespace, and only to the API.
    wait_connected(
        SELECTED,
        &selected_probe,
        &api_ip,
        api_port,
        "the selected namespace reaching the API",
    )
    .await;
    assert_refused(
        SELECTED,
        &selected_probe,
        &postgres_ip,
        5432,
        "the selected namespace to PostgreSQL",
    );
    assert_refused(
        ELSEWHERE,
        &elsewhere_probe,
        &api_ip,
        api_port,
        "an unselected namespace to the API",
    );
    assert_refused(
        ELSEWHERE,
        &elsewhere_probe,
        &postgres_ip,
        5432,
        "an unselected namespace to PostgreSQL",
    );

    // Egress: the address spec.network names, and not one it does not.
    wait_connected(
        TENANT_NAMESPACE,
        &api_pod,
        &elsewhere_ip,
        LISTENER_PORT,
        "the API reaching the address its spec names",
    )
    .await;
    let (_, prometheus_ip) = running_pod(
        &client,
        dfr_e2e::node::addons::monitoring::NAMESPACE,
        "app.kubernetes.io/name=prometheus",
    )
    .await;
    wait_connected(
        ELSEWHERE,
        &elsewhere_probe,
        &prometheus_ip,
        9090,
        "an unrestricted pod reaching Prometheus",
    )
    .await;
    assert_refused(
        TENANT_NAMESPACE,
        &api_pod,
        &prometheus_ip,
        9090,
        "the API to an address its spec does not name (Prometheus)",
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    for namespace in [SELECTED, ELSEWHERE] {
        namespaces
            .delete(namespace, &DeleteParams::default())
            .await
            .unwrap();
    }
    super::release_tenant(&client, OTHER).await;
    super::release_tenant(&client, TENANT).await;
}

/// The port the API pods serve on (their container port named https).
async fn api_port(client: &Client, namespace: &str, pod: &str) -> i32 {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = pods.get(pod).await.unwrap();
    pod.spec.unwrap().containers[0]
        .ports
        .iter()
        .flatten()
        .find(|port| port.name.as_deref() == Some("https"))
        .unwrap()
        .container_port
}
