//! The explicit steps of a tenant's life: the namespace (adoption of retained data), the
//! generated Secrets (created once; only certificates are renewed and the PII key ring rotated
//! in place) and the deletion policy.

use std::collections::BTreeSet;

use dfr_crds::{DeletionPolicy, DfrCountry};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::apply::{Changes, apply_if_changed, owned_by, retained_for};
use crate::cache::Caches;
use crate::children::secrets::{
    LEAF_CERTIFICATE_SECRETS, SecretMaterial, desired_secrets, lacks_names, reissue, renewal_due,
    tls_names,
};
use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::tenant::Tenant;
use crate::{labels, naming};

/// Creates or updates the tenant namespace, taking back one this tenant retained earlier.
pub async fn sync_namespace(
    client: &Client,
    caches: &Caches,
    tenant: &Tenant,
    desired: &Namespace,
) -> Result<Changes> {
    let api: Api<Namespace> = Api::all(client.clone());
    let name = tenant.namespace.clone();
    // Only namespaces with the operator's label are cached; any other one is read directly.
    let live = match caches.get::<Namespace>(None, &name) {
        Some(namespace) => Some(namespace),
        None => api
            .get_opt(&name)
            .await
            .map_err(Error::kube(format!("reading namespace {name}")))?,
    };
    let mut changes = Changes::default();
    match live {
        Some(ns) if ns.metadata.deletion_timestamp.is_some() => {
            return Err(Error::NamespaceTerminating(name));
        }
        Some(ns) if owned_by(&ns, &tenant.owner.uid) => {
            if apply_if_changed(&api, desired, Some(&ns)).await? {
                changes.applied.push(format!("Namespace/{name}"));
            }
        }
        Some(ns) if retained_for(&ns, &tenant.name) => {
            apply_if_changed(&api, desired, None).await?;
            release_retained_label::<Namespace>(&api, &name).await?;
            adopt_retained(client, tenant).await?;
            changes
                .applied
                .push(format!("Namespace/{name} (retained data taken back)"));
        }
        Some(ns) => {
            return Err(Error::NamespaceConflict {
                namespace: name,
                detail: foreign_owner(&ns),
            });
        }
        None => {
            apply_if_changed(&api, desired, None).await?;
            changes.applied.push(format!("Namespace/{name}"));
        }
    }
    Ok(changes)
}

fn foreign_owner(ns: &Namespace) -> String {
    let labels = ns.labels();
    match (labels.get(labels::MANAGED_BY), labels.get(labels::TENANT)) {
        (Some(manager), Some(tenant)) if manager == labels::OPERATOR_NAME => {
            format!("it belongs to DfrCountry {tenant}")
        }
        (Some(manager), _) => format!("it is managed by {manager}"),
        _ => "it was not created by the dfr-operator".to_string(),
    }
}

/// Secrets and volumes left by a Retain deletion lose their `retained` mark once taken back.
async fn adopt_retained(client: &Client, tenant: &Tenant) -> Result<()> {
    let namespace = &tenant.namespace;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let selector = format!(
        "{},{}=true",
        labels::children_selector(&tenant.name),
        labels::RETAINED
    );
    for secret in list(&secrets, &selector).await? {
        release_retained_label(&secrets, &secret.name_any()).await?;
    }
    for claim in list(&claims, &selector).await? {
        release_retained_label(&claims, &claim.name_any()).await?;
    }
    Ok(())
}

async fn list<K>(api: &Api<K>, selector: &str) -> Result<Vec<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    Ok(api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(Error::kube(format!("listing {}", K::plural(&()))))?
        .items)
}

async fn release_retained_label<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"labels": {labels::RETAINED: null}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(format!(
            "taking back retained {} {name}",
            K::kind(&())
        )))?;
    Ok(())
}

