//! Listing, editing and deleting every registry record kind beside persons, against a real
//! PostgreSQL 15: filters and keyset pagination, If-Match (428 without, 412 when stale), soft
//! deletes, and row-level security on lists.
#![allow(clippy::unwrap_used)]

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{TestApp, person, plot};

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_string())
        .collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// The edit rules every record kind follows: If-Match required, a stale one refused with the
/// current version, a good one bumps the version, a delete leaves the record unreadable.
async fn edit_and_delete(app: &TestApp, token: &str, path: &str, edited: &Value, field: &str) {
    let missing = app.call(Method::PUT, path, token, Some(edited), None).await;
    assert_eq!(
        (missing.status, missing.body["code"].as_str().unwrap()),
        (428, "if_match_required"),
        "{path}"
    );
    let updated = app
        .call(Method::PUT, path, token, Some(edited), Some(1))
        .await;
    assert_eq!(updated.status, 200, "{path}: {}", updated.body);
    assert_eq!(updated.etag.as_deref(), Some("\"2\""));
    assert_eq!(updated.body["version"], 2);
    assert_eq!(updated.body[field], edited[field], "{path}");
    let stale = app
        .call(Method::PUT, path, token, Some(edited), Some(1))
        .await;
    assert_eq!(
        (stale.status, stale.body["code"].as_str().unwrap()),
        (412, "stale_version"),
        "{path}"
    );
    assert!(stale.body["detail"].as_str().unwrap().contains("version 2"));
    let read = app.get(path, token).await;
    assert_eq!(
        read.body[field], edited[field],
        "the stale edit changed nothing"
    );
    let stale_delete = app.call(Method::DELETE, path, token, None, Some(1)).await;
    assert_eq!(stale_delete.status, 412, "{path}");
    let deleted = app.call(Method::DELETE, path, token, None, Some(2)).await;
    assert_eq!(deleted.status, 204, "{path}: {}", deleted.body);
    assert_eq!(app.get(path, token).await.status, 404, "{path}");
    let again = app
        .call(Method::PUT, path, token, Some(edited), Some(3))
        .await;
    assert_eq!(again.status, 404, "a tombstone cannot be edited: {path}");
}

