//! Wires the reconciler into a kube-runtime Controller that watches DfrCountry objects and every
//! kind of child, so drift in any child brings its DfrCountry back to the reconciler.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use dfr_crds::DfrCountry;
use futures::StreamExt;
use kube::Client;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tracing::{debug, warn};

use crate::cache::{Caches, Subscriptions};
use crate::children::kinds::for_each_child_kind;
use crate::labels;
use crate::metrics::Metrics;
use crate::reconcile::{Context, error_policy, reconcile};
use crate::settings::Settings;

/// Reconciles that may run at once. Each spends most of its time waiting on the API server (a
/// few rounds of concurrent applies), so hundreds of tenants converge at the API server's speed
/// only with many in flight. Each one in flight holds its tenant's desired and live objects
/// (about 240 KiB measured), so a lower value trades convergence time for peak memory.
pub const DEFAULT_CONCURRENCY: u16 = 64;

/// How one operator process runs its controller.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Only DfrCountry objects matching this label selector; lets several operators share a
    /// cluster (canary, sharding, parallel tests) without touching each other's tenants.
    pub tenant_selector: Option<String>,
    /// Reconciles that may run at once (each for a different DfrCountry).
    pub concurrency: u16,
    /// The `instance` of Events: the operator pod's name.
    pub instance: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            tenant_selector: None,
            concurrency: DEFAULT_CONCURRENCY,
            instance: None,
        }
    }
}

/// Runs the controller until `shutdown` resolves; in-flight reconciles finish first.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Metrics,
    options: RunOptions,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let reporter = Reporter {
        controller: labels::OPERATOR_NAME.into(),
        instance: options.instance.clone(),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    // The caches fill while the controller starts; each reconcile waits for them first.
    let (caches, subscriptions, cache_tasks) = Caches::start(&client);
    let guard = tokio::spawn(
        crate::failover::FailoverGuard::new(
            client.clone(),
            caches.clone(),
            metrics.clone(),
            recorder.clone(),
        )
        .run(),
    );
    let context = Arc::new(Context::new(
        client.clone(),
        caches,
        settings,
        recorder,
        metrics,
    ));

    let countries: Api<DeserializeGuard<DfrCountry>> = Api::all(client.clone());
    let mut tenants = watcher::Config::default();
    if let Some(selector) = &options.tenant_selector {
        tenants = tenants.labels(selector);
    }
    let controller = own_children(
        Controller::new(countries, tenants),
        subscriptions,
        &context.caches,
    );
    controller
        .with_config(controller::Config::default().concurrency(options.concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(name = %object.name, "reconciled"),
                Err(error) => warn!(error = %error, "controller"),
            }
        })
        .await;
    guard.abort();
    for task in cache_tasks {
        task.abort();
    }
}

macro_rules! own_child_kinds {
    ($($field:ident: $kind:ty => $stage:ident, $build:path;)*) => {
        /// Hands every watch's stream to the controller: one watch per kind, shared with the
        /// caches. A child maps to the DfrCountry that controls it.
        fn own_children(
            controller: Controller<DeserializeGuard<DfrCountry>>,
            subscriptions: Subscriptions,
            caches: &Caches,
        ) -> Controller<DeserializeGuard<DfrCountry>> {
            let controller = controller
                .watches_shared_stream(subscriptions.namespaces, controlling_tenant)
                // cert-manager writes the Secrets of spec.tls.issuerRef without an owner
                // reference (unless its --enable-certificate-owner-ref is set), with the tenant
                // labels of the Certificate's secretTemplate.
                .watches_shared_stream(subscriptions.secrets, |secret| {
                    let by_label = secret.labels().get(labels::TENANT).cloned();
                    controlling_tenant(secret).or_else(|| by_label.map(|t| ObjectRef::new(&t)))
                })
                $(.watches_shared_stream(subscriptions.$field, controlling_tenant))*;
            // A DfrBackup belongs to the tenant whose namespace it is in.
            let namespaces = caches.namespaces.clone();
            let controller = controller.watches_shared_stream(subscriptions.backups, move |backup| {
                let namespace = backup.namespace()?;
                namespaces
                    .get(&ObjectRef::new(&namespace))
                    .and_then(|namespace| namespace.labels().get(labels::TENANT).cloned())
                    .map(|tenant| ObjectRef::new(&tenant))
            });
            // Patroni's synchronous-standby and configuration records map to their tenant by
            // Patroni's labels; its leader record, renewed every few seconds, triggers nothing.
            let controller = controller.watches_shared_stream(subscriptions.patroni, |record| {
                let name = record.metadata.name.as_deref()?;
                if !name.ends_with("-sync") && !name.ends_with("-config") {
                    return None;
                }
                record
                    .labels()
                    .get(labels::INSTANCE)
                    .map(|tenant| ObjectRef::new(tenant))
            });
            // Pods are owned by StatefulSets and ReplicaSets, not by the DfrCountry; Patroni's
            // leader label on a pod is what DatabaseReady and status.primary report, so pods map
            // to their tenant by label.
            controller.watches_shared_stream(subscriptions.pods, |pod| {
                pod.labels()
                    .get(labels::TENANT)
                    .map(|tenant| ObjectRef::new(tenant))
            })
        }
    };
}
for_each_child_kind!(own_child_kinds);

/// The DfrCountry that is the controller owner of `child`. `Controller::owns` would put the
/// child's namespace into the reference, but a DfrCountry is cluster-scoped: the same tenant
/// would then be queued under two references and reconciled twice at once.
fn controlling_tenant<K: Resource>(
    child: Arc<K>,
) -> Option<ObjectRef<DeserializeGuard<DfrCountry>>> {
    let group_version = DfrCountry::api_version(&());
    child
        .owner_references()
        .iter()
        .find(|owner| {
            owner.controller == Some(true)
                && owner.kind == DfrCountry::kind(&())
                && owner.api_version == group_version
        })
        .map(|owner| ObjectRef::new(&owner.name))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn owned_by(kind: &str, api_version: &str, controller: bool) -> Arc<ConfigMap> {
        let mut child = ConfigMap::default();
        child.metadata.namespace = Some("dfr-ton-dev".into());
        child.metadata.owner_references = Some(vec![OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: "ton-dev".into(),
            uid: "u".into(),
            controller: Some(controller),
            ..OwnerReference::default()
        }]);
        Arc::new(child)
    }

    #[test]
    fn a_child_maps_to_its_cluster_scoped_tenant_without_a_namespace() {
        let reference =
            controlling_tenant(owned_by("DfrCountry", "dfr.io/v1alpha1", true)).unwrap();
        assert_eq!(reference.name, "ton-dev");
        assert_eq!(reference.namespace, None);
        assert!(controlling_tenant(owned_by("DfrCountry", "dfr.io/v1alpha1", false)).is_none());
        assert!(controlling_tenant(owned_by("StatefulSet", "apps/v1", true)).is_none());
    }
}
