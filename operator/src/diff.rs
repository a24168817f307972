//! Decides whether a live object already holds everything the operator wants in it, so an
//! unchanged tenant costs no writes. The API server adds defaults and status, hence "subset".

use serde_json::Value;

/// True when every field set in `desired` has the same value in `live`. An empty list, an empty
/// map or null in `desired` also matches an absent field, since the API server drops those.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => {
            want.iter().all(|(key, value)| match have.get(key) {
                Some(live_value) => is_subset(value, live_value),
                None => is_empty(value),
            })
        }
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| is_subset(w, h))
        }
        (Value::Number(want), Value::Number(have)) => want.as_f64() == have.as_f64(),
        (want, Value::Null) => is_empty(want),
        (want, have) => want == have,
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
    fn empty_desired_collections_match_absent_fields() {
        let desired = json!({"spec": {"ingress": [], "egress": [], "selector": {}}});
        assert!(is_subset(&desired, &json!({"spec": {}})));
    }
}
