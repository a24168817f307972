//! A submission's answers checked against the form version it was made with: every problem
//! found, each naming its answer (`data.<field>`).

use chrono::NaiveDate;
use serde_json::{Map, Value};

use super::definition::{Condition, Field, FieldType, FormView, MAX_TEXT};
use crate::error::FieldError;

/// Whether `condition` holds for the answers given.
fn holds(condition: &Condition, data: &Map<String, Value>) -> bool {
    match data.get(&condition.field) {
        Some(Value::Array(items)) => items.contains(&condition.equals),
        Some(answer) => answer == &condition.equals,
        None => false,
    }
}

fn number_in_bounds(field: &Field, value: f64) -> Option<String> {
    match (field.min, field.max) {
        (Some(min), _) if value < min => Some(format!("must be at least {min}")),
        (_, Some(max)) if value > max => Some(format!("must be at most {max}")),
        _ => None,
    }
}

/// The problem with one given answer, if any.
fn check(field: &Field, answer: &Value) -> Option<String> {
    match field.kind {
        FieldType::Text => match answer.as_str() {
            Some(text) if !text.trim().is_empty() && text.chars().count() <= MAX_TEXT => None,
            _ => Some(format!("must be text of 1 to {MAX_TEXT} characters")),
        },
        FieldType::Integer => match answer.as_i64() {
            Some(n) => number_in_bounds(field, n as f64),
            None => Some("must be a whole number".into()),
        },
        FieldType::Decimal => match answer.as_f64() {
            Some(n) => number_in_bounds(field, n),
            None => Some("must be a number".into()),
        },
        FieldType::Boolean => (!answer.is_boolean()).then(|| "must be true or false".into()),
        FieldType::Date => match answer
            .as_str()
            .map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d"))
        {
            Some(Ok(_)) => None,
            _ => Some("must be a date, YYYY-MM-DD".into()),
        },
        FieldType::SelectOne => match answer.as_str() {
            Some(choice) if field.choices.iter().any(|c| c == choice) => None,
            _ => Some(format!("must be one of {}", field.choices.join(", "))),
        },
        FieldType::SelectMultiple => {
            let Some(items) = answer.as_array() else {
                return Some("must be a list of choices".into());
            };
            for (i, item) in items.iter().enumerate() {
                if !item
                    .as_str()
                    .is_some_and(|c| field.choices.iter().any(|choice| choice == c))
                {
                    return Some(format!("{item} is not one of {}", field.choices.join(", ")));
                }
                if items[..i].contains(item) {
                    return Some(format!("{item} is chosen twice"));
                }
            }
            (field.required && items.is_empty()).then(|| "choose at least one".into())
        }
    }
}

/// Every problem of `data` as answers to `form`.
pub fn problems(form: &FormView, data: &Map<String, Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut error = |name: &str, message: String| {
        errors.push(FieldError {
            field: format!("data.{name}"),
            message,
        })
    };
    for name in data.keys() {
        if !form.fields.iter().any(|f| &f.name == name) {
            error(
                name,
                format!("not a field of form {} version {}", form.key, form.version),
            );
        }
    }
    for field in &form.fields {
        let answer = data.get(&field.name).filter(|v| !v.is_null());
        let asked = field.relevant.as_ref().is_none_or(|c| holds(c, data));
        match (asked, answer) {
            (false, Some(_)) => {
                if let Some(condition) = &field.relevant {
                    error(
                        &field.name,
                        format!(
                            "not asked unless {} is {}",
                            condition.field, condition.equals
                        ),
                    );
                }
            }
            (false, None) => {}
            (true, None) if field.required => error(&field.name, "is required".into()),
            (true, None) => {}
            (true, Some(answer)) => {
                if let Some(problem) = check(field, answer) {
                    error(&field.name, problem);
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::forms::definition::Subject;
    use serde_json::json;

    fn form() -> FormView {
        let fields = serde_json::from_value(json!([
            {"name": "grows_crops", "type": "boolean", "required": true},
            {"name": "crops", "type": "select_multiple", "choices": ["taro", "yam"], "required": true,
             "relevant": {"field": "grows_crops", "equals": true}},
            {"name": "hectares", "type": "decimal", "min": 0, "max": 1000},
            {"name": "workers", "type": "integer", "min": 0},
            {"name": "visited", "type": "date"},
            {"name": "note", "type": "text"},
            {"name": "water", "type": "select_one", "choices": ["rain", "river"]}
        ]))
        .unwrap_or_default();
        FormView {
            key: "survey".into(),
            version: 2,
            title: "Survey".into(),
            subject: Subject::Person,
            fields,
            created_at: chrono::Utc::now(),
            created_by: uuid::Uuid::nil(),
        }
    }

    fn fields_of(data: Value) -> Vec<String> {
        let data = data.as_object().cloned().unwrap_or_default();
        problems(&form(), &data)
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn good_answers_pass_and_conditions_decide_what_is_asked() {
        assert_eq!(form().fields.len(), 7);
        assert!(fields_of(json!({"grows_crops": true, "crops": ["taro"], "hectares": 1.5, "workers": 3, "visited": "2026-11-30", "note": "ok", "water": "rain"})).is_empty());
        assert!(fields_of(json!({"grows_crops": false})).is_empty());
        assert_eq!(fields_of(json!({"grows_crops": true})), ["data.crops"]);
        assert_eq!(
            fields_of(json!({"grows_crops": false, "crops": ["taro"]})),
            ["data.crops"]
        );
    }

    #[test]
    fn every_bad_answer_is_named() {
        assert_eq!(
            fields_of(
                json!({"colour": "red", "crops": ["rice", "taro"], "hectares": -1, "workers": 1.5,
                             "visited": "30/11/2026", "note": "", "water": "well"})
            ),
            [
                "data.colour",
                "data.grows_crops",
                "data.crops",
                "data.hectares",
                "data.workers",
                "data.visited",
                "data.note",
                "data.water"
            ]
        );
        assert_eq!(
            fields_of(json!({"grows_crops": true, "crops": ["yam", "yam"]})),
            ["data.crops"]
        );
    }
}
