//! A person's complete record as one JSON document, for a subject access request: the person
//! (PII decrypted), deleted records included since a tombstone still holds data until erased,
//! the households they belong to, their farmer profiles, plots and the holdings on them,
//! consents with their history, the device data sync conflicts kept for any of these, and
//! every audit event about any of them. Records other than the person are given as stored
//! (column names), so nothing the registry holds is left out by a view.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::crypto::KeyRing;
use crate::error::{ApiError, ApiResult};
use crate::routes::persons::input::Pii;
use crate::routes::sync::conflicts::{self, ConflictView};

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectPerson {
    pub id: Uuid,
    pub version: i32,
    pub national_id_system: String,
    /// Absent once erased.
    pub national_id: Option<String>,
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
    pub deleted_at: Option<DateTime<Utc>>,
    pub erased_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectRecord {
    pub generated_at: DateTime<Utc>,
    pub person: SubjectPerson,
    /// Each with the person's role and every member.
    #[schema(value_type = Vec<Object>)]
    pub households: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub farmer_profiles: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub plots: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub holdings: Vec<Value>,
    /// Each with its history of states.
    #[schema(value_type = Vec<Object>)]
    pub consents: Vec<Value>,
    /// Submissions about the person or one of their plots.
    #[schema(value_type = Vec<Object>)]
    pub form_submissions: Vec<Value>,
    pub sync_conflicts: Vec<ConflictView>,
    /// Every audit event about the person or one of the records above, in chain order.
    #[schema(value_type = Vec<Object>)]
    pub audit_events: Vec<Value>,
}

/// JSON rows of one query, each row's first column.
async fn rows(tx: &mut PgConnection, sql: &'static str, id: Uuid) -> ApiResult<Vec<Value>> {
    Ok(sqlx::query_scalar::<_, Value>(sql)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?)
}

fn ids_of(records: &[Value]) -> Vec<Uuid> {
    records
        .iter()
        .filter_map(|r| r.get("id").and_then(Value::as_str))
        .filter_map(|id| id.parse().ok())
        .collect()
}

async fn person(tx: &mut PgConnection, ring: &KeyRing, id: Uuid) -> ApiResult<SubjectPerson> {
    let row = sqlx::query(
        "SELECT id, version, national_id_system, national_id_cipher, given_name, family_name, sex, \
         birth_date, birth_date_estimated, phone_cipher, email_cipher, area_code, status, \
         updated_at, updated_by, deleted_at, erased_at FROM persons WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound)?;
    let reveal = |cipher: Option<String>| -> ApiResult<Option<String>> {
        cipher
            .filter(|c| !c.is_empty())
            .map(|c| {
                ring.decrypt(&c)
                    .map_err(|e| ApiError::Internal(e.to_string()))
            })
            .transpose()
    };
    Ok(SubjectPerson {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        national_id_system: row.try_get("national_id_system")?,
        national_id: reveal(Some(row.try_get("national_id_cipher")?))?,
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
        deleted_at: row.try_get("deleted_at")?,
        erased_at: row.try_get("erased_at")?,
    })
}

/// The document, read in the caller's transaction (row-level security applies).
pub async fn collect(tx: &mut PgConnection, ring: &KeyRing, id: Uuid) -> ApiResult<SubjectRecord> {
    let person = person(tx, ring, id).await?;
    let households = rows(
        tx,
        "SELECT to_jsonb(h) || jsonb_build_object('role', m.role, 'members', \
           (SELECT jsonb_agg(jsonb_build_object('personId', o.person_id, 'role', o.role) \
              ORDER BY o.person_id) FROM household_members o WHERE o.household_id = h.id)) \
         FROM households h JOIN household_members m ON m.household_id = h.id \
         WHERE m.person_id = $1 ORDER BY h.id",
        id,
    )
    .await?;
    let farmer_profiles = rows(
        tx,
        "SELECT to_jsonb(f) FROM farmer_profiles f WHERE person_id = $1 ORDER BY id",
        id,
    )
    .await?;
    let plots = rows(
        tx,
        "SELECT to_jsonb(p) FROM plots p WHERE person_id = $1 ORDER BY id",
        id,
    )
    .await?;
    let holdings = rows(
        tx,
        "SELECT to_jsonb(h) FROM holdings h \
         WHERE plot_id IN (SELECT id FROM plots WHERE person_id = $1) ORDER BY id",
        id,
    )
    .await?;
    let consents = rows(
        tx,
        "SELECT to_jsonb(c) || jsonb_build_object('history', \
           (SELECT coalesce(jsonb_agg(to_jsonb(h) - 'consent_id' ORDER BY h.seq), '[]'::jsonb) \
              FROM consent_history h WHERE h.consent_id = c.id)) \
         FROM consents c WHERE person_id = $1 ORDER BY id",
        id,
    )
    .await?;
    let form_submissions = rows(
        tx,
        "SELECT to_jsonb(s) FROM form_submissions s WHERE subject_id = $1 \
           OR subject_id IN (SELECT id FROM plots WHERE person_id = $1) ORDER BY id",
        id,
    )
    .await?;
    let mut records = vec![id];
    for kind in [
        &households,
        &farmer_profiles,
        &plots,
        &holdings,
        &consents,
        &form_submissions,
    ] {
        records.extend(ids_of(kind));
    }
    let conflict_rows = sqlx::query(
        "SELECT id, entity, record_id, area_code, user_id, client_mutation_id, operation, \
         base_version, server_version, client_data_cipher, at FROM sync_conflicts \
         WHERE record_id = ANY($1) ORDER BY at, id",
    )
    .bind(&records)
    .fetch_all(&mut *tx)
    .await?;
    let sync_conflicts = conflict_rows
        .iter()
        .map(|row| conflicts::view(ring, Pii::Clear, row))
        .collect::<ApiResult<Vec<_>>>()?;
    let entity_ids: Vec<String> = records.iter().map(Uuid::to_string).collect();
    let audit_events = sqlx::query_scalar::<_, Value>(
        "SELECT jsonb_build_object('seq', seq, 'at', at, 'actor', actor, 'action', action, \
         'entity', entity, 'entityId', entity_id, 'beforeHash', before_hash, \
         'afterHash', after_hash, 'hash', hash) \
         FROM audit_events WHERE entity_id = ANY($1) ORDER BY seq",
    )
    .bind(&entity_ids)
    .fetch_all(&mut *tx)
    .await?;
    Ok(SubjectRecord {
        generated_at: Utc::now(),
        person,
        households,
        farmer_profiles,
        plots,
        holdings,
        consents,
        form_submissions,
        sync_conflicts,
        audit_events,
    })
}
