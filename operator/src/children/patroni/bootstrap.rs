//! What Patroni runs once, on the member that initialises the cluster: the registry's database,
//! its owner role (which runs the API's migrations) and the application role, which is not the
//! owner and cannot bypass row-level security. Passwords come from the generated Secrets through
//! the environment, never from the ConfigMap.

pub const SCRIPT_KEY: &str = "post-bootstrap.sh";

/// Patroni calls it with a superuser connection URL as the first argument, after initdb or after
/// a restore from another tenant's backups. After a restore the roles and the database exist
/// with the source's passwords: they get this tenant's, and the restore's recovery settings
/// (written by pgBackRest with ALTER SYSTEM's file) are cleared so no replica of this tenant
/// ever reads the source's WAL archive.
pub const POST_BOOTSTRAP_SCRIPT: &str = r#"#!/bin/sh
set -eu
: "${DFR_DB_OWNER_USER:?}" "${DFR_DB_OWNER_PASSWORD:?}" "${DFR_DB_APP_USER:?}" "${DFR_DB_APP_PASSWORD:?}"
psql "$1" --no-psqlrc -v ON_ERROR_STOP=1 \
  -v owner="$DFR_DB_OWNER_USER" -v owner_password="$DFR_DB_OWNER_PASSWORD" \
  -v app="$DFR_DB_APP_USER" -v app_password="$DFR_DB_APP_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEROLE', :'owner')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS', :'app')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app') \gexec
ALTER ROLE :"owner" PASSWORD :'owner_password';
ALTER ROLE :"app" PASSWORD :'app_password';
SELECT format('CREATE DATABASE dfr OWNER %I', :'owner')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'dfr') \gexec
REVOKE ALL ON DATABASE dfr FROM PUBLIC;
GRANT CONNECT ON DATABASE dfr TO :"app";
ALTER SYSTEM RESET ALL;
\connect dfr
CREATE EXTENSION IF NOT EXISTS pgaudit;
SQL
"#;
