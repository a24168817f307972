//! The delta pull's edges against a real PostgreSQL 15: a form submission deleted, or moved to
//! a subject in another area, reaches the devices of its old area as a tombstone (and never
//! the other area's devices before it arrives there), and a cursor this registry never handed
//! out is refused as stale rather than silently skipping changes.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};
use support::{TestApp, person};

/// Every change `token` pulls from the start, page after page, until `done` holds (10 s).
async fn pull_until(app: &TestApp, token: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut changes = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/dfr/sync/changes?limit=50&cursor={c}"),
                None => "/api/dfr/sync/changes?limit=50".to_string(),
            };
            let page = app.get(&path, token).await;
            assert_eq!(page.status, 200, "{}", page.body);
            changes.extend(page.body["changes"].as_array().unwrap().iter().cloned());
            cursor = Some(page.body["cursor"].as_str().unwrap().to_string());
            if page.body["more"] != json!(true) {
                break;
            }
        }
        if done(&changes) {
            return changes;
        }
        assert!(Instant::now() < deadline, "never pulled: {changes:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn change<'a>(changes: &'a [Value], id: &Value) -> Option<&'a Value> {
    changes.iter().find(|c| &c["id"] == id)
}

#[tokio::test]
async fn submissions_deleted_or_moved_reach_their_old_area_as_tombstones() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let supervisor = app.user("supervisor", &["TO-01"], None, "").await;
    let device = app.user("enumerator", &["TO-01"], None, "").await;
    let far_device = app.user("enumerator", &["TO-02"], None, "").await;
    let here = app
        .created("/api/dfr/persons", &admin, &person("TO-01", "Here"))
        .await;
    let there = app
        .created("/api/dfr/persons", &admin, &person("TO-02", "There"))
        .await;
    let form = json!({"key": "visit", "title": "Visit", "subject": "person",
                      "fields": [{"name": "note", "type": "text"}]});
    app.created("/api/dfr/forms", &admin, &form).await;
    let submission = |subject: &Value, note: &str| json!({"id": uuid::Uuid::new_v4(), "formKey": "visit", "formVersion": 1, "subjectId": subject["id"], "data": {"note": note}});
    let deleted = app
        .created(
            "/api/dfr/form-submissions",
            &device,
            &submission(&here, "one"),
        )
        .await;
    let moving = app
        .created(
            "/api/dfr/form-submissions",
            &device,
            &submission(&here, "two"),
        )
        .await;
    pull_until(&app, &device, |c| {
        change(c, &deleted["id"]).is_some() && change(c, &moving["id"]).is_some()
    })
    .await;
    let far = pull_until(&app, &far_device, |_| true).await;
    assert!(change(&far, &moving["id"]).is_none(), "not in TO-02 yet");

    let gone = app
        .call(
            Method::DELETE,
            &format!(
                "/api/dfr/form-submissions/{}",
                deleted["id"].as_str().unwrap()
            ),
            &supervisor,
            None,
            Some(1),
        )
        .await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    let mut moved = submission(&there, "two");
    moved["id"] = moving["id"].clone();
    let edit = app
        .call(
            Method::PUT,
            &format!(
                "/api/dfr/form-submissions/{}",
                moving["id"].as_str().unwrap()
            ),
            &admin,
            Some(&moved),
            Some(1),
        )
        .await;
    assert_eq!(
        (edit.status, edit.body["areaCode"].as_str()),
        (200, Some("TO-02")),
        "{}",
        edit.body
    );

    let changes = pull_until(&app, &device, |c| {
        change(c, &deleted["id"]).is_some_and(|d| d["deleted"] == json!(true))
            && change(c, &moving["id"]).is_some_and(|d| d["deleted"] == json!(true))
    })
    .await;
    for id in [&deleted["id"], &moving["id"]] {
        let tombstone = change(&changes, id).unwrap();
        assert_eq!(
            (tombstone["entity"].as_str(), &tombstone["record"]),
            (Some("form_submission"), &Value::Null)
        );
    }
    let far = pull_until(&app, &far_device, |c| change(c, &moving["id"]).is_some()).await;
    let arrived = change(&far, &moving["id"]).unwrap();
    assert_eq!(
        (arrived["deleted"].as_bool(), arrived["version"].as_i64()),
        (Some(false), Some(2))
    );
    assert_eq!(arrived["record"]["data"]["note"], "two");
    assert!(change(&far, &deleted["id"]).is_none(), "TO-02 never had it");
}

#[tokio::test]
async fn a_cursor_this_registry_never_handed_out_is_stale() {
    let app = TestApp::start().await;
    let device = app.user("enumerator", &["TO-01"], None, "").await;
    app.created("/api/dfr/persons", &device, &person("TO-01", "Pulled"))
        .await;
    let first = app.get("/api/dfr/sync/changes", &device).await;
    let cursor = first.body["cursor"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/api/dfr/sync/changes?cursor={cursor}"), &device)
            .await
            .status,
        200
    );
    // A cursor from the future of this database (kept from before a restore, or another
    // registry's): 410 stale_cursor, naming the field, so the device starts over.
    let ahead = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("900000000.1");
    let stale = app
        .get(&format!("/api/dfr/sync/changes?cursor={ahead}"), &device)
        .await;
    assert_eq!(
        (
            stale.status,
            stale.body["code"].as_str(),
            stale.body["errors"][0]["field"].as_str()
        ),
        (410, Some("stale_cursor"), Some("cursor"))
    );
    let garbage = app
        .get("/api/dfr/sync/changes?cursor=garbage", &device)
        .await;
    assert_eq!(
        (garbage.status, garbage.body["code"].as_str()),
        (422, Some("validation_failed"))
    );
}
