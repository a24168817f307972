//! Holdings as stored: what is grown or raised on a plot in a season, in the plot's area. The
//! checks, the SQL, and the writes as operations on the caller's transaction (each with its
//! audit event), shared by the HTTP handlers and the sync push.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::audit;
use crate::auth::Actor;
use crate::error::{ApiError, ApiResult};
use crate::routes::common::{Table, soft_delete_audited, stale_or_missing, write_error};
use crate::routes::paging;

const COLUMNS: &str = "id, version, plot_id, area_code, season, kind, item, quantity";

#[derive(Deserialize, Serialize, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HoldingInput {
    pub id: Option<Uuid>,
    pub plot_id: Uuid,
    /// Year and optional season letter, e.g. 2026 or 2026A.
    pub season: String,
    /// crop or livestock.
    pub kind: String,
    /// Crop or species code, e.g. cassava, taro, pigs.
    pub item: String,
    /// Hectares for a crop, head count for livestock.
    pub quantity: f64,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldingView {
    pub id: Uuid,
    pub version: i32,
    pub plot_id: Uuid,
    pub area_code: String,
    pub season: String,
    pub kind: String,
    pub item: String,
    pub quantity: f64,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HoldingQuery {
    pub plot_id: Option<Uuid>,
    pub area: Option<String>,
    pub season: Option<String>,
    pub kind: Option<String>,
    pub item: Option<String>,
    /// The `next` cursor of the previous page.
    pub after: Option<Uuid>,
    pub limit: Option<i64>,
}

/// A year with an optional season letter: `2026` or `2026A` (pattern `^[0-9]{4}[A-Z]?$`).
/// Compared byte by byte, never split at an index: a byte index inside a multi-byte character
/// would panic.
pub fn valid_season(season: &str) -> bool {
    match season.as_bytes() {
        [year @ .., letter] if year.len() == 4 => {
            year.iter().all(u8::is_ascii_digit) && letter.is_ascii_uppercase()
        }
        year => year.len() == 4 && year.iter().all(u8::is_ascii_digit),
    }
}

fn check(input: &HoldingInput) -> ApiResult<()> {
    if !valid_season(&input.season) {
        return Err(ApiError::field(
            "season",
            "must be a year with an optional season letter, e.g. 2026 or 2026A",
        ));
    }
    if !["crop", "livestock"].contains(&input.kind.as_str()) {
        return Err(ApiError::field("kind", "must be crop or livestock"));
    }
    if input.item.trim().is_empty() || input.item.chars().count() > 100 {
        return Err(ApiError::field("item", "must be 1 to 100 characters"));
    }
    if !(input.quantity.is_finite() && input.quantity > 0.0) {
        return Err(ApiError::field("quantity", "must be a positive number"));
    }
    Ok(())
}

fn view(row: &PgRow) -> ApiResult<HoldingView> {
    Ok(HoldingView {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        plot_id: row.try_get("plot_id")?,
        area_code: row.try_get("area_code")?,
        season: row.try_get("season")?,
        kind: row.try_get("kind")?,
        item: row.try_get("item")?,
        quantity: row.try_get("quantity")?,
    })
}

fn snapshot(holding: &HoldingView) -> Value {
    json!(holding)
}

/// The area of a plot the caller may see; row-level security hides the others.
async fn plot_area(tx: &mut PgConnection, plot: Uuid) -> ApiResult<String> {
    sqlx::query_scalar("SELECT area_code FROM plots WHERE id = $1 AND deleted_at IS NULL")
        .bind(plot)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::field("plotId", "no such plot in the areas you may see"))
}

