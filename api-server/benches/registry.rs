//! Benchmark (prints figures, asserts nothing) on a registry of 100,000 persons in ten areas,
//! with 25,000 households and 100,000 plots (`seed`):
//!
//! - 50 concurrent enumerators, each in one area, mixing reads of a person, name searches,
//!   creates and sync pulls (a page of 100 from where the device last stopped), through the
//!   API and, beside it, the same statements sent straight to PostgreSQL as the application
//!   role with the same identity: p50/p95/p99 and throughput per operation;
//! - then 50 concurrent national-admin clients doing one kind of operation at a time (create,
//!   read, search), through the API and straight to PostgreSQL.
//!
//! The ratios show what the HTTP, auth, JSON, encryption and audit layers cost on top of the
//! database.
//!
//! Run: cargo bench -p dfr-api --features integration --bench registry (it starts its own
//! PostgreSQL, as root)

#![allow(clippy::unwrap_used)]

#[path = "mixed/mod.rs"]
mod mixed;
#[path = "seed/mod.rs"]
mod seed;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dfr_api::crypto::KeyRing;
use serde_json::Value;
use support::{TestApp, person};
use uuid::Uuid;

const CLIENTS: usize = 50;
const ROUNDS: usize = 40;

pub struct Figures {
    pub name: &'static str,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl Figures {
    pub fn percentile(&self, q: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted[index].as_secs_f64() * 1000.0
    }

    pub fn print(&self) {
        println!(
            "  {:<28} p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms  {:>8.0} ops/s",
            self.name,
            self.percentile(0.50),
            self.percentile(0.95),
            self.percentile(0.99),
            self.latencies.len() as f64 / self.elapsed.as_secs_f64()
        );
    }
}