/// Creates the generated Secrets that do not exist yet. An existing Secret's passwords and keys
/// are already in use and are never regenerated (certificates are renewed in place by
/// [`rotate_certificates`]).
pub async fn ensure_secrets(
    client: &Client,
    caches: &Caches,
    tenant: &Tenant,
    settings: &Settings,
) -> Result<Changes> {
    let namespace = tenant.namespace.clone();
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let existing: BTreeSet<String> = caches
        .in_namespace::<Secret>(&namespace, &[(labels::TENANT, tenant.name.as_str())])
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let mut changes = Changes::default();
    // With spec.tls.issuerRef, cert-manager writes the certificate Secrets (crate::certificates).
    let wanted = crate::children::certificates::operator_generated_secrets(tenant);
    if wanted.iter().all(|name| existing.contains(*name)) {
        return Ok(changes);
    }
    let mut material = SecretMaterial::generate(tenant, settings)
        .map_err(|error| Error::SecretGeneration(error.to_string()))?;
    if let Some(ca) = caches.get::<Secret>(Some(&namespace), naming::SECRET_TENANT_CA) {
        let state = crate::ca_renewal::CaState::from_secret(&ca);
        // During a CA renewal the new CA may not be trusted everywhere yet; a missing
        // Secret comes back with the bundle of both, as its siblings have.
        let bundle = state.bundle();
        material = material
            .under_ca(tenant, settings, state.current, bundle)
            .map_err(|error| Error::SecretGeneration(error.to_string()))?;
    }
    let mut key_activated = None;
    if let Some(bootstrap) = &tenant.spec.bootstrap {
        // The restored rows are encrypted under the source's PII keys; a new key ring could
        // not read them.
        material.pii_keyring_json = source_pii_keyring(caches, &bootstrap.from_backup.country)?;
        // The keys are as old as the source's, which the PII key age alert must see.
        key_activated = source_pii_key_activated(caches, &bootstrap.from_backup.country);
    }
    let params = PostParams {
        field_manager: Some(naming::FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    for mut secret in desired_secrets(tenant, &material) {
        let name = secret.name_any();
        if name == naming::SECRET_API_PII_KEYS {
            crate::tenant_metrics::mark_key_activated(&mut secret, key_activated);
        }
        if existing.contains(&name) || !wanted.contains(&name.as_str()) {
            continue;
        }
        match api.create(&params, &secret).await {
            Ok(_) => changes.applied.push(format!("Secret/{name}")),
            // Ours and just created (the cache had not seen it yet), or someone else's.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = api
                    .get_opt(&name)
                    .await
                    .map_err(Error::kube(format!("reading Secret {name}")))?;
                let ours = existing.as_ref().is_some_and(|s| {
                    owned_by(s, &tenant.owner.uid) || retained_for(s, &tenant.name)
                });
                if !ours {
                    return Err(Error::ForeignObject {
                        kind: "Secret".into(),
                        namespace: namespace.clone(),
                        name,
                    });
                }
            }
            Err(error) => {
                return Err(Error::Kube {
                    action: format!("creating Secret {name}"),
                    source: error,
                });
            }
        }
    }
    Ok(changes)
}

fn secret_text(secret: &Secret, key: &str) -> String {
    crate::children::secrets::secret_text(secret, key).unwrap_or_default()
}

/// Renews the certificates the tenant CA issued (PostgreSQL, API, replication and rewind
/// roles) when they are within spec.tls.renewBefore of expiry, from the tenant CA, so clients
/// keep trusting them. The pods see the new files when the kubelet refreshes the Secret volume;
/// [`crate::tls_reload`] then has the PostgreSQL members reload them. While a renewal of the CA
/// is due or has published the new CA but not yet waited for every pod to trust it, nothing is
/// issued: [`crate::ca_renewal`] re-issues every certificate once that is safe.
pub async fn rotate_certificates(
    client: &Client,
    caches: &Caches,
    tenant: &Tenant,
    settings: &Settings,
) -> Result<Changes> {
    let namespace = tenant.namespace.clone();
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut changes = Changes::default();
    let Some(ca_secret) = caches.get::<Secret>(Some(&namespace), naming::SECRET_TENANT_CA) else {
        return Ok(changes);
    };
    let state = crate::ca_renewal::CaState::from_secret(&ca_secret);
    let now = k8s_openapi::jiff::Timestamp::now();
    // A CA due for renewal would issue certificates that outlive it; its renewal re-issues
    // every certificate from the new CA instead.
    if state.phase == crate::ca_renewal::Phase::TrustPublished
        || (state.phase == crate::ca_renewal::Phase::Idle
            && crate::ca_renewal::ca_due(&state.current.certificate, tenant.tls, now))
    {
        return Ok(changes);
    }
    let bundle = state.bundle();
    let ca = state.current;
    for &name in LEAF_CERTIFICATE_SECRETS {
        let Some(secret) = caches.get::<Secret>(Some(&namespace), name) else {
            continue;
        };
        let certificate = secret_text(&secret, "tls.crt");
        if !renewal_due(&certificate, tenant.tls.renew_before, now)
            && !lacks_names(&certificate, &tls_names(tenant, settings, name))
        {
            continue;
        }
        let renewed = reissue(tenant, settings, name, &ca)
            .map_err(|e| Error::SecretGeneration(e.to_string()))?;
        let encode =
            |value: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, value);
        let patch = json!({"data": {
            "tls.crt": encode(&renewed.certificate),
            "tls.key": encode(&renewed.key),
            "ca.crt": encode(&bundle),
        }});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(format!(
                "renewing the certificate in Secret {name}"
            )))?;
        changes
            .applied
            .push(format!("Secret/{name} (certificate renewed)"));
    }
    Ok(changes)
}

