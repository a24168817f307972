//! What every cluster needs beyond its nodes: a default StorageClass with local volumes (there is
//! no cloud to provision disks) and CoreDNS as the cluster DNS.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction,
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolume, PersistentVolumeSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume,
    VolumeMount, VolumeNodeAffinity,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Patch, PatchParams};

use super::config::{CLUSTER_DNS, NodeLayout};
use crate::controlplane::{Error, Result};

pub const STORAGE_CLASS: &str = "dfr-local";
pub const VOLUME_COUNT: usize = 16;
/// hostPath volumes cannot enforce a size; this is what each one claims to hold.
pub const VOLUME_CAPACITY: &str = "100Gi";
pub const COREDNS_IMAGE: &str = "dfr-coredns:1.13.2";
const FIELD_MANAGER: &str = "dfr-cluster";
const DNS_NAMESPACE: &str = "kube-system";
const DNS_PORT: i32 = 1053;

fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), name.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            FIELD_MANAGER.to_string(),
        ),
    ])
}

fn meta(name: &str, namespace: Option<&str>, app: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(labels(app)),
        ..ObjectMeta::default()
    }
}

/// The default StorageClass: pre-made local volumes, bound when a pod is scheduled, kept when
/// their claim goes (the operator's Retain policy depends on data outliving the claim's owner).
pub fn storage_class() -> StorageClass {
    let mut metadata = meta(STORAGE_CLASS, None, "local-volumes");
    metadata.annotations = Some(BTreeMap::from([(
        "storageclass.kubernetes.io/is-default-class".to_string(),
        "true".to_string(),
    )]));
    StorageClass {
        metadata,
        provisioner: "kubernetes.io/no-provisioner".into(),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        reclaim_policy: Some("Retain".into()),
        ..StorageClass::default()
    }
}

pub fn volume_name(index: usize) -> String {
    format!("dfr-local-{index:02}")
}

pub fn persistent_volume(layout: &NodeLayout, index: usize) -> PersistentVolume {
    let name = volume_name(index);
    PersistentVolume {
        metadata: meta(&name, None, "local-volumes"),
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([(
                "storage".to_string(),
                Quantity(VOLUME_CAPACITY.into()),
            )])),
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            persistent_volume_reclaim_policy: Some("Retain".into()),
            storage_class_name: Some(STORAGE_CLASS.into()),
            host_path: Some(HostPathVolumeSource {
                path: layout.volumes_dir().join(&name).display().to_string(),
                type_: Some("Directory".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".into(),
                            operator: "In".into(),
                            values: Some(vec![layout.node_name.clone()]),
                        }]),
                        ..NodeSelectorTerm::default()
                    }],
                }),
            }),
            ..PersistentVolumeSpec::default()
        }),
        ..PersistentVolume::default()
    }
}

pub fn corefile() -> String {
    format!(
        ".:{DNS_PORT} {{\n    errors\n    health :8080\n    ready :8181\n    kubernetes cluster.local in-addr.arpa ip6.arpa {{\n        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n        ttl 30\n    }}\n    cache 30\n    loop\n    reload\n    loadbalance\n}}\n"
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
                    labels: Some(labels("coredns")),
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

async fn apply<K>(api: kube::Api<K>, object: &K) -> Result<()>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map(|_| ())
    .map_err(|e| Error::Io {
        what: format!("applying {} {name}", K::kind(&())),
        source: std::io::Error::other(e),
    })
}

pub async fn install(client: &kube::Client, layout: &NodeLayout) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    apply(kube::Api::all(client.clone()), &storage_class()).await?;
    for index in 0..VOLUME_COUNT {
        let dir = layout.volumes_dir().join(volume_name(index));
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        // Any pod's user may own the data it writes; hostPath volumes get no fsGroup.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(Error::io(format!("opening up {}", dir.display())))?;
        apply(
            kube::Api::all(client.clone()),
            &persistent_volume(layout, index),
        )
        .await?;
    }
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
}

/// A DNS query for one A record, as RFC 1035 lays it out.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut packet = Vec::new();
    packet.extend(id.to_be_bytes());
    packet.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // recursion desired, one question
    for label in name.trim_end_matches('.').split('.') {
        packet.push(u8::try_from(label.len()).unwrap_or(63));
        packet.extend(label.as_bytes());
    }
    packet.extend([0, 0, 1, 0, 1]); // root, type A, class IN
    packet
}

