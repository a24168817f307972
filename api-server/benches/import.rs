//! Benchmark (prints figures, asserts nothing but success): 10,000 persons imported through
//! the API from a CSV file and from an XLSX workbook, each as a dry run, as the import that
//! registers them (one transaction, an audit event per person), and as a re-run that finds
//! them all registered and writes nothing.
//!
//! Run: cargo bench -p dfr-api --features integration --bench import (it starts its own
//! PostgreSQL, as root)

#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use rust_xlsxwriter::Workbook;
use serde_json::Value;
use support::TestApp;

const PERSONS: usize = 10_000;
const HEADER: [&str; 12] = [
    "id",
    "national_id_system",
    "national_id",
    "given_name",
    "family_name",
    "sex",
    "birth_date",
    "birth_date_estimated",
    "phone",
    "email",
    "area_code",
    "status",
];
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

fn rows(prefix: &str) -> Vec<Vec<String>> {
    (0..PERSONS)
        .map(|i| {
            vec![
                String::new(),
                "TON-NID".into(),
                format!("{prefix}{i:08}"),
                format!("Given{i}"),
                format!("Family{}", i % 997),
                ["1", "2"][i % 2].into(),
                format!("19{:02}-{:02}-{:02}", 40 + i % 60, 1 + i % 12, 1 + i % 28),
                "false".into(),
                format!("+6767{i:07}"),
                format!("person{i}@example.to"),
                ["TO-01", "TO-02"][i % 2].into(),
                "active".into(),
            ]
        })
        .collect()
}

fn csv(rows: &[Vec<String>]) -> Vec<u8> {
    let mut text = HEADER.join(",");
    text.push('\n');
    for row in rows {
        text.push_str(&row.join(","));
        text.push('\n');
    }
    text.into_bytes()
}

fn xlsx(rows: &[Vec<String>]) -> Vec<u8> {
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    for (col, name) in HEADER.iter().enumerate() {
        sheet.write_string(0, col as u16, *name).unwrap();
    }
    for (i, row) in rows.iter().enumerate() {
        for (col, text) in row.iter().enumerate() {
            if !text.is_empty() {
                sheet.write_string(i as u32 + 1, col as u16, text).unwrap();
            }
        }
    }
    workbook.save_to_buffer().unwrap()
}

async fn import(
    app: &TestApp,
    token: &str,
    content_type: &str,
    body: &[u8],
    dry_run: bool,
) -> (Duration, Value) {
    let path = if dry_run {
        "/api/dfr/imports/persons?dryRun=true"
    } else {
        "/api/dfr/imports/persons"
    };
    let started = Instant::now();
    let response = app
        .http
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let report: Value = response.json().await.unwrap();
    let took = started.elapsed();
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    (took, report)
}

#[tokio::main]
async fn main() {
    support::use_ring_for_tls();
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    println!(
        "import of {PERSONS} persons through POST /api/dfr/imports/persons (one client, release build)"
    );
    for (name, content_type, body) in [
        ("CSV", "text/csv", csv(&rows("CSV"))),
        ("XLSX", XLSX, xlsx(&rows("XLS"))),
    ] {
        let (dry, report) = import(&app, &admin, content_type, &body, true).await;
        assert_eq!(report["created"], PERSONS);
        let (real, report) = import(&app, &admin, content_type, &body, false).await;
        assert_eq!(report["created"], PERSONS);
        let (again, report) = import(&app, &admin, content_type, &body, false).await;
        assert_eq!(report["unchanged"], PERSONS);
        println!(
            "  {name:4} ({:>6} KB): dry run {:>6.2} s, import {:>6.2} s ({:.0} persons/s), re-run (all unchanged) {:>6.2} s",
            body.len() / 1024,
            dry.as_secs_f64(),
            real.as_secs_f64(),
            PERSONS as f64 / real.as_secs_f64(),
            again.as_secs_f64()
        );
    }
}
