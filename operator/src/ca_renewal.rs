//! Renewal of the tenant CA before it expires, with an overlap in which both CAs are trusted.
//!
//! The state lives on the CA Secret (dfr-tenant-ca), so it survives an operator restart and
//! every step is idempotent:
//!
//! 1. **TrustPublished**: a new CA is made; the Secret gets its tls.crt/tls.key, keeps the
//!    previous CA certificate (not its key) in `previous.crt`, and every certificate Secret's
//!    ca.crt becomes the bundle new + previous. The certificates themselves are unchanged, so
//!    nothing signed by the new CA is served yet.
//! 2. **Reissued**: once the trust propagation delay (an operator setting) has passed, every
//!    kubelet has refreshed the Secret volumes; each running member is reloaded so PostgreSQL
//!    reads the bundle as its ssl_ca_file (it verifies the replication and rewind client
//!    certificates with it), and only then is every certificate re-issued from the new CA.
//! 3. Once every certificate chains to the new CA, every running member serves its new
//!    certificate and the delay has passed again since the last re-issue, the previous CA
//!    leaves the bundles and `previous.crt` is removed.
//!
//! A renewal starts only from the idle state, so two never overlap. Each write carries the
//! resourceVersion the decision was made on: a decision from a cache that has not seen the
//! last write yet fails with a conflict instead of making a second CA.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::apply::Changes;
use crate::cache::Caches;
use crate::children::secrets::{
    LEAF_CERTIFICATE_SECRETS, Pem, ca_bundle, certificate_not_after, chains_to, generate_ca,
    reissue, same_certificates,
};
use crate::error::{Error, Result};
use crate::naming;
use crate::settings::Settings;
use crate::tenant::{Tenant, TlsLifetimes};

/// The phase of a renewal in progress, on the CA Secret.
pub const PHASE_ANNOTATION: &str = "dfr.io/ca-renewal-phase";
/// When the phase began, or its bundles or certificates last changed (RFC 3339).
pub const SINCE_ANNOTATION: &str = "dfr.io/ca-renewal-since";
/// The previous CA certificate in the CA Secret while a renewal keeps it trusted.
pub const PREVIOUS_KEY: &str = "previous.crt";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Idle,
    TrustPublished,
    Reissued,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "Idle",
            Phase::TrustPublished => "TrustPublished",
            Phase::Reissued => "Reissued",
        }
    }
}

/// What the CA Secret says.
#[derive(Clone, Debug, PartialEq)]
pub struct CaState {
    pub current: Pem,
    pub previous: Option<String>,
    pub phase: Phase,
    pub since: Option<Timestamp>,
    /// Phase annotations without a previous CA: left by a renewal that was cut short.
    pub stale_annotations: bool,
}

impl CaState {
    pub fn from_secret(secret: &Secret) -> Self {
        let text = |key: &str| {
            secret
                .data
                .as_ref()
                .and_then(|data| data.get(key))
                .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
                .filter(|text| !text.trim().is_empty())
        };
        let annotations = secret.annotations();
        let previous = text(PREVIOUS_KEY);
        let phase = match (previous.is_some(), annotations.get(PHASE_ANNOTATION)) {
            (false, _) => Phase::Idle,
            (true, Some(phase)) if phase == Phase::Reissued.as_str() => Phase::Reissued,
            // A previous CA without a (known) phase: nothing is known to be re-issued yet.
            (true, _) => Phase::TrustPublished,
        };
        Self {
            current: Pem {
                certificate: text("tls.crt").unwrap_or_default(),
                key: text("tls.key").unwrap_or_default(),
            },
            stale_annotations: previous.is_none()
                && (annotations.contains_key(PHASE_ANNOTATION)
                    || annotations.contains_key(SINCE_ANNOTATION)),
            previous,
            phase,
            since: annotations
                .get(SINCE_ANNOTATION)
                .and_then(|since| since.parse().ok()),
        }
    }

    /// What every certificate Secret's ca.crt should hold now.
    pub fn bundle(&self) -> String {
        ca_bundle(&self.current.certificate, self.previous.as_deref())
    }

