//! Dynamic forms against a real PostgreSQL 15: versioned definitions, submissions checked
//! against the version they name, recognised when sent again under their instance id, edited
//! and deleted like every record, erased with their person, and carried by sync both ways.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use support::{TestApp, person, plot};
use uuid::Uuid;

fn survey(extra: &[Value]) -> Value {
    let mut fields = vec![
        json!({"name": "grows_crops", "type": "boolean", "required": true}),
        json!({"name": "crops", "type": "select_multiple", "choices": ["taro", "yam", "cassava"], "required": true,
               "relevant": {"field": "grows_crops", "equals": true}}),
        json!({"name": "hectares", "type": "decimal", "min": 0, "max": 500}),
        json!({"name": "notes", "type": "text"}),
    ];
    fields.extend(extra.iter().cloned());
    json!({"key": "farm-survey", "title": "Farm survey", "subject": "person", "fields": fields})
}

fn fields_named(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

async fn rows(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&app.owner)
        .await
        .unwrap()
}

#[tokio::test]
async fn submissions_are_checked_against_the_form_version_they_were_made_with() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let supervisor = app.user("supervisor", &["TO-01"], None, "").await;
    let farmer = app
        .created("/api/dfr/persons", &enumerator, &person("TO-01", "Survey"))
        .await;
    let far = app
        .created("/api/dfr/persons", &admin, &person("TO-02", "Far"))
        .await;

    // A bad definition: every problem named, nothing published.
    let bad = json!({"key": "Bad Key", "title": "", "subject": "person", "fields": [
        {"name": "a", "type": "select_one", "choices": ["x", "x"]},
        {"name": "a", "type": "text", "choices": ["x"]},
        {"name": "n", "type": "integer", "min": 5, "max": 1},
        {"name": "t", "type": "text", "min": 1},
        {"name": "c", "type": "text", "relevant": {"field": "later", "equals": 1}},
        {"name": "d", "type": "text", "relevant": {"field": "a", "equals": "z"}},
        {"name": "later", "type": "boolean"}
    ]});
    let refused = app
        .call(Method::POST, "/api/dfr/forms", &admin, Some(&bad), None)
        .await;
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (422, Some("validation_failed"))
    );
    assert_eq!(
        fields_named(&refused.body),
        [
            "key",
            "title",
            "fields[0].choices",
            "fields[1].name",
            "fields[1].choices",
            "fields[2].min",
            "fields[3].min",
            "fields[4].relevant.field",
            "fields[5].relevant.equals"
        ]
    );
    let unknown_type = json!({"key": "k", "title": "t", "subject": "person", "fields": [{"name": "a", "type": "photo"}]});
    let refused = app
        .call(
            Method::POST,
            "/api/dfr/forms",
            &admin,
            Some(&unknown_type),
            None,
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let denied = app
        .call(
            Method::POST,
            "/api/dfr/forms",
            &enumerator,
            Some(&survey(&[])),
            None,
        )
        .await;
    assert_eq!(denied.status, 403);
    assert_eq!(rows(&app, "form_definitions").await, 0);

    let v1 = app.created("/api/dfr/forms", &admin, &survey(&[])).await;
    assert_eq!(v1["version"], 1);
    let water = json!({"name": "water", "type": "select_one", "choices": ["rain", "river"], "required": true});
    let v2 = app
        .created("/api/dfr/forms", &admin, &survey(&[water]))
        .await;
    assert_eq!(v2["version"], 2);
    let newest = app.get("/api/dfr/forms", &enumerator).await;
    assert_eq!(newest.body.as_array().unwrap().len(), 1);
    assert_eq!(newest.body[0]["version"], 2);
    assert_eq!(
        app.get("/api/dfr/forms?key=farm-survey", &enumerator)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        app.get("/api/dfr/forms/farm-survey/versions/1", &enumerator)
            .await
            .body,
        v1
    );
    assert_eq!(
        app.get("/api/dfr/forms/farm-survey/versions/3", &enumerator)
            .await
            .status,
        404
    );

    // Made with version 1: no water asked, and none required.
    let id = Uuid::new_v4();
    let answers = json!({"grows_crops": true, "crops": ["taro", "yam"], "hectares": 2.5});
    let body = json!({"id": id, "formKey": "farm-survey", "formVersion": 1, "subjectId": farmer["id"], "data": answers});
    let events_before = rows(&app, "audit_events").await;
    let recorded = app
        .created("/api/dfr/form-submissions", &enumerator, &body)
        .await;
    assert_eq!(
        (recorded["areaCode"].as_str(), recorded["subject"].as_str()),
        (Some("TO-01"), Some("person"))
    );
    // Sent again (a device that lost the answer): recognised, nothing written.
    let again = app
        .call(
            Method::POST,
            "/api/dfr/form-submissions",
            &enumerator,
            Some(&body),
            None,
        )
        .await;
    assert_eq!((again.status, &again.body), (200, &recorded));
    assert_eq!(rows(&app, "audit_events").await, events_before + 1);
    let mut other = body.clone();
    other["data"]["hectares"] = json!(3);
    let taken = app
        .call(
            Method::POST,
            "/api/dfr/form-submissions",
            &enumerator,
            Some(&other),
            None,
        )
        .await;
    assert_eq!(
        (taken.status, taken.body["code"].as_str()),
        (409, Some("duplicate_id"))
    );

    let submissions = rows(&app, "form_submissions").await;
    for (change, fields) in [
        (json!({"formVersion": 2}), vec!["data.water"]),
        (
            json!({"data": {"grows_crops": false, "crops": ["taro"]}}),
            vec!["data.crops"],
        ),
        (
            json!({"data": {"grows_crops": "yes", "hectares": 900, "notes": "", "colour": "red"}}),
            vec![
                "data.colour",
                "data.grows_crops",
                "data.hectares",
                "data.notes",
            ],
        ),
        (
            json!({"data": {"grows_crops": true, "crops": ["rice"]}}),
            vec!["data.crops"],
        ),
        (json!({"formVersion": 9}), vec!["formVersion"]),
        (json!({"formKey": "nope"}), vec!["formVersion"]),
        (json!({"subjectId": far["id"]}), vec!["subjectId"]),
        (json!({"subjectId": Uuid::new_v4()}), vec!["subjectId"]),
        (json!({"id": null}), vec!["id"]),
        (json!({"extra": 1}), vec!["extra"]),
    ] {
        let mut attempt = body.clone();
        attempt["id"] = json!(Uuid::new_v4());
        for (key, value) in change.as_object().unwrap() {
            attempt[key] = value.clone();
        }
        let reply = app
            .call(
                Method::POST,
                "/api/dfr/form-submissions",
                &enumerator,
                Some(&attempt),
                None,
            )
            .await;
        assert_eq!(reply.status, 422, "{attempt}: {}", reply.body);
        assert_eq!(fields_named(&reply.body), fields, "{attempt}");
    }
    assert_eq!(
        rows(&app, "form_submissions").await,
        submissions,
        "nothing written"
    );

    // A form about plots takes the plot's area.
    let field = app
        .created("/api/dfr/plots", &enumerator, &plot(&farmer))
        .await;
    app.created(
        "/api/dfr/forms",
        &admin,
        &json!({"key": "plot-visit", "title": "Plot visit", "subject": "plot", "fields": [{"name": "flooded", "type": "boolean", "required": true}]}),
    )
    .await;
    let visit = app
        .created(
            "/api/dfr/form-submissions",
            &enumerator,
            &json!({"id": Uuid::new_v4(), "formKey": "plot-visit", "formVersion": 1, "subjectId": field["id"], "data": {"flooded": false}}),
        )
        .await;
    assert_eq!(visit["subject"], "plot");
    let wrong_kind = app
        .call(
            Method::POST,
            "/api/dfr/form-submissions",
            &enumerator,
            Some(&json!({"id": Uuid::new_v4(), "formKey": "plot-visit", "formVersion": 1, "subjectId": farmer["id"], "data": {"flooded": true}})),
            None,
        )
        .await;
    assert_eq!(fields_named(&wrong_kind.body), ["subjectId"]);

    // Listed, edited with If-Match against the version the edit names, deleted.
    let listed = app
        .all_pages(
            &format!(
                "/api/dfr/form-submissions?formKey=farm-survey&subjectId={}",
                farmer["id"].as_str().unwrap()
            ),
            &enumerator,
            1,
        )
        .await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        app.all_pages("/api/dfr/form-submissions", &enumerator, 1)
            .await
            .len(),
        2
    );
    let path = format!("/api/dfr/form-submissions/{id}");
    let mut edit = body.clone();
    edit["formVersion"] = json!(2);
    edit["data"]["water"] = json!("river");
    let stale = app
        .call(Method::PUT, &path, &enumerator, Some(&edit), Some(7))
        .await;
    assert_eq!(stale.status, 412);
    let edited = app
        .call(Method::PUT, &path, &enumerator, Some(&edit), Some(1))
        .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    assert_eq!(
        (
            edited.body["version"].as_i64(),
            edited.body["formVersion"].as_i64()
        ),
        (Some(2), Some(2))
    );
    let mut bad_edit = edit.clone();
    bad_edit["data"]["water"] = json!("well");
    let refused = app
        .call(Method::PUT, &path, &enumerator, Some(&bad_edit), Some(2))
        .await;
    assert_eq!(fields_named(&refused.body), ["data.water"]);
    let deleted = app
        .call(Method::DELETE, &path, &supervisor, None, Some(2))
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(app.get(&path, &enumerator).await.status, 404);

    // Erasing the person clears the answers about them and their plots.
    let document = app
        .get(
            &format!("/api/dfr/persons/{}/record", farmer["id"].as_str().unwrap()),
            &admin,
        )
        .await;
    assert_eq!(
        document.body["formSubmissions"].as_array().unwrap().len(),
        2
    );
    let erased = app
        .call(
            Method::POST,
            &format!(
                "/api/dfr/persons/{}/erasure",
                farmer["id"].as_str().unwrap()
            ),
            &admin,
            None,
            None,
        )
        .await;
    assert_eq!(erased.body["formSubmissions"], 2, "{}", erased.body);
    let left: Vec<Value> = sqlx::query_scalar("SELECT data FROM form_submissions ORDER BY id")
        .fetch_all(&app.owner)
        .await
        .unwrap();
    assert_eq!(left, vec![json!({}), json!({})]);
}

