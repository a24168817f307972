//! The Kubernetes objects that register the metrics APIs with the aggregation layer, with no
//! I/O: their namespace, the RBAC upstream ships (bound to the client certificates' users
//! rather than to ServiceAccounts, since the servers are host processes), the Services that
//! front them and the APIServices.

use std::net::IpAddr;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::{
    APIService, APIServiceSpec, ServiceReference,
};

pub use crate::node::addons::labels;
use crate::node::addons::{FIELD_MANAGER, meta};

use super::{NAMESPACE, Placement};

pub const METRICS_GROUP: &str = "metrics.k8s.io";
pub const CUSTOM_METRICS_GROUP: &str = "custom.metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
const PORT_NAME: &str = "https";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    }
}

const READ: &[&str] = &["get", "list", "watch"];

fn user(name: &str) -> Subject {
    Subject {
        api_group: Some(RBAC_GROUP.into()),
        kind: "User".into(),
        name: name.into(),
        ..Subject::default()
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: RBAC_GROUP.into(),
        kind: kind.into(),
        name: name.into(),
    }
}

/// The RBAC of one aggregated server: delegated authentication and authorization (TokenReviews,
/// SubjectAccessReviews) and reading the requestheader CA from kube-system's
/// `extension-apiserver-authentication` ConfigMap.
fn delegation(app: &str, user_name: &str) -> (ClusterRoleBinding, RoleBinding) {
    (
        ClusterRoleBinding {
            metadata: meta(&format!("{app}:system:auth-delegator"), None, app),
            role_ref: role_ref("ClusterRole", "system:auth-delegator"),
            subjects: Some(vec![user(user_name)]),
        },
        RoleBinding {
            metadata: meta(&format!("{app}-auth-reader"), Some("kube-system"), app),
            role_ref: role_ref("Role", "extension-apiserver-authentication-reader"),
            subjects: Some(vec![user(user_name)]),
        },
    )
}

pub struct Rbac {
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub role_bindings: Vec<RoleBinding>,
}

/// What upstream's manifests grant, to our users: metrics-server reads nodes and pods and the
/// kubelets' /metrics/resource (nodes/metrics); prometheus-adapter reads the objects its series
/// map to. The aggregated reader role lets view/edit/admin read pod and node metrics, as
/// upstream's does; the HPA controller's own bootstrap role already covers both APIs, and the
/// custom-metrics reader binding is upstream's all the same.
pub fn rbac(metrics_server_user: &str, adapter_user: &str) -> Rbac {
    let ms = super::METRICS_SERVER;
    let pa = super::PROMETHEUS_ADAPTER;
    let mut aggregated = meta("system:aggregated-metrics-reader", None, ms);
    if let Some(labels) = aggregated.labels.as_mut() {
        for role in ["view", "edit", "admin"] {
            labels.insert(
                format!("rbac.authorization.k8s.io/aggregate-to-{role}"),
                "true".into(),
            );
        }
    }
    let (ms_delegator, ms_reader) = delegation(ms, metrics_server_user);
    let (pa_delegator, pa_reader) = delegation(pa, adapter_user);
    Rbac {
        cluster_roles: vec![
            ClusterRole {
                metadata: aggregated,
                rules: Some(vec![rule(METRICS_GROUP, &["pods", "nodes"], READ)]),
                ..ClusterRole::default()
            },
            ClusterRole {
                metadata: meta("system:metrics-server", None, ms),
                rules: Some(vec![
                    rule("", &["nodes/metrics"], &["get"]),
                    rule("", &["pods", "nodes"], READ),
                ]),
                ..ClusterRole::default()
            },
            ClusterRole {
                metadata: meta(pa, None, pa),
                rules: Some(vec![rule(
                    "",
                    &["nodes", "namespaces", "pods", "services"],
                    READ,
                )]),
                ..ClusterRole::default()
            },
            ClusterRole {
                metadata: meta("custom-metrics-server-resources", None, pa),
                rules: Some(vec![rule(CUSTOM_METRICS_GROUP, &["*"], READ)]),
                ..ClusterRole::default()
            },
        ],
        cluster_role_bindings: vec![
            ClusterRoleBinding {
                metadata: meta("system:metrics-server", None, ms),
                role_ref: role_ref("ClusterRole", "system:metrics-server"),
                subjects: Some(vec![user(metrics_server_user)]),
            },
            ms_delegator,
            ClusterRoleBinding {
                metadata: meta(pa, None, pa),
                role_ref: role_ref("ClusterRole", pa),
                subjects: Some(vec![user(adapter_user)]),
            },
            pa_delegator,
            ClusterRoleBinding {
                metadata: meta("hpa-controller-custom-metrics", None, pa),
                role_ref: role_ref("ClusterRole", "custom-metrics-server-resources"),
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: "horizontal-pod-autoscaler".into(),
                    namespace: Some("kube-system".into()),
                    ..Subject::default()
                }]),
            },
        ],
        role_bindings: vec![ms_reader, pa_reader],
    }
}