/// A PII key rotation made by [`rotate_pii_key`].
#[derive(Debug)]
pub struct PiiKeyRotation {
    /// The new active key and since when.
    pub key: dfr_crds::PiiKeyStatus,
    /// The key it replaced as the active one.
    pub previous: String,
}

/// Adds a new active key to the PII key ring once the active one has been in use for
/// spec.piiKeys.rotationPeriod, and records the time on the Secret for the age gauge and the
/// next rotation. Old keys stay in the ring and the blind index key is unchanged (see
/// [`crate::pii_keys`]). The API pods see the new ring when the kubelet refreshes the Secret
/// volume.
pub async fn rotate_pii_key(
    client: &Client,
    caches: &Caches,
    tenant: &Tenant,
    now: k8s_openapi::jiff::Timestamp,
) -> Result<Option<PiiKeyRotation>> {
    let namespace = tenant.namespace.clone();
    let name = naming::SECRET_API_PII_KEYS;
    let Some(secret) = caches.get::<Secret>(Some(&namespace), name) else {
        return Ok(None);
    };
    let Some(activated) = crate::tenant_metrics::key_activated(&secret) else {
        return Ok(None);
    };
    if !crate::pii_keys::until_rotation(activated, tenant.pii_key_rotation, now).is_zero() {
        return Ok(None);
    }
    let invalid = |problem: String| Error::PiiKeyRing {
        secret: format!("{namespace}/{name}"),
        problem,
    };
    let ring = secret_text(&secret, crate::pii_keys::KEYRING_FILE);
    let previous = crate::pii_keys::active_key_id(&ring).map_err(|e| invalid(e.to_string()))?;
    let rotated = crate::pii_keys::rotate(&ring, &crate::children::secrets::random_key_base64())
        .map_err(|e| invalid(e.to_string()))?;
    // The resourceVersion makes the write conditional: a ring read from a cache that has not
    // seen the last rotation yet would otherwise drop the key that rotation added.
    let patch = json!({
        "metadata": {
            "resourceVersion": secret.metadata.resource_version,
            "annotations": {crate::tenant_metrics::PII_KEY_ACTIVATED_AT: now.to_string()},
        },
        "data": {crate::pii_keys::KEYRING_FILE: k8s_openapi::ByteString(rotated.json.into_bytes())},
    });
    let params = PatchParams {
        field_manager: Some(naming::FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    match api.patch(name, &params, &Patch::Merge(&patch)).await {
        Ok(_) => Ok(Some(PiiKeyRotation {
            key: dfr_crds::PiiKeyStatus {
                id: rotated.active,
                activated_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
            },
            previous,
        })),
        // Changed since the cache saw it; the watch brings the new version and another
        // reconcile.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
        Err(error) => Err(Error::kube(format!(
            "rotating the PII key in Secret {name}"
        ))(error)),
    }
}

/// What deleting the DfrCountry does: Retain keeps the namespace, its volumes and Secrets
/// (dropping the owner references that would let the garbage collector remove them); Delete
/// removes the namespace and everything in it.
pub async fn apply_deletion_policy(client: &Client, country: &DfrCountry) -> Result<String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let name = naming::namespace(country);
    let Some(namespace) = namespaces
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("reading namespace {name}")))?
    else {
        return Ok(format!(
            "namespace {name} does not exist; nothing to keep or delete"
        ));
    };
    let owner_uid = country.metadata.uid.as_deref().unwrap_or_default();
    if !owned_by(&namespace, owner_uid) {
        return Ok(format!(
            "namespace {name} is not this DfrCountry's; left untouched"
        ));
    }
    match country.spec.deletion_policy {
        DeletionPolicy::Delete => {
            namespaces
                .delete(&name, &DeleteParams::background())
                .await
                .map_err(Error::kube(format!("deleting namespace {name}")))?;
            Ok(format!(
                "deletionPolicy Delete: namespace {name} and all its data are being deleted"
            ))
        }
        DeletionPolicy::Retain => {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &name);
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &name);
            let selector = labels::children_selector(&country.name_any());
            let kept_secrets = list(&secrets, &selector).await?;
            let kept_claims = list(&claims, &selector).await?;
            for secret in &kept_secrets {
                mark_retained(&secrets, &secret.name_any()).await?;
            }
            for claim in &kept_claims {
                mark_retained(&claims, &claim.name_any()).await?;
            }
            mark_retained(&namespaces, &name).await?;
            Ok(format!(
                "deletionPolicy Retain: kept namespace {name} with {} PersistentVolumeClaims and {} Secrets; apply a DfrCountry named {} again to take them back",
                kept_claims.len(),
                kept_secrets.len(),
                country.name_any()
            ))
        }
    }
}

