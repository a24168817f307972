//! Data-subject rights against a real PostgreSQL 15: a person's complete record, erasure that
//! leaves none of their PII in any table while the audit chain still verifies, and the
//! retention job (its library call and the `dfr-api retention apply` command a CronJob runs).
#![allow(clippy::unwrap_used)]

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{TestApp, person, plot};
use uuid::Uuid;

fn mutation(entity: &str, op: &str, id: &Value, base: Option<i64>, data: Option<Value>) -> Value {
    json!({"clientMutationId": Uuid::new_v4(), "entity": entity, "op": op, "id": id, "baseVersion": base, "data": data})
}

/// Every row of every table in the registry's schema, as text, by table.
async fn every_table(app: &TestApp) -> Vec<(String, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(&app.owner)
    .await
    .unwrap();
    assert!(tables.len() > 10, "{tables:?}");
    let mut dump = Vec::new();
    for table in tables {
        let text: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT string_agg(t::text, E'\\n') FROM \"{table}\" t"
        )))
        .fetch_one(&app.owner)
        .await
        .unwrap();
        dump.push((table, text.unwrap_or_default()));
    }
    dump
}

/// The tables whose rows contain `needle`.
fn holding(dump: &[(String, String)], needle: &str) -> Vec<String> {
    dump.iter()
        .filter(|(_, text)| text.contains(needle))
        .map(|(table, _)| table.clone())
        .collect()
}

async fn chain_intact(app: &TestApp) -> u64 {
    match dfr_api::audit::verify(&app.owner).await.unwrap() {
        dfr_api::audit::Verification::Intact { events } => events,
        broken => panic!("audit chain broken: {broken:?}"),
    }
}

