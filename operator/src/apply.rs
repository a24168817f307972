//! Makes the cluster match the desired objects: server-side apply with one field manager, only
//! where the live object differs, never over an object another owner made, and removal of
//! children the spec no longer asks for.

use std::collections::BTreeMap;
use std::fmt::Debug;

use dfr_crds::DfrCountry;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::{Cached, Caches};
use crate::diff::first_difference;
use crate::error::{Error, Result};
use crate::{labels, naming};

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

/// Whether the controller owner of `object` is this DfrCountry.
pub fn owned_by<K: Resource>(object: &K, country: &DfrCountry) -> bool {
    let Some(uid) = country.metadata.uid.as_deref() else {
        return false;
    };
    object
        .owner_references()
        .iter()
        .any(|owner| owner.uid == uid && owner.controller == Some(true))
}

/// Left behind by an earlier DfrCountry of the same name with deletionPolicy Retain: the
/// operator may take it back, which is how re-applying a deleted DfrCountry finds its data.
pub fn retained_for<K: Resource>(object: &K, country: &DfrCountry) -> bool {
    let labels = object.labels();
    labels.get(labels::TENANT) == Some(&country.name_any())
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

/// Server-side apply `object` unless `live` already holds every field of it.
pub async fn apply_if_changed<K>(api: &Api<K>, object: &K, live: Option<&K>) -> Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    let name = object.name_any();
    let difference = match live {
        Some(live) => first_difference(&to_json(object, &name)?, &to_json(live, &name)?),
        None => Some(" (absent)".to_string()),
    };
    let Some(difference) = difference else {
        return Ok(false);
    };
    tracing::debug!(object = %describe::<K>(&name), %difference, "applying");
    let params = PatchParams::apply(naming::FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(object))
        .await
        .map_err(Error::kube(format!("applying {}", describe::<K>(&name))))?;
    Ok(true)
}

/// Makes the tenant's objects of kind K in its namespace exactly `desired`, reading what exists
/// from the watch caches.
pub async fn sync_namespaced<K>(
    client: &Client,
    caches: &Caches,
    country: &DfrCountry,
    desired: &[K],
) -> Result<Changes>
where
    K: Cached<Scope = NamespaceResourceScope> + Serialize,
{
    let namespace = naming::namespace(country);
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    let tenant = country.name_any();
    let selector = [
        (labels::MANAGED_BY, labels::OPERATOR_NAME),
        (labels::TENANT, tenant.as_str()),
    ];
    let mut live: BTreeMap<String, K> = caches
        .in_namespace::<K>(&namespace, &selector)
        .into_iter()
        .map(|object| (object.name_any(), object))
        .collect();

    let mut changes = Changes::default();
    for object in desired {
        let name = object.name_any();
        let current = live.remove(&name);
        if current.is_none() {
            refuse_foreign(&api, country, &name).await?;
        }
        if apply_if_changed(&api, object, current.as_ref()).await? {
            changes.applied.push(describe::<K>(&name));
        }
    }
    for (name, leftover) in live {
        // Only what this DfrCountry controls goes; retained data of a predecessor stays.
        if owned_by(&leftover, country) {
            api.delete(&name, &DeleteParams::background())
                .await
                .map_err(Error::kube(format!("deleting {}", describe::<K>(&name))))?;
            changes.deleted.push(describe::<K>(&name));
        }
    }
    Ok(changes)
}

/// An object without the tenant's labels but with the name we need belongs to someone else.
async fn refuse_foreign<K>(api: &Api<K>, country: &DfrCountry, name: &str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let existing = api
        .get_opt(name)
        .await
        .map_err(Error::kube(format!("reading {}", describe::<K>(name))))?;
    match existing {
        Some(object) if !owned_by(&object, country) && !retained_for(&object, country) => {
            Err(Error::ForeignObject {
                kind: K::kind(&()).to_string(),
                namespace: naming::namespace(country),
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

    fn country() -> DfrCountry {
        let spec = serde_yaml::from_str(
            "countryCode: TON\ndisplayName: Tonga\nenvironment: dev\nappVersion: '1.0'\n",
        )
        .unwrap();
        let mut country = DfrCountry::new("ton-dev", spec);
        country.metadata.uid = Some("uid-1".into());
        country
    }

    #[test]
    fn ownership_is_by_controller_owner_uid() {
        let mut object = ConfigMap::default();
        assert!(!owned_by(&object, &country()));
        object.metadata.owner_references = Some(vec![OwnerReference {
            uid: "uid-1".into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
        assert!(owned_by(&object, &country()));
        object.metadata.owner_references.as_mut().unwrap()[0].uid = "other".into();
        assert!(!owned_by(&object, &country()));
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
        assert!(!retained_for(&object, &country()));
        tenant_labels.insert(labels::RETAINED.into(), "true".into());
        object.metadata.labels = Some(tenant_labels.clone());
        assert!(retained_for(&object, &country()));
        tenant_labels.insert(labels::TENANT.into(), "wsm-dev".into());
        object.metadata.labels = Some(tenant_labels);
        assert!(!retained_for(&object, &country()));
    }
}
