//! Writes the database refuses, answered by the constraint that refused them: a create sent
//! again after a lost answer, an id taken by another record, a national ID registered twice.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use support::{TestApp, person};
use uuid::Uuid;

async fn post(app: &TestApp, token: &str, path: &str, body: &Value) -> (u16, Value, String) {
    let response = app
        .http
        .post(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, response.json().await.unwrap(), etag)
}

async fn audit_events_of(app: &TestApp, id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE entity_id = $1")
        .bind(id)
        .fetch_one(&app.owner)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retried_create_returns_the_person_and_a_taken_id_is_not_a_duplicate_national_id() {
    let app = TestApp::start().await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let id = Uuid::new_v4().to_string();
    let mut body = person("TO-01", "Tupou");
    body["id"] = json!(id);

    let (status, first, _) = post(&app, &enumerator, "/api/dfr/persons", &body).await;
    assert_eq!(status, 201, "{first}");

    // The same request again (the client lost the first answer): the person, nothing written.
    let (status, again, etag) = post(&app, &enumerator, "/api/dfr/persons", &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first);
    assert_eq!(etag, "\"1\"");
    assert_eq!(audit_events_of(&app, &id).await, 1);

    // The same id and national ID with other content: the id is taken.
    let mut changed = body.clone();
    changed["givenName"] = json!("Mele");
    let (status, problem, _) = post(&app, &enumerator, "/api/dfr/persons", &changed).await;
    assert_eq!(
        (status, problem["code"].as_str().unwrap()),
        (409, "duplicate_id")
    );
    assert_eq!(problem["errors"][0]["field"], "id");

    // The same id for another person (another national ID): the primary key refuses it, and the
    // answer says the id is taken, not that the national ID is a duplicate.
    let mut other = person("TO-01", "Vea");
    other["id"] = json!(id);
    let (status, problem, _) = post(&app, &enumerator, "/api/dfr/persons", &other).await;
    assert_eq!(
        (status, problem["code"].as_str().unwrap()),
        (409, "duplicate_id"),
        "{problem}"
    );
    assert_eq!(problem["errors"][0]["field"], "id");
    assert!(
        problem["detail"].as_str().unwrap().contains("id"),
        "{problem}"
    );

    // Another id with the same national ID: a duplicate national ID, pointing to the holder.
    let mut twin = body.clone();
    twin["id"] = json!(Uuid::new_v4());
    let (status, problem, _) = post(&app, &enumerator, "/api/dfr/persons", &twin).await;
    assert_eq!(
        (status, problem["code"].as_str().unwrap()),
        (409, "duplicate_national_id")
    );
    assert_eq!(problem["existing"], format!("/api/dfr/persons/{id}"));
    assert_eq!(audit_events_of(&app, &id).await, 1);
}

#[tokio::test]
async fn a_taken_id_or_code_elsewhere_is_a_conflict_naming_the_field() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let area = json!({"code": "TO-03", "parentCode": "TO", "name": "Ha'apai", "level": 1});
    assert_eq!(post(&app, &admin, "/api/dfr/areas", &area).await.0, 201);
    let (status, problem, _) = post(&app, &admin, "/api/dfr/areas", &area).await;
    assert_eq!(
        (status, problem["code"].as_str().unwrap()),
        (409, "conflict")
    );
    assert_eq!(problem["errors"][0]["field"], "code");

    let (_, owner, _) = post(&app, &admin, "/api/dfr/persons", &person("TO-01", "Fifita")).await;
    let plot = json!({"id": Uuid::new_v4(), "personId": owner["id"], "geometry": {"type": "Point", "coordinates": [-175.2, -21.13]}, "tenure": "owned", "landUse": "cropland"});
    assert_eq!(post(&app, &admin, "/api/dfr/plots", &plot).await.0, 201);
    let (status, problem, _) = post(&app, &admin, "/api/dfr/plots", &plot).await;
    assert_eq!(
        (status, problem["code"].as_str().unwrap()),
        (409, "duplicate_id"),
        "{problem}"
    );
}

#[tokio::test]
async fn every_named_constraint_exists_in_the_migrated_schema() {
    let app = TestApp::start().await;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint UNION SELECT relname::text FROM pg_class WHERE relkind = 'i'",
    )
    .fetch_all(&app.owner)
    .await
    .unwrap();
    for known in dfr_api::constraint::KNOWN {
        assert!(
            names.iter().any(|name| name == known.name),
            "{} is not a constraint of the schema",
            known.name
        );
    }
}
