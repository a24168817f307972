//! Benchmark (prints figures, asserts nothing): one enumerator's device pushes 500 new
//! persons (5 pushes of 100, under the test server's 64 KiB body limit), replays them, and a
//! second device pulls the 500 changes, in one page and in pages of 100. Each figure is one
//! device working alone, so it is latency, not throughput under load.
//!
//! Run: cargo bench -p dfr-api --features integration --bench sync (it starts its own
//! PostgreSQL, as root)

#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{TestApp, person};
use uuid::Uuid;

const RECORDS: usize = 500;
const PER_PUSH: usize = 100;

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

async fn push(app: &TestApp, token: &str, mutations: &[Value]) -> Vec<Value> {
    let response = app
        .http
        .post(app.url("/api/dfr/sync/push"))
        .bearer_auth(token)
        .json(&json!({"mutations": mutations}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["results"].as_array().unwrap().clone()
}

/// Pulls everything from the start in pages of `limit`; the changes, pages and time taken.
async fn pull_all(app: &TestApp, token: &str, limit: usize) -> (usize, usize, Duration) {
    let started = Instant::now();
    let (mut changes, mut pages) = (0, 0);
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/dfr/sync/changes?limit={limit}&cursor={c}"),
            None => format!("/api/dfr/sync/changes?limit={limit}"),
        };
        let page: Value = app
            .http
            .get(app.url(&path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        changes += page["changes"].as_array().unwrap().len();
        cursor = page["cursor"].as_str().map(String::from);
        if page["more"] != json!(true) {
            break;
        }
    }
    (changes, pages, started.elapsed())
}

#[tokio::main]
async fn main() {
    support::use_ring_for_tls();
    let app = TestApp::start().await;
    let device = app.user("enumerator", &["TO-01"], None, "").await;
    let other_device = app.user("enumerator", &["TO-01"], None, "").await;
    let mutations: Vec<Value> = (0..RECORDS)
        .map(|_| {
            let id = Uuid::new_v4();
            let mut data = person("TO-01", "Bench");
            data["id"] = json!(id);
            json!({"clientMutationId": Uuid::new_v4(), "entity": "person", "op": "create", "id": id, "data": data})
        })
        .collect();

    println!("sync: {RECORDS} persons, pushes of {PER_PUSH}");
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for batch in mutations.chunks(PER_PUSH) {
        let begun = Instant::now();
        let results = push(&app, &device, batch).await;
        slowest = slowest.max(begun.elapsed());
        assert!(results.iter().all(|r| r["outcome"] == "applied"));
    }
    let total = started.elapsed();
    println!(
        "  push {RECORDS}            {:>8.0} ms  ({:.2} ms per mutation, slowest push {:.0} ms)",
        ms(total),
        ms(total) / RECORDS as f64,
        ms(slowest)
    );
    let started = Instant::now();
    for batch in mutations.chunks(PER_PUSH) {
        let results = push(&app, &device, batch).await;
        assert!(results.iter().all(|r| r["outcome"] == "duplicate"));
    }
    println!(
        "  replay {RECORDS}          {:>8.0} ms  (all duplicate)",
        ms(started.elapsed())
    );
    for limit in [RECORDS, 100] {
        let (changes, pages, took) = pull_all(&app, &other_device, limit).await;
        println!(
            "  pull {changes} in {pages} page(s) {:>7.0} ms  ({:.0} ms per page)",
            ms(took),
            ms(took) / pages as f64
        );
    }
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let mut sizes = Vec::new();
    for encoding in ["identity", "gzip"] {
        let bytes = raw
            .get(app.url(&format!("/api/dfr/sync/changes?limit={RECORDS}")))
            .bearer_auth(&other_device)
            .header("accept-encoding", encoding)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        sizes.push(bytes.len());
    }
    println!(
        "  pull page of {RECORDS}: {} bytes plain, {} bytes gzip",
        sizes[0], sizes[1]
    );
}
