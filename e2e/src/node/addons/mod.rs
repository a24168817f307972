//! What every cluster needs beyond its nodes: a default StorageClass with local volumes (there is
//! no cloud to provision disks) and CoreDNS as the cluster DNS, applied server-side as
//! `dfr-cluster`; and the check that DNS answers. The monitoring pipeline (`monitoring`) needs
//! DNS and the Prometheus Operator's binaries: `dfr-cluster up --node` installs it after these.

pub mod coredns;
pub mod dns_check;
pub mod monitoring;
pub mod monitoring_kinds;
pub mod monitoring_operator;
pub mod storage;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};

use super::config::NodeLayout;
use crate::host::{Error, Result};

/// The field manager of everything dfr-cluster applies to a cluster.
pub const FIELD_MANAGER: &str = "dfr-cluster";

pub fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), name.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            FIELD_MANAGER.to_string(),
        ),
    ])
}

pub fn meta(name: &str, namespace: Option<&str>, app: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(labels(app)),
        ..ObjectMeta::default()
    }
}

/// Server-side apply under [`FIELD_MANAGER`], forced: these objects are dfr-cluster's alone.
pub async fn apply<K>(api: kube::Api<K>, object: &K) -> Result<K>
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
    .map_err(|e| Error::Io {
        what: format!("applying {} {name}", K::kind(&())),
        source: std::io::Error::other(e),
    })
}

/// The storage first, then the cluster DNS.
pub async fn install(client: &kube::Client, layout: &NodeLayout) -> Result<()> {
    storage::install(client, layout).await?;
    coredns::install(client).await
}