async fn mark_retained<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch =
        json!({"metadata": {"ownerReferences": null, "labels": {labels::RETAINED: "true"}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(format!("retaining {} {name}", K::kind(&()))))?;
    Ok(())
}

/// Starts the backup runs the operator owes a tenant with an S3 repository: the first backup
/// once the database has a leader (so a new tenant is covered before its first scheduled run),
/// and the expiry of the sets the GFS retention no longer keeps. Each Job's name says what it
/// does, so a reconcile that comes again before the Job is seen starts nothing twice. Returns
/// (reason, note) for an Event per Job started.
pub async fn start_backup_runs(
    client: &Client,
    tenant: &Tenant,
    settings: &Settings,
    observed: &crate::status::Observed,
    country: &DfrCountry,
) -> Result<Vec<(&'static str, String)>> {
    use crate::children::backup;
    let Some(spec) = tenant.spec.backup.as_ref() else {
        return Ok(Vec::new());
    };
    if !backup::has_repository(tenant) || observed.primary.is_none() {
        return Ok(Vec::new());
    }
    let runs = &observed.backup_runs;
    let never_backed_up = country
        .status
        .as_ref()
        .and_then(|status| status.last_backup.as_ref())
        .is_none();
    let mut started = Vec::new();
    // Archiving checks may have run (and failed, before the database was up) already. A first
    // backup waits for the repository's Secrets, which the platform team creates once the
    // namespace exists; one that failed anyway is tried again after a pause, so a tenant never
    // waits for its schedule (perhaps a day) to have any backup.
    let first_backup_due = match runs.last_backup() {
        None => true,
        Some(run) => {
            !run.succeeded
                && run.job == backup::INITIAL_JOB
                && chrono::Utc::now() - run.finished
                    > chrono::Duration::seconds(FIRST_BACKUP_RETRY_SECONDS)
        }
    };
    if never_backed_up
        && first_backup_due
        && !runs.active
        && missing_repository_secret(client, tenant).await?.is_none()
    {
        if runs.last_backup().is_some() {
            let jobs: Api<k8s_openapi::api::batch::v1::Job> =
                Api::namespaced(client.clone(), &tenant.namespace);
            jobs.delete(backup::INITIAL_JOB, &kube::api::DeleteParams::background())
                .await
                .map_err(Error::kube(format!(
                    "deleting the failed Job {}",
                    backup::INITIAL_JOB
                )))?;
            started.push((
                "BackupRetrying",
                format!(
                    "the first backup failed; Job {} starts again",
                    backup::INITIAL_JOB
                ),
            ));
            // Created on the next reconcile, once the old Job is gone.
            return Ok(started);
        }
        let job = backup::operator_job(
            tenant,
            settings,
            backup::INITIAL_JOB,
            backup::RUN_BACKUP,
            Vec::new(),
        );
        if create_job(client, tenant, job).await? {
            started.push((
                "BackupStarted",
                format!("started the first backup, Job {}", backup::INITIAL_JOB),
            ));
        }
    }
    let expire = crate::backup::expiry(runs, &spec.retention);
    if !expire.is_empty() {
        let name = backup::expire_job_name(&expire);
        let job = backup::operator_job(tenant, settings, &name, backup::RUN_EXPIRE, expire.clone());
        if create_job(client, tenant, job).await? {
            started.push((
                "BackupsExpiring",
                format!(
                    "GFS retention expires {} backup set(s) with Job {name}: {}",
                    expire.len(),
                    expire.join(", ")
                ),
            ));
        }
    }
    Ok(started)
}

/// How long after a failed first backup the operator tries it again.
const FIRST_BACKUP_RETRY_SECONDS: i64 = 600;

/// The first of the repository's Secrets (name, key) that does not exist yet in the tenant
/// namespace.
async fn missing_repository_secret(
    client: &Client,
    tenant: &Tenant,
) -> Result<Option<(String, String)>> {
    let Some(backup) = tenant.spec.backup.as_ref() else {
        return Ok(None);
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &tenant.namespace);
    let mut needed = vec![(
        backup.encryption_key_secret_ref.name.clone(),
        backup.encryption_key_secret_ref.key.clone(),
    )];
    if let Some(s3) = &backup.destination.s3 {
        needed.push((s3.credentials_secret_ref.name.clone(), "accessKeyId".into()));
        needed.push((
            s3.credentials_secret_ref.name.clone(),
            "secretAccessKey".into(),
        ));
    }
    for (name, key) in needed {
        let secret = secrets
            .get_opt(&name)
            .await
            .map_err(Error::kube(format!("reading Secret {name}")))?;
        if !secret
            .and_then(|secret| secret.data)
            .is_some_and(|data| data.contains_key(&key))
        {
            return Ok(Some((name, key)));
        }
    }
    Ok(None)
}

/// Creates a Job; false when one of that name exists already.
async fn create_job(
    client: &Client,
    tenant: &Tenant,
    job: k8s_openapi::api::batch::v1::Job,
) -> Result<bool> {
    let api: Api<k8s_openapi::api::batch::v1::Job> =
        Api::namespaced(client.clone(), &tenant.namespace);
    let name = job.name_any();
    match api.create(&PostParams::default(), &job).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(response)) if response.code == 409 => Ok(false),
        Err(error) => Err(Error::kube(format!("creating Job {name}"))(error)),
    }
}

