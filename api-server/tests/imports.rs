//! Households imported with their members from CSV and XLSX, and imports run as jobs the
//! client polls, against a real PostgreSQL 15: every bad member row and every badly shaped
//! household is a report line, nothing is written while one is wrong, a re-run writes nothing,
//! and a background job reports its progress and ends with the report it would have answered.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use dfr_api::routes::transfer::table::{Format, write};
use serde_json::Value;
use support::{TestApp, person};
use uuid::Uuid;

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const HEADER: [&str; 3] = ["household_id", "person_id", "role"];

async fn send(
    app: &TestApp,
    token: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value, Option<String>) {
    let response = app
        .http
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (status, response.json().await.unwrap(), location)
}

fn lines(report: &Value) -> Vec<(u64, String, String)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["row"].as_u64().unwrap(),
                p["field"].as_str().unwrap().to_string(),
                p["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn expect(lines: &[(u64, &str, &str)]) -> Vec<(u64, String, String)> {
    lines
        .iter()
        .map(|(row, field, code)| (*row, field.to_string(), code.to_string()))
        .collect()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&app.owner)
        .await
        .unwrap()
}

fn row(household: &str, person: &str, role: &str) -> Vec<String> {
    vec![household.into(), person.into(), role.into()]
}

async fn persons(app: &TestApp, token: &str, area: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let created = app
            .created(
                "/api/dfr/persons",
                token,
                &person(area, &format!("Member{i}")),
            )
            .await;
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    ids
}

#[tokio::test]
async fn households_import_with_their_members_every_bad_row_reported_and_once() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let here = persons(&app, &admin, "TO-01", 6).await;
    let far = persons(&app, &admin, "TO-02", 1).await;
    let (a, b) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    let good = vec![
        row(&a, &here[0], "head"),
        row(&a, &here[1], "spouse"),
        row(&a, &here[2], "child"),
        row(&b, &here[3], "head"),
    ];
    let (headless, two_heads, mixed, broken) = (
        Uuid::new_v4().to_string(),
        Uuid::new_v4().to_string(),
        Uuid::new_v4().to_string(),
        Uuid::new_v4().to_string(),
    );
    let mut bad = good.clone();
    bad.extend([
        row("not-a-uuid", &here[4], "head"), // 6
        row(&headless, &here[4], "spouse"),  // 7: no head
        row(&two_heads, &here[4], "head"),   // 8
        row(&two_heads, &here[5], "head"),   // 9: a second head
        row(&mixed, &here[5], "head"),       // 10
        row(&mixed, &far[0], "child"),       // 11: not visible to the enumerator
        row(&broken, &here[4], "head"),      // 12
        row(&broken, &here[5], "cousin"),    // 13: a bad role; the household is not judged
        row(&broken, "nobody", "child"),     // 14
        row(&a, &here[1], "spouse"),         // 15: listed twice
    ]);
    let csv = |rows: &[Vec<String>]| write(Format::Csv, &HEADER, rows).unwrap();
    let (status, report, _) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/households?dryRun=true",
        "text/csv",
        csv(&bad),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        lines(&report),
        expect(&[
            (6, "household_id", "invalid"),
            (7, "role", "invalid"),
            (9, "role", "invalid"),
            (11, "person_id", "invalid"),
            (13, "role", "invalid"),
            (14, "person_id", "invalid"),
            (15, "person_id", "duplicate_in_file"),
        ]),
        "{report}"
    );
    let (status, rejected, _) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/households",
        "text/csv",
        csv(&bad),
    )
    .await;
    assert_eq!(
        (status, rejected["code"].as_str()),
        (422, Some("import_rejected"))
    );
    assert_eq!(rejected["report"]["problems"].as_array().unwrap().len(), 7);
    assert_eq!(count(&app, "SELECT count(*) FROM households").await, 0);
    assert_eq!(
        count(&app, "SELECT count(*) FROM household_members").await,
        0
    );

    // The same good file as XLSX: two households, one of three members.
    let xlsx = write(Format::Xlsx, &HEADER, &good).unwrap();
    let (status, imported, _) =
        send(&app, &enumerator, "/api/dfr/imports/households", XLSX, xlsx).await;
    assert_eq!(
        (
            status,
            imported["created"].as_u64(),
            imported["rows"].as_u64()
        ),
        (200, Some(2), Some(4)),
        "{imported}"
    );
    let household = app
        .get(&format!("/api/dfr/households/{a}"), &enumerator)
        .await;
    assert_eq!(household.status, 200);
    assert_eq!(household.body["members"].as_array().unwrap().len(), 3);
    assert_eq!(household.body["members"][0]["role"], "head");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_events WHERE entity = 'household'"
        )
        .await,
        2
    );

    // Again, as CSV with the rows in another order: nothing new.
    let mut shuffled = good.clone();
    shuffled.reverse();
    let (status, again, _) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/households",
        "text/csv",
        csv(&shuffled),
    )
    .await;
    assert_eq!(
        (
            status,
            again["created"].as_u64(),
            again["unchanged"].as_u64()
        ),
        (200, Some(0), Some(2)),
        "{again}"
    );
    // Other members under a registered id: duplicate_id at the household's first row.
    let changed = vec![row(&b, &here[3], "head"), row(&b, &here[4], "child")];
    let (status, taken, _) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/households?dryRun=true",
        "text/csv",
        csv(&changed),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        lines(&taken),
        expect(&[(2, "household_id", "duplicate_id")])
    );
    // A header that is not a households file.
    let wrong = write(Format::Csv, &["household", "person_id", "role"], &changed).unwrap();
    let (_, header, _) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/households?dryRun=true",
        "text/csv",
        wrong,
    )
    .await;
    assert_eq!(
        lines(&header),
        expect(&[
            (1, "household", "unknown_column"),
            (1, "household_id", "missing_column")
        ])
    );
    assert_eq!(count(&app, "SELECT count(*) FROM households").await, 2);
    assert_eq!(
        count(&app, "SELECT count(*) FROM household_members").await,
        4
    );
}

