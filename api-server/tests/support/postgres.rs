//! A real PostgreSQL 15 server for the tests of one test binary, started as the `postgres` OS
//! user in a temporary directory on a free loopback port. A watchdog stops it and removes the
//! directory when the test process exits, so nothing is left behind even after a panic.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct PgServer {
    pub port: u16,
    pub dir: PathBuf,
}

fn postgres_ids() -> (u32, u32) {
    let user = nix::unistd::User::from_name("postgres")
        .expect("look up the postgres user")
        .expect("the postgres OS user exists (install postgresql-15)");
    (user.uid.as_raw(), user.gid.as_raw())
}

pub fn as_postgres(program: &str) -> Command {
    let (uid, gid) = postgres_ids();
    let path = if program.starts_with('/') {
        program.to_string()
    } else {
        format!("{BIN}/{program}")
    };
    let mut command = Command::new(path);
    command
        .uid(uid)
        .gid(gid)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C.UTF-8");
    command
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PgServer {
    pub fn shared() -> &'static PgServer {
        static SERVER: OnceLock<PgServer> = OnceLock::new();
        SERVER.get_or_init(|| PgServer::start(""))
    }

    /// A server of its own, with extra `-c name=value` options (e.g. preloaded libraries).
    pub fn start(extra_options: &str) -> PgServer {
        let (uid, gid) = postgres_ids();
        let dir = std::env::temp_dir().join(format!(
            "dfr-pg-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("create the server directory");
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .expect("hand the directory to postgres");
        let data = dir.join("data");
        run(
            as_postgres("initdb").args([
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]),
            "initdb",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 {extra_options}",
            dir.display()
        );
        run(
            as_postgres("pg_ctl").args([
                "-D",
                &data.display().to_string(),
                "-o",
                &options,
                "-l",
                &dir.join("server.log").display().to_string(),
                "-w",
                "start",
            ]),
            "pg_ctl start",
        );
        // Stops the server and removes its files once this test process is gone (it runs as
        // postgres, which may not signal root processes, so it watches /proc instead).
        let watchdog = format!(
            "while [ -d /proc/{} ]; do sleep 1; done; {BIN}/pg_ctl -D {} -m immediate stop >/dev/null 2>&1; rm -rf {}",
            std::process::id(),
            data.display(),
            dir.display()
        );
        // It must outlive this process (init reaps it), so it is deliberately never waited for.
        #[allow(clippy::zombie_processes)]
        as_postgres("/bin/sh")
            .args(["-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start the watchdog");
        PgServer { port, dir }
    }

    pub fn url(&self, user: &str, database: &str) -> String {
        format!(
            "postgres://{user}@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }
}
