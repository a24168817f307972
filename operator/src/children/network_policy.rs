//! Default deny, then one NetworkPolicy per flow the system needs, each named for its flow.

use std::collections::BTreeMap;

use crate::tenant::Tenant;
use dfr_crds::{EgressPort, Protocol};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::child_meta;
use crate::settings::Settings;
use crate::{labels, naming};

fn selecting(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        ..LabelSelector::default()
    }
}

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }
}

fn pods(selector: BTreeMap<String, String>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(selecting(selector)),
        ..NetworkPolicyPeer::default()
    }
}

fn namespaces(selector: &LabelSelector) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(selector.clone()),
        ..NetworkPolicyPeer::default()
    }
}

fn policy(
    tenant: &Tenant,
    name: &str,
    target: LabelSelector,
    ingress: Option<Vec<NetworkPolicyIngressRule>>,
    egress: Option<Vec<NetworkPolicyEgressRule>>,
) -> NetworkPolicy {
    let mut types = Vec::new();
    if ingress.is_some() {
        types.push("Ingress".to_string());
    }
    if egress.is_some() {
        types.push("Egress".to_string());
    }
    NetworkPolicy {
        metadata: child_meta(
            tenant,
            name,
            labels::component(tenant, "network-policy", "network"),
        ),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(target),
            policy_types: Some(types),
            ingress,
            egress,
        }),
    }
}

/// Pods `from` reaching pods `to` on `ports`: default-deny holds both ends, so the flow is an
/// egress policy on the source (`out`) and an ingress policy on the destination (`into`).
fn pod_flow(
    tenant: &Tenant,
    (out, into): (&str, &str),
    from: &BTreeMap<String, String>,
    to: &BTreeMap<String, String>,
    ports: &[i32],
) -> [NetworkPolicy; 2] {
    let ports: Vec<NetworkPolicyPort> = ports.iter().map(|port| tcp(*port)).collect();
    [
        policy(
            tenant,
            out,
            selecting(from.clone()),
            None,
            Some(vec![NetworkPolicyEgressRule {
                to: Some(vec![pods(to.clone())]),
                ports: Some(ports.clone()),
            }]),
        ),
        policy(
            tenant,
            into,
            selecting(to.clone()),
            Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![pods(from.clone())]),
                ports: Some(ports),
            }]),
            None,
        ),
    ]
}

