//! spec.tls.issuerRef against a real control plane, under the shipped ClusterRole, with
//! cert-manager's own CRDs (tests/fixtures/cert-manager) so the real schemas validate what the
//! operator applies. cert-manager's controller cannot run here, so the test plays its part: it
//! writes each Secret as cert-manager's CA issuer would (kubernetes.io/tls with tls.crt, tls.key
//! and ca.crt, cert-manager's annotations) and marks the Certificate Ready through the status
//! subresource. Then removing issuerRef hands the Secrets back to the tenant CA.
//!
//! One test, in a binary of its own: it installs cluster-wide CRDs, which other tests must not
//! see appear mid-run (cargo runs test binaries one after another).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use dfr_crds::{DfrCountry, IssuerRef};
use dfr_operator::children::certificates::Certificate;
use dfr_operator::children::secrets::{LEAF_CERTIFICATE_SECRETS, certificate_not_after};
use dfr_operator::naming;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Client, ResourceExt};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(90);
const PLURALS: [&str; 3] = ["certificates", "issuers", "clusterissuers"];
/// The field manager cert-manager's issuing controller writes Secrets under.
const CERT_MANAGER_MANAGER: &str = "cert-manager-certificates-issuing";

async fn install_cert_manager_crds(admin: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for plural in PLURALS {
        let path = repo_root().join(format!(
            "operator/tests/fixtures/cert-manager/cert-manager.io_{plural}.yaml"
        ));
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        api.patch(
            &crd.name_any(),
            &PatchParams::apply("dfr-operator-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
    }
    eventually(WAIT, "cert-manager.io/v1 to be served", || {
        let admin = admin.clone();
        async move {
            let list = admin
                .list_api_group_resources("cert-manager.io/v1")
                .await
                .ok()?;
            PLURALS
                .iter()
                .all(|plural| list.resources.iter().any(|r| r.name == *plural))
                .then_some(())
        }
    })
    .await;
}

/// A CA ClusterIssuer, as a platform team would define it (nothing runs it here).
async fn create_cluster_issuer(admin: &Client, name: &str) {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "ClusterIssuer"),
        "clusterissuers",
    );
    let issuer: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": name},
        "spec": {"ca": {"secretName": format!("{name}-key-pair")}},
    }))
    .unwrap();
    Api::<DynamicObject>::all_with(admin.clone(), &resource)
        .patch(
            name,
            &PatchParams::apply("dfr-operator-tests").force(),
            &Patch::Apply(&issuer),
        )
        .await
        .unwrap();
}

struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn test_ca() -> TestCa {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "platform test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(365);
    let pem = params.self_signed(&key).unwrap().pem();
    TestCa {
        issuer: Issuer::new(params, key),
        pem,
    }
}

/// What cert-manager's CA issuer writes for `certificate`: a certificate for its spec, signed
/// by the CA, valid for `days`.
fn issue(ca: &TestCa, certificate: &Certificate, days: i64) -> (String, String) {
    let spec = &certificate.spec;
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(spec.dns_names.clone()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, spec.common_name.as_str());
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = spec
        .usages
        .iter()
        .filter_map(|usage| match usage.as_str() {
            "server auth" => Some(ExtendedKeyUsagePurpose::ServerAuth),
            "client auth" => Some(ExtendedKeyUsagePurpose::ClientAuth),
            _ => None,
        })
        .collect();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + time::Duration::days(days);
    let pem = params.signed_by(&key, &ca.issuer).unwrap().pem();
    (pem, key.serialize_pem())
}

/// The Secret cert-manager's issuing controller writes for `certificate`.
fn cert_manager_secret(certificate: &Certificate, pem: &str, key: &str, ca: &str) -> Secret {
    let spec = &certificate.spec;
    let issuer = &spec.issuer_ref;
    let mut labels = spec.secret_template.labels.clone();
    labels.insert("controller.cert-manager.io/fao".into(), "true".into());
    let annotations = BTreeMap::from([
        ("cert-manager.io/certificate-name", certificate.name_any()),
        ("cert-manager.io/issuer-name", issuer.name.clone()),
        ("cert-manager.io/issuer-kind", issuer.kind.clone()),
        ("cert-manager.io/issuer-group", issuer.group.clone()),
        ("cert-manager.io/common-name", spec.common_name.clone()),
        ("cert-manager.io/alt-names", spec.dns_names.join(",")),
        ("cert-manager.io/ip-sans", String::new()),
        ("cert-manager.io/uri-sans", String::new()),
    ])
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(spec.secret_name.clone()),
            namespace: certificate.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(pem.as_bytes().to_vec())),
            ("tls.key".to_string(), ByteString(key.as_bytes().to_vec())),
            ("ca.crt".to_string(), ByteString(ca.as_bytes().to_vec())),
        ])),
        ..Secret::default()
    }
}