#[tokio::test]
async fn a_persons_record_is_one_document_and_erasure_leaves_no_pii_in_any_table() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let supervisor = app.user("supervisor", &["TO-01"], None, "").await;
    let far_supervisor = app.user("supervisor", &["TO-02"], None, "").await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;

    let mut body = person("TO-01", "Qzfamilyerase");
    body["givenName"] = json!("Qzgivenerase");
    body["nationalId"]["value"] = json!("QZNID99887766");
    body["phone"] = json!("+67699887766");
    body["email"] = json!("qz.erase@example.to");
    let subject = app.created("/api/dfr/persons", &enumerator, &body).await;
    let id = subject["id"].as_str().unwrap().to_string();
    let other = app
        .created("/api/dfr/persons", &enumerator, &person("TO-01", "Spouse"))
        .await;
    let mut field = plot(&subject);
    field["geometry"] = json!({"type": "Point", "coordinates": [-175.123457, -21.654329]});
    let field = app.created("/api/dfr/plots", &enumerator, &field).await;
    let holding_body = json!({"plotId": field["id"], "season": "2026A", "kind": "crop", "item": "taro", "quantity": 0.5});
    app.created("/api/dfr/holdings", &enumerator, &holding_body)
        .await;
    app.created(
        "/api/dfr/farmer-profiles",
        &enumerator,
        &json!({"personId": id, "primaryActivity": "crops", "cooperative": "Qzcoopname", "yearsFarming": 10}),
    )
    .await;
    app.created(
        "/api/dfr/consents",
        &enumerator,
        &json!({"personId": id, "purpose": "Share plots", "recipient": "Ministry", "terms": "We share your plots."}),
    )
    .await;
    let household = app
        .created(
            "/api/dfr/households",
            &enumerator,
            &json!({"members": [{"personId": id, "role": "head"}, {"personId": other["id"], "role": "spouse"}]}),
        )
        .await;
    // A device edits the person offline while the office edits it too: the device's data
    // (a new phone number) is kept in a conflict.
    let mut office = body.clone();
    office["status"] = json!("inactive");
    let edited = app
        .call(
            Method::PUT,
            &format!("/api/dfr/persons/{id}"),
            &admin,
            Some(&office),
            Some(1),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    let mut device = body.clone();
    device["phone"] = json!("+67655443322");
    let pushed = app
        .call(
            Method::POST,
            "/api/dfr/sync/push",
            &enumerator,
            Some(&json!({"mutations": [mutation("person", "update", &json!(id), Some(1), Some(device))]})),
            None,
        )
        .await;
    assert_eq!(
        pushed.body["results"][0]["outcome"], "conflict",
        "{}",
        pushed.body
    );

    // The complete record.
    let record_path = format!("/api/dfr/persons/{id}/record");
    let document = app.get(&record_path, &supervisor).await;
    assert_eq!(document.status, 200, "{}", document.body);
    let doc = &document.body;
    assert_eq!(doc["person"]["givenName"], "Qzgivenerase");
    assert_eq!(doc["person"]["nationalId"], "QZNID99887766");
    assert_eq!(doc["person"]["phone"], "+67699887766");
    for (kind, count) in [
        ("plots", 1),
        ("holdings", 1),
        ("farmerProfiles", 1),
        ("consents", 1),
        ("households", 1),
        ("syncConflicts", 1),
    ] {
        assert_eq!(doc[kind].as_array().unwrap().len(), count, "{kind}: {doc}");
    }
    assert_eq!(doc["households"][0]["id"], household["id"]);
    assert_eq!(doc["households"][0]["role"], "head");
    assert_eq!(doc["consents"][0]["history"].as_array().unwrap().len(), 1);
    assert_eq!(
        doc["syncConflicts"][0]["clientData"]["phone"],
        "+67655443322"
    );
    let actions: Vec<(&str, &str)> = doc["auditEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["entity"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    for expected in [
        ("person", "create"),
        ("person", "update"),
        ("plot", "create"),
        ("holding", "create"),
        ("farmer_profile", "create"),
        ("household", "create"),
    ] {
        assert!(actions.contains(&expected), "{expected:?} in {actions:?}");
    }
    let denied = app.get(&record_path, &enumerator).await;
    assert_eq!(
        (denied.status, denied.body["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(app.get(&record_path, &far_supervisor).await.status, 404);

    // What the person's PII looks like at rest: ciphertexts and the blind index too.
    // Encrypted at rest: their plaintext must be nowhere, before or after.
    let encrypted = [
        "QZNID99887766",
        "99887766",
        "qz.erase@example.to",
        "55443322",
    ];
    let mut needles: Vec<String> = [
        "Qzgivenerase",
        "Qzfamilyerase",
        "Qzcoopname",
        "175.123457",
        "21.654329",
    ]
    .map(String::from)
    .to_vec();
    let at_rest: (String, String, String, String) = sqlx::query_as(
        "SELECT national_id_cipher, national_id_index, phone_cipher, email_cipher FROM persons WHERE id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.owner)
    .await
    .unwrap();
    needles.extend([at_rest.0, at_rest.1, at_rest.2, at_rest.3]);
    let kept: String = sqlx::query_scalar(
        "SELECT client_data_cipher FROM sync_conflicts WHERE record_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.owner)
    .await
    .unwrap();
    needles.push(kept);
    let before = every_table(&app).await;
    for plain in encrypted {
        assert_eq!(
            holding(&before, plain),
            Vec::<String>::new(),
            "{plain} in clear"
        );
    }
    for needle in &needles {
        assert!(
            !holding(&before, needle).is_empty(),
            "the check would miss {needle}: it is nowhere before the erasure"
        );
    }

    // Only national admins erase.
    let erasure_path = format!("/api/dfr/persons/{id}/erasure");
    let refused = app
        .call(Method::POST, &erasure_path, &supervisor, None, None)
        .await;
    assert_eq!(refused.status, 403);
    let missing = app
        .call(
            Method::POST,
            &format!("/api/dfr/persons/{}/erasure", Uuid::new_v4()),
            &admin,
            None,
            None,
        )
        .await;
    assert_eq!(
        (missing.status, missing.body["code"].as_str()),
        (404, Some("not_found"))
    );
    let erased = app
        .call(Method::POST, &erasure_path, &admin, None, None)
        .await;
    assert_eq!(erased.status, 200, "{}", erased.body);
    assert_eq!(erased.body["erasedNow"], true);
    for (kind, count) in [
        ("plots", 1),
        ("holdings", 1),
        ("farmerProfiles", 1),
        ("consents", 1),
        ("households", 1),
        ("syncConflicts", 1),
    ] {
        assert_eq!(erased.body[kind], count, "{kind}: {}", erased.body);
    }

    let after = every_table(&app).await;
    needles.extend(encrypted.map(String::from));
    for needle in &needles {
        assert_eq!(
            holding(&after, needle),
            Vec::<String>::new(),
            "{needle} left behind"
        );
    }
    chain_intact(&app).await;
    let erase_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE action = 'erase' AND entity_id = $1",
    )
    .bind(&id)
    .fetch_one(&app.owner)
    .await
    .unwrap();
    assert_eq!(erase_events, 1);

    // Gone from the API; the document says it was erased; a second erasure writes nothing.
    assert_eq!(
        app.get(&format!("/api/dfr/persons/{id}"), &admin)
            .await
            .status,
        404
    );
    let shell = app.get(&record_path, &admin).await;
    assert_eq!(shell.status, 200);
    assert!(shell.body["person"]["erasedAt"].is_string());
    assert_eq!(shell.body["person"]["nationalId"], Value::Null);
    assert_eq!(shell.body["households"], json!([]));
    assert_eq!(shell.body["syncConflicts"][0]["clientData"], Value::Null);
    let again = app
        .call(Method::POST, &erasure_path, &admin, None, None)
        .await;
    assert_eq!(
        (again.status, &again.body["erasedNow"]),
        (200, &json!(false))
    );
    assert_eq!(again.body["erasedAt"], erased.body["erasedAt"]);
    // The household lives on with its other member, at a new version.
    let left = app
        .get(
            &format!("/api/dfr/households/{}", household["id"].as_str().unwrap()),
            &admin,
        )
        .await;
    assert_eq!(
        left.body["members"].as_array().unwrap().len(),
        1,
        "{}",
        left.body
    );
    assert_eq!(left.body["version"], 2);
    // Someone else may now register with the erased national ID.
    app.created("/api/dfr/persons", &enumerator, &body).await;
}

async fn deleted_long_ago(app: &TestApp, table: &str, id: &Value) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET deleted_at = now() - interval '400 days' WHERE id = $1::uuid"
    )))
    .bind(id.as_str().unwrap())
    .execute(&app.owner)
    .await
    .unwrap();
}

