//! dfr-api: `serve` (the default) runs the registry; `migrate`, `audit verify`,
//! `retention apply`, `rotate-keys` and `create-user` are the administrator's tools.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    #[test]
    fn a_bad_value_names_its_environment_variable() {
        let error = super::Cli::try_parse_from(["dfr-api", "--database-port", "sixty"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let message = super::with_env_names(error, &super::Cli::command());
        assert!(
            message.contains(
                "'--database-port <DATABASE_PORT>' (environment variable DFR_DATABASE_PORT)"
            ),
            "{message}"
        );
    }
}
use dfr_api::auth::{AccessTokens, Role, TokenKeys, hash_password};
use dfr_api::bootstrap::{BootstrapArgs, Bootstrapped};
use dfr_api::config::{DatabaseArgs, KeyArgs, ServeArgs};
use dfr_api::crypto::KeyRing;
use dfr_api::db::MIGRATOR;
use dfr_api::metrics::Metrics;
use dfr_api::routes::health::Readiness;
use dfr_api::server::{self, Drained, tls::ReloadingCert};
use dfr_api::state::AppState;
use sqlx::postgres::PgPoolOptions;
use tracing::info;
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "dfr-api",
    version,
    about = "The Digital Farmer Registry API server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    database: DatabaseArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve {
        #[command(flatten)]
        serve: ServeArgs,
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        bootstrap: BootstrapArgs,
    },
    /// Apply the embedded migrations as the owner role (DFR_MIGRATION_DATABASE_USER and
    /// _PASSWORD), then, given the key ring, seal TOTP secrets stored in the clear. Run as a
    /// step of its own before `serve`, which does not need the owner's credentials.
    Migrate {
        #[arg(long, env = "DFR_PII_KEYRING_FILE")]
        pii_keyring_file: Option<std::path::PathBuf>,
    },
    /// Print the OpenAPI 3 document.
    Openapi,
    /// Check the audit log's hash chain and report the first broken link.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Apply the retention periods of one country (run on a schedule, as the owner role).
    Retention {
        #[command(subcommand)]
        action: RetentionAction,
    },
    /// Re-encrypt every record's PII under the key ring's active key, in batches, while the
    /// service runs.
    RotateKeys {
        #[arg(long, env = "DFR_PII_KEYRING_FILE")]
        pii_keyring_file: std::path::PathBuf,
        #[arg(long, default_value_t = 500)]
        batch_size: i64,
    },
    /// Create a user; the password is read from DFR_NEW_USER_PASSWORD. A national admin's
    /// TOTP secret is stored sealed under the key ring.
    CreateUser {
        #[arg(long, env = "DFR_PII_KEYRING_FILE")]
        pii_keyring_file: std::path::PathBuf,
        #[arg(long)]
        username: String,
        #[arg(long)]
        role: String,
        /// Comma-separated area codes (supervisors and enumerators).
        #[arg(long, value_delimiter = ',')]
        areas: Vec<String>,
        #[arg(long)]
        person_id: Option<Uuid>,
        /// Space-separated scopes (API clients), e.g. "persons:read".
        #[arg(long, default_value = "")]
        scopes: String,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    Verify,
}