async fn condition(admin: &Client, name: &str, type_: &str) -> Option<(String, String, String)> {
    let country = Api::<DfrCountry>::all(admin.clone()).get(name).await.ok()?;
    country
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status, c.reason, c.message))
}

fn text(secret: &Secret, key: &str) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

#[tokio::test]
async fn issuer_ref_hands_the_certificates_to_cert_manager_and_back() {
    let admin = admin().await;
    install_crd(&admin).await;
    install_cert_manager_crds(&admin).await;
    let id = unique_id();
    let issuer_name = format!("dfr-test-{id}");
    create_cluster_issuer(&admin, &issuer_name).await;

    let mut country = country_from_sample("vut-test.yaml", &id);
    country.spec.tls.issuer_ref = Some(IssuerRef {
        name: issuer_name.clone(),
        kind: "ClusterIssuer".into(),
        group: "cert-manager.io".into(),
    });
    country.spec.tls.duration = "2160h".into();
    country.spec.tls.renew_before = "720h".into();
    let name = country.name_any();
    let namespace = naming::namespace(&country);
    let certificates: Api<Certificate> = Api::namespaced(admin.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);

    let first = RunningOperator::start(&admin, &id).await;
    apply_country(&admin, &country).await;

    // One Certificate per leaf Secret, for cert-manager.
    let mut issued = Vec::new();
    for secret in LEAF_CERTIFICATE_SECRETS {
        let certificate = eventually(WAIT, &format!("Certificate {secret}"), || {
            let certificates = certificates.clone();
            async move { certificates.get_opt(secret).await.ok().flatten() }
        })
        .await;
        let spec = &certificate.spec;
        assert_eq!(spec.secret_name, *secret);
        assert_eq!(spec.issuer_ref.name, issuer_name);
        assert_eq!(spec.issuer_ref.kind, "ClusterIssuer");
        assert_eq!(spec.issuer_ref.group, "cert-manager.io");
        assert_eq!(spec.duration, "2160h");
        assert_eq!(spec.renew_before, "720h");
        assert!(!spec.is_ca);
        assert_eq!(spec.private_key.algorithm, "ECDSA");
        assert_eq!(spec.private_key.rotation_policy, "Always");
        assert_eq!(spec.secret_template.labels["dfr.io/tenant"], name);
        issued.push(certificate);
    }
    let postgres = &issued[0];
    assert!(
        postgres
            .spec
            .dns_names
            .contains(&format!("postgres-rw.{namespace}.svc")),
        "{:?}",
        postgres.spec.dns_names
    );
    assert_eq!(
        postgres.spec.usages,
        [
            "digital signature",
            "key encipherment",
            "server auth",
            "client auth"
        ]
    );
    let replication = &issued[2];
    assert_eq!(replication.spec.common_name, "replicator");
    assert_eq!(
        replication.spec.usages,
        ["digital signature", "client auth"]
    );
    assert!(replication.spec.dns_names.is_empty());

    // Until cert-manager writes the Secrets the tenant says which Certificate it waits for, and
    // the operator writes none of them (nor a CA of its own); the other Secrets it generates.
    let (_, _, message) = eventually(WAIT, "Ready=False WaitingForCertificate", || {
        let admin = admin.clone();
        let name = name.clone();
        async move {
            condition(&admin, &name, "Ready")
                .await
                .filter(|(status, reason, _)| {
                    status == "False" && reason == "WaitingForCertificate"
                })
        }
    })
    .await;
    assert!(
        message.contains(&format!("Certificate {namespace}/postgres-tls")),
        "{message}"
    );
    assert!(message.contains("Secret postgres-tls"), "{message}");
    eventually(WAIT, "the generated credentials", || {
        let secrets = secrets.clone();
        async move {
            secrets
                .get_opt(naming::SECRET_POSTGRES_SUPERUSER)
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    for secret in LEAF_CERTIFICATE_SECRETS
        .iter()
        .chain([&naming::SECRET_TENANT_CA])
    {
        assert!(secrets.get_opt(secret).await.unwrap().is_none(), "{secret}");
    }
    assert!(
        Api::<StatefulSet>::namespaced(admin.clone(), &namespace)
            .get_opt(naming::POSTGRES)
            .await
            .unwrap()
            .is_none(),
        "the workloads wait for the certificates"
    );

    // cert-manager's part: the Secrets, then Ready.
    let ca = test_ca();
    let mut written = BTreeMap::new();
    let mut earliest = None;
    for (certificate, days) in issued.iter().zip([90, 80, 70, 60]) {
        let (pem, key) = issue(&ca, certificate, days);
        earliest = earliest
            .min(certificate_not_after(&pem))
            .or(certificate_not_after(&pem));
        let secret = cert_manager_secret(certificate, &pem, &key, &ca.pem);
        secrets
            .patch(
                &certificate.spec.secret_name,
                &PatchParams::apply(CERT_MANAGER_MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await
            .unwrap();
        written.insert(certificate.spec.secret_name.clone(), pem);
        let status = json!({"status": {
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "Ready",
                "message": "Certificate is up to date and has not expired",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }],
            "revision": 1,
        }});
        certificates
            .patch_status(
                &certificate.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await
            .unwrap();
    }

    // The tenant goes on: the workloads are applied, the waiting reason is gone, the
    // certificates are reported valid with the earliest expiry, and the operator left
    // cert-manager's Secrets alone.
    eventually(WAIT, "the StatefulSet after the certificates", || {
        let admin = admin.clone();
        let namespace = namespace.clone();
        async move {
            Api::<StatefulSet>::namespaced(admin, &namespace)
                .get_opt(naming::POSTGRES)
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    let valid = eventually(WAIT, "CertificatesValid=True", || {
        let admin = admin.clone();
        let name = name.clone();
        async move {
            let country = Api::<DfrCountry>::all(admin).get(&name).await.ok()?;
            let status = country.status?;
            let ok = status.conditions.iter().any(|c| {
                c.type_ == "CertificatesValid"
                    && c.status == "True"
                    && c.reason == "CertificatesCurrent"
            }) && status
                .conditions
                .iter()
                .all(|c| c.reason != "WaitingForCertificate");
            ok.then_some(status)
        }
    })
    .await;
    // The earliest of the leaves (60 days) comes before the test CA's year.
    assert_eq!(valid.certificates_not_after.map(|t| t.0), earliest);
    for (secret, pem) in &written {
        let live = secrets.get(secret).await.unwrap();
        assert_eq!(&text(&live, "tls.crt"), pem, "{secret} was overwritten");
        assert_eq!(text(&live, "ca.crt"), ca.pem);
    }
    assert!(
        secrets
            .get_opt(naming::SECRET_TENANT_CA)
            .await
            .unwrap()
            .is_none()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.stop().await;

    // Unchanged: the next operator reads the Certificates and writes nothing.
    let second = RunningOperator::start(&admin, &id).await;
    eventually(WAIT, "the second operator to reconcile", || {
        let done = second.successful_reconciles();
        async move { (done >= 1).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(second.writes(), 0, "{}", second.metrics.render().unwrap());

    // Back to the operator's own CA: the Certificates go and every Secret is re-issued from the
    // new tenant CA, without cert-manager's annotations.
    country.spec.tls.issuer_ref = None;
    apply_country(&admin, &country).await;
    let tenant_ca = eventually(WAIT, "Secret dfr-tenant-ca", || {
        let secrets = secrets.clone();
        async move {
            secrets
                .get_opt(naming::SECRET_TENANT_CA)
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    let tenant_ca = text(&tenant_ca, "tls.crt");
    for secret in LEAF_CERTIFICATE_SECRETS {
        eventually(WAIT, &format!("{secret} back from the tenant CA"), || {
            let secrets = secrets.clone();
            let tenant_ca = tenant_ca.clone();
            async move {
                let live = secrets.get(secret).await.ok()?;
                (text(&live, "ca.crt") == tenant_ca
                    && !live
                        .annotations()
                        .keys()
                        .any(|key| key.starts_with("cert-manager.io/")))
                .then_some(())
            }
        })
        .await;
        eventually(WAIT, &format!("Certificate {secret} deleted"), || {
            let certificates = certificates.clone();
            async move {
                certificates
                    .get_opt(secret)
                    .await
                    .ok()
                    .and_then(|live| live.is_none().then_some(()))
            }
        })
        .await;
    }
    second.stop().await;
}
