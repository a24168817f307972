//! Wires the reconciler into a kube-runtime Controller that watches DfrCountry objects and every
//! kind of child, so drift in any child brings its DfrCountry back to the reconciler.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use dfr_crds::DfrCountry;
use futures::StreamExt;
use kube::Client;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tracing::{debug, warn};

use crate::cache::{Caches, Subscriptions};
use crate::children::kinds::for_each_child_kind;
use crate::labels;
use crate::metrics::Metrics;
use crate::reconcile::{Context, error_policy, reconcile};
use crate::settings::Settings;

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
            concurrency: 8,
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
    let controller = own_children(Controller::new(countries, tenants), subscriptions);
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
    for task in cache_tasks {
        task.abort();
    }
}

macro_rules! own_child_kinds {
    ($($field:ident: $kind:ty => $stage:ident, $build:path;)*) => {
        /// Hands every watch's stream to the controller: one watch per kind, shared with the
        /// caches.
        fn own_children(
            controller: Controller<DeserializeGuard<DfrCountry>>,
            subscriptions: Subscriptions,
        ) -> Controller<DeserializeGuard<DfrCountry>> {
            let controller = controller
                .owns_shared_stream(subscriptions.namespaces)
                .owns_shared_stream(subscriptions.secrets)
                $(.owns_shared_stream(subscriptions.$field))*;
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
