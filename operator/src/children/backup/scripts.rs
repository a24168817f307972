//! The programs the backup Jobs run, shipped in the tenant's pgBackRest ConfigMap. Each ends by
//! writing a compact report of the repository into the container's termination message, where
//! the operator reads it (see [`crate::backup::report`]): no Job needs Kubernetes credentials.

pub const BACKUP_KEY: &str = "backup.py";
pub const WRAPPER_KEY: &str = "pgbackrest.sh";
/// Where [`WRAPPER`] finds the repository's secrets.
pub const SECRETS_DIR: &str = "/etc/pgbackrest-secrets";

/// pgBackRest with the repository's secrets read from their files at each call, so a Secret
/// created or changed after the pod started is used without a restart (the environment of a
/// running container never changes). PostgreSQL's archive_command and the restore_command of a
/// restore call this.
pub const WRAPPER: &str = r#"#!/bin/sh
secrets=/etc/pgbackrest-secrets
if [ -r "$secrets/cipher-pass" ]; then PGBACKREST_REPO1_CIPHER_PASS=$(cat "$secrets/cipher-pass"); export PGBACKREST_REPO1_CIPHER_PASS; fi
if [ -r "$secrets/s3-key" ]; then PGBACKREST_REPO1_S3_KEY=$(cat "$secrets/s3-key"); export PGBACKREST_REPO1_S3_KEY; fi
if [ -r "$secrets/s3-key-secret" ]; then PGBACKREST_REPO1_S3_KEY_SECRET=$(cat "$secrets/s3-key-secret"); export PGBACKREST_REPO1_S3_KEY_SECRET; fi
exec pgbackrest "$@"
"#;

pub const REPOSITORY_HOST_KEY: &str = "repository-host.sh";
/// Where the repository host keeps the passphrase as a pgBackRest configuration file.
pub const REPOSITORY_HOST_INCLUDE_DIR: &str = "/tmp/pgbackrest-conf.d";

/// The repository host's server. pgBackRest's TLS server does not pass its environment on to
/// the processes it starts for each client, so the passphrase reaches them as an included
/// configuration file (in memory, mode 0600), rewritten every 30 s so a changed Secret is used
/// without a restart.
pub const REPOSITORY_HOST: &str = r#"#!/bin/sh
set -e
umask 077
mkdir -p /pgbackrest/repository /pgbackrest/lock /tmp/pgbackrest-conf.d
refresh() {
  if [ -r /etc/pgbackrest-secrets/cipher-pass ]; then
    printf '[global]\nrepo1-cipher-pass=%s\n' "$(cat /etc/pgbackrest-secrets/cipher-pass)" > /tmp/pgbackrest-conf.d/secret.conf.new
    mv /tmp/pgbackrest-conf.d/secret.conf.new /tmp/pgbackrest-conf.d/secret.conf
  else
    rm -f /tmp/pgbackrest-conf.d/secret.conf
  fi
}
refresh
(while sleep 30; do refresh; done) &
exec pgbackrest --config-include-path=/tmp/pgbackrest-conf.d server
"#;

/// The wrapper's path in a pod.
pub fn wrapper_path() -> String {
    format!("{}/{WRAPPER_KEY}", super::CONFIG_DIR)
}
pub const EXPIRE_KEY: &str = "expire.py";
pub const CHECK_KEY: &str = "check.py";
pub const VERIFY_KEY: &str = "verify.py";
/// Where the restore check finds the registry's own audit verifier, copied from the API image.
pub const VERIFIER: &str = "/verifier/dfr-api";

/// Shared by both programs: run pgBackRest, report the repository or the failure.
const COMMON: &str = r#"
import json, os, subprocess, sys, time

STANZA = "dfr"
TERMINATION_LOG = "/dev/termination-log"
# The kubelet keeps at most 4096 bytes of a termination message.
REPORT_LIMIT = 4000
TYPES = {"full": "F", "diff": "D", "incr": "I"}


def pgbackrest(*args):
    print("+ pgbackrest", " ".join(args), flush=True)
    result = subprocess.run(["/etc/pgbackrest/pgbackrest.sh", f"--stanza={STANZA}", *args],
                            capture_output=True, text=True)
    sys.stdout.write(result.stdout)
    sys.stdout.write(result.stderr)
    sys.stdout.flush()
    return result


# Two runs that reach the members at once (a scheduled backup and one started by hand, or an
# archiving check) collide on the members' pgBackRest server: the later one cannot find the
# primary or take its lock. It waits and tries again rather than failing the run.
RETRYABLE = ("unable to find primary", "unable to acquire lock", "[056]", "[050]")


def pgbackrest_retrying(*args, attempts=5, pause=30):
    for attempt in range(attempts):
        result = pgbackrest(*args)
        output = result.stderr + result.stdout
        if result.returncode == 0 or not any(text in output for text in RETRYABLE):
            return result
        if attempt + 1 < attempts:
            print(f"another run holds the members; trying again in {pause} s", flush=True)
            time.sleep(pause)
    return result


