//! One reconcile of one DfrCountry: read -> validate -> build -> apply -> status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dfr_crds::condition_type as ct;
use dfr_crds::{DfrCountry, DfrCountryStatus};
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info, info_span, warn};

use crate::apply::{Changes, sync_stage};
use crate::cache::Caches;
use crate::children::kinds::Stage;
use crate::children::{Desired, desired_state};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::status::{Observed, desired_status};
use crate::tenant::Tenant;
use crate::{lifecycle, naming, observe, validate};

/// How long a reconcile waits for the watch caches' first list after the operator starts.
const CACHE_FILL_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a healthy tenant is looked at again even without a change, to refresh status.
const RESYNC: Duration = Duration::from_secs(300);

pub struct Context {
    pub client: Client,
    pub caches: Caches,
    pub settings: Settings,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Consecutive failures per DfrCountry, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The last problem reported on an object that could not be read, so it is written once.
    reported_invalid: Mutex<HashMap<String, String>>,
    /// Whether the cluster serves the Prometheus Operator's kinds, asked now and then.
    monitoring: crate::discovery::Discovery,
    /// Whether the cluster serves cert-manager's Certificate, asked now and then.
    cert_manager: crate::discovery::Discovery,
}

impl Context {
    pub fn new(
        client: Client,
        caches: Caches,
        settings: Settings,
        recorder: Recorder,
        metrics: Metrics,
    ) -> Self {
        Self {
            client,
            caches,
            settings,
            recorder,
            metrics,
            failures: Mutex::default(),
            reported_invalid: Mutex::default(),
            monitoring: crate::monitoring::discovery(),
            cert_manager: crate::certificates::discovery(),
        }
    }
}

pub async fn reconcile(
    guard: Arc<DeserializeGuard<DfrCountry>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let started = Instant::now();
    tracing::debug!(name = %guard.name_any(), "reconcile started");
    let result = match &guard.0 {
        Ok(country) => {
            let span = info_span!(
                "reconcile",
                name = %country.name_any(),
                country = %country.spec.country_code,
                environment = %country.spec.environment.as_str(),
            );
            reconcile_country(Arc::new(country.clone()), &ctx)
                .instrument(span)
                .await
        }
        Err(invalid) => report_invalid(invalid, &ctx).await,
    };
    let outcome = if result.is_ok() { "success" } else { "error" };
    ctx.metrics
        .reconciliations
        .with_label_values(&[outcome])
        .inc();
    ctx.metrics
        .reconcile_duration
        .with_label_values(&[outcome])
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok()
        && let Ok(mut failures) = ctx.failures.lock()
    {
        failures.remove(&guard.name_any());
        ctx.metrics
            .tenant
            .set_reconcile_failures(&guard.name_any(), 0);
    }
    result
}

/// Errors go back to the controller with a per-object exponential backoff: 5 s doubling to
/// 5 min; problems that need a person start at 1 min.
pub fn error_policy(
    guard: Arc<DeserializeGuard<DfrCountry>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics
        .errors
        .with_label_values(&[error.metric_label()])
        .inc();
    warn!(name = %guard.name_any(), error = %error, reason = error.reason(), "reconcile failed");
    let attempts = ctx
        .failures
        .lock()
        .map(|mut failures| {
            let count = failures.entry(guard.name_any()).or_insert(0);
            *count = count.saturating_add(1);
            *count
        })
        .unwrap_or(1);
    ctx.metrics
        .tenant
        .set_reconcile_failures(&guard.name_any(), attempts);
    Action::requeue(backoff(attempts, error.needs_a_person()))
}

pub fn backoff(attempts: u32, needs_a_person: bool) -> Duration {
    let base = if needs_a_person { 60 } else { 5 };
    let exponent = attempts.saturating_sub(1).min(10);
    Duration::from_secs((base * 2u64.pow(exponent)).min(300))
}

