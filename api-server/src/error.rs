//! The one error type of the service, answered as RFC 7807 problem+json with a stable code.
//! A database error converts through `constraint`: a violated constraint the client caused
//! becomes its own answer, anything else an internal error.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::constraint::{self, Constraint, Kind, Violation};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    Validation {
        detail: String,
        fields: Vec<FieldError>,
    },
    #[error("the request body is not valid JSON for this endpoint: {0}")]
    MalformedBody(String),
    #[error("authentication required")]
    Unauthenticated(String),
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    /// `existing` is the record that holds it, when known (not when a concurrent write won).
    #[error("a person with this national ID already exists")]
    DuplicateNationalId { existing: Option<String> },
    /// A unique constraint refused the write; it names the field whose value is taken.
    #[error("{}: {}", .0.field, .0.message)]
    Taken(&'static Constraint),
    #[error("{0}")]
    Conflict(String),
    /// A change that would leave the registry without an enabled national admin.
    #[error("the registry must keep at least one enabled national admin")]
    LastNationalAdmin,
    #[error("If-Match is required for this change; send the ETag you last read")]
    PreconditionRequired,
    #[error("the record changed since you read it (version {current}); read it again and retry")]
    StaleVersion { current: i32 },
    #[error("invalid credentials")]
    InvalidGrant(String),
    #[error("the request body is larger than this endpoint accepts")]
    PayloadTooLarge,
    /// A sync push with more mutations than one request may carry.
    #[error("mutations: a push carries at most {max} mutations; send the rest in another push")]
    TooManyMutations { max: usize },
    /// A sync cursor this database cannot have handed out (it is ahead of every transaction
    /// the database has started: a cursor from before a restore, or from another registry).
    #[error(
        "cursor: this registry did not hand out this cursor (it may have been restored from a backup); pull again without a cursor"
    )]
    StaleCursor,
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Debug, Serialize, serde::Deserialize, Clone, PartialEq, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    existing: Option<String>,
}

