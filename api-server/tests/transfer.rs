//! Imports and exports against a real PostgreSQL 15: a dry run reports every bad row by row,
//! field and code; an import writes all its new rows or none and writes nothing when run
//! again; CSV and XLSX read alike; exports honour row-level security and masking.
#![allow(clippy::unwrap_used)]

mod support;

use reqwest::Method;
use rust_xlsxwriter::{ExcelDateTime, Format as CellFormat, Workbook};
use serde_json::{Value, json};
use support::{TestApp, person, plot};

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const HEADER: &str = "id,national_id_system,national_id,given_name,family_name,sex,birth_date,birth_date_estimated,phone,email,area_code,status";

async fn send(
    app: &TestApp,
    token: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
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
    (status, response.json().await.unwrap())
}

async fn fetch(app: &TestApp, token: &str, path: &str) -> (u16, String, Vec<u8>) {
    let response = app
        .http
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        status,
        content_type,
        response.bytes().await.unwrap().to_vec(),
    )
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

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&app.owner)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dry_run_reports_every_bad_row_and_an_import_writes_all_or_nothing_once() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let mut held = person("TO-02", "Held");
    held["nationalId"]["value"] = json!("EXIST0001");
    app.created("/api/dfr/persons", &admin, &held).await;
    let mut same = person("TO-01", "Same");
    same["nationalId"]["value"] = json!("SAME0001");
    same["phone"] = Value::Null;
    same["email"] = Value::Null;
    app.created("/api/dfr/persons", &admin, &same).await;
    let same_row = ",TON-NID,SAME0001,Sione,Same,1,1980-05-17,false,,,TO-01,active";
    let good = [
        ",TON-NID,IMP0001,Mele,Tupou,2,1990-01-02,false,+67611111111,mele@example.to,TO-01,active",
        ",ton-nid,IMP 0002,Sione,Vea,1,1985-03-04,true,,,TO-01,",
    ];
    let bad = [
        ",TON-NID,IMP0003,Ana,Bad,x,1990-01-02,false,,,TO-01,active",
        ",TON-NID,IMP0004,Ana,Bad,2,17/05/1980,false,,,TO-01,active",
        ",TON-NID,IMP-0001,Ana,Twice,2,1990-01-02,false,,,TO-01,active",
        ",TON-NID,IMP0005,Ana,Far,2,1990-01-02,false,,,TO-02,active",
        ",TON-NID,IMP0006,Ana,Nowhere,2,1990-01-02,false,,,XX-99,active",
        ",TON-NID,EXIST0001,Other,Content,2,1990-01-02,false,,,TO-01,active",
        ",TON-NID,IMP0007,too,few,cells",
        ",TON-NID,IMP0008,Ana,Mail,2,1990-01-02,false,,not-an-email,TO-01,active",
        "not-a-uuid,TON-NID,IMP0009,Ana,Id,2,1990-01-02,false,,,TO-01,active",
    ];
    let file = |rows: &[&str]| format!("{HEADER}\n{}\n", rows.join("\n")).into_bytes();
    let mut all: Vec<&str> = good.to_vec();
    all.extend(bad);
    all.push(same_row);
    let persons_before = count(&app, "SELECT count(*) FROM persons").await;
    let events_before = count(&app, "SELECT count(*) FROM audit_events").await;

    let (status, report) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/persons?dryRun=true",
        "text/csv",
        file(&all),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let expected: Vec<(u64, String, String)> = [
        (4, "sex", "invalid"),
        (5, "birth_date", "invalid"),
        (6, "national_id", "duplicate_in_file"),
        (7, "area_code", "outside_areas"),
        (8, "area_code", "unknown_area"),
        (9, "national_id", "duplicate_national_id"),
        (10, "", "malformed_row"),
        (11, "email", "invalid"),
        (12, "id", "invalid"),
    ]
    .iter()
    .map(|(row, field, code)| (*row, field.to_string(), code.to_string()))
    .collect();
    assert_eq!(lines(&report), expected, "{report}");
    assert!(
        report["problems"][5]["existing"]
            .as_str()
            .unwrap()
            .starts_with("/api/dfr/persons/")
    );
    assert_eq!(
        (
            report["rows"].as_u64(),
            report["created"].as_u64(),
            report["unchanged"].as_u64()
        ),
        (Some(11), Some(2), Some(1))
    );

    // Not a dry run: the same report, as a problem, and nothing written.
    let (status, rejected) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/persons",
        "text/csv",
        file(&all),
    )
    .await;
    assert_eq!(
        (status, rejected["code"].as_str()),
        (422, Some("import_rejected"))
    );
    assert_eq!(lines(&rejected["report"]), expected);
    assert_eq!(
        count(&app, "SELECT count(*) FROM persons").await,
        persons_before
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM audit_events").await,
        events_before
    );

    // Files that are not what an import reads.
    let (_, header_report) = send(
        &app,
        &admin,
        "/api/dfr/imports/persons?dryRun=true",
        "text/csv",
        b"national_id,given_name,colour\nX,Y,Z\n".to_vec(),
    )
    .await;
    let header_lines = lines(&header_report);
    assert!(
        header_lines.contains(&(1, "colour".into(), "unknown_column".into())),
        "{header_report}"
    );
    assert!(header_lines.contains(&(1, "birth_date".into(), "missing_column".into())));
    let (status, wrong_type) = send(
        &app,
        &admin,
        "/api/dfr/imports/persons",
        "application/json",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(
        (status, wrong_type["errors"][0]["field"].as_str()),
        (422, Some("Content-Type"))
    );
    let (status, not_xlsx) = send(
        &app,
        &admin,
        "/api/dfr/imports/persons",
        XLSX,
        b"PK not really".to_vec(),
    )
    .await;
    assert_eq!(
        (status, not_xlsx["errors"][0]["field"].as_str()),
        (422, Some("file"))
    );
    let denied = send(
        &app,
        &app.user("farmer", &[], None, "").await,
        "/api/dfr/imports/persons",
        "text/csv",
        file(&good),
    )
    .await;
    assert_eq!(denied.0, 403);

    // The good rows: written once; the same file again writes nothing.
    let mut fixed = good.to_vec();
    fixed.push(same_row);
    let (status, imported) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/persons",
        "text/csv",
        file(&fixed),
    )
    .await;
    assert_eq!(status, 200, "{imported}");
    assert_eq!(
        (imported["created"].as_u64(), imported["unchanged"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM persons").await,
        persons_before + 2
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM audit_events").await,
        events_before + 2
    );
    let found = app
        .get(
            "/api/dfr/persons?nationalIdSystem=TON-NID&nationalId=IMP0002",
            &admin,
        )
        .await;
    assert_eq!(found.body["items"][0]["familyName"], "Vea");
    assert_eq!(found.body["items"][0]["birthDateEstimated"], true);
    let (status, again) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/persons",
        "text/csv",
        file(&fixed),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (again["created"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM persons").await,
        persons_before + 2
    );

    // An XLSX workbook with typed cells (a date, a number) reads as the CSV does.
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    for (col, name) in HEADER.split(',').enumerate() {
        sheet.write_string(0, col as u16, name).unwrap();
    }
    let date = CellFormat::new().set_num_format("yyyy-mm-dd");
    for (i, value) in ["XLS0001", "XLS0002"].iter().enumerate() {
        let row = i as u32 + 1;
        sheet.write_string(row, 1, "TON-NID").unwrap();
        sheet.write_string(row, 2, *value).unwrap();
        sheet.write_string(row, 3, "Losa").unwrap();
        sheet.write_string(row, 4, "Excel").unwrap();
        sheet.write_number(row, 5, 2.0).unwrap();
        sheet
            .write_datetime_with_format(
                row,
                6,
                ExcelDateTime::from_ymd(1979, 12, 31).unwrap(),
                &date,
            )
            .unwrap();
        sheet.write_boolean(row, 7, false).unwrap();
        sheet.write_string(row, 10, "TO-01").unwrap();
    }
    let (status, from_xlsx) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/persons",
        XLSX,
        workbook.save_to_buffer().unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{from_xlsx}");
    assert_eq!(from_xlsx["created"], 2);
    let found = app
        .get(
            "/api/dfr/persons?nationalIdSystem=TON-NID&nationalId=XLS0002",
            &admin,
        )
        .await;
    assert_eq!(found.body["items"][0]["birthDate"], "1979-12-31");
}

#[tokio::test]
async fn exports_honour_row_level_security_and_masking_and_import_back_unchanged() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let supervisor = app.user("supervisor", &["TO-01"], None, "").await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let mut people = Vec::new();
    for (area, family) in [("TO-01", "One"), ("TO-01", "Two"), ("TO-02", "Far")] {
        let p = app
            .created("/api/dfr/persons", &admin, &person(area, family))
            .await;
        app.created("/api/dfr/plots", &admin, &plot(&p)).await;
        people.push(p);
    }
    let read = |bytes: &[u8], format| {
        let (table, problems) = dfr_api::routes::transfer::table::read(format, bytes).unwrap();
        assert!(problems.is_empty());
        (
            table.header,
            table.rows.into_iter().map(|r| r.cells).collect::<Vec<_>>(),
        )
    };
    use dfr_api::routes::transfer::table::Format;

    let (status, content_type, csv) =
        fetch(&app, &admin, "/api/dfr/exports/persons?format=csv").await;
    assert_eq!((status, content_type.as_str()), (200, "text/csv"));
    let (header, rows) = read(&csv, Format::Csv);
    assert_eq!(header.join(","), HEADER);
    assert_eq!(rows.len(), 3);
    let value = people[0]["nationalId"]["value"].as_str().unwrap();
    assert!(
        rows.iter().any(|r| r[2] == value),
        "national IDs in clear for admins"
    );

    let (_, _, masked) = fetch(&app, &enumerator, "/api/dfr/exports/persons?format=csv").await;
    let (_, rows) = read(&masked, Format::Csv);
    assert_eq!(rows.len(), 2, "only the enumerator's area");
    assert!(
        rows.iter()
            .all(|r| r[2].starts_with("XXXX") && r[8].starts_with("XXXX")),
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r[10] == "TO-01"));

    let (status, content_type, xlsx) = fetch(
        &app,
        &supervisor,
        "/api/dfr/exports/persons?format=xlsx&area=TO-01",
    )
    .await;
    assert_eq!((status, content_type.as_str()), (200, XLSX));
    let (_, rows) = read(&xlsx, Format::Xlsx);
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter().any(|r| r[2] == value),
        "supervisors see national IDs"
    );

    // What an admin exported imports back as it is: nothing to write.
    let (status, report) = send(
        &app,
        &admin,
        "/api/dfr/imports/persons?dryRun=true",
        "text/csv",
        csv,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (report["created"].as_u64(), report["unchanged"].as_u64()),
        (Some(0), Some(3)),
        "{report}"
    );
    let (_, report) = send(
        &app,
        &admin,
        "/api/dfr/imports/persons?dryRun=true",
        XLSX,
        xlsx,
    )
    .await;
    assert_eq!(report["unchanged"], 2, "{report}");

    let (status, content_type, geojson) =
        fetch(&app, &enumerator, "/api/dfr/exports/plots?format=geojson").await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/geo+json")
    );
    let collection: Value = serde_json::from_slice(&geojson).unwrap();
    assert_eq!(collection["type"], "FeatureCollection");
    let features = collection["features"].as_array().unwrap();
    assert_eq!(features.len(), 2);
    assert_eq!(features[0]["geometry"]["type"], "Point");
    assert_eq!(features[0]["properties"]["areaCode"], "TO-01");
    let (_, _, all) = fetch(&app, &admin, "/api/dfr/exports/plots?format=geojson").await;
    let all: Value = serde_json::from_slice(&all).unwrap();
    assert_eq!(all["features"].as_array().unwrap().len(), 3);

    for path in [
        "/api/dfr/exports/persons?format=pdf",
        "/api/dfr/exports/plots?format=kml",
    ] {
        let reply = app.call(Method::GET, path, &admin, None, None).await;
        assert_eq!(
            (reply.status, reply.body["errors"][0]["field"].as_str()),
            (422, Some("format")),
            "{path}"
        );
    }
}

