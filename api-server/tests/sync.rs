//! Offline sync against a real PostgreSQL 15: the delta pull (tombstones, areas, a transaction
//! that commits late), the push (conflicts that keep both sides, replays applied once, a
//! failing mutation that leaves nothing behind, the batch bound) and compressed bodies.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use support::{TestApp, person, plot};
use uuid::Uuid;

/// Pulls from `cursor`, page after page, until `done` holds for everything pulled so far
/// (other transactions on the server may hold a change back for a moment; a change that never
/// arrives fails the test after 10 s). The changes and the last cursor.
async fn pull_until(
    app: &TestApp,
    token: &str,
    cursor: Option<String>,
    done: impl Fn(&[Value]) -> bool,
) -> (Vec<Value>, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut changes = Vec::new();
    let mut cursor = cursor;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/dfr/sync/changes?limit=3&cursor={c}"),
            None => "/api/dfr/sync/changes?limit=3".to_string(),
        };
        let page = app.get(&path, token).await;
        assert_eq!(page.status, 200, "{}", page.body);
        changes.extend(page.body["changes"].as_array().unwrap().iter().cloned());
        cursor = Some(page.body["cursor"].as_str().unwrap().to_string());
        if page.body["more"] == json!(true) {
            continue;
        }
        if done(&changes) {
            return (changes, cursor.unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "the pull never showed it: {changes:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn change_of<'a>(changes: &'a [Value], id: &Value) -> Option<&'a Value> {
    changes.iter().rev().find(|c| &c["id"] == id)
}

async fn push(app: &TestApp, token: &str, mutations: &[Value]) -> Vec<Value> {
    let reply = app
        .call(
            Method::POST,
            "/api/dfr/sync/push",
            token,
            Some(&json!({"mutations": mutations})),
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["results"].as_array().unwrap().clone()
}

fn mutation(entity: &str, op: &str, id: &Value, base: Option<i64>, data: Option<Value>) -> Value {
    json!({"clientMutationId": Uuid::new_v4(), "entity": entity, "op": op, "id": id, "baseVersion": base, "data": data})
}

#[tokio::test]
async fn a_soft_delete_reaches_the_device_as_a_tombstone_and_other_areas_never_do() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let supervisor = app.user("supervisor", &["TO-01"], None, "").await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let owner = app
        .created("/api/dfr/persons", &enumerator, &person("TO-01", "Tupou"))
        .await;
    let field = app
        .created("/api/dfr/plots", &enumerator, &plot(&owner))
        .await;
    let far = app
        .created("/api/dfr/persons", &admin, &person("TO-02", "Far"))
        .await;

    let (first, cursor) = pull_until(&app, &enumerator, None, |c| {
        change_of(c, &owner["id"]).is_some() && change_of(c, &field["id"]).is_some()
    })
    .await;
    assert_eq!(change_of(&first, &owner["id"]).unwrap()["entity"], "person");
    assert_eq!(
        change_of(&first, &field["id"]).unwrap()["record"]["tenure"],
        "customary"
    );
    assert_eq!(
        change_of(&first, &owner["id"]).unwrap()["record"]["nationalId"]["value"]
            .as_str()
            .unwrap()[..4],
        *"XXXX",
        "the pull masks PII as the person endpoints do"
    );
    assert!(
        change_of(&first, &far["id"]).is_none(),
        "TO-02 is not the enumerator's"
    );

    let path = format!("/api/dfr/plots/{}", field["id"].as_str().unwrap());
    assert_eq!(
        app.call(Method::DELETE, &path, &supervisor, None, Some(1))
            .await
            .status,
        204
    );
    let (after, _) = pull_until(&app, &enumerator, Some(cursor), |c| {
        change_of(c, &field["id"]).is_some()
    })
    .await;
    let tombstone = change_of(&after, &field["id"]).unwrap();
    assert_eq!(tombstone["deleted"], true);
    assert_eq!(tombstone["version"], 2);
    assert_eq!(tombstone["record"], Value::Null);
    assert!(
        change_of(&after, &owner["id"]).is_none(),
        "the cursor starts after what was pulled"
    );

    // A record that moves to another area leaves as a tombstone and arrives there whole.
    let moving = app
        .created("/api/dfr/plots", &enumerator, &plot(&owner))
        .await;
    let moved = app
        .call(
            Method::PUT,
            &format!("/api/dfr/plots/{}", moving["id"].as_str().unwrap()),
            &admin,
            Some(&plot(&far)),
            Some(1),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    let (left, _) = pull_until(&app, &enumerator, None, |c| {
        change_of(c, &moving["id"]).is_some_and(|m| m["version"] == 2)
    })
    .await;
    let gone = change_of(&left, &moving["id"]).unwrap();
    assert_eq!(
        (gone["deleted"].as_bool().unwrap(), gone["record"].clone()),
        (true, Value::Null)
    );
    let there = app.user("enumerator", &["TO-02"], None, "").await;
    let (arrived, _) = pull_until(&app, &there, None, |c| {
        change_of(c, &moving["id"]).is_some()
    })
    .await;
    assert_eq!(
        change_of(&arrived, &moving["id"]).unwrap()["record"]["areaCode"],
        "TO-02"
    );
    assert!(change_of(&arrived, &owner["id"]).is_none());

    let bad = app
        .get("/api/dfr/sync/changes?cursor=garbage", &enumerator)
        .await;
    assert_eq!(
        (bad.status, bad.body["errors"][0]["field"].as_str().unwrap()),
        (422, "cursor")
    );
    let farmer = app
        .user(
            "farmer",
            &[],
            Some(Uuid::parse_str(owner["id"].as_str().unwrap()).unwrap()),
            "",
        )
        .await;
    assert_eq!(app.get("/api/dfr/sync/changes", &farmer).await.status, 403);
}

#[tokio::test]
async fn two_devices_editing_offline_one_applies_one_conflicts_and_both_survive() {
    let app = TestApp::start().await;
    let supervisor = app.user("supervisor", &["TO-01"], None, "").await;
    let device_a = app.user("enumerator", &["TO-01"], None, "").await;
    let device_b = app.user("enumerator", &["TO-01"], None, "").await;
    let mut body = person("TO-01", "Tupou");
    let created = app.created("/api/dfr/persons", &supervisor, &body).await;
    let id = created["id"].clone();
    body["id"] = id.clone();

    // Both devices read version 1 and edit offline.
    let mut from_a = body.clone();
    from_a["givenName"] = json!("Sione A");
    let mut from_b = body.clone();
    from_b["givenName"] = json!("Sione B");
    let a = push(
        &app,
        &device_a,
        &[mutation("person", "update", &id, Some(1), Some(from_a))],
    )
    .await;
    assert_eq!(
        (
            a[0]["outcome"].as_str().unwrap(),
            a[0]["version"].as_i64().unwrap()
        ),
        ("applied", 2)
    );
    let b = push(
        &app,
        &device_b,
        &[mutation("person", "update", &id, Some(1), Some(from_b))],
    )
    .await;
    assert_eq!(b[0]["outcome"], "conflict", "{b:?}");
    assert_eq!(b[0]["version"], 2, "the server's version");
    assert_eq!(
        b[0]["current"]["givenName"], "Sione A",
        "with the server's record"
    );

    // Both versions survive: the record holds A's, the conflict keeps B's.
    let record = app
        .get(
            &format!("/api/dfr/persons/{}", id.as_str().unwrap()),
            &supervisor,
        )
        .await;
    assert_eq!(
        (
            record.body["givenName"].as_str().unwrap(),
            record.body["version"].as_i64().unwrap()
        ),
        ("Sione A", 2)
    );
    let conflicts = app
        .all_pages(
            &format!(
                "/api/dfr/sync/conflicts?entity=person&recordId={}",
                id.as_str().unwrap()
            ),
            &supervisor,
            10,
        )
        .await;
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0]["id"], b[0]["conflictId"]);
    assert_eq!(conflicts[0]["clientData"]["givenName"], "Sione B");
    assert_eq!(
        (
            conflicts[0]["baseVersion"].as_i64().unwrap(),
            conflicts[0]["serverVersion"].as_i64().unwrap()
        ),
        (1, 2)
    );
    assert_eq!(
        conflicts[0]["clientData"]["nationalId"]["value"], body["nationalId"]["value"],
        "supervisors see PII in clear"
    );
    let masked = app
        .all_pages("/api/dfr/sync/conflicts", &device_a, 10)
        .await;
    assert!(
        masked[0]["clientData"]["nationalId"]["value"]
            .as_str()
            .unwrap()
            .starts_with("XXXX")
    );
    // The device's data is ciphertext at rest, as PII is.
    let cipher: String = sqlx::query_scalar("SELECT client_data_cipher FROM sync_conflicts")
        .fetch_one(&app.owner)
        .await
        .unwrap();
    assert!(!cipher.contains("Sione B"));
    // Outside the area, no conflict is visible.
    let elsewhere = app.user("supervisor", &["TO-02"], None, "").await;
    assert!(
        app.all_pages("/api/dfr/sync/conflicts", &elsewhere, 10)
            .await
            .is_empty()
    );

    // A change to a record the server deleted is a conflict too, and keeps the device's data.
    let field = app
        .created("/api/dfr/plots", &supervisor, &plot(&created))
        .await;
    let path = format!("/api/dfr/plots/{}", field["id"].as_str().unwrap());
    assert_eq!(
        app.call(Method::DELETE, &path, &supervisor, None, Some(1))
            .await
            .status,
        204
    );
    let mut edited = plot(&created);
    edited["landUse"] = json!("fallow");
    let late = push(
        &app,
        &device_a,
        &[mutation(
            "plot",
            "update",
            &field["id"],
            Some(1),
            Some(edited),
        )],
    )
    .await;
    assert_eq!(
        (
            late[0]["outcome"].as_str().unwrap(),
            late[0]["code"].as_str().unwrap()
        ),
        ("conflict", "deleted_on_server")
    );
    assert_eq!(late[0]["current"], Value::Null);
}

