//! dfr-cluster brings a control plane up and takes it down without leaving anything behind.
//! (The suite's own control plane proves the rest; this one is started here to watch `down`.)
#![allow(clippy::unwrap_used)]

use dfr_e2e::cluster::Cluster;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};

fn processes_mentioning(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .filter(|cmdline| String::from_utf8_lossy(cmdline).contains(marker))
        .count()
}

#[tokio::test]
async fn up_serves_and_down_leaves_nothing_behind() {
    let state = std::env::temp_dir().join(format!(
        "dfr-cluster-test-{}",
        dfr_e2e::testing::unique_suffix()
    ));
    let plane = Cluster::new("lifecycle", Some(state.clone())).unwrap();
    let timings = plane.up().await.unwrap();
    assert!(!timings.start_to_ready.is_zero());
    let marker = state.display().to_string();
    assert_eq!(
        processes_mentioning(&marker),
        3,
        "etcd, kube-apiserver and kube-controller-manager"
    );

    let client = plane.client().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client);
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"kube-system".to_string()), "{names:?}");
    // Asking again for a running control plane changes nothing.
    assert!(plane.up().await.unwrap().start_to_ready.is_zero());
    let lines = plane.env_lines().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("export DFR_KUBECONFIG="))
    );

    let stopped = plane.down().await.unwrap();
    assert_eq!(stopped.len(), 3, "{stopped:?}");
    assert_eq!(
        processes_mentioning(&marker),
        0,
        "a component survived down"
    );
    assert!(!state.exists(), "the state dir was left behind");
    // Down is safe to repeat.
    assert!(plane.down().await.unwrap().is_empty());
}
