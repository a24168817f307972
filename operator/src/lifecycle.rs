//! The explicit steps of a tenant's life: the namespace (adoption of retained data), the
//! generated Secrets (created once; only certificates are renewed in place) and the deletion
//! policy.

use std::collections::BTreeSet;

use dfr_crds::{DeletionPolicy, DfrCountry};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::apply::{Changes, apply_if_changed, owned_by, retained_for};
use crate::cache::Caches;
use crate::children::secrets::{Pem, SecretMaterial, desired_secrets, reissue, renewal_due};
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
    if naming::GENERATED_SECRETS
        .iter()
        .all(|name| existing.contains(*name))
    {
        return Ok(changes);
    }
    let material = SecretMaterial::generate(tenant, settings)
        .map_err(|error| Error::SecretGeneration(error.to_string()))?;
    let params = PostParams {
        field_manager: Some(naming::FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    for secret in desired_secrets(tenant, &material) {
        let name = secret.name_any();
        if existing.contains(&name) {
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

/// Renews the PostgreSQL and API certificates when they are within spec.tls.renewBefore of
/// expiry, from the tenant CA, so clients keep trusting them. The pods see the new files when
/// the kubelet refreshes the Secret volume.
pub async fn rotate_certificates(
    client: &Client,
    caches: &Caches,
    tenant: &Tenant,
    settings: &Settings,
) -> Result<Changes> {
    let namespace = tenant.namespace.clone();
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let text = |secret: &Secret, key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
            .unwrap_or_default()
    };
    let mut changes = Changes::default();
    let Some(ca) = caches.get::<Secret>(Some(&namespace), naming::SECRET_TENANT_CA) else {
        return Ok(changes);
    };
    let ca = Pem {
        certificate: text(&ca, "tls.crt"),
        key: text(&ca, "tls.key"),
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    for name in [naming::SECRET_POSTGRES_TLS, naming::SECRET_API_TLS] {
        let Some(secret) = caches.get::<Secret>(Some(&namespace), name) else {
            continue;
        };
        if !renewal_due(&text(&secret, "tls.crt"), tenant.tls.renew_before, now) {
            continue;
        }
        let renewed = reissue(tenant, settings, name, &ca)
            .map_err(|e| Error::SecretGeneration(e.to_string()))?;
        let encode =
            |value: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, value);
        let patch = json!({"data": {
            "tls.crt": encode(&renewed.certificate),
            "tls.key": encode(&renewed.key),
            "ca.crt": encode(&ca.certificate),
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
