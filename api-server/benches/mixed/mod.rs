//! The mixed workload of the registry benchmark: 50 enumerators at once, each in one area,
//! each round one of four operations in turn (read a person of the area, search the area by a
//! name prefix, create a person, pull the next sync page of 100), first through the API, then
//! as the same statements straight to PostgreSQL as the application role with the
//! enumerator's identity.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dfr_api::crypto::KeyRing;
use serde_json::Value;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::Figures;
use crate::seed::{self, AREAS, Seeded};
use crate::support::{TestApp, person};

pub const PERSONS: usize = 100_000;
const ENUMERATORS: usize = 50;
const ROUNDS: usize = 80;
const OPERATIONS: [&str; 4] = [
    "read person",
    "search name (20)",
    "create person",
    "sync pull (100)",
];

/// What one enumerator needs: its area, its token, the persons of its area, and the cursor its
/// device last pulled to.
struct Enumerator {
    area: String,
    token: String,
    cursor: Mutex<Option<String>>,
}

/// A seeded person of the enumerator's area and a name prefix to search for, by round.
fn target(seeded: &Seeded, client: usize, round: usize) -> (Uuid, String) {
    let people = &seeded.persons[client % AREAS];
    let n = client * 7919 + round * 104_729;
    let prefix: String = seed::family_name(n)
        .to_lowercase()
        .chars()
        .take(4)
        .collect();
    (people[n % people.len()], prefix)
}

/// Runs `operation(client, round)` for every enumerator and round at once; a figure per kind
/// of operation, each with the run's whole time (so its throughput is its share of the mix).
async fn measure<F, Fut>(prefix: &'static str, operation: F) -> Vec<Figures>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let operation = Arc::new(operation);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..ENUMERATORS {
        let operation = operation.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(ROUNDS);
            for round in 0..ROUNDS {
                let begun = Instant::now();
                operation(client, round).await;
                latencies.push(((client + round) % OPERATIONS.len(), begun.elapsed()));
            }
            latencies
        }));
    }
    let mut by_kind: Vec<Vec<Duration>> = vec![Vec::new(); OPERATIONS.len()];
    for task in tasks {
        for (kind, latency) in task.await.unwrap() {
            by_kind[kind].push(latency);
        }
    }
    let elapsed = started.elapsed();
    let names: [&'static str; 4] = match prefix {
        "API" => [
            "API   read person",
            "API   search name (20)",
            "API   create person",
            "API   sync pull (100)",
        ],
        _ => [
            "SQL   read person",
            "SQL   search name (20)",
            "SQL   insert person",
            "SQL   sync pull (100)",
        ],
    };
    by_kind
        .into_iter()
        .zip(names)
        .map(|(latencies, name)| Figures {
            name,
            latencies,
            elapsed,
        })
        .collect()
}

fn kind(client: usize, round: usize) -> usize {
    (client + round) % OPERATIONS.len()
}

async fn api(
    app: &Arc<TestApp>,
    seeded: &Arc<Seeded>,
    enumerators: &Arc<Vec<Enumerator>>,
) -> Vec<Figures> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(ENUMERATORS)
        .build()
        .unwrap();
    let (app, seeded, enumerators) = (app.clone(), seeded.clone(), enumerators.clone());
    measure("API", move |client, round| {
        let (app, seeded, enumerators, http) = (
            app.clone(),
            seeded.clone(),
            enumerators.clone(),
            http.clone(),
        );
        async move {
            let me = &enumerators[client];
            let (id, prefix) = target(&seeded, client, round);
            let request = match kind(client, round) {
                0 => http.get(app.url(&format!("/api/dfr/persons/{id}"))),
                1 => http.get(app.url(&format!(
                    "/api/dfr/persons?name={prefix}&area={}&limit=20",
                    me.area
                ))),
                2 => http
                    .post(app.url("/api/dfr/persons"))
                    .json(&person(&me.area, "Mixed")),
                _ => {
                    let cursor = me.cursor.lock().unwrap().clone();
                    let path = match cursor {
                        Some(c) => format!("/api/dfr/sync/changes?limit=100&cursor={c}"),
                        None => "/api/dfr/sync/changes?limit=100".to_string(),
                    };
                    http.get(app.url(&path))
                }
            };
            let response = request.bearer_auth(&me.token).send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            let body: Value = response.json().await.unwrap();
            if let Some(cursor) = body["cursor"].as_str() {
                *me.cursor.lock().unwrap() = Some(cursor.to_string());
            }
        }
    })
    .await
}

