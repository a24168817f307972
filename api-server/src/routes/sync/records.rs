//! The registry's record kinds as the sync endpoints name them, and the one place that turns
//! a pushed mutation into the same operation the HTTP handlers run, or a set of ids into the
//! records as the caller may read them.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::auth::Actor;
use crate::crypto::KeyRing;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::routes::common::{DELETERS, Table, WRITERS, require, same_id};
use crate::routes::persons::input::Pii;
use crate::routes::{consents, forms, holdings, households, persons, plots, profiles};

#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Person,
    Household,
    FarmerProfile,
    Plot,
    Holding,
    Consent,
    FormSubmission,
}

impl Entity {
    /// The name the change log and the conflicts table use (the trigger's argument).
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Person => "person",
            Entity::Household => "household",
            Entity::FarmerProfile => "farmer_profile",
            Entity::Plot => "plot",
            Entity::Holding => "holding",
            Entity::Consent => "consent",
            Entity::FormSubmission => "form_submission",
        }
    }

    pub fn parse(name: &str) -> Option<Entity> {
        [
            Entity::Person,
            Entity::Household,
            Entity::FarmerProfile,
            Entity::Plot,
            Entity::Holding,
            Entity::Consent,
            Entity::FormSubmission,
        ]
        .into_iter()
        .find(|entity| entity.as_str() == name)
    }

    pub fn table(self) -> Table {
        match self {
            Entity::Person => Table::Persons,
            Entity::Household => Table::Households,
            Entity::FarmerProfile => Table::FarmerProfiles,
            Entity::Plot => Table::Plots,
            Entity::Holding => Table::Holdings,
            Entity::Consent => Table::Consents,
            Entity::FormSubmission => Table::FormSubmissions,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Create,
    Update,
    Delete,
}

/// One change a device made offline.
#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mutation {
    /// Chosen by the device, once per change: a replay with the same id applies nothing.
    pub client_mutation_id: Uuid,
    pub entity: Entity,
    pub op: Op,
    /// The record's id (for a create, the id the device generated).
    pub id: Uuid,
    /// The version the device's change was based on; required for update and delete.
    pub base_version: Option<i32>,
    /// The record as the device has it (the body the create or edit endpoint takes); not for
    /// delete.
    pub data: Option<Value>,
}

/// The body of a create or edit as the entity's input type; a bad one names the field under
/// `data`.
fn input<T: DeserializeOwned>(data: &Option<Value>) -> ApiResult<T> {
    let data = data
        .clone()
        .ok_or_else(|| ApiError::field("data", "a create or update carries the record"))?;
    serde_json::from_value(data).map_err(|error| {
        let text = error.to_string();
        // serde names the field as: missing field `personId` / unknown field `colour`, ...
        let field = text
            .split_once('`')
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(name, _)| format!("data.{name}"))
            .unwrap_or_else(|| "data".into());
        ApiError::Validation {
            detail: format!("{field}: {text}"),
            fields: vec![FieldError {
                field,
                message: text,
            }],
        }
    })
}

fn base_version(mutation: &Mutation) -> ApiResult<i32> {
    mutation.base_version.ok_or_else(|| {
        ApiError::field(
            "baseVersion",
            "an update or delete says which version it changes",
        )
    })
}

/// Applies one mutation in the caller's transaction with the checks its endpoint makes; the
/// record's new version.
pub async fn apply(
    tx: &mut PgConnection,
    ring: &KeyRing,
    actor: &Actor,
    mutation: &Mutation,
) -> ApiResult<i32> {
    let id = mutation.id;
    match mutation.op {
        Op::Create | Op::Update => require(actor, WRITERS, "sync")?,
        Op::Delete => require(actor, DELETERS, "sync")?,
    }
    macro_rules! write {
        ($module:path, $input:ty) => {{
            use $module as record;
            match mutation.op {
                Op::Create => {
                    let mut data: $input = input(&mutation.data)?;
                    same_id(data.id, id)?;
                    data.id = Some(id);
                    Ok(record::create(tx, actor, data).await?.version)
                }
                Op::Update => {
                    let data: $input = input(&mutation.data)?;
                    same_id(data.id, id)?;
                    Ok(record::update(tx, actor, id, base_version(mutation)?, data)
                        .await?
                        .version)
                }
                Op::Delete => record::delete(tx, actor, id, base_version(mutation)?).await,
            }
        }};
    }
    match mutation.entity {
        Entity::Person => match mutation.op {
            Op::Create => {
                let mut data: persons::input::PersonInput = input(&mutation.data)?;
                same_id(data.id, id)?;
                data.id = Some(id);
                Ok(persons::ops::create(tx, ring, actor, data).await?.1.version)
            }
            Op::Update => {
                let data: persons::input::PersonInput = input(&mutation.data)?;
                same_id(data.id, id)?;
                let version = base_version(mutation)?;
                Ok(persons::ops::update(tx, ring, actor, id, version, data)
                    .await?
                    .version)
            }
            Op::Delete => persons::ops::delete(tx, actor, id, base_version(mutation)?).await,
        },
        Entity::Household => write!(households::record, households::record::HouseholdInput),
        Entity::FarmerProfile => write!(profiles::record, profiles::record::ProfileInput),
        Entity::Plot => write!(plots::record, plots::record::PlotInput),
        Entity::Holding => write!(holdings::record, holdings::record::HoldingInput),
        Entity::Consent => write!(consents::record, consents::record::ConsentRequest),
        Entity::FormSubmission => match mutation.op {
            Op::Create => {
                let mut data: forms::submission::SubmissionInput = input(&mutation.data)?;
                same_id(data.id, id)?;
                data.id = Some(id);
                Ok(forms::submission::create(tx, actor, data).await?.1.version)
            }
            Op::Update => {
                let data: forms::submission::SubmissionInput = input(&mutation.data)?;
                same_id(data.id, id)?;
                let version = base_version(mutation)?;
                Ok(forms::submission::update(tx, actor, id, version, data)
                    .await?
                    .version)
            }
            Op::Delete => forms::submission::delete(tx, actor, id, base_version(mutation)?).await,
        },
    }
}

/// The live records of one kind among `ids` that the caller may see, as JSON (the same body
/// the entity's GET answers), with their ids.
pub async fn views(
    tx: &mut PgConnection,
    ring: &KeyRing,
    pii: Pii,
    entity: Entity,
    ids: &[Uuid],
) -> ApiResult<Vec<(Uuid, Value)>> {
    fn json<T: Serialize>(items: Vec<T>, id: impl Fn(&T) -> Uuid) -> ApiResult<Vec<(Uuid, Value)>> {
        items
            .into_iter()
            .map(|item| {
                serde_json::to_value(&item)
                    .map(|value| (id(&item), value))
                    .map_err(|e| ApiError::Internal(e.to_string()))
            })
            .collect()
    }
    match entity {
        Entity::Person => json(persons::ops::by_ids(tx, ring, pii, ids).await?, |r| r.id),
        Entity::Household => json(households::record::by_ids(tx, ids).await?, |r| r.id),
        Entity::FarmerProfile => json(profiles::record::by_ids(tx, ids).await?, |r| r.id),
        Entity::Plot => json(plots::record::by_ids(tx, ids).await?, |r| r.id),
        Entity::Holding => json(holdings::record::by_ids(tx, ids).await?, |r| r.id),
        Entity::Consent => json(consents::record::by_ids(tx, ids).await?, |r| r.id),
        Entity::FormSubmission => json(forms::submission::by_ids(tx, ids).await?, |r| r.id),
    }
}
