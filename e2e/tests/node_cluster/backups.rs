//! Backups on the node cluster, beside the failover scenario: a tenant with two members backs up
//! to the cluster's S3 server (versitygw, TLS), its repository is encrypted, and a new tenant
//! restored to a moment T has exactly the records acknowledged before T.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dfr_crds::{BackupResult, DfrCountry};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::{PASSWORD, condition, eventually, repo, run_kubectl};

const SOURCE: &str = "wsm-e2e";
const SOURCE_NAMESPACE: &str = "dfr-wsm-test";
const RESTORED: &str = "wsm-e2e-restored";
const RESTORED_NAMESPACE: &str = "dfr-wsm-dr";
const AREA: &str = "WS-01";
pub(super) const PASSPHRASE: &str = "an e2e repository passphrase of some length";

use dfr_e2e::cluster::S3Endpoint as S3;

fn country(s3: &S3, name: &str, environment: &str, restore_to: Option<&str>) -> DfrCountry {
    let sample = std::fs::read_to_string(repo().join("config/samples/ton-dev.yaml")).unwrap();
    let mut country: DfrCountry = serde_yaml::from_str(&sample).unwrap();
    country.metadata.name = Some(name.into());
    let mut spec = serde_json::to_value(&country.spec).unwrap();
    spec["countryCode"] = json!("WSM");
    spec["displayName"] = json!("Samoa (backup e2e)");
    spec["environment"] = json!(environment);
    spec["appVersion"] = json!(env!("CARGO_PKG_VERSION"));
    spec["deletionPolicy"] = json!("Delete");
    spec["postgres"]["instances"] = json!(if restore_to.is_some() { 1 } else { 2 });
    spec["postgres"]["synchronousMode"] = json!(if restore_to.is_some() { "off" } else { "on" });
    spec["api"]["minReplicas"] = json!(1);
    spec["api"]["maxReplicas"] = json!(1);
    super::shared_node_spec(&mut spec);
    spec["backup"] = s3_backup(s3);
    if let Some(target) = restore_to {
        spec["bootstrap"] = json!({"fromBackup": {"country": SOURCE, "targetTime": target}});
    }
    country.spec = serde_json::from_value(spec).unwrap();
    country
}

/// `spec.backup` for the cluster's S3 server, with the Secrets `create_repository_secrets` makes.
pub(super) fn s3_backup(s3: &S3) -> serde_json::Value {
    json!({
        "schedule": "*/10 * * * *",
        "retention": {"daily": 7, "weekly": 4, "monthly": 6, "yearly": 1},
        "destination": {"s3": {
            "endpoint": s3.endpoint, "bucket": s3.bucket, "region": s3.region,
            "credentialsSecretRef": {"name": "backup-s3"},
            "caSecretRef": {"name": "backup-s3-ca"},
        }},
        "encryptionKeySecretRef": {"name": "backup-encryption", "key": "passphrase"},
        "pointInTimeRecovery": true,
    })
}

pub(super) async fn apply(client: &Client, country: &DfrCountry) {
    let countries: Api<DfrCountry> = Api::all(client.clone());
    countries
        .patch(
            country.metadata.name.as_deref().unwrap(),
            &PatchParams::apply("dfr-e2e").force(),
            &Patch::Apply(country),
        )
        .await
        .unwrap();
}

/// The repository's Secrets in the tenant namespace, as a platform team creates them once the
/// operator has made the namespace.
pub(super) async fn create_repository_secrets(s3: &S3, namespace: &str) {
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
    let ca = std::fs::read_to_string(&s3.ca_file).unwrap();
    for (name, data) in [
        (
            "backup-s3",
            BTreeMap::from([
                ("accessKeyId", s3.access_key.clone()),
                ("secretAccessKey", s3.secret_key.clone()),
            ]),
        ),
        ("backup-s3-ca", BTreeMap::from([("ca.crt", ca)])),
        (
            "backup-encryption",
            BTreeMap::from([("passphrase", PASSPHRASE.to_string())]),
        ),
    ] {
        set_secret(namespace, name, data);
    }
}