async fn reconcile_country(country: Arc<DfrCountry>, ctx: &Arc<Context>) -> Result<Action> {
    if !ctx.caches.wait_until_ready(CACHE_FILL_TIMEOUT).await {
        return Err(Error::CachesNotReady(CACHE_FILL_TIMEOUT.as_secs()));
    }
    let api: Api<DfrCountry> = Api::all(ctx.client.clone());
    let result = finalizer(&api, naming::FINALIZER, country.clone(), |event| async {
        match event {
            finalizer::Event::Apply(country) => apply(&country, ctx).await,
            finalizer::Event::Cleanup(country) => cleanup(&country, ctx).await,
        }
    })
    .await;
    let result = match result {
        // A second cleanup of a tenant whose first one already removed the finalizer (its
        // event raced the cache): the resource is gone, which is what the cleanup was for.
        Err(finalizer::Error::RemoveFinalizer(kube::Error::Api(status))) if status.code == 404 => {
            Ok(Action::await_change())
        }
        other => other.map_err(|error| match error {
            finalizer::Error::ApplyFailed(error) | finalizer::Error::CleanupFailed(error) => error,
            other => Error::Finalizer(other.to_string()),
        }),
    };
    if let Err(error) = &result {
        report_problem(&country, error, ctx).await;
    }
    result
}

async fn apply(country: &DfrCountry, ctx: &Context) -> Result<Action> {
    let tenant = validate::validate(country)?;
    let mut changes = Changes::default();
    let mut monitoring = None;
    let mut certificates = crate::certificates::Readiness::default();
    if !tenant.spec.suspend {
        let desired = desired_state(&tenant, &ctx.settings);
        (changes, certificates) = apply_children(&tenant, &desired, ctx).await?;
        let (state, applied) =
            crate::monitoring::sync(&ctx.client, &ctx.monitoring, &tenant, &ctx.settings).await;
        changes.extend(applied);
        monitoring = Some(state);
        if let Some((reason, note)) =
            crate::switchover::handle(&ctx.client, &ctx.caches, country, &tenant).await?
        {
            let kind = if reason == "SwitchoverRefused" {
                EventType::Warning
            } else {
                EventType::Normal
            };
            publish(ctx, country, kind, reason, "Switchover", note).await;
        }
    }
    let now = now_seconds();
    let mut rotated = None;
    if !tenant.spec.suspend {
        rotated = lifecycle::rotate_pii_key(&ctx.client, &ctx.caches, &tenant, now).await?;
    }
    if let Some(rotation) = &rotated {
        let note = format!(
            "PII key {} is now active in Secret {} (it replaces {}, which is kept with every older key so existing rows stay readable); next rotation in {}",
            rotation.key.id,
            naming::SECRET_API_PII_KEYS,
            rotation.previous,
            tenant.spec.pii_keys.rotation_period
        );
        info!(key = %rotation.key.id, previous = %rotation.previous, "PII key rotated");
        publish(
            ctx,
            country,
            EventType::Normal,
            "PiiKeyRotated",
            "RotatePiiKey",
            note,
        )
        .await;
    }
    let mut served = None;
    let mut certificates_requeue = None;
    if !tenant.spec.suspend {
        let (applied, condition, requeue) =
            certificate_lifecycle(ctx, country, &tenant, now).await?;
        changes.extend(applied);
        served = Some(condition);
        certificates_requeue = requeue;
    }
    let mut observed = observe::observe(&ctx.caches, &tenant, &ctx.settings).await?;
    observed.monitoring = monitoring;
    observed.certificates_served = served;
    observed.certificates_not_ready = certificates.not_ready_message();
    // The cache may not have seen this reconcile's rotation yet.
    if let Some(rotation) = rotated {
        observed.pii_key = Some(rotation.key);
    }
    if !tenant.spec.suspend {
        let (condition, event) =
            crate::maintenance::advance(&ctx.client, &ctx.caches, &tenant, now).await?;
        observed.maintenance = condition;
        if let Some((reason, note)) = event {
            publish(ctx, country, EventType::Normal, reason, "Maintenance", note).await;
        }
    }
    ctx.metrics.tenant.set_pii_key_activated(
        &tenant.name,
        observed.pii_key.as_ref().map(|key| key.activated_at.0),
    );
    if !tenant.spec.suspend {
        let mut backup_events =
            lifecycle::start_backup_runs(&ctx.client, &tenant, &ctx.settings, &observed, country)
                .await?;
        backup_events.extend(
            lifecycle::run_backup_requests(&ctx.client, &ctx.caches, &tenant, &ctx.settings)
                .await?,
        );
        for (reason, note) in backup_events {
            publish(ctx, country, EventType::Normal, reason, "Backup", note).await;
        }
    }
    write_status(country, &observed, ctx).await?;
    if !changes.is_empty() {
        let summary = summarize(&changes);
        info!(
            applied = changes.applied.len(),
            deleted = changes.deleted.len(),
            "{summary}"
        );
        ctx.metrics
            .child_writes
            .with_label_values(&["apply"])
            .inc_by(changes.applied.len() as u64);
        ctx.metrics
            .child_writes
            .with_label_values(&["delete"])
            .inc_by(changes.deleted.len() as u64);
        publish(
            ctx,
            country,
            EventType::Normal,
            "ResourcesApplied",
            "Apply",
            summary,
        )
        .await;
    }
    let requeue = requeue_after(&observed, &tenant, now);
    Ok(Action::requeue(
        certificates_requeue.map_or(requeue, |soon| requeue.min(soon)),
    ))
}

