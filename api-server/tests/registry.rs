//! The registry against a real PostgreSQL 15: CRUD, search, pagination, the permission matrix,
//! row-level security, encrypted PII, the audit chain and problem+json errors.
#![allow(clippy::unwrap_used)]

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestApp, person};
use uuid::Uuid;

async fn create(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/api/dfr/persons"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn created(app: &TestApp, token: &str, body: &Value) -> Value {
    let response = create(app, token, body).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn crud_search_and_keyset_pagination() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let mut ids = Vec::new();
    for family in ["Tupou", "Taufa", "Tonga", "Fifita", "Vea"] {
        ids.push(
            created(&app, &admin, &person("TO-01", family)).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // Read back, with the version as ETag.
    let response = app
        .http
        .get(app.url(&format!("/api/dfr/persons/{}", ids[0])))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["familyName"], "Tupou");
    assert_eq!(body["phone"], "+67612345678");

    // Name search is a case-insensitive prefix match.
    let found: Value = app
        .http
        .get(app.url("/api/dfr/persons?name=t"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["familyName"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");

    // Pages of two, following the cursor, visit every record once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(after) => app.url(&format!("/api/dfr/persons?limit=2&after={after}")),
            None => app.url("/api/dfr/persons?limit=2"),
        };
        let page: Value = app
            .http
            .get(url)
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected);

    // Edits need the current version; a stale one is refused, nothing is lost.
    let mut edit = person("TO-01", "Tupou-Lavaka");
    edit["id"] = json!(ids[0]);
    let url = app.url(&format!("/api/dfr/persons/{}", ids[0]));
    let missing = app
        .http
        .put(&url)
        .bearer_auth(&admin)
        .json(&edit)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::PRECONDITION_REQUIRED);
    let updated = app
        .http
        .put(&url)
        .bearer_auth(&admin)
        .header("If-Match", "\"1\"")
        .json(&edit)
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), 200);
    assert_eq!(updated.headers()["etag"], "\"2\"");
    let stale = app
        .http
        .put(&url)
        .bearer_auth(&admin)
        .header("If-Match", "\"1\"")
        .json(&edit)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let problem: Value = stale.json().await.unwrap();
    assert_eq!(problem["code"], "stale_version");

    // Soft delete leaves a tombstone, not a gap in the audit trail.
    let deleted = app
        .http
        .delete(&url)
        .bearer_auth(&admin)
        .header("If-Match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = app.http.get(&url).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    let tombstone: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT deleted_at FROM persons WHERE id = $1")
            .bind(Uuid::parse_str(&ids[0]).unwrap())
            .fetch_one(&app.owner)
            .await
            .unwrap();
    assert!(tombstone.is_some());
}

#[tokio::test]
async fn duplicate_national_ids_point_to_the_existing_record() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let first = person("TO-01", "Tupou");
    let existing = created(&app, &admin, &first).await;
    let mut again = person("TO-02", "Other");
    // Same ID, written differently: the blind index normalizes it.
    again["nationalId"] = json!({"system": "ton-nid", "value": format!(" {} ", first["nationalId"]["value"].as_str().unwrap().to_lowercase())});
    let response = create(&app, &admin, &again).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "duplicate_national_id");
    assert_eq!(
        problem["existing"],
        format!("/api/dfr/persons/{}", existing["id"].as_str().unwrap())
    );
}

