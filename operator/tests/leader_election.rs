//! Two operator processes (the real binary) share one Lease: one leads and reconciles, the
//! other stands by and takes over when the leader stops. Both run under the operator's own
//! ClusterRole plus the leader-election Role, with a ServiceAccount token.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dfr_crds::DfrCountry;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::{Client, ResourceExt};
use support::*;

const NAMESPACE: &str = "dfr-operator-tests";

struct Operator {
    child: Child,
    port: u16,
    name: String,
}

impl Operator {
    fn metrics(&self) -> String {
        let output = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{}/metrics", self.port)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn reconciles(&self) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with("dfr_operator_reconciliations_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn grant_leader_election(admin: &Client, id: &str) {
    let mut role: Role = serde_yaml::from_str(
        &std::fs::read_to_string(repo_root().join("config/rbac/leader_election_role.yaml"))
            .unwrap(),
    )
    .unwrap();
    role.metadata.namespace = Some(NAMESPACE.into());
    role.metadata.name = Some(format!("leader-{id}"));
    let params = PatchParams::apply("dfr-operator-tests").force();
    Api::<Role>::namespaced(admin.clone(), NAMESPACE)
        .patch(&role.name_any(), &params, &Patch::Apply(&role))
        .await
        .unwrap();
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some(format!("leader-{id}")),
            namespace: Some(NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: role.name_any(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: format!("operator-{id}"),
            namespace: Some(NAMESPACE.into()),
            ..Subject::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin.clone(), NAMESPACE)
        .patch(&binding.name_any(), &params, &Patch::Apply(&binding))
        .await
        .unwrap();
}

fn start(kubeconfig: &std::path::Path, id: &str, name: &str) -> Operator {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_dfr-operator"))
        .args(["run", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .args([
            "--tenant-selector",
            &format!("{TEST_RUN_LABEL}={id}"),
            "--kubernetes-api-cidr",
            "127.0.0.1/32",
        ])
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAMESPACE", NAMESPACE)
        .env("POD_NAME", name)
        .env("DFR_LEASE_NAME", format!("leader-{id}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Operator {
        child,
        port,
        name: name.into(),
    }
}

#[tokio::test]
async fn one_leader_reconciles_and_a_standby_takes_over() {
    let admin = admin().await;
    install_crd(&admin).await;
    let id = unique_id();
    grant_operator_role(&admin, &id).await;
    grant_leader_election(&admin, &id).await;
    // A kubeconfig with the operator account's token, as a pod would have.
    let config = operator_config(&admin, &id).await;
    let token = {
        use secrecy::ExposeSecret;
        config
            .auth_info
            .token
            .as_ref()
            .unwrap()
            .expose_secret()
            .to_string()
    };
    let kubeconfig = std::env::temp_dir().join(format!("dfr-operator-{id}.kubeconfig"));
    let source = std::fs::read_to_string(dfr_e2e::testing::kubeconfig_path()).unwrap();
    let cluster = source.split("users:").next().unwrap();
    std::fs::write(&kubeconfig, format!("{cluster}users:\n- name: operator\n  user:\n    token: {token}\ncontexts:\n- name: dfr\n  context:\n    cluster: dfr\n    user: operator\ncurrent-context: dfr\n")).unwrap();

    let first = start(&kubeconfig, &id, &format!("first-{id}"));
    let second = start(&kubeconfig, &id, &format!("second-{id}"));
    let leases: Api<Lease> = Api::namespaced(admin.clone(), NAMESPACE);
    let lease_name = format!("leader-{id}");
    let leader = eventually(Duration::from_secs(60), "a leader", || {
        let leases = leases.clone();
        let lease_name = lease_name.clone();
        async move {
            leases
                .get_opt(&lease_name)
                .await
                .ok()??
                .spec?
                .holder_identity
        }
    })
    .await;
    let (mut leading, standby) = if leader == first.name {
        (first, second)
    } else {
        (second, first)
    };

    let country = country_from_sample("ton-dev.yaml", &id);
    apply_country(&admin, &country).await;
    let countries: Api<DfrCountry> = Api::all(admin.clone());
    let name = country.name_any();
    eventually(Duration::from_secs(60), "the leader to reconcile", || {
        let countries = countries.clone();
        let name = name.clone();
        async move { countries.get(&name).await.ok()?.status.map(|_| ()) }
    })
    .await;
    assert!(leading.reconciles() > 0.0, "the leader did not reconcile");
    assert_eq!(
        standby.reconciles(),
        0.0,
        "the standby reconciled while another process led"
    );

    // The leader stops (a rolling update): it releases the Lease and the standby takes over.
    leading.stop();
    let standby_name = standby.name.clone();
    eventually(
        Duration::from_secs(60),
        "the standby to take the Lease",
        || {
            let leases = leases.clone();
            let lease_name = lease_name.clone();
            let standby_name = standby_name.clone();
            async move {
                (leases
                    .get_opt(&lease_name)
                    .await
                    .ok()??
                    .spec?
                    .holder_identity?
                    == standby_name)
                    .then_some(())
            }
        },
    )
    .await;
    eventually(
        Duration::from_secs(60),
        "the new leader to reconcile",
        || {
            let done = standby.reconciles();
            async move { (done > 0.0).then_some(()) }
        },
    )
    .await;
    drop(standby);
    let _ = std::fs::remove_file(&kubeconfig);
}
