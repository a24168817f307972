//! Applies a tenant's PodMonitors and PrometheusRule where the cluster serves the Prometheus
//! Operator's kinds, and says on the status when it does not. Whether the kinds exist is asked
//! of the API server's discovery (see [`crate::discovery`]), so installing
//! kube-prometheus-stack later is noticed without a restart.
//!
//! These kinds have no watch cache (a watch on a kind that is not installed fails), so each
//! reconcile reads the few objects; it writes only where they differ, like every other child.
//! A failure here is reported on MonitoringReady rather than failing the reconcile: the
//! registry runs the same without its alerts.

use kube::{Client, ResourceExt};

use crate::apply::{Changes, apply_uncached};
use crate::children::monitoring::{self, MonitoringState};
use crate::discovery::Discovery;
use crate::error::Result;
use crate::settings::Settings;
use crate::tenant::Tenant;

pub const GROUP_VERSION: &str = "monitoring.coreos.com/v1";
pub const REASON_CONFIGURED: &str = "MonitoringConfigured";
pub const REASON_CRDS_ABSENT: &str = "MonitoringCRDsAbsent";
pub const REASON_FAILED: &str = "MonitoringApplyFailed";

/// Asks whether the cluster serves both kinds the operator creates.
pub fn discovery() -> Discovery {
    Discovery::new(GROUP_VERSION, &["podmonitors", "prometheusrules"])
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
        if apply_uncached(client, tenant, &monitor).await?.0 {
            changes
                .applied
                .push(format!("PodMonitor/{}", monitor.name_any()));
        }
    }
    for rule in monitoring::desired_prometheus_rules(tenant, settings) {
        if apply_uncached(client, tenant, &rule).await?.0 {
            changes
                .applied
                .push(format!("PrometheusRule/{}", rule.name_any()));
        }
    }
    Ok(Some(changes))
}
