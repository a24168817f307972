//! The operator against a real control plane (kube-apiserver, etcd, kube-controller-manager),
//! authenticated as a ServiceAccount bound to exactly config/rbac/cluster_role.yaml.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use dfr_crds::DfrCountry;
use dfr_operator::{labels, naming};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, Pod, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::ObjectMeta;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(60);

struct Tenant {
    admin: Client,
    id: String,
    country: DfrCountry,
    namespace: String,
}

async fn tenant(sample: &str) -> Tenant {
    let admin = admin().await;
    install_crd(&admin).await;
    let id = unique_id();
    let country = country_from_sample(sample, &id);
    let namespace = naming::namespace(&country);
    Tenant {
        admin,
        id,
        country,
        namespace,
    }
}

impl Tenant {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.admin.clone(), &self.namespace)
    }

    fn countries(&self) -> Api<DfrCountry> {
        Api::all(self.admin.clone())
    }

    async fn live(&self) -> DfrCountry {
        self.countries()
            .get(&self.country.name_any())
            .await
            .unwrap()
    }

    async fn wait_for_condition(&self, type_: &str, status: &str, reason: &str) -> DfrCountry {
        let api = self.countries();
        let name = self.country.name_any();
        eventually(
            WAIT,
            &format!("condition {type_}={status} ({reason})"),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let country = api.get(&name).await.ok()?;
                    let status_ = country.status.as_ref()?;
                    status_
                        .conditions
                        .iter()
                        .any(|c| c.type_ == type_ && c.status == status && c.reason == reason)
                        .then_some(country)
                }
            },
        )
        .await
    }

    async fn wait_for<K>(&self, name: &str) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = self.api();
        eventually(WAIT, &format!("{} {name}", K::kind(&())), || {
            let api = api.clone();
            async move { api.get_opt(name).await.ok().flatten() }
        })
        .await
    }

    /// Resource versions of every object of these kinds in the tenant namespace.
    async fn resource_versions(&self) -> BTreeMap<String, String> {
        let mut versions = BTreeMap::new();
        macro_rules! collect {
            ($($kind:ty),*) => {$(
                for object in self.api::<$kind>().list(&ListParams::default()).await.unwrap() {
                    versions.insert(
                        format!("{}/{}", <$kind>::kind(&()), object.name_any()),
                        object.resource_version().unwrap(),
                    );
                }
            )*};
        }
        collect!(
            NetworkPolicy,
            ConfigMap,
            Service,
            Secret,
            ServiceAccount,
            Role,
            RoleBinding,
            LimitRange,
            StatefulSet,
            k8s_openapi::api::batch::v1::CronJob
        );
        let country = self.live().await;
        versions.insert("DfrCountry".into(), country.resource_version().unwrap());
        versions
    }
}

fn assert_owned_and_labelled<K: Resource>(object: &K, country: &DfrCountry) {
    let name = object.meta().name.clone().unwrap_or_default();
    let owner = object
        .owner_references()
        .iter()
        .find(|o| o.uid == country.uid().unwrap())
        .unwrap_or_else(|| panic!("{name} has no owner reference to the DfrCountry"));
    assert_eq!(owner.kind, "DfrCountry");
    assert_eq!(owner.controller, Some(true));
    let labels = object.labels();
    assert_eq!(
        labels.get(labels::MANAGED_BY).map(String::as_str),
        Some("dfr-operator"),
        "{name}"
    );
    assert_eq!(
        labels.get(labels::PART_OF).map(String::as_str),
        Some("dfr"),
        "{name}"
    );
    assert_eq!(
        labels.get(labels::TENANT),
        Some(&country.name_any()),
        "{name}"
    );
}

