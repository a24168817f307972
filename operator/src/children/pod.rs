//! Pieces every pod template of a tenant shares: environment entries, the restricted security
//! contexts, selectors and disruption budgets.

use std::collections::BTreeMap;

use crate::tenant::Tenant;
use k8s_openapi::api::core::v1::{
    Capabilities, EnvVar, EnvVarSource, ObjectFieldSelector, PodSecurityContext, SeccompProfile,
    SecretKeySelector, SecurityContext,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::child_meta;

/// A volume mount; `readOnly` only when true, since the API server drops `readOnly: false` and
/// a builder that wrote it would differ from the live object on every reconcile.
pub fn mount(name: &str, path: &str, read_only: bool) -> k8s_openapi::api::core::v1::VolumeMount {
    k8s_openapi::api::core::v1::VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// An empty directory volume (scratch space on the node).
pub fn empty_dir(name: &str) -> k8s_openapi::api::core::v1::Volume {
    k8s_openapi::api::core::v1::Volume {
        name: name.into(),
        empty_dir: Some(Default::default()),
        ..Default::default()
    }
}

/// The database certificate as volume `tls`: group-readable only (PostgreSQL refuses a key
/// readable by others; the pods' fsGroup gives the group).
pub fn database_tls_volume() -> k8s_openapi::api::core::v1::Volume {
    k8s_openapi::api::core::v1::Volume {
        name: "tls".into(),
        secret: Some(k8s_openapi::api::core::v1::SecretVolumeSource {
            secret_name: Some(crate::naming::SECRET_POSTGRES_TLS.into()),
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A StatefulSet's ReadWriteOnce volume claim template of `size`.
pub fn claim_template(
    name: &str,
    labels: BTreeMap<String, String>,
    size: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    storage_class_name: Option<String>,
) -> k8s_openapi::api::core::v1::PersistentVolumeClaim {
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
    };
    PersistentVolumeClaim {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name,
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), size.clone())])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Claims a StatefulSet keeps when it is deleted or scaled down: data outlives its workload,
/// and deletionPolicy decides its fate with the namespace.
pub fn retained_claims()
-> k8s_openapi::api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy {
    k8s_openapi::api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy {
        when_deleted: Some("Retain".into()),
        when_scaled: Some("Retain".into()),
    }
}

pub fn value_env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

pub fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

pub fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The Pod Security `restricted` level, for a pod running as `uid`.
pub fn restricted_pod(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// The Pod Security `restricted` level for a container, with a read-only root filesystem.
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

pub fn matching(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        ..LabelSelector::default()
    }
}

/// How many pods a voluntary disruption must leave.
pub enum Budget {
    MaxUnavailable(i32),
    MinAvailable(i32),
}

pub fn disruption_budget(
    tenant: &Tenant,
    name: &str,
    labels: BTreeMap<String, String>,
    selector: BTreeMap<String, String>,
    budget: Budget,
) -> PodDisruptionBudget {
    let (max_unavailable, min_available) = match budget {
        Budget::MaxUnavailable(n) => (Some(IntOrString::Int(n)), None),
        Budget::MinAvailable(n) => (None, Some(IntOrString::Int(n))),
    };
    PodDisruptionBudget {
        metadata: child_meta(tenant, name, labels),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable,
            min_available,
            selector: Some(matching(selector)),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
