//! A running dfr-api against its own database on the shared test PostgreSQL server.
#![allow(clippy::unwrap_used, dead_code)]

pub mod postgres;

use std::sync::Arc;

use base64::Engine;
use dfr_api::auth::{AccessTokens, TokenKeys, hash_password};
use dfr_api::crypto::KeyRing;
use dfr_api::metrics::Metrics;
use dfr_api::state::AppState;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use postgres::PgServer;

pub const MAX_BODY: usize = 64 * 1024;

pub struct TestApp {
    pub base: String,
    /// Where /metrics is served.
    pub metrics_base: String,
    pub owner: PgPool,
    pub app_pool: PgPool,
    pub http: reqwest::Client,
    pub database: String,
    pub keyring_json: String,
    signing_key: String,
}

/// Where a test server's key ring comes from.
enum Ring {
    Json(String),
    /// Read again when the file changes, as `dfr-api serve` does.
    File(std::path::PathBuf),
}

pub fn random_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

pub fn keyring(active: &str, keys: &[(&str, &str)], blind: &str) -> String {
    let keys: serde_json::Map<String, Value> = keys
        .iter()
        .map(|(id, k)| (id.to_string(), json!(k)))
        .collect();
    json!({"active": active, "keys": keys, "blind_index_key": blind}).to_string()
}

async fn ensure_roles(server: &PgServer) {
    let admin = PgPool::connect(&server.url("postgres", "postgres"))
        .await
        .unwrap();
    // Roles are cluster-wide; tests in parallel race to create them.
    for statement in [
        "CREATE ROLE dfr_owner LOGIN",
        "CREATE ROLE dfr_app LOGIN NOSUPERUSER NOBYPASSRLS",
    ] {
        let _ = sqlx::query(statement).execute(&admin).await;
    }
    admin.close().await;
}

impl TestApp {
    pub async fn start() -> TestApp {
        let blind = random_key();
        let ring = keyring("k1", &[("k1", &random_key())], &blind);
        Self::start_with_ring(ring).await
    }

    pub async fn start_with_ring(keyring_json: String) -> TestApp {
        Self::start_on(PgServer::shared(), Ring::Json(keyring_json)).await
    }

    /// Reading its key ring from `path`, as a pod reads the mounted Secret.
    pub async fn start_with_ring_file(path: &std::path::Path) -> TestApp {
        Self::start_on(PgServer::shared(), Ring::File(path.to_path_buf())).await
    }

    /// On a PostgreSQL server of its own, for a test whose open transactions would hold back
    /// the others' (transaction ids and snapshots are server-wide).
    pub async fn start_isolated() -> TestApp {
        let server: &'static PgServer = Box::leak(Box::new(PgServer::start("")));
        let ring = keyring("k1", &[("k1", &random_key())], &random_key());
        Self::start_on(server, Ring::Json(ring)).await
    }

