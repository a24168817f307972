//! Makes the cluster match the desired objects: server-side apply with one field manager, only
//! where the live object differs, never over an object another owner made, and removal of
//! children the spec no longer asks for.
//!
//! Drift is seen two ways. Each applied object carries the hash of its desired form
//! ([`DESIRED_HASH`]); a different hash means the builder's output changed, and re-applying under
//! the one field manager makes the API server drop any field the builder no longer sets. A live
//! object that lacks a desired field, or holds another value, is re-applied too (someone edited
//! it). When both agree nothing is written.

use std::collections::BTreeMap;
use std::fmt::Debug;

use futures::future::{BoxFuture, try_join_all};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::cache::{Cached, Caches};
use crate::children::Desired;
use crate::children::kinds::{Stage, for_each_child_kind};
use crate::diff::first_difference;
use crate::error::{Error, Result};
use crate::tenant::Tenant;
use crate::{labels, naming};

/// The annotation holding the hash of the form an object was last applied in.
pub const DESIRED_HASH: &str = "dfr.io/desired-hash";

/// What one sync changed, for Events, logs and the writes metric.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub applied: Vec<String>,
    pub deleted: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.deleted.is_empty()
    }

    pub fn extend(&mut self, other: Changes) {
        self.applied.extend(other.applied);
        self.deleted.extend(other.deleted);
    }
}

/// Whether the controller owner of `object` is the DfrCountry with this uid.
pub fn owned_by<K: Resource>(object: &K, owner_uid: &str) -> bool {
    object
        .owner_references()
        .iter()
        .any(|owner| owner.uid == owner_uid && owner.controller == Some(true))
}

/// Left behind by an earlier DfrCountry of the same name with deletionPolicy Retain: the
/// operator may take it back, which is how re-applying a deleted DfrCountry finds its data.
pub fn retained_for<K: Resource>(object: &K, tenant_name: &str) -> bool {
    let labels = object.labels();
    labels.get(labels::TENANT).map(String::as_str) == Some(tenant_name)
        && labels.get(labels::MANAGED_BY).map(String::as_str) == Some(labels::OPERATOR_NAME)
        && labels.get(labels::RETAINED).map(String::as_str) == Some("true")
}

fn describe<K: Resource<DynamicType = ()>>(name: &str) -> String {
    format!("{}/{}", K::kind(&()), name)
}

fn to_json<K: Serialize>(object: &K, name: &str) -> Result<serde_json::Value> {
    serde_json::to_value(object).map_err(|source| Error::Serialization {
        what: name.to_string(),
        source,
    })
}

/// `object` with its [`DESIRED_HASH`] annotation: a hash of everything else in it.
pub fn stamped<K>(object: &K) -> Result<K>
where
    K: Resource + Serialize + Clone,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let bytes =
        serde_json::to_vec(object).map_err(|source| Error::Serialization { what: name, source })?;
    let digest = Sha256::digest(&bytes);
    let hash: String = digest[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let mut object = object.clone();
    object
        .meta_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .insert(DESIRED_HASH.to_string(), hash);
    Ok(object)
}

/// Why `live` needs `desired` applied, or None when it already holds it.
fn drift<K>(desired: &K, live: Option<&K>, name: &str) -> Result<Option<String>>
where
    K: Resource + Serialize,
{
    let Some(live) = live else {
        return Ok(Some("absent".to_string()));
    };
    let hash = |object: &K| {
        object
            .meta()
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(DESIRED_HASH).cloned())
    };
    if hash(desired) != hash(live) {
        return Ok(Some("the desired form changed".to_string()));
    }
    Ok(first_difference(
        &to_json(desired, name)?,
        &to_json(live, name)?,
    ))
}

/// Server-side apply `object` unless `live` already holds it (see the module documentation).
pub async fn apply_if_changed<K>(api: &Api<K>, object: &K, live: Option<&K>) -> Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    let name = object.name_any();
    let object = stamped(object)?;
    let Some(difference) = drift(&object, live, &name)? else {
        return Ok(false);
    };
    tracing::debug!(object = %describe::<K>(&name), %difference, "applying");
    let params = PatchParams::apply(naming::FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(&object))
        .await
        .map_err(Error::kube(format!("applying {}", describe::<K>(&name))))?;
    Ok(true)
}

/// Applies a child of a kind without a watch cache (one the cluster may not serve, see
/// [`crate::discovery`]): reads the live object, refuses one another owner made, applies only on
/// a difference. Returns whether it wrote, and the live object as read before (its status, for
/// the caller).
pub async fn apply_uncached<K>(
    client: &Client,
    tenant: &Tenant,
    object: &K,
) -> Result<(bool, Option<K>)>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &tenant.namespace);
    let name = object.name_any();
    let live = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("reading {}", describe::<K>(&name))))?;
    if let Some(live) = &live
        && !owned_by(live, &tenant.owner.uid)
        && !retained_for(live, &tenant.name)
    {
        return Err(Error::ForeignObject {
            kind: K::kind(&()).to_string(),
            namespace: tenant.namespace.clone(),
            name,
        });
    }
    let applied = apply_if_changed(&api, object, live.as_ref()).await?;
    Ok((applied, live))
}