pub fn desired_network_policies(tenant: &Tenant, settings: &Settings) -> Vec<NetworkPolicy> {
    let api = labels::selector(tenant, labels::APP_API);
    let postgres = labels::selector(tenant, labels::APP_POSTGRES);
    let everything = LabelSelector::default();
    let mut policies = vec![
        policy(
            tenant,
            "default-deny",
            everything.clone(),
            Some(vec![]),
            Some(vec![]),
        ),
        policy(
            tenant,
            "allow-dns",
            everything,
            None,
            Some(vec![NetworkPolicyEgressRule {
                to: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(selecting(BTreeMap::from([(
                        "kubernetes.io/metadata.name".to_string(),
                        "kube-system".to_string(),
                    )]))),
                    pod_selector: Some(selecting(BTreeMap::from([(
                        "k8s-app".to_string(),
                        "kube-dns".to_string(),
                    )]))),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: Some(vec![
                    NetworkPolicyPort {
                        port: Some(IntOrString::Int(53)),
                        protocol: Some("UDP".into()),
                        ..NetworkPolicyPort::default()
                    },
                    tcp(53),
                ]),
            }]),
        ),
        policy(
            tenant,
            "postgres-replication",
            selecting(postgres.clone()),
            Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![pods(postgres.clone())]),
                ports: Some(vec![tcp(naming::POSTGRES_PORT), tcp(naming::PATRONI_PORT)]),
            }]),
            Some(vec![NetworkPolicyEgressRule {
                to: Some(vec![pods(postgres.clone())]),
                ports: Some(vec![tcp(naming::POSTGRES_PORT), tcp(naming::PATRONI_PORT)]),
            }]),
        ),
        // The operator's failover guard asks each member's Patroni whether it is alive and in
        // sync (crate::failover).
        policy(
            tenant,
            "postgres-from-operator",
            selecting(postgres.clone()),
            Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(selecting(BTreeMap::from([(
                        "kubernetes.io/metadata.name".to_string(),
                        settings.operator_namespace.clone(),
                    )]))),
                    pod_selector: Some(selecting(BTreeMap::from([(
                        labels::NAME.to_string(),
                        labels::OPERATOR_NAME.to_string(),
                    )]))),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: Some(vec![tcp(naming::PATRONI_PORT)]),
            }]),
            None,
        ),
        policy(
            tenant,
            "patroni-to-kubernetes-api",
            selecting(postgres.clone()),
            None,
            Some(vec![NetworkPolicyEgressRule {
                // Without known addresses, any address on the API ports: Patroni must reach its
                // DCS or the cluster cannot elect a leader.
                to: (!settings.kubernetes_api_cidrs.is_empty()).then(|| {
                    settings
                        .kubernetes_api_cidrs
                        .iter()
                        .map(|cidr| NetworkPolicyPeer {
                            ip_block: Some(IPBlock {
                                cidr: cidr.clone(),
                                except: None,
                            }),
                            ..NetworkPolicyPeer::default()
                        })
                        .collect()
                }),
                ports: Some(
                    settings
                        .kubernetes_api_ports
                        .iter()
                        .map(|port| tcp(*port))
                        .collect(),
                ),
            }]),
        ),
    ];
    // Right after DNS: the flow every tenant has.
    policies.splice(
        2..2,
        pod_flow(
            tenant,
            ("api-to-postgres", "postgres-from-api"),
            &api,
            &postgres,
            &[naming::POSTGRES_PORT],
        ),
    );
    if tenant.spec.data_retention.is_some() {
        policies.extend(pod_flow(
            tenant,
            ("retention-to-postgres", "postgres-from-retention"),
            &crate::children::api::retention::selector(tenant),
            &postgres,
            &[naming::POSTGRES_PORT],
        ));
    }
    if crate::children::backup::has_repository(tenant) {
        policies.extend(backup_policies(tenant, &postgres));
    }
    let network = &tenant.spec.network;
    if let Some(ingress) = &network.ingress_namespace_selector {
        policies.push(policy(
            tenant,
            "api-ingress",
            selecting(api.clone()),
            Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![namespaces(ingress)]),
                ports: Some(vec![tcp(naming::API_PORT)]),
            }]),
            None,
        ));
    }
    if let Some(monitoring) = &network.monitoring_namespace_selector {
        // Patroni's /metrics and the PostgreSQL exporter on the members.
        for (name, target, ports) in [
            ("api-metrics", api.clone(), vec![naming::API_METRICS_PORT]),
            (
                "postgres-metrics",
                postgres,
                vec![naming::PATRONI_PORT, naming::EXPORTER_PORT],
            ),
        ] {
            policies.push(policy(
                tenant,
                name,
                selecting(target),
                Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![namespaces(monitoring)]),
                    ports: Some(ports.into_iter().map(tcp).collect()),
                }]),
                None,
            ));
        }
    }
    for rule in &network.egress {
        policies.push(policy(
            tenant,
            &format!("egress-{}", rule.name),
            selecting(api.clone()),
            None,
            Some(vec![NetworkPolicyEgressRule {
                to: Some(vec![NetworkPolicyPeer {
                    ip_block: Some(IPBlock {
                        cidr: rule.cidr.clone(),
                        except: None,
                    }),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: Some(rule.ports.iter().map(egress_port).collect()),
            }]),
        ));
    }
    policies
}

/// Backup Jobs reach the members' pgBackRest TLS server and Patroni's REST API (to find the
/// synchronous standby); members and Jobs reach the S3 endpoint. An endpoint given as an IP
/// address gets a rule of its own; for a name, the addresses must be in spec.network.egress,
/// whose rules then apply to the members and the Jobs too.
fn backup_policies(tenant: &Tenant, postgres: &BTreeMap<String, String>) -> Vec<NetworkPolicy> {
    use crate::children::backup::{APP_NAME, pgbackrest};
    let jobs = labels::selector(tenant, APP_NAME);
    let mut policies = Vec::from(pod_flow(
        tenant,
        ("backup-to-postgres", "postgres-from-backup"),
        &jobs,
        postgres,
        &[pgbackrest::SERVER_PORT, naming::PATRONI_PORT],
    ));
    if crate::children::backup::is_volume(tenant) {
        // The members archive to and restore from the repository host; the Jobs open its volume
        // on its node and need no network to it.
        let host = crate::children::backup::repository_host::selector(tenant);
        policies.extend(pod_flow(
            tenant,
            ("postgres-to-repository", "repository-from-postgres"),
            postgres,
            &host,
            &[pgbackrest::SERVER_PORT],
        ));
    }
    let endpoint = tenant
        .spec
        .backup
        .as_ref()
        .and_then(|b| b.destination.s3.as_ref())
        .and_then(|s3| pgbackrest::s3_endpoint(&s3.endpoint).ok());
    let Some(endpoint) = endpoint else {
        return policies;
    };
    let peers: Vec<NetworkPolicyPeer> = match endpoint.host.parse::<std::net::IpAddr>() {
        Ok(address) => vec![NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: match address {
                    std::net::IpAddr::V4(_) => format!("{address}/32"),
                    std::net::IpAddr::V6(_) => format!("{address}/128"),
                },
                except: None,
            }),
            ..NetworkPolicyPeer::default()
        }],
        Err(_) => tenant
            .spec
            .network
            .egress
            .iter()
            .map(|rule| NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: rule.cidr.clone(),
                    except: None,
                }),
                ..NetworkPolicyPeer::default()
            })
            .collect(),
    };
    for (name, selector) in [("backup-to-s3", jobs), ("postgres-to-s3", postgres.clone())] {
        policies.push(policy(
            tenant,
            name,
            selecting(selector),
            None,
            Some(vec![NetworkPolicyEgressRule {
                to: Some(peers.clone()),
                ports: Some(vec![tcp(i32::from(endpoint.port.unwrap_or(443)))]),
            }]),
        ));
    }
    policies
}

