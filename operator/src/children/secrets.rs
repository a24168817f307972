//! Credentials, keys and certificates a tenant needs, generated once with a CSPRNG. The
//! reconciler creates the Secrets that do not exist and never regenerates one: its passwords and
//! keys are already in use by the database and the API. Certificates are renewed and the PII key
//! ring gains keys in place (see [`crate::lifecycle`]).

use std::collections::BTreeMap;

use crate::tenant::Tenant;
use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rand::Rng;
use rand::distr::Alphanumeric;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::child_meta;
use crate::settings::Settings;
use crate::{labels, naming};

const PASSWORD_LENGTH: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// A certificate and its private key, PEM encoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Pem {
    pub certificate: String,
    pub key: String,
}

/// Everything generated for one tenant. Only [`SecretMaterial::generate`] is impure.
#[derive(Clone, Debug)]
pub struct SecretMaterial {
    pub superuser_password: String,
    pub replication_password: String,
    pub patroni_api_password: String,
    pub owner_password: String,
    pub app_password: String,
    pub jwt_private_key_pem: String,
    pub pii_keyring_json: String,
    pub ca: Pem,
    /// What every certificate Secret's ca.crt holds: the CA, and while a CA renewal is in
    /// progress the previous CA too.
    pub ca_bundle: String,
    pub postgres_tls: Pem,
    pub api_tls: Pem,
    pub rewind_password: String,
    /// Client certificates of the replication and rewind roles (CN = the role).
    pub replication_tls: Pem,
    pub rewind_tls: Pem,
    pub bootstrap_admin_password: String,
    /// Base32, as authenticator apps take it.
    pub bootstrap_admin_totp_secret: String,
}

fn password() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(PASSWORD_LENGTH)
        .map(char::from)
        .collect()
}

/// 160 random bits, base32 without padding (RFC 6238's recommended TOTP key size).
fn totp_secret() -> String {
    let bytes: [u8; 20] = rand::rng().random();
    base32::encode(base32::Alphabet::Rfc4648 { padding: false }, &bytes)
}

/// 32 random bytes, base64: an AES-256 key or the blind index key of the PII key ring.
pub fn random_key_base64() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The key ring format the API server reads (DFR_PII_KEYRING_FILE).
pub fn pii_keyring(active: &str, key: &str, blind_index_key: &str) -> String {
    serde_json::json!({
        "active": active,
        "keys": { active: key },
        "blind_index_key": blind_index_key,
    })
    .to_string()
}

/// DNS names of a Service: short, namespaced and fully qualified.
pub fn service_names(service: &str, namespace: &str, domain: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        naming::cluster_dns(service, namespace, domain),
    ]
}

/// How far back a certificate's validity starts, for clocks that run behind.
const CLOCK_SLACK_SECONDS: i64 = 300;

fn validity(params: &mut CertificateParams, lifetime: std::time::Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::seconds(CLOCK_SLACK_SECONDS);
    params.not_after = now + lifetime;
}

/// A new tenant CA, valid for twice spec.tls.duration: it is renewed (see
/// [`crate::ca_renewal`]) once a certificate issued under it could outlive it, which is on the
/// same cadence as its certificates, so the renewal runs regularly rather than once in years.
/// Its name carries the time it was made, so two CAs of a tenant differ by name as well as by
/// key.
pub fn generate_ca(tenant: &Tenant) -> Result<Pem, SecretsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    let made = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ");
    params.distinguished_name.push(
        DnType::CommonName,
        format!("dfr {} CA {made}", tenant.namespace),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, tenant.tls.duration * 2);
    let certificate = params.self_signed(&key)?;
    Ok(Pem {
        certificate: certificate.pem(),
        key: key.serialize_pem(),
    })
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    names: Vec<String>,
    lifetime: std::time::Duration,
) -> Result<Pem, SecretsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    validity(&mut params, lifetime);
    let certificate = params.signed_by(&key, issuer)?;
    Ok(Pem {
        certificate: certificate.pem(),
        key: key.serialize_pem(),
    })
}

/// A certificate that authenticates a database role: PostgreSQL's `clientcert=verify-full`
/// compares its common name with the role.
fn client_leaf(
    issuer: &Issuer<'_, KeyPair>,
    role: &str,
    lifetime: std::time::Duration,
) -> Result<Pem, SecretsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, role);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params, lifetime);
    let certificate = params.signed_by(&key, issuer)?;
    Ok(Pem {
        certificate: certificate.pem(),
        key: key.serialize_pem(),
    })
}

