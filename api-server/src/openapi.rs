//! The OpenAPI 3 document, generated from the handlers; checked in as api-server/openapi.json.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{areas, consents, health, households, persons, plots, profiles, token};

#[derive(OpenApi)]
#[openapi(
    info(title = "Digital Farmer Registry API", description = "Registry of farmers, their households and plots, per country."),
    paths(
        health::live, health::ready, token::token, token::jwks,
        persons::create, persons::get, persons::search, persons::update, persons::delete,
        plots::create, plots::get,
        consents::request, consents::get, consents::transition,
        households::create, households::get,
        areas::list, areas::create,
        profiles::create_profile, profiles::get_profile, profiles::create_holding, profiles::get_holding,
    ),
    modifiers(&BearerAuth),
    tags((name = "persons"), (name = "plots"), (name = "consent"), (name = "households"), (name = "areas"), (name = "farmers"), (name = "auth"), (name = "health"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

pub fn document() -> Result<String, serde_json::Error> {
    let mut doc = ApiDoc::openapi();
    // The checked-in file must not change with every release.
    doc.info.version = "v1".into();
    doc.to_pretty_json().map(|json| json + "\n")
}