def write_report(document):
    text = json.dumps(document, separators=(",", ":"))
    with open(TERMINATION_LOG, "w") as log:
        log.write(text)
    print("report:", text, flush=True)


def fail(step, result):
    lines = [line for line in (result.stderr + result.stdout).splitlines()
             if "ERROR" in line or "FATAL" in line or "DETAIL" in line]
    lines = lines or (result.stderr + result.stdout).strip().splitlines() or ["no output"]
    write_report({"v": 1, "ok": False, "step": step, "error": " | ".join(lines[-3:])[-1500:]})
    sys.exit(1)


def repository_report(**extra):
    """The backup sets as [label, type, prior, stop]; prior only where the label does not
    imply it (a differential's full is the part of its label before the underscore)."""
    result = pgbackrest("info", "--output=json")
    if result.returncode != 0:
        fail("info", result)
    stanzas = json.loads(result.stdout or "[]")
    backups = stanzas[0].get("backup", []) if stanzas else []
    archives = stanzas[0].get("archive", []) if stanzas else []
    sets = []
    for backup in backups:
        kind = TYPES.get(backup.get("type"), "?")
        prior = backup.get("prior")
        if kind == "D" and prior == backup["label"].split("_")[0]:
            prior = None
        sets.append([backup["label"], kind, prior, backup["timestamp"]["stop"]])
    document = {"v": 1, "ok": True, **extra, "n": len(sets),
                "wal": archives[-1].get("max") if archives else None, "sets": sets}
    # Oldest sets go first when the report is too long; "n" tells the operator it is partial,
    # and it then expires nothing.
    while len(json.dumps(document, separators=(",", ":"))) > REPORT_LIMIT and document["sets"]:
        document["sets"].pop(0)
    return document, backups
"#;

/// Creates the stanza when needed, backs up (from the synchronous standby when Patroni says it is
/// streaming), then reports the new set and the repository.
pub const BACKUP_PY: &str = r#"
import ssl, time, urllib.request

FULL_EVERY_SECONDS = 7 * 24 * 3600


def sync_standby_streaming():
    context = ssl.create_default_context(cafile="/etc/dfr/tls/ca.crt")
    url = f"https://{os.environ['DFR_PATRONI_HOST']}:8008/cluster"
    try:
        with urllib.request.urlopen(url, context=context, timeout=5) as response:
            members = json.load(response).get("members", [])
    except Exception as error:  # the backup still runs, from the primary
        print(f"Patroni's /cluster could not be read ({error}); backing up from the primary")
        return False
    return any(m.get("role") == "sync_standby" and m.get("state") == "streaming"
               for m in members)


def backup_type(backups):
    """A full backup once a week (or when there is none), differentials in between: a
    differential depends only on its full, so retention can drop any of them."""
    requested = sys.argv[1] if len(sys.argv) > 1 else "auto"
    if requested != "auto":
        return requested
    fulls = [b["timestamp"]["stop"] for b in backups if b.get("type") == "full"]
    if not fulls or time.time() - max(fulls) > FULL_EVERY_SECONDS:
        return "full"
    return "diff"


created = pgbackrest_retrying("stanza-create")
if created.returncode != 0:
    fail("stanza-create", created)
_, before = repository_report()
kind = backup_type(before)
args = [f"--type={kind}"]
if sync_standby_streaming():
    args.append("--backup-standby")
started = time.time()
result = pgbackrest_retrying("backup", *args)
if result.returncode != 0:
    fail("backup", result)
document, backups = repository_report()
newest = backups[-1] if backups else {}
info = newest.get("info", {})
document.update({
    "label": newest.get("label"), "type": newest.get("type"),
    "size": info.get("size"), "repo": info.get("repository", {}).get("delta"),
    "seconds": round(time.time() - started), "standby": "--backup-standby" in args,
})
write_report(document)
"#;

/// Expires the backup sets named on the command line, newest first (expiring a full also
/// expires its differentials, which are then already gone), then reports the repository.
pub const EXPIRE_PY: &str = r#"
for label in sorted(sys.argv[1:], reverse=True):
    result = pgbackrest("expire", f"--set={label}")
    if result.returncode != 0 and "does not exist" not in (result.stderr + result.stdout):
        fail("expire", result)
document, _ = repository_report(expired=sys.argv[1:])
write_report(document)
"#;

/// Checks that WAL archiving works end to end: pgBackRest's `check` switches the leader to a new
/// WAL segment and waits until that segment is in the repository. Between backups, this is
/// what notices a repository that stopped taking WAL.
pub const CHECK_PY: &str = r#"
import time
started = time.time()
created = pgbackrest_retrying("stanza-create")
if created.returncode != 0:
    fail("stanza-create", created)
result = pgbackrest_retrying("check")
if result.returncode != 0:
    fail("check", result)
write_report({"v": 1, "ok": True, "seconds": round(time.time() - started)})
"#;

/// Restores the newest backup into the pod's own volume, starts PostgreSQL on it (local socket
/// only, no archiving) and checks it: recovery ends, the registry's tables are there, row
/// counts agree with the planner's statistics the backup carried, and the audit chain verifies
/// (the registry's own verifier, `dfr-api audit verify`). A backup nobody restored is a hope.
pub const VERIFY_PY: &str = r#"
import shutil, time