/// Every Secret holding a certificate the tenant CA issued, renewed by the same rules.
pub const LEAF_CERTIFICATE_SECRETS: &[&str] = &[
    naming::SECRET_POSTGRES_TLS,
    naming::SECRET_API_TLS,
    naming::SECRET_REPLICATION_TLS,
    naming::SECRET_REWIND_TLS,
];

/// The database role a client-certificate Secret authenticates, if it is one.
pub fn client_role(secret: &str) -> Option<&'static str> {
    match secret {
        naming::SECRET_REPLICATION_TLS => Some(naming::REPLICATION_USER),
        naming::SECRET_REWIND_TLS => Some(naming::REWIND_USER),
        _ => None,
    }
}

/// The DNS names a TLS Secret's certificate is for (none for a client certificate).
pub fn tls_names(tenant: &Tenant, settings: &Settings, secret: &str) -> Vec<String> {
    let namespace = tenant.namespace.clone();
    let domain = &settings.cluster_domain;
    if client_role(secret).is_some() {
        return Vec::new();
    }
    if secret == naming::SECRET_API_TLS {
        return service_names(naming::API, &namespace, domain);
    }
    let mut names = Vec::new();
    for service in [
        naming::POSTGRES_RW,
        naming::POSTGRES_RO,
        naming::POSTGRES_HEADLESS,
        // The repository host of a volume repository serves with this certificate too.
        naming::POSTGRES_REPOSITORY,
    ] {
        names.extend(service_names(service, &namespace, domain));
    }
    names.push(format!(
        "*.{}",
        naming::cluster_dns(naming::POSTGRES_HEADLESS, &namespace, domain)
    ));
    names.push("localhost".into());
    names
}

/// Whether a certificate is within `renew_before` of its expiry (or unreadable).
pub fn renewal_due(
    certificate_pem: &str,
    renew_before: std::time::Duration,
    now: k8s_openapi::jiff::Timestamp,
) -> bool {
    match certificate_not_after(certificate_pem) {
        Some(not_after) => {
            not_after.as_second() - now.as_second()
                <= i64::try_from(renew_before.as_secs()).unwrap_or(i64::MAX)
        }
        None => true,
    }
}

/// A new certificate and key for a TLS Secret, from the tenant CA that signed the old one, so
/// clients that trust the CA keep working through the renewal.
pub fn reissue(
    tenant: &Tenant,
    settings: &Settings,
    secret: &str,
    ca: &Pem,
) -> Result<Pem, SecretsError> {
    let lifetime = tenant.tls.duration;
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.certificate, ca_key)?;
    if let Some(role) = client_role(secret) {
        return client_leaf(&issuer, role, lifetime);
    }
    let common_name = if secret == naming::SECRET_API_TLS {
        naming::API
    } else {
        naming::POSTGRES_RW
    };
    leaf(
        &issuer,
        common_name,
        tls_names(tenant, settings, secret),
        lifetime,
    )
}

impl SecretMaterial {
    pub fn generate(tenant: &Tenant, settings: &Settings) -> Result<Self, SecretsError> {
        let lifetime = tenant.tls.duration;

        let ca = generate_ca(tenant)?;
        let issuer = Issuer::from_ca_cert_pem(&ca.certificate, KeyPair::from_pem(&ca.key)?)?;

        let postgres_tls = leaf(
            &issuer,
            naming::POSTGRES_RW,
            tls_names(tenant, settings, naming::SECRET_POSTGRES_TLS),
            lifetime,
        )?;
        let api_tls = leaf(
            &issuer,
            naming::API,
            tls_names(tenant, settings, naming::SECRET_API_TLS),
            lifetime,
        )?;
        let replication_tls = client_leaf(&issuer, naming::REPLICATION_USER, lifetime)?;
        let rewind_tls = client_leaf(&issuer, naming::REWIND_USER, lifetime)?;

        Ok(Self {
            superuser_password: password(),
            replication_password: password(),
            patroni_api_password: password(),
            owner_password: password(),
            app_password: password(),
            jwt_private_key_pem: KeyPair::generate()?.serialize_pem(),
            pii_keyring_json: pii_keyring("k1", &random_key_base64(), &random_key_base64()),
            ca_bundle: ca.certificate.clone(),
            ca,
            postgres_tls,
            api_tls,
            rewind_password: password(),
            replication_tls,
            rewind_tls,
            bootstrap_admin_password: password(),
            bootstrap_admin_totp_secret: totp_secret(),
        })
    }