#[tokio::test]
async fn a_replayed_push_is_applied_exactly_once() {
    let app = TestApp::start().await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let mut body = person("TO-01", "Vea");
    let new_id = json!(Uuid::new_v4());
    body["id"] = new_id.clone();
    let plot_id = json!(Uuid::new_v4());
    let mut edited = body.clone();
    edited["familyName"] = json!("Vea-Lolo");
    let batch = vec![
        mutation("person", "create", &new_id, None, Some(body.clone())),
        mutation("plot", "create", &plot_id, None, Some(plot(&body))),
        mutation("person", "update", &new_id, Some(1), Some(edited)),
    ];
    let first = push(&app, &enumerator, &batch).await;
    let outcomes: Vec<&str> = first
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["applied", "applied", "applied"], "{first:?}");
    assert_eq!(first[2]["version"], 2);

    // The device lost the answer and sends the same batch again.
    let again = push(&app, &enumerator, &batch).await;
    for (replayed, original) in again.iter().zip(&first) {
        assert_eq!(replayed["outcome"], "duplicate");
        assert_eq!(replayed["firstOutcome"], original["outcome"]);
        assert_eq!(replayed["version"], original["version"]);
        assert_eq!(replayed["clientMutationId"], original["clientMutationId"]);
    }
    let version: i32 = sqlx::query_scalar("SELECT version FROM persons WHERE id = $1")
        .bind(Uuid::parse_str(new_id.as_str().unwrap()).unwrap())
        .fetch_one(&app.owner)
        .await
        .unwrap();
    assert_eq!(version, 2, "the update was not applied a second time");
    let plots: i64 = sqlx::query_scalar("SELECT count(*) FROM plots")
        .fetch_one(&app.owner)
        .await
        .unwrap();
    assert_eq!(plots, 1);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&app.owner)
        .await
        .unwrap();
    assert_eq!(
        events, 3,
        "one audit event per applied mutation, none for the replay"
    );

    // Another user's mutation ids are their own: the same id from someone else is a new change.
    let other = app.user("enumerator", &["TO-01"], None, "").await;
    let mut third = body.clone();
    third["familyName"] = json!("Vea-Three");
    let mut reused = mutation("person", "update", &new_id, Some(2), Some(third));
    reused["clientMutationId"] = batch[2]["clientMutationId"].clone();
    let theirs = push(&app, &other, &[reused]).await;
    assert_eq!(
        (
            theirs[0]["outcome"].as_str().unwrap(),
            theirs[0]["version"].as_i64().unwrap()
        ),
        ("applied", 3)
    );
}

