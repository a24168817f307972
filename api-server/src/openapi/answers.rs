//! The answers every operation can give besides its own: the document lists each status the
//! server can send (so a client, and the contract test, can rely on the list) without every
//! handler repeating the same error responses. What is added follows what the code does:
//! `Actor` answers 401 and `require` 403 on secured operations; axum's path, query and body
//! rejections 400 (a malformed id, query or JSON), 413 (over the body limit) and 415 (a form
//! or CSV body of another type); `ApiError::Validation` 422; `expected_version` 428 and 412
//! where If-Match is a parameter; unique constraints 409 on writes. Errors are problem+json.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response, ResponseBuilder};

const PROBLEM: &str = "application/problem+json";
const PROBLEM_SCHEMA: &str = "#/components/schemas/ProblemDoc";

pub fn add_error_answers(document: &mut OpenApi) {
    for item in document.paths.paths.values_mut() {
        let operations = [
            (&mut item.get, false),
            (&mut item.put, true),
            (&mut item.post, true),
            (&mut item.delete, true),
            (&mut item.patch, true),
        ];
        for (operation, writes) in operations {
            if let Some(operation) = operation.as_mut() {
                add_to(operation, writes);
            }
        }
    }
}

fn add_to(operation: &mut Operation, writes: bool) {
    problems_as_problem_json(operation);
    etag_pattern(operation);
    no_nul_in_query(operation);
    let parameters: Vec<(ParameterIn, String)> = operation
        .parameters
        .iter()
        .flatten()
        .filter_map(|p| match p {
            RefOr::T(p) => Some((p.parameter_in.clone(), p.name.to_ascii_lowercase())),
            RefOr::Ref(_) => None,
        })
        .collect();
    let has = |place: ParameterIn| parameters.iter().any(|(p, _)| *p == place);
    let if_match = parameters
        .iter()
        .any(|(p, name)| *p == ParameterIn::Header && name == "if-match");
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let body = operation.request_body.is_some();
    let mut answers: Vec<(&str, &str)> = Vec::new();
    if secured {
        answers.push(("401", "No bearer token, or an expired or invalid one"));
        answers.push(("403", "The role or scopes do not allow this"));
    }
    if body || has(ParameterIn::Query) || has(ParameterIn::Path) {
        answers.push(("400", "A malformed id, query string or body"));
        answers.push(("422", "A field the server refuses (validation_failed)"));
    }
    if has(ParameterIn::Path) {
        answers.push(("404", "No such record, or not in your areas"));
    }
    if body {
        answers.push(("413", "The body is larger than the server accepts"));
        answers.push(("415", "The body is not of the documented content type"));
    }
    if writes && secured {
        answers.push(("409", "The change conflicts with an existing record"));
    }
    if if_match {
        answers.push((
            "412",
            "The record changed since it was read (stale_version)",
        ));
        answers.push(("428", "If-Match is missing (if_match_required)"));
    }
    for (status, description) in answers {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| problem(description));
    }
}

fn problem(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(PROBLEM, Content::new(Some(Ref::new(PROBLEM_SCHEMA))))
        .into()
}

/// utoipa files a `body = ProblemDoc` under application/json; the server answers errors as
/// application/problem+json.
fn problems_as_problem_json(operation: &mut Operation) {
    for response in operation.responses.responses.values_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let is_problem = response.content.get("application/json").is_some_and(|c| {
            matches!(c, RefOr::T(c)
                if matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location == PROBLEM_SCHEMA))
        });
        if is_problem && let Some(content) = response.content.shift_remove("application/json") {
            response.content.insert(PROBLEM.to_string(), content);
        }
    }
}

/// If-Match takes back the ETag the server wrote: `"3"` or `W/"3"`.
fn etag_pattern(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        if let RefOr::T(parameter) = parameter
            && parameter.parameter_in == ParameterIn::Header
            && parameter.name.eq_ignore_ascii_case("if-match")
            && let Some(RefOr::T(utoipa::openapi::Schema::Object(object))) =
                parameter.schema.as_mut()
        {
            object.pattern = Some(super::constraints::ETAG_PATTERN.into());
        }
    }
}

/// PostgreSQL text cannot hold U+0000, so a query filter with one is refused (422); said as a
/// pattern on each free-text query parameter (those with a pattern or enum already exclude it).
fn no_nul_in_query(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        if let RefOr::T(parameter) = parameter
            && parameter.parameter_in == ParameterIn::Query
            && let Some(RefOr::T(utoipa::openapi::Schema::Object(object))) =
                parameter.schema.as_mut()
            && matches!(
                object.schema_type,
                utoipa::openapi::schema::SchemaType::Type(utoipa::openapi::schema::Type::String)
            )
            && object.format.is_none()
            && object.pattern.is_none()
            && object.enum_values.is_none()
        {
            object.pattern = Some("^[^\\u0000]*$".into());
        }
    }
}