#[tokio::test]
async fn a_sample_becomes_a_tenant_with_every_child_and_honest_status() {
    let t = tenant("ton-dev.yaml").await;
    let operator = RunningOperator::start(&t.admin, &t.id).await;
    apply_country(&t.admin, &t.country).await;

    let country = t
        .wait_for_condition("Ready", "False", "WaitingForPrimary")
        .await;
    let status = country.status.clone().unwrap();
    assert_eq!(status.observed_generation, country.metadata.generation);
    assert_eq!(status.namespace.as_deref(), Some(t.namespace.as_str()));
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        ready.message,
        "0/2 PostgreSQL pods ready, no Patroni leader yet"
    );
    for type_ in [
        "Progressing",
        "Degraded",
        "DatabaseReady",
        "ApiReady",
        "BackupsHealthy",
        "CertificatesValid",
    ] {
        let condition = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
        assert!(!condition.reason.is_empty(), "{type_} has no reason");
    }
    assert_eq!(
        status
            .conditions
            .iter()
            .find(|c| c.type_ == "CertificatesValid")
            .unwrap()
            .reason,
        "CertificatesCurrent"
    );
    assert!(
        country
            .finalizers()
            .contains(&naming::FINALIZER.to_string())
    );

    let namespace = Api::<Namespace>::all(t.admin.clone())
        .get(&t.namespace)
        .await
        .unwrap();
    assert_owned_and_labelled(&namespace, &country);
    assert_eq!(
        namespace.labels()["pod-security.kubernetes.io/enforce"],
        "restricted"
    );

    assert_owned_and_labelled(&t.wait_for::<StatefulSet>(naming::POSTGRES).await, &country);
    let deployment = t.wait_for::<Deployment>(naming::API).await;
    assert_owned_and_labelled(&deployment, &country);
    // dev runs a fixed number of API pods: the Deployment holds it and no autoscaler is made
    // (both are applied in the same stage, so one would be there by now).
    assert_eq!(deployment.spec.unwrap().replicas, Some(1));
    assert!(
        t.api::<HorizontalPodAutoscaler>()
            .get_opt(naming::API)
            .await
            .unwrap()
            .is_none()
    );
    assert_owned_and_labelled(
        &t.wait_for::<ConfigMap>(naming::POSTGRES_CONFIG).await,
        &country,
    );
    assert_owned_and_labelled(&t.wait_for::<Role>(naming::POSTGRES).await, &country);
    assert_owned_and_labelled(&t.wait_for::<RoleBinding>(naming::POSTGRES).await, &country);
    assert_owned_and_labelled(
        &t.wait_for::<ServiceAccount>(naming::POSTGRES_SERVICE_ACCOUNT)
            .await,
        &country,
    );
    for service in [
        naming::POSTGRES_RW,
        naming::POSTGRES_RO,
        naming::POSTGRES_HEADLESS,
        naming::API,
    ] {
        assert_owned_and_labelled(&t.wait_for::<Service>(service).await, &country);
    }
    let rw: Service = t.wait_for(naming::POSTGRES_RW).await;
    assert_eq!(rw.spec.unwrap().selector.unwrap()["role"], "primary");
    let quotas = t
        .api::<ResourceQuota>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(quotas.items.len(), 1);
    assert_owned_and_labelled(&quotas.items[0], &country);
    let limits = t
        .api::<LimitRange>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(limits.items.len(), 1);
    let pdbs = t
        .api::<PodDisruptionBudget>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        pdbs.items
            .iter()
            .any(|p| p.labels()[labels::NAME] == labels::APP_POSTGRES)
    );
    let policies = t
        .api::<NetworkPolicy>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        policies.items.len() >= 4,
        "only {} NetworkPolicies",
        policies.items.len()
    );
    for policy in &policies.items {
        assert_owned_and_labelled(policy, &country);
    }
    let secrets = t
        .api::<Secret>()
        .list(&ListParams::default().labels(&labels::children_selector(&country.name_any())))
        .await
        .unwrap();
    let names: Vec<String> = secrets.items.iter().map(ResourceExt::name_any).collect();
    for wanted in naming::GENERATED_SECRETS {
        assert!(
            names.contains(&wanted.to_string()),
            "Secret {wanted} missing from {names:?}"
        );
    }
    // What the operator did is visible as Events on the DfrCountry.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(t.admin.clone());
    let name = country.name_any();
    let event = eventually(WAIT, "a ResourcesApplied Event", || {
        let events = events.clone();
        let name = name.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str())
                        && e.reason.as_deref() == Some("ResourcesApplied")
                })
        }
    })
    .await;
    assert_eq!(event.reporting_controller.as_deref(), Some("dfr-operator"));
    assert!(
        event
            .note
            .unwrap_or_default()
            .contains("StatefulSet/postgres")
    );

    // The restricted Pod Security level admitted the workloads: the StatefulSet controller made pods.
    let pods: Api<Pod> = t.api();
    eventually(
        WAIT,
        "PostgreSQL pods admitted under Pod Security restricted",
        || {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels("app.kubernetes.io/name=postgres"))
                    .await
                    .ok()?;
                (list.items.len() == 2).then_some(())
            }
        },
    )
    .await;
    operator.stop().await;
}

#[tokio::test]
async fn spec_changes_reach_the_children_and_deleted_children_come_back() {
    let t = tenant("wsm-staging.yaml").await;
    let operator = RunningOperator::start(&t.admin, &t.id).await;
    apply_country(&t.admin, &t.country).await;
    t.wait_for_condition("Ready", "False", "WaitingForPrimary")
        .await;
    let statefulsets: Api<StatefulSet> = t.api();
    let hpas: Api<HorizontalPodAutoscaler> = t.api();

    t.countries()
        .patch(
            &t.country.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "postgres": {"instances": 3},
                "api": {"maxReplicas": 9, "autoscaling": {"enabled": true, "targetCPUUtilizationPercent": 55}}
            }})),
        )
        .await
        .unwrap();
    eventually(WAIT, "3 PostgreSQL replicas", || {
        let api = statefulsets.clone();
        async move { (api.get(naming::POSTGRES).await.ok()?.spec?.replicas == Some(3)).then_some(()) }
    })
    .await;
    let hpa = eventually(WAIT, "the HPA to follow the spec", || {
        let api = hpas.clone();
        async move {
            let hpa = api.get(naming::API).await.ok()?;
            (hpa.spec.as_ref()?.max_replicas == 9).then_some(hpa)
        }
    })
    .await;
    let cpu = hpa
        .spec
        .unwrap()
        .metrics
        .unwrap()
        .into_iter()
        .find_map(|m| m.resource.filter(|r| r.name == "cpu"))
        .unwrap();
    assert_eq!(cpu.target.average_utilization, Some(55));

    let policies: Api<NetworkPolicy> = t.api();
    let victim = policies.list(&ListParams::default()).await.unwrap().items[0].name_any();
    let old_uid = policies.get(&victim).await.unwrap().uid();
    policies
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        WAIT,
        &format!("NetworkPolicy {victim} to be recreated"),
        || {
            let api = policies.clone();
            let victim = victim.clone();
            let old_uid = old_uid.clone();
            async move {
                api.get_opt(&victim)
                    .await
                    .ok()?
                    .filter(|p| p.uid() != old_uid)
                    .map(|_| ())
            }
        },
    )
    .await;
    let generation = t.live().await.metadata.generation;
    let country = t
        .wait_for_condition("Ready", "False", "WaitingForPrimary")
        .await;
    assert_eq!(country.status.unwrap().observed_generation, generation);
    operator.stop().await;
}