/// Advances a renewal of the tenant CA (see [`crate::ca_renewal`]) and has every running
/// member serve the certificate its Secret holds (see [`crate::tls_reload`]), cert-manager's
/// renewals included. Returns the
/// writes, the CertificatesServed condition and how soon to look again.
async fn certificate_lifecycle(
    ctx: &Context,
    country: &DfrCountry,
    tenant: &Tenant,
    now: k8s_openapi::jiff::Timestamp,
) -> Result<(Changes, (bool, String, String), Option<Duration>)> {
    let members = crate::tls_reload::Members::of(&ctx.caches, tenant);
    let serving = members.serving().await;
    // With issuerRef the CA is cert-manager's issuer's; a dfr-tenant-ca left from before is
    // not renewed, or its bundle would overwrite the ca.crt cert-manager writes.
    let renewal = if crate::children::certificates::self_issued(tenant) {
        crate::ca_renewal::advance(
            &ctx.client,
            &ctx.caches,
            tenant,
            &ctx.settings,
            crate::tls_reload::Members::all_current(&serving),
            &members,
            now,
        )
        .await?
    } else {
        crate::ca_renewal::Outcome::default()
    };
    for (reason, note) in renewal.events {
        info!(reason, "{note}");
        publish(ctx, country, EventType::Normal, reason, "RenewCA", note).await;
    }
    let report = members
        .reload_stale(&serving, now, ctx.settings.certificate_propagation_delay)
        .await;
    for (warning, reason, note) in report.events {
        let kind = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, country, kind, reason, "ReloadCertificate", note).await;
    }
    let requeue = match (renewal.requeue, report.requeue) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let (served, reason, message) = report.condition;
    Ok((
        renewal.changes,
        (served, reason.to_string(), message),
        requeue,
    ))
}

/// The regular resync, or sooner when the PII key is due for rotation before it. A suspended
/// tenant is not rotated, so only the resync applies.
fn requeue_after(
    observed: &Observed,
    tenant: &Tenant,
    now: k8s_openapi::jiff::Timestamp,
) -> Duration {
    let Some(key) = observed.pii_key.as_ref().filter(|_| !tenant.spec.suspend) else {
        return RESYNC;
    };
    let until = crate::pii_keys::until_rotation(key.activated_at.0, tenant.pii_key_rotation, now);
    // A second past the moment, so the reconcile finds the key due rather than just short.
    RESYNC.min(until + Duration::from_secs(1))
}