pub async fn create(
    tx: &mut PgConnection,
    actor: &Actor,
    input: HoldingInput,
) -> ApiResult<HoldingView> {
    check(&input)?;
    let area = plot_area(tx, input.plot_id).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO holdings (id, plot_id, area_code, season, kind, item, quantity, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
    )))
    .bind(input.id.unwrap_or_else(Uuid::new_v4))
    .bind(input.plot_id)
    .bind(&area)
    .bind(&input.season)
    .bind(&input.kind)
    .bind(input.item.trim())
    .bind(input.quantity)
    .bind(actor.user_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(write_error)?;
    let created = view(&row)?;
    let after = snapshot(&created);
    audit::record(
        tx,
        Some(actor.user_id),
        "create",
        "holding",
        created.id.to_string(),
        None,
        Some(&after),
    )
    .await?;
    Ok(created)
}

/// Replaces the holding's fields; moved to another plot, it takes that plot's area.
pub async fn update(
    tx: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    version: i32,
    input: HoldingInput,
) -> ApiResult<HoldingView> {
    check(&input)?;
    let before = find(tx, id).await?.ok_or(ApiError::NotFound)?;
    let area = plot_area(tx, input.plot_id).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE holdings SET plot_id = $3, area_code = $4, season = $5, kind = $6, item = $7, quantity = $8, \
         updated_by = $9, version = version + 1, updated_at = now() \
         WHERE id = $1 AND version = $2 AND deleted_at IS NULL RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(version)
    .bind(input.plot_id)
    .bind(&area)
    .bind(&input.season)
    .bind(&input.kind)
    .bind(input.item.trim())
    .bind(input.quantity)
    .bind(actor.user_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(write_error)?;
    let Some(row) = row else {
        return Err(stale_or_missing(tx, Table::Holdings, id).await);
    };
    let updated = view(&row)?;
    let (before, after) = (snapshot(&before), snapshot(&updated));
    audit::record(
        tx,
        Some(actor.user_id),
        "update",
        "holding",
        id.to_string(),
        Some(&before),
        Some(&after),
    )
    .await?;
    Ok(updated)
}

pub async fn delete(
    tx: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    version: i32,
) -> ApiResult<i32> {
    soft_delete_audited(tx, Table::Holdings, "holding", id, version, actor).await
}

pub async fn find(tx: &mut PgConnection, id: Uuid) -> ApiResult<Option<HoldingView>> {
    Ok(by_ids(tx, &[id]).await?.pop())
}

pub async fn by_ids(tx: &mut PgConnection, ids: &[Uuid]) -> ApiResult<Vec<HoldingView>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM holdings WHERE id = ANY($1) AND deleted_at IS NULL"
    )))
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(view)
    .collect()
}

/// Up to `paging::fetch(limit)` live holdings in id order after the cursor.
pub async fn list(
    tx: &mut PgConnection,
    query: &HoldingQuery,
    limit: i64,
) -> ApiResult<Vec<HoldingView>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM holdings WHERE deleted_at IS NULL \
         AND ($1::uuid IS NULL OR plot_id = $1) AND ($2::text IS NULL OR area_code = $2) \
         AND ($3::text IS NULL OR season = $3) AND ($4::text IS NULL OR kind = $4) \
         AND ($5::text IS NULL OR item = $5) AND ($6::uuid IS NULL OR id > $6) \
         ORDER BY id LIMIT $7"
    )))
    .bind(query.plot_id)
    .bind(&query.area)
    .bind(&query.season)
    .bind(&query.kind)
    .bind(&query.item)
    .bind(query.after)
    .bind(paging::fetch(limit))
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(view)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::valid_season;

    #[test]
    fn seasons_are_a_year_with_an_optional_letter() {
        assert!(valid_season("2026") && valid_season("2026B"));
        assert!(
            !valid_season("26A")
                && !valid_season("2026b")
                && !valid_season("2026AB")
                && !valid_season("")
        );
        // "202é" puts the fourth byte inside a two-byte character (it once panicked).
        for bad in ["202é", "2026é", "٢٠٢٦", "2026 ", "20x6"] {
            assert!(!valid_season(bad), "{bad}");
        }
    }
}
