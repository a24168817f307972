//! Offline-first sync for enumerators: `GET /api/dfr/sync/changes` pulls what changed in the
//! caller's areas since a cursor (tombstones included), `POST /api/dfr/sync/push` applies a
//! batch of the device's mutations, each answered applied, duplicate, conflict or rejected,
//! and `GET /api/dfr/sync/conflicts` lists the device data a conflict kept.

pub mod conflicts;
pub mod pull;
pub mod push;
pub mod records;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(pull::changes))
        .routes(routes!(push::push))
        .routes(routes!(conflicts::list))
}