async fn pull_all(app: &TestApp, token: &str) -> Vec<Value> {
    let mut changes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/dfr/sync/changes?limit=100&cursor={c}"),
            None => "/api/dfr/sync/changes?limit=100".to_string(),
        };
        let page = app.get(&path, token).await;
        assert_eq!(page.status, 200, "{}", page.body);
        changes.extend(page.body["changes"].as_array().unwrap().iter().cloned());
        cursor = Some(page.body["cursor"].as_str().unwrap().to_string());
        if page.body["more"] != json!(true) {
            return changes;
        }
    }
}

#[tokio::test]
async fn submissions_are_pushed_and_pulled_like_every_record() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let device = app.user("enumerator", &["TO-01"], None, "").await;
    let colleague = app.user("enumerator", &["TO-01"], None, "").await;
    let elsewhere = app.user("enumerator", &["TO-02"], None, "").await;
    let farmer = app
        .created("/api/dfr/persons", &device, &person("TO-01", "Synced"))
        .await;
    app.created("/api/dfr/forms", &admin, &survey(&[])).await;
    let id = Uuid::new_v4();
    let data = json!({"formKey": "farm-survey", "formVersion": 1, "subjectId": farmer["id"], "data": {"grows_crops": false}});
    let create = json!({"clientMutationId": Uuid::new_v4(), "entity": "form_submission", "op": "create", "id": id, "data": data});
    let bad = json!({"clientMutationId": Uuid::new_v4(), "entity": "form_submission", "op": "create", "id": Uuid::new_v4(),
                     "data": {"formKey": "farm-survey", "formVersion": 1, "subjectId": farmer["id"], "data": {"crops": "taro"}}});
    let push = |mutations: Vec<Value>| {
        let app = &app;
        let device = device.clone();
        async move {
            let reply = app
                .call(
                    Method::POST,
                    "/api/dfr/sync/push",
                    &device,
                    Some(&json!({"mutations": mutations})),
                    None,
                )
                .await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            reply.body["results"].as_array().unwrap().clone()
        }
    };
    let results = push(vec![create.clone(), bad]).await;
    assert_eq!(results[0]["outcome"], "applied", "{results:?}");
    assert_eq!(results[1]["outcome"], "rejected");
    assert_eq!(
        fields_named(&results[1]),
        ["data.grows_crops", "data.crops"]
    );
    let replay = push(vec![create]).await;
    assert_eq!(replay[0]["outcome"], "duplicate");
    assert_eq!(rows(&app, "form_submissions").await, 1);

    // An edit based on version 1 after the office edited it: a conflict, both kept.
    let path = format!("/api/dfr/form-submissions/{id}");
    let mut office = data.clone();
    office["data"] = json!({"grows_crops": true, "crops": ["yam"]});
    assert_eq!(
        app.call(Method::PUT, &path, &admin, Some(&office), Some(1))
            .await
            .status,
        200
    );
    let mut offline = data.clone();
    offline["data"] = json!({"grows_crops": false, "notes": "fallow this season"});
    let update = json!({"clientMutationId": Uuid::new_v4(), "entity": "form_submission", "op": "update", "id": id, "baseVersion": 1, "data": offline});
    let conflict = push(vec![update]).await;
    assert_eq!(conflict[0]["outcome"], "conflict", "{conflict:?}");
    assert_eq!(conflict[0]["current"]["data"]["crops"], json!(["yam"]));

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let changes = pull_all(&app, &colleague).await;
        let found = changes.iter().find(|c| c["id"] == json!(id));
        if let Some(change) = found {
            assert_eq!(change["entity"], "form_submission");
            assert_eq!(change["version"], 2);
            assert_eq!(change["record"]["data"]["crops"], json!(["yam"]));
            break;
        }
        assert!(Instant::now() < deadline, "never pulled: {changes:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let far = pull_all(&app, &elsewhere).await;
    assert!(
        far.iter().all(|c| c["id"] != json!(id)),
        "another area never sees it"
    );
}