#[tokio::test]
async fn plots_import_by_their_id_with_every_bad_row_reported() {
    use dfr_api::routes::transfer::table::{Format, write};
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    let owner = app
        .created("/api/dfr/persons", &admin, &person("TO-01", "Owner"))
        .await;
    let far = app
        .created("/api/dfr/persons", &admin, &person("TO-02", "Far"))
        .await;
    let (owner, far) = (owner["id"].as_str().unwrap(), far["id"].as_str().unwrap());
    let point = r#"{"type":"Point","coordinates":[-175.2,-21.13]}"#;
    let square = r#"{"type":"Polygon","coordinates":[[[-175.2,-21.1],[-175.199,-21.1],[-175.199,-21.101],[-175.2,-21.101],[-175.2,-21.1]]]}"#;
    let (first, second) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let row = |id: &str, person: &str, geometry: &str, tenure: &str, land_use: &str| {
        [id, person, geometry, tenure, land_use]
            .map(String::from)
            .to_vec()
    };
    let good = vec![
        row(&first, owner, point, "customary", "cropland"),
        row(&second, owner, square, "owned", "pasture"),
    ];
    let fresh = || uuid::Uuid::new_v4().to_string();
    let mut all = good.clone();
    all.extend([
        row("x", owner, point, "owned", "cropland"),
        row(&fresh(), owner, "{", "owned", "cropland"),
        row(
            &fresh(),
            owner,
            r#"{"type":"Point","coordinates":[500,0]}"#,
            "owned",
            "cropland",
        ),
        row(&fresh(), owner, point, "rented", "cropland"),
        row(&fresh(), owner, point, "owned", "moon"),
        row(&fresh(), far, point, "owned", "cropland"),
        row(&first, owner, point, "owned", "cropland"),
    ]);
    let header = ["id", "person_id", "geometry", "tenure", "land_use"];
    let file = |rows: &[Vec<String>]| write(Format::Csv, &header, rows).unwrap();
    let (status, report) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/plots?dryRun=true",
        "text/csv",
        file(&all),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let expected: Vec<(u64, String, String)> = [
        (4, "id", "invalid"),
        (5, "geometry", "invalid"),
        (6, "geometry", "invalid"),
        (7, "tenure", "invalid"),
        (8, "land_use", "invalid"),
        (9, "person_id", "invalid"),
        (10, "id", "duplicate_in_file"),
    ]
    .iter()
    .map(|(row, field, code)| (*row, field.to_string(), code.to_string()))
    .collect();
    assert_eq!(lines(&report), expected, "{report}");
    let (status, rejected) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/plots",
        "text/csv",
        file(&all),
    )
    .await;
    assert_eq!(
        (status, rejected["code"].as_str()),
        (422, Some("import_rejected"))
    );
    assert_eq!(count(&app, "SELECT count(*) FROM plots").await, 0);

    let (status, imported) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/plots",
        "text/csv",
        file(&good),
    )
    .await;
    assert_eq!(
        (status, imported["created"].as_u64()),
        (200, Some(2)),
        "{imported}"
    );
    let read = app
        .get(&format!("/api/dfr/plots/{second}"), &enumerator)
        .await;
    assert!(read.body["areaHa"].as_f64().unwrap() > 1.0, "{}", read.body);
    let (_, again) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/plots",
        "text/csv",
        file(&good),
    )
    .await;
    assert_eq!(
        (again["created"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(2))
    );
    let changed = vec![row(&first, owner, point, "leased", "cropland")];
    let (status, taken) = send(
        &app,
        &enumerator,
        "/api/dfr/imports/plots?dryRun=true",
        "text/csv",
        file(&changed),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        lines(&taken),
        vec![(2, "id".to_string(), "duplicate_id".to_string())]
    );
    assert_eq!(count(&app, "SELECT count(*) FROM plots").await, 2);
}
