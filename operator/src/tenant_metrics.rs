//! Per-tenant gauges the alert rules need and no exporter provides: when the earliest
//! certificate expires (and when each one does), since when the PII key in use has been active, and how many reconciles
//! in a row have failed. Each is something the operator already knows; exposing it is all.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use prometheus::{IntGaugeVec, Opts, Registry};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// Set by whoever rotates the PII key ring (RFC 3339), since the key ring file carries no dates;
/// the operator sets it when it rotates on spec.piiKeys.rotationPeriod. Without it the Secret's
/// creation time counts: the operator made the first key then, and a rotation by hand that does
/// not set it keeps the alert firing, which is the safe side.
pub const PII_KEY_ACTIVATED_AT: &str = "dfr.io/pii-key-activated-at";

/// The (secret, key) label pairs of one tenant's certificate gauges.
type CertificateSeries = BTreeSet<(String, String)>;

#[derive(Clone)]
pub struct TenantGauges {
    certificate_expiry: IntGaugeVec,
    /// Per certificate: tenant, secret, key.
    certificate_not_after: IntGaugeVec,
    /// The (secret, key) series set per tenant, so one that is gone (a previous CA pruned)
    /// is removed rather than left at its last value.
    certificate_series: Arc<Mutex<HashMap<String, CertificateSeries>>>,
    pii_key_activated: IntGaugeVec,
    reconcile_failures: IntGaugeVec,
}

impl TenantGauges {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauge = |name: &str, help: &str| -> Result<IntGaugeVec, prometheus::Error> {
            let gauge = IntGaugeVec::new(Opts::new(name, help), &["tenant"])?;
            registry.register(Box::new(gauge.clone()))?;
            Ok(gauge)
        };
        let certificate_not_after = IntGaugeVec::new(
            Opts::new(
                "dfr_certificate_not_after_timestamp_seconds",
                "When each certificate of the tenant expires (Unix seconds), by Secret and key: the CA's tls.crt, previous.crt while a CA renewal trusts the previous CA, and each issued certificate",
            ),
            &["tenant", "secret", "key"],
        )?;
        registry.register(Box::new(certificate_not_after.clone()))?;
        Ok(Self {
            certificate_not_after,
            certificate_series: Arc::default(),
            certificate_expiry: gauge(
                "dfr_certificate_expiry_timestamp_seconds",
                "When the tenant's earliest certificate expires (Unix seconds)",
            )?,
            pii_key_activated: gauge(
                "dfr_pii_key_activated_timestamp_seconds",
                "Since when the tenant's active PII encryption key has been in use (Unix seconds)",
            )?,
            reconcile_failures: gauge(
                "dfr_operator_tenant_reconcile_failures",
                "Reconciles of the tenant that failed in a row; 0 after a success",
            )?,
        })
    }

    pub fn set_certificate_expiry(&self, tenant: &str, not_after: Option<Timestamp>) {
        if let Some(not_after) = not_after {
            self.certificate_expiry
                .with_label_values(&[tenant])
                .set(not_after.as_second());
        }
    }

    /// Every certificate's expiry, as status.certificates lists them.
    pub fn set_certificates(&self, tenant: &str, certificates: &[dfr_crds::CertificateStatus]) {
        let Ok(mut series) = self.certificate_series.lock() else {
            return;
        };
        let now: CertificateSeries = certificates
            .iter()
            .map(|c| (c.secret.clone(), c.key.clone()))
            .collect();
        let before = series
            .insert(tenant.to_string(), now.clone())
            .unwrap_or_default();
        for (secret, key) in before.difference(&now) {
            let _ = self
                .certificate_not_after
                .remove_label_values(&[tenant, secret, key]);
        }
        for certificate in certificates {
            self.certificate_not_after
                .with_label_values(&[tenant, &certificate.secret, &certificate.key])
                .set(certificate.not_after.0.as_second());
        }
    }

    pub fn set_pii_key_activated(&self, tenant: &str, since: Option<Timestamp>) {
        if let Some(since) = since {
            self.pii_key_activated
                .with_label_values(&[tenant])
                .set(since.as_second());
        }
    }

    pub fn set_reconcile_failures(&self, tenant: &str, failures: u32) {
        self.reconcile_failures
            .with_label_values(&[tenant])
            .set(i64::from(failures));
    }

    pub fn forget(&self, tenant: &str) {
        self.set_certificates(tenant, &[]);
        if let Ok(mut series) = self.certificate_series.lock() {
            series.remove(tenant);
        }
        for gauge in [
            &self.certificate_expiry,
            &self.pii_key_activated,
            &self.reconcile_failures,
        ] {
            let _ = gauge.remove_label_values(&[tenant]);
        }
    }
}

