//! The labels every object the operator creates carries, following the Kubernetes recommended
//! `app.kubernetes.io/*` set plus the tenant's identity.

use std::collections::BTreeMap;

use crate::tenant::Tenant;

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const PART_OF: &str = "app.kubernetes.io/part-of";
pub const VERSION: &str = "app.kubernetes.io/version";
pub const COUNTRY: &str = "dfr.io/country";
pub const ENVIRONMENT: &str = "dfr.io/environment";
/// The DfrCountry an object belongs to; the operator lists its children by this label.
pub const TENANT: &str = "dfr.io/tenant";
/// Set on what a deleted DfrCountry with deletionPolicy Retain left behind.
pub const RETAINED: &str = "dfr.io/retained";

pub const OPERATOR_NAME: &str = "dfr-operator";
pub const PART_OF_VALUE: &str = "dfr";

/// Patroni marks its pods with this label; Services select the leader and replicas by it.
pub const PATRONI_ROLE: &str = "role";
/// Patroni finds its members by its `labels` plus this label carrying the scope (its default,
/// `cluster-name`, is not one of ours); pods without it are invisible to the cluster, and a
/// replica cannot find the leader to clone from.
pub const PATRONI_SCOPE: &str = "dfr.io/patroni-scope";
/// Patroni 4 labels the leader `primary` (3.x wrote `master`).
pub const PATRONI_ROLE_PRIMARY: &str = "primary";
pub const PATRONI_ROLE_REPLICA: &str = "replica";

/// Application names (the `app.kubernetes.io/name` values).
pub const APP_POSTGRES: &str = "postgres";
pub const APP_API: &str = "dfr-api";

/// Labels identifying the tenant, on every object.
pub fn tenant(tenant: &Tenant) -> BTreeMap<String, String> {
    let mut labels = dfr_crds::tenant_labels(&tenant.spec);
    labels.insert(TENANT.into(), tenant.name.clone());
    labels.insert(MANAGED_BY.into(), OPERATOR_NAME.into());
    labels.insert(PART_OF.into(), PART_OF_VALUE.into());
    labels
}

/// Labels of one application component of a tenant (`name` e.g. postgres, `component` e.g. database).
pub fn component(tenant: &Tenant, name: &str, component: &str) -> BTreeMap<String, String> {
    let mut labels = self::tenant(tenant);
    labels.insert(NAME.into(), name.into());
    labels.insert(INSTANCE.into(), tenant.name.clone());
    labels.insert(COMPONENT.into(), component.into());
    labels
}

/// The stable subset used in selectors (selectors of Deployments and StatefulSets are immutable,
/// so they must not contain anything that changes, such as the version).
pub fn selector(tenant: &Tenant, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_string(), name.to_string()),
        (INSTANCE.to_string(), tenant.name.clone()),
    ])
}

/// The label selector string that finds every child of the tenant named `tenant_name`.
pub fn children_selector(tenant_name: &str) -> String {
    format!("{MANAGED_BY}={OPERATOR_NAME},{TENANT}={tenant_name}")
}