    /// status.caRenewal.
    pub fn status(&self) -> Option<dfr_crds::CaRenewalStatus> {
        (self.phase != Phase::Idle).then(|| dfr_crds::CaRenewalStatus {
            phase: self.phase.as_str().to_string(),
            since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                self.since.unwrap_or(Timestamp::UNIX_EPOCH),
            ),
        })
    }
}

/// One certificate Secret: its certificate and its ca.crt.
#[derive(Clone, Debug, PartialEq)]
pub struct Leaf {
    pub secret: String,
    pub certificate: String,
    pub ca_bundle: String,
}

/// The next thing a renewal does.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// No renewal is due or in progress.
    Idle,
    /// Make a new CA and publish the bundle of both.
    Renew,
    /// Set these Secrets' ca.crt to the bundle (and restart the wait, or start it when the
    /// time is unknown).
    PublishTrust(Vec<String>),
    /// Nothing to do before then.
    Wait(Timestamp),
    /// Re-issue these certificates from the new CA; from TrustPublished, reload every running
    /// member first so PostgreSQL trusts the new CA.
    Reissue(Vec<String>),
    /// Some running member still serves a certificate of the previous CA.
    WaitForMembers,
    /// End the renewal: the previous CA leaves the CA Secret.
    Prune,
    /// Set these Secrets' ca.crt to the CA alone: the last write of a finished renewal.
    TrimBundles(Vec<String>),
}

/// Whether the CA must be renewed: a certificate issued from it now (valid for tls.duration)
/// could outlive it once it is renewed tls.renewBefore before its own expiry. Unreadable
/// counts as due.
pub fn ca_due(ca_pem: &str, tls: TlsLifetimes, now: Timestamp) -> bool {
    let Some(not_after) = certificate_not_after(ca_pem) else {
        return true;
    };
    let margin = tls.duration.saturating_add(tls.renew_before);
    not_after.as_second() - now.as_second() <= i64::try_from(margin.as_secs()).unwrap_or(i64::MAX)
}

fn plus(time: Timestamp, delay: Duration) -> Timestamp {
    k8s_openapi::jiff::SignedDuration::try_from(delay)
        .ok()
        .and_then(|delay| time.checked_add(delay).ok())
        .unwrap_or(Timestamp::MAX)
}

/// The next step for a CA in `ca`, certificate Secrets `leaves`, `members_current` (every
/// running member serves the certificate its Secret holds; true without running members), at
/// `now`, waiting `delay` for a change to reach every pod.
pub fn decide(
    ca: &CaState,
    leaves: &[Leaf],
    members_current: bool,
    tls: TlsLifetimes,
    now: Timestamp,
    delay: Duration,
) -> Step {
    let current = &ca.current.certificate;
    if ca.phase == Phase::Idle {
        if ca.stale_annotations {
            return Step::Prune;
        }
        // Only certificates of the current CA: trimming the bundle of one that does not chain
        // to it would leave it untrusted.
        let untrimmed: Vec<String> = leaves
            .iter()
            .filter(|leaf| {
                !same_certificates(&leaf.ca_bundle, current)
                    && chains_to(&leaf.certificate, current)
            })
            .map(|leaf| leaf.secret.clone())
            .collect();
        if !untrimmed.is_empty() {
            return Step::TrimBundles(untrimmed);
        }
        return if ca_due(current, tls, now) {
            Step::Renew
        } else {
            Step::Idle
        };
    }
    let bundle = ca.bundle();
    let not_chaining: Vec<String> = leaves
        .iter()
        .filter(|leaf| !chains_to(&leaf.certificate, current))
        .map(|leaf| leaf.secret.clone())
        .collect();
    let untrusting: Vec<String> = leaves
        .iter()
        .filter(|leaf| !same_certificates(&leaf.ca_bundle, &bundle))
        .map(|leaf| leaf.secret.clone())
        .collect();
    if !untrusting.is_empty() {
        return Step::PublishTrust(untrusting);
    }
    let Some(since) = ca.since else {
        return Step::PublishTrust(Vec::new());
    };
    let settled = plus(since, delay);
    if ca.phase == Phase::Reissued && !not_chaining.is_empty() {
        return Step::Reissue(not_chaining);
    }
    if now < settled {
        return Step::Wait(settled);
    }
    match ca.phase {
        Phase::TrustPublished => Step::Reissue(not_chaining),
        _ if !members_current => Step::WaitForMembers,
        _ => Step::Prune,
    }
}

