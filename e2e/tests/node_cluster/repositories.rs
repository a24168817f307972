//! Two more repositories on the node cluster, beside the other scenarios: a volume repository
//! served by the tenant's repository host, and an S3 repository whose server goes down and comes
//! back while the tenant keeps serving.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dfr_crds::DfrCountry;
use kube::{Api, Client};
use serde_json::json;

use super::backups::{
    PASSPHRASE, apply, archived_up_to_now, create_person, leader_pod, restore_check, set_secret,
    superuser_sql, token, wait_backup, wait_ready,
};
use super::{condition, eventually, repo, run_kubectl};

/// A two-member tenant of the sample's shape with `backup` as its backup section.
pub(super) fn country(
    name: &str,
    code: &str,
    instances: i32,
    backup: serde_json::Value,
) -> DfrCountry {
    let sample = std::fs::read_to_string(repo().join("config/samples/ton-dev.yaml")).unwrap();
    let mut country: DfrCountry = serde_yaml::from_str(&sample).unwrap();
    country.metadata.name = Some(name.into());
    let mut spec = serde_json::to_value(&country.spec).unwrap();
    spec["countryCode"] = json!(code);
    spec["displayName"] = json!(format!("{code} (repository e2e)"));
    spec["environment"] = json!("test");
    spec["appVersion"] = json!(env!("CARGO_PKG_VERSION"));
    spec["deletionPolicy"] = json!("Delete");
    spec["postgres"]["instances"] = json!(instances);
    spec["postgres"]["synchronousMode"] = json!(if instances > 1 { "on" } else { "off" });
    spec["api"]["minReplicas"] = json!(1);
    spec["api"]["maxReplicas"] = json!(1);
    super::shared_node_spec(&mut spec);
    spec["backup"] = backup;
    country.spec = serde_json::from_value(spec).unwrap();
    country
}

async fn wait_for_namespace(namespace: &str) {
    eventually(
        &format!("namespace {namespace}"),
        Duration::from_secs(120),
        || async {
            dfr_e2e::testing::kubectl(&["get", "namespace", namespace])
                .status
                .success()
                .then_some(())
        },
    )
    .await;
}