/// Polls the job at `location` until it ends; the states seen on the way and the last answer.
/// What it has written never goes back, nor past what it will write.
async fn poll(app: &TestApp, token: &str, location: &str) -> (Vec<String>, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut states = Vec::new();
    let mut written = 0;
    loop {
        let job = app.get(location, token).await;
        assert_eq!(job.status, 200, "{}", job.body);
        let now = job.body["written"].as_u64().unwrap();
        assert!(now >= written, "written went back: {}", job.body);
        if job.body["state"] == "writing" {
            assert!(now <= job.body["toWrite"].as_u64().unwrap(), "{}", job.body);
        }
        written = now;
        let state = job.body["state"].as_str().unwrap().to_string();
        if states.last() != Some(&state) {
            states.push(state.clone());
        }
        if ["done", "rejected", "failed"].contains(&state.as_str()) {
            return (states, job.body);
        }
        assert!(
            Instant::now() < deadline,
            "the job never ended: {}",
            job.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn persons_csv(n: usize, area: &str) -> Vec<u8> {
    let header = [
        "national_id_system",
        "national_id",
        "given_name",
        "family_name",
        "sex",
        "birth_date",
        "area_code",
    ];
    let rows: Vec<Vec<String>> = (0..n)
        .map(|i| {
            [
                "TON-NID",
                &format!("JOB{i:06}"),
                "Mele",
                &format!("Job{i}"),
                "2",
                "1990-01-02",
                area,
            ]
            .map(String::from)
            .to_vec()
        })
        .collect();
    write(Format::Csv, &header, &rows).unwrap()
}

#[tokio::test]
async fn a_background_import_is_a_job_its_starter_polls_to_the_end() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let other = app.user("supervisor", &["TO-01"], None, "").await;
    let (status, job, location) = send(
        &app,
        &admin,
        "/api/dfr/imports/persons?background=true",
        "text/csv",
        persons_csv(400, "TO-01"),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let location = location.unwrap();
    assert_eq!(
        location,
        format!("/api/dfr/imports/{}", job["id"].as_str().unwrap())
    );
    assert_eq!(
        (job["state"].as_str(), job["rows"].as_u64()),
        (Some("checking"), Some(400))
    );
    // Someone else's job is not theirs to see.
    assert_eq!(app.get(&location, &other).await.status, 404);
    let (states, done) = poll(&app, &admin, &location).await;
    assert_eq!(
        states.last().map(String::as_str),
        Some("done"),
        "{states:?} {done}"
    );
    assert_eq!(
        (done["toWrite"].as_u64(), done["written"].as_u64()),
        (Some(400), Some(400)),
        "{done}"
    );
    assert_eq!(done["report"]["created"], 400);
    assert_eq!(count(&app, "SELECT count(*) FROM persons").await, 400);

    // A job whose file has a wrong row ends rejected with the report; nothing written.
    let mut file = persons_csv(3, "TO-01");
    file.extend_from_slice(b"TON-NID,JOB999999,Mele,Bad,7,1990-01-02,TO-01\n");
    let (status, _, location) = send(
        &app,
        &admin,
        "/api/dfr/imports/persons?background=true",
        "text/csv",
        file,
    )
    .await;
    assert_eq!(status, 202);
    let (_, rejected) = poll(&app, &admin, &location.unwrap()).await;
    assert_eq!(rejected["state"], "rejected", "{rejected}");
    assert_eq!(lines(&rejected["report"]), expect(&[(5, "sex", "invalid")]));
    assert_eq!(rejected["written"], 0);
    assert_eq!(count(&app, "SELECT count(*) FROM persons").await, 400);

    // A file that cannot be read is refused at once, with no job.
    let (status, refused, _) = send(
        &app,
        &admin,
        "/api/dfr/imports/plots?background=true",
        XLSX,
        b"not a workbook".to_vec(),
    )
    .await;
    assert_eq!(
        (status, refused["errors"][0]["field"].as_str()),
        (422, Some("file"))
    );
    assert_eq!(count(&app, "SELECT count(*) FROM import_jobs").await, 2);
    let missing = app
        .get(&format!("/api/dfr/imports/{}", Uuid::new_v4()), &admin)
        .await;
    assert_eq!(
        (missing.status, missing.body["code"].as_str()),
        (404, Some("not_found"))
    );
    // A job left running by a server that stopped is answered as failed once its row is old.
    sqlx::query("UPDATE import_jobs SET state = 'writing', updated_at = now() - interval '2 minutes' WHERE state = 'rejected'")
        .execute(&app.owner)
        .await
        .unwrap();
    let stopped: String =
        sqlx::query_scalar("SELECT id::text FROM import_jobs WHERE state = 'writing'")
            .fetch_one(&app.owner)
            .await
            .unwrap();
    let stopped = app
        .get(&format!("/api/dfr/imports/{stopped}"), &admin)
        .await;
    assert_eq!(
        (
            stopped.body["state"].as_str(),
            stopped.body["errorCode"].as_str()
        ),
        (Some("failed"), Some("internal"))
    );
}

#[tokio::test]
async fn ids_taken_where_the_importer_cannot_see_are_report_lines_not_failed_writes() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let here = persons(&app, &admin, "TO-01", 1).await;
    let far = persons(&app, &admin, "TO-02", 1).await;
    let far_household = app
        .created(
            "/api/dfr/households",
            &admin,
            &serde_json::json!({"members": [{"personId": far[0], "role": "head"}]}),
        )
        .await;
    let taken = far_household["id"].as_str().unwrap();
    let file = write(Format::Csv, &HEADER, &[row(taken, &here[0], "head")]).unwrap();
    let (status, report, _) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/households?dryRun=true",
        "text/csv",
        file.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        lines(&report),
        expect(&[(2, "household_id", "duplicate_id")]),
        "{report}"
    );
    let (status, _, _) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/households",
        "text/csv",
        file,
    )
    .await;
    assert_eq!(status, 422);

    // A person row whose id a person of another area holds, and an id given twice.
    let header = [
        "id",
        "national_id_system",
        "national_id",
        "given_name",
        "family_name",
        "sex",
        "birth_date",
        "area_code",
    ];
    let fresh = Uuid::new_v4().to_string();
    let person_row = |id: &str, nid: &str| {
        [
            id,
            "TON-NID",
            nid,
            "Ana",
            "Taken",
            "2",
            "1991-03-04",
            "TO-01",
        ]
        .map(String::from)
        .to_vec()
    };
    let rows = vec![
        person_row(&far[0], "TAKEN0001"),
        person_row(&fresh, "TAKEN0002"),
        person_row(&fresh, "TAKEN0003"),
    ];
    let file = write(Format::Csv, &header, &rows).unwrap();
    let (status, report, _) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/persons?dryRun=true",
        "text/csv",
        file,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        lines(&report),
        expect(&[(2, "id", "duplicate_id"), (4, "id", "duplicate_in_file")]),
        "{report}"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM persons").await, 2);
    assert_eq!(count(&app, "SELECT count(*) FROM households").await, 1);
}
