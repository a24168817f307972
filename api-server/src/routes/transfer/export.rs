//! Exports: persons as CSV or XLSX (the columns an import reads) and plots as a GeoJSON
//! FeatureCollection, read in the caller's transaction page by page, so row-level security
//! decides the rows and the caller's role whether national IDs, phones and e-mails are masked.

use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::import::COLUMNS;
use super::table::{self, Format};
use crate::crypto::KeyRing;
use crate::error::ApiResult;
use crate::routes::persons::input::{Pii, SearchQuery};
use crate::routes::plots::record::{self as plots, PlotQuery};

const PAGE: i64 = 1000;

/// Every person the caller may see in `area` (all when None), as a file of `format`.
pub async fn persons(
    tx: &mut PgConnection,
    ring: &KeyRing,
    pii: Pii,
    area: Option<String>,
    format: Format,
) -> ApiResult<Vec<u8>> {
    let mut rows = Vec::new();
    let mut after: Option<Uuid> = None;
    loop {
        let query = SearchQuery {
            area: area.clone(),
            status: None,
            name: None,
            national_id_system: None,
            national_id: None,
            after,
            limit: None,
        };
        let mut filter = query.filter(ring)?;
        filter.limit = PAGE;
        let mut page = crate::routes::persons::ops::search(tx, ring, pii, &filter).await?;
        let more = page.len() as i64 > PAGE;
        page.truncate(PAGE as usize);
        for person in &page {
            rows.push(vec![
                person.id.to_string(),
                person.national_id.system.clone(),
                person.national_id.value.clone(),
                person.given_name.clone(),
                person.family_name.clone(),
                person.sex.to_string(),
                person.birth_date.to_string(),
                person.birth_date_estimated.to_string(),
                person.phone.clone().unwrap_or_default(),
                person.email.clone().unwrap_or_default(),
                person.area_code.clone(),
                person.status.clone(),
            ]);
        }
        after = page.last().map(|p| p.id);
        if !more {
            break;
        }
    }
    table::write(format, COLUMNS, &rows)
}

/// Every plot the caller may see in `area`, as GeoJSON features with the plot's fields as
/// properties.
pub async fn plots_geojson(tx: &mut PgConnection, area: Option<String>) -> ApiResult<Value> {
    let mut features = Vec::new();
    let mut after: Option<Uuid> = None;
    loop {
        let query = PlotQuery {
            person_id: None,
            area: area.clone(),
            tenure: None,
            land_use: None,
            after,
            limit: Some(PAGE),
        };
        let mut page = plots::list(tx, &query, PAGE).await?;
        let more = page.len() as i64 > PAGE;
        page.truncate(PAGE as usize);
        for plot in &page {
            features.push(json!({
                "type": "Feature",
                "id": plot.id,
                "geometry": plot.geometry,
                "properties": {"id": plot.id, "version": plot.version, "personId": plot.person_id,
                               "areaCode": plot.area_code, "areaHa": plot.area_ha,
                               "tenure": plot.tenure, "landUse": plot.land_use},
            }));
        }
        after = page.last().map(|p| p.id);
        if !more {
            break;
        }
    }
    Ok(json!({"type": "FeatureCollection", "features": features}))
}
