//! The post-bootstrap script Patroni runs, executed for real against PostgreSQL 15 with pgaudit
//! preloaded, as Patroni would: as the postgres user, with a superuser URL.
#![allow(clippy::unwrap_used, dead_code)]

#[path = "../../api-server/tests/support/postgres.rs"]
mod postgres;

use dfr_operator::children::patroni::POST_BOOTSTRAP_SCRIPT;
use std::os::unix::fs::PermissionsExt;

#[tokio::test]
async fn the_script_creates_the_registry_roles_and_database() {
    let server = postgres::PgServer::start("-c shared_preload_libraries=pgaudit");
    let script = server.dir.join("post-bootstrap.sh");
    std::fs::write(&script, POST_BOOTSTRAP_SCRIPT).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o555)).unwrap();
    let output = postgres::as_postgres("/bin/sh")
        .arg(&script)
        .arg(format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            server.port
        ))
        .env("DFR_DB_OWNER_USER", "dfr_owner")
        .env("DFR_DB_OWNER_PASSWORD", "owner 'secret\" pass")
        .env("DFR_DB_APP_USER", "dfr_app")
        .env("DFR_DB_APP_PASSWORD", "app-secret")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let admin = sqlx::PgPool::connect(&server.url("postgres", "postgres"))
        .await
        .unwrap();
    let (owner_super, owner_login): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = 'dfr_owner'")
            .fetch_one(&admin)
            .await
            .unwrap();
    assert!(!owner_super && owner_login);
    let (app_super, app_bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'dfr_app'")
            .fetch_one(&admin)
            .await
            .unwrap();
    assert!(
        !app_super && !app_bypass,
        "the application role must not bypass row-level security"
    );
    let owner: String =
        sqlx::query_scalar("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'dfr'")
            .fetch_one(&admin)
            .await
            .unwrap();
    assert_eq!(owner, "dfr_owner");
    // Passwords with quotes survive psql variable quoting, stored as SCRAM.
    let secret: String =
        sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = 'dfr_owner'")
            .fetch_one(&admin)
            .await
            .unwrap();
    assert!(secret.starts_with("SCRAM-SHA-256$"), "{secret}");
    let dfr = sqlx::PgPool::connect(&server.url("postgres", "dfr"))
        .await
        .unwrap();
    let audit: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_extension WHERE extname = 'pgaudit'")
            .fetch_one(&dfr)
            .await
            .unwrap();
    assert_eq!(audit, 1);
    // A second run fails loudly rather than half-applying (Patroni runs it once).
    let again = postgres::as_postgres("/bin/sh")
        .arg(&script)
        .arg(format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            server.port
        ))
        .env("DFR_DB_OWNER_USER", "dfr_owner")
        .env("DFR_DB_OWNER_PASSWORD", "x")
        .env("DFR_DB_APP_USER", "dfr_app")
        .env("DFR_DB_APP_PASSWORD", "y")
        .output()
        .unwrap();
    assert!(!again.status.success());
}
