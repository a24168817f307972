//! The node cluster's S3 server (versitygw) as a backup client sees it: over TLS with the CA
//! `dfr-cluster env` names, SigV4 with the root keys, path-style URLs into the bucket `up` made.
//! An object put is read back and listed; a wrong secret and an untrusted certificate are refused.
//!
//! Needs `dfr-cluster up --node` and its `env` (the DFR_S3_* variables) and curl; run with
//! `cargo test -p dfr-e2e --features node --test s3`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use dfr_e2e::cluster::S3Endpoint;
use dfr_e2e::testing::{s3, unique_suffix};

/// curl's answer: the HTTP status (0 when no response came) and the body.
fn curl(s3: &S3Endpoint, secret: &str, extra: &[&str], url: &str) -> (u16, String) {
    let user = format!("{}:{secret}", s3.access_key);
    let sigv4 = format!("aws:amz:{}:s3", s3.region);
    let ca = s3.ca_file.display().to_string();
    let output = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            &ca,
            "--aws-sigv4",
            &sigv4,
            "--user",
            &user,
        ])
        // curl 7.88 signs without this header and the server requires it.
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .args(extra)
        .args(["-w", "\n%{http_code}", url])
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn an_object_round_trips_over_tls_with_sigv4_and_a_wrong_secret_is_refused() {
    let s3 = s3();
    let key = format!("e2e-s3/{}/hello.txt", unique_suffix());
    let object = format!("{}/{}/{key}", s3.endpoint, s3.bucket);
    let content = "a backup, in a way";

    let (status, body) = curl(
        &s3,
        &s3.secret_key,
        &["-X", "PUT", "--data-binary", content],
        &object,
    );
    assert_eq!(status, 200, "PUT: {body}");
    let (status, body) = curl(&s3, &s3.secret_key, &[], &object);
    assert_eq!((status, body.as_str()), (200, content));
    assert_eq!(
        std::fs::read_to_string(s3.bucket_dir.join(&key)).unwrap(),
        content,
        "the posix backend keeps an object at its key's path"
    );

    // curl 7.88 signs a `/` in a query value unencoded, so the prefix is encoded here.
    let prefix = key.rsplit_once('/').unwrap().0.replace('/', "%2F");
    let list = format!("{}/{}?list-type=2&prefix={prefix}", s3.endpoint, s3.bucket);
    let (status, body) = curl(&s3, &s3.secret_key, &[], &list);
    assert_eq!(status, 200, "list: {body}");
    assert!(body.contains(&format!("<Key>{key}</Key>")), "list: {body}");

    let wrong = "0".repeat(40);
    let (status, body) = curl(&s3, &wrong, &[], &object);
    assert_eq!(status, 403, "GET with a wrong secret: {body}");
    assert!(body.contains("SignatureDoesNotMatch"), "{body}");
    let (status, _) = curl(
        &s3,
        &wrong,
        &["-X", "PUT", "--data-binary", "overwritten"],
        &object,
    );
    assert_eq!(status, 403, "PUT with a wrong secret");
    let (_, body) = curl(&s3, &s3.secret_key, &[], &object);
    assert_eq!(body, content);

    // Without the cluster's S3 CA the certificate is not trusted.
    let untrusted = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", &object])
        .output()
        .expect("running curl");
    assert_eq!(
        untrusted.status.code(),
        Some(60),
        "curl without the CA: {}",
        String::from_utf8_lossy(&untrusted.stderr)
    );

    let (status, _) = curl(&s3, &s3.secret_key, &["-X", "DELETE"], &object);
    assert_eq!(status, 204, "DELETE");
}
