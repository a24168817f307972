//! The API's autoscaler beyond its builder (`children::api::hpa`): handing the replica count
//! over to it without a dip, and what it reports, for the status.

use dfr_crds::AutoscalerStatus;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, MetricSpec,
};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use crate::apply::Changes;
use crate::cache::Caches;
use crate::children::api::{REPLICAS_BY_AUTOSCALER, REPLICAS_OWNER};
use crate::error::{Error, Result};
use crate::naming;
use crate::tenant::Tenant;

/// The field manager that holds `spec.replicas` for a moment while autoscaling is switched on.
pub const HANDOVER_FIELD_MANAGER: &str = "dfr-operator-replicas-handover";

/// When autoscaling is switched on for a Deployment whose `replicas` the operator set, the next
/// apply leaves `replicas` out. Server-side apply then removes a field its only manager stopped
/// setting, and the Deployment falls back to one pod until the autoscaler's next sync puts it
/// back. So first a second field manager applies the current count, sharing the field; the
/// operator's apply then gives up its share without removing it, and the autoscaler's next
/// change takes it over (an update takes a changed field from every other manager).
///
/// Writes only on that switch: the Deployment's [`REPLICAS_OWNER`] annotation already says
/// `autoscaler` afterwards.
pub async fn hand_over_replicas(
    client: &Client,
    caches: &Caches,
    tenant: &Tenant,
) -> Result<Changes> {
    let live = caches.get::<Deployment>(Some(&tenant.namespace), naming::API);
    let Some(replicas) = live.as_ref().and_then(|live| handover_needed(tenant, live)) else {
        return Ok(Changes::default());
    };
    let api: Api<Deployment> = Api::namespaced(client.clone(), &tenant.namespace);
    // Only `spec.replicas`: a typed Deployment would also claim its required selector and
    // template as empty values.
    let body = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": naming::API, "namespace": tenant.namespace},
        "spec": {"replicas": replicas},
    });
    api.patch(
        naming::API,
        &PatchParams::apply(HANDOVER_FIELD_MANAGER),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::kube(format!(
        "handing Deployment/{} replicas to the autoscaler",
        naming::API
    )))?;
    Ok(Changes {
        applied: vec![format!(
            "Deployment/{} (replicas {replicas} handed to the autoscaler)",
            naming::API
        )],
        deleted: Vec::new(),
    })
}

/// The count to hand over, when autoscaling is on and the live Deployment was not yet left to
/// the autoscaler.
fn handover_needed(tenant: &Tenant, live: &Deployment) -> Option<i32> {
    if !tenant.spec.api_autoscaled() {
        return None;
    }
    let owner = live
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(REPLICAS_OWNER));
    if owner.map(String::as_str) == Some(REPLICAS_BY_AUTOSCALER) {
        return None;
    }
    live.spec.as_ref().and_then(|spec| spec.replicas)
}

/// What the autoscaler reports: its counts, and why it cannot scale when it cannot, as
/// (reason, message) with the autoscaler's own reason.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    pub status: Option<AutoscalerStatus>,
    pub problem: Option<(String, String)>,
}