/// The namespace first, then each stage of the kind table (default-deny policies before
/// anything runs), with the generated Secrets in place before the workloads that mount them.
/// Within a stage every object is applied at once. Also returns what the tenant's cert-manager
/// Certificates report, where spec.tls.issuerRef is set.
async fn apply_children(
    tenant: &Tenant,
    desired: &Desired,
    ctx: &Context,
) -> Result<(Changes, crate::certificates::Readiness)> {
    let client = &ctx.client;
    let caches = &ctx.caches;
    let settings = &ctx.settings;
    let mut changes = lifecycle::sync_namespace(client, caches, tenant, &desired.namespace).await?;
    let mut certificates = crate::certificates::Readiness::default();
    for stage in Stage::ALL {
        if stage == Stage::Identity {
            changes.extend(lifecycle::ensure_secrets(client, caches, tenant, settings).await?);
            if crate::children::certificates::self_issued(tenant) {
                changes.extend(
                    crate::certificates::hand_back(client, caches, tenant, settings).await?,
                );
                changes.extend(
                    lifecycle::rotate_certificates(client, caches, tenant, settings).await?,
                );
            } else {
                // cert-manager issues and renews them; the operator's CA is not used.
                let (applied, readiness) =
                    crate::certificates::sync(client, &ctx.cert_manager, tenant, settings).await?;
                changes.extend(applied);
                certificates = readiness;
            }
        }
        if stage == Stage::Workload {
            // The pods mount the Secrets cert-manager writes.
            crate::certificates::check_issued(caches, tenant, &certificates)?;
            // A restore runs once, when the first member starts: it must have what it needs.
            lifecycle::check_restore_target(client, caches, tenant).await?;
            // Before the Deployment is applied without `replicas`.
            changes.extend(crate::autoscaling::hand_over_replicas(client, caches, tenant).await?);
        }
        changes.extend(sync_stage(stage, client, caches, tenant, desired).await?);
    }
    changes
        .extend(crate::patroni_state::apply_dynamic_configuration(client, caches, tenant).await?);
    Ok((changes, certificates))
}

/// `Kind/a, Kind/b, Other/c` as `Kind/a, b, Other/c`: a new tenant's first reconcile applies
/// some fifty objects, and the Event note keeps only 1 kB.
fn by_kind(objects: &[String]) -> String {
    let mut text = String::new();
    let mut previous_kind = None;
    for object in objects {
        let (kind, name) = object.split_once('/').unwrap_or(("", object.as_str()));
        if !text.is_empty() {
            text.push_str(", ");
        }
        if previous_kind == Some(kind) {
            text.push_str(name);
        } else {
            text.push_str(object);
        }
        previous_kind = Some(kind);
    }
    text
}

fn summarize(changes: &Changes) -> String {
    let mut parts = Vec::new();
    if !changes.applied.is_empty() {
        parts.push(format!("applied {}", by_kind(&changes.applied)));
    }
    if !changes.deleted.is_empty() {
        parts.push(format!(
            "deleted {} (no longer in the spec)",
            by_kind(&changes.deleted)
        ));
    }
    let summary = parts.join("; ");
    // Event notes are limited to 1 kB.
    if summary.len() > 1000 {
        let mut end = 990;
        while !summary.is_char_boundary(end) {
            end -= 1;
        }
        format!("{} …", &summary[..end])
    } else {
        summary
    }
}

async fn cleanup(country: &DfrCountry, ctx: &Context) -> Result<Action> {
    let outcome = lifecycle::apply_deletion_policy(&ctx.client, country).await?;
    info!("{outcome}");
    let reason = match country.spec.deletion_policy {
        dfr_crds::DeletionPolicy::Retain => "DataRetained",
        dfr_crds::DeletionPolicy::Delete => "TenantDeleted",
    };
    publish(ctx, country, EventType::Normal, reason, "Delete", outcome).await;
    ctx.metrics.set_tenant_ready(&country.name_any(), None);
    ctx.metrics.forget_tenant(&country.name_any());
    Ok(Action::await_change())
}