#[tokio::test]
async fn the_role_and_endpoint_permission_matrix() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let target = created(&app, &admin, &person("TO-01", "Matrix")).await;
    let id = target["id"].as_str().unwrap().to_string();
    let farmer_self = app
        .user("farmer", &[], Some(Uuid::parse_str(&id).unwrap()), "")
        .await;
    let tokens = [
        ("national_admin", admin.clone()),
        (
            "supervisor",
            app.user("supervisor", &["TO-01"], None, "").await,
        ),
        (
            "enumerator",
            app.user("enumerator", &["TO-01"], None, "").await,
        ),
        ("farmer", farmer_self),
        (
            "api_client persons:read",
            app.user("api_client", &[], None, "persons:read").await,
        ),
        (
            "api_client no scope",
            app.user("api_client", &[], None, "").await,
        ),
    ];
    // role, create, get, search, delete (of a fresh record)
    let expected: &[(&str, u16, u16, u16, u16)] = &[
        ("national_admin", 201, 200, 200, 204),
        ("supervisor", 201, 200, 200, 204),
        ("enumerator", 201, 200, 200, 403),
        ("farmer", 403, 200, 200, 403),
        ("api_client persons:read", 403, 200, 200, 403),
        ("api_client no scope", 403, 403, 403, 403),
    ];
    for ((role, token), (row_role, create_status, get_status, search_status, delete_status)) in
        tokens.iter().zip(expected)
    {
        assert_eq!(role, row_role);
        let create_response = create(&app, token, &person("TO-01", "New")).await;
        assert_eq!(
            create_response.status().as_u16(),
            *create_status,
            "{role} create"
        );
        let get_response = app
            .http
            .get(app.url(&format!("/api/dfr/persons/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(get_response.status().as_u16(), *get_status, "{role} get");
        let search_response = app
            .http
            .get(app.url("/api/dfr/persons"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            search_response.status().as_u16(),
            *search_status,
            "{role} search"
        );
        let victim = created(&app, &admin, &person("TO-01", "Victim")).await;
        let delete_response = app
            .http
            .delete(app.url(&format!(
                "/api/dfr/persons/{}",
                victim["id"].as_str().unwrap()
            )))
            .bearer_auth(token)
            .header("If-Match", "\"1\"")
            .send()
            .await
            .unwrap();
        assert_eq!(
            delete_response.status().as_u16(),
            *delete_status,
            "{role} delete"
        );
    }
    let anonymous = app
        .http
        .get(app.url("/api/dfr/persons"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn row_level_security_hides_other_areas_everywhere() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let in_b = created(&app, &admin, &person("TO-02", "Vavau")).await;
    let in_a = created(&app, &admin, &person("TO-01", "Tongatapu")).await;
    let enumerator_a = app.user("enumerator", &["TO-01"], None, "").await;
    let b_id = in_b["id"].as_str().unwrap();

    let by_id = app
        .http
        .get(app.url(&format!("/api/dfr/persons/{b_id}")))
        .bearer_auth(&enumerator_a)
        .send()
        .await
        .unwrap();
    assert_eq!(by_id.status(), 404);
    let search: Value = app
        .http
        .get(app.url("/api/dfr/persons?limit=500"))
        .bearer_auth(&enumerator_a)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = search["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [in_a["id"].as_str().unwrap()]);
    // Writing into another area is refused by the database itself.
    let outside = create(&app, &enumerator_a, &person("TO-02", "Sneaky")).await;
    assert_eq!(outside.status(), 403);

    // The application's own database role, with raw SQL, sees nothing of area B either.
    let mut tx = app.app_pool.begin().await.unwrap();
    sqlx::query(
        "SELECT set_config('dfr.role', 'enumerator', true), set_config('dfr.areas', 'TO-01', true)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM persons WHERE area_code = 'TO-02'")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(visible, 0);
    tx.rollback().await.unwrap();
    // Without any identity set, the app role sees no person at all.
    let anonymous: i64 = sqlx::query_scalar("SELECT count(*) FROM persons")
        .fetch_one(&app.app_pool)
        .await
        .unwrap();
    assert_eq!(anonymous, 0);
    // And it cannot escape: it does not own the table and has no BYPASSRLS.
    let bypass: bool = sqlx::query_scalar(
        "SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&app.app_pool)
    .await
    .unwrap();
    assert!(!bypass);
    let disabled = sqlx::query("ALTER TABLE persons DISABLE ROW LEVEL SECURITY")
        .execute(&app.app_pool)
        .await;
    assert!(disabled.is_err());
}

#[tokio::test]
async fn pii_is_ciphertext_at_rest_and_masked_for_unprivileged_roles() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let body = person("TO-01", "Secret");
    let national_id = body["nationalId"]["value"].as_str().unwrap().to_string();
    let record = created(&app, &admin, &body).await;
    let row: (String, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT national_id_cipher, phone_cipher, email_cipher FROM persons WHERE id = $1",
    )
    .bind(Uuid::parse_str(record["id"].as_str().unwrap()).unwrap())
    .fetch_one(&app.owner)
    .await
    .unwrap();
    for (stored, plain) in [
        (row.0.clone(), national_id.clone()),
        (row.1.unwrap(), "+67612345678".into()),
        (row.2.unwrap(), "sione@example.to".into()),
    ] {
        assert!(stored.starts_with("k1:"), "{stored}");
        assert!(
            !stored.contains(&plain) && !stored.contains("12345678") && !stored.contains("example"),
            "{stored}"
        );
    }
    let dump: String = sqlx::query_scalar("SELECT string_agg(t::text, ' ') FROM persons t")
        .fetch_one(&app.owner)
        .await
        .unwrap();
    assert!(
        !dump.contains(&national_id),
        "a national ID is stored in plaintext"
    );

    let client = app.user("api_client", &[], None, "persons:read").await;
    let masked: Value = app
        .http
        .get(app.url(&format!(
            "/api/dfr/persons/{}",
            record["id"].as_str().unwrap()
        )))
        .bearer_auth(&client)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let value = masked["nationalId"]["value"].as_str().unwrap();
    assert!(
        value.starts_with("XXXX") && value.ends_with(&national_id[national_id.len() - 4..]),
        "{value}"
    );
    assert_eq!(masked["phone"], "XXXXXXXX5678");

    // Exact lookup by national ID goes through the blind index.
    let found: Value = app
        .http
        .get(app.url(&format!(
            "/api/dfr/persons?nationalIdSystem=TON-NID&nationalId={national_id}"
        )))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_audit_chain_verifies_and_detects_a_hand_edit() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    for family in ["A", "B", "C"] {
        created(&app, &admin, &person("TO-01", family)).await;
    }
    match dfr_api::audit::verify(&app.owner).await.unwrap() {
        dfr_api::audit::Verification::Intact { events } => assert_eq!(events, 3),
        broken => panic!("{broken:?}"),
    }
    // The app role cannot rewrite history.
    let rewrite = sqlx::query("UPDATE audit_events SET action = 'nothing'")
        .execute(&app.app_pool)
        .await;
    assert!(rewrite.is_err());
    let erase = sqlx::query("DELETE FROM audit_events")
        .execute(&app.app_pool)
        .await;
    assert!(erase.is_err());
    // The owner can, and the chain shows where.
    let second: i64 =
        sqlx::query_scalar("SELECT seq FROM audit_events ORDER BY seq OFFSET 1 LIMIT 1")
            .fetch_one(&app.owner)
            .await
            .unwrap();
    sqlx::query("UPDATE audit_events SET actor = NULL WHERE seq = $1")
        .bind(second)
        .execute(&app.owner)
        .await
        .unwrap();
    assert_eq!(
        dfr_api::audit::verify(&app.owner).await.unwrap(),
        dfr_api::audit::Verification::Broken {
            seq: second,
            reason: "the event was altered after it was written".into()
        }
    );
}

async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn bad_input_gets_problem_json_naming_the_field() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let post = |body: String| {
        app.http
            .post(app.url("/api/dfr/persons"))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (status, body) = problem(post("{\"givenName\": ".into()).await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str().unwrap()),
        (400, "malformed_body")
    );

    let mut unknown = person("TO-01", "X");
    unknown["favouriteColour"] = json!("green");
    let (status, body) = problem(post(unknown.to_string()).await.unwrap()).await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["field"], "favouriteColour");

    let mut date = person("TO-01", "X");
    date["birthDate"] = json!("1980-13-45");
    let (status, body) = problem(post(date.to_string()).await.unwrap()).await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["field"], "birthDate", "{body}");

    let mut future = person("TO-01", "X");
    future["birthDate"] = json!("2999-01-01");
    let (status, body) = problem(post(future.to_string()).await.unwrap()).await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str().unwrap()),
        (422, "birthDate")
    );

    let mut area = person("NOWHERE", "X");
    area["sex"] = json!(1);
    let (status, body) = problem(post(area.to_string()).await.unwrap()).await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str().unwrap()),
        (422, "areaCode")
    );

    let huge = json!({"givenName": "x".repeat(support::MAX_BODY * 2)}).to_string();
    let (status, body) = problem(post(huge).await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str().unwrap()),
        (413, "payload_too_large")
    );

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM persons")
        .fetch_one(&app.owner)
        .await
        .unwrap();
    assert_eq!(count, 0, "rejected input must not be stored");
}

