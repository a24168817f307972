//! Plot geometry: GeoJSON (RFC 7946) Point or Polygon in WGS84, validated, with the area of a
//! polygon computed on the WGS84 ellipsoid (geo's geodesic area, after Karney).

use geo::{GeodesicArea, Validation};
use serde_json::Value;

/// Why a geometry was refused, phrased for the person who sent it.
#[derive(Debug, PartialEq, Eq)]
pub struct GeometryError(pub String);

#[derive(Debug, PartialEq)]
pub struct Plot {
    pub kind: &'static str,
    /// Hectares; None for a point.
    pub area_ha: Option<f64>,
}

fn check_position(position: &[f64]) -> Result<(), GeometryError> {
    if !(2..=3).contains(&position.len()) {
        return Err(GeometryError(format!(
            "a position has {} numbers; use [longitude, latitude]",
            position.len()
        )));
    }
    let (lon, lat) = (position[0], position[1]);
    if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
        return Err(GeometryError(format!(
            "position [{lon}, {lat}] is outside WGS84 (longitude -180..180, latitude -90..90; longitude comes first)"
        )));
    }
    Ok(())
}

pub fn validate(value: &Value) -> Result<Plot, GeometryError> {
    let geometry: geojson::Geometry = serde_json::from_value(value.clone())
        .map_err(|e| GeometryError(format!("not a GeoJSON geometry: {e}")))?;
    match &geometry.value {
        geojson::GeometryValue::Point { coordinates } => {
            check_position(coordinates.as_slice())?;
            Ok(Plot {
                kind: "Point",
                area_ha: None,
            })
        }
        geojson::GeometryValue::Polygon { coordinates } => {
            if coordinates.is_empty() {
                return Err(GeometryError("a polygon needs an outer ring".into()));
            }
            for ring in coordinates {
                if ring.len() < 4 {
                    return Err(GeometryError(
                        "each ring needs at least 4 positions (a closed triangle)".into(),
                    ));
                }
                if ring.first() != ring.last() {
                    return Err(GeometryError(
                        "each ring must be closed: its last position must equal its first".into(),
                    ));
                }
                for position in ring {
                    check_position(position.as_slice())?;
                }
            }
            let polygon = geo_types::Polygon::<f64>::try_from(&geometry.value)
                .map_err(|e| GeometryError(format!("not a polygon: {e}")))?;
            if !polygon.is_valid() {
                return Err(GeometryError("the polygon is not valid: its boundary crosses itself or its holes lie outside it".into()));
            }
            let hectares = polygon.geodesic_area_unsigned() / 10_000.0;
            if hectares <= 0.0 {
                return Err(GeometryError("the polygon has no area".into()));
            }
            Ok(Plot {
                kind: "Polygon",
                area_ha: Some(hectares),
            })
        }
        _ => Err(GeometryError(
            "only Point and Polygon geometries are accepted for plots".into(),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// About 100 m by 100 m near Nuku'alofa.
    fn hectare() -> Value {
        let (lon, lat): (f64, f64) = (-175.2, -21.13);
        let dlat = 100.0 / 110_574.0;
        let dlon = 100.0 / (111_320.0 * f64::cos(lat.to_radians()));
        json!({"type": "Polygon", "coordinates": [[[lon, lat], [lon + dlon, lat], [lon + dlon, lat + dlat], [lon, lat + dlat], [lon, lat]]]})
    }

    #[test]
    fn a_hundred_metre_square_is_about_one_hectare() {
        let plot = validate(&hectare()).unwrap();
        let area = plot.area_ha.unwrap();
        assert!((area - 1.0).abs() < 0.01, "{area} ha");
    }

    #[test]
    fn points_are_accepted_without_an_area() {
        assert_eq!(
            validate(&json!({"type": "Point", "coordinates": [-175.2, -21.13]}))
                .unwrap()
                .area_ha,
            None
        );
    }

    #[test]
    fn bad_geometries_say_what_is_wrong() {
        let cases = [
            (
                json!({"type": "Point", "coordinates": [-21.13, -175.2]}),
                "outside WGS84",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}),
                "closed",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}),
                "crosses itself",
            ),
            (
                json!({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}),
                "only Point and Polygon",
            ),
            (
                json!({"type": "Circle", "radius": 3}),
                "not a GeoJSON geometry",
            ),
        ];
        for (geometry, expected) in cases {
            let error = validate(&geometry).unwrap_err().0;
            assert!(error.contains(expected), "{geometry}: {error}");
        }
    }
}
