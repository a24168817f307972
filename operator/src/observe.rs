//! Reads what the tenant's workloads report, for the status. Reads only.

use crate::tenant::Tenant;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Secret};

use crate::backup::Repository;
use crate::backup::report::Runs;
use crate::cache::Caches;
use crate::error::Result;
use crate::settings::Settings;
use crate::status::Observed;
use crate::{labels, naming};

pub async fn observe(caches: &Caches, tenant: &Tenant, settings: &Settings) -> Result<Observed> {
    let namespace = tenant.namespace.clone();
    let postgres = caches.get::<StatefulSet>(Some(&namespace), naming::POSTGRES);
    let api = caches.get::<Deployment>(Some(&namespace), naming::API);
    let tenant_name = tenant.name.clone();
    let leaders = caches.in_namespace::<Pod>(
        &namespace,
        &[
            (labels::NAME, labels::APP_POSTGRES),
            (labels::INSTANCE, tenant_name.as_str()),
            (labels::PATRONI_ROLE, labels::PATRONI_ROLE_PRIMARY),
        ],
    );
    let primary = leaders
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none() && pod_ready(pod))
        .find_map(|pod| pod.metadata.name.clone());

    let api_status = api.as_ref().and_then(|d| d.status.as_ref());
    let api_deployment_available =
        api_status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Available" && c.status == "True")
            });

    let self_issued = crate::children::certificates::self_issued(tenant);
    let (certificates, ca_renewal) = certificates(caches, &namespace, self_issued);
    // The earliest expiry among the CA and every certificate it issued: the one that would
    // break a connection first. A previous CA a renewal still trusts breaks nothing when it
    // expires (nothing it signed is left), so it does not count.
    let certificates_not_after = certificates
        .iter()
        .filter(|certificate| certificate.key != crate::ca_renewal::PREVIOUS_KEY)
        .map(|certificate| certificate.not_after.0)
        .min();

    let pii_key = pii_key(caches, &namespace);

    let backup_pods = caches.in_namespace::<Pod>(
        &namespace,
        &[
            (labels::TENANT, tenant_name.as_str()),
            (labels::COMPONENT, crate::children::backup::COMPONENT),
        ],
    );

    let members: Vec<crate::patroni_state::Member> = caches
        .in_namespace::<Pod>(
            &namespace,
            &[
                (labels::NAME, labels::APP_POSTGRES),
                (labels::INSTANCE, tenant_name.as_str()),
            ],
        )
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter_map(crate::patroni_state::Member::from_pod)
        .collect();
    let risk = crate::patroni_state::replication_risk(
        tenant,
        primary.as_deref(),
        &crate::patroni_state::synchronous_standbys(caches, &namespace),
        &members,
    );

    // An autoscaler left from before autoscaling was switched off is deleted this reconcile.
    let autoscaler = crate::autoscaling::observe(
        caches
            .get::<HorizontalPodAutoscaler>(Some(&namespace), naming::API)
            .filter(|_| tenant.spec.api_autoscaled())
            .as_ref(),
    );

    Ok(Observed {
        generation: tenant.generation,
        namespace,
        postgres_ready: postgres
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        postgres_desired: tenant.spec.postgres.instances,
        primary,
        api_available: api_status.and_then(|s| s.available_replicas).unwrap_or(0),
        api_desired: api
            .as_ref()
            .and_then(|d| d.spec.as_ref())
            .and_then(|s| s.replicas)
            .unwrap_or(tenant.spec.api.min_replicas),
        api_deployment_available,
        autoscaler,
        certificates_not_after,
        certificates,
        ca_renewal,
        certificates_served: None,
        certificates_not_ready: None,
        pii_key,
        problem: None,
        risk,
        suspended: tenant.spec.suspend,
        cluster_domain: settings.cluster_domain.clone(),
        renew_before: tenant.tls.renew_before,
        backup_repository: backup_repository(&tenant.spec),
        backup_runs: Runs::from_pods(&backup_pods),
        monitoring: None,
        maintenance: None,
    })
}

/// The expiry of the tenant CA, the previous CA while a renewal trusts it, and every
/// certificate the CA issued; and the renewal in progress.
/// Every certificate's expiry, and the CA renewal under way. The operator's own CA is in
/// dfr-tenant-ca (with the previous one during a renewal); with issuerRef cert-manager puts the
/// issuing CA in each Secret's ca.crt (where the issuer has one), and a dfr-tenant-ca left from
/// before is no longer used.
pub fn certificates(
    caches: &Caches,
    namespace: &str,
    self_issued: bool,
) -> (
    Vec<dfr_crds::CertificateStatus>,
    Option<dfr_crds::CaRenewalStatus>,
) {
    let mut found = Vec::new();
    let mut renewal = None;
    let own_ca = self_issued.then_some(naming::SECRET_TENANT_CA);
    let secrets = own_ca.into_iter().chain(
        crate::children::secrets::LEAF_CERTIFICATE_SECRETS
            .iter()
            .copied(),
    );
    for name in secrets {
        let Some(secret) = caches.get::<Secret>(Some(namespace), name) else {
            continue;
        };
        let mut keys = vec!["tls.crt"];
        if !self_issued {
            keys.push("ca.crt");
        }
        if name == naming::SECRET_TENANT_CA {
            keys.push(crate::ca_renewal::PREVIOUS_KEY);
            renewal = crate::ca_renewal::CaState::from_secret(&secret).status();
        }
        for key in keys {
            let not_after = secret
                .data
                .as_ref()
                .and_then(|data| data.get(key))
                .and_then(|pem| std::str::from_utf8(&pem.0).ok())
                .and_then(crate::children::secrets::certificate_not_after);
            if let Some(not_after) = not_after {
                found.push(dfr_crds::CertificateStatus {
                    secret: name.to_string(),
                    key: key.to_string(),
                    not_after: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(not_after),
                });
            }
        }
    }
    (found, renewal)
}

/// The active key of the tenant's PII key ring and since when it is active.
pub fn pii_key(caches: &Caches, namespace: &str) -> Option<dfr_crds::PiiKeyStatus> {
    let secret = caches.get::<Secret>(Some(namespace), naming::SECRET_API_PII_KEYS)?;
    let ring = secret
        .data
        .as_ref()?
        .get(crate::pii_keys::KEYRING_FILE)
        .and_then(|bytes| std::str::from_utf8(&bytes.0).ok())?;
    Some(dfr_crds::PiiKeyStatus {
        id: crate::pii_keys::active_key_id(ring).ok()?,
        activated_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            crate::tenant_metrics::key_activated(&secret)?,
        ),
    })
}

pub fn backup_repository(spec: &dfr_crds::DfrCountrySpec) -> Repository {
    match spec.backup.as_ref().map(|b| &b.destination) {
        None => Repository::None,
        Some(destination) if destination.s3.is_some() => Repository::S3,
        Some(_) => Repository::Volume,
    }
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}
