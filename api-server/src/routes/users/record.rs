//! Users as national admins manage them: what a client sends and gets back, the checks, the
//! SQL, and the audit snapshot (never the password hash or the TOTP secret).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::auth::Role;
use crate::error::{ApiError, ApiResult};

pub const MIN_PASSWORD: usize = 12;
pub const MAX_PASSWORD: usize = 1024;
/// Serializes the changes that could remove the last enabled national admin.
const ADMINS_LOCK: i64 = 0x0df0_a0d2;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    /// At least 12 characters.
    pub password: String,
    /// national_admin, supervisor, enumerator, farmer or api_client.
    pub role: String,
    #[serde(default)]
    pub areas: Vec<String>,
    pub person_id: Option<Uuid>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl NewUser {
    pub fn access(&self) -> Access {
        Access {
            role: self.role.clone(),
            areas: self.areas.clone(),
            person_id: self.person_id,
            scopes: self.scopes.clone(),
        }
    }
}

/// Who a user is in the registry: role, areas (supervisors and enumerators), the person a
/// farmer is, the scopes of an API client.
#[derive(Deserialize, Clone, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Access {
    /// national_admin, supervisor, enumerator, farmer or api_client.
    pub role: String,
    #[serde(default)]
    pub areas: Vec<String>,
    pub person_id: Option<Uuid>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    /// At least 12 characters.
    pub password: String,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: Uuid,
    pub username: String,
    pub role: String,
    pub areas: Vec<String>,
    pub person_id: Option<Uuid>,
    pub scopes: Vec<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// Locked after too many failed sign-ins, until this time (unlock clears it).
    pub locked_until: Option<DateTime<Utc>>,
    pub failed_attempts: i32,
    /// Whether a TOTP second factor is enrolled (national admins need one).
    pub second_factor: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user as created, or as given a new role of national admin: the TOTP secret is shown
/// once, here, and never again.
#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserWithSecret {
    #[serde(flatten)]
    pub user: UserView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totp_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otpauth_uri: Option<String>,
}