/// Makes the tenant's objects of kind K in its namespace exactly `desired`, reading what exists
/// from the watch caches. The objects are independent of each other, so they are applied at once.
pub async fn sync_namespaced<K>(
    client: &Client,
    caches: &Caches,
    tenant: &Tenant,
    desired: &[K],
) -> Result<Changes>
where
    K: Cached<Scope = NamespaceResourceScope> + Serialize,
{
    let api: Api<K> = Api::namespaced(client.clone(), &tenant.namespace);
    let selector = [
        (labels::MANAGED_BY, labels::OPERATOR_NAME),
        (labels::TENANT, tenant.name.as_str()),
    ];
    let mut live: BTreeMap<String, K> = caches
        .in_namespace::<K>(&tenant.namespace, &selector)
        .into_iter()
        .map(|object| (object.name_any(), object))
        .collect();

    let applies = desired.iter().map(|object| {
        let name = object.name_any();
        let current = live.remove(&name);
        let api = &api;
        async move {
            if current.is_none() {
                refuse_foreign(api, tenant, &name).await?;
            }
            let applied = apply_if_changed(api, object, current.as_ref()).await?;
            Ok::<_, Error>(applied.then(|| describe::<K>(&name)))
        }
    });
    let applied = try_join_all(applies).await?;
    let mut changes = Changes {
        applied: applied.into_iter().flatten().collect(),
        deleted: Vec::new(),
    };
    for (name, leftover) in live {
        // Only what this DfrCountry controls goes; retained data of a predecessor stays.
        if owned_by(&leftover, &tenant.owner.uid) {
            api.delete(&name, &DeleteParams::background())
                .await
                .map_err(Error::kube(format!("deleting {}", describe::<K>(&name))))?;
            changes.deleted.push(describe::<K>(&name));
        }
    }
    Ok(changes)
}

macro_rules! define_sync_stage {
    ($($field:ident: $kind:ty => $stage:ident, $build:path;)*) => {
        /// Applies every kind of one stage at once, and removes what the spec no longer asks for.
        pub async fn sync_stage(
            stage: Stage,
            client: &Client,
            caches: &Caches,
            tenant: &Tenant,
            desired: &Desired,
        ) -> Result<Changes> {
            let mut syncs: Vec<BoxFuture<'_, Result<Changes>>> = Vec::new();
            $(if stage == Stage::$stage {
                syncs.push(Box::pin(sync_namespaced(client, caches, tenant, &desired.$field)));
            })*
            let mut changes = Changes::default();
            for done in try_join_all(syncs).await? {
                changes.extend(done);
            }
            Ok(changes)
        }
    };
}
for_each_child_kind!(define_sync_stage);

/// An object without the tenant's labels but with the name we need belongs to someone else.
async fn refuse_foreign<K>(api: &Api<K>, tenant: &Tenant, name: &str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let existing = api
        .get_opt(name)
        .await
        .map_err(Error::kube(format!("reading {}", describe::<K>(name))))?;
    match existing {
        Some(object)
            if !owned_by(&object, &tenant.owner.uid) && !retained_for(&object, &tenant.name) =>
        {
            Err(Error::ForeignObject {
                kind: K::kind(&()).to_string(),
                namespace: tenant.namespace.clone(),
                name: name.to_string(),
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    #[test]
    fn ownership_is_by_controller_owner_uid() {
        let mut object = ConfigMap::default();
        assert!(!owned_by(&object, "uid-1"));
        object.metadata.owner_references = Some(vec![OwnerReference {
            uid: "uid-1".into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
        assert!(owned_by(&object, "uid-1"));
        object.metadata.owner_references.as_mut().unwrap()[0].uid = "other".into();
        assert!(!owned_by(&object, "uid-1"));
    }

    #[test]
    fn only_objects_retained_for_this_tenant_may_be_taken_back() {
        let mut object = ConfigMap::default();
        let mut tenant_labels = BTreeMap::from([
            (labels::TENANT.to_string(), "ton-dev".to_string()),
            (
                labels::MANAGED_BY.to_string(),
                labels::OPERATOR_NAME.to_string(),
            ),
        ]);
        object.metadata.labels = Some(tenant_labels.clone());
        assert!(!retained_for(&object, "ton-dev"));
        tenant_labels.insert(labels::RETAINED.into(), "true".into());
        object.metadata.labels = Some(tenant_labels.clone());
        assert!(retained_for(&object, "ton-dev"));
        tenant_labels.insert(labels::TENANT.into(), "wsm-dev".into());
        object.metadata.labels = Some(tenant_labels);
        assert!(!retained_for(&object, "ton-dev"));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod drift_tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn config_map(labels: &[(&str, &str)]) -> ConfigMap {
        let mut object = ConfigMap::default();
        object.metadata.name = Some("cm".into());
        object.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        object
    }

    #[test]
    fn the_hash_is_stable_and_follows_the_desired_form() {
        let a = stamped(&config_map(&[("a", "1")])).unwrap();
        let again = stamped(&config_map(&[("a", "1")])).unwrap();
        let b = stamped(&config_map(&[("a", "1"), ("b", "2")])).unwrap();
        let hash = |o: &ConfigMap| o.metadata.annotations.as_ref().unwrap()[DESIRED_HASH].clone();
        assert_eq!(hash(&a), hash(&again));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a).len(), 32);
    }

    #[test]
    fn a_field_dropped_from_the_builder_is_drift_although_live_is_a_superset() {
        // Live was applied with two labels; the builder now sets one.
        let live = stamped(&config_map(&[("a", "1"), ("b", "2")])).unwrap();
        let desired = stamped(&config_map(&[("a", "1")])).unwrap();
        assert!(drift(&desired, Some(&live), "cm").unwrap().is_some());
        // The same form on both sides is no drift.
        assert!(drift(&live, Some(&live.clone()), "cm").unwrap().is_none());
    }

    #[test]
    fn an_edited_live_object_is_drift_even_with_the_same_hash() {
        let desired = stamped(&config_map(&[("a", "1")])).unwrap();
        let mut live = desired.clone();
        live.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("a".into(), "edited".into());
        assert!(drift(&desired, Some(&live), "cm").unwrap().is_some());
        assert!(drift(&desired, None, "cm").unwrap().is_some());
    }
}