/// Since when the PII keys of the tenant named `source` have been active, if its Secret is left.
fn source_pii_key_activated(caches: &Caches, source: &str) -> Option<k8s_openapi::jiff::Timestamp> {
    let namespace = caches
        .namespaces
        .state()
        .iter()
        .find(|namespace| {
            namespace.labels().get(labels::TENANT).map(String::as_str) == Some(source)
        })
        .map(|namespace| namespace.name_any())?;
    let secret = caches.get::<Secret>(Some(&namespace), naming::SECRET_API_PII_KEYS)?;
    crate::tenant_metrics::key_activated(&secret)
}

/// The PII key ring of the tenant named `source`, from its namespace (which a Retain deletion
/// keeps, Secrets included).
fn source_pii_keyring(caches: &Caches, source: &str) -> Result<String> {
    let namespace = caches
        .namespaces
        .state()
        .iter()
        .find(|namespace| namespace.labels().get(labels::TENANT).map(String::as_str) == Some(source))
        .map(|namespace| namespace.name_any())
        .ok_or_else(|| {
            Error::RestoreRefused(format!(
                "no namespace of tenant {source} is left, so its PII key ring (Secret {}) cannot be copied; restored personal data would be unreadable",
                naming::SECRET_API_PII_KEYS
            ))
        })?;
    caches
        .get::<Secret>(Some(&namespace), naming::SECRET_API_PII_KEYS)
        .and_then(|secret| secret.data)
        .and_then(|data| data.get(crate::pii_keys::KEYRING_FILE).cloned())
        .and_then(|bytes| String::from_utf8(bytes.0).ok())
        .ok_or_else(|| {
            Error::RestoreRefused(format!(
                "Secret {namespace}/{} with key keyring.json is missing: restored personal data would be unreadable without it",
                naming::SECRET_API_PII_KEYS
            ))
        })
}

