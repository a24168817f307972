//! Decides whether a live object already holds everything the operator wants in it, so an
//! unchanged tenant costs no writes. The API server adds defaults and status, hence "subset".

use serde_json::Value;

/// True when every field set in `desired` has the same value in `live`. An empty list, an empty
/// map or null in `desired` also matches an absent field, since the API server drops those.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    first_difference(desired, live).is_none()
}

/// The path of the first field of `desired` that `live` lacks or holds differently, e.g.
/// `.spec.template.spec.containers[0].image`, for logs that explain a re-apply.
pub fn first_difference(desired: &Value, live: &Value) -> Option<String> {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => want.iter().find_map(|(key, value)| {
            let difference = match have.get(key) {
                Some(live_value) => first_difference(value, live_value),
                None => (!is_empty(value)).then(|| " (absent)".to_string()),
            };
            difference.map(|rest| format!(".{key}{rest}"))
        }),
        (Value::Array(want), Value::Array(have)) => {
            if want.len() != have.len() {
                return Some(format!(" (length {} != {})", want.len(), have.len()));
            }
            want.iter()
                .zip(have)
                .enumerate()
                .find_map(|(i, (w, h))| first_difference(w, h).map(|rest| format!("[{i}]{rest}")))
        }
        (Value::Number(want), Value::Number(have)) => {
            (want.as_f64() != have.as_f64()).then(|| format!(" ({want} != {have})"))
        }
        (Value::String(want), Value::String(have)) => {
            (want != have && !same_quantity(want, have)).then(|| format!(" ({want:?} != {have:?})"))
        }
        (want, Value::Null) => (!is_empty(want)).then(|| " (absent)".to_string()),
        (want, have) => (want != have).then(|| format!(" ({want} != {have})")),
    }
}

/// The API server rewrites quantities canonically (102400Mi becomes 100Gi, 0.5 becomes 500m).
fn same_quantity(a: &str, b: &str) -> bool {
    match (
        crate::children::quantity::parse(a),
        crate::children::quantity::parse(b),
    ) {
        (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()),
        _ => false,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::is_subset;
    use serde_json::json;

    #[test]
    fn server_defaults_and_status_do_not_count_as_drift() {
        let desired =
            json!({"spec": {"ports": [{"port": 5432}]}, "metadata": {"labels": {"a": "1"}}});
        let live = json!({
            "spec": {"ports": [{"port": 5432, "protocol": "TCP"}], "clusterIP": "10.96.0.5"},
            "metadata": {"labels": {"a": "1", "b": "2"}, "resourceVersion": "7"},
            "status": {}
        });
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn a_changed_or_missing_value_is_drift() {
        let desired = json!({"spec": {"replicas": 3, "ports": [{"port": 5432}]}});
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 2, "ports": [{"port": 5432}]}})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"ports": [{"port": 5432}]}})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 3, "ports": []}})
        ));
    }

    #[test]
    fn canonicalised_quantities_are_the_same_value() {
        let desired = json!({"spec": {"hard": {"requests.storage": "102400Mi", "cpu": "0.5"}}});
        let live = json!({"spec": {"hard": {"requests.storage": "100Gi", "cpu": "500m"}}});
        assert!(is_subset(&desired, &live));
        assert!(!is_subset(&json!({"a": "1Gi"}), &json!({"a": "1G"})));
        assert!(!is_subset(
            &json!({"image": "api:1.0"}),
            &json!({"image": "api:1.1"})
        ));
    }

    #[test]
    fn the_difference_names_its_path() {
        let desired = json!({"spec": {"containers": [{"image": "a"}]}});
        let live = json!({"spec": {"containers": [{"image": "b", "name": "x"}]}});
        assert_eq!(
            super::first_difference(&desired, &live).unwrap(),
            ".spec.containers[0].image (\"a\" != \"b\")"
        );
    }

    #[test]
    fn empty_desired_collections_match_absent_fields() {
        let desired = json!({"spec": {"ingress": [], "egress": [], "selector": {}}});
        assert!(is_subset(&desired, &json!({"spec": {}})));
    }
}