#[tokio::test]
async fn reconciling_an_unchanged_tenant_writes_nothing() {
    let mut t = tenant("vut-test.yaml").await;
    // With an S3 repository, so the backup CronJob and pgBackRest configuration are compared
    // too.
    t.country.spec.backup = Some(
        serde_json::from_value(serde_json::json!({
            "schedule": "30 2 * * *",
            "destination": {"s3": {
                "endpoint": "https://10.0.0.1:9000", "bucket": "dfr-backups",
                "region": "us-east-1", "credentialsSecretRef": {"name": "backup-s3"},
                "caSecretRef": {"name": "backup-s3-ca"}}},
            "encryptionKeySecretRef": {"name": "backup-encryption", "key": "passphrase"}
        }))
        .unwrap(),
    );
    let first = RunningOperator::start(&t.admin, &t.id).await;
    apply_country(&t.admin, &t.country).await;
    t.wait_for_condition("Ready", "False", "WaitingForPrimary")
        .await;
    t.wait_for::<Deployment>(naming::API).await;
    // Let the first operator settle (its last status write and Events), then replace it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.stop().await;
    let before = t.resource_versions().await;

    let second = RunningOperator::start(&t.admin, &t.id).await;
    eventually(WAIT, "the new operator to reconcile the tenant", || {
        let done = second.successful_reconciles();
        async move { (done >= 1).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        second.writes(),
        0,
        "the operator wrote to the API server for an unchanged tenant:\n{}",
        second.metrics.render().unwrap()
    );
    let after = t.resource_versions().await;
    assert_eq!(
        before, after,
        "resourceVersions changed without a spec change"
    );
    assert!(before.len() > 15, "too few objects compared: {before:?}");
    for backup_object in ["CronJob/postgres-backup", "ConfigMap/postgres-pgbackrest"] {
        assert!(
            before.contains_key(backup_object),
            "{backup_object} in {before:?}"
        );
    }
    second.stop().await;
}

#[tokio::test]
async fn deletion_with_retain_keeps_the_data_and_reapplying_takes_it_back() {
    let t = tenant("cok-staging.yaml").await;
    assert_eq!(
        t.country.spec.deletion_policy,
        dfr_crds::DeletionPolicy::Retain
    );
    let operator = RunningOperator::start(&t.admin, &t.id).await;
    apply_country(&t.admin, &t.country).await;
    t.wait_for_condition("Ready", "False", "WaitingForPrimary")
        .await;
    let secrets: Api<Secret> = t.api();
    let password_before = t
        .wait_for::<Secret>(naming::SECRET_DB_APP)
        .await
        .data
        .unwrap()["password"]
        .clone();

    t.countries()
        .delete(&t.country.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    let countries = t.countries();
    let name = t.country.name_any();
    eventually(WAIT, "the DfrCountry to be gone", || {
        let api = countries.clone();
        let name = name.clone();
        async move { api.get_opt(&name).await.ok()?.is_none().then_some(()) }
    })
    .await;
    // Give the garbage collector time to act on anything still owned.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let namespace = Api::<Namespace>::all(t.admin.clone())
        .get(&t.namespace)
        .await
        .unwrap();
    assert!(
        namespace.metadata.deletion_timestamp.is_none(),
        "the namespace is being deleted"
    );
    assert!(namespace.owner_references().is_empty());
    assert_eq!(namespace.labels()[labels::RETAINED], "true");
    let kept = secrets.get(naming::SECRET_DB_APP).await.unwrap();
    assert!(kept.owner_references().is_empty());
    assert_eq!(kept.labels()[labels::RETAINED], "true");

    let again = apply_country(&t.admin, &t.country).await;
    t.wait_for_condition("Ready", "False", "WaitingForPrimary")
        .await;
    let namespace = Api::<Namespace>::all(t.admin.clone())
        .get(&t.namespace)
        .await
        .unwrap();
    assert!(!namespace.labels().contains_key(labels::RETAINED));
    assert_eq!(namespace.owner_references()[0].uid, again.uid().unwrap());
    let password_after = secrets
        .get(naming::SECRET_DB_APP)
        .await
        .unwrap()
        .data
        .unwrap()["password"]
        .clone();
    assert_eq!(
        password_before, password_after,
        "re-applying must reuse the retained credentials"
    );
    operator.stop().await;
}

#[tokio::test]
async fn deletion_with_delete_removes_the_namespace() {
    let t = tenant("ton-dev.yaml").await;
    assert_eq!(
        t.country.spec.deletion_policy,
        dfr_crds::DeletionPolicy::Delete
    );
    let operator = RunningOperator::start(&t.admin, &t.id).await;
    apply_country(&t.admin, &t.country).await;
    t.wait_for_condition("Ready", "False", "WaitingForPrimary")
        .await;
    t.countries()
        .delete(&t.country.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(t.admin.clone());
    let name = t.namespace.clone();
    eventually(
        Duration::from_secs(120),
        "the tenant namespace to be deleted",
        || {
            let api = namespaces.clone();
            let name = name.clone();
            async move {
                match api.get_opt(&name).await.ok()? {
                    None => Some(()),
                    Some(ns) => ns.metadata.deletion_timestamp.map(|_| ()),
                }
            }
        },
    )
    .await;
    operator.stop().await;
}

#[tokio::test]
async fn a_namespace_of_another_owner_is_left_alone_and_the_tenant_is_degraded() {
    let t = tenant("slb-dev.yaml").await;
    let namespaces: Api<Namespace> = Api::all(t.admin.clone());
    let foreign = Namespace {
        metadata: ObjectMeta {
            name: Some(t.namespace.clone()),
            labels: Some(BTreeMap::from([(
                "team".to_string(),
                "someone-else".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let created = namespaces
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    let operator = RunningOperator::start(&t.admin, &t.id).await;
    apply_country(&t.admin, &t.country).await;
    let country = t
        .wait_for_condition("Degraded", "True", "NamespaceConflict")
        .await;
    let degraded = country
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert!(
        degraded.message.contains(&t.namespace),
        "{}",
        degraded.message
    );
    assert!(
        degraded.message.contains("never adopts"),
        "{}",
        degraded.message
    );
    let after = namespaces.get(&t.namespace).await.unwrap();
    assert_eq!(
        after.resource_version(),
        created.resource_version(),
        "the foreign namespace was modified"
    );
    assert!(
        t.api::<ConfigMap>()
            .get_opt(naming::POSTGRES_CONFIG)
            .await
            .unwrap()
            .is_none()
    );
    operator.stop().await;
    namespaces
        .delete(&t.namespace, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_suspended_tenant_is_not_touched_and_says_so() {
    let t = tenant("slb-dev.yaml").await;
    let operator = RunningOperator::start(&t.admin, &t.id).await;
    apply_country(&t.admin, &t.country).await;
    t.wait_for_condition("Ready", "False", "WaitingForPrimary")
        .await;
    t.countries()
        .patch(
            &t.country.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    t.wait_for_condition("Progressing", "False", "Suspended")
        .await;
    let configs: Api<ConfigMap> = t.api();
    configs
        .delete(naming::POSTGRES_CONFIG, &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        configs
            .get_opt(naming::POSTGRES_CONFIG)
            .await
            .unwrap()
            .is_none(),
        "a suspended tenant was changed"
    );
    t.countries()
        .patch(
            &t.country.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": false}})),
        )
        .await
        .unwrap();
    t.wait_for::<ConfigMap>(naming::POSTGRES_CONFIG).await;
    operator.stop().await;
}

#[tokio::test]
async fn the_operator_account_is_not_an_admin() {
    let admin = admin().await;
    let id = unique_id();
    let client = operator_client(&admin, &id).await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    match nodes.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403),
        other => panic!("the operator's account may list nodes: {other:?}"),
    }
    let secrets: Api<Secret> = Api::namespaced(client, "kube-system");
    match secrets.delete("anything", &DeleteParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403),
        other => panic!("the operator's account may delete secrets: {other:?}"),
    }
}

#[tokio::test]
async fn a_certificate_near_expiry_is_renewed_from_the_tenant_ca() {
    let t = tenant("vut-test.yaml").await;
    let operator = RunningOperator::start(&t.admin, &t.id).await;
    apply_country(&t.admin, &t.country).await;
    t.wait_for_condition("CertificatesValid", "True", "CertificatesCurrent")
        .await;
    let secrets: Api<Secret> = t.api();
    let original = secrets.get(naming::SECRET_POSTGRES_TLS).await.unwrap();

    // Someone left a certificate that expires in an hour (well inside renewBefore, 720h).
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["postgres-rw".to_string()]).unwrap();
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let expiring = params.self_signed(&key).unwrap().pem();
    let patch =
        json!({"data": {"tls.crt": k8s_openapi::ByteString(expiring.clone().into_bytes())}});
    secrets
        .patch(
            naming::SECRET_POSTGRES_TLS,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();

    let renewed = eventually(WAIT, "the certificate to be renewed", || {
        let secrets = secrets.clone();
        let expiring = expiring.clone();
        async move {
            let secret = secrets.get(naming::SECRET_POSTGRES_TLS).await.ok()?;
            let pem = String::from_utf8(secret.data?.get("tls.crt")?.0.clone()).ok()?;
            (pem != expiring).then_some(pem)
        }
    })
    .await;
    let not_after = dfr_operator::children::secrets::certificate_not_after(&renewed).unwrap();
    let days_left =
        (not_after.as_second() - k8s_openapi::jiff::Timestamp::now().as_second()) / 86_400;
    assert!(days_left >= 89, "renewed for {days_left} days");
    let ca = secrets
        .get(naming::SECRET_TENANT_CA)
        .await
        .unwrap()
        .data
        .unwrap()["tls.crt"]
        .clone();
    let (_, ca) = x509_parser::pem::parse_x509_pem(&ca.0).unwrap();
    let (_, leaf) = x509_parser::pem::parse_x509_pem(renewed.as_bytes()).unwrap();
    leaf.parse_x509()
        .unwrap()
        .verify_signature(Some(ca.parse_x509().unwrap().public_key()))
        .unwrap();
    // Only the certificate and its key changed; the Secret is the same object.
    let after = secrets.get(naming::SECRET_POSTGRES_TLS).await.unwrap();
    assert_eq!(after.uid(), original.uid());
    assert_ne!(
        after.data.as_ref().unwrap()["tls.key"],
        original.data.as_ref().unwrap()["tls.key"]
    );
    operator.stop().await;
}

/// The text of one key of a Secret.
fn secret_text(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|bytes| String::from_utf8(bytes.0.clone()).unwrap())
        .unwrap_or_default()
}

/// An Event with this reason on the DfrCountry, once there is one.
async fn event(t: &Tenant, reason: &str) -> k8s_openapi::api::events::v1::Event {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(t.admin.clone());
    let name = t.country.name_any();
    eventually(WAIT, &format!("a {reason} Event"), || {
        let events = events.clone();
        let name = name.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str())
                        && e.reason.as_deref() == Some(reason)
                })
        }
    })
    .await
}

#[tokio::test]
async fn a_due_tenant_ca_is_renewed_with_an_overlap_in_which_both_are_trusted() {
    use dfr_operator::ca_renewal::{PHASE_ANNOTATION, PREVIOUS_KEY, SINCE_ANNOTATION};
    use dfr_operator::children::secrets::{
        LEAF_CERTIFICATE_SECRETS, certificate_issued_at, chains_to, generate_ca, pem_certificates,
        reissue,
    };
    const DELAY: Duration = Duration::from_secs(10);
    let t = tenant("vut-test.yaml").await;
    let operator = RunningOperator::start_with(&t.admin, &t.id, |settings| {
        settings.certificate_propagation_delay = DELAY;
    })
    .await;
    apply_country(&t.admin, &t.country).await;
    t.wait_for_condition("CertificatesValid", "True", "CertificatesCurrent")
        .await;
    // No PostgreSQL member runs on a control plane alone: the gate "every member serves the
    // new certificate" holds trivially, and the condition says why.
    t.wait_for_condition("CertificatesServed", "True", "NoRunningMembers")
        .await;
    let secrets: Api<Secret> = t.api();
    // Suspended while the Secrets are forged below, so the operator sees them all at once.
    let suspend = |suspend: bool| {
        let countries = t.countries();
        let name = t.country.name_any();
        async move {
            countries
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"suspend": suspend}})),
                )
                .await
                .unwrap();
        }
    };
    suspend(true).await;
    t.wait_for_condition("Progressing", "False", "Suspended")
        .await;

    // A CA that expires in 30 minutes, with the tenant's certificates issued from it: what a
    // tenant looks like when its CA is due (the spec's 2160h certificates could outlive it).
    let mut short = dfr_operator::validate::validate(&t.live().await).unwrap();
    short.tls.duration = Duration::from_secs(15 * 60);
    let old_ca = generate_ca(&short).unwrap();
    let settings = dfr_operator::settings::Settings::default();
    let merge = |data: serde_json::Value| json!({ "data": data });
    let encode = |text: &str| k8s_openapi::ByteString(text.as_bytes().to_vec());
    let mut old_leaves = BTreeMap::new();
    for &name in LEAF_CERTIFICATE_SECRETS {
        let pem = reissue(&short, &settings, name, &old_ca).unwrap();
        secrets
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&merge(json!({
                    "tls.crt": encode(&pem.certificate),
                    "tls.key": encode(&pem.key),
                    "ca.crt": encode(&old_ca.certificate),
                }))),
            )
            .await
            .unwrap();
        old_leaves.insert(name, pem.certificate);
    }
    secrets
        .patch(
            naming::SECRET_TENANT_CA,
            &PatchParams::default(),
            &Patch::Merge(&merge(json!({
                "tls.crt": encode(&old_ca.certificate),
                "tls.key": encode(&old_ca.key),
            }))),
        )
        .await
        .unwrap();
    suspend(false).await;

    // Phase 1: a new CA; every ca.crt trusts both, the certificates are still the old CA's.
    let renewing = eventually(WAIT, "a new CA with the previous one kept", || {
        let secrets = secrets.clone();
        let old = old_ca.certificate.clone();
        async move {
            let ca = secrets.get(naming::SECRET_TENANT_CA).await.ok()?;
            (secret_text(&ca, PREVIOUS_KEY) == old).then_some(ca)
        }
    })
    .await;
    let new_ca = secret_text(&renewing, "tls.crt");
    assert_ne!(new_ca, old_ca.certificate);
    assert!(!secret_text(&renewing, "tls.key").is_empty());
    assert!(!secret_text(&renewing, PREVIOUS_KEY).contains("PRIVATE KEY"));
    assert_eq!(renewing.annotations()[PHASE_ANNOTATION], "TrustPublished");
    let started: k8s_openapi::jiff::Timestamp =
        renewing.annotations()[SINCE_ANNOTATION].parse().unwrap();
    let both = [
        pem_certificates(&new_ca)[0].clone(),
        pem_certificates(&old_ca.certificate)[0].clone(),
    ];
    for &name in LEAF_CERTIFICATE_SECRETS {
        let secret = eventually(WAIT, &format!("{name} to trust both CAs"), || {
            let secrets = secrets.clone();
            let both = both.clone();
            async move {
                let secret = secrets.get(name).await.ok()?;
                (pem_certificates(&secret_text(&secret, "ca.crt")) == both).then_some(secret)
            }
        })
        .await;
        let certificate = secret_text(&secret, "tls.crt");
        if chains_to(&certificate, &new_ca) {
            // Re-issued already: only after the delay.
            let issued = certificate_issued_at(&certificate).unwrap();
            assert!(
                issued.as_second() >= started.as_second() + DELAY.as_secs() as i64,
                "{name} was issued from the new CA at {issued}, before {started} + {DELAY:?}"
            );
        } else {
            assert_eq!(certificate, old_leaves[name], "{name} changed too early");
        }
    }
    let note = event(&t, "CaRenewalStarted").await.note.unwrap_or_default();
    assert!(note.contains("both CAs"), "{note}");

    // Phase 2, after the delay: every certificate is re-issued from the new CA.
    for &name in LEAF_CERTIFICATE_SECRETS {
        let certificate = eventually(WAIT, &format!("{name} re-issued from the new CA"), || {
            let secrets = secrets.clone();
            let new_ca = new_ca.clone();
            async move {
                let certificate = secret_text(&secrets.get(name).await.ok()?, "tls.crt");
                chains_to(&certificate, &new_ca).then_some(certificate)
            }
        })
        .await;
        assert!(!chains_to(&certificate, &old_ca.certificate));
        let issued = certificate_issued_at(&certificate).unwrap();
        assert!(
            issued.as_second() >= started.as_second() + DELAY.as_secs() as i64,
            "{name} was issued from the new CA at {issued}, before {started} + {DELAY:?}"
        );
    }
    event(&t, "CertificatesReissued").await;

    // Phase 3, after the delay again: the previous CA leaves every bundle and the CA Secret.
    eventually(WAIT, "the previous CA to be removed", || {
        let secrets = secrets.clone();
        async move {
            let ca = secrets.get(naming::SECRET_TENANT_CA).await.ok()?;
            let annotations = ca.annotations();
            (secret_text(&ca, PREVIOUS_KEY).is_empty()
                && !annotations.contains_key(PHASE_ANNOTATION)
                && !annotations.contains_key(SINCE_ANNOTATION))
            .then_some(())
        }
    })
    .await;
    for &name in LEAF_CERTIFICATE_SECRETS {
        eventually(WAIT, &format!("{name} to trust the new CA alone"), || {
            let secrets = secrets.clone();
            let new_ca = new_ca.clone();
            async move {
                let bundle = secret_text(&secrets.get(name).await.ok()?, "ca.crt");
                (pem_certificates(&bundle) == pem_certificates(&new_ca)).then_some(())
            }
        })
        .await;
    }
    event(&t, "CaRenewalCompleted").await;

    // Status lists every certificate's expiry and no renewal; so do the gauges.
    let country = eventually(WAIT, "status without a CA renewal", || {
        let countries = t.countries();
        let name = t.country.name_any();
        async move {
            let country = countries.get(&name).await.ok()?;
            let status = country.status.as_ref()?;
            (status.ca_renewal.is_none()
                && status.certificates.len() == 1 + LEAF_CERTIFICATE_SECRETS.len())
            .then_some(country)
        }
    })
    .await;
    let status = country.status.unwrap();
    let ca_entry = status
        .certificates
        .iter()
        .find(|c| c.secret == naming::SECRET_TENANT_CA)
        .unwrap();
    assert_eq!(ca_entry.key, "tls.crt");
    assert_eq!(
        Some(ca_entry.not_after.0),
        dfr_operator::children::secrets::certificate_not_after(&new_ca)
    );
    let gauges: Vec<String> = operator
        .metrics
        .registry
        .gather()
        .iter()
        .filter(|family| family.name() == "dfr_certificate_not_after_timestamp_seconds")
        .flat_map(|family| family.get_metric().iter())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.value() == t.country.name_any())
        })
        .map(|m| {
            m.get_label()
                .iter()
                .map(|l| format!("{}={}", l.name(), l.value()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    assert_eq!(
        gauges.len(),
        1 + LEAF_CERTIFICATE_SECRETS.len(),
        "{gauges:?}"
    );
    assert!(
        gauges.iter().all(|g| !g.contains("previous.crt")),
        "{gauges:?}"
    );

    // Done: nothing more is written.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = operator.writes();
    let reconciles = operator.successful_reconciles();
    // A spec-less change (an annotation) makes the operator reconcile without cause to write.
    t.countries()
        .patch(
            &t.country.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"test.dfr.io/poke": "1"}}})),
        )
        .await
        .unwrap();
    eventually(WAIT, "another reconcile", || {
        let done = operator.successful_reconciles();
        async move { (done > reconciles).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2 * DELAY.as_secs())).await;
    assert_eq!(
        operator.writes(),
        writes,
        "the operator wrote after the renewal was complete:\n{}",
        operator.metrics.render().unwrap()
    );
    operator.stop().await;
}

