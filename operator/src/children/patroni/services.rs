//! Read-write (the leader), read-only (the replicas) and headless Services. Patroni moves its
//! role label at failover, so the read-write Service follows the leader with no operator action.

use std::collections::BTreeMap;

use crate::tenant::Tenant;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{metadata_labels, selector};
use crate::children::child_meta;
use crate::{labels, naming};

fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: number,
        target_port: Some(IntOrString::Int(number)),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

fn by_role(tenant: &Tenant, name: &str, role: &str) -> Service {
    let mut select = selector(tenant);
    select.insert(labels::PATRONI_ROLE.into(), role.into());
    Service {
        metadata: child_meta(tenant, name, metadata_labels(tenant)),
        spec: Some(ServiceSpec {
            selector: Some(select),
            ports: Some(vec![port("postgresql", naming::POSTGRES_PORT)]),
            type_: Some("ClusterIP".into()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub fn desired_rw_service(tenant: &Tenant) -> Service {
    by_role(tenant, naming::POSTGRES_RW, labels::PATRONI_ROLE_PRIMARY)
}

pub fn desired_ro_service(tenant: &Tenant) -> Service {
    by_role(tenant, naming::POSTGRES_RO, labels::PATRONI_ROLE_REPLICA)
}

/// Stable DNS names per member (postgres-0.postgres-headless...), ready or not, so members can
/// find each other while they bootstrap.
pub fn desired_headless_service(tenant: &Tenant) -> Service {
    Service {
        metadata: child_meta(tenant, naming::POSTGRES_HEADLESS, metadata_labels(tenant)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(BTreeMap::from_iter(selector(tenant))),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![
                port("postgresql", naming::POSTGRES_PORT),
                port("patroni", naming::PATRONI_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::tests::sample;

    #[test]
    fn read_write_selects_the_leader_and_read_only_the_replicas() {
        let tenant = sample("ton-prod.yaml");
        let rw = desired_rw_service(&tenant).spec.unwrap().selector.unwrap();
        assert_eq!(rw["role"], "primary");
        assert_eq!(rw[labels::INSTANCE], "ton-prod");
        let ro = desired_ro_service(&tenant).spec.unwrap().selector.unwrap();
        assert_eq!(ro["role"], "replica");
    }

    #[test]
    fn the_headless_service_publishes_members_before_they_are_ready() {
        let spec = desired_headless_service(&sample("ton-prod.yaml"))
            .spec
            .unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert!(!spec.selector.unwrap().contains_key("role"));
        assert_eq!(spec.ports.unwrap().len(), 2);
    }
}