/// What one call of [`advance`] did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub changes: Changes,
    /// (reason, note) for an Event each.
    pub events: Vec<(&'static str, String)>,
    /// When to look again, if sooner than the regular resync.
    pub requeue: Option<Duration>,
}

/// Reloads every running member: PostgreSQL re-reads its certificate, key and CA files.
/// Implemented over the members' Patroni REST API by the caller.
pub trait Reloader {
    fn reload_all(&self) -> impl std::future::Future<Output = std::result::Result<(), String>>;
}

fn secret_text(secret: &Secret, key: &str) -> String {
    crate::children::secrets::secret_text(secret, key).unwrap_or_default()
}

/// Reads the CA state and certificate Secrets from the cache, takes the step [`decide`] names
/// and says what it did. Only a step that advances writes.
pub async fn advance(
    client: &Client,
    caches: &Caches,
    tenant: &Tenant,
    settings: &Settings,
    members_current: bool,
    reloader: &impl Reloader,
    now: Timestamp,
) -> Result<Outcome> {
    let namespace = &tenant.namespace;
    let mut outcome = Outcome::default();
    let Some(ca_secret) = caches.get::<Secret>(Some(namespace), naming::SECRET_TENANT_CA) else {
        return Ok(outcome);
    };
    let ca = CaState::from_secret(&ca_secret);
    let leaf_secrets: Vec<Secret> = LEAF_CERTIFICATE_SECRETS
        .iter()
        .filter_map(|name| caches.get::<Secret>(Some(namespace), name))
        .collect();
    let leaves: Vec<Leaf> = leaf_secrets
        .iter()
        .map(|secret| Leaf {
            secret: secret.name_any(),
            certificate: secret_text(secret, "tls.crt"),
            ca_bundle: secret_text(secret, "ca.crt"),
        })
        .collect();
    let leaf = |name: &str| leaf_secrets.iter().find(|secret| secret.name_any() == name);
    let delay = settings.certificate_propagation_delay;
    let step = decide(&ca, &leaves, members_current, tenant.tls, now, delay);
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let soon = Some(delay + Duration::from_secs(1));
    match step {
        Step::Idle => {}
        Step::Wait(until) => {
            let left = until.as_second().saturating_sub(now.as_second()).max(0);
            outcome.requeue = Some(Duration::from_secs(left.unsigned_abs() + 1));
        }
        Step::WaitForMembers => outcome.requeue = Some(crate::tls_reload::RECHECK),
        Step::TrimBundles(names) => {
            for name in names {
                if let Some(secret) = leaf(&name)
                    && write_trust(&api, secret, &ca.current.certificate).await?
                {
                    outcome
                        .changes
                        .applied
                        .push(format!("Secret/{name} (previous CA no longer trusted)"));
                }
            }
        }
        Step::Renew => {
            let new = generate_ca(tenant).map_err(|e| Error::SecretGeneration(e.to_string()))?;
            let previous = ca.current.certificate.clone();
            let written = write(
                &api,
                &ca_secret,
                json!({
                    "tls.crt": encode(&new.certificate),
                    "tls.key": encode(&new.key),
                    PREVIOUS_KEY: encode(&previous),
                }),
                json!({
                    PHASE_ANNOTATION: Phase::TrustPublished.as_str(),
                    SINCE_ANNOTATION: now.to_string(),
                }),
            )
            .await?;
            if !written {
                return Ok(outcome);
            }
            let bundle = ca_bundle(&new.certificate, Some(&previous));
            for secret in &leaf_secrets {
                write_trust(&api, secret, &bundle).await?;
            }
            outcome.changes.applied.push(format!(
                "Secret/{} (CA renewed; both CAs trusted)",
                naming::SECRET_TENANT_CA
            ));
            outcome.events.push((
                "CaRenewalStarted",
                format!(
                    "the tenant CA expires at {}: a new CA expiring at {} is trusted beside it in the ca.crt of {}; its certificates are issued from it in {} s at the earliest, once every pod sees both CAs",
                    certificate_not_after(&previous).map(|t| t.to_string()).unwrap_or_default(),
                    certificate_not_after(&new.certificate).map(|t| t.to_string()).unwrap_or_default(),
                    leaf_secrets.iter().map(ResourceExt::name_any).collect::<Vec<_>>().join(", "),
                    delay.as_secs(),
                ),
            ));
            outcome.requeue = soon;
        }
        Step::PublishTrust(names) => {
            let bundle = ca.bundle();
            for name in &names {
                if let Some(secret) = leaf(name) {
                    write_trust(&api, secret, &bundle).await?;
                }
            }
            let phase = if ca.phase == Phase::Idle {
                Phase::TrustPublished
            } else {
                ca.phase
            };
            if write_phase(&api, &ca_secret, phase, now).await? {
                outcome.changes.applied.push(format!(
                    "Secret/{} (CA bundle published to {})",
                    naming::SECRET_TENANT_CA,
                    if names.is_empty() {
                        "no Secret".to_string()
                    } else {
                        names.join(", ")
                    }
                ));
            }
            outcome.requeue = soon;
        }
        Step::Reissue(names) => {
            if ca.phase == Phase::TrustPublished
                && let Err(problem) = reloader.reload_all().await
            {
                outcome.events.push((
                    "CaRenewalWaiting",
                    format!("the new CA's certificates wait until every running member has reloaded the CA bundle: {problem}"),
                ));
                outcome.requeue = Some(crate::tls_reload::RECHECK);
                return Ok(outcome);
            }
            let bundle = ca.bundle();
            for name in &names {
                let Some(secret) = leaf(name) else { continue };
                let renewed = reissue(tenant, settings, name, &ca.current)
                    .map_err(|e| Error::SecretGeneration(e.to_string()))?;
                if !write(
                    &api,
                    secret,
                    json!({
                        "tls.crt": encode(&renewed.certificate),
                        "tls.key": encode(&renewed.key),
                        "ca.crt": encode(&bundle),
                    }),
                    Value::Null,
                )
                .await?
                {
                    return Ok(outcome);
                }
            }
            if !write_phase(&api, &ca_secret, Phase::Reissued, now).await? {
                return Ok(outcome);
            }
            outcome.changes.applied.push(format!(
                "Secret/{} (certificates re-issued from the new CA)",
                names.join(", ")
            ));
            outcome.events.push((
                "CertificatesReissued",
                format!(
                    "re-issued {} from the new tenant CA; the previous CA stays trusted until every running member serves its new certificate and {} s have passed",
                    if names.is_empty() { "no certificate (all were already)".to_string() } else { names.join(", ") },
                    delay.as_secs()
                ),
            ));
            outcome.requeue = soon;
        }
        Step::Prune => {
            let data = if ca.previous.is_some() {
                json!({PREVIOUS_KEY: null})
            } else {
                Value::Null
            };
            if !write(
                &api,
                &ca_secret,
                data,
                json!({PHASE_ANNOTATION: null, SINCE_ANNOTATION: null}),
            )
            .await?
            {
                return Ok(outcome);
            }
            for secret in &leaf_secrets {
                if chains_to(&secret_text(secret, "tls.crt"), &ca.current.certificate) {
                    write_trust(&api, secret, &ca.current.certificate).await?;
                }
            }
            outcome.changes.applied.push(format!(
                "Secret/{} (previous CA removed)",
                naming::SECRET_TENANT_CA
            ));
            if ca.previous.is_some() {
                outcome.events.push((
                    "CaRenewalCompleted",
                    format!(
                        "every certificate chains to the tenant CA expiring at {} and every running member serves its new certificate; the previous CA is no longer trusted",
                        certificate_not_after(&ca.current.certificate)
                            .map(|t| t.to_string())
                            .unwrap_or_default()
                    ),
                ));
            }
        }
    }
    Ok(outcome)
}