#[tokio::test]
async fn a_late_committing_transaction_is_not_skipped_by_the_pull_cursor() {
    // A server of its own: the open transaction below holds back every pull on its server.
    let app = TestApp::start_isolated().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let early = app
        .created("/api/dfr/persons", &admin, &person("TO-01", "Early"))
        .await;
    let (_, cursor) = pull_until(&app, &enumerator, None, |c| {
        change_of(c, &early["id"]).is_some()
    })
    .await;

    // A transaction writes first and commits last.
    let mut late = app.owner.begin().await.unwrap();
    sqlx::query("UPDATE persons SET given_name = 'Late', version = version + 1 WHERE id = $1")
        .bind(Uuid::parse_str(early["id"].as_str().unwrap()).unwrap())
        .execute(&mut *late)
        .await
        .unwrap();
    let later = app
        .created("/api/dfr/persons", &admin, &person("TO-01", "Later"))
        .await;
    let seq = |id: &Value| {
        let id = Uuid::parse_str(id.as_str().unwrap()).unwrap();
        let pool = app.owner.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT seq FROM sync_changes WHERE record_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let committed_seq = seq(&later["id"]).await;

    let held = app
        .get(
            &format!("/api/dfr/sync/changes?cursor={cursor}"),
            &enumerator,
        )
        .await;
    assert_eq!(held.status, 200);
    assert_eq!(
        held.body["changes"],
        json!([]),
        "nothing after the open transaction is handed out while it runs"
    );
    let held_cursor = held.body["cursor"].as_str().unwrap().to_string();
    assert_eq!(held_cursor, cursor);

    late.commit().await.unwrap();
    assert!(
        seq(&early["id"]).await < committed_seq,
        "the late change sorts before one already committed (and pullable) when it was written"
    );
    let (changes, _) = pull_until(&app, &enumerator, Some(held_cursor), |c| {
        change_of(c, &early["id"]).is_some() && change_of(c, &later["id"]).is_some()
    })
    .await;
    let update = change_of(&changes, &early["id"]).unwrap();
    assert_eq!(
        (
            update["version"].as_i64().unwrap(),
            update["record"]["givenName"].as_str().unwrap()
        ),
        (2, "Late")
    );
}

#[tokio::test]
async fn a_failing_mutation_in_a_batch_leaves_nothing_partial() {
    let app = TestApp::start().await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let head = app
        .created("/api/dfr/persons", &enumerator, &person("TO-01", "Head"))
        .await;
    let other = app
        .created("/api/dfr/persons", &enumerator, &person("TO-01", "Other"))
        .await;
    // A rule the database enforces after the household row and its head are written, so the
    // mutation fails half-way through its statements.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_other() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF NEW.role = 'other' THEN RAISE EXCEPTION 'no others here' USING ERRCODE = 'check_violation'; END IF; \
         RETURN NEW; END $$; \
         CREATE TRIGGER refuse_other BEFORE INSERT ON household_members FOR EACH ROW EXECUTE FUNCTION refuse_other();",
    )
    .execute(&app.owner)
    .await
    .unwrap();
    let household_id = json!(Uuid::new_v4());
    let (first_plot, second_plot) = (json!(Uuid::new_v4()), json!(Uuid::new_v4()));
    let batch = vec![
        mutation("plot", "create", &first_plot, None, Some(plot(&head))),
        mutation(
            "household",
            "create",
            &household_id,
            None,
            Some(
                json!({"members": [{"personId": head["id"], "role": "head"}, {"personId": other["id"], "role": "other"}]}),
            ),
        ),
        mutation(
            "plot",
            "create",
            &second_plot,
            None,
            Some(
                json!({"personId": head["id"], "geometry": {"type": "Point", "coordinates": [500, 0]}, "tenure": "owned", "landUse": "cropland"}),
            ),
        ),
        mutation("plot", "create", &second_plot, None, Some(plot(&head))),
    ];
    let results = push(&app, &enumerator, &batch).await;
    let outcomes: Vec<&str> = results
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["applied", "rejected", "rejected", "applied"],
        "{results:?}"
    );
    assert_eq!(
        results[1]["code"], "refused_by_database",
        "refused by the trigger, half-way"
    );
    assert_eq!(results[2]["errors"][0]["field"], "geometry");

    let household = Uuid::parse_str(household_id.as_str().unwrap()).unwrap();
    let count = |sql: &'static str| {
        let pool = app.owner.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(household)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        count("SELECT count(*) FROM households WHERE id = $1").await,
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM household_members WHERE household_id = $1").await,
        0,
        "not even the head"
    );
    assert_eq!(
        count("SELECT count(*) FROM sync_changes WHERE record_id = $1").await,
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM audit_events WHERE entity_id = $1::text").await,
        0
    );
    let plots: i64 = sqlx::query_scalar("SELECT count(*) FROM plots")
        .fetch_one(&app.owner)
        .await
        .unwrap();
    assert_eq!(
        plots, 2,
        "the mutations around the failing ones were applied"
    );
    // The refusal is remembered like any answer: a replay gets it back and writes nothing.
    let again = push(&app, &enumerator, &batch[1..2]).await;
    assert_eq!(
        (
            again[0]["outcome"].as_str().unwrap(),
            again[0]["firstOutcome"].as_str().unwrap()
        ),
        ("duplicate", "rejected")
    );
}