/// BackupsHealthy as (status, reason, message) once `accept` takes it.
async fn wait_backups_healthy(
    client: &Client,
    name: &str,
    timeout: Duration,
    accept: impl Fn(&str) -> bool,
) -> (String, String, String) {
    let countries: Api<DfrCountry> = Api::all(client.clone());
    eventually(&format!("BackupsHealthy of {name}"), timeout, || async {
        let country = countries.get(name).await.ok()?;
        let found = country
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "BackupsHealthy")?;
        accept(&found.status).then_some((found.status, found.reason, found.message))
    })
    .await
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_repository_serves_its_tenant_through_the_repository_host() {
    let _shared = super::shared_cluster().await;
    const NAME: &str = "fji-e2e-volume";
    const NAMESPACE: &str = "dfr-fji-test";
    let client = dfr_e2e::testing::kube_client().await;
    super::install_operator();
    let applied = Instant::now();
    apply(
        &client,
        &country(
            NAME,
            "FJI",
            2,
            json!({
                "schedule": "0 3 * * *",
                "destination": {"volume": {"size": "2Gi"}},
                "encryptionKeySecretRef": {"name": "backup-encryption", "key": "passphrase"},
                "pointInTimeRecovery": true,
            }),
        ),
    )
    .await;
    wait_for_namespace(NAMESPACE).await;
    set_secret(
        NAMESPACE,
        "backup-encryption",
        BTreeMap::from([("passphrase", PASSPHRASE.to_string())]),
    );
    wait_ready(&client, NAME, Duration::from_secs(420)).await;
    let first = wait_backup(&client, NAME, None).await;
    println!(
        "figure: first backup to the repository host {:.1} s after apply",
        applied.elapsed().as_secs_f64()
    );
    assert_eq!(condition(&first, "BackupsHealthy").as_deref(), Some("True"));
    let first_label = first.status.unwrap().last_backup.unwrap().label;

    // A marker in plaintext in the database, then a backup by hand: the repository on the
    // volume holds the backup and never the plaintext.
    let leader = leader_pod(NAMESPACE);
    let marker = format!("volume-marker-{}", dfr_e2e::testing::unique_suffix());
    superuser_sql(
        NAMESPACE,
        &leader,
        &format!(
            "INSERT INTO areas (code, parent_code, name, level) VALUES ('FJ', NULL, '{marker}', 0) ON CONFLICT DO NOTHING"
        ),
    );
    run_kubectl(&[
        "-n",
        NAMESPACE,
        "create",
        "job",
        "--from=cronjob/postgres-backup",
        &format!("by-hand-{}", dfr_e2e::testing::unique_suffix()),
    ]);
    let second = wait_backup(&client, NAME, first_label.as_deref()).await;
    println!("backup by hand: {:?}", second.status.unwrap().last_backup);
    let volume = run_kubectl(&[
        "-n",
        NAMESPACE,
        "get",
        "pvc",
        "repository-postgres-repo-0",
        "-o",
        "jsonpath={.spec.volumeName}",
    ]);
    let path = run_kubectl(&[
        "get",
        "pv",
        volume.trim(),
        "-o",
        "jsonpath={.spec.local.path}{.spec.hostPath.path}",
    ]);
    let files = files_under(std::path::Path::new(path.trim()));
    assert!(
        files.iter().any(|file| file.ends_with("backup.info")),
        "the repository is on the host's volume at {path}: {files:?}"
    );
    assert!(
        files
            .iter()
            .any(|file| file.to_string_lossy().contains("/archive/")),
        "WAL archived through the host: {files:?}"
    );
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !bytes
                .windows(marker.len())
                .any(|window| window == marker.as_bytes()),
            "plaintext {marker} in {}",
            file.display()
        );
    }
    println!(
        "{} files on the repository volume, none with the plaintext",
        files.len()
    );

    // A switchover: the new leader archives to the same host.
    let replica = super::backups::replica_pod(NAMESPACE);
    super::patronictl(
        NAMESPACE,
        &leader,
        &[
            "switchover",
            "--leader",
            &leader,
            "--candidate",
            replica.trim(),
            "--force",
        ],
    );
    eventually("the new leader", Duration::from_secs(120), || async {
        let now = leader_pod(NAMESPACE);
        (!now.is_empty() && now != leader).then_some(())
    })
    .await;
    archived_up_to_now(NAMESPACE).await;

    // The restore check runs on the host's node from the same volume.
    let check = restore_check(
        &client,
        NAME,
        NAMESPACE,
        &format!("volume-check-{}", dfr_e2e::testing::unique_suffix()),
    )
    .await;
    println!("restore check from the volume: {check:?}");
    assert_eq!(check.result, dfr_crds::BackupResult::Succeeded, "{check:?}");
    super::release_tenant(&client, NAME).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_repository_down_fails_backups_not_writes_and_heals_by_itself() {
    let _shared = super::shared_cluster().await;
    const NAME: &str = "vut-e2e-down";
    const NAMESPACE: &str = "dfr-vut-test";
    const PORT: u16 = 9100;
    let client = dfr_e2e::testing::kube_client().await;
    super::install_operator();
    let mut server = dfr_e2e::testing::StoppableS3::start(PORT);
    let s3 = server.endpoint().clone();
    apply(
        &client,
        &country(
            NAME,
            "VUT",
            1,
            json!({
                "schedule": "0 3 * * *",
                "destination": {"s3": {
                    "endpoint": s3.endpoint, "bucket": s3.bucket, "region": s3.region,
                    "credentialsSecretRef": {"name": "backup-s3"},
                    "caSecretRef": {"name": "backup-s3-ca"},
                }},
                "encryptionKeySecretRef": {"name": "backup-encryption", "key": "passphrase"},
                "pointInTimeRecovery": true,
            }),
        ),
    )
    .await;
    wait_for_namespace(NAMESPACE).await;
    for (name, data) in [
        (
            "backup-s3",
            BTreeMap::from([
                ("accessKeyId", s3.access_key.clone()),
                ("secretAccessKey", s3.secret_key.clone()),
            ]),
        ),
        (
            "backup-s3-ca",
            BTreeMap::from([("ca.crt", std::fs::read_to_string(&s3.ca_file).unwrap())]),
        ),
        (
            "backup-encryption",
            BTreeMap::from([("passphrase", PASSPHRASE.to_string())]),
        ),
    ] {
        set_secret(NAMESPACE, name, data);
    }
    wait_ready(&client, NAME, Duration::from_secs(420)).await;
    wait_backup(&client, NAME, None).await;

    let username = format!("down-{}", dfr_e2e::testing::unique_suffix());
    let leader = leader_pod(NAMESPACE);
    superuser_sql(
        NAMESPACE,
        &leader,
        "INSERT INTO areas (code, parent_code, name, level) VALUES ('VU', NULL, 'Vanuatu', 0), ('WS-01', 'VU', 'Efate', 1) ON CONFLICT DO NOTHING",
    );
    super::create_user(NAMESPACE, &username, "supervisor", "WS-01");
    let (http, base) = super::api_endpoint(&client, NAMESPACE).await;
    let bearer = token(&http, &base, &username).await;

    // The server goes away: the next archiving check fails with the reason, and writes are
    // still acknowledged (WAL waits in the members' bounded queue).
    server.stop();
    let down = Instant::now();
    run_kubectl(&[
        "-n",
        NAMESPACE,
        "create",
        "job",
        "--from=cronjob/postgres-archive-check",
        &format!("while-down-{}", dfr_e2e::testing::unique_suffix()),
    ]);
    let (_, reason, message) =
        wait_backups_healthy(&client, NAME, Duration::from_secs(420), |s| s == "False").await;
    println!(
        "figure: BackupsHealthy False {:.1} s after the S3 server stopped: {reason}: {message}",
        down.elapsed().as_secs_f64()
    );
    assert_eq!(reason, "RepositoryUnreachable", "{message}");
    for number in 0..5 {
        create_person(&http, &base, &bearer, 700 + number).await;
    }

    // Back: nobody touches the tenant; the scheduled archiving check turns it True again and
    // the WAL queued meanwhile reaches the repository.
    server.resume();
    let back = Instant::now();
    let (_, reason, _) =
        wait_backups_healthy(&client, NAME, Duration::from_secs(600), |s| s == "True").await;
    println!(
        "figure: BackupsHealthy True ({reason}) {:.1} s after the S3 server came back, untouched",
        back.elapsed().as_secs_f64()
    );
    archived_up_to_now(NAMESPACE).await;
    super::release_tenant(&client, NAME).await;
}
