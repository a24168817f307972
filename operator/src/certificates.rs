//! Certificates from cert-manager, for a tenant whose spec.tls.issuerRef names an Issuer or
//! ClusterIssuer. The operator applies one Certificate per leaf Secret (see
//! [`crate::children::certificates`]) and cert-manager writes those Secrets (tls.crt, tls.key,
//! ca.crt) under the same names the pods mount; the operator neither creates nor renews the
//! tenant CA or those Secrets then. Until a Secret exists the reconcile stops before the
//! workloads with a reason naming the Certificate and what its Ready condition says.
//!
//! Certificates have no watch cache: the operator must start on a cluster without cert-manager,
//! and a watch on a kind the cluster does not serve fails. Each reconcile of such a tenant reads
//! its four Certificates (for their status) and writes only where they differ; a tenant without
//! issuerRef costs no request here. cert-manager's Secrets carry the tenant labels (the
//! Certificates' secretTemplate), so the Secret watch brings the tenant back when one is
//! written.
//!
//! Switching: setting issuerRef on a tenant that ran its own CA makes the Certificates take over
//! the existing Secrets; cert-manager re-issues each at once, since a Secret without its
//! annotations does not match the Certificate. The old dfr-tenant-ca Secret is left in place,
//! unused. Removing issuerRef deletes the operator's Certificates and re-issues every Secret
//! cert-manager had written from the tenant CA (created if the tenant never had one) in the same
//! reconcile, dropping cert-manager's annotations ([`hand_back`]).

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::apply::{Changes, apply_uncached, owned_by};
use crate::cache::Caches;
use crate::children::certificates::{
    CERTIFICATE_NAME_ANNOTATION, Certificate, GROUP_VERSION, desired_certificates, self_issued,
};
use crate::children::secrets::{LEAF_CERTIFICATE_SECRETS, Pem, reissue};
use crate::discovery::Discovery;
use crate::error::{Error, Result};
use crate::naming;
use crate::settings::Settings;
use crate::tenant::Tenant;

/// The prefix of the annotations cert-manager puts on the Secrets it writes.
const CERT_MANAGER_ANNOTATION_PREFIX: &str = "cert-manager.io/";

/// Asks whether the cluster serves cert-manager's Certificate kind.
pub fn discovery() -> Discovery {
    Discovery::new(GROUP_VERSION, &["certificates"])
}

/// What each of the tenant's Certificates reported, as read before this reconcile's apply:
/// (name, Ready is True, what its Ready condition says).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Readiness(pub Vec<(String, bool, String)>);

impl Readiness {
    fn of(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(certificate, _, _)| certificate == name)
            .map(|(_, _, readiness)| readiness.clone())
            .unwrap_or_else(|| "it was created just now".to_string())
    }

    /// For the CertificatesValid condition: every Certificate that is not Ready, or None.
    pub fn not_ready_message(&self) -> Option<String> {
        let not_ready: Vec<String> = self
            .0
            .iter()
            .filter(|(_, ready, _)| !ready)
            .map(|(name, _, readiness)| format!("Certificate {name}: {readiness}"))
            .collect();
        (!not_ready.is_empty()).then(|| {
            format!(
                "{} (spec.tls.issuerRef; the Secrets keep what cert-manager last wrote)",
                not_ready.join("; ")
            )
        })
    }
}

/// Applies the tenant's Certificates when spec.tls.issuerRef is set, and returns what they
/// report. Fails when the cluster does not serve cert-manager's kind.
pub async fn sync(
    client: &Client,
    discovery: &Discovery,
    tenant: &Tenant,
    settings: &Settings,
) -> Result<(Changes, Readiness)> {
    let mut changes = Changes::default();
    let mut readiness = Readiness::default();
    let desired = desired_certificates(tenant, settings);
    if desired.is_empty() {
        return Ok((changes, readiness));
    }
    if !discovery.installed(client).await? {
        return Err(Error::CertManagerAbsent(discovery.group_version()));
    }
    for certificate in &desired {
        let name = certificate.name_any();
        let (applied, live) = apply_uncached(client, tenant, certificate).await?;
        if applied {
            changes.applied.push(format!("Certificate/{name}"));
        }
        if let Some(live) = live {
            readiness.0.push((name, live.is_ready(), live.readiness()));
        }
    }
    Ok((changes, readiness))
}