/// Writes the status only when it differs from what the object already shows.
async fn write_status(country: &DfrCountry, observed: &Observed, ctx: &Context) -> Result<()> {
    let now = now_seconds();
    let previous = country.status.as_ref();
    let status = desired_status(observed, previous, now);
    let ready = ready_status(Some(&status));
    ctx.metrics
        .set_tenant_ready(&country.name_any(), Some(&ready));
    ctx.metrics.set_backups(&country.name_any(), &status);
    if previous == Some(&status) {
        return Ok(());
    }
    patch_status(&ctx.client, &country.name_any(), json!(status)).await?;
    if let Some(last) = status.last_backup.as_ref().filter(|last| {
        previous
            .and_then(|p| p.last_backup.as_ref())
            .map(|p| (&p.time, &p.job))
            != Some((&last.time, &last.job))
    }) {
        let (kind, reason, note) = match last.result {
            dfr_crds::BackupResult::Succeeded => (
                EventType::Normal,
                "BackupSucceeded",
                format!(
                    "{} backup {} finished in {} s: {} bytes copied, {} bytes stored",
                    last.r#type.as_deref().unwrap_or("?"),
                    last.label.as_deref().unwrap_or("?"),
                    last.duration_seconds.unwrap_or(0),
                    last.size_bytes.unwrap_or(0),
                    last.repository_size_bytes.unwrap_or(0),
                ),
            ),
            dfr_crds::BackupResult::Failed => (
                EventType::Warning,
                "BackupFailed",
                last.message.clone().unwrap_or_default(),
            ),
        };
        publish(ctx, country, kind, reason, "Backup", note).await;
    }
    let was_ready = ready_status(previous);
    if was_ready != ready {
        let condition = status.conditions.iter().find(|c| c.type_ == ct::READY);
        let message = condition.map(|c| c.message.clone()).unwrap_or_default();
        let (kind, reason) = if ready == "True" {
            (EventType::Normal, "TenantReady")
        } else {
            (
                EventType::Warning,
                condition.map(|c| c.reason.as_str()).unwrap_or("NotReady"),
            )
        };
        let reason = reason.to_string();
        publish(ctx, country, kind, &reason, "Reconcile", message).await;
    }
    Ok(())
}

fn ready_status(status: Option<&DfrCountryStatus>) -> String {
    status
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == ct::READY))
        .map(|c| c.status.clone())
        .unwrap_or_else(|| "Unknown".to_string())
}

async fn patch_status(client: &Client, name: &str, status: serde_json::Value) -> Result<()> {
    let api: Api<DfrCountry> = Api::all(client.clone());
    let body = json!({
        "apiVersion": DfrCountry::api_version(&()),
        "kind": DfrCountry::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(naming::FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::kube(format!(
        "writing the status of DfrCountry {name}"
    )))?;
    Ok(())
}

/// Puts a failed reconcile on the object's status (Degraded, with the reason and what to do)
/// and as a Warning Event, once per distinct problem.
async fn report_problem(country: &DfrCountry, error: &Error, ctx: &Context) {
    let observed = Observed {
        problem: Some((error.reason().to_string(), error.to_string())),
        ..observed_from_status(country, &ctx.settings)
    };
    let previous = country.status.as_ref();
    let status = desired_status(&observed, previous, now_seconds());
    ctx.metrics
        .set_tenant_ready(&country.name_any(), Some(&ready_status(Some(&status))));
    if previous == Some(&status) {
        return;
    }
    if let Err(write_error) = patch_status(&ctx.client, &country.name_any(), json!(status)).await {
        warn!(error = %write_error, "could not report the problem on the status");
    }
    publish(
        ctx,
        country,
        EventType::Warning,
        error.reason(),
        "Reconcile",
        error.to_string(),
    )
    .await;
}

/// The last observation the status holds, for reporting a problem without reading the cluster.
/// It reads the raw object, since the problem may be that the spec does not validate.
fn observed_from_status(country: &DfrCountry, settings: &Settings) -> Observed {
    let status = country.status.clone().unwrap_or_default();
    let tenant = validate::validate(country).ok();
    Observed {
        generation: country.metadata.generation,
        namespace: naming::namespace(country),
        postgres_ready: status.postgres.as_ref().map(|p| p.ready).unwrap_or(0),
        postgres_desired: country.spec.postgres.instances,
        primary: status.primary.clone(),
        api_available: status.api.as_ref().map(|a| a.ready).unwrap_or(0),
        api_desired: status
            .api
            .as_ref()
            .map(|a| a.desired)
            .unwrap_or(country.spec.api.min_replicas),
        api_deployment_available: status
            .conditions
            .iter()
            .any(|c| c.type_ == ct::API_READY && c.status == "True"),
        autoscaler: crate::autoscaling::Observation {
            status: status.api.as_ref().and_then(|a| a.autoscaler.clone()),
            problem: None,
        },
        certificates_not_after: status.certificates_not_after.map(|t| t.0),
        certificates: status.certificates.clone(),
        ca_renewal: status.ca_renewal.clone(),
        certificates_served: None,
        certificates_not_ready: None,
        pii_key: status.pii_key.clone(),
        problem: None,
        risk: None,
        suspended: country.spec.suspend,
        cluster_domain: settings.cluster_domain.clone(),
        renew_before: tenant.map(|t| t.tls.renew_before).unwrap_or_default(),
        backup_repository: observe::backup_repository(&country.spec),
        backup_runs: Default::default(),
        monitoring: None,
        maintenance: None,
    }
}

/// An object the operator cannot parse (for example written for a newer CRD) is reported on its
/// status and left alone; the watch of every other object goes on.
async fn report_invalid(invalid: &InvalidObject, ctx: &Context) -> Result<Action> {
    let name = invalid.metadata.name.clone().unwrap_or_default();
    let message = format!(
        "the operator cannot read this DfrCountry: {}",
        invalid.error
    );
    let already_reported = ctx
        .reported_invalid
        .lock()
        .map(|mut reported| reported.insert(name.clone(), message.clone()) == Some(message.clone()))
        .unwrap_or(false);
    if !already_reported {
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now_seconds());
        let condition = |type_: &str, status: &str| {
            json!({
                "type": type_, "status": status, "reason": "InvalidObject", "message": message,
                "observedGeneration": invalid.metadata.generation, "lastTransitionTime": now,
            })
        };
        let status = json!({
            "observedGeneration": invalid.metadata.generation,
            "conditions": [condition(ct::READY, "False"), condition(ct::DEGRADED, "True")],
        });
        if let Err(error) = patch_status(&ctx.client, &name, status).await {
            warn!(%name, error = %error, "could not report the unreadable object on its status");
        }
    }
    Err(Error::InvalidObject(message))
}

async fn publish(
    ctx: &Context,
    country: &DfrCountry,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &country.object_ref(&())).await {
        warn!(error = %error, reason, "could not publish an Event");
    }
}