/// Reads an autoscaler's status. An autoscaler that has not run yet reports nothing.
pub fn observe(hpa: Option<&HorizontalPodAutoscaler>) -> Observation {
    let Some(hpa) = hpa else {
        return Observation::default();
    };
    let Some(status) = hpa.status.as_ref() else {
        return Observation::default();
    };
    let counts = AutoscalerStatus {
        current_replicas: status.current_replicas.unwrap_or(0),
        desired_replicas: status.desired_replicas,
        last_scale_time: status.last_scale_time.clone(),
    };
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let failed = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "False")
    };
    let describe = |condition: &HorizontalPodAutoscalerCondition, what: &str| {
        let reason = condition
            .reason
            .clone()
            .unwrap_or_else(|| type_reason(what));
        let message = format!(
            "HorizontalPodAutoscaler {} {what} ({} False, {reason}): {}; the API stays at {} pods",
            naming::API,
            condition.type_,
            condition.message.as_deref().unwrap_or("no message"),
            counts.current_replicas,
        );
        (reason, message)
    };
    let problem = if let Some(condition) = failed("AbleToScale") {
        Some(describe(condition, "cannot scale"))
    } else if let Some(condition) = failed("ScalingActive")
        // The autoscaler is switched off by a Deployment scaled to zero by hand: not a fault.
        .filter(|c| c.reason.as_deref() != Some("ScalingDisabled"))
    {
        Some(describe(condition, "cannot read its metrics"))
    } else {
        unreadable_metrics(hpa).map(|names| {
            (
                "MetricUnavailable".to_string(),
                format!(
                    "HorizontalPodAutoscaler {} cannot read {} and scales on its other metrics; \
                     its Events say why",
                    naming::API,
                    names.join(", ")
                ),
            )
        })
    };
    Observation {
        status: Some(counts),
        problem,
    }
}

fn type_reason(what: &str) -> String {
    if what == "cannot scale" {
        "AutoscalerCannotScale".into()
    } else {
        "AutoscalerMetricsUnavailable".into()
    }
}

/// The metrics the autoscaler could not read while it still scales on the others: the
/// autoscaler leaves an entry without a type in `currentMetrics` at that metric's place.
fn unreadable_metrics(hpa: &HorizontalPodAutoscaler) -> Option<Vec<String>> {
    let specs = hpa.spec.as_ref()?.metrics.as_deref()?;
    let current = hpa.status.as_ref()?.current_metrics.as_deref()?;
    let names: Vec<String> = specs
        .iter()
        .zip(current)
        .filter(|(_, status)| status.type_.is_empty())
        .map(|(spec, _)| metric_name(spec))
        .collect();
    (!names.is_empty()).then_some(names)
}

