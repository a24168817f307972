//! Configuration from flags and the environment. A bad value stops the start with the name of
//! the variable that holds it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

#[derive(Args, Clone, Debug)]
pub struct DatabaseArgs {
    /// Full connection URL of the application role; overrides the parts below.
    #[arg(long, env = "DFR_DATABASE_URL")]
    pub database_url: Option<String>,
    #[arg(long, env = "DFR_DATABASE_HOST", default_value = "localhost")]
    pub database_host: String,
    #[arg(long, env = "DFR_DATABASE_PORT", default_value_t = 5432)]
    pub database_port: u16,
    #[arg(long, env = "DFR_DATABASE_NAME", default_value = "dfr")]
    pub database_name: String,
    #[arg(long, env = "DFR_DATABASE_USER", default_value = "dfr_app")]
    pub database_user: String,
    #[arg(
        long,
        env = "DFR_DATABASE_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    pub database_password: String,
    /// disable, prefer, require, verify-ca or verify-full.
    #[arg(long, env = "DFR_DATABASE_SSLMODE", default_value = "prefer")]
    pub database_sslmode: String,
    #[arg(long, env = "DFR_DATABASE_SSLROOTCERT")]
    pub database_sslrootcert: Option<PathBuf>,
    /// The owner role, used only to run migrations.
    #[arg(long, env = "DFR_MIGRATION_DATABASE_USER")]
    pub migration_user: Option<String>,
    #[arg(long, env = "DFR_MIGRATION_DATABASE_PASSWORD", hide_env_values = true)]
    pub migration_password: Option<String>,
    #[arg(long, env = "DFR_DATABASE_MAX_CONNECTIONS", default_value_t = 20)]
    pub max_connections: u32,
}

#[derive(Args, Clone, Debug)]
pub struct KeyArgs {
    /// PKCS#8 PEM ECDSA P-256 private key that signs access tokens (ES256).
    #[arg(long, env = "DFR_JWT_SIGNING_KEY_FILE")]
    pub jwt_signing_key_file: PathBuf,
    /// JSON key ring: {"active": id, "keys": {id: base64 32 bytes}, "blind_index_key": base64}.
    #[arg(long, env = "DFR_PII_KEYRING_FILE")]
    pub pii_keyring_file: PathBuf,
}

#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    #[arg(long, env = "DFR_LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "DFR_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "DFR_ACCESS_TOKEN_SECONDS", default_value_t = 900)]
    pub access_token_seconds: i64,
    /// PEM certificate chain; with --tls-key-file, the API is served over HTTPS only. Read
    /// again when it changes (a renewed Secret), without a restart.
    #[arg(long, env = "DFR_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the certificate.
    #[arg(long, env = "DFR_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// Where /metrics is served (plain HTTP); the API's port does not serve it.
    #[arg(long, env = "DFR_METRICS_LISTEN_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_listen_addr: SocketAddr,
    /// On SIGTERM: readiness fails at once, and requests in flight get this long to finish.
    #[arg(long, env = "DFR_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,
}

impl DatabaseArgs {
    fn url_for(&self, user: &str, password: &str) -> String {
        let mut url = format!(
            "postgres://{}:{}@{}:{}/{}?sslmode={}",
            encode(user),
            encode(password),
            self.database_host,
            self.database_port,
            self.database_name,
            self.database_sslmode
        );
        if let Some(root) = &self.database_sslrootcert {
            url.push_str(&format!(
                "&sslrootcert={}",
                encode(&root.display().to_string())
            ));
        }
        url
    }

    pub fn app_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => self.url_for(&self.database_user, &self.database_password),
        }
    }

    /// None when no owner credentials were given: migrations are then not run at start.
    pub fn migration_url(&self) -> Option<String> {
        let user = self.migration_user.as_ref()?;
        Some(self.url_for(user, self.migration_password.as_deref().unwrap_or_default()))
    }
}

/// Percent-encodes what may not appear raw in a URL's userinfo or query.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        database: DatabaseArgs,
    }

    #[test]
    fn the_url_is_built_from_parts_with_escaping() {
        let cli = Cli::parse_from([
            "x",
            "--database-host",
            "postgres-rw.dfr-ton-prod.svc",
            "--database-password",
            "p@ss/word",
            "--database-sslmode",
            "verify-full",
            "--database-sslrootcert",
            "/etc/dfr/tls/ca.crt",
        ]);
        assert_eq!(
            cli.database.app_url(),
            "postgres://dfr_app:p%40ss%2Fword@postgres-rw.dfr-ton-prod.svc:5432/dfr?sslmode=verify-full&sslrootcert=%2Fetc%2Fdfr%2Ftls%2Fca.crt"
        );
        assert!(cli.database.migration_url().is_none());
    }

    #[test]
    fn a_bad_port_names_its_variable() {
        let error = Cli::try_parse_from(["x", "--database-port", "sixty"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("--database-port"), "{error}");
    }
}
