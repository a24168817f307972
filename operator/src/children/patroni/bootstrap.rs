//! What Patroni runs once, on the member that initialises the cluster: the registry's database,
//! its owner role (which runs the API's migrations) and the application role, which is not the
//! owner and cannot bypass row-level security. Passwords come from the generated Secrets through
//! the environment, never from the ConfigMap.

pub const SCRIPT_KEY: &str = "post-bootstrap.sh";

/// Patroni calls it with a superuser connection URL as the first argument.
pub const POST_BOOTSTRAP_SCRIPT: &str = r#"#!/bin/sh
set -eu
: "${DFR_DB_OWNER_USER:?}" "${DFR_DB_OWNER_PASSWORD:?}" "${DFR_DB_APP_USER:?}" "${DFR_DB_APP_PASSWORD:?}"
psql "$1" --no-psqlrc -v ON_ERROR_STOP=1 \
  -v owner="$DFR_DB_OWNER_USER" -v owner_password="$DFR_DB_OWNER_PASSWORD" \
  -v app="$DFR_DB_APP_USER" -v app_password="$DFR_DB_APP_PASSWORD" <<'SQL'
CREATE ROLE :"owner" LOGIN NOSUPERUSER NOCREATEROLE PASSWORD :'owner_password';
CREATE ROLE :"app" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD :'app_password';
CREATE DATABASE dfr OWNER :"owner";
REVOKE ALL ON DATABASE dfr FROM PUBLIC;
GRANT CONNECT ON DATABASE dfr TO :"app";
\connect dfr
CREATE EXTENSION IF NOT EXISTS pgaudit;
SQL
"#;