impl ApiError {
    /// The stable code a client sees for this error (also each rejected mutation's code).
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    /// The invalid or taken fields this error names, if any.
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            ApiError::Validation { fields, .. } => fields.clone(),
            ApiError::Taken(taken) => vec![FieldError {
                field: taken.field.into(),
                message: taken.message.into(),
            }],
            _ => Vec::new(),
        }
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::Validation {
            detail: format!("{field}: {message}"),
            fields: vec![FieldError {
                field: field.into(),
                message,
            }],
        }
    }

    /// The detail a client is told: never SQL or internals.
    pub fn public_detail(&self) -> String {
        match self {
            ApiError::Database(_) | ApiError::Internal(_) => {
                "the server could not complete the request".to_string()
            }
            ApiError::Unauthenticated(why) | ApiError::InvalidGrant(why) => why.clone(),
            other => other.to_string(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Validation { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Invalid input",
            ),
            ApiError::MalformedBody(_) => (
                StatusCode::BAD_REQUEST,
                "malformed_body",
                "Malformed request body",
            ),
            ApiError::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
            ),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            ApiError::DuplicateNationalId { .. } => (
                StatusCode::CONFLICT,
                "duplicate_national_id",
                "Duplicate person",
            ),
            ApiError::Taken(taken) if taken.kind == Kind::RecordId => {
                (StatusCode::CONFLICT, "duplicate_id", "Duplicate id")
            }
            ApiError::Taken(_) | ApiError::Conflict(_) => {
                (StatusCode::CONFLICT, "conflict", "Conflict")
            }
            ApiError::LastNationalAdmin => (
                StatusCode::CONFLICT,
                "last_national_admin",
                "Last national admin",
            ),
            ApiError::PreconditionRequired => (
                StatusCode::PRECONDITION_REQUIRED,
                "if_match_required",
                "If-Match required",
            ),
            ApiError::StaleVersion { .. } => (
                StatusCode::PRECONDITION_FAILED,
                "stale_version",
                "Stale version",
            ),
            ApiError::InvalidGrant(_) => {
                (StatusCode::BAD_REQUEST, "invalid_grant", "Invalid grant")
            }
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            ApiError::TooManyMutations { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch_too_large",
                "Batch too large",
            ),
            ApiError::StaleCursor => (StatusCode::GONE, "stale_cursor", "Stale cursor"),
            ApiError::Database(_) | ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let detail = self.public_detail();
        let (errors, existing) = match self {
            ApiError::Validation { fields, .. } => (fields, None),
            ApiError::DuplicateNationalId { existing } => (Vec::new(), existing),
            ApiError::TooManyMutations { max } => (
                vec![FieldError {
                    field: "mutations".into(),
                    message: format!("at most {max} mutations per push"),
                }],
                None,
            ),
            ApiError::StaleCursor => (
                vec![FieldError {
                    field: "cursor".into(),
                    message: "not handed out by this registry; pull again without one".into(),
                }],
                None,
            ),
            ApiError::Taken(taken) => (
                vec![FieldError {
                    field: taken.field.into(),
                    message: taken.message.into(),
                }],
                None,
            ),
            _ => (Vec::new(), None),
        };
        let problem = Problem {
            type_: format!("https://dfr.io/problems/{code}"),
            title,
            status: status.as_u16(),
            detail,
            code,
            errors,
            existing,
        };
        let mut response = (status, Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<&'static Constraint> for ApiError {
    fn from(violated: &'static Constraint) -> Self {
        match violated.kind {
            Kind::NationalId => ApiError::DuplicateNationalId { existing: None },
            Kind::RecordId | Kind::Unique => ApiError::Taken(violated),
            Kind::Reference => ApiError::field(violated.field, violated.message),
        }
    }
}

/// Every `?` on a database error comes here, so no write path can forget to tell a taken id or
/// national ID from a server fault.
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        // PostgreSQL text cannot hold U+0000: a NUL in a filter or a field is the client's
        // input, not a server fault (22021 character_not_in_repertoire, 22P05 untranslatable).
        if let Some(code) = error.as_database_error().and_then(|e| e.code())
            && (code == "22021" || code == "22P05")
        {
            return ApiError::Validation {
                detail: "text must not contain the NUL character (U+0000)".into(),
                fields: Vec::new(),
            };
        }
        match constraint::violation(&error) {
            Some(Violation::Known(violated)) => ApiError::from(violated),
            Some(Violation::OtherUnique) => {
                ApiError::Conflict("the change conflicts with an existing record".into())
            }
            None => ApiError::Database(error),
        }
    }
}

/// RFC 7807 problem details, as every error is answered (for the OpenAPI document).
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ProblemDoc {
    #[serde(rename = "type")]
    type_: String,
    title: String,
    status: u16,
    detail: String,
    /// Stable machine-readable code, e.g. validation_failed, stale_version.
    code: String,
    errors: Option<Vec<FieldError>>,
    /// For duplicate_national_id: the existing record, when known.
    existing: Option<String>,
}

/// Rejections produced by axum itself (a malformed path id, query string or form, a wrong
/// method) arrive as plain text; answer them as problem+json like every other error.
pub async fn plain_errors_as_problems(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    // A 405 names the methods the path has; the problem keeps that header.
    let allow = response.headers().get(header::ALLOW).cloned();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/problem+json")
                || v.as_bytes().starts_with(b"application/json")
        });
    if !status.is_client_error() || is_problem {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let detail = String::from_utf8_lossy(&body).trim().to_string();
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        _ => "bad_request",
    };
    let problem = Problem {
        type_: format!("https://dfr.io/problems/{code}"),
        title: status.canonical_reason().unwrap_or("Bad request"),
        status: status.as_u16(),
        detail: if detail.is_empty() {
            status.to_string()
        } else {
            detail
        },
        code,
        errors: Vec::new(),
        existing: None,
    };
    let mut response = (status, Json(problem)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/problem+json"),
    );
    if let Some(allow) = allow {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}
