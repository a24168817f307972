//! A plot's GeoJSON geometry, from any JSON a client can send.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Ok(plot) = dfr_api::geometry::validate(&value)
        && let Some(hectares) = plot.area_ha
    {
        assert!(hectares.is_finite() && hectares > 0.0, "{hectares}");
    }
});