/// The Service in front of one host process, and, when it is routed by endpoints, its
/// EndpointSlice. With a node: selectorless, its one endpoint the host address (what the
/// aggregator connects to with --enable-aggregator-routing). A control plane alone has no such
/// address and EndpointSlices refuse loopback ones: there it is an ExternalName Service for
/// `localhost`, which the aggregator's ClusterIP routing resolves to the name itself.
pub fn service(app: &str, placement: &Placement, port: u16) -> (Service, Option<EndpointSlice>) {
    let port = i32::from(port);
    let service_port = ServicePort {
        name: Some(PORT_NAME.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    };
    if !placement.routed_by_endpoints() {
        let service = Service {
            metadata: meta(app, Some(NAMESPACE), app),
            spec: Some(ServiceSpec {
                type_: Some("ExternalName".into()),
                external_name: Some("localhost".into()),
                ports: Some(vec![service_port]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        return (service, None);
    }
    let service = Service {
        metadata: meta(app, Some(NAMESPACE), app),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            ports: Some(vec![service_port]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let mut slice_meta = meta(app, Some(NAMESPACE), app);
    if let Some(labels) = slice_meta.labels.as_mut() {
        labels.insert("kubernetes.io/service-name".into(), app.into());
        // Keeps the EndpointSlice controller's hands off a slice it did not make.
        labels.insert(
            "endpointslice.kubernetes.io/managed-by".into(),
            format!("{FIELD_MANAGER}.dfr.local"),
        );
    }
    let address_type = match placement.address {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    };
    let slice = EndpointSlice {
        metadata: slice_meta,
        address_type: address_type.into(),
        endpoints: vec![Endpoint {
            addresses: vec![placement.address.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                ..EndpointConditions::default()
            }),
            ..Endpoint::default()
        }],
        ports: Some(vec![EndpointPort {
            name: Some(PORT_NAME.into()),
            port: Some(port),
            protocol: Some("TCP".into()),
            ..EndpointPort::default()
        }]),
    };
    (service, Some(slice))
}

/// `v1beta1.<group>`, served by the Service `app` on `port`, whose serving certificate
/// `ca_bundle` (the cluster CA) issued for `<app>.dfr-monitoring.svc`.
pub fn api_service(group: &str, app: &str, port: u16, ca_bundle: &[u8]) -> APIService {
    APIService {
        metadata: meta(&format!("{VERSION}.{group}"), None, app),
        spec: Some(APIServiceSpec {
            group: Some(group.into()),
            version: Some(VERSION.into()),
            service: Some(ServiceReference {
                name: Some(app.into()),
                namespace: Some(NAMESPACE.into()),
                port: Some(i32::from(port)),
            }),
            ca_bundle: Some(ByteString(ca_bundle.to_vec())),
            insecure_skip_tls_verify: Some(false),
            // Upstream's values for both APIs.
            group_priority_minimum: 100,
            version_priority: 100,
        }),
        ..APIService::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn node() -> Placement {
        Placement {
            address: IpAddr::from(Ipv4Addr::new(10, 234, 0, 1)),
            metrics_server_port: 4443,
            adapter_port: 4444,
        }
    }

    #[test]
    fn a_node_clusters_services_are_selectorless_with_the_host_as_endpoint() {
        let (service, slice) = service("metrics-server", &node(), 4443);
        let spec = service.spec.unwrap();
        assert_eq!(spec.selector, None);
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        let slice = slice.unwrap();
        let labels = slice.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/service-name"], "metrics-server");
        assert_eq!(slice.endpoints[0].addresses, vec!["10.234.0.1"]);
        // The aggregator matches the slice's port to the Service's by name.
        let slice_port = &slice.ports.unwrap()[0];
        let service_port = &spec.ports.unwrap()[0];
        assert_eq!(slice_port.name, service_port.name);
        assert_eq!(slice_port.port, Some(4443));
    }

    #[test]
    fn a_control_plane_alone_names_localhost() {
        let placement = Placement {
            address: IpAddr::from(Ipv4Addr::LOCALHOST),
            ..node()
        };
        let (service, slice) = service("prometheus-adapter", &placement, 4444);
        assert!(slice.is_none());
        let spec = service.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ExternalName"));
        assert_eq!(spec.external_name.as_deref(), Some("localhost"));
    }

    #[test]
    fn api_services_point_at_their_service_and_verify_it() {
        let api = api_service(CUSTOM_METRICS_GROUP, "prometheus-adapter", 4444, b"PEM");
        assert_eq!(
            api.metadata.name.as_deref(),
            Some("v1beta1.custom.metrics.k8s.io")
        );
        let spec = api.spec.unwrap();
        let service = spec.service.unwrap();
        assert_eq!(service.namespace.as_deref(), Some("dfr-monitoring"));
        assert_eq!(service.port, Some(4444));
        assert_eq!(spec.insecure_skip_tls_verify, Some(false));
        assert_eq!(spec.ca_bundle.unwrap().0, b"PEM");
    }

    #[test]
    fn each_server_may_delegate_auth_and_read_the_requestheader_ca() {
        let rbac = rbac("ms-user", "pa-user");
        for user_name in ["ms-user", "pa-user"] {
            let bound_to = |role: &str| {
                rbac.cluster_role_bindings.iter().any(|b| {
                    b.role_ref.name == role
                        && b.subjects.iter().flatten().any(|s| s.name == user_name)
                })
            };
            assert!(bound_to("system:auth-delegator"), "{user_name}");
            assert!(rbac.role_bindings.iter().any(|b| {
                b.metadata.namespace.as_deref() == Some("kube-system")
                    && b.role_ref.name == "extension-apiserver-authentication-reader"
                    && b.subjects.iter().flatten().any(|s| s.name == user_name)
            }));
        }
        let metrics_server = rbac
            .cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some("system:metrics-server"))
            .unwrap();
        assert!(
            metrics_server.rules.iter().flatten().any(|r| r
                .resources
                .iter()
                .flatten()
                .any(|x| x == "nodes/metrics"))
        );
    }
}
