//! Applies a tenant's PodMonitors and PrometheusRule where the cluster serves the Prometheus
//! Operator's kinds, and says on the status when it does not. Whether the kinds exist is asked
//! of the API server's discovery at most every few minutes for all tenants together, so
//! installing kube-prometheus-stack later is noticed without a restart.
//!
//! These kinds have no watch cache (a watch on a kind that is not installed fails), so each
//! reconcile reads the few objects; it writes only where they differ, like every other child.
//! A failure here is reported on MonitoringReady rather than failing the reconcile: the
//! registry runs the same without its alerts.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::apply::{Changes, apply_if_changed, owned_by, retained_for};
use crate::children::monitoring::{self, MonitoringState};
use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::tenant::Tenant;

pub const GROUP_VERSION: &str = "monitoring.coreos.com/v1";
/// How long an answer of discovery is reused.
const RECHECK: Duration = Duration::from_secs(300);

pub const REASON_CONFIGURED: &str = "MonitoringConfigured";
pub const REASON_CRDS_ABSENT: &str = "MonitoringCRDsAbsent";
pub const REASON_FAILED: &str = "MonitoringApplyFailed";

/// The cached answer to "does the cluster serve PodMonitor and PrometheusRule?".
#[derive(Default)]
pub struct Discovery {
    answer: Mutex<Option<(Instant, bool)>>,
}

impl Discovery {
    pub async fn installed(&self, client: &Client) -> Result<bool> {
        if let Ok(answer) = self.answer.lock()
            && let Some((at, installed)) = *answer
            && at.elapsed() < RECHECK
        {
            return Ok(installed);
        }
        let installed = match client.list_api_group_resources(GROUP_VERSION).await {
            Ok(list) => served(&list),
            Err(kube::Error::Api(status)) if status.code == 404 => false,
            Err(error) => {
                return Err(Error::kube(format!("discovering {GROUP_VERSION}"))(error));
            }
        };
        if let Ok(mut answer) = self.answer.lock() {
            *answer = Some((Instant::now(), installed));
        }
        Ok(installed)
    }
}

/// Both kinds the operator creates are served.
fn served(list: &k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList) -> bool {
    ["podmonitors", "prometheusrules"]
        .iter()
        .all(|plural| list.resources.iter().any(|r| r.name == *plural))
}

/// Applies the tenant's monitoring objects when the kinds exist; the state for its condition.
pub async fn sync(
    client: &Client,
    discovery: &Discovery,
    tenant: &Tenant,
    settings: &Settings,
) -> (MonitoringState, Changes) {
    match try_sync(client, discovery, tenant, settings).await {
        Ok(Some(changes)) => (
            MonitoringState {
                ready: true,
                reason: REASON_CONFIGURED,
                message: format!(
                    "PodMonitors {} and {} and PrometheusRule {} are applied; dashboards are in ConfigMaps labelled {}=1",
                    monitoring::API_MONITOR,
                    monitoring::PATRONI_MONITOR,
                    monitoring::RULES,
                    monitoring::GRAFANA_DASHBOARD_LABEL,
                ),
            },
            changes,
        ),
        Ok(None) => (
            MonitoringState {
                ready: false,
                reason: REASON_CRDS_ABSENT,
                message: format!(
                    "the cluster does not serve PodMonitor and PrometheusRule ({GROUP_VERSION}): install the Prometheus Operator (e.g. kube-prometheus-stack) for scraping and alerts; dashboards are in ConfigMaps labelled {}=1",
                    monitoring::GRAFANA_DASHBOARD_LABEL,
                ),
            },
            Changes::default(),
        ),
        Err(error) => {
            tracing::warn!(error = %error, "monitoring objects not applied");
            (
                MonitoringState {
                    ready: false,
                    reason: REASON_FAILED,
                    message: error.to_string(),
                },
                Changes::default(),
            )
        }
    }
}

async fn try_sync(
    client: &Client,
    discovery: &Discovery,
    tenant: &Tenant,
    settings: &Settings,
) -> Result<Option<Changes>> {
    if !discovery.installed(client).await? {
        return Ok(None);
    }
    let mut changes = Changes::default();
    for monitor in monitoring::desired_pod_monitors(tenant, settings) {
        if apply_one(client, tenant, &monitor).await? {
            changes
                .applied
                .push(format!("PodMonitor/{}", monitor.name_any()));
        }
    }
    for rule in monitoring::desired_prometheus_rules(tenant, settings) {
        if apply_one(client, tenant, &rule).await? {
            changes
                .applied
                .push(format!("PrometheusRule/{}", rule.name_any()));
        }
    }
    Ok(Some(changes))
}

/// Reads the live object, refuses one another owner made, applies only on a difference.
async fn apply_one<K>(client: &Client, tenant: &Tenant, object: &K) -> Result<bool>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &tenant.namespace);
    let name = object.name_any();
    let kind = K::kind(&()).to_string();
    let live = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("reading {kind}/{name}")))?;
    if let Some(live) = &live
        && !owned_by(live, &tenant.owner.uid)
        && !retained_for(live, &tenant.name)
    {
        return Err(Error::ForeignObject {
            kind,
            namespace: tenant.namespace.clone(),
            name,
        });
    }
    apply_if_changed(&api, object, live.as_ref()).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResource, APIResourceList};

    fn list(plurals: &[&str]) -> APIResourceList {
        APIResourceList {
            group_version: GROUP_VERSION.into(),
            resources: plurals
                .iter()
                .map(|name| APIResource {
                    name: name.to_string(),
                    ..APIResource::default()
                })
                .collect(),
        }
    }

    #[test]
    fn both_kinds_must_be_served() {
        assert!(served(&list(&[
            "podmonitors",
            "prometheusrules",
            "servicemonitors"
        ])));
        assert!(!served(&list(&["servicemonitors", "prometheusrules"])));
        assert!(!served(&list(&[])));
    }
}