fn metric_name(spec: &MetricSpec) -> String {
    spec.resource
        .as_ref()
        .map(|r| r.name.clone())
        .or_else(|| spec.pods.as_ref().map(|p| p.metric.name.clone()))
        .or_else(|| spec.object.as_ref().map(|o| o.metric.name.clone()))
        .or_else(|| spec.external.as_ref().map(|e| e.metric.name.clone()))
        .or_else(|| {
            spec.container_resource
                .as_ref()
                .map(|c| format!("{} of container {}", c.name, c.container))
        })
        .unwrap_or_else(|| spec.type_.clone())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::api::{REPLICAS_BY_OPERATOR, desired_hpa};
    use crate::children::tests::sample;
    use crate::settings::Settings;
    use k8s_openapi::api::autoscaling::v2::{
        HorizontalPodAutoscalerStatus, MetricStatus, ResourceMetricStatus,
    };
    use std::collections::BTreeMap;

    fn condition(
        type_: &str,
        status: &str,
        reason: &str,
        message: &str,
    ) -> HorizontalPodAutoscalerCondition {
        HorizontalPodAutoscalerCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            ..HorizontalPodAutoscalerCondition::default()
        }
    }

    fn hpa_reporting(
        conditions: Vec<HorizontalPodAutoscalerCondition>,
        current_metrics: Option<Vec<MetricStatus>>,
    ) -> HorizontalPodAutoscaler {
        let mut hpa = desired_hpa(&sample("ton-prod.yaml"), &Settings::default());
        hpa.status = Some(HorizontalPodAutoscalerStatus {
            current_replicas: Some(2),
            desired_replicas: 3,
            conditions: Some(conditions),
            current_metrics,
            ..HorizontalPodAutoscalerStatus::default()
        });
        hpa
    }

    #[test]
    fn an_autoscaler_without_metrics_says_so_with_its_own_reason() {
        // What kube-controller-manager reports where no metrics server runs.
        let hpa = hpa_reporting(
            vec![
                condition(
                    "AbleToScale",
                    "True",
                    "SucceededGetScale",
                    "the HPA controller was able to get the target's current scale",
                ),
                condition(
                    "ScalingActive",
                    "False",
                    "FailedGetResourceMetric",
                    "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu",
                ),
            ],
            None,
        );
        let observation = observe(Some(&hpa));
        let status = observation.status.unwrap();
        assert_eq!((status.current_replicas, status.desired_replicas), (2, 3));
        let (reason, message) = observation.problem.unwrap();
        assert_eq!(reason, "FailedGetResourceMetric");
        assert!(message.contains("cannot read its metrics"), "{message}");
        assert!(
            message.contains("failed to get cpu utilization"),
            "{message}"
        );
        assert!(message.contains("stays at 2 pods"), "{message}");
    }

    #[test]
    fn an_autoscaler_that_cannot_scale_comes_first() {
        let hpa = hpa_reporting(
            vec![
                condition(
                    "AbleToScale",
                    "False",
                    "FailedGetScale",
                    "deployments/scale not found",
                ),
                condition(
                    "ScalingActive",
                    "False",
                    "FailedGetResourceMetric",
                    "no cpu",
                ),
            ],
            None,
        );
        assert_eq!(observe(Some(&hpa)).problem.unwrap().0, "FailedGetScale");
    }

    #[test]
    fn a_healthy_or_disabled_autoscaler_is_no_problem() {
        let cpu = MetricStatus {
            type_: "Resource".into(),
            resource: Some(ResourceMetricStatus {
                name: "cpu".into(),
                ..ResourceMetricStatus::default()
            }),
            ..MetricStatus::default()
        };
        let latency = MetricStatus {
            type_: "Pods".into(),
            ..MetricStatus::default()
        };
        let healthy = hpa_reporting(
            vec![
                condition("AbleToScale", "True", "ReadyForNewScale", ""),
                condition("ScalingActive", "True", "ValidMetricFound", ""),
            ],
            Some(vec![cpu.clone(), latency]),
        );
        assert_eq!(observe(Some(&healthy)).problem, None);
        let disabled = hpa_reporting(
            vec![condition(
                "ScalingActive",
                "False",
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            )],
            None,
        );
        assert_eq!(observe(Some(&disabled)).problem, None);

        // The latency metric unreadable while CPU still is: an entry without a type.
        let partial = hpa_reporting(
            vec![condition("ScalingActive", "True", "ValidMetricFound", "")],
            Some(vec![cpu, MetricStatus::default()]),
        );
        let (reason, message) = observe(Some(&partial)).problem.unwrap();
        assert_eq!(reason, "MetricUnavailable");
        assert!(
            message.contains("dfr_http_request_duration_p95_milliseconds"),
            "{message}"
        );
    }

    #[test]
    fn nothing_is_reported_before_the_autoscaler_runs() {
        assert_eq!(observe(None), Observation::default());
        let fresh = desired_hpa(&sample("ton-prod.yaml"), &Settings::default());
        assert_eq!(observe(Some(&fresh)), Observation::default());
    }

    #[test]
    fn replicas_are_handed_over_once_when_autoscaling_is_switched_on() {
        let mut tenant = sample("wsm-staging.yaml");
        let mut live = Deployment {
            spec: Some(k8s_openapi::api::apps::v1::DeploymentSpec {
                replicas: Some(3),
                ..Default::default()
            }),
            ..Deployment::default()
        };
        live.metadata.annotations = Some(BTreeMap::from([(
            REPLICAS_OWNER.to_string(),
            REPLICAS_BY_OPERATOR.to_string(),
        )]));
        // Autoscaling off: the operator keeps the count.
        assert_eq!(handover_needed(&tenant, &live), None);
        tenant.spec.api.autoscaling.enabled = Some(true);
        assert_eq!(handover_needed(&tenant, &live), Some(3));
        // Once applied with autoscaling on, the annotation says so and nothing more is written.
        live.metadata.annotations = Some(BTreeMap::from([(
            REPLICAS_OWNER.to_string(),
            REPLICAS_BY_AUTOSCALER.to_string(),
        )]));
        assert_eq!(handover_needed(&tenant, &live), None);
    }
}