#[tokio::test]
async fn an_oversize_batch_is_refused_whole_and_bodies_travel_compressed() {
    let app = TestApp::start().await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let owner = app
        .created("/api/dfr/persons", &enumerator, &person("TO-01", "Big"))
        .await;
    let too_many: Vec<Value> = (0..201)
        .map(|_| mutation("plot", "create", &json!(Uuid::new_v4()), None, Some(json!({"personId": owner["id"], "geometry": {"type": "Point", "coordinates": [-175.2, -21.13]}, "tenure": "owned", "landUse": "cropland"}))))
        .collect();
    let body = serde_json::to_vec(&json!({"mutations": too_many})).unwrap();
    // Gzip on the way in: the server decompresses (its size limit applies to what it inflates).
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&body).unwrap();
    let gzipped = encoder.finish().unwrap();
    assert!(gzipped.len() < body.len() / 4);
    let response = app
        .http
        .post(app.url("/api/dfr/sync/push"))
        .bearer_auth(&enumerator)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzipped)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(
        (
            problem["code"].as_str().unwrap(),
            problem["errors"][0]["field"].as_str().unwrap()
        ),
        ("batch_too_large", "mutations")
    );
    let plots: i64 = sqlx::query_scalar("SELECT count(*) FROM plots")
        .fetch_one(&app.owner)
        .await
        .unwrap();
    assert_eq!(plots, 0, "nothing of a refused batch is applied");

    // 200 fit, sent gzipped; the answer comes back gzipped to a client that accepts it.
    let fits = serde_json::to_vec(&json!({"mutations": too_many[..200]})).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&fits).unwrap();
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let response = raw
        .post(app.url("/api/dfr/sync/push"))
        .bearer_auth(&enumerator)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .header("accept-encoding", "gzip")
        .body(encoder.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let bytes = response.bytes().await.unwrap();
    let mut json_text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&bytes[..]),
        &mut json_text,
    )
    .unwrap();
    let answer: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(answer["results"].as_array().unwrap().len(), 200);
    assert!(
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] == "applied")
    );
}

