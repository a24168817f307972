//! The frame of the OpenAPI 3 document: title, tags and the bearer scheme. The paths and their
//! schemas come from the route modules, which register each handler once (`routes::api`). The
//! document is checked in as api-server/openapi.json; `answers` adds the error answers every
//! operation shares, `constraints` the single-field rules the server checks.

mod answers;
mod constraints;

pub use constraints::ETAG_PATTERN;

use utoipa::OpenApi;
use utoipa::openapi::Components;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(title = "Digital Farmer Registry API", description = "Registry of farmers, their households and plots, per country."),
    tags((name = "persons"), (name = "plots"), (name = "consent"), (name = "households"), (name = "areas"), (name = "farmers"), (name = "sync"), (name = "auth"), (name = "health"))
)]
pub struct ApiDoc;

/// The finished document as JSON: the bearer scheme the operations refer to, and a fixed
/// version so the checked-in file does not change with every release.
pub fn render(mut document: utoipa::openapi::OpenApi) -> Result<String, serde_json::Error> {
    document.info.version = "v1".into();
    // Constraints first: the answers leave alone a parameter that already has a rule.
    constraints::add_constraints(&mut document);
    answers::add_error_answers(&mut document);
    document
        .components
        .get_or_insert_with(Components::new)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    document.to_pretty_json().map(|json| json + "\n")
}