/// Refuses a point-in-time restore to a moment the source's backups cannot reach: before the
/// end of its oldest backup, or in the future. Checked once, before the database exists; when
/// the source DfrCountry is gone its window is unknown and pgBackRest has the last word.
pub async fn check_restore_target(client: &Client, caches: &Caches, tenant: &Tenant) -> Result<()> {
    let Some(from) = tenant.spec.bootstrap.as_ref().map(|b| &b.from_backup) else {
        return Ok(());
    };
    if caches
        .get::<k8s_openapi::api::apps::v1::StatefulSet>(Some(&tenant.namespace), naming::POSTGRES)
        .is_some()
    {
        return Ok(());
    }
    if let Some((name, key)) = missing_repository_secret(client, tenant).await? {
        return Err(Error::WaitingFor(format!(
            "waiting for Secret {}/{name} with key {key}: the restore from {} reads the repository with it; the database starts once it exists",
            tenant.namespace, from.country
        )));
    }
    let source = Api::<DfrCountry>::all(client.clone())
        .get_opt(&from.country)
        .await
        .map_err(Error::kube(format!("reading DfrCountry {}", from.country)))?;
    if source
        .as_ref()
        .and_then(|source| source.spec.backup.as_ref())
        .is_some_and(|backup| backup.destination.volume.is_some())
    {
        return Err(Error::RestoreRefused(format!(
            "{} keeps its backups on a volume that only its own namespace's repository host serves; restore from a tenant whose backups are on S3 (backup.destination.s3)",
            from.country
        )));
    }
    let Some(target) = from
        .target_time
        .as_deref()
        .and_then(|time| chrono::DateTime::parse_from_rfc3339(time).ok())
    else {
        return Ok(());
    };
    let first = source
        .as_ref()
        .and_then(|source| source.status.as_ref())
        .and_then(|status| status.backups.as_ref())
        .and_then(|backups| backups.first_recoverable_time.as_ref())
        .map(|time| time.0.as_second());
    let now = chrono::Utc::now();
    let window = |first: Option<i64>| {
        let start = first
            .and_then(|s| chrono::DateTime::<chrono::Utc>::from_timestamp(s, 0))
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "(no backup yet)".into());
        format!(
            "the recoverable window of {} is {start} to now ({})",
            from.country,
            now.to_rfc3339()
        )
    };
    if source.is_some() && first.is_none() {
        return Err(Error::RestoreRefused(format!(
            "{} has no backup yet, so there is nothing to restore to {target}",
            from.country
        )));
    }
    if first.is_some_and(|first| target.timestamp() < first) || target > now {
        return Err(Error::RestoreRefused(format!(
            "bootstrap.fromBackup.targetTime {target} is outside the recoverable window: {}",
            window(first)
        )));
    }
    Ok(())
}

