//! Credentials out of the application role's reach (migration 0021), TOTP secrets sealed under
//! the key ring, and the serving process's check that the schema is current.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use support::TestApp;
use uuid::Uuid;

/// The SQLSTATE of `sql` run as dfr_app, or None when it ran.
async fn refused(app: &TestApp, sql: &str) -> Option<String> {
    match sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(&app.app_pool)
        .await
    {
        Ok(_) => None,
        Err(error) => Some(
            error
                .as_database_error()
                .and_then(|e| e.code())
                .map(|c| c.to_string())
                .unwrap_or_else(|| error.to_string()),
        ),
    }
}

async fn sign_in(app: &TestApp, form: &[(&str, &str)]) -> (u16, Value) {
    let response = app
        .http
        .post(app.url("/oauth/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn the_application_role_cannot_read_credentials_and_sign_in_still_works() {
    let app = TestApp::start().await;
    // A session exists, so there are refresh tokens to be refused.
    let _ = app.user("enumerator", &["TO-01"], None, "").await;
    let _ = app.user("national_admin", &[], None, "").await;
    for sql in [
        "SELECT password_hash FROM users",
        "SELECT totp_secret FROM users",
        "SELECT * FROM users",
        "SELECT token_hash FROM refresh_tokens",
        "SELECT * FROM refresh_tokens",
        "SELECT count(*) FROM refresh_tokens",
        "UPDATE users SET totp_secret = totp_secret",
    ] {
        assert_eq!(
            refused(&app, sql).await.as_deref(),
            Some("42501"),
            "{sql} must be refused (permission denied)"
        );
    }
    // What the application does read stays readable.
    assert_eq!(
        refused(
            &app,
            "SELECT id, username, role, areas, scopes, second_factor, disabled_at FROM users"
        )
        .await,
        None
    );

    // The password grant, the second factor and the refresh grant work through the functions.
    let username = format!("farmer-{}", Uuid::new_v4().simple());
    sqlx::query(
        "INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, $3, 'supervisor')",
    )
    .bind(Uuid::new_v4())
    .bind(&username)
    .bind(dfr_api::auth::hash_password("a long test password").unwrap())
    .execute(&app.owner)
    .await
    .unwrap();
    let (status, wrong) = sign_in(
        &app,
        &[
            ("grant_type", "password"),
            ("username", &username),
            ("password", "wrong password!"),
        ],
    )
    .await;
    assert_eq!(status, 400, "{wrong}");
    let failed: i32 = sqlx::query_scalar("SELECT failed_attempts FROM users WHERE username = $1")
        .bind(&username)
        .fetch_one(&app.owner)
        .await
        .unwrap();
    assert_eq!(failed, 1, "a failure is still counted");
    let (status, login) = sign_in(
        &app,
        &[
            ("grant_type", "password"),
            ("username", &username),
            ("password", "a long test password"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let refresh = login["refresh_token"].as_str().unwrap().to_string();
    let (status, renewed) = sign_in(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    let (status, reused) = sign_in(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        reused["detail"].as_str().unwrap().contains("already used"),
        "{reused}"
    );
    let newest = renewed["refresh_token"].as_str().unwrap();
    let (status, _) = sign_in(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", newest)],
    )
    .await;
    assert_eq!(status, 400, "the reuse revoked the whole login");
}

#[tokio::test]
async fn a_totp_secret_stored_in_the_clear_works_until_migrate_seals_it() {
    let app = TestApp::start().await;
    let secret = dfr_api::sessions::new_totp_secret();
    let username = format!("admin-{}", Uuid::new_v4().simple());
    // As a server before this change stored it.
    sqlx::query("INSERT INTO users (id, username, password_hash, role, totp_secret) VALUES ($1, $2, $3, 'national_admin', $4)")
        .bind(Uuid::new_v4())
        .bind(&username)
        .bind(dfr_api::auth::hash_password("a long test password").unwrap())
        .bind(&secret)
        .execute(&app.owner)
        .await
        .unwrap();
    let sign_in_now = || {
        let code = dfr_api::sessions::current_code(&secret).unwrap();
        let username = username.clone();
        let app = &app;
        async move {
            sign_in(
                app,
                &[
                    ("grant_type", "password"),
                    ("username", &username),
                    ("password", "a long test password"),
                    ("totp", &code),
                ],
            )
            .await
        }
    };
    assert_eq!(sign_in_now().await.0, 200);

    let ring = dfr_api::crypto::KeyRing::from_json(&app.keyring_json).unwrap();
    let sealed = dfr_api::credentials::seal_stored_totp_secrets(&app.owner, &ring)
        .await
        .unwrap();
    assert_eq!(sealed, 1);
    let stored: String = sqlx::query_scalar("SELECT totp_secret FROM users WHERE username = $1")
        .bind(&username)
        .fetch_one(&app.owner)
        .await
        .unwrap();
    assert!(
        stored.starts_with("k1:") && !stored.contains(&secret),
        "{stored}"
    );
    assert_eq!(
        sign_in_now().await.0,
        200,
        "the sealed secret still verifies"
    );
    assert_eq!(
        dfr_api::credentials::seal_stored_totp_secrets(&app.owner, &ring)
            .await
            .unwrap(),
        0,
        "a second run has nothing to do"
    );
}

#[tokio::test]
async fn the_server_refuses_a_schema_behind_its_migrations() {
    let app = TestApp::start().await;
    dfr_api::db::check_schema(&app.app_pool).await.unwrap();
    let last = dfr_api::db::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(last)
        .execute(&app.owner)
        .await
        .unwrap();
    let error = dfr_api::db::check_schema(&app.app_pool).await.unwrap_err();
    assert!(
        error.contains("dfr-api migrate") && error.contains(&format!("{last:04}")),
        "{error}"
    );
}