#[tokio::test]
async fn tokens_lockout_jwks_and_health() {
    let app = TestApp::start().await;
    let _ = app.user("enumerator", &["TO-01"], None, "").await;
    let username: String = sqlx::query_scalar("SELECT username FROM users LIMIT 1")
        .fetch_one(&app.owner)
        .await
        .unwrap();
    let attempt = |password: &'static str| {
        app.http
            .post(app.url("/oauth/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", username.as_str()),
                ("password", password),
            ])
            .send()
    };
    for _ in 0..5 {
        let (status, body) = problem(attempt("wrong").await.unwrap()).await;
        assert_eq!(
            (status, body["code"].as_str().unwrap()),
            (400, "invalid_grant")
        );
    }
    let (_, body) = problem(attempt("a long test password").await.unwrap()).await;
    assert!(
        body["detail"].as_str().unwrap().contains("locked"),
        "{body}"
    );

    let jwks: Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert_eq!(jwks["keys"][0]["crv"], "P-256");
    assert!(jwks["keys"][0]["kid"].as_str().is_some());

    assert_eq!(
        app.http
            .get(app.url("/api/dfr/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready = app
        .http
        .get(app.url("/api/dfr/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    // /metrics is served on the metrics port only.
    let on_api_port = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(on_api_port.status(), 404);
    let metrics = app
        .http
        .get(format!("{}/metrics", app.metrics_base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "dfr_http_request_duration_seconds_bucket{method=\"POST\",route=\"/oauth/token\""
        ),
        "{metrics}"
    );
    assert!(metrics.contains("dfr_db_pool_connections"));
    let openapi: Value = app
        .http
        .get(app.url("/api/dfr/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openapi["openapi"], "3.1.0");
}

#[tokio::test]
async fn after_key_rotation_every_record_reads_back() {
    let blind = support::random_key();
    let old_key = support::random_key();
    let app = TestApp::start_with_ring(support::keyring("k1", &[("k1", &old_key)], &blind)).await;
    let admin = app.user("national_admin", &[], None, "").await;
    let mut originals = Vec::new();
    for family in ["Rot1", "Rot2", "Rot3", "Rot4", "Rot5"] {
        let body = person("TO-01", family);
        let record = created(&app, &admin, &body).await;
        originals.push((
            record["id"].as_str().unwrap().to_string(),
            body["nationalId"]["value"].as_str().unwrap().to_string(),
        ));
    }
    let rotated_ring = support::keyring(
        "k2",
        &[("k1", &old_key), ("k2", &support::random_key())],
        &blind,
    );
    let ring = dfr_api::crypto::KeyRing::from_json(&rotated_ring).unwrap();
    let report = dfr_api::rotation::rotate_keys(&app.owner, &ring, 2)
        .await
        .unwrap();
    assert_eq!((report.rewritten, report.batches), (5, 3));
    let old: i64 = sqlx::query_scalar("SELECT count(*) FROM persons WHERE national_id_cipher LIKE 'k1:%' OR phone_cipher LIKE 'k1:%' OR email_cipher LIKE 'k1:%'")
        .fetch_one(&app.owner).await.unwrap();
    assert_eq!(old, 0, "every ciphertext is under the new key");
    // A second pass finds nothing left to do.
    assert_eq!(
        dfr_api::rotation::rotate_keys(&app.owner, &ring, 2)
            .await
            .unwrap()
            .rewritten,
        0
    );

    let rotated = app.with_ring(rotated_ring).await;
    for (id, national_id) in originals {
        let body: Value = rotated
            .http
            .get(rotated.url(&format!("/api/dfr/persons/{id}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["nationalId"]["value"], national_id.as_str());
        assert_eq!(body["email"], "sione@example.to");
        // The blind index did not change, so exact lookup still works.
        let found: Value = rotated
            .http
            .get(rotated.url(&format!(
                "/api/dfr/persons?nationalIdSystem=TON-NID&nationalId={national_id}"
            )))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(found["items"][0]["id"], id.as_str());
    }
}

/// Replaces a key ring file the way the kubelet updates a Secret volume: a new file, renamed
/// over the old one.
fn publish_ring(path: &std::path::Path, json: &str) {
    let staged = path.with_extension("new");
    std::fs::write(&staged, json).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

async fn national_id_cipher(app: &TestApp, id: &str) -> String {
    sqlx::query_scalar("SELECT national_id_cipher FROM persons WHERE id = $1")
        .bind(Uuid::parse_str(id).unwrap())
        .fetch_one(&app.owner)
        .await
        .unwrap()
}

async fn read_person(app: &TestApp, token: &str, id: &str) -> reqwest::Response {
    app.http
        .get(app.url(&format!("/api/dfr/persons/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_rotated_ring_file_is_used_without_a_restart() {
    let dir = std::env::temp_dir().join(format!("dfr-ring-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    // Two pods' copies of the Secret volume, which the kubelet updates at different moments.
    let (file_a, file_b) = (dir.join("a.json"), dir.join("b.json"));
    let blind = support::random_key();
    let k1 = support::random_key();
    let old_ring = support::keyring("k1", &[("k1", &k1)], &blind);
    publish_ring(&file_a, &old_ring);
    publish_ring(&file_b, &old_ring);
    let a = TestApp::start_with_ring_file(&file_a).await;
    let b = a.with_ring_file(&file_b).await;
    let admin = a.user("national_admin", &[], None, "").await;

    let before = person("TO-01", "Before");
    let old_id = created(&a, &admin, &before).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(national_id_cipher(&a, &old_id).await.starts_with("k1:"));

    // The operator rotates: k2 active, k1 kept, the blind index key unchanged. Pod A sees it.
    let new_ring = support::keyring("k2", &[("k1", &k1), ("k2", &support::random_key())], &blind);
    publish_ring(&file_a, &new_ring);
    tokio::time::sleep(dfr_api::reload::CHECK_EVERY + std::time::Duration::from_millis(200)).await;
    let after = person("TO-01", "After");
    let new_id = created(&a, &admin, &after).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(national_id_cipher(&a, &new_id).await.starts_with("k2:"));
    let old: Value = read_person(&a, &admin, &old_id).await.json().await.unwrap();
    assert_eq!(old["nationalId"], before["nationalId"]);
    // Exact national-ID lookup finds rows of either key.
    for (id, body) in [(&old_id, &before), (&new_id, &after)] {
        let found: Value = a
            .http
            .get(a.url(&format!(
                "/api/dfr/persons?nationalIdSystem=TON-NID&nationalId={}",
                body["nationalId"]["value"].as_str().unwrap()
            )))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(found["items"][0]["id"], id.as_str());
    }

    // Pod B's volume still holds the old ring: a row under k2 cannot be read there yet.
    let looked = std::time::Instant::now();
    assert_ne!(
        read_person(&b, &admin, &new_id).await.status(),
        StatusCode::OK
    );
    // B's volume is updated. B looked at its file just now (the refused read), so by the once
    // a second check it would not look again for a second; the k2 row makes it look at once.
    publish_ring(&file_b, &new_ring);
    let response = read_person(&b, &admin, &new_id).await;
    assert!(
        looked.elapsed() < dfr_api::reload::CHECK_EVERY,
        "too slow to tell the re-read on an unknown key from the periodic check"
    );
    assert_eq!(response.status(), StatusCode::OK);
    let read: Value = response.json().await.unwrap();
    assert_eq!(read["nationalId"], after["nationalId"]);
    // B now writes under k2 as well.
    let from_b = created(&b, &admin, &person("TO-01", "FromB")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(national_id_cipher(&b, &from_b).await.starts_with("k2:"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn plots_are_validated_measured_and_area_scoped() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let owner = created(&app, &admin, &person("TO-01", "Farmer")).await;
    let person_id = owner["id"].as_str().unwrap();
    let (lon, lat): (f64, f64) = (-175.2, -21.13);
    let (dlat, dlon) = (
        200.0 / 110_574.0,
        100.0 / (111_320.0 * lat.to_radians().cos()),
    );
    let two_hectares = json!({"type": "Polygon", "coordinates": [[[lon, lat], [lon + dlon, lat], [lon + dlon, lat + dlat], [lon, lat + dlat], [lon, lat]]]});
    let response = app.http.post(app.url("/api/dfr/plots")).bearer_auth(&admin)
        .json(&json!({"personId": person_id, "geometry": two_hectares, "tenure": "customary", "landUse": "cropland"}))
        .send().await.unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let plot: Value = response.json().await.unwrap();
    let hectares = plot["areaHa"].as_f64().unwrap();
    assert!((hectares - 2.0).abs() < 0.02, "{hectares} ha");

    let bowtie =
        json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]});
    let response = app.http.post(app.url("/api/dfr/plots")).bearer_auth(&admin)
        .json(&json!({"personId": person_id, "geometry": bowtie, "tenure": "owned", "landUse": "pasture"}))
        .send().await.unwrap();
    let (status, body) = problem(response).await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str().unwrap()),
        (422, "geometry")
    );
    assert!(
        body["detail"].as_str().unwrap().contains("crosses itself"),
        "{body}"
    );

    let swapped = json!({"type": "Point", "coordinates": [lat, lon - 200.0]});
    let response = app.http.post(app.url("/api/dfr/plots")).bearer_auth(&admin)
        .json(&json!({"personId": person_id, "geometry": swapped, "tenure": "owned", "landUse": "pasture"}))
        .send().await.unwrap();
    let (status, body) = problem(response).await;
    assert_eq!(status, 422);
    assert!(
        body["detail"].as_str().unwrap().contains("outside WGS84"),
        "{body}"
    );

    let other_area = app.user("enumerator", &["TO-02"], None, "").await;
    let hidden = app
        .http
        .get(app.url(&format!("/api/dfr/plots/{}", plot["id"].as_str().unwrap())))
        .bearer_auth(&other_area)
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 404);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM plots")
        .fetch_one(&app.owner)
        .await
        .unwrap();
    assert_eq!(count, 1, "rejected plots must not be stored");
}

#[tokio::test]
async fn national_admins_need_a_second_factor() {
    let app = TestApp::start().await;
    let _ = app.user("national_admin", &[], None, "").await;
    let (username, stored): (String, String) =
        sqlx::query_as("SELECT username, totp_secret FROM users WHERE role = 'national_admin'")
            .fetch_one(&app.owner)
            .await
            .unwrap();
    let ring = dfr_api::crypto::KeyRing::from_json(&app.keyring_json).unwrap();
    let secret = dfr_api::credentials::open_totp(&ring, &stored).unwrap();
    assert_ne!(stored, secret, "the secret is stored sealed");
    let sign_in = |totp: Option<String>| {
        let mut form = vec![
            ("grant_type", "password".to_string()),
            ("username", username.clone()),
            ("password", "a long test password".to_string()),
        ];
        if let Some(code) = totp {
            form.push(("totp", code));
        }
        app.http.post(app.url("/oauth/token")).form(&form).send()
    };
    let (status, body) = problem(sign_in(None).await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("TOTP"), "{body}");
    let current = dfr_api::sessions::current_code(&secret).unwrap();
    let wrong = format!(
        "{:06}",
        (current.parse::<u32>().unwrap() + 500_000) % 1_000_000
    );
    let (status, _) = problem(sign_in(Some(wrong)).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(sign_in(Some(current)).await.unwrap().status(), 200);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_login() {
    let app = TestApp::start().await;
    let _ = app.user("enumerator", &["TO-01"], None, "").await;
    let username: String = sqlx::query_scalar("SELECT username FROM users")
        .fetch_one(&app.owner)
        .await
        .unwrap();
    let login: Value = app
        .http
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", username.as_str()),
            ("password", "a long test password"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = login["refresh_token"].as_str().unwrap().to_string();
    let refresh = |token: String| {
        app.http
            .post(app.url("/oauth/token"))
            .form(&[
                ("grant_type", "refresh_token".to_string()),
                ("refresh_token", token),
            ])
            .send()
    };

    let rotated = refresh(first.clone()).await.unwrap();
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    let second = rotated["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    let access = rotated["access_token"].as_str().unwrap();
    assert_eq!(
        app.http
            .get(app.url("/api/dfr/persons"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The first token again: a thief or a replay. The whole login is revoked.
    let (status, body) = problem(refresh(first).await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(
        body["detail"].as_str().unwrap().contains("already used"),
        "{body}"
    );
    let (status, _) = problem(refresh(second).await.unwrap()).await;
    assert_eq!(
        status, 400,
        "the newest token of a revoked login must not work either"
    );
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE token_hash LIKE '%' || $1 || '%'",
    )
    .bind(&login["refresh_token"].as_str().unwrap()[..12])
    .fetch_one(&app.owner)
    .await
    .unwrap();
    assert_eq!(stored, 0, "refresh tokens are stored only as hashes");
}

#[tokio::test]
async fn consent_is_answered_by_the_farmer_with_history_and_fixed_terms() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let farmer_person = created(&app, &admin, &person("TO-01", "Consenting")).await;
    let person_id = farmer_person["id"].as_str().unwrap();
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let farmer = app
        .user("farmer", &[], Some(Uuid::parse_str(person_id).unwrap()), "")
        .await;
    let stranger = app.user("farmer", &[], Some(Uuid::new_v4()), "").await;

    let response = app.http.post(app.url("/api/dfr/consents")).bearer_auth(&enumerator)
        .json(&json!({"personId": person_id, "purpose": "Share plot data for the fertiliser subsidy",
                      "recipient": "Ministry of Agriculture", "terms": "Plot boundaries and crops, for 2026."}))
        .send().await.unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let consent: Value = response.json().await.unwrap();
    assert_eq!(consent["state"], "requested");
    let url = app.url(&format!(
        "/api/dfr/consents/{}/transitions",
        consent["id"].as_str().unwrap()
    ));

    // The farmer answers their own request (self-service, allowed by row-level security).
    let given = app
        .http
        .post(&url)
        .bearer_auth(&farmer)
        .header("If-Match", "\"1\"")
        .json(&json!({"state": "given"}))
        .send()
        .await
        .unwrap();
    assert_eq!(given.status(), 200, "{}", given.text().await.unwrap());
    let given: Value = given.json().await.unwrap();
    assert_eq!(given["state"], "given");
    assert!(given["givenAt"].is_string());
    let states: Vec<&str> = given["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["requested", "given"]);

    // Another farmer sees nothing of it.
    let hidden = app
        .http
        .get(app.url(&format!(
            "/api/dfr/consents/{}",
            consent["id"].as_str().unwrap()
        )))
        .bearer_auth(&stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 404);

    // Once given, the terms are fixed, even for the table owner.
    let rewrite = sqlx::query("UPDATE consents SET terms = 'something else'")
        .execute(&app.owner)
        .await;
    assert!(
        rewrite
            .unwrap_err()
            .to_string()
            .contains("immutable once given")
    );

    let withdrawn = app
        .http
        .post(&url)
        .bearer_auth(&farmer)
        .header("If-Match", "\"2\"")
        .json(&json!({"state": "withdrawn"}))
        .send()
        .await
        .unwrap();
    assert_eq!(withdrawn.status(), 200);
    let (status, body) = problem(
        app.http
            .post(&url)
            .bearer_auth(&farmer)
            .header("If-Match", "\"3\"")
            .json(&json!({"state": "given"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str().unwrap()),
        (422, "state")
    );
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("a withdrawn consent cannot become given"),
        "{body}"
    );
    let (status, _) = problem(
        app.http
            .post(&url)
            .bearer_auth(&farmer)
            .header("If-Match", "\"1\"")
            .json(&json!({"state": "expired"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 412);
}

#[tokio::test]
async fn households_profiles_and_holdings() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let head = created(&app, &admin, &person("TO-01", "Head")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let spouse = created(&app, &admin, &person("TO-01", "Spouse")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let elsewhere = created(&app, &admin, &person("TO-02", "Far")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let post = |path: &str, token: &str, body: Value| {
        app.http
            .post(app.url(path))
            .bearer_auth(token.to_string())
            .json(&body)
            .send()
    };

    let household = post("/api/dfr/households", &enumerator, json!({"members": [{"personId": head, "role": "head"}, {"personId": spouse, "role": "spouse"}]}))
        .await.unwrap();
    assert_eq!(
        household.status(),
        201,
        "{}",
        household.text().await.unwrap()
    );
    let household: Value = household.json().await.unwrap();
    let read: Value = app
        .http
        .get(app.url(&format!(
            "/api/dfr/households/{}",
            household["id"].as_str().unwrap()
        )))
        .bearer_auth(&enumerator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["members"][0]["role"], "head");
    assert_eq!(read["members"].as_array().unwrap().len(), 2);
    let (status, body) = problem(
        post(
            "/api/dfr/households",
            &enumerator,
            json!({"members": [{"personId": spouse, "role": "spouse"}]}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("exactly one head")
    );
    // A person the enumerator cannot see cannot be added either.
    let (status, _) = problem(
        post(
            "/api/dfr/households",
            &enumerator,
            json!({"members": [{"personId": elsewhere, "role": "head"}]}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 422);

    let profile = json!({"personId": head, "primaryActivity": "mixed", "cooperative": "Hihifo Growers", "yearsFarming": 22});
    assert_eq!(
        post("/api/dfr/farmer-profiles", &enumerator, profile.clone())
            .await
            .unwrap()
            .status(),
        201
    );
    let (status, body) = problem(
        post("/api/dfr/farmer-profiles", &enumerator, profile)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["code"].as_str().unwrap()), (409, "conflict"));
    let read: Value = app
        .http
        .get(app.url(&format!("/api/dfr/farmer-profiles/{head}")))
        .bearer_auth(&enumerator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["cooperative"], "Hihifo Growers");

    let plot: Value = post("/api/dfr/plots", &enumerator, json!({"personId": head, "geometry": {"type": "Point", "coordinates": [-175.2, -21.13]}, "tenure": "customary", "landUse": "cropland"}))
        .await.unwrap().json().await.unwrap();
    let holding = post("/api/dfr/holdings", &enumerator, json!({"plotId": plot["id"], "season": "2026A", "kind": "crop", "item": "taro", "quantity": 0.4}))
        .await.unwrap();
    assert_eq!(holding.status(), 201, "{}", holding.text().await.unwrap());
    let (status, body) = problem(post("/api/dfr/holdings", &enumerator, json!({"plotId": plot["id"], "season": "spring", "kind": "crop", "item": "taro", "quantity": 0.4})).await.unwrap()).await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str().unwrap()),
        (422, "season")
    );
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE entity IN ('household', 'farmer_profile', 'holding', 'plot')")
        .fetch_one(&app.owner).await.unwrap();
    assert_eq!(events, 4, "each of these writes is audited");
}

#[tokio::test]
async fn the_write_permission_matrix_beyond_persons() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let person_id = created(&app, &admin, &person("TO-01", "Matrix")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let plot: Value = app.http.post(app.url("/api/dfr/plots")).bearer_auth(&admin)
        .json(&json!({"personId": person_id, "geometry": {"type": "Point", "coordinates": [-175.2, -21.13]}, "tenure": "owned", "landUse": "cropland"}))
        .send().await.unwrap().json().await.unwrap();
    let roles = [
        ("national_admin", admin.clone()),
        (
            "supervisor",
            app.user("supervisor", &["TO-01"], None, "").await,
        ),
        (
            "enumerator",
            app.user("enumerator", &["TO-01"], None, "").await,
        ),
        (
            "farmer",
            app.user(
                "farmer",
                &[],
                Some(Uuid::parse_str(&person_id).unwrap()),
                "",
            )
            .await,
        ),
        (
            "api_client",
            app.user("api_client", &[], None, "persons:read plots:read")
                .await,
        ),
    ];
    // role: add area, register plot, request consent, create household, add holding
    let expected: [(&str, [u16; 5]); 5] = [
        ("national_admin", [201, 201, 201, 201, 201]),
        ("supervisor", [403, 201, 201, 201, 201]),
        ("enumerator", [403, 201, 201, 201, 201]),
        ("farmer", [403, 403, 403, 403, 403]),
        ("api_client", [403, 403, 403, 403, 403]),
    ];
    for (index, ((role, token), (row_role, statuses))) in roles.iter().zip(expected).enumerate() {
        assert_eq!(role, &row_role);
        let member = created(&app, &admin, &person("TO-01", "Member")).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let requests = [
            (
                "/api/dfr/areas",
                json!({"code": format!("TO-01-V{index}"), "parentCode": "TO-01", "name": "Village", "level": 2}),
            ),
            (
                "/api/dfr/plots",
                json!({"personId": person_id, "geometry": {"type": "Point", "coordinates": [-175.2, -21.13]}, "tenure": "leased", "landUse": "pasture"}),
            ),
            (
                "/api/dfr/consents",
                json!({"personId": person_id, "purpose": "p", "recipient": "r", "terms": "t"}),
            ),
            (
                "/api/dfr/households",
                json!({"members": [{"personId": member, "role": "head"}]}),
            ),
            (
                "/api/dfr/holdings",
                json!({"plotId": plot["id"], "season": "2026", "kind": "livestock", "item": "pigs", "quantity": 3}),
            ),
        ];
        for ((path, body), status) in requests.iter().zip(statuses) {
            let response = app
                .http
                .post(app.url(path))
                .bearer_auth(token)
                .json(body)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status().as_u16(),
                status,
                "{role} POST {path}: {}",
                response.text().await.unwrap()
            );
        }
    }
    let areas: Value = app
        .http
        .get(app.url("/api/dfr/areas"))
        .bearer_auth(&roles[3].1)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(areas[0]["code"], "TO", "parents come first");
}