/// Runs the DfrBackups of the tenant's namespace: a Job for each new one, its status from the
/// Job's pod. Returns (reason, note) for an Event per backup started or finished.
pub async fn run_backup_requests(
    client: &Client,
    caches: &Caches,
    tenant: &Tenant,
    settings: &Settings,
) -> Result<Vec<(&'static str, String)>> {
    use crate::children::backup;
    use dfr_crds::{BackupPhase, DfrBackup, DfrBackupStatus};
    let mut events = Vec::new();
    let requests = caches.in_namespace::<DfrBackup>(&tenant.namespace, &[]);
    let api: Api<DfrBackup> = Api::namespaced(client.clone(), &tenant.namespace);
    for request in requests {
        let current = request.status.clone();
        if current.as_ref().is_some_and(|s| s.phase.is_finished()) {
            continue;
        }
        let name = request.name_any();
        let job = backup::request_job_name(&name);
        let status = if !backup::has_repository(tenant) {
            DfrBackupStatus {
                phase: BackupPhase::Failed,
                message: Some(format!(
                    "RepositoryNotConfigured: DfrCountry {} has no backup repository (spec.backup)",
                    tenant.name
                )),
                ..DfrBackupStatus::default()
            }
        } else {
            let pods = caches.in_namespace::<k8s_openapi::api::core::v1::Pod>(
                &tenant.namespace,
                &[(backup::REQUEST_LABEL, name.as_str())],
            );
            let mut created = current.as_ref().is_some_and(|s| s.job.is_some());
            // One backup at a time: a request waits for a scheduled run to finish.
            let busy = runs_active_elsewhere(caches, tenant, &name);
            if pods.is_empty() && !created && busy {
                let waiting = DfrBackupStatus {
                    phase: BackupPhase::Pending,
                    message: Some("waiting for the backup run in progress to finish".into()),
                    ..DfrBackupStatus::default()
                };
                if current.as_ref() != Some(&waiting) {
                    patch_request_status(&api, &name, &waiting).await?;
                }
                continue;
            }
            if pods.is_empty() && !created {
                create_job(
                    client,
                    tenant,
                    backup::request_job(tenant, settings, &request),
                )
                .await?;
                created = true;
                events.push((
                    "BackupStarted",
                    format!(
                        "started DfrBackup {name} ({}) as Job {job}",
                        request.spec.r#type.as_str()
                    ),
                ));
            }
            crate::backup::requests::request_status(&job, created, &pods)
        };
        if current.as_ref() == Some(&status) {
            continue;
        }
        if status.phase.is_finished() {
            events.push((
                if status.phase == BackupPhase::Succeeded {
                    "BackupSucceeded"
                } else {
                    "BackupFailed"
                },
                format!(
                    "DfrBackup {name}: {}",
                    status.message.clone().unwrap_or_default()
                ),
            ));
        }
        patch_request_status(&api, &name, &status).await?;
    }
    Ok(events)
}

/// Whether a backup run other than the one of DfrBackup `request` is running.
fn runs_active_elsewhere(caches: &Caches, tenant: &Tenant, request: &str) -> bool {
    use crate::children::backup::{REQUEST_LABEL, RUN_BACKUP, RUN_LABEL};
    caches
        .in_namespace::<k8s_openapi::api::core::v1::Pod>(
            &tenant.namespace,
            &[
                (labels::TENANT, tenant.name.as_str()),
                (RUN_LABEL, RUN_BACKUP),
            ],
        )
        .iter()
        .filter(|pod| pod.labels().get(REQUEST_LABEL).map(String::as_str) != Some(request))
        .any(|pod| {
            !matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
}

async fn patch_request_status(
    api: &Api<dfr_crds::DfrBackup>,
    name: &str,
    status: &dfr_crds::DfrBackupStatus,
) -> Result<()> {
    use dfr_crds::DfrBackup;
    let body = json!({
        "apiVersion": DfrBackup::api_version(&()),
        "kind": DfrBackup::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(naming::FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::kube(format!(
        "writing the status of DfrBackup {name}"
    )))?;
    Ok(())
}