#[derive(Subcommand)]
enum RetentionAction {
    /// Erase persons and remove records kept longer than the country's periods.
    Apply {
        /// JSON: {"countries": {"TO": {"person": 3650, "plot": 1825, ...}}}, days per kind.
        #[arg(long, env = "DFR_RETENTION_FILE")]
        retention_file: std::path::PathBuf,
        /// The country whose periods apply (this registry's).
        #[arg(long, env = "DFR_COUNTRY_CODE")]
        country: String,
        /// Count what would go, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Clap names the flag of a bad or missing value; the operator sets environment variables, so
/// name those too.
fn with_env_names(message: String, command: &clap::Command) -> String {
    let mut message = message;
    let mut commands = vec![command];
    commands.extend(command.get_subcommands());
    for command in commands {
        for arg in command.get_arguments() {
            let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
                continue;
            };
            let flag = format!("--{long} <");
            let Some(start) = message.find(&flag) else {
                continue;
            };
            let Some(close) = message[start..].find('>') else {
                continue;
            };
            let mut end = start + close + 1;
            if message[end..].starts_with('\'') {
                end += 1;
            }
            let note = format!(" (environment variable {})", env.to_string_lossy());
            if !message[end..].starts_with(&note) {
                message.insert_str(end, &note);
            }
        }
    }
    message
}

fn main() -> ExitCode {
    // No subcommand (only flags) means serve, as a container runs it.
    let mut args: Vec<String> = std::env::args().collect();
    let wants_help = args
        .iter()
        .any(|a| ["-h", "--help", "-V", "--version"].contains(&a.as_str()));
    if !wants_help && args.get(1).is_none_or(|first| first.starts_with('-')) {
        args.insert(1, "serve".into());
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => error.exit(),
        Err(error) => {
            use clap::CommandFactory;
            eprint!(
                "{}",
                with_env_names(error.render().to_string(), &Cli::command())
            );
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("dfr-api: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("dfr-api: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn owner_pool(database: &DatabaseArgs) -> Result<sqlx::PgPool, String> {
    let url = database.migration_url().ok_or(
        "set DFR_MIGRATION_DATABASE_USER and DFR_MIGRATION_DATABASE_PASSWORD (the owner role)",
    )?;
    PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .map_err(|e| format!("cannot connect as the owner role (DFR_MIGRATION_DATABASE_USER): {e}"))
}

async fn run(cli: Cli) -> Result<(), String> {
    let database = cli.database;
    match cli.command {
        Some(Command::Openapi) => {
            print!(
                "{}",
                dfr_api::routes::openapi_document().map_err(|e| e.to_string())?
            );
        }
        Some(Command::Migrate { pii_keyring_file }) => {
            let ring = pii_keyring_file
                .map(|path| {
                    KeyRing::from_file(&path).map_err(|e| format!("DFR_PII_KEYRING_FILE: {e}"))
                })
                .transpose()?;
            let pool = owner_pool(&database).await?;
            MIGRATOR
                .run(&pool)
                .await
                .map_err(|e| format!("migrations failed: {e}"))?;
            println!("migrations applied");
            if let Some(ring) = ring {
                let sealed = dfr_api::credentials::seal_stored_totp_secrets(&pool, &ring).await?;
                println!(
                    "TOTP secrets sealed under key {}: {sealed}",
                    ring.active_key_id()
                );
            }
        }
        Some(Command::Audit {
            action: AuditAction::Verify,
        }) => {
            let pool = owner_pool(&database).await?;
            match dfr_api::audit::verify(&pool)
                .await
                .map_err(|e| e.to_string())?
            {
                dfr_api::audit::Verification::Intact { events } => {
                    println!("audit chain intact: {events} events")
                }
                dfr_api::audit::Verification::Broken { seq, reason } => {
                    return Err(format!("audit chain broken at event {seq}: {reason}"));
                }
            }
        }
        Some(Command::Retention {
            action:
                RetentionAction::Apply {
                    retention_file,
                    country,
                    dry_run,
                },
        }) => {
            let policy = dfr_api::retention::Policy::from_file(&retention_file, &country)
                .map_err(|e| format!("DFR_RETENTION_FILE: {e}"))?;
            let pool = owner_pool(&database).await?;
            let report = dfr_api::retention::apply(&pool, &policy, dry_run)
                .await
                .map_err(|e| format!("retention failed, nothing changed: {e}"))?;
            let verb = if dry_run { "would go" } else { "done" };
            for applied in report {
                println!(
                    "retention {country} {}: {} days, {} {verb}",
                    applied.kind.as_str(),
                    applied.days,
                    applied.count
                );
            }
        }
        Some(Command::RotateKeys {
            pii_keyring_file,
            batch_size,
        }) => {
            let ring = KeyRing::from_file(&pii_keyring_file)
                .map_err(|e| format!("DFR_PII_KEYRING_FILE: {e}"))?;
            let pool = owner_pool(&database).await?;
            let report = dfr_api::rotation::rotate_keys(&pool, &ring, batch_size)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "re-encrypted {} records under key {} in {} batches",
                report.rewritten,
                ring.active_key_id(),
                report.batches
            );
            let sealed = dfr_api::credentials::seal_stored_totp_secrets(&pool, &ring).await?;
            println!(
                "re-sealed {sealed} TOTP secrets under key {}",
                ring.active_key_id()
            );
        }
        Some(Command::CreateUser {
            pii_keyring_file,
            username,
            role,
            areas,
            person_id,
            scopes,
        }) => {
            let role = Role::parse(&role).ok_or_else(|| format!("--role {role:?} is not one of national_admin, supervisor, enumerator, farmer, api_client"))?;
            let password = std::env::var("DFR_NEW_USER_PASSWORD")
                .map_err(|_| "set DFR_NEW_USER_PASSWORD to the new user's password".to_string())?;
            if password.len() < 12 {
                return Err("DFR_NEW_USER_PASSWORD must be at least 12 characters".into());
            }
            let ring = KeyRing::from_file(&pii_keyring_file)
                .map_err(|e| format!("DFR_PII_KEYRING_FILE: {e}"))?;
            let pool = owner_pool(&database).await?;
            let id = Uuid::new_v4();
            // National admins sign in with a second factor from the start.
            let totp = (role == Role::NationalAdmin).then(dfr_api::sessions::new_totp_secret);
            let sealed = totp
                .as_deref()
                .map(|secret| dfr_api::credentials::seal_totp(&ring, secret))
                .transpose()
                .map_err(|e| e.to_string())?;
            sqlx::query("INSERT INTO users (id, username, password_hash, role, areas, person_id, scopes, totp_secret) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(id)
                .bind(&username)
                .bind(hash_password(&password).map_err(|e| e.to_string())?)
                .bind(role.as_str())
                .bind(&areas)
                .bind(person_id)
                .bind(scopes.split_whitespace().map(String::from).collect::<Vec<_>>())
                .bind(&sealed)
                .execute(&pool)
                .await
                .map_err(|e| format!("cannot create user {username}: {e}"))?;
            println!("created {} user {username} ({id})", role.as_str());
            if let Some(secret) = totp {
                println!("TOTP secret (add it to an authenticator app): {secret}");
                println!(
                    "otpauth://totp/DFR:{username}?secret={secret}&issuer=DFR&algorithm=SHA1&digits=6&period=30"
                );
            }
        }
        None => return Err("no command given".into()),
        Some(Command::Serve {
            serve,
            keys,
            bootstrap,
        }) => serve_api(database, serve, keys, bootstrap).await?,
    }
    Ok(())
}

async fn serve_api(
    database: DatabaseArgs,
    serve: ServeArgs,
    keys: KeyArgs,
    bootstrap: BootstrapArgs,
) -> Result<(), String> {
    let bootstrap_admin = bootstrap.admin()?;
    let token_keys = TokenKeys::from_file(&keys.jwt_signing_key_file)
        .map_err(|e| format!("DFR_JWT_SIGNING_KEY_FILE: {e}"))?;
    let ring = KeyRing::from_file(&keys.pii_keyring_file)
        .map_err(|e| format!("DFR_PII_KEYRING_FILE: {e}"))?;
    if database.migration_url().is_some() {
        let owner = owner_pool(&database).await?;
        MIGRATOR
            .run(&owner)
            .await
            .map_err(|e| format!("migrations failed: {e}"))?;
        owner.close().await;
    }
    let pool = PgPoolOptions::new()
        .max_connections(database.max_connections)
        .after_connect(|connection, _| Box::pin(dfr_api::db::refuse_standby(connection)))
        .connect(&database.app_url())
        .await
        .map_err(|e| format!("cannot connect to the database as DFR_DATABASE_USER: {e}"))?;
    if let Some(admin) = &bootstrap_admin {
        match dfr_api::bootstrap::ensure_admin(&pool, &ring, admin)
            .await
            .map_err(|e| format!("bootstrap admin: {e}"))?
        {
            Bootstrapped::Created(id) => {
                info!(username = %admin.username, %id, "created the first national admin")
            }
            Bootstrapped::HadAdmin => {
                info!("a national admin exists: DFR_BOOTSTRAP_ADMIN_USERNAME left unused")
            }
        }
    }
    dfr_api::db::check_schema(&pool).await?;
    let state = AppState {
        pool,
        tokens: AccessTokens {
            keys: Arc::new(token_keys),
            lifetime_seconds: serve.access_token_seconds,
        },
        ring: Arc::new(ring),
        metrics: Metrics::new().map_err(|e| e.to_string())?,
    };
    let tls = match (&serve.tls_cert_file, &serve.tls_key_file) {
        (Some(cert), Some(key)) => Some(Arc::new(
            ReloadingCert::new(cert.clone(), key.clone())
                .map_err(|e| format!("DFR_TLS_CERT_FILE / DFR_TLS_KEY_FILE: {e}"))?,
        )),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(serve.listen_addr)
        .await
        .map_err(|e| format!("DFR_LISTEN_ADDR {}: {e}", serve.listen_addr))?;
    let metrics_listener = tokio::net::TcpListener::bind(serve.metrics_listen_addr)
        .await
        .map_err(|e| format!("DFR_METRICS_LISTEN_ADDR {}: {e}", serve.metrics_listen_addr))?;
    let readiness = Readiness::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let grace = Duration::from_secs(serve.shutdown_grace_seconds);
    let metrics = tokio::spawn(server::serve(
        metrics_listener,
        dfr_api::routes::metrics_router(state.clone()),
        None,
        wait_for(stopped),
        grace,
    ));
    info!(
        addr = %serve.listen_addr,
        https = tls.is_some(),
        metrics = %serve.metrics_listen_addr,
        "serving the registry"
    );
    let app = dfr_api::routes::router_with(state, serve.max_body_bytes, readiness.clone());
    let drained = server::serve(
        listener,
        app,
        tls,
        async move {
            server::termination().await;
            // Readiness fails from now on; what is in flight finishes within the grace period.
            readiness.shut_down();
            info!("shutting down: readiness fails, draining requests in flight");
        },
        grace,
    )
    .await?;
    let _ = stop.send(true);
    if let Ok(Err(error)) = metrics.await {
        tracing::warn!(%error, "the metrics listener failed");
    }
    match drained {
        Drained::Complete => info!("drained: every request finished"),
        Drained::TimedOut { open } => tracing::warn!(
            open,
            "DFR_SHUTDOWN_GRACE_SECONDS ran out with connections open; they are dropped"
        ),
    }
    Ok(())
}

/// Completes when the watched flag turns true (or its sender is gone).
async fn wait_for(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
