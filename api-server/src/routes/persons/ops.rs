//! The person writes as operations on the caller's transaction, each with its audit event, so
//! the HTTP handlers and the sync push apply exactly the same checks and write the same rows.

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::input::{Filter, PersonInput, PersonView, Pii};
use super::store::{self, Stored};
use crate::audit;
use crate::auth::Actor;
use crate::constraint;
use crate::crypto::KeyRing;
use crate::error::{ApiError, ApiResult};
use crate::routes::common::{Table, soft_delete, write_error};

/// Whether a create wrote a person or found the one an earlier identical request wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    Replayed,
}

pub async fn create(
    tx: &mut PgConnection,
    ring: &KeyRing,
    actor: &Actor,
    input: PersonInput,
) -> ApiResult<(Created, PersonView)> {
    let input = input.checked()?;
    let stored = Stored::encrypt(ring, &input)?;
    if let Some(holder) =
        store::holder_of_national_id(tx, &input.national_id.system, stored.index()).await?
    {
        if input.id == Some(holder) {
            return Ok((
                Created::Replayed,
                replay(tx, ring, actor, &input, holder).await?,
            ));
        }
        return Err(ApiError::DuplicateNationalId {
            existing: Some(format!("/api/dfr/persons/{holder}")),
        });
    }
    let mut chain = audit::Chain::lock(tx).await?;
    let person = insert_audited(tx, ring, actor, &input, &stored, &mut chain).await?;
    Ok((Created::New, person))
}

/// Registers a person whose input passed `PersonInput::checked` and whose national ID the
/// caller found free (an import, which checked a whole file at once), appending its audit
/// event to `chain`. A national ID taken since is still refused by the unique index.
pub async fn register(
    tx: &mut PgConnection,
    ring: &KeyRing,
    actor: &Actor,
    input: &PersonInput,
    chain: &mut audit::Chain,
) -> ApiResult<PersonView> {
    let stored = Stored::encrypt(ring, input)?;
    insert_audited(tx, ring, actor, input, &stored, chain).await
}

async fn insert_audited(
    tx: &mut PgConnection,
    ring: &KeyRing,
    actor: &Actor,
    input: &PersonInput,
    stored: &Stored,
    chain: &mut audit::Chain,
) -> ApiResult<PersonView> {
    let id = input.id.unwrap_or_else(Uuid::new_v4);
    let row = store::insert(tx, id, input, stored, actor)
        .await
        .map_err(write_error)?;
    let id: Uuid = row.try_get("id")?;
    chain
        .append(
            tx,
            Some(actor.user_id),
            "create",
            "person",
            id.to_string(),
            None,
            Some(&store::snapshot(&row)?),
        )
        .await?;
    store::view(ring, Pii::for_role(actor.role), &row)
}

/// A create sent again with the id it was registered under (a client that lost the first
/// answer): the person as it stands if the request describes it, else the id is taken.
async fn replay(
    tx: &mut PgConnection,
    ring: &KeyRing,
    actor: &Actor,
    input: &PersonInput,
    id: Uuid,
) -> ApiResult<PersonView> {
    let taken = || ApiError::Taken(&constraint::PERSON_ID);
    let row = store::find(tx, id).await?.ok_or_else(taken)?;
    if !input.describes(&store::view(ring, Pii::Clear, &row)?) {
        return Err(taken());
    }
    store::view(ring, Pii::for_role(actor.role), &row)
}

pub async fn update(
    tx: &mut PgConnection,
    ring: &KeyRing,
    actor: &Actor,
    id: Uuid,
    version: i32,
    input: PersonInput,
) -> ApiResult<PersonView> {
    let input = input.checked()?;
    let stored = Stored::encrypt(ring, &input)?;
    let before = store::find(tx, id).await?.ok_or(ApiError::NotFound)?;
    let row = store::update(tx, id, version, &input, &stored, actor)
        .await
        .map_err(write_error)?;
    let Some(row) = row else {
        return Err(crate::routes::common::stale_or_missing(tx, Table::Persons, id).await);
    };
    audit::record(
        tx,
        Some(actor.user_id),
        "update",
        "person",
        id.to_string(),
        Some(&store::snapshot(&before)?),
        Some(&store::snapshot(&row)?),
    )
    .await?;
    store::view(ring, Pii::for_role(actor.role), &row)
}

pub async fn delete(
    tx: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    version: i32,
) -> ApiResult<i32> {
    let row = soft_delete(tx, Table::Persons, id, version, actor).await?;
    audit::record(
        tx,
        Some(actor.user_id),
        "delete",
        "person",
        id.to_string(),
        Some(&store::snapshot(&row)?),
        None,
    )
    .await?;
    Ok(row.try_get("version")?)
}

/// The live persons among `ids` the caller may see.
pub async fn by_ids(
    tx: &mut PgConnection,
    ring: &KeyRing,
    pii: Pii,
    ids: &[Uuid],
) -> ApiResult<Vec<PersonView>> {
    store::by_ids(tx, ids)
        .await?
        .iter()
        .map(|row| store::view(ring, pii, row))
        .collect()
}

/// A search's page of persons as the caller may read them (one more than `filter.limit` when
/// another page follows).
pub async fn search(
    tx: &mut PgConnection,
    ring: &KeyRing,
    pii: Pii,
    filter: &Filter,
) -> ApiResult<Vec<PersonView>> {
    store::search(tx, filter)
        .await?
        .iter()
        .map(|row| store::view(ring, pii, row))
        .collect()
}
