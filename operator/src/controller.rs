//! Wires the reconciler into a kube-runtime Controller that watches DfrCountry objects and every
//! kind of child, so drift in any child brings its DfrCountry back to the reconciler.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use dfr_crds::DfrCountry;
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
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use crate::cache::Caches;
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
    let (caches, cache_tasks) = Caches::start(&client);
    if !caches
        .wait_until_ready(std::time::Duration::from_secs(60))
        .await
    {
        warn!(
            "the child caches did not fill within 60 s (check the operator's list/watch permissions); continuing"
        );
    }
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
    let children = watcher::Config::default().labels(&format!(
        "{}={}",
        labels::MANAGED_BY,
        labels::OPERATOR_NAME
    ));

    let controller = Controller::new(countries, tenants);
    let controller = owns::<Namespace>(controller, &client, &children);
    let controller = owns::<ResourceQuota>(controller, &client, &children);
    let controller = owns::<LimitRange>(controller, &client, &children);
    let controller = owns::<Secret>(controller, &client, &children);
    let controller = owns::<ServiceAccount>(controller, &client, &children);
    let controller = owns::<Role>(controller, &client, &children);
    let controller = owns::<RoleBinding>(controller, &client, &children);
    let controller = owns::<ConfigMap>(controller, &client, &children);
    let controller = owns::<Service>(controller, &client, &children);
    let controller = owns::<StatefulSet>(controller, &client, &children);
    let controller = owns::<Deployment>(controller, &client, &children);
    let controller = owns::<PodDisruptionBudget>(controller, &client, &children);
    let controller = owns::<HorizontalPodAutoscaler>(controller, &client, &children);
    let controller = owns::<NetworkPolicy>(controller, &client, &children);
    // Pods are owned by StatefulSets and ReplicaSets, not by the DfrCountry; Patroni's leader
    // label on a pod is what DatabaseReady and status.primary report, so map pods by tenant.
    controller
        .watches(Api::<Pod>::all(client.clone()), children, |pod: Pod| {
            pod.labels()
                .get(labels::TENANT)
                .map(|tenant| ObjectRef::new(tenant))
        })
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

fn owns<Child>(
    controller: Controller<DeserializeGuard<DfrCountry>>,
    client: &Client,
    config: &watcher::Config,
) -> Controller<DeserializeGuard<DfrCountry>>
where
    Child: Clone + Resource<DynamicType = ()> + DeserializeOwned + Debug + Send + 'static,
{
    controller.owns(Api::<Child>::all(client.clone()), config.clone())
}