impl UserWithSecret {
    pub fn new(user: UserView, totp_secret: Option<String>) -> UserWithSecret {
        let otpauth_uri = totp_secret.as_ref().map(|secret| {
            format!(
                "otpauth://totp/DFR:{}?secret={secret}&issuer=DFR&algorithm=SHA1&digits=6&period=30",
                user.username
            )
        });
        UserWithSecret {
            user,
            totp_secret,
            otpauth_uri,
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    pub role: Option<String>,
    /// Users who have this area.
    pub area: Option<String>,
    pub disabled: Option<bool>,
    /// The `next` cursor of the previous page.
    pub after: Option<Uuid>,
    pub limit: Option<i64>,
}

pub const COLUMNS: &str = "id, username, role, areas, person_id, scopes, disabled_at, locked_until, \
    failed_attempts, second_factor, created_at, updated_at";

pub fn view(row: &PgRow) -> ApiResult<UserView> {
    Ok(UserView {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        role: row.try_get("role")?,
        areas: row.try_get("areas")?,
        person_id: row.try_get("person_id")?,
        scopes: row.try_get("scopes")?,
        disabled_at: row.try_get("disabled_at")?,
        locked_until: row.try_get("locked_until")?,
        failed_attempts: row.try_get("failed_attempts")?,
        second_factor: row.try_get("second_factor")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The audit snapshot: who the user is and may be, no secrets.
pub fn snapshot(user: &UserView) -> Value {
    json!({"id": user.id, "username": user.username, "role": user.role, "areas": user.areas,
           "personId": user.person_id, "scopes": user.scopes, "disabled": user.disabled_at.is_some()})
}

pub fn check_username(username: &str) -> ApiResult<()> {
    let ok = (3..=100).contains(&username.chars().count())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::field(
            "username",
            "must be 3 to 100 characters: letters, digits and . _ @ -",
        ))
    }
}

pub fn check_password(password: &str) -> ApiResult<()> {
    let length = password.chars().count();
    if (MIN_PASSWORD..=MAX_PASSWORD).contains(&length) {
        Ok(())
    } else {
        Err(ApiError::field(
            "password",
            format!("must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"),
        ))
    }
}

impl Access {
    /// The role, once every field fits it (areas that exist for staff in areas, a visible
    /// person for a farmer, scopes only for API clients).
    pub async fn checked(&self, tx: &mut PgConnection) -> ApiResult<Role> {
        let role = Role::parse(&self.role).ok_or_else(|| {
            ApiError::field(
                "role",
                "must be one of national_admin, supervisor, enumerator, farmer, api_client",
            )
        })?;
        let in_areas = matches!(role, Role::Supervisor | Role::Enumerator);
        if in_areas && self.areas.is_empty() {
            return Err(ApiError::field(
                "areas",
                "supervisors and enumerators need at least one area",
            ));
        }
        if !in_areas && !self.areas.is_empty() {
            return Err(ApiError::field(
                "areas",
                "only supervisors and enumerators have areas",
            ));
        }
        let known: Vec<String> = sqlx::query_scalar("SELECT code FROM areas WHERE code = ANY($1)")
            .bind(&self.areas)
            .fetch_all(&mut *tx)
            .await?;
        let unknown: Vec<&str> = self
            .areas
            .iter()
            .filter(|a| !known.contains(a))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(ApiError::field(
                "areas",
                format!("unknown areas: {}", unknown.join(", ")),
            ));
        }
        match (role, self.person_id) {
            (Role::Farmer, None) => {
                return Err(ApiError::field(
                    "personId",
                    "a farmer is a registered person",
                ));
            }
            (Role::Farmer, Some(person)) => {
                crate::routes::common::visible_person_area(tx, person, "personId").await?;
            }
            (_, Some(_)) => {
                return Err(ApiError::field("personId", "only farmers are a person"));
            }
            (_, None) => {}
        }
        if role != Role::ApiClient && !self.scopes.is_empty() {
            return Err(ApiError::field("scopes", "only API clients have scopes"));
        }
        if let Some(bad) = self
            .scopes
            .iter()
            .find(|s| s.is_empty() || s.chars().any(char::is_whitespace))
        {
            return Err(ApiError::field(
                "scopes",
                format!("{bad:?} is not a scope (one word, e.g. persons:read)"),
            ));
        }
        Ok(role)
    }
}

pub async fn find(tx: &mut PgConnection, id: Uuid) -> ApiResult<UserView> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound)?;
    view(&row)
}

/// Refuses a change that leaves no enabled national admin but `changing`; holds a lock until
/// the transaction ends, so two such changes cannot both pass.
pub async fn keep_an_admin(tx: &mut PgConnection, changing: Uuid) -> ApiResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ADMINS_LOCK)
        .execute(&mut *tx)
        .await?;
    let others: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM users WHERE role = 'national_admin' AND disabled_at IS NULL AND id <> $1",
    )
    .bind(changing)
    .fetch_one(&mut *tx)
    .await?;
    if others == 0 {
        Err(ApiError::LastNationalAdmin)
    } else {
        Ok(())
    }
}

/// Ends every sign-in of the user: their refresh tokens no longer refresh.
pub async fn revoke_sessions(tx: &mut PgConnection, id: Uuid) -> ApiResult<()> {
    // Through the owner's function: the application role cannot read refresh tokens.
    sqlx::query("SELECT dfr_revoke_refresh_tokens($1)")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub async fn list(
    tx: &mut PgConnection,
    query: &UserQuery,
    limit: i64,
) -> ApiResult<Vec<UserView>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE ($1::text IS NULL OR role = $1) \
         AND ($2::text IS NULL OR $2 = ANY(areas)) \
         AND ($3::boolean IS NULL OR (disabled_at IS NOT NULL) = $3) \
         AND ($4::uuid IS NULL OR id > $4) ORDER BY id LIMIT $5"
    )))
    .bind(&query.role)
    .bind(&query.area)
    .bind(query.disabled)
    .bind(query.after)
    .bind(crate::routes::paging::fetch(limit))
    .fetch_all(&mut *tx)
    .await?;
    rows.iter().map(view).collect()
}
