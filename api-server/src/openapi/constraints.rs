//! The rules the server checks on a single field or parameter, stated in the document so that
//! a request the document calls valid is one the server accepts (the contract test checks
//! both ways). Each rule names the check it mirrors; values come from the same constants where
//! the code has one. Rules that involve other fields or other records (a household's one head,
//! a referenced person that must exist, a date before today) cannot be stated in JSON Schema
//! and are not here.

use serde_json::{Value, json};
use utoipa::Number;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::Object;
use utoipa::openapi::{OpenApi, RefOr, Schema};

use crate::routes::{households, paging, plots, profiles, users};

/// Text the server trims and refuses when blank: at least one non-space character.
const NOT_BLANK: &str = r"\S";
/// The ETag the server hands out, as If-Match must send it back (`common::expected_version`).
pub const ETAG_PATTERN: &str = r#"^(W/)?"[0-9]{1,9}"$"#;

/// What a rule sets on a string, number or enum schema.
enum Rule {
    /// 1 to `max` characters, not blank.
    Text(usize),
    Pattern(&'static str, usize),
    OneOf(&'static [&'static str]),
    IntOneOf(&'static [i64]),
    Range(i64, i64),
    Positive,
    Length(usize, usize),
}

fn apply(object: &mut Object, rule: &Rule) {
    match rule {
        Rule::Text(max) => {
            object.min_length = Some(1);
            object.max_length = Some(*max);
            object.pattern = Some(NOT_BLANK.into());
        }
        Rule::Pattern(pattern, max) => {
            object.pattern = Some((*pattern).into());
            object.max_length = Some(*max);
        }
        Rule::OneOf(values) => {
            object.enum_values = Some(values.iter().map(|v| json!(v)).collect::<Vec<Value>>());
        }
        Rule::IntOneOf(values) => {
            object.enum_values = Some(values.iter().map(|v| json!(v)).collect::<Vec<Value>>());
        }
        Rule::Range(min, max) => {
            object.minimum = Some(Number::Int(*min as isize));
            object.maximum = Some(Number::Int(*max as isize));
        }
        Rule::Positive => object.exclusive_minimum = Some(Number::Int(0)),
        Rule::Length(min, max) => {
            object.min_length = Some(*min);
            object.max_length = Some(*max);
        }
    }
}

const ROLES: &[&str] = &[
    "national_admin",
    "supervisor",
    "enumerator",
    "farmer",
    "api_client",
];
const TRANSITIONS: &[&str] = &["given", "refused", "withdrawn", "expired"];
const GRANTS: &[&str] = &["password", "client_credentials", "refresh_token"];

/// (component, property, rule). The checks: persons/input.rs `validate`, areas.rs `create`,
/// consents/record.rs `check` and `check_transition`, profiles/record.rs `check`,
/// holdings/record.rs `check`, households/record.rs `check_members`, plots/record.rs
/// `checked`, users/record.rs `check_username`, `check_password` and `Access::checked`,
/// token.rs `token`.
fn property_rules() -> Vec<(&'static str, &'static str, Rule)> {
    vec![
        ("NationalId", "system", Rule::Text(64)),
        ("NationalId", "value", Rule::Text(64)),
        ("PersonInput", "givenName", Rule::Text(200)),
        ("PersonInput", "familyName", Rule::Text(200)),
        // ISO 5218.
        ("PersonInput", "sex", Rule::IntOneOf(&[0, 1, 2, 9])),
        ("PersonInput", "phone", Rule::Pattern(r"^\+*[0-9]*$", 20)),
        ("PersonInput", "phone", Rule::Length(5, 20)),
        (
            "PersonInput",
            "email",
            Rule::Pattern(r"^[^@]+@[^.]*\.", 254),
        ),
        (
            "PersonInput",
            "status",
            Rule::OneOf(&["active", "inactive", "deceased"]),
        ),
        ("Area", "code", Rule::Pattern(r"^[A-Z0-9.-]+$", 63)),
        ("Area", "name", Rule::Text(200)),
        ("ConsentRequest", "purpose", Rule::Text(500)),
        ("ConsentRequest", "recipient", Rule::Text(200)),
        ("ConsentRequest", "terms", Rule::Text(20_000)),
        ("Transition", "state", Rule::OneOf(TRANSITIONS)),
        (
            "ProfileInput",
            "primaryActivity",
            Rule::OneOf(profiles::record::ACTIVITIES),
        ),
        ("ProfileInput", "cooperative", Rule::Text(200)),
        ("ProfileInput", "yearsFarming", Rule::Range(0, 100)),
        (
            "HoldingInput",
            "season",
            Rule::Pattern("^[0-9]{4}[A-Z]?$", 5),
        ),
        ("HoldingInput", "kind", Rule::OneOf(&["crop", "livestock"])),
        ("HoldingInput", "item", Rule::Pattern(NOT_BLANK, 100)),
        ("HoldingInput", "quantity", Rule::Positive),
        ("Member", "role", Rule::OneOf(households::record::ROLES)),
        ("PlotInput", "tenure", Rule::OneOf(plots::record::TENURES)),
        (
            "PlotInput",
            "landUse",
            Rule::OneOf(plots::record::LAND_USES),
        ),
        (
            "NewUser",
            "username",
            Rule::Pattern(r"^[A-Za-z0-9._@-]{3,100}$", 100),
        ),
        (
            "NewUser",
            "password",
            Rule::Length(users::record::MIN_PASSWORD, users::record::MAX_PASSWORD),
        ),
        ("NewUser", "role", Rule::OneOf(ROLES)),
        ("Access", "role", Rule::OneOf(ROLES)),
        (
            "PasswordReset",
            "password",
            Rule::Length(users::record::MIN_PASSWORD, users::record::MAX_PASSWORD),
        ),
        ("TokenRequest", "grant_type", Rule::OneOf(GRANTS)),
    ]
}

/// (path, query parameter, rule).
fn parameter_rules() -> Vec<(&'static str, &'static str, Rule)> {
    let mut rules: Vec<(&'static str, &'static str, Rule)> = [
        "/api/dfr/persons",
        "/api/dfr/plots",
        "/api/dfr/consents",
        "/api/dfr/households",
        "/api/dfr/farmer-profiles",
        "/api/dfr/holdings",
        "/api/dfr/users",
        "/api/dfr/form-submissions",
        "/api/dfr/sync/conflicts",
    ]
    .into_iter()
    .map(|path| (path, "limit", Rule::Range(1, paging::MAX_LIMIT)))
    .collect();
    rules.push((
        "/api/dfr/sync/changes",
        "limit",
        Rule::Range(1, crate::routes::sync::pull::MAX_PAGE),
    ));
    rules.push((
        "/api/dfr/exports/persons",
        "format",
        Rule::OneOf(&["csv", "xlsx"]),
    ));
    rules.push((
        "/api/dfr/exports/plots",
        "format",
        Rule::OneOf(&["geojson"]),
    ));
    rules
}

/// The object schema inside `schema` (itself, or the non-null branch utoipa makes of an
/// Option).
fn object_of(schema: &mut RefOr<Schema>) -> Option<&mut Object> {
    match schema {
        RefOr::T(Schema::Object(object)) => Some(object),
        _ => None,
    }
}

pub fn add_constraints(document: &mut OpenApi) {
    if let Some(components) = document.components.as_mut() {
        for (component, property, rule) in property_rules() {
            let target = components
                .schemas
                .get_mut(component)
                .and_then(object_of)
                .and_then(|object| object.properties.get_mut(property))
                .and_then(object_of);
            // A rule for a property the document no longer has is caught by this module's test.
            if let Some(object) = target {
                apply(object, &rule);
            }
        }
    }
    for (path, name, rule) in parameter_rules() {
        let Some(item) = document.paths.paths.get_mut(path) else {
            continue;
        };
        let operations: [&mut Option<Operation>; 1] = [&mut item.get];
        for operation in operations.into_iter().flatten() {
            for parameter in operation.parameters.iter_mut().flatten() {
                if let RefOr::T(parameter) = parameter
                    && parameter.parameter_in == ParameterIn::Query
                    && parameter.name == name
                    && let Some(object) = parameter.schema.as_mut().and_then(object_of)
                {
                    apply(object, &rule);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_names_a_property_or_parameter_the_document_has() {
        let mut document = crate::routes::api().into_openapi();
        let components = document.components.as_mut().map(|c| c.schemas.clone());
        for (component, property, _) in property_rules() {
            let found = components
                .as_ref()
                .and_then(|schemas| schemas.get(component).cloned())
                .is_some_and(|mut schema| {
                    object_of(&mut schema).is_some_and(|o| {
                        o.properties
                            .get(property)
                            .cloned()
                            .is_some_and(|mut p| object_of(&mut p).is_some())
                    })
                });
            assert!(found, "{component}.{property}");
        }
        for (path, name, _) in parameter_rules() {
            let found = document.paths.paths.get(path).is_some_and(|item| {
                item.get.as_ref().is_some_and(|op| {
                    op.parameters.iter().flatten().any(|p| {
                        matches!(p, RefOr::T(p) if p.name == name && p.parameter_in == ParameterIn::Query)
                    })
                })
            });
            assert!(found, "{path} ?{name}");
        }
    }
}
