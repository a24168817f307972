//! The persons table: the SQL of every read and write, PII encrypted on the way in and
//! decrypted (or masked) on the way out. Every statement runs in the caller's transaction, so
//! row-level security decides which rows it sees.

use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::input::{Filter, NationalId, PersonInput, PersonView, Pii};
use crate::auth::Actor;
use crate::crypto::{KeyRing, mask};
use crate::error::{ApiError, ApiResult};
use crate::routes::paging;

const COLUMNS: &str = "id, version, national_id_system, national_id_cipher, given_name, family_name, sex, \
    birth_date, birth_date_estimated, phone_cipher, email_cipher, area_code, status, updated_at, updated_by";

/// The columns an insert and an update both write, in this order.
const WRITTEN: &[&str] = &[
    "national_id_system",
    "national_id_cipher",
    "national_id_index",
    "national_id_last4",
    "given_name",
    "family_name",
    "sex",
    "birth_date",
    "birth_date_estimated",
    "phone_cipher",
    "email_cipher",
    "area_code",
    "status",
    "updated_by",
];

/// The column values of a person as stored: PII encrypted, the national ID also as its blind
/// index and last four characters.
pub struct Stored {
    cipher: String,
    index: String,
    last4: String,
    phone: Option<String>,
    email: Option<String>,
}

impl Stored {
    pub fn encrypt(ring: &KeyRing, input: &PersonInput) -> ApiResult<Stored> {
        let encrypt = |plain: &str| {
            ring.encrypt(plain)
                .map_err(|e| ApiError::Internal(e.to_string()))
        };
        let value = &input.national_id.value;
        Ok(Stored {
            cipher: encrypt(value)?,
            index: ring.blind_index(&input.national_id.system, value),
            last4: value
                .chars()
                .skip(value.chars().count().saturating_sub(4))
                .collect(),
            phone: input.phone.as_deref().map(encrypt).transpose()?,
            email: input.email.as_deref().map(encrypt).transpose()?,
        })
    }

    pub fn index(&self) -> &str {
        &self.index
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn bind_written<'q>(
    query: PgQuery<'q>,
    input: &'q PersonInput,
    stored: &'q Stored,
    actor: &Actor,
) -> PgQuery<'q> {
    query
        .bind(&input.national_id.system)
        .bind(&stored.cipher)
        .bind(&stored.index)
        .bind(&stored.last4)
        .bind(input.given_name.trim())
        .bind(input.family_name.trim())
        .bind(input.sex)
        .bind(input.birth_date)
        .bind(input.birth_date_estimated)
        .bind(&stored.phone)
        .bind(&stored.email)
        .bind(&input.area_code)
        .bind(&input.status)
        .bind(actor.user_id)
}

fn insert_sql() -> String {
    let placeholders: Vec<String> = (2..=WRITTEN.len() + 1).map(|n| format!("${n}")).collect();
    format!(
        "INSERT INTO persons (id, {}) VALUES ($1, {}) RETURNING {COLUMNS}",
        WRITTEN.join(", "),
        placeholders.join(", ")
    )
}

fn update_sql() -> String {
    let sets: Vec<String> = WRITTEN
        .iter()
        .enumerate()
        .map(|(i, column)| format!("{column} = ${}", i + 3))
        .collect();
    format!(
        "UPDATE persons SET version = version + 1, updated_at = now(), {} \
         WHERE id = $1 AND version = $2 AND deleted_at IS NULL RETURNING {COLUMNS}",
        sets.join(", ")
    )
}

