//! User administration through the API and the bootstrap of the first national admin, against
//! a real PostgreSQL 15: every change audited, bad input refused field by field with nothing
//! written, sign-in following each change, and never a registry without an enabled admin.
#![allow(clippy::unwrap_used)]

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{TestApp, person};
use uuid::Uuid;

async fn sign_in(
    app: &TestApp,
    username: &str,
    password: &str,
    totp: Option<&str>,
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "password".to_string()),
        ("username", username.to_string()),
        ("password", password.to_string()),
    ];
    if let Some(secret) = totp {
        form.push(("totp", dfr_api::sessions::current_code(secret).unwrap()));
    }
    let response = app
        .http
        .post(app.url("/oauth/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn refresh(app: &TestApp, token: &Value) -> u16 {
    app.http
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn user_events(app: &TestApp, id: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT action FROM audit_events WHERE entity = 'user' AND entity_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(&app.owner)
    .await
    .unwrap()
}

async fn user_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.owner)
        .await
        .unwrap()
}

#[tokio::test]
async fn national_admins_create_list_and_change_users_with_an_audit_event_each() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let supervisor = app.user("supervisor", &["TO-01"], None, "").await;
    let farmer_person = app
        .created("/api/dfr/persons", &admin, &person("TO-01", "Farmer"))
        .await;

    let denied = app.get("/api/dfr/users", &supervisor).await;
    assert_eq!(
        (denied.status, denied.body["code"].as_str()),
        (403, Some("forbidden"))
    );

    let good = json!({"username": "enum.one", "password": "a long enough password", "role": "enumerator", "areas": ["TO-01"]});
    let before = user_count(&app).await;
    for (change, field) in [
        (json!({"username": "x"}), "username"),
        (json!({"username": "has space"}), "username"),
        (json!({"password": "short"}), "password"),
        (json!({"role": "root"}), "role"),
        (json!({"areas": []}), "areas"),
        (json!({"areas": ["TO-01", "XX-99"]}), "areas"),
        (json!({"role": "national_admin"}), "areas"),
        (json!({"role": "farmer", "areas": []}), "personId"),
        (
            json!({"role": "farmer", "areas": [], "personId": Uuid::new_v4()}),
            "personId",
        ),
        (json!({"personId": farmer_person["id"]}), "personId"),
        (json!({"scopes": ["persons:read"]}), "scopes"),
        (json!({"colour": "blue"}), "colour"),
    ] {
        let mut body = good.clone();
        for (key, value) in change.as_object().unwrap() {
            body[key] = value.clone();
        }
        let reply = app
            .call(Method::POST, "/api/dfr/users", &admin, Some(&body), None)
            .await;
        assert_eq!(reply.status, 422, "{body}: {}", reply.body);
        assert_eq!(reply.body["code"], "validation_failed");
        assert_eq!(
            reply.body["errors"][0]["field"], field,
            "{body}: {}",
            reply.body
        );
    }
    assert_eq!(
        user_count(&app).await,
        before,
        "nothing written for a refused create"
    );

    let created = app.created("/api/dfr/users", &admin, &good).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["role"], "enumerator");
    assert_eq!(created["areas"], json!(["TO-01"]));
    assert!(created.get("totpSecret").is_none() && created.get("passwordHash").is_none());
    let taken = app
        .call(Method::POST, "/api/dfr/users", &admin, Some(&good), None)
        .await;
    assert_eq!(
        (taken.status, taken.body["code"].as_str()),
        (409, Some("conflict"))
    );
    assert_eq!(taken.body["errors"][0]["field"], "username");
    let farmer = app
        .created(
            "/api/dfr/users",
            &admin,
            &json!({"username": "farmer.one", "password": "a long enough password", "role": "farmer", "personId": farmer_person["id"]}),
        )
        .await;
    assert_eq!(farmer["personId"], farmer_person["id"]);

    let (status, session) = sign_in(&app, "enum.one", "a long enough password", None).await;
    assert_eq!(status, 200, "{session}");

    // Lists: filters and pages.
    let enumerators = app
        .all_pages("/api/dfr/users?role=enumerator", &admin, 1)
        .await;
    assert_eq!(enumerators.len(), 1);
    assert_eq!(enumerators[0]["username"], "enum.one");
    assert_eq!(
        app.all_pages("/api/dfr/users?area=TO-01", &admin, 1)
            .await
            .len(),
        2
    );
    assert_eq!(app.all_pages("/api/dfr/users", &admin, 2).await.len(), 4);

    // Locked by wrong passwords, then unlocked.
    for _ in 0..5 {
        assert_eq!(
            sign_in(&app, "enum.one", "a wrong password!", None).await.0,
            400
        );
    }
    let (status, locked) = sign_in(&app, "enum.one", "a long enough password", None).await;
    assert_eq!(status, 400);
    assert!(
        locked["detail"].as_str().unwrap().contains("locked"),
        "{locked}"
    );
    let path = |action: &str| format!("/api/dfr/users/{id}/{action}");
    let unlocked = app
        .call(Method::POST, &path("unlock"), &admin, None, None)
        .await;
    assert_eq!(unlocked.status, 200, "{}", unlocked.body);
    assert_eq!(unlocked.body["failedAttempts"], 0);
    let (status, session) = sign_in(&app, "enum.one", "a long enough password", None).await;
    assert_eq!(status, 200, "{session}");

    // A new password: the old one and the sessions made with it end.
    let short = app
        .call(
            Method::POST,
            &path("password"),
            &admin,
            Some(&json!({"password": "short"})),
            None,
        )
        .await;
    assert_eq!(
        (short.status, short.body["errors"][0]["field"].as_str()),
        (422, Some("password"))
    );
    let reset = app
        .call(
            Method::POST,
            &path("password"),
            &admin,
            Some(&json!({"password": "another long password"})),
            None,
        )
        .await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    assert_eq!(
        sign_in(&app, "enum.one", "a long enough password", None)
            .await
            .0,
        400
    );
    assert_eq!(refresh(&app, &session).await, 400, "the session ended");
    let (status, session) = sign_in(&app, "enum.one", "another long password", None).await;
    assert_eq!(status, 200);

    // New access: role and areas; the sessions end, the next sign-in carries the new role.
    let bad = app
        .call(
            Method::PUT,
            &path("access"),
            &admin,
            Some(&json!({"role": "supervisor", "areas": ["NOPE"]})),
            None,
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["errors"][0]["field"].as_str()),
        (422, Some("areas"))
    );
    let changed = app
        .call(
            Method::PUT,
            &path("access"),
            &admin,
            Some(&json!({"role": "supervisor", "areas": ["TO-02"]})),
            None,
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(
        (changed.body["role"].as_str(), &changed.body["areas"]),
        (Some("supervisor"), &json!(["TO-02"]))
    );
    assert_eq!(refresh(&app, &session).await, 400);
    let (_, session) = sign_in(&app, "enum.one", "another long password", None).await;
    let token = session["access_token"].as_str().unwrap();
    let far = app.get("/api/dfr/persons?area=TO-01", token).await;
    assert_eq!(far.body["items"], json!([]), "a supervisor of TO-02 now");

    // Disabled: no sign-in, no refresh; enabled again.
    let disabled = app
        .call(Method::POST, &path("disable"), &admin, None, None)
        .await;
    assert!(disabled.body["disabledAt"].is_string(), "{}", disabled.body);
    let (status, refused) = sign_in(&app, "enum.one", "another long password", None).await;
    assert_eq!(
        (status, refused["detail"].as_str()),
        (400, Some("the account is disabled"))
    );
    assert_eq!(refresh(&app, &session).await, 400);
    assert_eq!(
        app.all_pages("/api/dfr/users?disabled=true", &admin, 5)
            .await
            .len(),
        1
    );
    let enabled = app
        .call(Method::POST, &path("enable"), &admin, None, None)
        .await;
    assert_eq!(enabled.body["disabledAt"], Value::Null);
    assert_eq!(
        sign_in(&app, "enum.one", "another long password", None)
            .await
            .0,
        200
    );

    assert_eq!(
        user_events(&app, &id).await,
        [
            "create",
            "unlock",
            "reset_password",
            "change_access",
            "disable",
            "enable"
        ]
    );
    match dfr_api::audit::verify(&app.owner).await.unwrap() {
        dfr_api::audit::Verification::Intact { .. } => {}
        broken => panic!("{broken:?}"),
    }
    let missing = app
        .call(
            Method::POST,
            &format!("/api/dfr/users/{}/disable", Uuid::new_v4()),
            &admin,
            None,
            None,
        )
        .await;
    assert_eq!(
        (missing.status, missing.body["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test]
async fn the_last_enabled_national_admin_cannot_be_disabled_or_demoted() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let me: String = sqlx::query_scalar("SELECT id::text FROM users WHERE role = 'national_admin'")
        .fetch_one(&app.owner)
        .await
        .unwrap();
    let disable_me = format!("/api/dfr/users/{me}/disable");
    let refused = app
        .call(Method::POST, &disable_me, &admin, None, None)
        .await;
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (409, Some("last_national_admin"))
    );
    let demote = json!({"role": "supervisor", "areas": ["TO-01"]});
    let refused = app
        .call(
            Method::PUT,
            &format!("/api/dfr/users/{me}/access"),
            &admin,
            Some(&demote),
            None,
        )
        .await;
    assert_eq!(refused.status, 409);
    assert_eq!(
        user_events(&app, &me).await,
        Vec::<String>::new(),
        "nothing audited"
    );

    // A second admin gets a second factor, shown once; then the first may go.
    let second = app
        .created(
            "/api/dfr/users",
            &admin,
            &json!({"username": "admin.two", "password": "a long enough password", "role": "national_admin"}),
        )
        .await;
    let secret = second["totpSecret"].as_str().unwrap().to_string();
    assert!(
        second["otpauthUri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/DFR:admin.two?secret=")
    );
    assert_eq!(second["secondFactor"], true);
    let (status, _) = sign_in(&app, "admin.two", "a long enough password", Some(&secret)).await;
    assert_eq!(status, 200);
    let read = app
        .get(
            &format!("/api/dfr/users/{}", second["id"].as_str().unwrap()),
            &admin,
        )
        .await;
    assert!(read.body.get("totpSecret").is_none(), "shown only once");
    let gone = app
        .call(Method::POST, &disable_me, &admin, None, None)
        .await;
    assert_eq!(gone.status, 200, "{}", gone.body);
}

#[tokio::test]
async fn the_first_national_admin_is_made_from_the_bootstrap_values_once() {
    let app = TestApp::start().await;
    let dir = std::env::temp_dir().join(format!("bootstrap-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dfr_api::sessions::new_totp_secret();
    std::fs::write(dir.join("password"), "the first admin's password\n").unwrap();
    std::fs::write(dir.join("totp"), format!("{secret}\n")).unwrap();
    let args = dfr_api::bootstrap::BootstrapArgs {
        bootstrap_admin_username: Some("admin".into()),
        bootstrap_admin_password_file: Some(dir.join("password")),
        bootstrap_admin_totp_secret_file: Some(dir.join("totp")),
    };
    let admin = args.admin().unwrap().unwrap();
    let ring = dfr_api::crypto::KeyRing::from_json(&app.keyring_json).unwrap();

    // Two replicas starting together: one makes the admin.
    let (a, b) = tokio::join!(
        dfr_api::bootstrap::ensure_admin(&app.app_pool, &ring, &admin),
        dfr_api::bootstrap::ensure_admin(&app.app_pool, &ring, &admin)
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| matches!(o, dfr_api::bootstrap::Bootstrapped::HadAdmin));
    let dfr_api::bootstrap::Bootstrapped::Created(id) = outcomes[0].clone() else {
        panic!("{outcomes:?}");
    };
    assert_eq!(outcomes[1], dfr_api::bootstrap::Bootstrapped::HadAdmin);
    assert_eq!(
        dfr_api::bootstrap::ensure_admin(&app.app_pool, &ring, &admin)
            .await
            .unwrap(),
        dfr_api::bootstrap::Bootstrapped::HadAdmin,
        "a restart changes nothing"
    );
    assert_eq!(user_events(&app, &id.to_string()).await, ["bootstrap"]);
    let (status, body) = sign_in(&app, "admin", "the first admin's password", None).await;
    assert_eq!(status, 400, "a second factor is required: {body}");
    let (status, body) = sign_in(&app, "admin", "the first admin's password", Some(&secret)).await;
    assert_eq!(status, 200, "{body}");

    // Missing or bad values name their variable.
    let error = |args: &dfr_api::bootstrap::BootstrapArgs| args.admin().err().unwrap_or_default();
    let mut missing = args.clone();
    missing.bootstrap_admin_password_file = None;
    assert!(error(&missing).contains("DFR_BOOTSTRAP_ADMIN_PASSWORD_FILE"));
    let mut unreadable = args.clone();
    unreadable.bootstrap_admin_totp_secret_file = Some(dir.join("absent"));
    assert!(error(&unreadable).contains("DFR_BOOTSTRAP_ADMIN_TOTP_SECRET_FILE"));
    std::fs::write(dir.join("short"), "short").unwrap();
    let mut short = args.clone();
    short.bootstrap_admin_password_file = Some(dir.join("short"));
    assert!(error(&short).contains("DFR_BOOTSTRAP_ADMIN_PASSWORD_FILE"));
    std::fs::write(dir.join("bad-totp"), "not base32!").unwrap();
    let mut bad = args.clone();
    bad.bootstrap_admin_totp_secret_file = Some(dir.join("bad-totp"));
    assert!(error(&bad).contains("DFR_BOOTSTRAP_ADMIN_TOTP_SECRET_FILE"));
    let none = dfr_api::bootstrap::BootstrapArgs::default();
    assert!(none.admin().unwrap().is_none());

    // A username taken by another role stops the start with a reason.
    let other = TestApp::start().await;
    sqlx::query("INSERT INTO users (id, username, password_hash, role, areas) VALUES ($1, 'admin', 'x', 'enumerator', '{TO-01}')")
        .bind(Uuid::new_v4())
        .execute(&other.owner)
        .await
        .unwrap();
    let other_ring = dfr_api::crypto::KeyRing::from_json(&other.keyring_json).unwrap();
    let taken = dfr_api::bootstrap::ensure_admin(&other.app_pool, &other_ring, &admin).await;
    assert!(taken.err().unwrap().to_string().contains("is taken"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_erased_persons_farmer_account_is_disabled_and_unlinked() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let subject = app
        .created("/api/dfr/persons", &admin, &person("TO-01", "Account"))
        .await;
    let account = app
        .created(
            "/api/dfr/users",
            &admin,
            &json!({"username": "farmer.erased", "password": "a long enough password", "role": "farmer", "personId": subject["id"]}),
        )
        .await;
    assert_eq!(
        sign_in(&app, "farmer.erased", "a long enough password", None)
            .await
            .0,
        200
    );
    let erased = app
        .call(
            Method::POST,
            &format!(
                "/api/dfr/persons/{}/erasure",
                subject["id"].as_str().unwrap()
            ),
            &admin,
            None,
            None,
        )
        .await;
    assert_eq!(erased.body["userAccounts"], 1, "{}", erased.body);
    let read = app
        .get(
            &format!("/api/dfr/users/{}", account["id"].as_str().unwrap()),
            &admin,
        )
        .await;
    assert_eq!(read.body["personId"], Value::Null);
    assert!(read.body["disabledAt"].is_string());
    assert_eq!(
        sign_in(&app, "farmer.erased", "a long enough password", None)
            .await
            .0,
        400
    );
}
