//! Shared set-up for tests against the real control plane: the CRD, the operator's own RBAC,
//! a token for it, and an in-process operator that only sees this test's DfrCountry objects.
#![allow(clippy::unwrap_used, dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dfr_crds::DfrCountry;
use dfr_operator::controller::{self, RunOptions};
use dfr_operator::metrics::Metrics;
use dfr_operator::settings::Settings;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Config, ResourceExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TEST_RUN_LABEL: &str = "dfr.io/test-run";
const TEST_NAMESPACE: &str = "dfr-operator-tests";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub async fn admin() -> Client {
    dfr_e2e::testing::kube_client().await
}

/// A short unique lower-case id for this test's objects.
pub fn unique_id() -> String {
    dfr_e2e::testing::unique_suffix()
}

/// A country code no other test uses, since the namespace is derived from it.
pub fn unique_country_code(id: &str) -> String {
    let hash = id
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let letter = |n: u32| char::from(b'A' + u8::try_from(n % 26).unwrap());
    format!(
        "{}{}{}",
        letter(hash),
        letter(hash / 26),
        letter(hash / 676)
    )
}

fn apply_params() -> PatchParams {
    PatchParams::apply("dfr-operator-tests").force()
}

pub async fn install_crd(admin: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for file in [dfr_crds::CRD_FILE, dfr_crds::BACKUP_CRD_FILE] {
        let crd: CustomResourceDefinition = serde_yaml::from_str(
            &std::fs::read_to_string(repo_root().join("crds").join(file)).unwrap(),
        )
        .unwrap();
        api.patch(&crd.name_any(), &apply_params(), &Patch::Apply(&crd))
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(30), "the CRD to be established", || {
        let api = api.clone();
        async move {
            let crd = api.get("dfrcountries.dfr.io").await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await;
}

/// Creates a ServiceAccount for this test bound to exactly config/rbac/cluster_role.yaml.
pub async fn grant_operator_role(admin: &Client, id: &str) {
    let role: ClusterRole = serde_yaml::from_str(
        &std::fs::read_to_string(repo_root().join("config/rbac/cluster_role.yaml")).unwrap(),
    )
    .unwrap();
    Api::<ClusterRole>::all(admin.clone())
        .patch(&role.name_any(), &apply_params(), &Patch::Apply(&role))
        .await
        .unwrap();
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(TEST_NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(admin.clone())
        .patch(TEST_NAMESPACE, &apply_params(), &Patch::Apply(&namespace))
        .await
        .unwrap();
    let account_name = format!("operator-{id}");
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(account_name.clone()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    Api::<ServiceAccount>::namespaced(admin.clone(), TEST_NAMESPACE)
        .patch(&account_name, &apply_params(), &Patch::Apply(&account))
        .await
        .unwrap();
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(format!("dfr-operator-test-{id}")),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role.name_any(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: account_name,
            namespace: Some(TEST_NAMESPACE.into()),
            ..Subject::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(admin.clone())
        .patch(
            &binding.name_any(),
            &apply_params(),
            &Patch::Apply(&binding),
        )
        .await
        .unwrap();
}

/// Client configuration that authenticates with a fresh token of this test's operator account.
pub async fn operator_config(admin: &Client, id: &str) -> Config {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), TEST_NAMESPACE);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = accounts
        .create_token_request(&format!("operator-{id}"), &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let mut config = Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(dfr_e2e::testing::kubeconfig_path()).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    config.auth_info = kube::config::AuthInfo {
        token: Some(secrecy::SecretString::from(token)),
        ..kube::config::AuthInfo::default()
    };
    config
}

pub async fn operator_client(admin: &Client, id: &str) -> Client {
    grant_operator_role(admin, id).await;
    Client::try_from(operator_config(admin, id).await).unwrap()
}

/// An operator running in this test process, reconciling only objects labelled with `id`.
pub struct RunningOperator {
    pub metrics: Metrics,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningOperator {
    pub async fn start(admin: &Client, id: &str) -> Self {
        Self::start_with(admin, id, |_| {}).await
    }

    /// An operator whose settings `adjust` changes from the tests' defaults (a short
    /// certificate propagation delay, for example).
    pub async fn start_with(admin: &Client, id: &str, adjust: impl FnOnce(&mut Settings)) -> Self {
        // RUST_LOG=dfr_operator=debug shows what the operator does in a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let metrics = Metrics::new().unwrap();
        grant_operator_role(admin, id).await;
        let client = dfr_operator::client::counting_client(
            operator_config(admin, id).await,
            metrics.kube_requests.clone(),
        )
        .unwrap();
        let mut settings = Settings {
            kubernetes_api_cidrs: vec!["127.0.0.1/32".into()],
            ..Settings::default()
        };
        adjust(&mut settings);
        let options = RunOptions {
            tenant_selector: Some(format!("{TEST_RUN_LABEL}={id}")),
            concurrency: 4,
            instance: Some(format!("test-{id}")),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(controller::run(
            client,
            settings,
            metrics.clone(),
            options,
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            metrics,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .unwrap()
                .unwrap();
        }
    }

    pub fn counter(&self, name: &str, label: &str) -> u64 {
        let family = self.metrics.registry.gather();
        family
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| m.get_label().iter().any(|l| l.value() == label))
            .map(|m| m.get_counter().value() as u64)
            .sum()
    }

    /// Writes the operator sent: creates, patches, updates and deletes.
    pub fn writes(&self) -> u64 {
        ["create", "patch", "update", "delete"]
            .iter()
            .map(|verb| self.counter("dfr_operator_kube_api_requests_total", verb))
            .sum()
    }

    pub fn successful_reconciles(&self) -> u64 {
        self.counter("dfr_operator_reconciliations_total", "success")
    }
}

/// A DfrCountry from a sample file, renamed and re-coded for this test and labelled for its
/// operator.
pub fn country_from_sample(sample: &str, id: &str) -> DfrCountry {
    let mut country: DfrCountry = serde_yaml::from_str(
        &std::fs::read_to_string(repo_root().join("config/samples").join(sample)).unwrap(),
    )
    .unwrap();
    let environment = country.spec.environment.as_str();
    country.metadata.name = Some(format!("t{id}-{environment}"));
    country.spec.country_code = unique_country_code(id);
    country
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(TEST_RUN_LABEL.into(), id.into());
    country
}

pub async fn apply_country(admin: &Client, country: &DfrCountry) -> DfrCountry {
    let api: Api<DfrCountry> = Api::all(admin.clone());
    api.patch(&country.name_any(), &apply_params(), &Patch::Apply(country))
        .await
        .unwrap()
}

/// Polls `check` until it yields Some, or fails the test naming what it waited for.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
