//! The node cluster's monitoring add-on against a control plane of its own (no node, so no pod
//! runs): the Prometheus Operator's CRDs apply, the operator built from
//! e2e/prometheus-operator-build starts as a host process and accepts the Prometheus and
//! Alertmanager objects with flags the images' binaries (Prometheus 3.13.1 from
//! e2e/prometheus-build, Debian's Alertmanager 0.25) know, and the promtool built beside that
//! Prometheus and Alertmanager 0.25's amtool accept the configurations it generates. The node
//! scenario `monitoring` runs the same stack for real.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dfr_e2e::cluster::Cluster;
use dfr_e2e::host::{binaries, process};
use dfr_e2e::node::NodeLayout;
use dfr_e2e::node::addons::{monitoring, monitoring_operator};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The gzipped file `key` of a Secret the operator generated, unpacked with gzip(1).
fn gunzip(secret: &Secret, key: &str, into: &Path) -> String {
    let data = secret.data.as_ref().unwrap()[key].0.clone();
    let packed = into.with_extension("gz");
    std::fs::write(&packed, data).unwrap();
    let output = Command::new("gzip")
        .args(["-dc"])
        .arg(&packed)
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    std::fs::write(into, &text).unwrap();
    text
}

fn check(tool: &str, args: &[&str], file: &Path) {
    if !Path::new(tool).exists() {
        eprintln!("SKIPPED: {tool} is not installed (scripts/prereqs installs it)");
        return;
    }
    let output = Command::new(tool).args(args).arg(file).output().unwrap();
    assert!(
        output.status.success(),
        "{tool} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every `--flag` the operator gives `container` is one that `binary --help` lists: the pod
/// would crash on an unknown one, and the operator chooses its flags by the version we declare.
fn assert_flags_known(set: &StatefulSet, container: &str, binary: &Path) {
    if !binary.exists() {
        eprintln!(
            "SKIPPED: {} is not installed (scripts/prereqs)",
            binary.display()
        );
        return;
    }
    let help = Command::new(binary).arg("--help").output().unwrap();
    let help = format!(
        "{}{}",
        String::from_utf8_lossy(&help.stdout),
        String::from_utf8_lossy(&help.stderr)
    );
    let spec = set.spec.clone().unwrap().template.spec.unwrap();
    let args = spec
        .containers
        .iter()
        .find(|c| c.name == container)
        .and_then(|c| c.args.clone())
        .unwrap_or_else(|| panic!("no container {container} with arguments"));
    for arg in args.iter().filter(|a| a.starts_with("--")) {
        let name = arg.trim_start_matches('-').split('=').next().unwrap();
        assert!(
            help.contains(&format!("--{name}")) || help.contains(&format!("--[no-]{name}")),
            "{} does not know {arg}",
            binary.display()
        );
    }
}

#[tokio::test]
async fn the_prometheus_operator_accepts_the_monitoring_objects() {
    let state = std::env::temp_dir().join(format!(
        "dfr-monitoring-test-{}",
        dfr_e2e::testing::unique_suffix()
    ));
    let plane = Cluster::new("monitoring", Some(state.clone())).unwrap();
    plane.up().await.unwrap();
    let client = plane.client().await.unwrap();
    let binaries = binaries::ensure_prometheus_operator().unwrap();
    let prometheus_binaries = binaries::ensure_prometheus().unwrap();
    let layout = NodeLayout {
        node_name: "dfr-monitoring".into(),
        state_dir: state.clone(),
        run_dir: state.join("run"),
        kubelet_port: 10250,
        kubelet_healthz_port: 0,
        proxy_healthz_port: 0,
        proxy_metrics_port: 0,
    };
    let kubeconfig = plane.kubeconfig();
    let result = {
        let (client, state, binaries) = (client.clone(), state.clone(), binaries.clone());
        async move {
            monitoring_operator::install_crds(&client, &binaries.operator)
                .await
                .unwrap();
            monitoring::apply_objects(&client, &layout).await.unwrap();
            let access = monitoring_operator::api_access(&kubeconfig).unwrap();
            monitoring_operator::start(&state, &binaries, &access)
                .await
                .unwrap();

            let sets: Api<StatefulSet> = Api::namespaced(client.clone(), monitoring::NAMESPACE);
            let prometheus = eventually("the Prometheus StatefulSet", || {
                let sets = sets.clone();
                async move { sets.get_opt("prometheus-dfr").await.ok().flatten() }
            })
            .await;
            assert_flags_known(&prometheus, "prometheus", &prometheus_binaries.prometheus);
            assert_flags_known(&prometheus, "config-reloader", &binaries.config_reloader);
            let images: Vec<String> = prometheus
                .spec
                .unwrap()
                .template
                .spec
                .unwrap()
                .containers
                .iter()
                .filter_map(|c| c.image.clone())
                .collect();
            assert!(
                images.contains(&dfr_e2e::images::monitoring::prometheus_reference()),
                "{images:?}"
            );
            assert!(
                images.contains(&"dfr-prometheus-config-reloader:0.93.0".to_string()),
                "{images:?}"
            );
            let alertmanager = eventually("the Alertmanager StatefulSet", || {
                let sets = sets.clone();
                async move { sets.get_opt("alertmanager-dfr").await.ok().flatten() }
            })
            .await;
            let binary = Path::new("/usr/bin/prometheus-alertmanager");
            assert_flags_known(&alertmanager, "alertmanager", binary);

            let secrets: Api<Secret> = Api::namespaced(client.clone(), monitoring::NAMESPACE);
            let config = eventually("Prometheus's generated configuration", || {
                let secrets = secrets.clone();
                async move { secrets.get_opt("prometheus-dfr").await.ok().flatten() }
            })
            .await;
            let file = state.join("prometheus.yaml");
            let text = gunzip(&config, "prometheus.yaml.gz", &file);
            for job in [
                "serviceMonitor/dfr-monitoring/kubelet-cadvisor/0",
                "podMonitor/dfr-monitoring/dfr-operator/0",
            ] {
                assert!(text.contains(job), "{job} in\n{text}");
            }
            assert!(text.contains("scrape_interval: 15s"), "{text}");
            let promtool = prometheus_binaries.promtool.display().to_string();
            check(&promtool, &["check", "config", "--syntax-only"], &file);

            let generated = eventually("Alertmanager's generated configuration", || {
                let secrets = secrets.clone();
                async move {
                    secrets
                        .get_opt("alertmanager-dfr-generated")
                        .await
                        .ok()
                        .flatten()
                }
            })
            .await;
            let file = state.join("alertmanager.yaml");
            gunzip(&generated, "alertmanager.yaml.gz", &file);
            check("/usr/bin/amtool", &["check-config"], &file);
        }
    };
    let outcome = tokio::spawn(result).await;
    let marker = [monitoring_operator::COMPONENT];
    let log = process::tail(&state.join("logs/prometheus-operator.log"), 30);
    process::stop_all(&state, &marker).unwrap();
    plane.down().await.unwrap();
    if let Err(panic) = outcome {
        eprintln!("prometheus-operator log:\n{log}");
        std::panic::resume_unwind(panic.into_panic());
    }
}