fn encode(text: &str) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text)
}

async fn write_phase(
    api: &Api<Secret>,
    secret: &Secret,
    phase: Phase,
    now: Timestamp,
) -> Result<bool> {
    write(
        api,
        secret,
        Value::Null,
        json!({PHASE_ANNOTATION: phase.as_str(), SINCE_ANNOTATION: now.to_string()}),
    )
    .await
}

/// The CA bundle a certificate Secret's clients trust, written to its ca.crt.
async fn write_trust(api: &Api<Secret>, secret: &Secret, bundle: &str) -> Result<bool> {
    write(api, secret, json!({"ca.crt": encode(bundle)}), Value::Null).await
}

/// A merge patch of `data` and `annotations` (null removes a key), conditional on the
/// resourceVersion the decision read: false when the Secret changed since.
async fn write(
    api: &Api<Secret>,
    secret: &Secret,
    data: Value,
    annotations: Value,
) -> Result<bool> {
    let name = secret.name_any();
    let mut metadata =
        BTreeMap::from([("resourceVersion", json!(secret.metadata.resource_version))]);
    if !annotations.is_null() {
        metadata.insert("annotations", annotations);
    }
    let mut patch = json!({ "metadata": metadata });
    if !data.is_null() {
        patch["data"] = data;
    }
    let params = PatchParams {
        field_manager: Some(naming::FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    match api.patch(&name, &params, &Patch::Merge(&patch)).await {
        Ok(_) => Ok(true),
        // The watch brings the newer version and another reconcile, which decides again.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(Error::kube(format!(
            "renewing the tenant CA: writing Secret {name}"
        ))(error)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::secrets::{SecretMaterial, reissue};
    use crate::children::tests::sample;
    use k8s_openapi::ByteString;

    const DELAY: Duration = Duration::from_secs(120);

    fn tenant() -> Tenant {
        sample("ton-prod.yaml")
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::now()
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds))
            .unwrap()
    }

    /// A fresh tenant's CA and leaves, as the Secrets hold them.
    fn fresh() -> (CaState, Vec<Leaf>) {
        let tenant = tenant();
        let material = SecretMaterial::generate(&tenant, &Settings::default()).unwrap();
        let ca = CaState {
            current: material.ca.clone(),
            previous: None,
            phase: Phase::Idle,
            since: None,
            stale_annotations: false,
        };
        let leaves = [
            (naming::SECRET_POSTGRES_TLS, &material.postgres_tls),
            (naming::SECRET_API_TLS, &material.api_tls),
            (naming::SECRET_REPLICATION_TLS, &material.replication_tls),
            (naming::SECRET_REWIND_TLS, &material.rewind_tls),
        ]
        .into_iter()
        .map(|(secret, pem)| Leaf {
            secret: secret.into(),
            certificate: pem.certificate.clone(),
            ca_bundle: material.ca.certificate.clone(),
        })
        .collect();
        (ca, leaves)
    }

    /// The state right after a renewal started at `since`.
    fn renewing(since: Timestamp) -> (CaState, Vec<Leaf>) {
        let (old, mut leaves) = fresh();
        let new = generate_ca(&tenant()).unwrap();
        let ca = CaState {
            current: new,
            previous: Some(old.current.certificate.clone()),
            phase: Phase::TrustPublished,
            since: Some(since),
            stale_annotations: false,
        };
        for leaf in &mut leaves {
            leaf.ca_bundle = ca.bundle();
        }
        (ca, leaves)
    }

    fn names(leaves: &[Leaf]) -> Vec<String> {
        leaves.iter().map(|leaf| leaf.secret.clone()).collect()
    }

    #[test]
    fn a_new_ca_lives_twice_the_certificate_lifetime_and_is_due_when_a_certificate_could_outlive_it()
     {
        let tenant = tenant();
        let ca = generate_ca(&tenant).unwrap();
        let now = Timestamp::now();
        let life = certificate_not_after(&ca.certificate).unwrap().as_second() - now.as_second();
        assert!((life - 2 * 2160 * 3600).abs() < 60, "{life} s");
        // 2160h duration + 720h renewBefore = 120 days: not due at 180 days left.
        assert!(!ca_due(&ca.certificate, tenant.tls, now));
        // Due 60 days on, when a 90-day certificate issued then plus its 30-day renewal margin
        // reaches the CA's expiry.
        assert!(!ca_due(&ca.certificate, tenant.tls, at(59 * 86_400)));
        assert!(ca_due(&ca.certificate, tenant.tls, at(60 * 86_400 + 60)));
        assert!(ca_due("no certificate", tenant.tls, now));
    }

    #[test]
    fn cas_of_one_tenant_are_told_apart_by_signature_not_name() {
        let tenant = tenant();
        let (a, b) = (generate_ca(&tenant).unwrap(), generate_ca(&tenant).unwrap());
        let leaf = reissue(
            &tenant,
            &Settings::default(),
            naming::SECRET_POSTGRES_TLS,
            &a,
        )
        .unwrap();
        assert!(chains_to(&leaf.certificate, &a.certificate));
        assert!(!chains_to(&leaf.certificate, &b.certificate));
        assert!(!chains_to("garbage", &a.certificate));
        assert!(!chains_to(&leaf.certificate, "garbage"));
    }

    #[test]
    fn a_bundle_holds_both_cas_current_first_and_compares_by_certificate() {
        let tenant = tenant();
        let (a, b) = (generate_ca(&tenant).unwrap(), generate_ca(&tenant).unwrap());
        let bundle = ca_bundle(&a.certificate, Some(&b.certificate));
        let certificates = crate::children::secrets::pem_certificates(&bundle);
        assert_eq!(certificates.len(), 2);
        assert_eq!(
            certificates[0],
            crate::children::secrets::pem_certificates(&a.certificate)[0]
        );
        assert!(same_certificates(&bundle, &bundle.replace('\n', "\r\n")));
        assert!(!same_certificates(&bundle, &a.certificate));
        assert!(!same_certificates(
            &bundle,
            &ca_bundle(&b.certificate, Some(&a.certificate))
        ));
        // Pruned: the current CA alone.
        assert!(same_certificates(
            &ca_bundle(&a.certificate, None),
            &a.certificate
        ));
        assert!(!same_certificates("", ""));
    }

    #[test]
    fn an_idle_ca_renews_only_when_due() {
        let (ca, leaves) = fresh();
        let tls = tenant().tls;
        assert_eq!(
            decide(&ca, &leaves, true, tls, Timestamp::now(), DELAY),
            Step::Idle
        );
        assert_eq!(
            decide(&ca, &leaves, true, tls, at(61 * 86_400), DELAY),
            Step::Renew
        );
    }

    #[test]
    fn the_new_ca_signs_nothing_until_every_secret_trusts_it_and_the_delay_passed() {
        let start = Timestamp::now();
        let (ca, mut leaves) = renewing(start);
        let tls = tenant().tls;
        // Right after the start, and until the delay has passed: wait.
        assert_eq!(
            decide(&ca, &leaves, true, tls, at(10), DELAY),
            Step::Wait(plus(start, DELAY))
        );
        // A Secret missed the bundle (the operator stopped between writes): publish it first,
        // which restarts the wait.
        leaves[2].ca_bundle = ca.previous.clone().unwrap();
        assert_eq!(
            decide(&ca, &leaves, true, tls, at(600), DELAY),
            Step::PublishTrust(vec![naming::SECRET_REPLICATION_TLS.into()])
        );
        leaves[2].ca_bundle = ca.bundle();
        // Delay passed: every certificate is re-issued (the driver reloads the members first),
        // whether or not members serve their current certificates.
        assert_eq!(
            decide(&ca, &leaves, false, tls, at(121), DELAY),
            Step::Reissue(names(&leaves))
        );
        // Unknown start time: it starts now.
        let unknown = CaState {
            since: None,
            ..ca.clone()
        };
        assert_eq!(
            decide(&unknown, &leaves, true, tls, at(600), DELAY),
            Step::PublishTrust(Vec::new())
        );
    }

    #[test]
    fn the_previous_ca_leaves_only_after_every_member_serves_the_new_certificates() {
        let start = Timestamp::now();
        let (mut ca, mut leaves) = renewing(start);
        let tls = tenant().tls;
        let settings = Settings::default();
        let reissued_at = at(130);
        for leaf in &mut leaves {
            leaf.certificate = reissue(&tenant(), &settings, &leaf.secret, &ca.current)
                .unwrap()
                .certificate;
        }
        ca.phase = Phase::Reissued;
        ca.since = Some(reissued_at);
        assert_eq!(
            decide(&ca, &leaves, true, tls, at(200), DELAY),
            Step::Wait(plus(reissued_at, DELAY))
        );
        assert_eq!(
            decide(&ca, &leaves, false, tls, at(260), DELAY),
            Step::WaitForMembers
        );
        assert_eq!(decide(&ca, &leaves, true, tls, at(260), DELAY), Step::Prune);
        // A certificate replaced by one of the previous CA is re-issued first.
        let (old, old_leaves) = fresh();
        let _ = old;
        leaves[1].certificate = old_leaves[1].certificate.clone();
        assert_eq!(
            decide(&ca, &leaves, true, tls, at(260), DELAY),
            Step::Reissue(vec![naming::SECRET_API_TLS.into()])
        );
    }

    #[test]
    fn a_finished_renewal_trims_the_bundles_and_never_overlaps_another() {
        let start = Timestamp::now();
        let (ca, mut leaves) = renewing(start);
        let tls = tenant().tls;
        for leaf in &mut leaves {
            leaf.certificate = reissue(&tenant(), &Settings::default(), &leaf.secret, &ca.current)
                .unwrap()
                .certificate;
        }
        // The CA Secret is pruned but the Secrets still hold both CAs: trim them.
        let idle = CaState {
            previous: None,
            phase: Phase::Idle,
            since: None,
            ..ca.clone()
        };
        assert_eq!(
            decide(&idle, &leaves, true, tls, at(300), DELAY),
            Step::TrimBundles(names(&leaves))
        );
        // A renewal in progress is never started again, however due the CA is.
        let far = at(400 * 86_400);
        assert!(ca_due(&ca.current.certificate, tls, far));
        assert!(!matches!(
            decide(&ca, &leaves, true, tls, far, DELAY),
            Step::Renew
        ));
        // Phase annotations without a previous CA are cleaned up.
        let stale = CaState {
            stale_annotations: true,
            ..idle
        };
        assert_eq!(
            decide(&stale, &leaves, true, tls, at(300), DELAY),
            Step::Prune
        );
    }

    #[test]
    fn the_state_is_read_from_the_ca_secret() {
        let mut secret = Secret::default();
        let data = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            )
        };
        secret.data = data(&[("tls.crt", "A"), ("tls.key", "K")]);
        let idle = CaState::from_secret(&secret);
        assert_eq!(idle.phase, Phase::Idle);
        assert_eq!(idle.status(), None);
        secret.data = data(&[("tls.crt", "A"), ("tls.key", "K"), (PREVIOUS_KEY, "B")]);
        assert_eq!(CaState::from_secret(&secret).phase, Phase::TrustPublished);
        secret.metadata.annotations = Some(BTreeMap::from([
            (PHASE_ANNOTATION.to_string(), "Reissued".to_string()),
            (
                SINCE_ANNOTATION.to_string(),
                "2026-12-01T00:00:00Z".to_string(),
            ),
        ]));
        let state = CaState::from_secret(&secret);
        assert_eq!(state.phase, Phase::Reissued);
        assert_eq!(state.status().unwrap().phase, "Reissued");
        assert_eq!(state.since, Some("2026-12-01T00:00:00Z".parse().unwrap()));
        secret.data = data(&[("tls.crt", "A"), ("tls.key", "K")]);
        let stale = CaState::from_secret(&secret);
        assert_eq!((stale.phase, stale.stale_annotations), (Phase::Idle, true));
    }
}
