//! The Patroni-managed PostgreSQL cluster: its RBAC for the Kubernetes DCS, its configuration,
//! the StatefulSet, the Services and the PodDisruptionBudget.

mod bootstrap;
mod config;
mod rbac;
mod services;
mod statefulset;

pub use bootstrap::{
    MONITOR_ROLE_SCRIPT, MONITOR_ROLE_SCRIPT_KEY, POST_BOOTSTRAP_SCRIPT, SCRIPT_KEY,
};
pub use config::{
    DATA_DIR, LOOP_WAIT_SECONDS, PATRONI_CONFIG_KEY, SOCKET_DIR, TLS_DIR, desired_config_map,
    patroni_config,
};
pub use rbac::{desired_role, desired_role_binding, desired_service_account};
pub use services::{desired_headless_service, desired_ro_service, desired_rw_service};
pub use statefulset::{EXPORTER_RESOURCES, POSTGRES_UID, desired_pdb, desired_statefulset};

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

use crate::labels;
use crate::settings::Settings;
use crate::tenant::Tenant;

/// Component label value of everything that belongs to the database.
pub const COMPONENT: &str = "database";

pub fn metadata_labels(tenant: &Tenant) -> BTreeMap<String, String> {
    labels::component(tenant, labels::APP_POSTGRES, COMPONENT)
}

/// The labels Patroni uses to find its cluster's pods (and writes on its own ConfigMaps).
pub fn selector(tenant: &Tenant) -> BTreeMap<String, String> {
    labels::selector(tenant, labels::APP_POSTGRES)
}

pub fn desired_roles(tenant: &Tenant, _settings: &Settings) -> Vec<Role> {
    vec![desired_role(tenant)]
}

pub fn desired_role_bindings(tenant: &Tenant, _settings: &Settings) -> Vec<RoleBinding> {
    vec![desired_role_binding(tenant)]
}

pub fn desired_config_maps(tenant: &Tenant, settings: &Settings) -> Vec<ConfigMap> {
    let mut maps = vec![desired_config_map(tenant, settings)];
    maps.extend(crate::children::backup::desired_config_map(
        tenant, settings,
    ));
    maps
}

pub fn desired_statefulsets(tenant: &Tenant, settings: &Settings) -> Vec<StatefulSet> {
    std::iter::once(desired_statefulset(tenant, settings))
        .chain(crate::children::backup::repository_host::desired_statefulset(tenant, settings))
        .collect()
}