#[tokio::test]
async fn pages_of_any_size_visit_every_change_once() {
    let app = TestApp::start().await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let owner = app
        .created("/api/dfr/persons", &enumerator, &person("TO-01", "Many"))
        .await;
    let mut expected = vec![owner["id"].as_str().unwrap().to_string()];
    for _ in 0..2 {
        let batch: Vec<Value> = (0..120)
            .map(|_| {
                mutation(
                    "plot",
                    "create",
                    &json!(Uuid::new_v4()),
                    None,
                    Some(plot(&owner)),
                )
            })
            .collect();
        expected.extend(batch.iter().map(|m| m["id"].as_str().unwrap().to_string()));
        let results = push(&app, &enumerator, &batch).await;
        assert!(results.iter().all(|r| r["outcome"] == "applied"));
    }
    expected.sort();
    for limit in [1000, 100, 7] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        // Until everything written above is visible (other tests' transactions may hold the
        // newest back for a moment), then never more than once.
        while seen.len() < expected.len() {
            let path = match &cursor {
                Some(c) => format!("/api/dfr/sync/changes?limit={limit}&cursor={c}"),
                None => format!("/api/dfr/sync/changes?limit={limit}"),
            };
            let page = app.get(&path, &enumerator).await;
            let changes = page.body["changes"].as_array().unwrap();
            assert!(changes.len() <= limit);
            seen.extend(
                changes
                    .iter()
                    .map(|c| c["id"].as_str().unwrap().to_string()),
            );
            cursor = Some(page.body["cursor"].as_str().unwrap().to_string());
            if page.body["more"] != json!(true) {
                assert!(
                    Instant::now() < deadline,
                    "pages of {limit}: {} of {}",
                    seen.len(),
                    expected.len()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        seen.sort();
        assert_eq!(seen, expected, "pages of {limit}");
    }
}

#[tokio::test]
async fn concurrent_replays_of_one_batch_apply_it_once() {
    let app = TestApp::start().await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let mut body = person("TO-01", "Race");
    let created = app.created("/api/dfr/persons", &enumerator, &body).await;
    body["id"] = created["id"].clone();
    body["givenName"] = json!("Raced");
    let batch = vec![
        mutation(
            "plot",
            "create",
            &json!(Uuid::new_v4()),
            None,
            Some(plot(&created)),
        ),
        mutation("person", "update", &created["id"], Some(1), Some(body)),
    ];
    // The same batch from five connections at once (a device retrying while its first push is
    // still in flight): each mutation is applied by one of them, the others answer duplicate.
    let pushes = (0..5).map(|_| push(&app, &enumerator, &batch));
    let answers = futures::future::join_all(pushes).await;
    for index in 0..batch.len() {
        let outcomes: Vec<&str> = answers
            .iter()
            .map(|results| results[index]["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(
            outcomes.iter().filter(|o| **o == "applied").count(),
            1,
            "{outcomes:?}"
        );
        assert_eq!(
            outcomes.iter().filter(|o| **o == "duplicate").count(),
            4,
            "{outcomes:?}"
        );
    }
    let version: i32 = sqlx::query_scalar("SELECT version FROM persons")
        .fetch_one(&app.owner)
        .await
        .unwrap();
    assert_eq!(version, 2);
    let plots: i64 = sqlx::query_scalar("SELECT count(*) FROM plots")
        .fetch_one(&app.owner)
        .await
        .unwrap();
    assert_eq!(plots, 1);
    let conflicts: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_conflicts")
        .fetch_one(&app.owner)
        .await
        .unwrap();
    assert_eq!(
        conflicts, 0,
        "a losing racer keeps no conflict: its mutation was the same one"
    );
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&app.owner)
        .await
        .unwrap();
    assert_eq!(
        events, 3,
        "the create of the person, then one plot and one update"
    );
}