DATA = "/restore/pgdata"
SOCKET = "/tmp/restore-socket"
VERIFIER = "/verifier/dfr-api"
TABLES = ["areas", "users", "persons", "households", "household_members", "plots",
          "farmer_profiles", "holdings", "consents", "audit_events"]
started = time.time()
_, backups = repository_report()
if not backups:
    write_report({"v": 1, "ok": False, "step": "select", "error": "the repository holds no backup to restore"})
    sys.exit(1)
label = backups[-1]["label"]
os.makedirs(SOCKET, exist_ok=True)
# The Job's configuration names the members as remote hosts; this restore is local.
result = pgbackrest("restore", "--reset-pg1-host", f"--pg1-path={DATA}", f"--set={label}", "--type=immediate",
                    "--target-action=promote", "--archive-mode=off")
if result.returncode != 0:
    fail("restore", result)
restored = time.time()
with open("/tmp/restore-hba.conf", "w") as hba:
    hba.write("local all all trust\nhost all all 127.0.0.1/32 trust\n")
open("/tmp/restore-ident.conf", "w").close()
binaries = sorted(d for d in os.listdir("/usr/lib/postgresql"))[-1]
pg_ctl = f"/usr/lib/postgresql/{binaries}/bin/pg_ctl"
options = " ".join([
    "-c listen_addresses=127.0.0.1", "-c port=5432", f"-c unix_socket_directories={SOCKET}",
    "-c ssl=off",
    "-c hba_file=/tmp/restore-hba.conf", "-c archive_mode=off", "-c hot_standby=on",
    # Settings recovery requires to be at least the primary's (max_connections, ...) stay as
    # the backup has them.
    "-c shared_buffers=64MB", "-c logging_collector=off", "-c ident_file=/tmp/restore-ident.conf",
])
# The server's output goes to a file: a pipe it inherits would never reach end of file.
LOG = "/tmp/restore-postgres.log"
start = subprocess.run([pg_ctl, "-D", DATA, "-l", LOG, "-o", options, "-w", "-t", "3600", "start"],
                       capture_output=True, text=True)
with open(LOG) as log:
    server_log = log.read()
print(start.stdout, start.stderr, server_log, flush=True)
if start.returncode != 0:
    start.stdout += server_log
    fail("start", start)


def sql(query, database="dfr"):
    out = subprocess.run(["psql", "-h", SOCKET, "-U", "postgres", "-d", database, "-qAtX",
                          "-v", "ON_ERROR_STOP=1", "-c", query], capture_output=True, text=True)
    if out.returncode != 0:
        fail("query", out)
    return out.stdout.strip()


deadline = time.time() + 3600
while sql("SELECT pg_is_in_recovery()", "postgres") == "t":
    if time.time() > deadline:
        write_report({"v": 1, "ok": False, "step": "recovery", "error": "recovery did not end within an hour"})
        sys.exit(1)
    time.sleep(1)
missing = [t for t in TABLES if sql(f"SELECT to_regclass('public.{t}') IS NOT NULL") != "t"]
if missing:
    write_report({"v": 1, "ok": False, "step": "tables", "error": "tables missing: " + ", ".join(missing)})
    sys.exit(1)
implausible = []
counts = {}
for table in TABLES:
    count = int(sql(f"SELECT count(*) FROM {table}"))
    estimate = float(sql(f"SELECT reltuples FROM pg_class WHERE oid = 'public.{table}'::regclass"))
    counts[table] = count
    # Statistics lag the data; only an order of magnitude apart is implausible.
    if estimate >= 1000 and not (estimate / 10 <= count <= estimate * 10):
        implausible.append(f"{table}: {count} rows, statistics say about {int(estimate)}")
if implausible:
    write_report({"v": 1, "ok": False, "step": "counts", "error": "; ".join(implausible)})
    sys.exit(1)
audit = subprocess.run([VERIFIER, "audit", "verify"], capture_output=True, text=True,
                       env={**os.environ, "DFR_DATABASE_HOST": "127.0.0.1",
                            "DFR_DATABASE_SSLMODE": "disable",
                            "DFR_MIGRATION_DATABASE_USER": "postgres",
                            "DFR_MIGRATION_DATABASE_PASSWORD": "unused: trust on 127.0.0.1"})
print(audit.stdout, audit.stderr, flush=True)
if audit.returncode != 0:
    fail("audit", audit)
subprocess.run([pg_ctl, "-D", DATA, "-m", "fast", "stop"], capture_output=True)
shutil.rmtree(DATA, ignore_errors=True)
write_report({"v": 1, "ok": True, "label": label, "seconds": round(time.time() - started),
              "restore_seconds": round(restored - started), "persons": counts.get("persons"),
              "audit": audit.stdout.strip()[:200]})
"#;

/// A complete program: the shared part, then `body`.
pub fn program(body: &str) -> String {
    format!("#!/usr/bin/python3\n{COMMON}\n{body}")
}