/// A row as the API shows it, PII decrypted and, for `Pii::Masked`, masked.
pub fn view(ring: &KeyRing, pii: Pii, row: &PgRow) -> ApiResult<PersonView> {
    let reveal = |cipher: Option<String>| -> ApiResult<Option<String>> {
        cipher
            .map(|c| {
                ring.decrypt(&c)
                    .map_err(|e| ApiError::Internal(e.to_string()))
            })
            .transpose()
            .map(|plain| plain.map(|p| if pii == Pii::Clear { p } else { mask(&p) }))
    };
    Ok(PersonView {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        national_id: NationalId {
            system: row.try_get("national_id_system")?,
            value: reveal(Some(row.try_get("national_id_cipher")?))?.unwrap_or_default(),
        },
        given_name: row.try_get("given_name")?,
        family_name: row.try_get("family_name")?,
        sex: row.try_get("sex")?,
        birth_date: row.try_get("birth_date")?,
        birth_date_estimated: row.try_get("birth_date_estimated")?,
        phone: reveal(row.try_get("phone_cipher")?)?,
        email: reveal(row.try_get("email_cipher")?)?,
        area_code: row.try_get("area_code")?,
        status: row.try_get("status")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

/// An audit snapshot without plaintext PII.
pub fn snapshot(row: &PgRow) -> ApiResult<serde_json::Value> {
    Ok(json!({
        "id": row.try_get::<Uuid, _>("id")?.to_string(),
        "version": row.try_get::<i32, _>("version")?,
        "nationalIdCipher": row.try_get::<String, _>("national_id_cipher")?,
        "givenName": row.try_get::<String, _>("given_name")?,
        "familyName": row.try_get::<String, _>("family_name")?,
        "areaCode": row.try_get::<String, _>("area_code")?,
        "status": row.try_get::<String, _>("status")?,
    }))
}

/// The live person holding a national ID in any area (the lookup runs as the owner, so
/// row-level security does not hide a duplicate registered elsewhere; only the id comes back).
pub async fn holder_of_national_id(
    tx: &mut PgConnection,
    system: &str,
    index: &str,
) -> ApiResult<Option<Uuid>> {
    Ok(sqlx::query_scalar("SELECT dfr_find_national_id($1, $2)")
        .bind(system)
        .bind(index)
        .fetch_one(&mut *tx)
        .await?)
}

pub async fn insert(
    tx: &mut PgConnection,
    id: Uuid,
    input: &PersonInput,
    stored: &Stored,
    actor: &Actor,
) -> Result<PgRow, sqlx::Error> {
    let query = sqlx::query(sqlx::AssertSqlSafe(insert_sql())).bind(id);
    bind_written(query, input, stored, actor)
        .fetch_one(&mut *tx)
        .await
}

/// The live person with this id, if the caller may see it.
pub async fn find(tx: &mut PgConnection, id: Uuid) -> ApiResult<Option<PgRow>> {
    Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM persons WHERE id = $1 AND deleted_at IS NULL"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?)
}

/// The live persons among `ids` the caller may see.
pub async fn by_ids(tx: &mut PgConnection, ids: &[Uuid]) -> ApiResult<Vec<PgRow>> {
    Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM persons WHERE id = ANY($1) AND deleted_at IS NULL"
    )))
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?)
}

/// One page more than `filter.limit` rows (the extra one says whether there is a next page),
/// in id order after the cursor. The name prefix is compared as a range of the lowercased
/// names (migrations/0016): under row-level security PostgreSQL uses an index only for
/// leakproof operators, which `~>=~`, `~<~` and `starts_with` on a plain column are and `LIKE`
/// on `lower(...)` is not.
pub async fn search(tx: &mut PgConnection, filter: &Filter) -> ApiResult<Vec<PgRow>> {
    let (system, index) = filter.national_id.clone().unzip();
    Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM persons WHERE deleted_at IS NULL \
         AND ($1::text IS NULL OR area_code = $1) AND ($2::text IS NULL OR status = $2) \
         AND ($3::text IS NULL \
              OR (family_name_lower ~>=~ $3 AND family_name_lower ~<~ $8 AND starts_with(family_name_lower, $3)) \
              OR (given_name_lower ~>=~ $3 AND given_name_lower ~<~ $8 AND starts_with(given_name_lower, $3))) \
         AND ($4::text IS NULL OR (national_id_system = $5 AND national_id_index = $4)) \
         AND ($6::uuid IS NULL OR id > $6) ORDER BY id LIMIT $7"
    )))
    .bind(&filter.area)
    .bind(&filter.status)
    .bind(&filter.name_prefix)
    .bind(index)
    .bind(system)
    .bind(filter.after)
    .bind(paging::fetch(filter.limit))
    .bind(filter.name_prefix.as_deref().map(prefix_end))
    .fetch_all(&mut *tx)
    .await?)
}

/// Above every text that starts with `prefix`, in the byte order of the pattern operators
/// (`~<~`): the prefix followed by the highest code point. Only a name with U+10FFFF (a
/// noncharacter) right after the prefix falls outside.
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// None when the person is gone or its version is not `version`.
pub async fn update(
    tx: &mut PgConnection,
    id: Uuid,
    version: i32,
    input: &PersonInput,
    stored: &Stored,
    actor: &Actor,
) -> Result<Option<PgRow>, sqlx::Error> {
    let query = sqlx::query(sqlx::AssertSqlSafe(update_sql()))
        .bind(id)
        .bind(version);
    bind_written(query, input, stored, actor)
        .fetch_optional(&mut *tx)
        .await
}