    /// The same material with every certificate issued by the tenant's existing CA instead: a
    /// Secret added by a newer operator must chain to the CA the members already trust.
    /// `ca_bundle` is what the existing Secrets' ca.crt holds (both CAs during a renewal).
    pub fn under_ca(
        self,
        tenant: &Tenant,
        settings: &Settings,
        ca: Pem,
        ca_bundle: String,
    ) -> Result<Self, SecretsError> {
        let issue = |secret: &str| reissue(tenant, settings, secret, &ca);
        Ok(Self {
            postgres_tls: issue(naming::SECRET_POSTGRES_TLS)?,
            api_tls: issue(naming::SECRET_API_TLS)?,
            replication_tls: issue(naming::SECRET_REPLICATION_TLS)?,
            rewind_tls: issue(naming::SECRET_REWIND_TLS)?,
            ca,
            ca_bundle,
            ..self
        })
    }
}

fn secret(tenant: &Tenant, name: &str, type_: Option<&str>, data: &[(&str, &str)]) -> Secret {
    let mut secret_labels = labels::tenant(tenant);
    secret_labels.insert(labels::COMPONENT.into(), "credentials".into());
    Secret {
        metadata: child_meta(tenant, name, secret_labels),
        type_: type_.map(ToString::to_string),
        data: Some(
            data.iter()
                .map(|(key, value)| (key.to_string(), ByteString(value.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    }
}

pub fn desired_secrets(tenant: &Tenant, material: &SecretMaterial) -> Vec<Secret> {
    let login = |name: &str, user: &str, password: &str| {
        secret(
            tenant,
            name,
            None,
            &[("username", user), ("password", password)],
        )
    };
    let tls = |name: &str, pem: &Pem| {
        secret(
            tenant,
            name,
            Some("kubernetes.io/tls"),
            &[
                ("tls.crt", &pem.certificate),
                ("tls.key", &pem.key),
                ("ca.crt", &material.ca_bundle),
            ],
        )
    };
    vec![
        login(
            naming::SECRET_POSTGRES_SUPERUSER,
            naming::SUPERUSER,
            &material.superuser_password,
        ),
        login(
            naming::SECRET_POSTGRES_REPLICATION,
            naming::REPLICATION_USER,
            &material.replication_password,
        ),
        login(
            naming::SECRET_POSTGRES_REWIND,
            naming::REWIND_USER,
            &material.rewind_password,
        ),
        tls(naming::SECRET_REPLICATION_TLS, &material.replication_tls),
        tls(naming::SECRET_REWIND_TLS, &material.rewind_tls),
        login(
            naming::SECRET_PATRONI_API,
            naming::PATRONI_API_USER,
            &material.patroni_api_password,
        ),
        login(
            naming::SECRET_DB_OWNER,
            naming::DB_OWNER_USER,
            &material.owner_password,
        ),
        login(
            naming::SECRET_DB_APP,
            naming::DB_APP_USER,
            &material.app_password,
        ),
        secret(
            tenant,
            naming::SECRET_API_JWT,
            None,
            &[("private.pem", &material.jwt_private_key_pem)],
        ),
        secret(
            tenant,
            naming::SECRET_API_PII_KEYS,
            None,
            &[(crate::pii_keys::KEYRING_FILE, &material.pii_keyring_json)],
        ),
        secret(
            tenant,
            naming::SECRET_TENANT_CA,
            Some("kubernetes.io/tls"),
            &[
                ("tls.crt", &material.ca.certificate),
                ("tls.key", &material.ca.key),
            ],
        ),
        tls(naming::SECRET_POSTGRES_TLS, &material.postgres_tls),
        tls(naming::SECRET_API_TLS, &material.api_tls),
        secret(
            tenant,
            naming::SECRET_API_BOOTSTRAP_ADMIN,
            None,
            &[
                ("username", naming::BOOTSTRAP_ADMIN_USER),
                ("password", &material.bootstrap_admin_password),
                ("totp-secret", &material.bootstrap_admin_totp_secret),
            ],
        ),
    ]
}

/// The UTF-8 text under `key` of a Secret, if it has one.
pub fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
}

/// Whether a certificate misses one of the DNS names it must now carry (a name added by a newer
/// operator, such as the repository host's), or cannot be read: it is then reissued.
pub fn lacks_names(certificate_pem: &str, wanted: &[String]) -> bool {
    let Ok((_, parsed)) = x509_parser::pem::parse_x509_pem(certificate_pem.as_bytes()) else {
        return true;
    };
    let Ok(certificate) = parsed.parse_x509() else {
        return true;
    };
    let present: Vec<String> = match certificate.subject_alternative_name() {
        Ok(Some(extension)) => extension
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    wanted.iter().any(|name| !present.contains(name))
}

/// The DER of every certificate in a PEM text, in order.
pub fn pem_certificates(pem: &str) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .filter(|block| block.label == "CERTIFICATE")
        .map(|block| block.contents)
        .collect()
}

/// Whether two PEM texts hold the same certificates in the same order (whitespace and line
/// ends aside). An empty text matches nothing.
pub fn same_certificates(a: &str, b: &str) -> bool {
    let a = pem_certificates(a);
    !a.is_empty() && a == pem_certificates(b)
}

/// A ca.crt bundle: the current CA first, then the previous one a renewal still trusts.
pub fn ca_bundle(current: &str, previous: Option<&str>) -> String {
    let mut bundle = current.trim_end().to_string();
    bundle.push('\n');
    if let Some(previous) = previous {
        bundle.push_str(previous.trim_end());
        bundle.push('\n');
    }
    bundle
}

/// Whether the (first) certificate of `leaf_pem` was signed by the CA of `ca_pem`: its issuer
/// is the CA's subject and the CA's key verifies its signature. A name alone would not tell
/// two CAs of the same tenant apart.
pub fn chains_to(leaf_pem: &str, ca_pem: &str) -> bool {
    let (Some(leaf), Some(ca)) = (
        pem_certificates(leaf_pem).into_iter().next(),
        pem_certificates(ca_pem).into_iter().next(),
    ) else {
        return false;
    };
    let (Ok((_, leaf)), Ok((_, ca))) = (
        x509_parser::parse_x509_certificate(&leaf),
        x509_parser::parse_x509_certificate(&ca),
    ) else {
        return false;
    };
    leaf.issuer() == ca.subject() && leaf.verify_signature(Some(ca.public_key())).is_ok()
}

/// When the operator issued a certificate: its notBefore plus the clock slack it starts with.
pub fn certificate_issued_at(pem: &str) -> Option<k8s_openapi::jiff::Timestamp> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let certificate = parsed.parse_x509().ok()?;
    k8s_openapi::jiff::Timestamp::from_second(
        certificate.validity().not_before.timestamp() + CLOCK_SLACK_SECONDS,
    )
    .ok()
}

/// When a PEM certificate expires, for status.certificatesNotAfter.
pub fn certificate_not_after(pem: &str) -> Option<k8s_openapi::jiff::Timestamp> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let certificate = parsed.parse_x509().ok()?;
    k8s_openapi::jiff::Timestamp::from_second(certificate.validity().not_after.timestamp()).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::tests::sample;

    fn material() -> SecretMaterial {
        SecretMaterial::generate(&sample("ton-prod.yaml"), &Settings::default()).unwrap()
    }

    #[test]
    fn passwords_are_long_random_and_never_repeat() {
        let (a, b) = (material(), material());
        for password in [
            &a.superuser_password,
            &a.replication_password,
            &a.owner_password,
            &a.app_password,
        ] {
            assert_eq!(password.len(), PASSWORD_LENGTH);
            assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
        }
        assert_ne!(a.app_password, b.app_password);
        assert_ne!(a.app_password, a.owner_password);
        assert_ne!(a.pii_keyring_json, b.pii_keyring_json);
    }

    #[test]
    fn every_generated_secret_is_named_and_labelled() {
        let secrets = desired_secrets(&sample("ton-prod.yaml"), &material());
        let names: Vec<String> = secrets
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, naming::GENERATED_SECRETS);
        for secret in &secrets {
            assert_eq!(
                secret.metadata.labels.as_ref().unwrap()[labels::COMPONENT],
                "credentials"
            );
        }
    }

    #[test]
    fn the_database_certificate_is_issued_by_the_tenant_ca_for_its_services() {
        let material = material();
        let (_, ca) = x509_parser::pem::parse_x509_pem(material.ca.certificate.as_bytes()).unwrap();
        let ca = ca.parse_x509().unwrap();
        let (_, leaf) =
            x509_parser::pem::parse_x509_pem(material.postgres_tls.certificate.as_bytes()).unwrap();
        let leaf = leaf.parse_x509().unwrap();
        assert_eq!(leaf.issuer(), ca.subject());
        leaf.verify_signature(Some(ca.public_key())).unwrap();
        let names = format!(
            "{:?}",
            leaf.subject_alternative_name().unwrap().unwrap().value
        );
        assert!(
            names.contains("postgres-rw.dfr-ton-prod.svc.cluster.local"),
            "{names}"
        );
        assert!(
            names.contains("*.postgres-headless.dfr-ton-prod.svc.cluster.local"),
            "{names}"
        );
    }

    #[test]
    fn role_certificates_name_their_role_and_serve_no_host() {
        let material = material();
        let (_, ca) = x509_parser::pem::parse_x509_pem(material.ca.certificate.as_bytes()).unwrap();
        let ca = ca.parse_x509().unwrap();
        for (pem, role) in [
            (&material.replication_tls, naming::REPLICATION_USER),
            (&material.rewind_tls, naming::REWIND_USER),
        ] {
            let (_, leaf) = x509_parser::pem::parse_x509_pem(pem.certificate.as_bytes()).unwrap();
            let leaf = leaf.parse_x509().unwrap();
            leaf.verify_signature(Some(ca.public_key())).unwrap();
            let common_name = leaf.subject().iter_common_name().next().unwrap();
            assert_eq!(common_name.as_str().unwrap(), role);
            let usage = leaf.extended_key_usage().unwrap().unwrap().value;
            assert!(usage.client_auth && !usage.server_auth);
            assert!(leaf.subject_alternative_name().unwrap().is_none());
        }
    }

    #[test]
    fn material_under_an_existing_ca_chains_every_certificate_to_it() {
        let tenant = sample("ton-prod.yaml");
        let settings = Settings::default();
        let existing = material();
        let fresh = material()
            .under_ca(
                &tenant,
                &settings,
                existing.ca.clone(),
                existing.ca.certificate.clone(),
            )
            .unwrap();
        assert_eq!(fresh.ca.certificate, existing.ca.certificate);
        let (_, ca) = x509_parser::pem::parse_x509_pem(existing.ca.certificate.as_bytes()).unwrap();
        let ca = ca.parse_x509().unwrap();
        for pem in [
            &fresh.postgres_tls,
            &fresh.api_tls,
            &fresh.replication_tls,
            &fresh.rewind_tls,
        ] {
            let (_, leaf) = x509_parser::pem::parse_x509_pem(pem.certificate.as_bytes()).unwrap();
            leaf.parse_x509()
                .unwrap()
                .verify_signature(Some(ca.public_key()))
                .unwrap();
        }
    }

    #[test]
    fn a_certificate_without_a_name_the_tenant_now_needs_is_reissued() {
        let tenant = sample("ton-prod.yaml");
        let settings = Settings::default();
        let pem = &material().postgres_tls.certificate;
        let wanted = tls_names(&tenant, &settings, naming::SECRET_POSTGRES_TLS);
        assert!(!lacks_names(pem, &wanted));
        assert!(wanted.iter().any(|name| name.starts_with("postgres-repo.")));
        let mut more = wanted.clone();
        more.push("postgres-new.dfr-ton-prod.svc".into());
        assert!(lacks_names(pem, &more));
        assert!(lacks_names("not a certificate", &wanted));
    }

    #[test]
    fn certificates_live_as_long_as_the_spec_says() {
        let material = material();
        let not_after = certificate_not_after(&material.postgres_tls.certificate).unwrap();
        let lifetime = not_after.as_second() - k8s_openapi::jiff::Timestamp::now().as_second();
        let expected = 2160 * 3600;
        assert!((lifetime - expected).abs() < 120, "{lifetime} s");
    }

    #[test]
    fn a_reissued_certificate_comes_from_the_same_ca_and_is_not_due() {
        let tenant = sample("ton-prod.yaml");
        let material = material();
        let renewed = reissue(
            &tenant,
            &Settings::default(),
            naming::SECRET_POSTGRES_TLS,
            &material.ca,
        )
        .unwrap();
        let (_, ca) = x509_parser::pem::parse_x509_pem(material.ca.certificate.as_bytes()).unwrap();
        let ca = ca.parse_x509().unwrap();
        let (_, leaf) = x509_parser::pem::parse_x509_pem(renewed.certificate.as_bytes()).unwrap();
        leaf.parse_x509()
            .unwrap()
            .verify_signature(Some(ca.public_key()))
            .unwrap();
        let now = k8s_openapi::jiff::Timestamp::now();
        let month = std::time::Duration::from_secs(720 * 3600);
        assert!(!renewal_due(&renewed.certificate, month, now));
        assert!(renewal_due(
            &renewed.certificate,
            std::time::Duration::from_secs(2200 * 3600),
            now
        ));
        assert!(renewal_due("not a certificate", month, now));
    }

    #[test]
    fn the_jwt_key_is_a_pkcs8_p256_key() {
        let material = material();
        assert!(
            material
                .jwt_private_key_pem
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        let key = KeyPair::from_pem(&material.jwt_private_key_pem).unwrap();
        assert!(std::ptr::eq(
            key.algorithm(),
            &rcgen::PKCS_ECDSA_P256_SHA256
        ));
    }
}
