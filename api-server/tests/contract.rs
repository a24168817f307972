//! The robustness contract: schemathesis generates requests from the served OpenAPI document
//! (valid ones and ones the document says are invalid) against a running server on a real
//! PostgreSQL, as a national admin, and checks every answer against the document: no 5xx or
//! dropped connection, only documented statuses, content types and bodies, valid requests
//! accepted and invalid ones refused. Bounded by DFR_CONTRACT_MAX_EXAMPLES cases per operation
//! (default 25) and DFR_CONTRACT_MAX_SECONDS (default 150).
//!
//! Schemathesis is a Python program: DFR_SCHEMATHESIS names it, else the venv scripts/prereqs
//! installs (/opt/dfr-tools/schemathesis), else `schemathesis` on PATH.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::time::Instant;

use support::TestApp;

fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("DFR_SCHEMATHESIS") {
        return path.into();
    }
    let venv = PathBuf::from("/opt/dfr-tools/schemathesis/bin/schemathesis");
    if venv.exists() {
        return venv;
    }
    "schemathesis".into()
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_answer_conforms_to_the_document() {
    let app = TestApp::start().await;
    let token = app.user("national_admin", &[], None, "").await;
    let examples = env_number("DFR_CONTRACT_MAX_EXAMPLES", 25);
    let seconds = env_number("DFR_CONTRACT_MAX_SECONDS", 150);
    let report = std::env::temp_dir().join(format!("dfr-contract-{}", std::process::id()));
    let started = Instant::now();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract.toml");
    let output = tokio::process::Command::new(schemathesis())
        .args(["--config-file", config])
        .arg("run")
        .arg(app.url("/api/dfr/openapi.json"))
        .args(["--url", &app.base])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all"])
        // Authorization is exercised by the tests of each role; these two checks would
        // send the admin's token to other tenants' records, which is not this contract.
        .args([
            "--exclude-checks",
            "ignored_auth,object_level_authorization",
        ])
        .args(["--max-examples", &examples.to_string()])
        .args(["--max-time", &seconds.to_string()])
        .args(["--seed", "14"])
        .args(["--workers", "1"])
        .args(["--request-timeout", "20"])
        .args(["--report", "junit"])
        .arg("--report-dir")
        .arg(&report)
        .args([
            "--no-color",
            "--warnings",
            "off",
            "--generation-database",
            "none",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {:?} (run scripts/prereqs, or set DFR_SCHEMATHESIS): {e}",
                schemathesis()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    println!(
        "schemathesis: {examples} examples per operation, {:.0} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        output.status.success(),
        "schemathesis found failures (report in {})",
        report.display()
    );
}

#[tokio::test]
async fn a_nul_in_text_is_refused_not_a_server_error() {
    let app = TestApp::start().await;
    let token = app.user("national_admin", &[], None, "").await;
    let reply = app.get("/api/dfr/consents?area=TO%00", &token).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply.body["code"], "validation_failed");
}