async fn soft_delete(app: &TestApp, token: &str, path: &str, version: i64) {
    let reply = app
        .call(Method::DELETE, path, token, None, Some(version))
        .await;
    assert_eq!(reply.status, 204, "{path}: {}", reply.body);
}

#[tokio::test]
async fn retention_erases_and_removes_only_what_the_country_keeps_no_longer() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let old = app
        .created("/api/dfr/persons", &admin, &person("TO-01", "Qzoldgone"))
        .await;
    let recent = app
        .created("/api/dfr/persons", &admin, &person("TO-01", "Qzrecentgone"))
        .await;
    let live = app
        .created("/api/dfr/persons", &admin, &person("TO-01", "Qzlive"))
        .await;
    let bare_plot = app.created("/api/dfr/plots", &admin, &plot(&live)).await;
    let farmed_plot = app.created("/api/dfr/plots", &admin, &plot(&live)).await;
    app.created(
        "/api/dfr/holdings",
        &admin,
        &json!({"plotId": farmed_plot["id"], "season": "2026A", "kind": "crop", "item": "yam", "quantity": 1.0}),
    )
    .await;
    for (path, record) in [
        ("/api/dfr/persons", &old),
        ("/api/dfr/persons", &recent),
        ("/api/dfr/plots", &bare_plot),
        ("/api/dfr/plots", &farmed_plot),
    ] {
        soft_delete(
            &app,
            &admin,
            &format!("{path}/{}", record["id"].as_str().unwrap()),
            1,
        )
        .await;
    }
    deleted_long_ago(&app, "persons", &old["id"]).await;
    deleted_long_ago(&app, "plots", &bare_plot["id"]).await;
    deleted_long_ago(&app, "plots", &farmed_plot["id"]).await;
    let pushed = app
        .call(
            Method::POST,
            "/api/dfr/sync/push",
            &enumerator,
            Some(&json!({"mutations": [mutation("person", "create", &json!(Uuid::new_v4()), None, Some(person("TO-01", "Qzpushed")))]})),
            None,
        )
        .await;
    assert_eq!(
        pushed.body["results"][0]["outcome"], "applied",
        "{}",
        pushed.body
    );
    sqlx::query("UPDATE sync_mutations SET at = now() - interval '40 days'")
        .execute(&app.owner)
        .await
        .unwrap();

    let policy = dfr_api::retention::Policy::from_json(
        r#"{"countries": {"TO": {"person": 365, "plot": 365, "sync_mutation": 30, "household": 10}, "FJ": {"person": 1}}}"#,
        "TO",
    )
    .unwrap();
    let counts = |report: Vec<dfr_api::retention::Applied>| -> Vec<(String, u64)> {
        report
            .into_iter()
            .map(|a| (a.kind.as_str().to_string(), a.count))
            .collect()
    };
    let expected = vec![
        ("person".to_string(), 1),
        ("plot".to_string(), 1),
        ("household".to_string(), 0),
        ("sync_mutation".to_string(), 1),
    ];
    let events_before = chain_intact(&app).await;
    let dry = dfr_api::retention::apply(&app.owner, &policy, true)
        .await
        .unwrap();
    assert_eq!(counts(dry), expected);
    assert_eq!(
        chain_intact(&app).await,
        events_before,
        "a dry run writes nothing"
    );
    let names: i64 =
        sqlx::query_scalar("SELECT count(*) FROM persons WHERE family_name = 'Qzoldgone'")
            .fetch_one(&app.owner)
            .await
            .unwrap();
    assert_eq!(names, 1, "a dry run erases nothing");

    let applied = dfr_api::retention::apply(&app.owner, &policy, false)
        .await
        .unwrap();
    assert_eq!(counts(applied), expected);
    let families: Vec<String> =
        sqlx::query_scalar("SELECT family_name FROM persons ORDER BY family_name")
            .fetch_all(&app.owner)
            .await
            .unwrap();
    assert!(!families.contains(&"Qzoldgone".to_string()), "{families:?}");
    assert!(
        families.contains(&"Qzrecentgone".to_string()),
        "deleted recently: kept"
    );
    assert!(families.contains(&"Qzlive".to_string()));
    let plots: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM plots ORDER BY id")
        .fetch_all(&app.owner)
        .await
        .unwrap();
    assert_eq!(
        plots,
        vec![farmed_plot["id"].as_str().unwrap().parse::<Uuid>().unwrap()],
        "the old bare plot removed, the one a holding refers to kept"
    );
    let remembered: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_mutations")
        .fetch_one(&app.owner)
        .await
        .unwrap();
    assert_eq!(remembered, 0);
    let events_after = chain_intact(&app).await;
    let retention_events: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, entity_id FROM audit_events WHERE seq > (SELECT max(seq) - $1 FROM audit_events) ORDER BY seq",
    )
    .bind(i64::try_from(events_after - events_before).unwrap())
    .fetch_all(&app.owner)
    .await
    .unwrap();
    assert_eq!(
        retention_events,
        vec![
            ("erase".to_string(), old["id"].as_str().unwrap().to_string()),
            ("retention_remove".to_string(), "plot".to_string()),
            ("retention_remove".to_string(), "sync_mutation".to_string()),
        ]
    );

    // Run again, as the CronJob does, through the command: nothing is left to do.
    let file = std::env::temp_dir().join(format!("retention-{}.json", Uuid::new_v4()));
    std::fs::write(
        &file,
        r#"{"countries": {"TO": {"person": 365, "plot": 365}}}"#,
    )
    .unwrap();
    let run = |country: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dfr-api"))
            .args(["retention", "apply"])
            .env_clear()
            .env("DFR_RETENTION_FILE", &file)
            .env("DFR_COUNTRY_CODE", country)
            .env("DFR_DATABASE_HOST", "127.0.0.1")
            .env(
                "DFR_DATABASE_PORT",
                support::postgres::PgServer::shared().port.to_string(),
            )
            .env("DFR_DATABASE_NAME", &app.database)
            .env("DFR_DATABASE_SSLMODE", "disable")
            .env("DFR_MIGRATION_DATABASE_USER", "dfr_owner")
            .env("DFR_MIGRATION_DATABASE_PASSWORD", "")
            .output()
            .unwrap()
    };
    let output = run("TO");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "retention TO person: 365 days, 0 done",
        "retention TO plot: 365 days, 0 done",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line} in {stdout}");
    }
    let unknown = run("NZ");
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no policy for country \"NZ\""),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    std::fs::remove_file(&file).unwrap();
    assert_eq!(chain_intact(&app).await, events_after);
}