/// The IPv4 addresses in the answer section of a reply to `dns_query`.
pub fn dns_answers(reply: &[u8], question_len: usize) -> Vec<Ipv4Addr> {
    let count = reply
        .get(6..8)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .unwrap_or(0);
    let mut at = question_len;
    let mut found = Vec::new();
    for _ in 0..count {
        // The owner name: labels up to the root, or ending in a 2-byte compression pointer.
        loop {
            match reply.get(at) {
                Some(0) => {
                    at += 1;
                    break;
                }
                Some(&length) if length >= 0xc0 => {
                    at += 2;
                    break;
                }
                Some(&length) => at += 1 + usize::from(length),
                None => return found,
            }
        }
        let Some(header) = reply.get(at..at + 10) else {
            break;
        };
        let (kind, length) = (
            u16::from_be_bytes([header[0], header[1]]),
            usize::from(u16::from_be_bytes([header[8], header[9]])),
        );
        if let (1, Some(data)) = (kind, reply.get(at + 10..at + 10 + length))
            && length == 4
        {
            found.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + length;
    }
    found
}

/// Asks the cluster DNS, through its Service address, for the API server's Service.
pub fn resolve(name: &str) -> Option<Vec<Ipv4Addr>> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let query = dns_query(0x0dfa, name);
    socket
        .send_to(&query, SocketAddr::from((CLUSTER_DNS, 53)))
        .ok()?;
    let mut reply = [0u8; 512];
    let (length, _) = socket.recv_from(&mut reply).ok()?;
    Some(dns_answers(&reply[..length], query.len()))
}

pub async fn wait_for_dns(_client: &kube::Client, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let expected = Ipv4Addr::new(10, 96, 0, 1);
    loop {
        let answers =
            tokio::task::spawn_blocking(|| resolve("kubernetes.default.svc.cluster.local"))
                .await
                .ok()
                .flatten();
        if answers.is_some_and(|a| a.contains(&expected)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::NotReady {
                component: "coredns".into(),
                seconds: timeout.as_secs(),
                log: "kubectl -n kube-system logs deploy/coredns".into(),
                tail: String::new(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_local_retained_and_pinned_to_the_node() {
        let layout = NodeLayout {
            node_name: "dfr-n".into(),
            state_dir: "/s".into(),
            run_dir: "/r".into(),
            kubelet_port: 1,
            kubelet_healthz_port: 2,
            proxy_healthz_port: 3,
            proxy_metrics_port: 4,
        };
        let pv = persistent_volume(&layout, 3);
        let spec = pv.spec.unwrap();
        assert_eq!(pv.metadata.name.as_deref(), Some("dfr-local-03"));
        assert_eq!(spec.host_path.unwrap().path, "/s/volumes/dfr-local-03");
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Retain")
        );
        let terms = spec
            .node_affinity
            .unwrap()
            .required
            .unwrap()
            .node_selector_terms;
        assert_eq!(
            terms[0].match_expressions.as_ref().unwrap()[0].values,
            Some(vec!["dfr-n".to_string()])
        );
        let class = storage_class();
        assert_eq!(
            class.volume_binding_mode.as_deref(),
            Some("WaitForFirstConsumer")
        );
    }

    #[test]
    fn coredns_serves_the_cluster_zone_on_an_unprivileged_port_behind_port_53() {
        assert!(corefile().starts_with(".:1053 {"));
        assert!(corefile().contains("kubernetes cluster.local in-addr.arpa ip6.arpa"));
        assert!(
            !corefile().contains("forward"),
            "nothing may leave the machine"
        );
        let service = dns_service().spec.unwrap();
        assert_eq!(service.cluster_ip.as_deref(), Some("10.96.0.10"));
        assert_eq!(service.ports.as_ref().unwrap()[0].port, 53);
    }

    #[test]
    fn a_dns_reply_is_read_back_to_its_addresses() {
        let query = dns_query(7, "kubernetes.default.svc.cluster.local");
        assert_eq!(query.len(), 12 + 38 + 4);
        let mut reply = query.clone();
        reply[2] = 0x81;
        reply[7] = 1; // one answer
        reply.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 96, 0, 1]);
        assert_eq!(
            dns_answers(&reply, query.len()),
            vec![Ipv4Addr::new(10, 96, 0, 1)]
        );
        // CoreDNS spells the owner name out instead of pointing back to the question.
        let mut spelled = query.clone();
        spelled[7] = 1;
        spelled.extend(&query[12..query.len() - 4]);
        spelled.extend([0, 1, 0, 1, 0, 0, 0, 6, 0, 4, 10, 96, 0, 1]);
        assert_eq!(
            dns_answers(&spelled, query.len()),
            vec![Ipv4Addr::new(10, 96, 0, 1)]
        );
    }
}