#[tokio::test]
async fn the_pii_key_is_rotated_on_its_period_and_old_keys_are_kept() {
    let mut t = tenant("vut-test.yaml").await;
    t.country.spec.pii_keys.rotation_period = "1m".into();
    let operator = RunningOperator::start(&t.admin, &t.id).await;
    apply_country(&t.admin, &t.country).await;
    let secrets: Api<Secret> = t.api();
    let ring_of = |secret: &Secret| -> serde_json::Value {
        serde_json::from_slice(&secret.data.as_ref().unwrap()["keyring.json"].0).unwrap()
    };
    let country = eventually(WAIT, "status.piiKey k1", || {
        let countries = t.countries();
        let name = t.country.name_any();
        async move {
            let country = countries.get(&name).await.ok()?;
            (country.status.as_ref()?.pii_key.as_ref()?.id == "k1").then_some(country)
        }
    })
    .await;
    let original = secrets.get(naming::SECRET_API_PII_KEYS).await.unwrap();
    let first = country.status.unwrap().pii_key.unwrap();
    // Without the annotation the key counts from the Secret's creation.
    assert_eq!(
        Some(&first.activated_at),
        original.metadata.creation_timestamp.as_ref()
    );
    let before = ring_of(&original);

    // Nothing else changes: the reconcile the operator scheduled for the due time rotates.
    let rotated = eventually(
        Duration::from_secs(120),
        "the PII key to be rotated",
        || {
            let secrets = secrets.clone();
            async move {
                let secret = secrets.get(naming::SECRET_API_PII_KEYS).await.ok()?;
                (ring_of(&secret)["active"] == "k2").then_some(secret)
            }
        },
    )
    .await;
    assert_eq!(rotated.uid(), original.uid());
    let after = ring_of(&rotated);
    assert_eq!(
        after["keys"]["k1"], before["keys"]["k1"],
        "the old key is kept"
    );
    assert_eq!(after["blind_index_key"], before["blind_index_key"]);
    let new_key = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        after["keys"]["k2"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(new_key.len(), 32);
    assert_ne!(after["keys"]["k2"], before["keys"]["k1"]);
    let activated: k8s_openapi::jiff::Timestamp = rotated.annotations()
        [dfr_operator::tenant_metrics::PII_KEY_ACTIVATED_AT]
        .parse()
        .unwrap();
    let age = activated.as_second() - first.activated_at.0.as_second();
    assert!((60..=90).contains(&age), "rotated {age} s after activation");

    // Status and the age gauge follow the new key.
    let country = eventually(WAIT, "status.piiKey k2", || {
        let countries = t.countries();
        let name = t.country.name_any();
        async move {
            let country = countries.get(&name).await.ok()?;
            (country.status.as_ref()?.pii_key.as_ref()?.id == "k2").then_some(country)
        }
    })
    .await;
    assert_eq!(
        country.status.unwrap().pii_key.unwrap().activated_at.0,
        activated
    );
    let gauge = operator
        .metrics
        .registry
        .gather()
        .iter()
        .filter(|family| family.name() == "dfr_pii_key_activated_timestamp_seconds")
        .flat_map(|family| family.get_metric().iter())
        .filter(|metric| {
            metric
                .get_label()
                .iter()
                .any(|label| label.value() == t.country.name_any())
        })
        .map(|metric| metric.get_gauge().value() as i64)
        .next();
    assert_eq!(gauge, Some(activated.as_second()));
    // What happened is an Event on the DfrCountry.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(t.admin.clone());
    let name = t.country.name_any();
    let event = eventually(WAIT, "a PiiKeyRotated Event", || {
        let events = events.clone();
        let name = name.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str())
                        && e.reason.as_deref() == Some("PiiKeyRotated")
                })
        }
    })
    .await;
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains("PII key k2") && note.contains("replaces k1"),
        "{note}"
    );
    operator.stop().await;
}

