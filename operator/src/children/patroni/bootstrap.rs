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
"$(dirname "$0")/monitor-role.sh" on_bootstrap primary "$1"
"#;

pub const MONITOR_ROLE_SCRIPT_KEY: &str = "monitor-role.sh";

/// Makes the exporter's role, `dfr_monitor` (pg_monitor, no password: pg_hba admits it only by
/// peer over the socket, see `config::pg_hba`). Patroni runs it on the leader as a callback
/// (`on_start`, `on_role_change`; arguments: action, role, scope), so clusters bootstrapped
/// before the exporter existed get the role at their next restart or switchover, and the
/// post-bootstrap script runs it with the superuser's URL. It waits for PostgreSQL to accept
/// writes, since Patroni calls it while a promotion may still be finishing; it changes nothing
/// once the role exists. Patroni logs a callback's failure and goes on: the exporter then
/// reports `pg_up 0`.
pub const MONITOR_ROLE_SCRIPT: &str = r#"#!/bin/sh
set -eu
case "${2:-}" in primary|master) ;; *) exit 0 ;; esac
if [ "$1" = on_bootstrap ]; then
  connection="$3"
else
  : "${PATRONI_SUPERUSER_USERNAME:?}" "${PATRONI_SUPERUSER_PASSWORD:?}"
  export PGPASSWORD="$PATRONI_SUPERUSER_PASSWORD"
  connection="host=/var/run/postgresql user=$PATRONI_SUPERUSER_USERNAME dbname=postgres"
fi
tries=0
until [ "$(psql "$connection" --no-psqlrc -tAc 'SELECT NOT pg_is_in_recovery()' 2>/dev/null)" = t ]; do
  tries=$((tries + 1))
  [ "$tries" -lt 30 ] || { echo "monitor-role: PostgreSQL did not accept writes" >&2; exit 1; }
  sleep 2
done
psql "$connection" --no-psqlrc -v ON_ERROR_STOP=1 -v monitor=dfr_monitor <<'SQL'
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', :'monitor')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'monitor') \gexec
SELECT format('GRANT pg_monitor TO %I', :'monitor')
  WHERE NOT pg_has_role(:'monitor', 'pg_monitor', 'MEMBER') \gexec
SQL
"#;