/// Stops the reconcile before the workloads while cert-manager has not written one of the
/// Secrets they mount: the pods could not start, and the status says which Certificate waits
/// and why. Nothing to wait for without issuerRef.
pub fn check_issued(caches: &Caches, tenant: &Tenant, readiness: &Readiness) -> Result<()> {
    if self_issued(tenant) {
        return Ok(());
    }
    for &name in LEAF_CERTIFICATE_SECRETS {
        let written = caches
            .get::<Secret>(Some(&tenant.namespace), name)
            .and_then(|secret| secret.data)
            .is_some_and(|data| data.get("tls.crt").is_some_and(|pem| !pem.0.is_empty()));
        if !written {
            return Err(Error::CertificateNotIssued {
                namespace: tenant.namespace.clone(),
                name: name.to_string(),
                readiness: readiness.of(name),
            });
        }
    }
    Ok(())
}

/// After spec.tls.issuerRef is removed: each leaf Secret cert-manager wrote (it carries
/// cert-manager's annotation) loses its Certificate, so cert-manager stops writing it, and gets
/// a certificate from the tenant CA instead, so every member trusts the same CA again at once.
/// Waits a reconcile when the tenant CA's Secret is not in the cache yet (just created).
pub async fn hand_back(
    client: &Client,
    caches: &Caches,
    tenant: &Tenant,
    settings: &Settings,
) -> Result<Changes> {
    let mut changes = Changes::default();
    if !self_issued(tenant) {
        return Ok(changes);
    }
    let namespace = tenant.namespace.clone();
    for &name in LEAF_CERTIFICATE_SECRETS {
        let Some(secret) = caches.get::<Secret>(Some(&namespace), name) else {
            continue;
        };
        let Some(certificate) = secret
            .annotations()
            .get(CERTIFICATE_NAME_ANNOTATION)
            .cloned()
        else {
            continue;
        };
        let Some(ca) = tenant_ca(caches, &namespace) else {
            return Ok(changes);
        };
        delete_certificate(client, tenant, &certificate).await?;
        let renewed = reissue(tenant, settings, name, &ca)
            .map_err(|error| Error::SecretGeneration(error.to_string()))?;
        let mut annotations = serde_json::Map::new();
        for key in secret.annotations().keys() {
            if key.starts_with(CERT_MANAGER_ANNOTATION_PREFIX) {
                annotations.insert(key.clone(), serde_json::Value::Null);
            }
        }
        let bytes = |text: &str| k8s_openapi::ByteString(text.as_bytes().to_vec());
        let patch = json!({
            "metadata": {"annotations": annotations},
            "data": {
                "tls.crt": bytes(&renewed.certificate),
                "tls.key": bytes(&renewed.key),
                "ca.crt": bytes(&ca.certificate),
            },
        });
        let params = PatchParams {
            field_manager: Some(naming::FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        Api::<Secret>::namespaced(client.clone(), &namespace)
            .patch(name, &params, &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(format!(
                "re-issuing Secret {name} from the tenant CA"
            )))?;
        changes.applied.push(format!(
            "Secret/{name} (re-issued from the tenant CA; spec.tls.issuerRef was removed)"
        ));
    }
    Ok(changes)
}

/// Deletes the operator's Certificate of that name, if there is one (none, or the kind not
/// served, is fine).
async fn delete_certificate(client: &Client, tenant: &Tenant, name: &str) -> Result<()> {
    let api: Api<Certificate> = Api::namespaced(client.clone(), &tenant.namespace);
    let live = api
        .get_opt(name)
        .await
        .map_err(Error::kube(format!("reading Certificate {name}")))?;
    if live.is_some_and(|certificate| owned_by(&certificate, &tenant.owner.uid)) {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(Error::kube(format!("deleting Certificate {name}"))(error)),
        }
    }
    Ok(())
}

/// The tenant CA the operator runs, if its Secret exists.
fn tenant_ca(caches: &Caches, namespace: &str) -> Option<Pem> {
    let secret = caches.get::<Secret>(Some(namespace), naming::SECRET_TENANT_CA)?;
    let data = secret.data?;
    let text = |key: &str| {
        data.get(key)
            .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
            .filter(|text| !text.is_empty())
    };
    Some(Pem {
        certificate: text("tls.crt")?,
        key: text("tls.key")?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_certificates_that_are_not_ready_are_named() {
        let mut readiness = Readiness(vec![
            (
                "postgres-tls".into(),
                true,
                "Ready is True (Ready: ok)".into(),
            ),
            (
                "dfr-api-tls".into(),
                false,
                "Ready is False (Pending: issuer platform-ca not found)".into(),
            ),
        ]);
        let message = readiness.not_ready_message().unwrap();
        assert!(message.starts_with(
            "Certificate dfr-api-tls: Ready is False (Pending: issuer platform-ca not found)"
        ));
        assert!(!message.contains("postgres-tls"));
        assert_eq!(readiness.of("dfr-api-tls"), readiness.0[1].2);
        assert_eq!(
            readiness.of("postgres-rewind-tls"),
            "it was created just now"
        );
        readiness.0.remove(1);
        assert_eq!(readiness.not_ready_message(), None);
    }
}
