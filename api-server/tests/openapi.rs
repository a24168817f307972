//! The checked-in OpenAPI document is exactly what the code generates.

#[test]
fn checked_in_openapi_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let generated = dfr_api::routes::openapi_document().expect("the document serializes");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "api-server/openapi.json is out of date with the handlers; regenerate it with scripts/generate"
    );
}

#[test]
fn every_registry_route_is_documented() {
    let generated = dfr_api::routes::openapi_document().expect("the document serializes");
    let document: serde_json::Value = serde_json::from_str(&generated).expect("valid JSON");
    for path in [
        "/api/dfr/persons",
        "/api/dfr/persons/{id}",
        "/api/dfr/plots",
        "/oauth/token",
        "/api/dfr/health/ready",
    ] {
        assert!(
            document["paths"].get(path).is_some(),
            "{path} is missing from the OpenAPI document"
        );
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}
