//! Patroni's own records in the tenant namespace (its Kubernetes DCS): what the operator reads
//! from them (who is the synchronous standby, how each member replicates) and the one thing it
//! writes into them, the dynamic configuration, exactly as `patronictl edit-config` does: the
//! `config` annotation of `postgres-config`, under the record's resourceVersion. Patroni applies
//! a change on every member within a loop (reload-only parameters at once; one that needs a
//! restart shows as pending_restart), so spec.postgres changes reach a running cluster, and
//! settings a newer operator adds (failsafe_mode) reach clusters bootstrapped before it.

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::Value;

use dfr_crds::SynchronousMode;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};

use crate::apply::Changes;
use crate::cache::Caches;
use crate::error::{Error, Result};
use crate::naming;
use crate::tenant::Tenant;

/// The annotation of `<scope>-config` that holds the dynamic configuration as JSON.
const CONFIG_ANNOTATION: &str = "config";
/// The annotation of `<scope>-sync` naming the synchronous standby (comma-separated if several).
const SYNC_STANDBY_ANNOTATION: &str = "sync_standby";
/// The annotation Patroni keeps on each member's pod: its state as JSON.
const MEMBER_STATUS_ANNOTATION: &str = "status";

/// The name of Patroni's record `<scope>-<suffix>` (leader, config, sync, failover).
pub fn record(suffix: &str) -> String {
    format!("{}-{suffix}", naming::POSTGRES)
}

/// The dynamic configuration the tenant's spec asks for (what bootstrap.dcs holds).
pub fn desired_dynamic_configuration(tenant: &Tenant) -> Value {
    let config = crate::children::patroni::patroni_config(tenant);
    serde_json::to_value(&config.bootstrap.dcs).unwrap_or(Value::Null)
}

/// `current` with every setting the operator owns set as `desired` says: each top-level key it
/// sets, and each key of `postgresql` it sets, where `parameters` is wholly the spec's (a
/// parameter dropped from the spec is dropped here too). Keys the operator never sets stay as
/// they are. None when nothing would change.
pub fn dynamic_update(current: &Value, desired: &Value) -> Option<Value> {
    let mut merged = match current {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    let Value::Object(desired) = desired else {
        return None;
    };
    for (key, value) in desired {
        match (key.as_str(), value, merged.get_mut(key)) {
            ("postgresql", Value::Object(wanted), Some(Value::Object(present))) => {
                for (inner, inner_value) in wanted {
                    present.insert(inner.clone(), inner_value.clone());
                }
            }
            _ => {
                merged.insert(key.clone(), value.clone());
            }
        }
    }
    let merged = Value::Object(merged);
    (&merged != current).then_some(merged)
}

/// Writes the dynamic configuration into Patroni's record when it differs from the spec's.
/// Before Patroni has made the record (a cluster not yet bootstrapped) there is nothing to do:
/// bootstrap.dcs carries the same settings.
pub async fn apply_dynamic_configuration(
    client: &Client,
    caches: &Caches,
    tenant: &Tenant,
) -> Result<Changes> {
    let mut changes = Changes::default();
    let name = record("config");
    let Some(config_map) = caches.patroni_state(&tenant.namespace, &name) else {
        return Ok(changes);
    };
    let annotations = config_map.metadata.annotations.unwrap_or_default();
    let Some(text) = annotations.get(CONFIG_ANNOTATION) else {
        return Ok(changes);
    };
    let current: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let Some(updated) = dynamic_update(&current, &desired_dynamic_configuration(tenant)) else {
        return Ok(changes);
    };
    let patch = serde_json::json!({"metadata": {
        // Patroni and patronictl write the record too: a write over a version we did not read
        // fails, and the next reconcile merges again.
        "resourceVersion": config_map.metadata.resource_version,
        "annotations": {CONFIG_ANNOTATION: updated.to_string()},
    }});
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &tenant.namespace);
    let params = PatchParams {
        field_manager: Some(naming::FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match api.patch(&name, &params, &Patch::Merge(&patch)).await {
        Ok(_) => changes
            .applied
            .push(format!("Patroni dynamic configuration ({name})")),
        Err(kube::Error::Api(response)) if response.code == 409 => {}
        Err(error) => {
            return Err(Error::kube(format!(
                "writing Patroni's dynamic configuration ({name})"
            ))(error));
        }
    }
    Ok(changes)
}

/// How one member replicates, from the status Patroni keeps on its pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub ready: bool,
    /// Patroni's state (running, starting, stopped, ...).
    pub state: Option<String>,
    /// streaming, in archive recovery, ... (replicas only).
    pub replication: Option<String>,
    /// A changed parameter waits for PostgreSQL to restart.
    pub pending_restart: bool,
}

impl Member {
    pub fn from_pod(pod: &Pod) -> Option<Self> {
        let name = pod.metadata.name.clone()?;
        let status: Value = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(MEMBER_STATUS_ANNOTATION))
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or(Value::Null);
        let text = |key: &str| status.get(key).and_then(Value::as_str).map(String::from);
        Some(Self {
            name,
            ready: crate::observe::pod_ready(pod),
            state: text("state"),
            replication: text("replication_state"),
            pending_restart: status.get("pending_restart").and_then(Value::as_bool) == Some(true),
        })
    }
}

