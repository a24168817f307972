//! What a client sends and receives for a person, and the checks a request body must pass
//! before anything is written.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Role;
use crate::crypto::KeyRing;
use crate::error::{ApiError, ApiResult};

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersonInput {
    /// Client-generated, so an offline device can create and reference records.
    pub id: Option<Uuid>,
    pub national_id: NationalId,
    pub given_name: String,
    pub family_name: String,
    /// ISO 5218: 0 not known, 1 male, 2 female, 9 not applicable.
    pub sex: i16,
    pub birth_date: NaiveDate,
    #[serde(default)]
    pub birth_date_estimated: bool,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub area_code: String,
    #[serde(default = "active")]
    pub status: String,
}

fn active() -> String {
    "active".into()
}

#[derive(Deserialize, Serialize, Debug, Clone, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NationalId {
    pub system: String,
    pub value: String,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonView {
    pub id: Uuid,
    pub version: i32,
    pub national_id: NationalId,
    pub given_name: String,
    pub family_name: String,
    pub sex: i16,
    pub birth_date: NaiveDate,
    pub birth_date_estimated: bool,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub area_code: String,
    pub status: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Uuid,
}

/// Whether a reader gets national IDs, phones and e-mails in clear or masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pii {
    Clear,
    Masked,
}

impl Pii {
    pub fn for_role(role: Role) -> Pii {
        if role.sees_pii() {
            Pii::Clear
        } else {
            Pii::Masked
        }
    }
}

/// ID systems are codes: `ton-nid` and `TON-NID` are one system.
pub fn normalize_system(system: &str) -> String {
    system.trim().to_uppercase()
}

impl PersonInput {
    /// Normalizes what has one canonical form and checks every field; the first bad field is
    /// the error.
    pub fn checked(mut self) -> ApiResult<PersonInput> {
        self.national_id.system = normalize_system(&self.national_id.system);
        self.validate()?;
        Ok(self)
    }

    fn validate(&self) -> ApiResult<()> {
        let text = |field: &str, value: &str, max: usize| {
            if value.trim().is_empty() || value.chars().count() > max {
                Err(ApiError::field(
                    field,
                    format!("must be 1 to {max} characters"),
                ))
            } else {
                Ok(())
            }
        };
        text("nationalId.system", &self.national_id.system, 64)?;
        text("nationalId.value", &self.national_id.value, 64)?;
        text("givenName", &self.given_name, 200)?;
        text("familyName", &self.family_name, 200)?;
        if ![0, 1, 2, 9].contains(&self.sex) {
            return Err(ApiError::field(
                "sex",
                "must be an ISO 5218 code: 0, 1, 2 or 9",
            ));
        }
        let today = Utc::now().date_naive();
        if self.birth_date > today
            || self.birth_date < NaiveDate::from_ymd_opt(1880, 1, 1).unwrap_or(today)
        {
            return Err(ApiError::field(
                "birthDate",
                "must be a date between 1880-01-01 and today",
            ));
        }
        if let Some(phone) = &self.phone
            && !(phone.len() >= 5
                && phone.len() <= 20
                && phone
                    .trim_start_matches('+')
                    .chars()
                    .all(|c| c.is_ascii_digit()))
        {
            return Err(ApiError::field(
                "phone",
                "must be an international number such as +67612345678",
            ));
        }
        if let Some(email) = &self.email
            && !(email.chars().count() <= 254
                && email
                    .split_once('@')
                    .is_some_and(|(a, d)| !a.is_empty() && d.contains('.')))
        {
            return Err(ApiError::field("email", "must be an e-mail address"));
        }
        if !["active", "inactive", "deceased"].contains(&self.status.as_str()) {
            return Err(ApiError::field(
                "status",
                "must be active, inactive or deceased",
            ));
        }
        Ok(())
    }
}

impl PersonInput {
    /// Whether this (checked) request describes `person`, read with PII in clear: a create sent
    /// again is answered with what it created only if nothing in it differs.
    pub fn describes(&self, person: &PersonView) -> bool {
        self.national_id.system == person.national_id.system
            && self.national_id.value == person.national_id.value
            && self.given_name.trim() == person.given_name
            && self.family_name.trim() == person.family_name
            && self.sex == person.sex
            && self.birth_date == person.birth_date
            && self.birth_date_estimated == person.birth_date_estimated
            && self.phone == person.phone
            && self.email == person.email
            && self.area_code == person.area_code
            && self.status == person.status
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    pub area: Option<String>,
    pub status: Option<String>,
    /// Matches the start of the family or given name, case-insensitively.
    pub name: Option<String>,
    /// Exact national ID, found through the blind index.
    pub national_id_system: Option<String>,
    pub national_id: Option<String>,
    /// The `next` cursor of the previous page.
    pub after: Option<Uuid>,
    pub limit: Option<i64>,
}

/// A search as the store runs it: checked, the name as a lowercased prefix and the national ID as its
/// normalized system and blind index.
pub struct Filter {
    pub area: Option<String>,
    pub status: Option<String>,
    pub name_prefix: Option<String>,
    pub national_id: Option<(String, String)>,
    pub after: Option<Uuid>,
    pub limit: i64,
}

impl SearchQuery {
    pub fn filter(self, ring: &KeyRing) -> ApiResult<Filter> {
        let limit = crate::routes::paging::limit(self.limit)?;
        let national_id = match (&self.national_id_system, &self.national_id) {
            (Some(system), Some(value)) => {
                Some((normalize_system(system), ring.blind_index(system, value)))
            }
            (None, None) => None,
            _ => {
                return Err(ApiError::field(
                    "nationalId",
                    "give both nationalIdSystem and nationalId",
                ));
            }
        };
        // The caller's text is a prefix, never a pattern (the search compares, it does not
        // match LIKE patterns).
        let name_prefix = self.name.as_ref().map(|n| n.trim().to_lowercase());
        Ok(Filter {
            area: self.area,
            status: self.status,
            name_prefix,
            national_id,
            after: self.after,
            limit,
        })
    }
}
