//! What Patroni needs of the Kubernetes API in its own namespace, and nothing more.
//!
//! With `use_endpoints: false` Patroni keeps its leader lock, cluster config, failover and
//! sync-standby state in ConfigMaps named `<scope>-leader`, `-config`, `-failover`, `-sync`
//! (it creates, patches, updates and, on `patronictl remove`, deletes them), and labels its own
//! Pod with its role. It needs no Endpoints and no Services in ConfigMap mode.

use crate::tenant::Tenant;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::metadata_labels;
use crate::children::child_meta;
use crate::naming;

pub fn desired_service_account(tenant: &Tenant) -> ServiceAccount {
    ServiceAccount {
        metadata: child_meta(
            tenant,
            naming::POSTGRES_SERVICE_ACCOUNT,
            metadata_labels(tenant),
        ),
        automount_service_account_token: Some(true),
        ..ServiceAccount::default()
    }
}

fn rule(resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(resources.iter().map(ToString::to_string).collect()),
        verbs: verbs.iter().map(ToString::to_string).collect(),
        ..PolicyRule::default()
    }
}

pub fn desired_role(tenant: &Tenant) -> Role {
    Role {
        metadata: child_meta(tenant, naming::POSTGRES, metadata_labels(tenant)),
        rules: Some(vec![
            rule(
                &["configmaps"],
                &[
                    "get", "list", "watch", "create", "patch", "update", "delete",
                ],
            ),
            rule(&["pods"], &["get", "list", "watch", "patch"]),
        ]),
    }
}

pub fn desired_role_binding(tenant: &Tenant) -> RoleBinding {
    RoleBinding {
        metadata: child_meta(tenant, naming::POSTGRES, metadata_labels(tenant)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: naming::POSTGRES.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: naming::POSTGRES_SERVICE_ACCOUNT.into(),
            namespace: Some(tenant.namespace.clone()),
            ..Subject::default()
        }]),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::tests::sample;

    #[test]
    fn patroni_gets_configmaps_and_its_pods_but_no_endpoints_services_or_secrets() {
        let role = desired_role(&sample("ton-dev.yaml"));
        let rules = role.rules.unwrap();
        let resources: Vec<String> = rules
            .iter()
            .flat_map(|r| r.resources.clone().unwrap())
            .collect();
        assert_eq!(resources, ["configmaps", "pods"]);
        let pods = &rules[1];
        assert!(!pods.verbs.contains(&"delete".to_string()));
        assert!(
            pods.verbs.contains(&"patch".to_string()),
            "Patroni labels its own pod"
        );
    }

    #[test]
    fn the_binding_names_the_patroni_account_in_the_tenant_namespace() {
        let binding = desired_role_binding(&sample("ton-dev.yaml"));
        let subject = &binding.subjects.unwrap()[0];
        assert_eq!(subject.name, "postgres");
        assert_eq!(subject.namespace.as_deref(), Some("dfr-ton-dev"));
    }
}