    async fn start_on(server: &PgServer, ring: Ring) -> TestApp {
        use_ring_for_tls();
        ensure_roles(server).await;
        let database = format!("t_{}", Uuid::new_v4().simple());
        let admin = PgPool::connect(&server.url("postgres", "postgres"))
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {database} OWNER dfr_owner"
        )))
        .execute(&admin)
        .await
        .unwrap();
        admin.close().await;
        let owner = PgPool::connect(&server.url("dfr_owner", &database))
            .await
            .unwrap();
        dfr_api::db::MIGRATOR.run(&owner).await.unwrap();
        sqlx::query("INSERT INTO areas (code, parent_code, name, level) VALUES ('TO', NULL, 'Tonga', 0), ('TO-01', 'TO', 'Tongatapu', 1), ('TO-02', 'TO', 'Vava''u', 1)")
            .execute(&owner)
            .await
            .unwrap();
        let app_pool = PgPool::connect(&server.url("dfr_app", &database))
            .await
            .unwrap();
        let signing_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        Self::serve(owner, app_pool, database, ring, signing_key).await
    }

    /// Another server over the same database with another key ring, as a rolling update after
    /// a key rotation would run.
    pub async fn with_ring(&self, keyring_json: String) -> TestApp {
        self.with(Ring::Json(keyring_json)).await
    }

    /// Another server over the same database reading its key ring from `path`, as another pod.
    pub async fn with_ring_file(&self, path: &std::path::Path) -> TestApp {
        self.with(Ring::File(path.to_path_buf())).await
    }

    async fn with(&self, ring: Ring) -> TestApp {
        let (owner, pool) = (self.owner.clone(), self.app_pool.clone());
        Self::serve(
            owner,
            pool,
            self.database.clone(),
            ring,
            self.signing_key.clone(),
        )
        .await
    }

    async fn serve(
        owner: PgPool,
        app_pool: PgPool,
        database: String,
        ring: Ring,
        signing_key: String,
    ) -> TestApp {
        let (ring, keyring_json) = match ring {
            Ring::Json(json) => (KeyRing::from_json(&json).unwrap(), json),
            Ring::File(path) => (
                KeyRing::from_file(&path).unwrap(),
                std::fs::read_to_string(&path).unwrap(),
            ),
        };
        let state = AppState {
            pool: app_pool.clone(),
            tokens: AccessTokens {
                keys: Arc::new(TokenKeys::from_pem(signing_key.as_bytes()).unwrap()),
                lifetime_seconds: 600,
            },
            ring: Arc::new(ring),
            metrics: Metrics::new().unwrap(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_base = format!("http://{}", metrics_listener.local_addr().unwrap());
        let metrics = dfr_api::routes::metrics_router(state.clone());
        tokio::spawn(async move {
            axum::serve(metrics_listener, metrics).await.unwrap();
        });
        tokio::spawn(async move {
            axum::serve(listener, dfr_api::routes::router(state, MAX_BODY))
                .await
                .unwrap();
        });
        TestApp {
            base,
            metrics_base,
            owner,
            app_pool,
            http: reqwest::Client::new(),
            database,
            keyring_json,
            signing_key,
        }
    }

    /// Creates a user and returns a bearer token for it.
    pub async fn user(
        &self,
        role: &str,
        areas: &[&str],
        person: Option<Uuid>,
        scopes: &str,
    ) -> String {
        let username = format!("{role}-{}", Uuid::new_v4().simple());
        let password = "a long test password";
        let totp = (role == "national_admin").then(dfr_api::sessions::new_totp_secret);
        // Stored sealed under the key ring, as the server and dfr-api create-user store it.
        let ring = KeyRing::from_json(&self.keyring_json).unwrap();
        let sealed = totp
            .as_deref()
            .map(|secret| dfr_api::credentials::seal_totp(&ring, secret).unwrap());
        sqlx::query("INSERT INTO users (id, username, password_hash, role, areas, person_id, scopes, totp_secret) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(Uuid::new_v4())
            .bind(&username)
            .bind(hash_password(password).unwrap())
            .bind(role)
            .bind(areas.iter().map(ToString::to_string).collect::<Vec<_>>())
            .bind(person)
            .bind(scopes.split_whitespace().map(String::from).collect::<Vec<_>>())
            .bind(&sealed)
            .execute(&self.owner)
            .await
            .unwrap();
        let code = totp
            .as_deref()
            .and_then(dfr_api::sessions::current_code)
            .unwrap_or_default();
        let mut grant = if role == "api_client" {
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", username.as_str()),
                ("client_secret", password),
            ]
        } else {
            vec![
                ("grant_type", "password"),
                ("username", username.as_str()),
                ("password", password),
            ]
        };
        if !code.is_empty() {
            grant.push(("totp", code.as_str()));
        }
        let response = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .form(&grant)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "token for {role}: {}",
            response.text().await.unwrap()
        );
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// A valid person body in `area` with a unique national ID.
pub fn person(area: &str, family: &str) -> Value {
    json!({
        "nationalId": {"system": "TON-NID", "value": format!("NID{}", &Uuid::new_v4().simple().to_string()[..10])},
        "givenName": "Sione",
        "familyName": family,
        "sex": 1,
        "birthDate": "1980-05-17",
        "phone": "+67612345678",
        "email": "sione@example.to",
        "areaCode": area,
    })
}

/// An answer: status, JSON body (Null when empty) and ETag.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub etag: Option<String>,
}

impl TestApp {
    /// One request as `token`, with a JSON body and If-Match when given.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        if_match: Option<i64>,
    ) -> Reply {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(version) = if_match {
            request = request.header("If-Match", format!("\"{version}\""));
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_string());
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply { status, body, etag }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(reqwest::Method::GET, path, token, None, None)
            .await
    }

    /// POSTs `body` and expects 201; the created record.
    pub async fn created(&self, path: &str, token: &str, body: &Value) -> Value {
        let reply = self
            .call(reqwest::Method::POST, path, token, Some(body), None)
            .await;
        assert_eq!(reply.status, 201, "POST {path}: {}", reply.body);
        reply.body
    }

    /// Every item of a list endpoint, following `next` with pages of `limit`.
    pub async fn all_pages(&self, path: &str, token: &str, limit: usize) -> Vec<Value> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let url = match &after {
                Some(after) => format!("{path}{separator}limit={limit}&after={after}"),
                None => format!("{path}{separator}limit={limit}"),
            };
            let page = self.get(&url, token).await;
            assert_eq!(page.status, 200, "GET {url}: {}", page.body);
            let got = page.body["items"].as_array().unwrap();
            assert!(got.len() <= limit);
            items.extend(got.iter().cloned());
            match page.body["next"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => break,
            }
        }
        items
    }
}

/// A plot body for `person`.
pub fn plot(person: &Value) -> Value {
    json!({"personId": person["id"], "geometry": {"type": "Point", "coordinates": [-175.2, -21.13]}, "tenure": "customary", "landUse": "cropland"})
}

/// Installs ring as the process's TLS crypto provider (once; later calls change nothing). In a
/// workspace build reqwest is compiled with the e2e tests' `rustls-no-provider` feature too, and
/// then panics on its first client unless a provider is installed, even for plain HTTP.
pub fn use_ring_for_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