fn egress_port(port: &EgressPort) -> NetworkPolicyPort {
    let protocol = match port.protocol {
        Protocol::TCP => "TCP",
        Protocol::UDP => "UDP",
    };
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port.port)),
        protocol: Some(protocol.into()),
        ..NetworkPolicyPort::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::tests::sample;

    fn named<'a>(policies: &'a [NetworkPolicy], name: &str) -> &'a NetworkPolicySpec {
        policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .and_then(|p| p.spec.as_ref())
            .unwrap_or_else(|| panic!("no NetworkPolicy {name}"))
    }

    #[test]
    fn everything_is_denied_unless_a_flow_allows_it() {
        let policies = desired_network_policies(&sample("ton-dev.yaml"), &Settings::default());
        let deny = named(&policies, "default-deny");
        assert_eq!(deny.pod_selector, Some(LabelSelector::default()));
        assert_eq!(deny.policy_types.as_deref().unwrap(), ["Ingress", "Egress"]);
        assert_eq!(deny.ingress.as_deref(), Some(&[][..]));
        // ton-dev sets no ingress selector: that flow does not exist; without a monitoring
        // selector, neither do the metrics flows.
        assert!(
            policies
                .iter()
                .all(|p| p.metadata.name.as_deref() != Some("api-ingress"))
        );
        let mut unscraped = sample("ton-dev.yaml");
        unscraped.spec.network.monitoring_namespace_selector = None;
        assert!(
            desired_network_policies(&unscraped, &Settings::default())
                .iter()
                .all(|p| p.metadata.name.as_deref() != Some("api-metrics"))
        );
    }

    #[test]
    fn egress_lists_exactly_the_spec_destinations() {
        let policies = desired_network_policies(&sample("ton-prod.yaml"), &Settings::default());
        let sms = named(&policies, "egress-sms-gateway");
        let rule = &sms.egress.as_ref().unwrap()[0];
        assert_eq!(
            rule.to.as_ref().unwrap()[0].ip_block.as_ref().unwrap().cidr,
            "203.0.113.0/24"
        );
        assert_eq!(
            rule.ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(443))
        );
        let egress: Vec<_> = policies
            .iter()
            .filter(|p| p.metadata.name.as_deref().unwrap().starts_with("egress-"))
            .collect();
        assert_eq!(egress.len(), 2);
        assert!(named(&policies, "api-ingress").ingress.is_some());
        let metrics = named(&policies, "postgres-metrics")
            .ingress
            .clone()
            .unwrap();
        let ports: Vec<IntOrString> = metrics[0]
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.port.clone())
            .collect();
        assert_eq!(
            ports,
            [IntOrString::Int(8008), IntOrString::Int(9187)],
            "Patroni's /metrics and the exporter"
        );
    }

    #[test]
    fn patroni_reaches_only_the_api_server_addresses() {
        let settings = Settings {
            kubernetes_api_cidrs: vec!["10.0.0.1/32".into()],
            ..Settings::default()
        };
        let policies = desired_network_policies(&sample("ton-dev.yaml"), &settings);
        let rule = &named(&policies, "patroni-to-kubernetes-api")
            .egress
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            rule.to.as_ref().unwrap()[0].ip_block.as_ref().unwrap().cidr,
            "10.0.0.1/32"
        );
        let replication = named(&policies, "postgres-replication");
        let ports = replication.ingress.as_ref().unwrap()[0]
            .ports
            .as_ref()
            .unwrap();
        assert_eq!(ports.len(), 2, "5432 and 8008");
    }
}
