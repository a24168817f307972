//! The CRD on a real API server: it installs, every sample is accepted, kubectl prints the
//! columns, and each validation rule rejects a violating object with the API server's own words.
#![allow(clippy::unwrap_used)]

mod support;

use dfr_crds::DfrCountry;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::*;

async fn setup() -> Client {
    let admin = admin().await;
    install_crd(&admin).await;
    admin
}

/// Creates `country` with `change` merged into it and returns the API server's refusal.
async fn rejection(admin: &Client, sample: &str, change: Value) -> String {
    let id = unique_id();
    let mut object = serde_json::to_value(country_from_sample(sample, &id)).unwrap();
    merge(&mut object, change);
    let api: Api<DfrCountry> = Api::all(admin.clone());
    let country: DfrCountry = serde_json::from_value(object).unwrap();
    match api.create(&PostParams::default(), &country).await {
        Ok(created) => panic!(
            "the API server accepted {} although it breaks a rule",
            created.name_any()
        ),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            status.message
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}

fn merge(target: &mut Value, change: Value) {
    match (target, change) {
        (Value::Object(target), Value::Object(change)) => {
            for (key, value) in change {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, change) => *target = change,
    }
}

#[tokio::test]
async fn every_sample_is_accepted_and_kubectl_prints_the_columns() {
    let admin = setup().await;
    let samples = repo_root().join("config/samples");
    let applied = dfr_e2e::testing::kubectl(&["apply", "-k", samples.to_str().unwrap()]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let api: Api<DfrCountry> = Api::all(admin.clone());
    for code in ["cok", "wsm", "slb", "ton", "vut"] {
        let prod = api.get(&format!("{code}-prod")).await.unwrap();
        assert_eq!(prod.spec.environment, dfr_crds::Environment::Prod);
        let others = api.list(&Default::default()).await.unwrap();
        assert!(
            others
                .items
                .iter()
                .any(|c| c.spec.country_code == code.to_uppercase()
                    && c.spec.environment != dfr_crds::Environment::Prod),
            "{code} has no non-prod sample"
        );
    }
    let output = dfr_e2e::testing::kubectl(&["get", "dfrcountries"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8(output.stdout).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "COUNTRY", "ENV", "VERSION", "READY", "PRIMARY", "API", "LAST", "BACKUP", "AGE"
        ]
    );
    let ton = table.lines().find(|l| l.starts_with("ton-prod ")).unwrap();
    assert!(
        ton.contains(" TON ") && ton.contains(" prod ") && ton.contains(" 1.4.2 "),
        "{ton}"
    );
    let short = dfr_e2e::testing::kubectl(&["get", "dfrc", "ton-prod", "-o", "name"]);
    assert_eq!(
        String::from_utf8(short.stdout).unwrap().trim(),
        "dfrcountry.dfr.io/ton-prod"
    );
}

#[tokio::test]
async fn country_code_cannot_change() {
    let admin = setup().await;
    let id = unique_id();
    let country = apply_country(&admin, &country_from_sample("ton-dev.yaml", &id)).await;
    let api: Api<DfrCountry> = Api::all(admin.clone());
    let error = api
        .patch(
            &country.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"countryCode": "XYZ"}})),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("spec.countryCode"), "{error}");
    assert!(error.contains("countryCode is immutable"), "{error}");
    let environment = api
        .patch(
            &country.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"environment": "test"}})),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        environment.contains("environment is immutable"),
        "{environment}"
    );
}

#[tokio::test]
async fn prod_requires_deletion_policy_retain() {
    let admin = setup().await;
    let message = rejection(
        &admin,
        "ton-prod.yaml",
        json!({"spec": {"deletionPolicy": "Delete"}}),
    )
    .await;
    assert!(message.contains("spec.deletionPolicy"), "{message}");
    assert!(
        message.contains("environment prod requires deletionPolicy Retain"),
        "{message}"
    );
}

#[tokio::test]
async fn prod_requires_two_instances_and_synchronous_replication() {
    let admin = setup().await;
    let message = rejection(
        &admin,
        "ton-prod.yaml",
        json!({"spec": {"postgres": {"instances": 1}}}),
    )
    .await;
    assert!(
        message.contains("environment prod requires postgres.instances >= 2"),
        "{message}"
    );
    let message = rejection(
        &admin,
        "ton-prod.yaml",
        json!({"spec": {"postgres": {"synchronousMode": "off"}}}),
    )
    .await;
    assert!(
        message.contains("environment prod requires postgres.synchronousMode on or strict"),
        "{message}"
    );
}

#[tokio::test]
async fn min_replicas_may_not_exceed_max_replicas() {
    let admin = setup().await;
    let message = rejection(
        &admin,
        "ton-dev.yaml",
        json!({"spec": {"api": {"minReplicas": 5, "maxReplicas": 3}}}),
    )
    .await;
    assert!(message.contains("spec.api.minReplicas"), "{message}");
    assert!(
        message.contains("api.minReplicas must not exceed api.maxReplicas"),
        "{message}"
    );
}

