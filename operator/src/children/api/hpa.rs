//! Scales the API on CPU and on p95 latency, where autoscaling is on (prod and dr by default,
//! staging when the spec asks; see `DfrCountrySpec::api_autoscaled`).
//!
//! CPU comes from the resource metrics API (metrics-server). The latency metric reaches the
//! custom metrics API like this: every API pod serves the histogram
//! `dfr_http_request_duration_seconds` on /metrics (port 9090, container port `metrics`, which
//! the `dfr-api` PodMonitor scrapes); Prometheus scrapes it; prometheus-adapter exposes, per pod,
//! the Pods metric named by `Settings::latency_metric_name` (default
//! `dfr_http_request_duration_p95_milliseconds`) from the p95 of that histogram's buckets over a
//! 1-minute rate window, times 1000. The spec's stabilization windows (300 s by default) make the
//! latency "sustained": the autoscaler acts on the lowest (scale-up) or highest (scale-down)
//! recommendation of the whole window, so a single slow minute does not add pods.

use crate::tenant::Tenant;
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricIdentifier, MetricSpec,
    MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::metadata_labels;
use crate::children::child_meta;
use crate::naming;
use crate::settings::Settings;

pub fn desired_hpa(tenant: &Tenant, settings: &Settings) -> HorizontalPodAutoscaler {
    let api = &tenant.spec.api;
    let window = |seconds: i32| HPAScalingRules {
        stabilization_window_seconds: Some(seconds),
        ..HPAScalingRules::default()
    };
    HorizontalPodAutoscaler {
        metadata: child_meta(tenant, naming::API, metadata_labels(tenant)),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: naming::API.into(),
            },
            min_replicas: Some(api.min_replicas),
            max_replicas: api.max_replicas,
            metrics: Some(vec![
                MetricSpec {
                    type_: "Resource".into(),
                    resource: Some(ResourceMetricSource {
                        name: "cpu".into(),
                        target: MetricTarget {
                            type_: "Utilization".into(),
                            average_utilization: Some(
                                api.autoscaling.target_cpu_utilization_percent,
                            ),
                            ..MetricTarget::default()
                        },
                    }),
                    ..MetricSpec::default()
                },
                MetricSpec {
                    type_: "Pods".into(),
                    pods: Some(PodsMetricSource {
                        metric: MetricIdentifier {
                            name: settings.latency_metric_name.clone(),
                            selector: None,
                        },
                        target: MetricTarget {
                            type_: "AverageValue".into(),
                            average_value: Some(Quantity(
                                api.autoscaling.target_p95_latency_ms.to_string(),
                            )),
                            ..MetricTarget::default()
                        },
                    }),
                    ..MetricSpec::default()
                },
            ]),
            behavior: Some(HorizontalPodAutoscalerBehavior {
                scale_up: Some(window(api.autoscaling.stabilization_window_seconds)),
                scale_down: Some(window(api.autoscaling.stabilization_window_seconds)),
            }),
        }),
        ..HorizontalPodAutoscaler::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::tests::sample;

    #[test]
    fn only_autoscaled_environments_get_an_autoscaler() {
        let settings = Settings::default();
        assert_eq!(
            super::super::desired_autoscalers(&sample("ton-prod.yaml"), &settings).len(),
            1
        );
        for fixed in ["wsm-staging.yaml", "ton-dev.yaml", "vut-test.yaml"] {
            assert!(
                super::super::desired_autoscalers(&sample(fixed), &settings).is_empty(),
                "{fixed}"
            );
        }
        let mut staging = sample("wsm-staging.yaml");
        staging.spec.api.autoscaling.enabled = Some(true);
        assert_eq!(
            super::super::desired_autoscalers(&staging, &settings).len(),
            1
        );
    }

    #[test]
    fn scales_on_cpu_and_p95_latency_with_the_spec_windows() {
        let tenant = sample("ton-prod.yaml");
        let spec = desired_hpa(&tenant, &Settings::default()).spec.unwrap();
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 8));
        let metrics = spec.metrics.unwrap();
        let cpu = metrics[0].resource.as_ref().unwrap();
        assert_eq!(cpu.name, "cpu");
        assert_eq!(cpu.target.average_utilization, Some(70));
        let latency = metrics[1].pods.as_ref().unwrap();
        assert_eq!(
            latency.metric.name,
            "dfr_http_request_duration_p95_milliseconds"
        );
        assert_eq!(latency.target.average_value.as_ref().unwrap().0, "700");
        let behavior = spec.behavior.unwrap();
        assert_eq!(
            behavior.scale_up.unwrap().stabilization_window_seconds,
            Some(300)
        );
        assert_eq!(
            behavior.scale_down.unwrap().stabilization_window_seconds,
            Some(300)
        );
    }
}
