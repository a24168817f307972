//! Watch caches of every kind of child. Reconciles read the cluster from here instead of listing
//! it, so an unchanged tenant costs the API server no request at all; only writes and the rare
//! check for a foreign object go to the API server.

use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, Pod, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::labels;

#[derive(Clone)]
pub struct Caches {
    pub namespaces: Store<Namespace>,
    pub resource_quotas: Store<ResourceQuota>,
    pub limit_ranges: Store<LimitRange>,
    pub secrets: Store<Secret>,
    pub service_accounts: Store<ServiceAccount>,
    pub roles: Store<Role>,
    pub role_bindings: Store<RoleBinding>,
    pub config_maps: Store<ConfigMap>,
    pub services: Store<Service>,
    pub stateful_sets: Store<StatefulSet>,
    pub deployments: Store<Deployment>,
    pub pod_disruption_budgets: Store<PodDisruptionBudget>,
    pub horizontal_pod_autoscalers: Store<HorizontalPodAutoscaler>,
    pub network_policies: Store<NetworkPolicy>,
    pub pods: Store<Pod>,
}

/// The kinds with a cache, and where it is.
pub trait Cached:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    fn store(caches: &Caches) -> &Store<Self>;
}

macro_rules! cached {
    ($($kind:ty => $field:ident),* $(,)?) => {$(
        impl Cached for $kind {
            fn store(caches: &Caches) -> &Store<Self> {
                &caches.$field
            }
        }
    )*};
}

cached! {
    Namespace => namespaces, ResourceQuota => resource_quotas, LimitRange => limit_ranges,
    Secret => secrets, ServiceAccount => service_accounts, Role => roles,
    RoleBinding => role_bindings, ConfigMap => config_maps, Service => services,
    StatefulSet => stateful_sets, Deployment => deployments,
    PodDisruptionBudget => pod_disruption_budgets,
    HorizontalPodAutoscaler => horizontal_pod_autoscalers,
    NetworkPolicy => network_policies, Pod => pods,
}

fn spawn<K>(client: &Client, tasks: &mut Vec<JoinHandle<()>>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().labels(&format!(
        "{}={}",
        labels::MANAGED_BY,
        labels::OPERATOR_NAME
    ));
    // managedFields are most of an object's size and no reconcile reads them.
    let objects = watcher(Api::<K>::all(client.clone()), config)
        .modify(|object| object.managed_fields_mut().clear())
        .default_backoff();
    let stream = reflector::reflector(writer, objects);
    tasks.push(tokio::spawn(async move {
        stream
            .for_each(|event| async move {
                if let Err(error) = event {
                    warn!(kind = %K::kind(&()), error = %error, "watch of a child kind failed; retrying");
                }
            })
            .await;
    }));
    reader
}

impl Caches {
    /// Starts one watch per kind; the returned tasks end when aborted.
    pub fn start(client: &Client) -> (Caches, Vec<JoinHandle<()>>) {
        let mut tasks = Vec::new();
        let caches = Caches {
            namespaces: spawn(client, &mut tasks),
            resource_quotas: spawn(client, &mut tasks),
            limit_ranges: spawn(client, &mut tasks),
            secrets: spawn(client, &mut tasks),
            service_accounts: spawn(client, &mut tasks),
            roles: spawn(client, &mut tasks),
            role_bindings: spawn(client, &mut tasks),
            config_maps: spawn(client, &mut tasks),
            services: spawn(client, &mut tasks),
            stateful_sets: spawn(client, &mut tasks),
            deployments: spawn(client, &mut tasks),
            pod_disruption_budgets: spawn(client, &mut tasks),
            horizontal_pod_autoscalers: spawn(client, &mut tasks),
            network_policies: spawn(client, &mut tasks),
            pods: spawn(client, &mut tasks),
        };
        (caches, tasks)
    }

    /// Waits for every cache's first full list, so no reconcile mistakes an unlisted object for
    /// a missing one.
    pub async fn wait_until_ready(&self, timeout: Duration) -> bool {
        let all = async {
            let _ = self.namespaces.wait_until_ready().await;
            let _ = self.resource_quotas.wait_until_ready().await;
            let _ = self.limit_ranges.wait_until_ready().await;
            let _ = self.secrets.wait_until_ready().await;
            let _ = self.service_accounts.wait_until_ready().await;
            let _ = self.roles.wait_until_ready().await;
            let _ = self.role_bindings.wait_until_ready().await;
            let _ = self.config_maps.wait_until_ready().await;
            let _ = self.services.wait_until_ready().await;
            let _ = self.stateful_sets.wait_until_ready().await;
            let _ = self.deployments.wait_until_ready().await;
            let _ = self.pod_disruption_budgets.wait_until_ready().await;
            let _ = self.horizontal_pod_autoscalers.wait_until_ready().await;
            let _ = self.network_policies.wait_until_ready().await;
            let _ = self.pods.wait_until_ready().await;
        };
        tokio::time::timeout(timeout, all).await.is_ok()
    }

    /// The cached objects of kind K in `namespace` carrying every label of `selector`.
    pub fn in_namespace<K: Cached>(&self, namespace: &str, selector: &[(&str, &str)]) -> Vec<K> {
        K::store(self)
            .state()
            .into_iter()
            .filter(|object| object.namespace().as_deref() == Some(namespace))
            .filter(|object| {
                let labels = object.labels();
                selector
                    .iter()
                    .all(|(key, value)| labels.get(*key).map(String::as_str) == Some(*value))
            })
            .map(|object| (*object).clone())
            .collect()
    }

    pub fn get<K: Cached>(&self, namespace: Option<&str>, name: &str) -> Option<K> {
        let mut reference = reflector::ObjectRef::<K>::new(name);
        if let Some(namespace) = namespace {
            reference = reference.within(namespace);
        }
        K::store(self)
            .get(&reference)
            .map(|object| (*object).clone())
    }
}
