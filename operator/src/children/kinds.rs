//! The one list of child kinds, in apply order. It drives the fields of [`super::Desired`], the
//! watch caches, the controller's watches, the staged apply with removal of what the spec no
//! longer asks for, and the RBAC check against config/rbac/cluster_role.yaml. Adding a kind is
//! one builder function and one line here, plus its verbs in that ClusterRole (a test here fails
//! until they are there; `scripts/generate` copies them into the Helm chart).
//!
//! The namespace, the generated Secrets and certificate renewal have rules of their own (adoption
//! of retained data, never overwriting credentials) and stay explicit steps of the reconcile;
//! their permissions are in [`EXPLICIT_GRANTS`].

/// When a kind is applied. Stages run in order; within a stage every object is applied at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Default-deny policies and quotas, right after the namespace and before anything runs.
    Guard,
    /// Accounts and Roles: what the next stage refers to. A RoleBinding cannot be created before
    /// its Role, since the API server checks that the binder holds the Role's permissions.
    Identity,
    /// What workloads need to start: Patroni's RoleBinding, configuration, Services. Runs after
    /// the generated Secrets exist.
    Support,
    /// The workloads and what refers to them.
    Workload,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::Guard,
        Stage::Identity,
        Stage::Support,
        Stage::Workload,
    ];
}

/// Calls `$callback!` with every child kind as `field: Type => Stage, builder;`. The builder is a
/// `fn(&Tenant, &Settings) -> Vec<Type>`.
macro_rules! for_each_child_kind {
    ($callback:ident) => {
        $callback! {
            network_policies: k8s_openapi::api::networking::v1::NetworkPolicy
                => Guard, $crate::children::network_policy::desired_network_policies;
            resource_quotas: k8s_openapi::api::core::v1::ResourceQuota
                => Guard, $crate::children::namespace::desired_resource_quotas;
            limit_ranges: k8s_openapi::api::core::v1::LimitRange
                => Guard, $crate::children::namespace::desired_limit_ranges;
            service_accounts: k8s_openapi::api::core::v1::ServiceAccount
                => Identity, $crate::children::desired_service_accounts;
            roles: k8s_openapi::api::rbac::v1::Role
                => Identity, $crate::children::patroni::desired_roles;
            role_bindings: k8s_openapi::api::rbac::v1::RoleBinding
                => Support, $crate::children::patroni::desired_role_bindings;
            config_maps: k8s_openapi::api::core::v1::ConfigMap
                => Support, $crate::children::desired_config_maps;
            services: k8s_openapi::api::core::v1::Service
                => Support, $crate::children::desired_services;
            stateful_sets: k8s_openapi::api::apps::v1::StatefulSet
                => Workload, $crate::children::patroni::desired_statefulsets;
            deployments: k8s_openapi::api::apps::v1::Deployment
                => Workload, $crate::children::api::desired_deployments;
            pod_disruption_budgets: k8s_openapi::api::policy::v1::PodDisruptionBudget
                => Workload, $crate::children::desired_disruption_budgets;
            horizontal_pod_autoscalers: k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler
                => Workload, $crate::children::api::desired_autoscalers;
            cron_jobs: k8s_openapi::api::batch::v1::CronJob
                => Workload, $crate::children::desired_cron_jobs;
        }
    };
}
pub(crate) use for_each_child_kind;

/// What the operator must be allowed to do with one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
}

/// Read through the watch cache, apply, remove when no longer desired.
pub const CHILD_VERBS: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];

macro_rules! child_grants {
    ($($field:ident: $kind:ty => $stage:ident, $build:path;)*) => {
        /// The permissions every child kind in the table needs.
        pub const CHILD_GRANTS: &[Grant] = &[$(Grant {
            group: <$kind as k8s_openapi::Resource>::GROUP,
            resource: <$kind as k8s_openapi::Resource>::URL_PATH_SEGMENT,
            verbs: CHILD_VERBS,
        },)*];

        /// Each kind's field and stage, in apply order.
        pub const CHILD_STAGES: &[(&str, Stage)] = &[$((stringify!($field), Stage::$stage),)*];
    };
}
for_each_child_kind!(child_grants);