#[tokio::test]
async fn a_field_dropped_from_a_builder_is_removed_from_the_live_object() {
    use dfr_operator::apply::apply_if_changed;
    use dfr_operator::children::desired_state;
    use dfr_operator::settings::Settings;

    let admin = admin().await;
    let id = unique_id();
    let namespace = format!("dfr-drift-{id}");
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(namespace.clone());
    ns.metadata.labels = Some([(TEST_RUN_LABEL.to_string(), id.clone())].into());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();

    // The Patroni ConfigMap exactly as the builder makes it, in a namespace of this test's own
    // and without the owner reference (its DfrCountry does not exist here).
    let mut country = country_from_sample("ton-dev.yaml", &id);
    country.metadata.uid = Some(format!("uid-{id}"));
    let tenant = dfr_operator::validate::validate(&country).unwrap();
    let mut built = desired_state(&tenant, &Settings::default()).config_maps[0].clone();
    built.metadata.namespace = Some(namespace.clone());
    built.metadata.owner_references = None;
    let name = built.name_any();
    let mut with_extra_label = built.clone();
    with_extra_label
        .labels_mut()
        .insert("dfr.io/soon-dropped".into(), "yes".into());

    let api: Api<ConfigMap> = Api::namespaced(admin.clone(), &namespace);
    assert!(
        apply_if_changed(&api, &with_extra_label, None)
            .await
            .unwrap()
    );
    let live = api.get(&name).await.unwrap();
    assert_eq!(live.labels()["dfr.io/soon-dropped"], "yes");
    assert!(
        !apply_if_changed(&api, &with_extra_label, Some(&live))
            .await
            .unwrap(),
        "an unchanged object must cost no write"
    );

    // The builder stops setting the label: live still holds every desired field (a superset),
    // yet the changed hash re-applies and server-side apply removes the dropped field.
    assert!(apply_if_changed(&api, &built, Some(&live)).await.unwrap());
    let live = api.get(&name).await.unwrap();
    assert!(
        !live.labels().contains_key("dfr.io/soon-dropped"),
        "{:?}",
        live.labels()
    );
    assert_eq!(live.labels()[labels::TENANT], tenant.name);
    assert!(!apply_if_changed(&api, &built, Some(&live)).await.unwrap());

    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await
        .unwrap();
}