/// The statements the handlers send, as the application role with the enumerator's identity.
async fn sql(
    pool: &PgPool,
    ring: &Arc<KeyRing>,
    seeded: &Arc<Seeded>,
    enumerators: &Arc<Vec<Enumerator>>,
) -> Vec<Figures> {
    let (pool, ring, seeded, enumerators) = (
        pool.clone(),
        ring.clone(),
        seeded.clone(),
        enumerators.clone(),
    );
    let cursors: Arc<Vec<Mutex<(String, i64)>>> = Arc::new(
        (0..ENUMERATORS)
            .map(|_| Mutex::new(("0".to_string(), 0)))
            .collect(),
    );
    measure("SQL", move |client, round| {
        let (pool, ring, seeded, enumerators, cursors) =
            (pool.clone(), ring.clone(), seeded.clone(), enumerators.clone(), cursors.clone());
        async move {
            let me = &enumerators[client];
            let (id, prefix) = target(&seeded, client, round);
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("SELECT set_config('dfr.role', 'enumerator', true), set_config('dfr.areas', $1, true)")
                .bind(&me.area)
                .execute(&mut *tx)
                .await
                .unwrap();
            match kind(client, round) {
                0 => {
                    sqlx::query("SELECT * FROM persons WHERE id = $1 AND deleted_at IS NULL")
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await
                        .unwrap();
                }
                1 => {
                    sqlx::query("SELECT * FROM persons WHERE deleted_at IS NULL AND area_code = $1 \
                         AND ((family_name_lower ~>=~ $2 AND family_name_lower ~<~ $3 AND starts_with(family_name_lower, $2)) \
                           OR (given_name_lower ~>=~ $2 AND given_name_lower ~<~ $3 AND starts_with(given_name_lower, $2))) \
                         ORDER BY id LIMIT 21")
                        .bind(&me.area)
                        .bind(&prefix)
                        .bind(format!("{prefix}\u{10FFFF}"))
                        .fetch_all(&mut *tx)
                        .await
                        .unwrap();
                }
                2 => {
                    let id = Uuid::new_v4();
                    let national = format!("MIX{}", &id.simple().to_string()[..10]);
                    sqlx::query("INSERT INTO persons (id, national_id_system, national_id_cipher, national_id_index, national_id_last4, given_name, family_name, sex, birth_date, phone_cipher, email_cipher, area_code, updated_by) VALUES ($1, 'TON-NID', $2, $3, '0000', 'Sione', 'Mixed', 1, '1980-05-17', $4, $5, $6, $1)")
                        .bind(id)
                        .bind(ring.encrypt(&national).unwrap())
                        .bind(ring.blind_index("TON-NID", &national))
                        .bind(ring.encrypt("+67612345678").unwrap())
                        .bind(ring.encrypt("sione@example.to").unwrap())
                        .bind(&me.area)
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
                _ => {
                    let (xid, seq) = cursors[client].lock().unwrap().clone();
                    let rows = sqlx::query("SELECT entity, record_id, version, deleted, xid::text AS xid_text, seq FROM sync_changes \
                         WHERE (xid, seq) > ($1::text::xid8, $2) AND xid < pg_snapshot_xmin(pg_current_snapshot()) \
                         ORDER BY xid, seq LIMIT 101")
                        .bind(&xid)
                        .bind(seq)
                        .fetch_all(&mut *tx)
                        .await
                        .unwrap();
                    let ids: Vec<Uuid> = rows.iter().filter(|r| r.get::<String, _>("entity") == "person").map(|r| r.get("record_id")).collect();
                    sqlx::query("SELECT * FROM persons WHERE id = ANY($1) AND deleted_at IS NULL")
                        .bind(&ids)
                        .fetch_all(&mut *tx)
                        .await
                        .unwrap();
                    if let Some(last) = rows.iter().take(100).last() {
                        *cursors[client].lock().unwrap() = (last.get("xid_text"), last.get("seq"));
                    }
                }
            }
            tx.commit().await.unwrap();
        }
    })
    .await
}

/// How PostgreSQL runs one enumerator's name search (its plan and time), printed so a slow
/// search shows why.
async fn explain_search(pool: &PgPool, seeded: &Seeded) {
    let (_, prefix) = target(seeded, 0, 1);
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "SELECT set_config('dfr.role', 'enumerator', true), set_config('dfr.areas', $1, true)",
    )
    .bind(seed::area(0))
    .execute(&mut *tx)
    .await
    .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, COSTS OFF) SELECT * FROM persons WHERE deleted_at IS NULL AND area_code = '{area}' \
         AND ((family_name_lower ~>=~ '{prefix}' AND family_name_lower ~<~ '{prefix}{top}' AND starts_with(family_name_lower, '{prefix}')) \
           OR (given_name_lower ~>=~ '{prefix}' AND given_name_lower ~<~ '{prefix}{top}' AND starts_with(given_name_lower, '{prefix}'))) \
         ORDER BY id LIMIT 21",
        area = seed::area(0),
        top = '\u{10FFFF}'
    )))
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    println!("name search '{prefix}' in one area, as an enumerator (row-level security on):");
    for line in plan {
        println!("    {line}");
    }
}

/// Runs the mix through the API and then straight to PostgreSQL, and prints both.
pub async fn run(app: &Arc<TestApp>, seeded: &Seeded) {
    let seeded = Arc::new(Seeded {
        persons: seeded.persons.clone(),
        households: seeded.households,
        plots: seeded.plots,
        took: seeded.took,
    });
    let mut enumerators = Vec::new();
    for client in 0..ENUMERATORS {
        let area = seed::area(client % AREAS);
        let token = app.user("enumerator", &[area.as_str()], None, "").await;
        enumerators.push(Enumerator {
            area,
            token,
            cursor: Mutex::new(None),
        });
    }
    let enumerators = Arc::new(enumerators);
    explain_search(&app.app_pool, &seeded).await;
    let through_api = api(app, &seeded, &enumerators).await;
    let ring = Arc::new(KeyRing::from_json(&app.keyring_json).unwrap());
    let straight = sql(&app.app_pool, &ring, &seeded, &enumerators).await;
    println!(
        "mixed: {ENUMERATORS} concurrent enumerators (one area each of {AREAS}) x {ROUNDS} rounds, each operation in turn"
    );
    for figures in through_api.iter().chain(&straight) {
        figures.print();
    }
    let ratios: Vec<String> = through_api
        .iter()
        .zip(&straight)
        .zip(OPERATIONS)
        .map(|((a, s), name)| format!("{name} {:.1}x", a.percentile(0.5) / s.percentile(0.5)))
        .collect();
    println!("  API / SQL p50 ratio: {}", ratios.join(", "));
}
