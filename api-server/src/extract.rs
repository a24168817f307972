//! A JSON body extractor whose rejections are problem+json with the offending field.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(from_rejection(rejection)),
        }
    }
}

fn from_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(error) => {
            // "Failed to deserialize the JSON body into the target type: birthDate: input
            // contains invalid characters at line 1 column 40" -> field birthDate.
            let text = std::error::Error::source(&error)
                .map(ToString::to_string)
                .unwrap_or_else(|| error.body_text());
            let (field, message) = match text.split_once(": ") {
                Some((path, message)) if !path.contains(' ') => {
                    (path.to_string(), message.to_string())
                }
                _ => (
                    unknown_field(&text).unwrap_or_else(|| "body".into()),
                    text.clone(),
                ),
            };
            ApiError::Validation {
                detail: format!("{field}: {message}"),
                fields: vec![FieldError { field, message }],
            }
        }
        JsonRejection::JsonSyntaxError(error) => ApiError::MalformedBody(
            std::error::Error::source(&error)
                .map(ToString::to_string)
                .unwrap_or_else(|| error.body_text()),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::MalformedBody(
            "send the body as JSON with Content-Type: application/json".into(),
        ),
        JsonRejection::BytesRejection(error) => {
            let text = error.body_text();
            if text.contains("length limit") || text.contains("too large") {
                ApiError::PayloadTooLarge
            } else {
                ApiError::MalformedBody(text)
            }
        }
        other => ApiError::MalformedBody(other.body_text()),
    }
}

/// serde names an unknown field as: unknown field `colour`, expected one of ...
fn unknown_field(text: &str) -> Option<String> {
    let rest = text.split_once("unknown field `")?.1;
    Some(rest.split_once('`')?.0.to_string())
}
