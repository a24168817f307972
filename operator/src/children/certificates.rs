//! cert-manager Certificates (cert-manager.io/v1) for a tenant whose spec.tls.issuerRef names an
//! Issuer or ClusterIssuer: one per leaf certificate the operator would otherwise issue from its
//! own tenant CA, writing the Secret of the same name, so the pods mount what cert-manager writes
//! without any change. Pure builders and the typed kind (only the fields the operator sets or
//! reads); [`crate::certificates`] applies them and reads their readiness.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::child_meta;
use super::secrets::{LEAF_CERTIFICATE_SECRETS, client_role, tls_names};
use crate::settings::Settings;
use crate::tenant::Tenant;
use crate::{labels, naming};

/// The group and version of the kinds below; discovery asks whether the cluster serves it.
pub const GROUP_VERSION: &str = "cert-manager.io/v1";

/// Annotation cert-manager puts on every Secret it writes, naming the Certificate.
pub const CERTIFICATE_NAME_ANNOTATION: &str = "cert-manager.io/certificate-name";

/// The Certificate's condition that says its Secret holds a valid certificate for its spec.
pub const READY: &str = "Ready";

/// A cert-manager Certificate, only the fields the operator sets and reads. Deserialising a live
/// object ignores the rest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// Always `cert-manager.io/v1`; a field so that server-side apply sees it.
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: CertificateSpec,
    /// Written by cert-manager; never applied (the builder leaves it empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CertificateStatus>,
}

impl k8s_openapi::Resource for Certificate {
    const API_VERSION: &'static str = GROUP_VERSION;
    const GROUP: &'static str = "cert-manager.io";
    const KIND: &'static str = "Certificate";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "certificates";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for Certificate {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    pub secret_name: String,
    pub common_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    /// Go durations, as spec.tls carries them.
    pub duration: String,
    pub renew_before: String,
    /// cert-manager's names of key usages and extended key usages ("server auth", ...).
    pub usages: Vec<String>,
    #[serde(rename = "isCA")]
    pub is_ca: bool,
    pub private_key: PrivateKey,
    pub issuer_ref: IssuerRef,
    pub secret_template: SecretTemplate,
}

/// The Issuer or ClusterIssuer, as spec.tls.issuerRef names it (every field set, so cert-manager's
/// own default kind, Issuer, never applies).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    pub name: String,
    pub kind: String,
    pub group: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateKey {
    pub algorithm: String,
    pub size: i32,
    pub rotation_policy: String,
}

/// Labels cert-manager copies onto the Secret it writes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    #[serde(default)]
    pub conditions: Vec<CertificateCondition>,
}

/// cert-manager's condition: unlike the meta/v1 Condition, reason and message are optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Certificate {
    pub fn new(metadata: ObjectMeta, spec: CertificateSpec) -> Self {
        Self {
            api_version: GROUP_VERSION.to_string(),
            kind: <Self as k8s_openapi::Resource>::KIND.to_string(),
            metadata,
            spec,
            status: None,
        }
    }

    /// The Ready condition, if cert-manager has written one.
    pub fn ready_condition(&self) -> Option<&CertificateCondition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|condition| condition.type_ == READY)
    }

    pub fn is_ready(&self) -> bool {
        self.ready_condition()
            .is_some_and(|condition| condition.status == "True")
    }

    /// What the Ready condition says, for a status message: "Ready is False (Reason: message)".
    pub fn readiness(&self) -> String {
        match self.ready_condition() {
            Some(condition) => format!(
                "Ready is {} ({}: {})",
                condition.status,
                condition.reason.as_deref().unwrap_or("no reason"),
                condition.message.as_deref().unwrap_or("no message"),
            ),
            None => "cert-manager has not reported on it yet (no Ready condition)".to_string(),
        }
    }
}

/// Usages of a server certificate. The same as the self-issued ones (see
/// [`super::secrets`]): PostgreSQL and Patroni's REST API serve with it and Patroni also
/// connects to its peers with it, so client auth too.
const SERVER_USAGES: &[&str] = &[
    "digital signature",
    "key encipherment",
    "server auth",
    "client auth",
];
/// Usages of a role's client certificate (PostgreSQL's `clientcert=verify-full`).
const CLIENT_USAGES: &[&str] = &["digital signature", "client auth"];

/// Whether the operator issues the tenant's certificates from its own CA (no issuerRef).
pub fn self_issued(tenant: &Tenant) -> bool {
    tenant.spec.tls.issuer_ref.is_none()
}