pub(super) async fn wait_ready(client: &Client, name: &str, timeout: Duration) -> DfrCountry {
    let countries: Api<DfrCountry> = Api::all(client.clone());
    eventually(&format!("{name} to be Ready"), timeout, || async {
        let country = countries.get_opt(name).await.ok().flatten()?;
        (condition(&country, "Ready").as_deref() == Some("True")
            && country.status.as_ref()?.observed_generation == country.metadata.generation)
            .then_some(country)
    })
    .await
}

/// Waits for a successful backup newer than `after` (a label), printing the status it shows.
pub(super) async fn wait_backup(client: &Client, name: &str, after: Option<&str>) -> DfrCountry {
    let countries: Api<DfrCountry> = Api::all(client.clone());
    eventually(
        &format!("a successful backup of {name}"),
        Duration::from_secs(600),
        || async {
            let country = countries.get_opt(name).await.ok().flatten()?;
            let last = country.status.as_ref()?.last_backup.as_ref()?;
            if last.result == BackupResult::Failed {
                panic!("backup failed: {last:?}");
            }
            (last.label.as_deref() != after && last.label.is_some()).then_some(country)
        },
    )
    .await
}

/// The pod labelled leader, or "" while there is none (during a failover).
pub(super) fn leader_pod(namespace: &str) -> String {
    pod_with_role(namespace, "primary")
}

/// A member Patroni labelled replica, or "" when there is none.
pub(super) fn replica_pod(namespace: &str) -> String {
    pod_with_role(namespace, "replica")
}

fn pod_with_role(namespace: &str, role: &str) -> String {
    run_kubectl(&[
        "-n",
        namespace,
        "get",
        "pods",
        "-l",
        &format!("role={role}"),
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])
    .split_whitespace()
    .next()
    .unwrap_or_default()
    .to_string()
}

pub(super) fn superuser_sql(namespace: &str, pod: &str, sql: &str) -> String {
    run_kubectl(&[
        "-n",
        namespace,
        "exec",
        pod,
        "-c",
        "postgres",
        "--",
        "sh",
        "-c",
        &format!(
            "PGPASSWORD=\"$PATRONI_SUPERUSER_PASSWORD\" psql -v ON_ERROR_STOP=1 -qAt -U \"$PATRONI_SUPERUSER_USERNAME\" -d dfr -c \"{sql}\""
        ),
    ])
}