#[tokio::test]
async fn autoscaling_follows_the_environment() {
    let admin = setup().await;
    let message = rejection(
        &admin,
        "ton-prod.yaml",
        json!({"spec": {"api": {"autoscaling": {"enabled": false}}}}),
    )
    .await;
    assert!(
        message.contains("spec.api.autoscaling.enabled"),
        "{message}"
    );
    assert!(
        message.contains("environment prod scales the API on CPU and p95 latency"),
        "{message}"
    );
    let message = rejection(
        &admin,
        "vut-test.yaml",
        json!({"spec": {"api": {"autoscaling": {"enabled": true}}}}),
    )
    .await;
    assert!(
        message.contains("environment test runs a fixed number of API pods"),
        "{message}"
    );
}

#[tokio::test]
async fn backup_schedule_must_be_a_five_field_cron() {
    let admin = setup().await;
    for bad in ["every night", "0 2 * *", "0 2 * * * *", "@daily"] {
        let message = rejection(
            &admin,
            "ton-dev.yaml",
            json!({"spec": {"backup": {"schedule": bad}}}),
        )
        .await;
        assert!(
            message.contains("backup.schedule must be a 5-field cron expression"),
            "{bad}: {message}"
        );
    }
}

#[tokio::test]
async fn replication_parameters_are_forbidden() {
    let admin = setup().await;
    let message = rejection(
        &admin,
        "ton-dev.yaml",
        json!({"spec": {"postgres": {"parameters": {"wal_level": "minimal", "work_mem": "64MB"}}}}),
    )
    .await;
    assert!(message.contains("spec.postgres.parameters"), "{message}");
    assert!(
        message.contains("postgres.parameters must not set any of ['wal_level'"),
        "{message}"
    );
}

#[tokio::test]
async fn the_pii_key_rotation_period_is_between_a_minute_and_ninety_days() {
    let admin = setup().await;
    for period in ["2161h", "30s"] {
        let message = rejection(
            &admin,
            "ton-dev.yaml",
            json!({"spec": {"piiKeys": {"rotationPeriod": period}}}),
        )
        .await;
        assert!(message.contains("spec.piiKeys.rotationPeriod"), "{message}");
        assert!(
            message.contains("piiKeys.rotationPeriod must be a duration between 1m and 2160h"),
            "{period}: {message}"
        );
    }
}

#[tokio::test]
async fn live_data_only_in_prod_and_dr() {
    let admin = setup().await;
    let message = rejection(
        &admin,
        "ton-dev.yaml",
        json!({"spec": {"dataPolicy": "live"}}),
    )
    .await;
    assert!(message.contains("dataPolicy live (real farmer data) is allowed only in environments prod and dr, not dev"), "{message}");
}

#[tokio::test]
async fn the_schema_rejects_malformed_fields_with_their_path() {
    let admin = setup().await;
    let message = rejection(
        &admin,
        "ton-dev.yaml",
        json!({"spec": {"postgres": {"instances": 9}}}),
    )
    .await;
    assert!(message.contains("spec.postgres.instances"), "{message}");
    let message = rejection(
        &admin,
        "ton-dev.yaml",
        json!({"spec": {"countryCode": "tonga"}}),
    )
    .await;
    assert!(message.contains("spec.countryCode"), "{message}");
    let message = rejection(
        &admin,
        "ton-dev.yaml",
        json!({"spec": {"network": {"egress": [{"name": "sms", "cidr": "not-a-cidr", "ports": [{"port": 443}]}]}}}),
    )
    .await;
    assert!(message.contains("egress cidr must be a CIDR"), "{message}");
}

#[tokio::test]
async fn quantities_are_checked_at_apply_time_and_the_message_names_the_field() {
    let admin = setup().await;
    let message = rejection(
        &admin,
        "ton-dev.yaml",
        json!({"spec": {"postgres": {"storage": {"size": "lots"}}}}),
    )
    .await;
    assert!(
        message.contains("postgres.storage.size must be a Kubernetes quantity"),
        "{message}"
    );
    let message = rejection(
        &admin,
        "ton-dev.yaml",
        json!({"spec": {"postgres": {"version": 16}}}),
    )
    .await;
    assert!(
        message.contains("postgres.version must be one of [15]"),
        "{message}"
    );
    let message = rejection(
        &admin,
        "ton-dev.yaml",
        json!({"spec": {"api": {"resources": {"limits": {"memory": "a lot"}}}}}),
    )
    .await;
    assert!(
        message.contains("api.resources requests and limits must be Kubernetes quantities"),
        "{message}"
    );
    let message = rejection(
        &admin,
        "ton-dev.yaml",
        json!({"spec": {"postgres": {"resources": {"requests": {"cpu": "two"}}}}}),
    )
    .await;
    assert!(
        message.contains("postgres.resources requests and limits"),
        "{message}"
    );
    let message = rejection(
        &admin,
        "ton-dev.yaml",
        json!({"spec": {"backup": {"schedule": "0 2 * * *", "destination": {"volume": {"size": "huge"}},
            "encryptionKeySecretRef": {"name": "k", "key": "k"}}}}),
    )
    .await;
    assert!(
        message.contains("backup.destination.volume.size must be a Kubernetes quantity"),
        "{message}"
    );
}
