//! Name search against a real PostgreSQL 15: a case-insensitive prefix of the family or the
//! given name (compared, not matched as a LIKE pattern), under row-level security, in pages.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use support::{TestApp, person};

fn named(area: &str, given: &str, family: &str) -> Value {
    let mut body = person(area, family);
    body["givenName"] = given.into();
    body
}

fn families(items: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = items
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["givenName"].as_str().unwrap(),
                p["familyName"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_name_prefix_finds_family_and_given_names_in_the_callers_areas() {
    let app = TestApp::start().await;
    let admin = app.user("national_admin", &[], None, "").await;
    let enumerator = app.user("enumerator", &["TO-01"], None, "").await;
    for (area, given, family) in [
        ("TO-01", "Sione", "Tupou"),
        ("TO-01", "Mele", "Tupouʻila"),
        ("TO-01", "Tupe", "Fifita"),
        ("TO-01", "Ana", "Tu_pou"),
        ("TO-01", "Losa", "Vea"),
        ("TO-02", "Sione", "Tupouniua"),
    ] {
        app.created("/api/dfr/persons", &admin, &named(area, given, family))
            .await;
    }
    let everyone = app.all_pages("/api/dfr/persons?name=TUP", &admin, 2).await;
    assert_eq!(
        families(&everyone),
        [
            "Mele Tupouʻila",
            "Sione Tupou",
            "Sione Tupouniua",
            "Tupe Fifita"
        ]
    );
    let mine = app
        .all_pages("/api/dfr/persons?name=tupou", &enumerator, 20)
        .await;
    assert_eq!(families(&mine), ["Mele Tupouʻila", "Sione Tupou"]);
    // `_` and `%` are letters of the name, not patterns.
    let literal = app
        .all_pages("/api/dfr/persons?name=tu_", &enumerator, 20)
        .await;
    assert_eq!(families(&literal), ["Ana Tu_pou"]);
    assert!(
        app.all_pages("/api/dfr/persons?name=t%25", &enumerator, 20)
            .await
            .is_empty()
    );
    let nobody = app.all_pages("/api/dfr/persons?name=zz", &admin, 20).await;
    assert!(nobody.is_empty());
}