pub(super) async fn token(http: &reqwest::Client, base: &str, username: &str) -> String {
    eventually("a token", Duration::from_secs(60), || async {
        let response = http
            .post(format!("{base}/oauth/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .ok()?;
        if response.status() != 200 {
            return None;
        }
        let body: Value = response.json().await.ok()?;
        body["access_token"].as_str().map(String::from)
    })
    .await
}

pub(super) fn person_body(number: u32) -> Value {
    json!({
        "nationalId": {"system": "WSM-NID", "value": format!("BKP{number:08}")},
        "givenName": "Backup",
        "familyName": format!("Record {number}"),
        "sex": 9,
        "birthDate": "1990-01-01",
        "areaCode": AREA,
    })
}

pub(super) async fn create_person(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    number: u32,
) -> String {
    let response = http
        .post(format!("{base}/api/dfr/persons"))
        .bearer_auth(token)
        .json(&person_body(number))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_string()
}

async fn status_of(http: &reqwest::Client, base: &str, token: &str, id: &str) -> u16 {
    http.get(format!("{base}/api/dfr/persons/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits until the leader's WAL up to now is in the archive.
pub(super) async fn archived_up_to_now(namespace: &str) {
    let leader = leader_pod(namespace);
    let segment = superuser_sql(
        namespace,
        &leader,
        "SELECT pg_walfile_name(pg_switch_wal())",
    );
    let segment = segment.trim().to_string();
    eventually(
        &format!("WAL segment {segment} archived"),
        Duration::from_secs(180),
        || async {
            let archived = superuser_sql(
                namespace,
                &leader,
                "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
            );
            (archived.trim() >= segment.as_str()).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_are_encrypted_and_restore_to_a_point_in_time() {
    let _shared = super::shared_cluster().await;
    let client = dfr_e2e::testing::kube_client().await;
    super::install_operator();
    let s3 = dfr_e2e::testing::s3();

    // A tenant with an S3 repository: its first backup runs as soon as it has a leader.
    let applied = Instant::now();
    apply(&client, &country(&s3, SOURCE, "test", None)).await;
    create_repository_secrets(&s3, SOURCE_NAMESPACE).await;
    wait_ready(&client, SOURCE, Duration::from_secs(420)).await;
    let first = wait_backup(&client, SOURCE, None).await;
    println!(
        "figure: first backup recorded {:.1} s after apply",
        applied.elapsed().as_secs_f64()
    );
    let status = first.status.clone().unwrap();
    let last = status.last_backup.clone().unwrap();
    println!("first backup: {last:?}");
    assert_eq!(condition(&first, "BackupsHealthy").as_deref(), Some("True"));
    assert!(status.backups.as_ref().unwrap().count >= 1);
    assert!(
        status
            .backups
            .as_ref()
            .unwrap()
            .first_recoverable_time
            .is_some()
    );
    let listing = run_kubectl(&["get", "dfrcountries", SOURCE]);
    println!("{listing}");
    let header = listing.lines().next().unwrap();
    let row = listing.lines().nth(1).unwrap();
    let column = header.find("LAST BACKUP").unwrap();
    assert!(
        !row[column..].trim_start().starts_with("AGE") && row.len() > column,
        "the Last Backup column shows the time: {row}"
    );

    // Records through the API, a marker in plaintext in the database, then the moment T.
    let leader = leader_pod(SOURCE_NAMESPACE);
    let marker = format!("plaintext-marker-{}", dfr_e2e::testing::unique_suffix());
    superuser_sql(
        SOURCE_NAMESPACE,
        &leader,
        &format!(
            "INSERT INTO areas (code, parent_code, name, level) VALUES ('WS', NULL, '{marker}', 0), ('{AREA}', 'WS', 'Upolu', 1) ON CONFLICT DO NOTHING"
        ),
    );
    let username = format!("bkp-{}", dfr_e2e::testing::unique_suffix());
    super::create_user(SOURCE_NAMESPACE, &username, "supervisor", AREA);
    let (http, base) = super::api_endpoint(&client, SOURCE_NAMESPACE).await;
    let source_token = token(&http, &base, &username).await;
    let mut before = Vec::new();
    for number in 0..10 {
        before.push(create_person(&http, &base, &source_token, number).await);
    }
    // A failover before T: the writes after it are archived by the new leader, on a new
    // timeline, and the restore to T must have them too.
    let old_leader = leader_pod(SOURCE_NAMESPACE);
    run_kubectl(&[
        "-n",
        SOURCE_NAMESPACE,
        "delete",
        "pod",
        &old_leader,
        "--wait=false",
    ]);
    let new_leader = eventually("a new leader", Duration::from_secs(120), || async {
        let leader = leader_pod(SOURCE_NAMESPACE);
        (!leader.is_empty() && leader != old_leader).then_some(leader)
    })
    .await;
    println!("failover before T: {old_leader} -> {new_leader}");
    for number in 10..20 {
        let id = eventually(
            "the API to accept writes after the failover",
            Duration::from_secs(120),
            || async {
                let response = http
                    .post(format!("{base}/api/dfr/persons"))
                    .bearer_auth(&source_token)
                    .json(&person_body(number))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .ok()?;
                if response.status() != 201 && response.status() != 200 {
                    return None;
                }
                let body: Value = response.json().await.ok()?;
                body["id"].as_str().map(String::from)
            },
        )
        .await;
        before.push(id);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let target = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut after = Vec::new();
    for number in 100..110 {
        after.push(create_person(&http, &base, &source_token, number).await);
    }
    // Deleted after T: the restore still has them.
    for id in &before[..3] {
        let response = http
            .delete(format!("{base}/api/dfr/persons/{id}"))
            .bearer_auth(&source_token)
            .header("If-Match", "\"1\"")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204, "{}", response.text().await.unwrap());
        assert_eq!(status_of(&http, &base, &source_token, id).await, 404);
    }
    archived_up_to_now(SOURCE_NAMESPACE).await;

    // A second backup, started by hand: the marker is in it and in the archived WAL; none of it
    // is readable.
    let requested = Instant::now();
    let requests: Api<dfr_crds::DfrBackup> = Api::namespaced(client.clone(), SOURCE_NAMESPACE);
    requests
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "dfr.io/v1alpha1", "kind": "DfrBackup",
                "metadata": {"name": "after-writes"},
                "spec": {"type": "diff"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let request = eventually(
        "DfrBackup after-writes to finish",
        Duration::from_secs(300),
        || async {
            let status = requests.get("after-writes").await.ok()?.status?;
            status.phase.is_finished().then_some(status)
        },
    )
    .await;
    println!(
        "figure: DfrBackup finished {:.1} s after it was created: {request:?}",
        requested.elapsed().as_secs_f64()
    );
    assert_eq!(
        request.phase,
        dfr_crds::BackupPhase::Succeeded,
        "{request:?}"
    );
    assert_eq!(request.r#type.as_deref(), Some("diff"));
    println!(
        "{}",
        run_kubectl(&["-n", SOURCE_NAMESPACE, "get", "dfrbackups"])
    );
    let second = wait_backup(&client, SOURCE, last.label.as_deref()).await;
    assert_eq!(
        second
            .status
            .as_ref()
            .unwrap()
            .last_backup
            .as_ref()
            .unwrap()
            .label,
        request.label,
        "the DfrBackup is the tenant's last backup"
    );
    let bucket_dir = std::env::var("DFR_S3_BUCKET_DIR")
        .expect("DFR_S3_BUCKET_DIR: the directory versitygw keeps the bucket in");
    let grep = std::process::Command::new("grep")
        .args(["-rlF", &marker, &bucket_dir])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&grep.stdout),
        "",
        "the marker is readable in the bucket"
    );
    let files = std::process::Command::new("find")
        .args([&bucket_dir, "-path", "*dfr/wsm-e2e*", "-type", "f"])
        .output()
        .unwrap();
    let file_count = String::from_utf8_lossy(&files.stdout).lines().count();
    assert!(
        file_count > 10,
        "the repository holds backup and WAL files: {file_count}"
    );
    // A wrong passphrase cannot read the repository; the right one can.
    let info = |passphrase: &str| {
        dfr_e2e::testing::kubectl(&[
            "-n",
            SOURCE_NAMESPACE,
            "exec",
            &leader,
            "-c",
            "pgbackrest",
            "--",
            "env",
            &format!("PGBACKREST_REPO1_CIPHER_PASS={passphrase}"),
            "pgbackrest",
            "--stanza=dfr",
            "info",
        ])
    };
    let wrong = info("not the passphrase");
    let right = info(PASSPHRASE);
    println!(
        "info with a wrong passphrase: {}{}",
        String::from_utf8_lossy(&wrong.stdout),
        String::from_utf8_lossy(&wrong.stderr)
    );
    assert!(
        String::from_utf8_lossy(&right.stdout).contains("full backup"),
        "{}",
        String::from_utf8_lossy(&right.stdout)
    );
    assert!(
        !String::from_utf8_lossy(&wrong.stdout).contains("full backup"),
        "a wrong passphrase must not read the backup list"
    );

    // A new tenant restored to T.
    let restore_applied = Instant::now();
    apply(&client, &country(&s3, RESTORED, "dr", Some(&target))).await;
    create_repository_secrets(&s3, RESTORED_NAMESPACE).await;
    wait_ready(&client, RESTORED, Duration::from_secs(600)).await;
    println!(
        "figure: restored tenant Ready {:.1} s after apply (target {target})",
        restore_applied.elapsed().as_secs_f64()
    );
    // The restored tenant has a CA of its own.
    let (restored_http, restored_base) = super::api_endpoint(&client, RESTORED_NAMESPACE).await;
    let restored_token = token(&restored_http, &restored_base, &username).await;
    for id in &before {
        assert_eq!(
            status_of(&restored_http, &restored_base, &restored_token, id).await,
            200,
            "{id} was acknowledged before T"
        );
    }
    for id in &after {
        assert_eq!(
            status_of(&restored_http, &restored_base, &restored_token, id).await,
            404,
            "{id} was written after T"
        );
    }
    let verified = super::dfr_api_as_owner(RESTORED_NAMESPACE, &[], &["audit", "verify"]);
    println!("audit verify on the restored tenant: {verified}");

    // The restored tenant backs up into a repository path of its own.
    wait_backup(&client, RESTORED, None).await;

    // The repository refuses the tenant (wrong credentials): backups fail with the reason,
    // writes are still acknowledged; with the right credentials back, BackupsHealthy turns True
    // again on the next archiving check, without anyone touching the tenant.
    let right_credentials = BTreeMap::from([
        ("accessKeyId", s3.access_key.clone()),
        ("secretAccessKey", s3.secret_key.clone()),
    ]);
    set_secret(
        SOURCE_NAMESPACE,
        "backup-s3",
        BTreeMap::from([
            ("accessKeyId", s3.access_key.clone()),
            ("secretAccessKey", "not-the-secret-key".to_string()),
        ]),
    );
    requests
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "dfr.io/v1alpha1", "kind": "DfrBackup",
                "metadata": {"name": "while-denied"},
                "spec": {"type": "incr"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let denied = eventually(
        "DfrBackup while-denied to fail",
        Duration::from_secs(300),
        || async {
            let status = requests.get("while-denied").await.ok()?.status?;
            status.phase.is_finished().then_some(status)
        },
    )
    .await;
    println!("with wrong credentials: {denied:?}");
    assert_eq!(denied.phase, dfr_crds::BackupPhase::Failed);
    assert!(
        denied
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("RepositoryAccessDenied"),
        "{denied:?}"
    );
    let countries: Api<DfrCountry> = Api::all(client.clone());
    let unhealthy = eventually("BackupsHealthy False", Duration::from_secs(120), || async {
        let country = countries.get(SOURCE).await.ok()?;
        let condition = country
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "BackupsHealthy" && c.status == "False")?;
        Some(condition)
    })
    .await;
    println!("BackupsHealthy: {} {}", unhealthy.reason, unhealthy.message);
    assert_eq!(unhealthy.reason, "RepositoryAccessDenied");
    create_person(&http, &base, &source_token, 500).await;
    set_secret(SOURCE_NAMESPACE, "backup-s3", right_credentials);
    let recovered = Instant::now();
    eventually(
        "BackupsHealthy True again",
        Duration::from_secs(420),
        || async {
            let country = countries.get(SOURCE).await.ok()?;
            (condition(&country, "BackupsHealthy").as_deref() == Some("True")).then_some(())
        },
    )
    .await;
    println!(
        "figure: BackupsHealthy True {:.1} s after the credentials were fixed",
        recovered.elapsed().as_secs_f64()
    );

    // Retention: with one daily backup kept, a new full backup expires the older sets from the
    // bucket, and what is kept still restores (a restore check started by hand).
    let bucket_dir = std::env::var("DFR_S3_BUCKET_DIR").unwrap();
    let sets_dir = format!("{bucket_dir}/dfr/{SOURCE}/backup/dfr");
    let sets_on_disk = || -> Vec<String> {
        let mut sets: Vec<String> = std::fs::read_dir(&sets_dir)
            .unwrap()
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().is_dir())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("20"))
            .collect();
        sets.sort();
        sets
    };
    let before_retention = sets_on_disk();
    println!("sets before retention: {before_retention:?}");
    assert!(before_retention.len() >= 2, "{before_retention:?}");
    let mut small = country(&s3, SOURCE, "test", None);
    let mut spec = serde_json::to_value(&small.spec).unwrap();
    spec["backup"]["retention"] = json!({"daily": 1, "weekly": 0, "monthly": 0, "yearly": 0});
    small.spec = serde_json::from_value(spec).unwrap();
    apply(&client, &small).await;
    requests
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "dfr.io/v1alpha1", "kind": "DfrBackup",
                "metadata": {"name": "new-full"},
                "spec": {"type": "full"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let full = eventually("DfrBackup new-full", Duration::from_secs(300), || async {
        let status = requests.get("new-full").await.ok()?.status?;
        status.phase.is_finished().then_some(status)
    })
    .await;
    assert_eq!(full.phase, dfr_crds::BackupPhase::Succeeded, "{full:?}");
    let kept = full.label.clone().unwrap();
    let expired = eventually(
        "the older sets to be expired",
        Duration::from_secs(300),
        || async {
            let country = countries.get(SOURCE).await.ok()?;
            let backups = country.status?.backups?;
            (backups.count == 1 && !backups.expired.is_empty()).then_some(backups.expired)
        },
    )
    .await;
    println!("expired by GFS: {expired:?}");
    assert_eq!(
        sets_on_disk(),
        vec![kept.clone()],
        "only the kept set stays in the bucket"
    );
    let check = restore_check(&client, SOURCE, SOURCE_NAMESPACE, "after-retention").await;
    assert_eq!(check.result, BackupResult::Succeeded, "{check:?}");
    assert_eq!(check.backup_label.as_deref(), Some(kept.as_str()));
    println!(
        "figure: restore check of the kept set took {} s: {:?}",
        check.duration_seconds.unwrap_or(0),
        check.message
    );

    // A damaged repository file: the restore check fails and says so.
    let damaged = largest_file(&format!("{sets_dir}/{kept}/pg_data"));
    let mut bytes = std::fs::read(&damaged).unwrap();
    let middle = bytes.len() / 2;
    let end = (middle + 64).min(bytes.len());
    for byte in &mut bytes[middle..end] {
        *byte ^= 0xff;
    }
    std::fs::write(&damaged, bytes).unwrap();
    println!("damaged {}", damaged.display());
    let check = restore_check(&client, SOURCE, SOURCE_NAMESPACE, "after-damage").await;
    println!("restore check of the damaged set: {check:?}");
    assert_eq!(check.result, BackupResult::Failed);
    let country = countries.get(SOURCE).await.unwrap();
    let healthy = country
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "BackupsHealthy")
        .unwrap();
    assert_eq!(
        (healthy.status.as_str(), healthy.reason.as_str()),
        ("False", "RestoreCheckFailed"),
        "{}",
        healthy.message
    );
    super::release_tenant(&client, SOURCE).await;
    super::release_tenant(&client, RESTORED).await;
}

/// Starts a restore check now, as a person would, and waits for the status to show it.
pub(super) async fn restore_check(
    client: &Client,
    name: &str,
    namespace: &str,
    job: &str,
) -> dfr_crds::RestoreCheckStatus {
    run_kubectl(&[
        "-n",
        namespace,
        "create",
        "job",
        "--from=cronjob/postgres-restore-check",
        job,
    ]);
    let countries: Api<DfrCountry> = Api::all(client.clone());
    eventually(
        &format!("restore check {job}"),
        Duration::from_secs(600),
        || async {
            let check = countries.get(name).await.ok()?.status?.last_restore_check?;
            (check.job.as_deref() == Some(job)).then_some(check)
        },
    )
    .await
}

fn largest_file(dir: &str) -> std::path::PathBuf {
    let mut largest: Option<(u64, std::path::PathBuf)> = None;
    let mut pending = vec![std::path::PathBuf::from(dir)];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let size = entry.metadata().unwrap().len();
                if largest.as_ref().is_none_or(|(best, _)| size > *best) {
                    largest = Some((size, path));
                }
            }
        }
    }
    largest.unwrap().1
}

pub(super) fn set_secret(namespace: &str, name: &str, data: BTreeMap<&str, String>) {
    let manifest = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": data,
    });
    let path = std::env::temp_dir().join(format!("dfr-e2e-{namespace}-{name}.json"));
    std::fs::write(&path, manifest.to_string()).unwrap();
    run_kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        path.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(path);
}

/// Figures, not assertions: backup and restore throughput on a database of more than 1 GiB,
/// the time from applying a restored tenant to Ready, and how long a committed write waits
/// before its WAL is in the repository (the data a lost cluster can lose). Run it alone:
/// `cargo test -p dfr-e2e --features node --test node_cluster backup_benchmark -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: minutes and a GiB of data; run it by name"]
async fn backup_benchmark() {
    let _shared = super::shared_cluster().await;
    const NAME: &str = "wsm-bench";
    const NAMESPACE: &str = "dfr-wsm-staging";
    let client = dfr_e2e::testing::kube_client().await;
    super::install_operator();
    let s3 = dfr_e2e::testing::s3();
    let mut bench = country(&s3, NAME, "staging", None);
    let mut spec = serde_json::to_value(&bench.spec).unwrap();
    spec["postgres"]["instances"] = json!(1);
    spec["postgres"]["synchronousMode"] = json!("off");
    bench.spec = serde_json::from_value(spec).unwrap();
    apply(&client, &bench).await;
    create_repository_secrets(&s3, NAMESPACE).await;
    wait_ready(&client, NAME, Duration::from_secs(420)).await;
    let first = wait_backup(&client, NAME, None).await;
    let leader = leader_pod(NAMESPACE);

    let loaded = Instant::now();
    run_kubectl(&[
        "-n",
        NAMESPACE,
        "exec",
        &leader,
        "-c",
        "postgres",
        "--",
        "sh",
        "-c",
        "PGPASSWORD=\"$PATRONI_SUPERUSER_PASSWORD\" /usr/lib/postgresql/15/bin/pgbench -q -i -s 75 -U postgres -d dfr",
    ]);
    let bytes: f64 = superuser_sql(NAMESPACE, &leader, "SELECT pg_database_size('dfr')")
        .trim()
        .parse()
        .unwrap();
    println!(
        "figure: loaded {:.2} GiB in {:.0} s",
        bytes / f64::from(1 << 30),
        loaded.elapsed().as_secs_f64()
    );

    // The write-to-archive delay on an idle registry: a write, then waiting for its segment.
    superuser_sql(NAMESPACE, &leader, "CHECKPOINT");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let segment = superuser_sql(
        NAMESPACE,
        &leader,
        "INSERT INTO areas (code, parent_code, name, level) VALUES ('WSB', NULL, 'bench', 0) ON CONFLICT DO NOTHING; SELECT pg_walfile_name(pg_current_wal_insert_lsn())",
    );
    let segment = segment
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let written = Instant::now();
    eventually(
        "the write's WAL in the repository",
        Duration::from_secs(300),
        || async {
            let archived = superuser_sql(
                NAMESPACE,
                &leader,
                "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
            );
            (archived.trim() >= segment.as_str()).then_some(())
        },
    )
    .await;
    println!(
        "figure: an idle registry's write reached the repository {:.1} s after commit (archive_timeout 60 s)",
        written.elapsed().as_secs_f64()
    );

    let requests: Api<dfr_crds::DfrBackup> = Api::namespaced(client.clone(), NAMESPACE);
    requests
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "dfr.io/v1alpha1", "kind": "DfrBackup",
                "metadata": {"name": "bench-full"}, "spec": {"type": "full"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let full = eventually("the full backup", Duration::from_secs(1800), || async {
        let status = requests.get("bench-full").await.ok()?.status?;
        status.phase.is_finished().then_some(status)
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "figure: full backup of {:.2} GiB in {seconds:.0} s ({:.1} MiB/s), {:.0} MiB stored; {full:?}",
        full.size_bytes.unwrap_or(0) as f64 / f64::from(1 << 30),
        full.size_bytes.unwrap_or(0) as f64 / f64::from(1 << 20) / seconds,
        full.repository_size_bytes.unwrap_or(0) as f64 / f64::from(1 << 20),
    );
    assert_ne!(first.status.unwrap().last_backup.unwrap().label, full.label);

    run_kubectl(&[
        "-n",
        NAMESPACE,
        "create",
        "job",
        "--from=cronjob/postgres-restore-check",
        "bench-check",
    ]);
    let countries: Api<DfrCountry> = Api::all(client.clone());
    let check = eventually("the restore check", Duration::from_secs(1800), || async {
        let check = countries.get(NAME).await.ok()?.status?.last_restore_check?;
        (check.job.as_deref() == Some("bench-check")).then_some(check)
    })
    .await;
    println!(
        "figure: restore check (restore, recovery, counts, audit chain) of {:.2} GiB in {} s ({:.1} MiB/s): {check:?}",
        bytes / f64::from(1 << 30),
        check.duration_seconds.unwrap_or(0),
        bytes / f64::from(1 << 20) / check.duration_seconds.unwrap_or(1).max(1) as f64
    );

    let restored_name = "wsm-bench-restored";
    let mut restored = country(&s3, restored_name, "prod", None);
    let mut spec = serde_json::to_value(&restored.spec).unwrap();
    spec["bootstrap"] = json!({"fromBackup": {"country": NAME}});
    spec["postgres"]["instances"] = json!(2);
    spec["deletionPolicy"] = json!("Retain");
    restored.spec = serde_json::from_value(spec).unwrap();
    let applied = Instant::now();
    apply(&client, &restored).await;
    create_repository_secrets(&s3, "dfr-wsm-prod").await;
    wait_ready(&client, restored_name, Duration::from_secs(1800)).await;
    println!(
        "figure: a tenant restored from {:.2} GiB (latest) Ready {:.0} s after apply",
        bytes / f64::from(1 << 30),
        applied.elapsed().as_secs_f64()
    );
}