#[tokio::test]
async fn plots_holdings_and_profiles_list_filter_paginate_edit_and_delete() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let supervisor = app.user("supervisor", &["TO-01"], None, "").await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let owner = app
        .created("/api/dfr/persons", &admin, &person("TO-01", "Tupou"))
        .await;
    let other = app
        .created("/api/dfr/persons", &admin, &person("TO-01", "Vea"))
        .await;
    let far = app
        .created("/api/dfr/persons", &admin, &person("TO-02", "Far"))
        .await;

    let mut owned = Vec::new();
    for _ in 0..5 {
        owned.push(app.created("/api/dfr/plots", &admin, &plot(&owner)).await);
    }
    let mut leased = plot(&other);
    leased["tenure"] = json!("leased");
    let leased = app.created("/api/dfr/plots", &admin, &leased).await;
    let far_plot = app.created("/api/dfr/plots", &admin, &plot(&far)).await;

    // Pages of two visit every plot in the caller's areas once, in id order.
    let seen = app.all_pages("/api/dfr/plots", &enumerator, 2).await;
    let mut expected = ids(&owned);
    expected.push(leased["id"].as_str().unwrap().into());
    assert_eq!(
        ids(&seen),
        sorted(expected.clone()),
        "row-level security hides TO-02"
    );
    let everything = app.all_pages("/api/dfr/plots", &admin, 3).await;
    assert_eq!(everything.len(), 7);
    // Filters.
    let by_person = app
        .all_pages(
            &format!("/api/dfr/plots?personId={}", owner["id"].as_str().unwrap()),
            &admin,
            50,
        )
        .await;
    assert_eq!(ids(&by_person), sorted(ids(&owned)));
    let by_tenure = app
        .all_pages("/api/dfr/plots?tenure=leased", &admin, 50)
        .await;
    assert_eq!(
        ids(&by_tenure),
        vec![leased["id"].as_str().unwrap().to_string()]
    );
    let by_area = app.all_pages("/api/dfr/plots?area=TO-02", &admin, 50).await;
    assert_eq!(
        ids(&by_area),
        vec![far_plot["id"].as_str().unwrap().to_string()]
    );
    let bad = app.get("/api/dfr/plots?limit=0", &admin).await;
    assert_eq!(
        (bad.status, bad.body["errors"][0]["field"].as_str().unwrap()),
        (422, "limit")
    );

    // Holdings on two plots.
    let holding = |plot: &Value, item: &str| json!({"plotId": plot["id"], "season": "2026A", "kind": "crop", "item": item, "quantity": 0.5});
    let taro = app
        .created(
            "/api/dfr/holdings",
            &enumerator,
            &holding(&owned[0], "taro"),
        )
        .await;
    app.created(
        "/api/dfr/holdings",
        &enumerator,
        &holding(&owned[0], "cassava"),
    )
    .await;
    app.created(
        "/api/dfr/holdings",
        &enumerator,
        &holding(&owned[1], "taro"),
    )
    .await;
    assert_eq!(
        app.all_pages("/api/dfr/holdings?item=taro", &enumerator, 1)
            .await
            .len(),
        2
    );
    let on_plot = app
        .all_pages(
            &format!(
                "/api/dfr/holdings?plotId={}",
                owned[0]["id"].as_str().unwrap()
            ),
            &enumerator,
            1,
        )
        .await;
    assert_eq!(on_plot.len(), 2);
    assert_eq!(
        app.all_pages("/api/dfr/holdings?season=2025", &enumerator, 10)
            .await
            .len(),
        0
    );

    // Profiles.
    let profile = |p: &Value, activity: &str| json!({"personId": p["id"], "primaryActivity": activity, "yearsFarming": 10});
    app.created(
        "/api/dfr/farmer-profiles",
        &enumerator,
        &profile(&owner, "crops"),
    )
    .await;
    app.created(
        "/api/dfr/farmer-profiles",
        &enumerator,
        &profile(&other, "livestock"),
    )
    .await;
    app.created("/api/dfr/farmer-profiles", &admin, &profile(&far, "crops"))
        .await;
    let crops = app
        .all_pages(
            "/api/dfr/farmer-profiles?primaryActivity=crops",
            &enumerator,
            1,
        )
        .await;
    assert_eq!(
        crops.len(),
        1,
        "the TO-02 profile is not the enumerator's to see"
    );
    assert_eq!(
        app.all_pages("/api/dfr/farmer-profiles", &admin, 2)
            .await
            .len(),
        3
    );

    // Edits and deletes. Enumerators edit; supervisors delete.
    let plot_path = format!("/api/dfr/plots/{}", owned[2]["id"].as_str().unwrap());
    let mut edited = plot(&owner);
    edited["landUse"] = json!("fallow");
    let refused = app
        .call(Method::DELETE, &plot_path, &enumerator, None, Some(1))
        .await;
    assert_eq!(refused.status, 403, "enumerators do not delete");
    edit_and_delete(&app, &supervisor, &plot_path, &edited, "landUse").await;
    assert_eq!(
        app.all_pages("/api/dfr/plots", &enumerator, 50).await.len(),
        5,
        "a deleted plot is not listed"
    );

    let holding_path = format!("/api/dfr/holdings/{}", taro["id"].as_str().unwrap());
    let mut more_taro = holding(&owned[0], "taro");
    more_taro["quantity"] = json!(1.25);
    edit_and_delete(&app, &supervisor, &holding_path, &more_taro, "quantity").await;

    let profile_path = format!("/api/dfr/farmer-profiles/{}", owner["id"].as_str().unwrap());
    edit_and_delete(
        &app,
        &supervisor,
        &profile_path,
        &profile(&owner, "mixed"),
        "primaryActivity",
    )
    .await;
    // With the profile deleted, the person may have a new one.
    app.created(
        "/api/dfr/farmer-profiles",
        &enumerator,
        &profile(&owner, "fisheries"),
    )
    .await;

    // Moving a plot to a person in another area is refused for a caller who cannot see it.
    let moved = app
        .call(
            Method::PUT,
            &format!("/api/dfr/plots/{}", owned[3]["id"].as_str().unwrap()),
            &enumerator,
            Some(&plot(&far)),
            Some(1),
        )
        .await;
    assert_eq!(
        (
            moved.status,
            moved.body["errors"][0]["field"].as_str().unwrap()
        ),
        (422, "personId")
    );
    // An id in the body must be the one in the path.
    let mut wrong_id = plot(&owner);
    wrong_id["id"] = owned[4]["id"].clone();
    let wrong = app
        .call(
            Method::PUT,
            &format!("/api/dfr/plots/{}", owned[3]["id"].as_str().unwrap()),
            &enumerator,
            Some(&wrong_id),
            Some(1),
        )
        .await;
    assert_eq!(
        (
            wrong.status,
            wrong.body["errors"][0]["field"].as_str().unwrap()
        ),
        (422, "id")
    );

    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action IN ('update', 'delete') AND entity IN ('plot', 'holding', 'farmer_profile')")
        .fetch_one(&app.owner)
        .await
        .unwrap();
    assert_eq!(events, 6, "each edit and delete is audited");
}

