//! Form definitions: fields with a type, choices, required, bounds and a simple condition
//! ("asked only when an earlier field equals a value"), the checks a definition must pass
//! before it is published, and the SQL. A published version never changes; publishing again
//! makes the next version.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, FieldError};

pub const MAX_FIELDS: usize = 200;
pub const MAX_TEXT: usize = 2000;

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Integer,
    Decimal,
    Boolean,
    /// YYYY-MM-DD.
    Date,
    SelectOne,
    SelectMultiple,
}

/// The field is asked only when the earlier field `field` has the answer `equals` (for a
/// select_multiple field: includes it).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub field: String,
    pub equals: Value,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Field {
    /// Lower case letters, digits and _, starting with a letter; unique in the form.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(rename = "type")]
    pub kind: FieldType,
    #[serde(default)]
    pub required: bool,
    /// The allowed answers of a select_one or select_multiple field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// Bounds of an integer or decimal answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relevant: Option<Condition>,
}

/// What a record a form is about: a person, a household or a plot.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Person,
    Household,
    Plot,
}

impl Subject {
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Person => "person",
            Subject::Household => "household",
            Subject::Plot => "plot",
        }
    }

    pub fn parse(text: &str) -> Option<Subject> {
        [Subject::Person, Subject::Household, Subject::Plot]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FormInput {
    /// Lower case letters, digits, _ and -, starting with a letter.
    pub key: String,
    pub title: String,
    pub subject: Subject,
    pub fields: Vec<Field>,
}

#[derive(Serialize, Debug, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FormView {
    pub key: String,
    pub version: i32,
    pub title: String,
    pub subject: Subject,
    pub fields: Vec<Field>,
    pub created_at: DateTime<Utc>,
    pub created_by: Uuid,
}

fn is_name(text: &str, extra: &[char], max: usize) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && text.chars().count() <= max
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(&c))
}

/// Every problem of a definition, each naming its place (`fields[2].choices`).
pub fn problems(input: &FormInput) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut error = |field: String, message: &str| {
        errors.push(FieldError {
            field,
            message: message.into(),
        })
    };
    if !is_name(&input.key, &['_', '-'], 63) {
        error(
            "key".into(),
            "must be lower case letters, digits, _ and -, starting with a letter (at most 63)",
        );
    }
    if input.title.trim().is_empty() || input.title.chars().count() > 200 {
        error("title".into(), "must be 1 to 200 characters");
    }
    if input.fields.is_empty() || input.fields.len() > MAX_FIELDS {
        error("fields".into(), "a form has 1 to 200 fields");
    }
    for (i, field) in input.fields.iter().enumerate() {
        let at = |part: &str| format!("fields[{i}].{part}");
        if !is_name(&field.name, &['_'], 63) {
            error(
                at("name"),
                "must be lower case letters, digits and _, starting with a letter (at most 63)",
            );
        }
        if input.fields[..i].iter().any(|f| f.name == field.name) {
            error(at("name"), "another field has this name");
        }
        let select = matches!(field.kind, FieldType::SelectOne | FieldType::SelectMultiple);
        if select {
            if field.choices.is_empty() {
                error(at("choices"), "a select field lists its choices");
            }
            for (j, choice) in field.choices.iter().enumerate() {
                if choice.trim().is_empty() || choice.chars().count() > 100 {
                    error(at("choices"), "each choice is 1 to 100 characters");
                } else if field.choices[..j].contains(choice) {
                    error(at("choices"), "a choice is listed twice");
                }
            }
        } else if !field.choices.is_empty() {
            error(at("choices"), "only select fields have choices");
        }
        let number = matches!(field.kind, FieldType::Integer | FieldType::Decimal);
        if !number && (field.min.is_some() || field.max.is_some()) {
            error(at("min"), "only integer and decimal fields have bounds");
        }
        if let (Some(min), Some(max)) = (field.min, field.max)
            && min > max
        {
            error(at("min"), "is above max");
        }
        if let Some(condition) = &field.relevant {
            match input.fields[..i].iter().find(|f| f.name == condition.field) {
                None => error(
                    at("relevant.field"),
                    "must name an earlier field of the form",
                ),
                Some(earlier)
                    if !earlier.choices.is_empty()
                        && !condition
                            .equals
                            .as_str()
                            .is_some_and(|v| earlier.choices.iter().any(|c| c == v)) =>
                {
                    error(
                        at("relevant.equals"),
                        "must be one of the earlier field's choices",
                    )
                }
                Some(_) => {}
            }
        }
    }
    errors
}

/// A validation error carrying every problem found.
pub fn invalid(errors: Vec<FieldError>) -> ApiError {
    let detail = match errors.as_slice() {
        [] => "invalid".to_string(),
        [one] => format!("{}: {}", one.field, one.message),
        [first, rest @ ..] => format!(
            "{}: {} (and {} more problems)",
            first.field,
            first.message,
            rest.len()
        ),
    };
    ApiError::Validation {
        detail,
        fields: errors,
    }
}

fn view(row: &PgRow) -> ApiResult<FormView> {
    let subject: String = row.try_get("subject")?;
    let fields: Value = row.try_get("fields")?;
    Ok(FormView {
        key: row.try_get("form_key")?,
        version: row.try_get("version")?,
        title: row.try_get("title")?,
        subject: Subject::parse(&subject)
            .ok_or_else(|| ApiError::Internal(format!("unknown form subject {subject}")))?,
        fields: serde_json::from_value(fields).map_err(|e| ApiError::Internal(e.to_string()))?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
    })
}

const COLUMNS: &str = "form_key, version, title, subject, fields, created_at, created_by";

/// Publishes the next version of the form.
pub async fn publish(tx: &mut PgConnection, by: Uuid, input: &FormInput) -> ApiResult<FormView> {
    let fields =
        serde_json::to_value(&input.fields).map_err(|e| ApiError::Internal(e.to_string()))?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO form_definitions (form_key, version, title, subject, fields, created_by) \
         SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5 FROM form_definitions \
         WHERE form_key = $1 RETURNING {COLUMNS}"
    )))
    .bind(&input.key)
    .bind(input.title.trim())
    .bind(input.subject.as_str())
    .bind(fields)
    .bind(by)
    .fetch_one(&mut *tx)
    .await?;
    view(&row)
}

pub async fn find(tx: &mut PgConnection, key: &str, version: i32) -> ApiResult<Option<FormView>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM form_definitions WHERE form_key = $1 AND version = $2"
    )))
    .bind(key)
    .bind(version)
    .fetch_optional(&mut *tx)
    .await?
    .as_ref()
    .map(view)
    .transpose()
}

/// Every version of `key`, or the newest version of every form.
pub async fn list(tx: &mut PgConnection, key: Option<&str>) -> ApiResult<Vec<FormView>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM form_definitions d WHERE ($1::text IS NULL AND version = \
           (SELECT max(version) FROM form_definitions o WHERE o.form_key = d.form_key)) \
         OR form_key = $1 ORDER BY form_key, version"
    )))
    .bind(key)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter().map(view).collect()
}
