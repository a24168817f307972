//! CoreDNS as the cluster DNS: its RBAC, Corefile, Deployment and the `kube-dns` Service at the
//! address the kubelet hands pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, Sysctl, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{apply, labels, meta};
use crate::host::Result;
use crate::node::config::{CLUSTER_DNS, HOST_IP};
use crate::node::s3;

pub const COREDNS_IMAGE: &str = "dfr-coredns:1.13.2";
const DNS_NAMESPACE: &str = "kube-system";
/// Port 53 in the pod as well as on the Service, as in any cluster: NetworkPolicies see the
/// pod's port after the Service's DNAT, and a tenant's DNS policy allows 53.
const DNS_PORT: i32 = 53;
/// The label tenants' DNS policies select CoreDNS by (kubeadm's and kind's, among others).
const DNS_POD_LABEL: (&str, &str) = ("k8s-app", "kube-dns");

/// `hosts` answers the S3 server's name (it runs on the machine, not in a pod, so no Service
/// names it); it reads /dev/null rather than its default /etc/hosts, which is the pod's own.
pub fn corefile() -> String {
    let s3_host = format!("{HOST_IP} {}", s3::DNS_NAME);
    format!(
        ".:{DNS_PORT} {{\n    errors\n    health :8080\n    ready :8181\n    hosts /dev/null {{\n        {s3_host}\n        fallthrough\n    }}\n    kubernetes cluster.local in-addr.arpa ip6.arpa {{\n        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n        ttl 30\n    }}\n    cache 30\n    loop\n    reload\n    loadbalance\n}}\n"
    )
}

fn coredns_rbac() -> (ServiceAccount, ClusterRole, ClusterRoleBinding) {
    let rule = |group: &str, resources: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: vec!["list".into(), "watch".into()],
        ..PolicyRule::default()
    };
    (
        ServiceAccount {
            metadata: meta("coredns", Some(DNS_NAMESPACE), "coredns"),
            ..ServiceAccount::default()
        },
        ClusterRole {
            metadata: meta("dfr-cluster:coredns", None, "coredns"),
            rules: Some(vec![
                rule("", &["endpoints", "services", "pods", "namespaces"]),
                rule("discovery.k8s.io", &["endpointslices"]),
            ]),
            ..ClusterRole::default()
        },
        ClusterRoleBinding {
            metadata: meta("dfr-cluster:coredns", None, "coredns"),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: "dfr-cluster:coredns".into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: "coredns".into(),
                namespace: Some(DNS_NAMESPACE.into()),
                ..Subject::default()
            }]),
        },
    )
}

fn coredns_deployment() -> Deployment {
    let selector = BTreeMap::from([("app.kubernetes.io/name".to_string(), "coredns".to_string())]);
    let port = |name: &str, number: i32, protocol: &str| ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some(protocol.into()),
        ..ContainerPort::default()
    };
    let http_probe = |path: &str, port: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(2),
        ..Probe::default()
    };
    Deployment {
        metadata: meta("coredns", Some(DNS_NAMESPACE), "coredns"),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some({
                        let mut pod_labels = labels("coredns");
                        pod_labels.insert(DNS_POD_LABEL.0.into(), DNS_POD_LABEL.1.into());
                        pod_labels
                    }),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some("coredns".into()),
                    // CoreDNS must not resolve through itself.
                    dns_policy: Some("Default".into()),
                    priority_class_name: Some("system-cluster-critical".into()),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        // A non-root CoreDNS may bind 53 in its own network namespace; a safe
                        // sysctl, which the kubelet allows by default.
                        sysctls: Some(vec![Sysctl {
                            name: "net.ipv4.ip_unprivileged_port_start".into(),
                            value: "0".into(),
                        }]),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![Container {
                        name: "coredns".into(),
                        image: Some(COREDNS_IMAGE.into()),
                        image_pull_policy: Some("Never".into()),
                        args: Some(vec!["-conf".into(), "/etc/coredns/Corefile".into()]),
                        ports: Some(vec![
                            port("dns", DNS_PORT, "UDP"),
                            port("dns-tcp", DNS_PORT, "TCP"),
                            port("health", 8080, "TCP"),
                        ]),
                        readiness_probe: Some(http_probe("/ready", 8181)),
                        liveness_probe: Some(http_probe("/health", 8080)),
                        security_context: Some(SecurityContext {
                            allow_privilege_escalation: Some(false),
                            read_only_root_filesystem: Some(true),
                            capabilities: Some(Capabilities {
                                drop: Some(vec!["ALL".into()]),
                                ..Capabilities::default()
                            }),
                            ..SecurityContext::default()
                        }),
                        volume_mounts: Some(vec![VolumeMount {
                            name: "config".into(),
                            mount_path: "/etc/coredns".into(),
                            read_only: Some(true),
                            ..VolumeMount::default()
                        }]),
                        ..Container::default()
                    }],
                    volumes: Some(vec![Volume {
                        name: "config".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: "coredns".into(),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn dns_service() -> Service {
    let port = |name: &str, protocol: &str| ServicePort {
        name: Some(name.into()),
        port: 53,
        target_port: Some(IntOrString::Int(DNS_PORT)),
        protocol: Some(protocol.into()),
        ..ServicePort::default()
    };
    Service {
        metadata: meta("kube-dns", Some(DNS_NAMESPACE), "coredns"),
        spec: Some(ServiceSpec {
            cluster_ip: Some(CLUSTER_DNS.to_string()),
            selector: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "coredns".to_string(),
            )])),
            ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The RBAC, the Corefile, the Deployment and the Service, in that order.
pub async fn install(client: &kube::Client) -> Result<()> {
    let (account, role, binding) = coredns_rbac();
    apply(
        kube::Api::namespaced(client.clone(), DNS_NAMESPACE),
        &account,
    )
    .await?;
    apply(kube::Api::all(client.clone()), &role).await?;
    apply(kube::Api::all(client.clone()), &binding).await?;
    let config = ConfigMap {
        metadata: meta("coredns", Some(DNS_NAMESPACE), "coredns"),
        data: Some(BTreeMap::from([("Corefile".to_string(), corefile())])),
        ..ConfigMap::default()
    };
    apply(
        kube::Api::namespaced(client.clone(), DNS_NAMESPACE),
        &config,
    )
    .await?;
    apply(
        kube::Api::namespaced(client.clone(), DNS_NAMESPACE),
        &coredns_deployment(),
    )
    .await?;
    apply(
        kube::Api::namespaced(client.clone(), DNS_NAMESPACE),
        &dns_service(),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn coredns_serves_the_cluster_zone_on_port_53_where_dns_policies_expect_it() {
        assert!(corefile().starts_with(".:53 {"));
        let pod = coredns_deployment().spec.unwrap().template;
        assert_eq!(
            pod.metadata.unwrap().labels.unwrap()["k8s-app"],
            "kube-dns",
            "tenant DNS policies select this label"
        );
        let container = &pod.spec.unwrap().containers[0];
        assert!(
            container
                .ports
                .as_ref()
                .unwrap()
                .iter()
                .any(|p| p.container_port == 53)
        );
        assert!(corefile().contains("kubernetes cluster.local in-addr.arpa ip6.arpa"));
        assert!(corefile().contains("        10.234.0.1 s3.dfr.internal\n        fallthrough\n"));
        assert!(
            !corefile().contains("forward"),
            "nothing may leave the machine"
        );
        let service = dns_service().spec.unwrap();
        assert_eq!(service.cluster_ip.as_deref(), Some("10.96.0.10"));
        assert_eq!(service.ports.as_ref().unwrap()[0].port, 53);
    }
}