/// The synchronous standbys Patroni has named, from its `-sync` record.
pub fn synchronous_standbys(caches: &Caches, namespace: &str) -> Vec<String> {
    caches
        .patroni_state(namespace, &record("sync"))
        .and_then(|record| record.metadata.annotations)
        .and_then(|annotations| annotations.get(SYNC_STANDBY_ANNOTATION).cloned())
        .map(|names| {
            names
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// A risk to acknowledged writes while the leader still serves, as (reason, message): the spec
/// asks for a synchronous standby and none is streaming, so a lost leader would lose writes.
pub fn replication_risk(
    tenant: &Tenant,
    primary: Option<&str>,
    standbys: &[String],
    members: &[Member],
) -> Option<(String, String)> {
    let spec = &tenant.spec.postgres;
    if spec.synchronous_mode == SynchronousMode::Off || spec.instances < 2 || tenant.spec.suspend {
        return None;
    }
    let primary = primary?;
    let consequence = if spec.synchronous_mode == SynchronousMode::Strict {
        "writes wait until a standby catches up (synchronousMode strict)"
    } else {
        "acknowledged writes are on the leader alone until a standby catches up: losing it now loses them"
    };
    let healthy = |name: &str| {
        members.iter().any(|member| {
            member.name == name
                && member.ready
                && member.state.as_deref() == Some("running")
                && member.replication.as_deref() == Some("streaming")
        })
    };
    if standbys.is_empty() {
        let others: Vec<String> = members
            .iter()
            .filter(|member| member.name != primary)
            .map(|member| {
                format!(
                    "{} {}",
                    member.name,
                    member
                        .replication
                        .as_deref()
                        .or(member.state.as_deref())
                        .unwrap_or(if member.ready { "ready" } else { "not ready" })
                )
            })
            .collect();
        return Some((
            "SynchronousStandbyLost".into(),
            format!(
                "synchronousMode is on but leader {primary} has no synchronous standby ({}): {consequence}",
                if others.is_empty() {
                    "no other member".to_string()
                } else {
                    others.join(", ")
                }
            ),
        ));
    }
    if standbys.iter().any(|name| healthy(name)) {
        return None;
    }
    Some((
        "SynchronousStandbyLost".into(),
        format!(
            "synchronous standby {} of leader {primary} is not streaming: {consequence}",
            standbys.join(", ")
        ),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::tests::sample;
    use serde_json::json;

    #[test]
    fn an_unchanged_configuration_is_not_written() {
        let tenant = sample("ton-prod.yaml");
        let desired = desired_dynamic_configuration(&tenant);
        assert_eq!(desired["failsafe_mode"], json!(true));
        assert_eq!(dynamic_update(&desired, &desired), None);
    }

    #[test]
    fn the_spec_wins_for_what_it_sets_and_other_keys_stay() {
        let desired = json!({"ttl": 20, "failsafe_mode": true,
            "postgresql": {"use_slots": true, "parameters": {"max_connections": "200", "work_mem": "8MB"}}});
        // As Patroni stored it at bootstrap by an older operator, plus a person's own setting.
        let current = json!({"ttl": 20, "master_start_timeout": 300,
            "postgresql": {"use_slots": true, "pg_hba": ["x"], "parameters": {"max_connections": "200", "old_param": "1"}}});
        let updated = dynamic_update(&current, &desired).unwrap();
        assert_eq!(updated["failsafe_mode"], json!(true));
        assert_eq!(updated["master_start_timeout"], json!(300));
        assert_eq!(updated["postgresql"]["pg_hba"], json!(["x"]));
        assert_eq!(
            updated["postgresql"]["parameters"],
            json!({"max_connections": "200", "work_mem": "8MB"}),
            "a parameter dropped from the spec leaves the cluster"
        );
        assert_eq!(dynamic_update(&updated, &desired), None);
    }

    fn member(name: &str, ready: bool, replication: Option<&str>) -> Member {
        Member {
            name: name.into(),
            ready,
            state: Some("running".into()),
            replication: replication.map(String::from),
            pending_restart: false,
        }
    }

    #[test]
    fn a_streaming_synchronous_standby_is_no_risk() {
        let tenant = sample("ton-prod.yaml");
        let members = [
            member("postgres-0", true, None),
            member("postgres-1", true, Some("streaming")),
        ];
        assert_eq!(
            replication_risk(
                &tenant,
                Some("postgres-0"),
                &["postgres-1".into()],
                &members
            ),
            None
        );
    }

    #[test]
    fn no_synchronous_standby_is_a_risk_that_names_the_members() {
        let tenant = sample("ton-prod.yaml");
        let members = [
            member("postgres-0", true, None),
            member("postgres-1", false, Some("in archive recovery")),
        ];
        let (reason, message) =
            replication_risk(&tenant, Some("postgres-0"), &[], &members).unwrap();
        assert_eq!(reason, "SynchronousStandbyLost");
        assert!(
            message.contains("postgres-1 in archive recovery"),
            "{message}"
        );
        let lagging = [
            member("postgres-0", true, None),
            member("postgres-1", false, None),
        ];
        let (_, message) = replication_risk(
            &tenant,
            Some("postgres-0"),
            &["postgres-1".into()],
            &lagging,
        )
        .unwrap();
        assert!(message.contains("not streaming"), "{message}");
    }

    #[test]
    fn without_synchronous_mode_or_a_second_member_there_is_nothing_to_lose() {
        let mut tenant = sample("ton-prod.yaml");
        tenant.spec.postgres.synchronous_mode = SynchronousMode::Off;
        assert_eq!(
            replication_risk(&tenant, Some("postgres-0"), &[], &[]),
            None
        );
        let mut single = sample("ton-prod.yaml");
        single.spec.postgres.instances = 1;
        assert_eq!(
            replication_risk(&single, Some("postgres-0"), &[], &[]),
            None
        );
        let tenant = sample("ton-prod.yaml");
        assert_eq!(replication_risk(&tenant, None, &[], &[]), None);
    }
}