fn now_seconds() -> k8s_openapi::jiff::Timestamp {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{RESYNC, backoff, by_kind, requeue_after};
    use crate::status::Observed;
    use std::time::Duration;

    #[test]
    fn a_tenant_comes_back_when_its_pii_key_is_due() {
        let mut tenant = crate::children::tests::sample("ton-prod.yaml");
        tenant.pii_key_rotation = Duration::from_secs(120);
        let activated: k8s_openapi::jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let observed = Observed {
            pii_key: Some(dfr_crds::PiiKeyStatus {
                id: "k1".into(),
                activated_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(activated),
            }),
            ..Observed::default()
        };
        let now: k8s_openapi::jiff::Timestamp = "2026-01-01T00:01:30Z".parse().unwrap();
        assert_eq!(
            requeue_after(&observed, &tenant, now),
            Duration::from_secs(31)
        );
        // Rotation far off: the regular resync.
        tenant.pii_key_rotation = Duration::from_secs(1440 * 3600);
        assert_eq!(requeue_after(&observed, &tenant, now), RESYNC);
        // Nothing to rotate in a suspended tenant, nor without a key ring.
        tenant.pii_key_rotation = Duration::from_secs(120);
        tenant.spec.suspend = true;
        assert_eq!(requeue_after(&observed, &tenant, now), RESYNC);
        tenant.spec.suspend = false;
        assert_eq!(requeue_after(&Observed::default(), &tenant, now), RESYNC);
    }

    #[test]
    fn a_summary_names_each_kind_once_per_run() {
        let objects: Vec<String> = [
            "ConfigMap/a",
            "ConfigMap/b",
            "StatefulSet/postgres",
            "Secret/x (certificate renewed)",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            by_kind(&objects),
            "ConfigMap/a, b, StatefulSet/postgres, Secret/x (certificate renewed)"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1, false), Duration::from_secs(5));
        assert_eq!(backoff(2, false), Duration::from_secs(10));
        assert_eq!(backoff(7, false), Duration::from_secs(300));
        assert_eq!(backoff(1, true), Duration::from_secs(60));
        assert_eq!(backoff(u32::MAX, true), Duration::from_secs(300));
    }
}