/// Runs `operation(client, round)` for every client and round, CLIENTS at a time.
async fn measure<F, Fut>(name: &'static str, operation: F) -> Figures
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let operation = Arc::new(operation);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let operation = operation.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(ROUNDS);
            for round in 0..ROUNDS {
                let begun = Instant::now();
                operation(client, round).await;
                latencies.push(begun.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    Figures {
        name,
        latencies,
        elapsed: started.elapsed(),
    }
}

#[tokio::main]
async fn main() {
    support::use_ring_for_tls();
    let app = Arc::new(TestApp::start().await);
    let ring = KeyRing::from_json(&app.keyring_json).unwrap();
    let seeded = seed::registry(&app.owner, &ring, mixed::PERSONS).await;
    println!(
        "seeded {} persons, {} households, {} plots in {:.1} s",
        seeded.persons.iter().map(Vec::len).sum::<usize>(),
        seeded.households,
        seeded.plots,
        seeded.took.as_secs_f64()
    );
    mixed::run(&app, &seeded).await;
    let admin = Arc::new(app.user("national_admin", &[], None, "").await);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let ids = Arc::new(std::sync::Mutex::new(vec![Vec::new(); CLIENTS]));

    let (a, t, h, i) = (app.clone(), admin.clone(), http.clone(), ids.clone());
    let api_create = measure("API   create person", move |client, _| {
        let (a, t, h, i) = (a.clone(), t.clone(), h.clone(), i.clone());
        async move {
            let response = h
                .post(a.url("/api/dfr/persons"))
                .bearer_auth(t.as_str())
                .json(&person("TO-01", "Bench"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            let body: Value = response.json().await.unwrap();
            i.lock().unwrap()[client].push(body["id"].as_str().unwrap().to_string());
        }
    })
    .await;
    let (a, t, h, i) = (app.clone(), admin.clone(), http.clone(), ids.clone());
    let api_get = measure("API   get person", move |client, round| {
        let (a, t, h) = (a.clone(), t.clone(), h.clone());
        let id = i.lock().unwrap()[client][round].clone();
        async move {
            let response = h
                .get(a.url(&format!("/api/dfr/persons/{id}")))
                .bearer_auth(t.as_str())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let _ = response.bytes().await.unwrap();
        }
    })
    .await;
    let (a, t, h) = (app.clone(), admin.clone(), http.clone());
    let api_search = measure("API   search (name, 20)", move |_, _| {
        let (a, t, h) = (a.clone(), t.clone(), h.clone());
        async move {
            let response = h
                .get(a.url("/api/dfr/persons?name=ben&area=TO-01&limit=20"))
                .bearer_auth(t.as_str())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let _ = response.bytes().await.unwrap();
        }
    })
    .await;

    // The same statements, straight to PostgreSQL as dfr_app with the same identity settings.
    let pool = app.app_pool.clone();
    let ring = Arc::new(KeyRing::from_json(&app.keyring_json).unwrap());
    let sql_ids = Arc::new(std::sync::Mutex::new(vec![Vec::new(); CLIENTS]));
    let identity =
        "SELECT set_config('dfr.role', 'national_admin', true), set_config('dfr.areas', '', true)";
    let (p, r, i) = (pool.clone(), ring.clone(), sql_ids.clone());
    let sql_create = measure("SQL   insert person", move |client, _| {
        let (p, r, i) = (p.clone(), r.clone(), i.clone());
        async move {
            let id = Uuid::new_v4();
            let national = format!("SQL{}", &id.simple().to_string()[..10]);
            let mut tx = p.begin().await.unwrap();
            sqlx::query(identity).execute(&mut *tx).await.unwrap();
            sqlx::query("INSERT INTO persons (id, national_id_system, national_id_cipher, national_id_index, national_id_last4, given_name, family_name, sex, birth_date, phone_cipher, email_cipher, area_code, updated_by) VALUES ($1, 'TON-NID', $2, $3, '0000', 'Sione', 'Bench', 1, '1980-05-17', $4, $5, 'TO-01', $1)")
                .bind(id)
                .bind(r.encrypt(&national).unwrap())
                .bind(r.blind_index("TON-NID", &national))
                .bind(r.encrypt("+67612345678").unwrap())
                .bind(r.encrypt("sione@example.to").unwrap())
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            i.lock().unwrap()[client].push(id);
        }
    })
    .await;
    let (p, i) = (pool.clone(), sql_ids.clone());
    let sql_get = measure("SQL   select by id", move |client, round| {
        let p = p.clone();
        let id = i.lock().unwrap()[client][round];
        async move {
            let mut tx = p.begin().await.unwrap();
            sqlx::query(identity).execute(&mut *tx).await.unwrap();
            sqlx::query("SELECT * FROM persons WHERE id = $1 AND deleted_at IS NULL")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    })
    .await;
    let p = pool.clone();
    let sql_search = measure("SQL   search (name, 20)", move |_, _| {
        let p = p.clone();
        async move {
            let mut tx = p.begin().await.unwrap();
            sqlx::query(identity).execute(&mut *tx).await.unwrap();
            sqlx::query("SELECT * FROM persons WHERE deleted_at IS NULL AND area_code = 'TO-01' \
                 AND ((family_name_lower ~>=~ 'ben' AND family_name_lower ~<~ 'ben\u{10FFFF}' AND starts_with(family_name_lower, 'ben')) \
                   OR (given_name_lower ~>=~ 'ben' AND given_name_lower ~<~ 'ben\u{10FFFF}' AND starts_with(given_name_lower, 'ben'))) ORDER BY id LIMIT 21")
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    })
    .await;

    println!(
        "one operation at a time: {CLIENTS} concurrent national-admin clients x {ROUNDS} rounds, PostgreSQL 15 on loopback"
    );
    for figures in [
        &api_create,
        &api_get,
        &api_search,
        &sql_create,
        &sql_get,
        &sql_search,
    ] {
        figures.print();
    }
    println!(
        "  API / SQL p50 ratio: create {:.1}x, get {:.1}x, search {:.1}x",
        api_create.percentile(0.5) / sql_create.percentile(0.5),
        api_get.percentile(0.5) / sql_get.percentile(0.5),
        api_search.percentile(0.5) / sql_search.percentile(0.5)
    );
}
