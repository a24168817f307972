//! The checked view of one DfrCountry that builders, observe and status read. It is made once
//! per reconcile by [`crate::validate::validate`], so every value the spec carries as text
//! (durations, quantities) is parsed in one place and a bad one is one `InvalidSpec` error.

use std::time::Duration;

use dfr_crds::DfrCountrySpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// One tenant as the operator builds it: identity, the validated spec and parsed values.
#[derive(Clone, Debug, PartialEq)]
pub struct Tenant {
    /// The DfrCountry's name; children carry it in the `dfr.io/tenant` label.
    pub name: String,
    /// The tenant namespace (see [`crate::naming::namespace`]), where every child but the
    /// namespace itself lives.
    pub namespace: String,
    /// The controller owner reference every child carries.
    pub owner: OwnerReference,
    pub generation: Option<i64>,
    pub spec: DfrCountrySpec,
    pub tls: TlsLifetimes,
    /// spec.piiKeys.rotationPeriod: how long a PII key stays active.
    pub pii_key_rotation: Duration,
}

/// spec.tls durations, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsLifetimes {
    /// How long an issued certificate is valid.
    pub duration: Duration,
    /// How long before expiry a certificate is renewed.
    pub renew_before: Duration,
}
