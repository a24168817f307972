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

/// The Helm template cannot be rendered here without Helm, so the test holds every fact of the
/// kustomize Deployment against the chart's text and values: a change to one that is not made
/// to the other fails.
#[test]
fn the_helm_chart_runs_the_operator_as_the_kustomize_deployment_does() {
    let deployment: Deployment =
        serde_yaml::from_str(&read("config/operator/deployment.yaml")).unwrap();
    let chart = read("charts/dfr-operator/templates/deployment.yaml");
    let values: serde_yaml::Value =
        serde_yaml::from_str(&read("charts/dfr-operator/values.yaml")).unwrap();
    let spec = deployment.spec.unwrap();
    let template = spec.template;
    let pod = template.spec.unwrap();
    let container = &pod.containers[0];
    let security = pod.security_context.unwrap();
    let container_security = container.security_context.clone().unwrap();

    let mut facts = vec![
        format!("args: [{}]", container.args.clone().unwrap().join(", ")),
        format!("runAsNonRoot: {}", security.run_as_non_root.unwrap()),
        format!("runAsUser: {}", security.run_as_user.unwrap()),
        format!("runAsGroup: {}", security.run_as_group.unwrap()),
        format!(
            "seccompProfile: {{type: {}}}",
            security.seccomp_profile.unwrap().type_
        ),
        format!(
            "allowPrivilegeEscalation: {}",
            container_security.allow_privilege_escalation.unwrap()
        ),
        format!(
            "readOnlyRootFilesystem: {}",
            container_security.read_only_root_filesystem.unwrap()
        ),
        format!(
            "capabilities: {{drop: [{}]}}",
            container_security
                .capabilities
                .unwrap()
                .drop
                .unwrap()
                .join(", ")
        ),
    ];
    for env in container.env.as_ref().unwrap() {
        facts.push(format!("name: {}", env.name));
    }
    for port in container.ports.as_ref().unwrap() {
        facts.push(format!(
            "{{name: {}, containerPort: {}}}",
            port.name.as_ref().unwrap(),
            port.container_port
        ));
    }
    for (probe, name) in [
        (&container.liveness_probe, "livenessProbe"),
        (&container.readiness_probe, "readinessProbe"),
    ] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        let port = match &get.port {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => name.clone(),
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port) => {
                port.to_string()
            }
        };
        facts.push(format!(
            "{name}: {{httpGet: {{path: {}, port: {port}}}}}",
            get.path.as_ref().unwrap()
        ));
    }
    for (key, value) in template.metadata.unwrap().annotations.unwrap() {
        let quoted = format!("{key}: {value:?}");
        let plain = format!("{key}: {value}");
        assert!(
            chart.contains(&quoted) || chart.contains(&plain),
            "the chart's pod template lacks the annotation {plain}"
        );
    }
    for fact in facts {
        assert!(
            chart.contains(&fact),
            "charts/dfr-operator/templates/deployment.yaml lacks `{fact}` from config/operator/deployment.yaml"
        );
    }

    assert_eq!(
        values["replicas"].as_i64(),
        spec.replicas.map(i64::from),
        "replicas"
    );
    let resources = serde_yaml::to_value(container.resources.clone().unwrap()).unwrap();
    assert_eq!(values["resources"], resources, "container resources");
    assert_eq!(
        values["image"]["pullPolicy"].as_str(),
        container.image_pull_policy.as_deref(),
        "image pull policy"
    );
}