#[tokio::test]
async fn households_and_consents_list_filter_paginate_edit_and_delete() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let supervisor = app.user("supervisor", &["TO-01"], None, "").await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let mut people = Vec::new();
    for family in ["A", "B", "C", "D"] {
        people.push(
            app.created("/api/dfr/persons", &admin, &person("TO-01", family))
                .await,
        );
    }
    let far = app
        .created("/api/dfr/persons", &admin, &person("TO-02", "Far"))
        .await;
    let household = |head: &Value, others: &[&Value]| {
        let mut members = vec![json!({"personId": head["id"], "role": "head"})];
        members.extend(
            others
                .iter()
                .map(|p| json!({"personId": p["id"], "role": "child"})),
        );
        json!({"members": members})
    };
    let first = app
        .created(
            "/api/dfr/households",
            &enumerator,
            &household(&people[0], &[&people[1]]),
        )
        .await;
    app.created(
        "/api/dfr/households",
        &enumerator,
        &household(&people[2], &[]),
    )
    .await;
    app.created(
        "/api/dfr/households",
        &enumerator,
        &household(&people[3], &[]),
    )
    .await;
    app.created("/api/dfr/households", &admin, &household(&far, &[]))
        .await;

    assert_eq!(
        app.all_pages("/api/dfr/households", &enumerator, 1)
            .await
            .len(),
        3
    );
    assert_eq!(
        app.all_pages("/api/dfr/households", &admin, 2).await.len(),
        4
    );
    let with_b = app
        .all_pages(
            &format!(
                "/api/dfr/households?personId={}",
                people[1]["id"].as_str().unwrap()
            ),
            &enumerator,
            5,
        )
        .await;
    assert_eq!(
        ids(&with_b),
        vec![first["id"].as_str().unwrap().to_string()]
    );
    assert_eq!(with_b[0]["members"].as_array().unwrap().len(), 2);

    // An edit replaces the members: B becomes the head, A a spouse.
    let path = format!("/api/dfr/households/{}", first["id"].as_str().unwrap());
    let edited = json!({"members": [{"personId": people[1]["id"], "role": "head"}, {"personId": people[0]["id"], "role": "spouse"}]});
    let missing = app
        .call(Method::PUT, &path, &enumerator, Some(&edited), None)
        .await;
    assert_eq!(missing.status, 428);
    let updated = app
        .call(Method::PUT, &path, &enumerator, Some(&edited), Some(1))
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["members"][0]["personId"], people[1]["id"]);
    assert_eq!(updated.body["members"][1]["role"], "spouse");
    let stale = app
        .call(Method::PUT, &path, &enumerator, Some(&edited), Some(1))
        .await;
    assert_eq!(
        (stale.status, stale.body["code"].as_str().unwrap()),
        (412, "stale_version")
    );
    let two_heads = json!({"members": [{"personId": people[1]["id"], "role": "head"}, {"personId": people[0]["id"], "role": "head"}]});
    let refused = app
        .call(Method::PUT, &path, &enumerator, Some(&two_heads), Some(2))
        .await;
    assert_eq!(refused.status, 422);
    let deleted = app
        .call(Method::DELETE, &path, &supervisor, None, Some(2))
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(app.get(&path, &enumerator).await.status, 404);
    assert_eq!(
        app.all_pages("/api/dfr/households", &enumerator, 10)
            .await
            .len(),
        2
    );

    // Consents: list by person and state; a request not yet answered can be edited or deleted.
    let consent = |p: &Value, purpose: &str| json!({"personId": p["id"], "purpose": purpose, "recipient": "Ministry of Agriculture", "terms": "We share your plots with the ministry."});
    let asked = app
        .created(
            "/api/dfr/consents",
            &enumerator,
            &consent(&people[0], "subsidy"),
        )
        .await;
    let answered = app
        .created(
            "/api/dfr/consents",
            &enumerator,
            &consent(&people[0], "census"),
        )
        .await;
    app.created(
        "/api/dfr/consents",
        &enumerator,
        &consent(&people[2], "subsidy"),
    )
    .await;
    let given = app
        .call(
            Method::POST,
            &format!(
                "/api/dfr/consents/{}/transitions",
                answered["id"].as_str().unwrap()
            ),
            &enumerator,
            Some(&json!({"state": "given"})),
            Some(1),
        )
        .await;
    assert_eq!(given.status, 200, "{}", given.body);
    let of_a = app
        .all_pages(
            &format!(
                "/api/dfr/consents?personId={}",
                people[0]["id"].as_str().unwrap()
            ),
            &enumerator,
            1,
        )
        .await;
    assert_eq!(of_a.len(), 2);
    let open = app
        .all_pages("/api/dfr/consents?state=requested", &enumerator, 10)
        .await;
    assert_eq!(open.len(), 2);

    let answered_path = format!("/api/dfr/consents/{}", answered["id"].as_str().unwrap());
    let locked = app
        .call(
            Method::PUT,
            &answered_path,
            &enumerator,
            Some(&consent(&people[0], "other")),
            Some(2),
        )
        .await;
    assert_eq!(
        (
            locked.status,
            locked.body["errors"][0]["field"].as_str().unwrap()
        ),
        (422, "state")
    );
    let kept = app
        .call(Method::DELETE, &answered_path, &supervisor, None, Some(2))
        .await;
    assert_eq!(kept.status, 422, "a given consent stays on record");

    let asked_path = format!("/api/dfr/consents/{}", asked["id"].as_str().unwrap());
    edit_and_delete(
        &app,
        &supervisor,
        &asked_path,
        &consent(&people[0], "subsidy 2027"),
        "purpose",
    )
    .await;
}
