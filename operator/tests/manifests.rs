//! The operator's manifests stay consistent with each other: the Helm chart grants exactly the
//! ClusterRole the integration tests run the operator under.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};

fn read(relative: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(relative),
    )
    .unwrap()
}

#[test]
fn the_helm_chart_grants_exactly_the_tested_cluster_role() {
    let role: ClusterRole = serde_yaml::from_str(&read("config/rbac/cluster_role.yaml")).unwrap();
    let chart_rules: Vec<PolicyRule> =
        serde_yaml::from_str(&read("charts/dfr-operator/files/cluster-role-rules.yaml")).unwrap();
    assert_eq!(
        role.rules.unwrap(),
        chart_rules,
        "regenerate charts/dfr-operator/files from config/rbac"
    );
}

#[test]
fn the_cluster_role_never_grants_wildcards_or_escalation() {
    let role: ClusterRole = serde_yaml::from_str(&read("config/rbac/cluster_role.yaml")).unwrap();
    for rule in role.rules.unwrap() {
        for verb in &rule.verbs {
            assert!(
                !["*", "escalate", "bind", "impersonate"].contains(&verb.as_str()),
                "{rule:?}"
            );
        }
        for resource in rule.resources.clone().unwrap_or_default() {
            assert_ne!(resource, "*", "{rule:?}");
        }
    }
}

#[test]
fn the_kustomize_deployment_runs_the_controller_with_leader_election() {
    let deployment: Deployment =
        serde_yaml::from_str(&read("config/operator/deployment.yaml")).unwrap();
    let spec = deployment.spec.unwrap();
    assert!(spec.replicas.unwrap() >= 2, "a standby replica is expected");
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("dfr-operator"));
    let container = &pod.containers[0];
    assert_eq!(container.args.as_deref(), Some(&["run".to_string()][..]));
    let env: Vec<&str> = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert!(
        env.contains(&"POD_NAMESPACE") && env.contains(&"POD_NAME"),
        "{env:?}"
    );
}