/// Since when the keys in a PII key ring Secret have been active.
pub fn key_activated(secret: &Secret) -> Option<Timestamp> {
    let annotated = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PII_KEY_ACTIVATED_AT))
        .and_then(|text| text.parse::<Timestamp>().ok());
    annotated.or_else(|| secret.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Records on a new key ring Secret since when its keys are active: a restored tenant copies
/// the source's key ring, whose age is the source's, not the new Secret's.
pub fn mark_key_activated(secret: &mut Secret, since: Option<Timestamp>) {
    if let Some(since) = since {
        secret
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(PII_KEY_ACTIVATED_AT.to_string(), since.to_string());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::collections::BTreeMap;

    #[test]
    fn the_annotation_wins_over_the_creation_time() {
        let mut secret = Secret::default();
        assert_eq!(key_activated(&secret), None);
        let created: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        secret.metadata.creation_timestamp = Some(Time(created));
        assert_eq!(key_activated(&secret), Some(created));
        secret.metadata.annotations = Some(BTreeMap::from([(
            PII_KEY_ACTIVATED_AT.to_string(),
            "2026-06-01T12:00:00Z".to_string(),
        )]));
        assert_eq!(
            key_activated(&secret),
            Some("2026-06-01T12:00:00Z".parse().unwrap())
        );
        // A value that is no time is ignored rather than read as "now".
        secret.metadata.annotations = Some(BTreeMap::from([(
            PII_KEY_ACTIVATED_AT.to_string(),
            "last week".to_string(),
        )]));
        assert_eq!(key_activated(&secret), Some(created));
    }

    #[test]
    fn a_copied_key_ring_keeps_the_age_of_its_source() {
        let mut source = Secret::default();
        source.metadata.creation_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
        let mut copy = Secret::default();
        copy.metadata.creation_timestamp = Some(Time("2026-11-30T00:00:00Z".parse().unwrap()));
        mark_key_activated(&mut copy, key_activated(&source));
        assert_eq!(key_activated(&copy), key_activated(&source));
        // Nothing known of the source: the copy's own creation time counts.
        let mut fresh = copy.clone();
        fresh.metadata.annotations = None;
        mark_key_activated(&mut fresh, None);
        assert_eq!(
            key_activated(&fresh),
            Some("2026-11-30T00:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn gauges_render_under_the_names_the_rules_use() {
        let registry = Registry::new();
        let gauges = TenantGauges::new(&registry).unwrap();
        gauges.set_certificate_expiry(
            "ton-prod",
            Some(Timestamp::from_second(1_800_000_000).unwrap()),
        );
        gauges.set_pii_key_activated(
            "ton-prod",
            Some(Timestamp::from_second(1_790_000_000).unwrap()),
        );
        gauges.set_reconcile_failures("ton-prod", 3);
        let certificate = |secret: &str, key: &str, second: i64| dfr_crds::CertificateStatus {
            secret: secret.into(),
            key: key.into(),
            not_after: Time(Timestamp::from_second(second).unwrap()),
        };
        gauges.set_certificates(
            "ton-prod",
            &[
                certificate("dfr-tenant-ca", "tls.crt", 1_810_000_000),
                certificate("dfr-tenant-ca", "previous.crt", 1_800_500_000),
                certificate("postgres-tls", "tls.crt", 1_800_000_000),
            ],
        );
        // The renewal ends: the previous CA's series goes.
        gauges.set_certificates(
            "ton-prod",
            &[
                certificate("dfr-tenant-ca", "tls.crt", 1_810_000_000),
                certificate("postgres-tls", "tls.crt", 1_800_000_001),
            ],
        );
        let mut text = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut text,
        )
        .unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains(
                "dfr_certificate_expiry_timestamp_seconds{tenant=\"ton-prod\"} 1800000000"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "dfr_pii_key_activated_timestamp_seconds{tenant=\"ton-prod\"} 1790000000"
            )
        );
        assert!(text.contains("dfr_operator_tenant_reconcile_failures{tenant=\"ton-prod\"} 3"));
        assert!(
            text.contains("dfr_certificate_not_after_timestamp_seconds{key=\"tls.crt\",secret=\"postgres-tls\",tenant=\"ton-prod\"} 1800000001"),
            "{text}"
        );
        assert!(text.contains("dfr_certificate_not_after_timestamp_seconds{key=\"tls.crt\",secret=\"dfr-tenant-ca\",tenant=\"ton-prod\"} 1810000000"));
        assert!(!text.contains("key=\"previous.crt\""), "{text}");
        gauges.forget("ton-prod");
        assert!(registry.gather().iter().all(|f| f.get_metric().is_empty()));
    }
}