/// The Secrets the operator generates itself: all of [`naming::GENERATED_SECRETS`] when it runs
/// the tenant CA; with an issuerRef neither the CA nor the leaf certificates, which cert-manager
/// writes.
pub fn operator_generated_secrets(tenant: &Tenant) -> Vec<&'static str> {
    naming::GENERATED_SECRETS
        .iter()
        .copied()
        .filter(|name| {
            self_issued(tenant)
                || (*name != naming::SECRET_TENANT_CA && !LEAF_CERTIFICATE_SECRETS.contains(name))
        })
        .collect()
}

/// One Certificate per leaf Secret, named like its Secret, when spec.tls.issuerRef is set;
/// nothing otherwise.
pub fn desired_certificates(tenant: &Tenant, settings: &Settings) -> Vec<Certificate> {
    let Some(issuer_ref) = tenant.spec.tls.issuer_ref.as_ref() else {
        return Vec::new();
    };
    // The labels every generated Secret carries, so cert-manager's Secrets are watched, found
    // by the tenant's selectors and kept on a Retain deletion like the operator's own.
    let mut secret_labels = labels::tenant(tenant);
    secret_labels.insert(labels::COMPONENT.into(), "credentials".into());
    let mut certificate_labels = labels::tenant(tenant);
    certificate_labels.insert(labels::COMPONENT.into(), "certificates".into());
    LEAF_CERTIFICATE_SECRETS
        .iter()
        .map(|&secret| {
            let (common_name, usages) = match client_role(secret) {
                Some(role) => (role, CLIENT_USAGES),
                None if secret == naming::SECRET_API_TLS => (naming::API, SERVER_USAGES),
                None => (naming::POSTGRES_RW, SERVER_USAGES),
            };
            Certificate::new(
                child_meta(tenant, secret, certificate_labels.clone()),
                CertificateSpec {
                    secret_name: secret.to_string(),
                    common_name: common_name.to_string(),
                    dns_names: tls_names(tenant, settings, secret),
                    duration: tenant.spec.tls.duration.clone(),
                    renew_before: tenant.spec.tls.renew_before.clone(),
                    usages: usages.iter().map(ToString::to_string).collect(),
                    is_ca: false,
                    private_key: PrivateKey {
                        algorithm: "ECDSA".into(),
                        size: 256,
                        // A new key with every certificate, as the self-issued renewal does.
                        rotation_policy: "Always".into(),
                    },
                    issuer_ref: IssuerRef {
                        name: issuer_ref.name.clone(),
                        kind: issuer_ref.kind.clone(),
                        group: issuer_ref.group.clone(),
                    },
                    secret_template: SecretTemplate {
                        labels: secret_labels.clone(),
                    },
                },
            )
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::tests::sample;

    fn with_issuer() -> Tenant {
        let mut tenant = sample("ton-prod.yaml");
        tenant.spec.tls.issuer_ref = Some(dfr_crds::IssuerRef {
            name: "platform-ca".into(),
            kind: "ClusterIssuer".into(),
            group: "cert-manager.io".into(),
        });
        tenant.spec.tls.duration = "2160h".into();
        tenant.spec.tls.renew_before = "720h".into();
        tenant
    }

    fn by_name(certificates: &[Certificate], name: &str) -> Certificate {
        certificates
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .cloned()
            .unwrap()
    }

    #[test]
    fn no_issuer_ref_no_certificates_and_every_secret_is_generated() {
        let tenant = sample("ton-prod.yaml");
        assert!(self_issued(&tenant));
        assert!(desired_certificates(&tenant, &Settings::default()).is_empty());
        assert_eq!(
            operator_generated_secrets(&tenant),
            naming::GENERATED_SECRETS
        );
    }

    #[test]
    fn one_certificate_per_leaf_secret_writing_that_secret() {
        let tenant = with_issuer();
        let certificates = desired_certificates(&tenant, &Settings::default());
        let names: Vec<_> = certificates
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, LEAF_CERTIFICATE_SECRETS);
        for certificate in &certificates {
            assert_eq!(
                Some(certificate.spec.secret_name.as_str()),
                certificate.metadata.name.as_deref()
            );
            assert_eq!(certificate.spec.issuer_ref.name, "platform-ca");
            assert_eq!(certificate.spec.duration, "2160h");
            assert_eq!(certificate.spec.renew_before, "720h");
            assert!(!certificate.spec.is_ca);
            assert_eq!(certificate.spec.private_key.algorithm, "ECDSA");
            assert_eq!(certificate.spec.private_key.size, 256);
            assert_eq!(certificate.spec.private_key.rotation_policy, "Always");
            let meta = &certificate.metadata;
            assert_eq!(meta.namespace.as_deref(), Some("dfr-ton-prod"));
            assert_eq!(
                meta.owner_references.as_ref().unwrap()[0].controller,
                Some(true)
            );
            let template = &certificate.spec.secret_template.labels;
            assert_eq!(template[labels::MANAGED_BY], labels::OPERATOR_NAME);
            assert_eq!(template[labels::TENANT], "ton-prod");
            assert_eq!(template[labels::COMPONENT], "credentials");
        }
    }

    #[test]
    fn server_certificates_carry_the_services_names_and_both_auth_usages() {
        let tenant = with_issuer();
        let settings = Settings::default();
        let certificates = desired_certificates(&tenant, &settings);
        let postgres = by_name(&certificates, naming::SECRET_POSTGRES_TLS);
        assert_eq!(postgres.spec.common_name, naming::POSTGRES_RW);
        assert_eq!(
            postgres.spec.dns_names,
            tls_names(&tenant, &settings, naming::SECRET_POSTGRES_TLS)
        );
        assert!(
            postgres
                .spec
                .dns_names
                .contains(&"*.postgres-headless.dfr-ton-prod.svc.cluster.local".to_string())
        );
        assert_eq!(postgres.spec.usages, SERVER_USAGES);
        let api = by_name(&certificates, naming::SECRET_API_TLS);
        assert_eq!(api.spec.common_name, naming::API);
        assert!(
            api.spec
                .dns_names
                .contains(&"dfr-api.dfr-ton-prod.svc".to_string()),
            "{:?}",
            api.spec.dns_names
        );
    }

    #[test]
    fn role_certificates_name_their_role_and_only_authenticate_clients() {
        let certificates = desired_certificates(&with_issuer(), &Settings::default());
        for (secret, role) in [
            (naming::SECRET_REPLICATION_TLS, naming::REPLICATION_USER),
            (naming::SECRET_REWIND_TLS, naming::REWIND_USER),
        ] {
            let certificate = by_name(&certificates, secret);
            assert_eq!(certificate.spec.common_name, role);
            assert!(certificate.spec.dns_names.is_empty());
            assert_eq!(
                certificate.spec.usages,
                ["digital signature", "client auth"]
            );
        }
    }

    #[test]
    fn with_an_issuer_the_operator_generates_neither_ca_nor_leaves() {
        let generated = operator_generated_secrets(&with_issuer());
        assert!(!generated.contains(&naming::SECRET_TENANT_CA));
        for leaf in LEAF_CERTIFICATE_SECRETS {
            assert!(!generated.contains(leaf), "{leaf}");
        }
        assert!(generated.contains(&naming::SECRET_POSTGRES_SUPERUSER));
        assert!(generated.contains(&naming::SECRET_API_PII_KEYS));
    }

    #[test]
    fn the_applied_form_is_cert_managers_and_has_no_status() {
        let certificate = by_name(
            &desired_certificates(&with_issuer(), &Settings::default()),
            naming::SECRET_REWIND_TLS,
        );
        let json = serde_json::to_value(&certificate).unwrap();
        assert_eq!(json["apiVersion"], "cert-manager.io/v1");
        assert_eq!(json["kind"], "Certificate");
        assert_eq!(json["spec"]["isCA"], false);
        assert_eq!(json["spec"]["secretName"], naming::SECRET_REWIND_TLS);
        assert_eq!(json["spec"]["privateKey"]["rotationPolicy"], "Always");
        assert_eq!(json["spec"]["issuerRef"]["kind"], "ClusterIssuer");
        assert!(json.get("status").is_none());
        assert!(json["spec"].get("dnsNames").is_none());
    }

    #[test]
    fn readiness_reads_the_ready_condition() {
        let mut certificate = Certificate::default();
        assert!(!certificate.is_ready());
        assert!(certificate.readiness().contains("no Ready condition"));
        certificate.status = Some(CertificateStatus {
            conditions: vec![CertificateCondition {
                type_: READY.into(),
                status: "False".into(),
                reason: Some("DoesNotExist".into()),
                message: Some("Issuing certificate as Secret does not exist".into()),
            }],
        });
        assert!(!certificate.is_ready());
        assert_eq!(
            certificate.readiness(),
            "Ready is False (DoesNotExist: Issuing certificate as Secret does not exist)"
        );
        certificate.status.as_mut().unwrap().conditions[0].status = "True".into();
        assert!(certificate.is_ready());
    }
}