/// A DfrBackup in the tenant namespace becomes a backup Job owned by it, and its status names
/// the Job; a DfrBackup of a tenant without an S3 repository fails at once and says why.
#[tokio::test]
async fn a_backup_request_becomes_a_job_and_reports_on_itself() {
    let mut t = tenant("vut-test.yaml").await;
    t.country.spec.backup = Some(
        serde_json::from_value(serde_json::json!({
            "destination": {"s3": {
                "endpoint": "https://10.0.0.1:9000", "bucket": "dfr-backups",
                "region": "us-east-1", "credentialsSecretRef": {"name": "backup-s3"}}},
            "encryptionKeySecretRef": {"name": "backup-encryption", "key": "passphrase"}
        }))
        .unwrap(),
    );
    let operator = RunningOperator::start(&t.admin, &t.id).await;
    apply_country(&t.admin, &t.country).await;
    t.wait_for_condition("Ready", "False", "WaitingForPrimary")
        .await;
    let requests: Api<dfr_crds::DfrBackup> = t.api();
    let request: dfr_crds::DfrBackup = serde_json::from_value(serde_json::json!({
        "apiVersion": "dfr.io/v1alpha1", "kind": "DfrBackup",
        "metadata": {"name": "before-upgrade", "namespace": t.namespace},
        "spec": {"type": "full"}
    }))
    .unwrap();
    requests
        .create(&kube::api::PostParams::default(), &request)
        .await
        .unwrap();
    let job: k8s_openapi::api::batch::v1::Job = t.wait_for("dfrbackup-before-upgrade").await;
    let owner = &job.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("DfrBackup", "before-upgrade")
    );
    let command = job.spec.unwrap().template.spec.unwrap().containers[0]
        .command
        .clone()
        .unwrap();
    assert_eq!(
        command.last().map(String::as_str),
        Some("full"),
        "{command:?}"
    );
    let status = eventually(WAIT, "the DfrBackup status", || {
        let requests = requests.clone();
        async move { requests.get("before-upgrade").await.ok()?.status }
    })
    .await;
    // No node runs the pod here: it waits (Pending) or counts as started (Running).
    assert!(
        matches!(
            status.phase,
            dfr_crds::BackupPhase::Pending | dfr_crds::BackupPhase::Running
        ),
        "{status:?}"
    );
    assert_eq!(status.job.as_deref(), Some("dfrbackup-before-upgrade"));

    // Without a repository: Failed, with the reason, and no Job.
    t.country.spec.backup = None;
    apply_country(&t.admin, &t.country).await;
    let mut unconfigured = request.clone();
    unconfigured.metadata.name = Some("no-repository".into());
    requests
        .create(&kube::api::PostParams::default(), &unconfigured)
        .await
        .unwrap();
    let status = eventually(WAIT, "the second DfrBackup to fail", || {
        let requests = requests.clone();
        async move {
            requests
                .get("no-repository")
                .await
                .ok()?
                .status
                .filter(|s| s.phase == dfr_crds::BackupPhase::Failed)
        }
    })
    .await;
    assert!(
        status
            .message
            .unwrap()
            .starts_with("RepositoryNotConfigured: "),
    );
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = t.api();
    assert!(
        jobs.get_opt("dfrbackup-no-repository")
            .await
            .unwrap()
            .is_none()
    );
    operator.stop().await;
}
