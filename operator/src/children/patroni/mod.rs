//! The Patroni-managed PostgreSQL cluster: its RBAC for the Kubernetes DCS, its configuration,
//! the StatefulSet, the Services and the PodDisruptionBudget.

mod bootstrap;
mod config;
mod rbac;
mod services;
mod statefulset;

pub use bootstrap::{POST_BOOTSTRAP_SCRIPT, SCRIPT_KEY};
pub use config::{PATRONI_CONFIG_KEY, desired_config_map, patroni_config};
pub use rbac::{desired_role, desired_role_binding, desired_service_account};
pub use services::{desired_headless_service, desired_ro_service, desired_rw_service};
pub use statefulset::{desired_pdb, desired_statefulset};

use std::collections::BTreeMap;

use dfr_crds::DfrCountry;

use crate::labels;

/// Component label value of everything that belongs to the database.
pub const COMPONENT: &str = "database";

pub fn metadata_labels(country: &DfrCountry) -> BTreeMap<String, String> {
    labels::component(country, labels::APP_POSTGRES, COMPONENT)
}

/// The labels Patroni uses to find its cluster's pods (and writes on its own ConfigMaps).
pub fn selector(country: &DfrCountry) -> BTreeMap<String, String> {
    labels::selector(country, labels::APP_POSTGRES)
}
