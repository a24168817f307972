//! The post-bootstrap script Patroni runs, executed for real against PostgreSQL 15 with pgaudit
//! preloaded, as Patroni would: as the postgres user, with a superuser URL.
#![allow(clippy::unwrap_used, dead_code)]

#[path = "../../api-server/tests/support/postgres.rs"]
mod postgres;

use dfr_operator::children::patroni::{
    MONITOR_ROLE_SCRIPT, MONITOR_ROLE_SCRIPT_KEY, POST_BOOTSTRAP_SCRIPT,
};
use std::os::unix::fs::PermissionsExt;

#[tokio::test]
async fn the_script_creates_the_registry_roles_and_database() {
    let server = postgres::PgServer::start("-c shared_preload_libraries=pgaudit");
    // Both scripts side by side, as the Patroni ConfigMap mounts them: the post-bootstrap
    // script runs the exporter's role script from its own directory.
    let script = server.dir.join("post-bootstrap.sh");
    for (path, text) in [
        (script.clone(), POST_BOOTSTRAP_SCRIPT),
        (
            server.dir.join(MONITOR_ROLE_SCRIPT_KEY),
            MONITOR_ROLE_SCRIPT,
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
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
    // The exporter's role: a login with pg_monitor and nothing more.
    let (monitor_super, monitor_login, monitor_reads_stats): (bool, bool, bool) = sqlx::query_as(
        "SELECT rolsuper, rolcanlogin, pg_has_role('dfr_monitor', 'pg_monitor', 'MEMBER') \
         FROM pg_roles WHERE rolname = 'dfr_monitor'",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(!monitor_super && monitor_login && monitor_reads_stats);
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
    // After a restore from another tenant's backups Patroni runs it on a database that has the
    // roles already: it gives them this tenant's passwords and clears the restore's recovery
    // settings (ALTER SYSTEM's file), so no replica reads the source's archive.
    sqlx::query("ALTER SYSTEM SET restore_command = 'pgbackrest --repo1-path=/dfr/source archive-get %f %p'")
        .execute(&admin)
        .await
        .unwrap();
    let again = postgres::as_postgres("/bin/sh")
        .arg(&script)
        .arg(format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            server.port
        ))
        .env("DFR_DB_OWNER_USER", "dfr_owner")
        .env(
            "DFR_DB_OWNER_PASSWORD",
            "the restored tenant's owner password",
        )
        .env("DFR_DB_APP_USER", "dfr_app")
        .env("DFR_DB_APP_PASSWORD", "the restored tenant's app password")
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let changed: String =
        sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = 'dfr_owner'")
            .fetch_one(&admin)
            .await
            .unwrap();
    assert_ne!(changed, secret, "the owner has this tenant's password now");
    let leftover: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_file_settings WHERE name = 'restore_command' AND sourcefile LIKE '%postgresql.auto.conf'",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(leftover, 0, "the restore's settings are gone");
}