/// The kinds handled by explicit steps, and the custom resource itself.
pub const EXPLICIT_GRANTS: &[Grant] = &[
    Grant {
        group: "dfr.io",
        resource: "dfrcountries",
        verbs: &["get", "list", "watch", "patch", "update"],
    },
    Grant {
        group: "dfr.io",
        resource: "dfrcountries/status",
        verbs: &["get", "patch", "update"],
    },
    Grant {
        group: "",
        resource: "namespaces",
        verbs: CHILD_VERBS,
    },
    // Created once; patched only to renew a certificate or to drop owner references on Retain.
    Grant {
        group: "",
        resource: "secrets",
        verbs: &["get", "list", "watch", "create", "patch"],
    },
    // Patroni's leader label is what the status reports.
    // Read for Patroni's role label; deleted to fence a lost leader (crate::failover).
    Grant {
        group: "",
        resource: "pods",
        verbs: &["get", "list", "watch", "delete"],
    },
    // Marked and released on Retain.
    Grant {
        group: "",
        resource: "persistentvolumeclaims",
        verbs: &["list", "patch"],
    },
    // Backups people ask for: run as Jobs, their status written back.
    Grant {
        group: "dfr.io",
        resource: "dfrbackups",
        verbs: &["get", "list", "watch"],
    },
    Grant {
        group: "dfr.io",
        resource: "dfrbackups/status",
        verbs: &["patch"],
    },
    // Backup runs the operator starts (the first one, GFS expiry); they finish and go by TTL.
    Grant {
        group: "batch",
        resource: "jobs",
        verbs: &["create"],
    },
    // The Prometheus Operator's kinds, where installed (crate::monitoring): no watch, since a
    // watch on a kind the cluster lacks fails; read, created and patched by name.
    Grant {
        group: "monitoring.coreos.com",
        resource: "podmonitors",
        verbs: &["get", "create", "patch"],
    },
    Grant {
        group: "monitoring.coreos.com",
        resource: "prometheusrules",
        verbs: &["get", "create", "patch"],
    },
    // cert-manager's Certificates, for tenants with spec.tls.issuerRef (crate::certificates):
    // no watch, for the same reason; read by name for their status, applied, deleted when
    // issuerRef is removed.
    Grant {
        group: "cert-manager.io",
        resource: "certificates",
        verbs: &["get", "create", "patch", "delete"],
    },
    Grant {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
    },
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};

    fn cluster_role() -> ClusterRole {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/rbac/cluster_role.yaml");
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// Every `group/resource verb` a grant asks for that no rule of `rules` allows.
    fn missing(rules: &[PolicyRule], grants: &[Grant]) -> Vec<String> {
        let allows = |grant: &Grant, verb: &str| {
            rules.iter().any(|rule| {
                rule.api_groups
                    .iter()
                    .flatten()
                    .any(|group| group == grant.group)
                    && rule
                        .resources
                        .iter()
                        .flatten()
                        .any(|resource| resource == grant.resource)
                    && rule.verbs.iter().any(|v| v == verb)
            })
        };
        grants
            .iter()
            .flat_map(|grant| {
                grant
                    .verbs
                    .iter()
                    .filter(move |verb| !allows(grant, verb))
                    .map(move |verb| format!("{}/{} {verb}", grant.group, grant.resource))
            })
            .collect()
    }

    #[test]
    fn the_cluster_role_grants_every_kind_in_the_table() {
        let rules = cluster_role().rules.unwrap();
        let needed: Vec<Grant> = CHILD_GRANTS
            .iter()
            .chain(EXPLICIT_GRANTS)
            .copied()
            .collect();
        assert_eq!(
            missing(&rules, &needed),
            Vec::<String>::new(),
            "config/rbac/cluster_role.yaml lacks these; add them and run scripts/generate"
        );
    }

    #[test]
    fn a_kind_missing_from_the_cluster_role_is_named() {
        let rules = cluster_role().rules.unwrap();
        let new_kind = Grant {
            group: "batch",
            resource: "replicasets-of-the-future",
            verbs: CHILD_VERBS,
        };
        let gaps = missing(&rules, &[new_kind]);
        assert_eq!(gaps.len(), CHILD_VERBS.len(), "{gaps:?}");
        assert!(
            gaps.contains(&"batch/replicasets-of-the-future create".to_string()),
            "{gaps:?}"
        );

        // Taking `delete` away from the rule that covers StatefulSets is noticed too.
        let narrowed: Vec<PolicyRule> = rules
            .into_iter()
            .map(|mut rule| {
                if rule.resources.iter().flatten().any(|r| r == "statefulsets") {
                    rule.verbs.retain(|verb| verb != "delete");
                }
                rule
            })
            .collect();
        assert!(missing(&narrowed, CHILD_GRANTS).contains(&"apps/statefulsets delete".to_string()));
    }

    #[test]
    fn stages_are_in_apply_order() {
        let stages: Vec<Stage> = CHILD_STAGES.iter().map(|(_, stage)| *stage).collect();
        let mut sorted = stages.clone();
        sorted.sort();
        assert_eq!(
            stages, sorted,
            "list the kinds in the order they are applied"
        );
        assert_eq!(CHILD_STAGES[0], ("network_policies", Stage::Guard));
        let stage_of = |field: &str| CHILD_STAGES.iter().find(|(f, _)| *f == field).unwrap().1;
        assert!(stage_of("roles") < stage_of("role_bindings"));
    }

    #[test]
    fn the_cluster_role_grants_nothing_the_operator_does_not_use() {
        let needed: Vec<Grant> = CHILD_GRANTS
            .iter()
            .chain(EXPLICIT_GRANTS)
            .copied()
            .collect();
        for rule in cluster_role().rules.unwrap() {
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    for verb in &rule.verbs {
                        let used = needed.iter().any(|grant| {
                            grant.group == group
                                && grant.resource == resource
                                && grant.verbs.contains(&verb.as_str())
                        }) || granted_for_patroni_or_discovery(group, resource, verb);
                        assert!(used, "{group}/{resource} {verb} is granted but not used");
                    }
                }
            }
        }
    }

    /// Permissions held only so they can be granted on (Patroni's Role: RBAC lets the operator
    /// grant only what it holds) or for discovery of the API server's addresses.
    fn granted_for_patroni_or_discovery(group: &str, resource: &str, verb: &str) -> bool {
        matches!(
            (group, resource, verb),
            ("", "configmaps", "update") | ("", "pods", "patch")
        ) || (group == "discovery.k8s.io" && resource == "endpointslices" && verb == "list")
    }
}
