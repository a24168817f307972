//! A planned switchover from one kubectl command:
//!
//! ```text
//! kubectl annotate dfrcountry ton-prod dfr.io/switchover=postgres-1   # or =any
//! ```
//!
//! The operator checks the target (a Ready member streaming from the leader and, with
//! synchronous mode on, a synchronous standby, so no acknowledged write can be lost), then
//! writes Patroni's failover record (`postgres-failover`: `leader` and `member`) as patronictl
//! does through the DCS. The leader's Patroni demotes itself at its next loop and the target
//! takes the lock; Patroni clears the record when done. The annotation is removed either way and
//! an Event says what was done or why it was refused. It runs at once: a person asked for it.

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::cache::Caches;
use crate::error::{Error, Result};
use crate::patroni_state::{self, Member};
use crate::tenant::Tenant;
use crate::{labels, naming};
use dfr_crds::{DfrCountry, SynchronousMode};

pub const SWITCHOVER_ANNOTATION: &str = "dfr.io/switchover";

/// The member to hand the leader lock to, or why there is none. `request` is a member name or
/// `any`.
pub fn choose_target(
    request: &str,
    leader: &str,
    members: &[Member],
    synchronous_standbys: &[String],
    synchronous: bool,
) -> std::result::Result<String, String> {
    let eligible = |member: &Member| {
        member.name != leader
            && member.ready
            && member.state.as_deref() == Some("running")
            && member.replication.as_deref() == Some("streaming")
            && (!synchronous || synchronous_standbys.contains(&member.name))
    };
    let why_not = |member: &Member| {
        if member.name == leader {
            format!("{} is already the leader", member.name)
        } else if !member.ready {
            format!("{} is not ready", member.name)
        } else if member.replication.as_deref() != Some("streaming") {
            format!("{} is not streaming from the leader", member.name)
        } else {
            format!(
                "{} is not a synchronous standby (synchronous mode is on; standbys: {})",
                member.name,
                if synchronous_standbys.is_empty() {
                    "none".to_string()
                } else {
                    synchronous_standbys.join(", ")
                }
            )
        }
    };
    let request = request.trim();
    if request == "any" {
        return members
            .iter()
            .find(|member| eligible(member))
            .map(|member| member.name.clone())
            .ok_or_else(|| {
                let reasons: Vec<String> = members
                    .iter()
                    .filter(|m| m.name != leader)
                    .map(why_not)
                    .collect();
                format!(
                    "no member can take over from {leader}: {}",
                    if reasons.is_empty() {
                        "it is the only member".to_string()
                    } else {
                        reasons.join("; ")
                    }
                )
            });
    }
    match members.iter().find(|member| member.name == request) {
        None => Err(format!(
            "{request} is not a member (members: {}; or use any)",
            members
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Some(member) if eligible(member) => Ok(member.name.clone()),
        Some(member) => Err(why_not(member)),
    }
}

/// Acts on the annotation if the DfrCountry carries one: (Event reason, note) to report.
pub async fn handle(
    client: &Client,
    caches: &Caches,
    country: &DfrCountry,
    tenant: &Tenant,
) -> Result<Option<(&'static str, String)>> {
    let Some(request) = country.annotations().get(SWITCHOVER_ANNOTATION).cloned() else {
        return Ok(None);
    };
    let pods: Vec<Pod> = caches.in_namespace::<Pod>(
        &tenant.namespace,
        &[(labels::PATRONI_SCOPE, naming::POSTGRES)],
    );
    let leader = caches
        .patroni_state(&tenant.namespace, &patroni_state::record("leader"))
        .and_then(|record| record.annotations().get("leader").cloned())
        .filter(|leader| !leader.is_empty());
    let members: Vec<Member> = pods.iter().filter_map(Member::from_pod).collect();
    let outcome = match &leader {
        None => Err("no member holds the leader lock".to_string()),
        Some(leader) => choose_target(
            &request,
            leader,
            &members,
            &patroni_state::synchronous_standbys(caches, &tenant.namespace),
            tenant.spec.postgres.synchronous_mode != SynchronousMode::Off,
        ),
    };
    let report = match (outcome, leader) {
        (Ok(target), Some(leader)) => {
            write_failover_record(client, tenant, &leader, &target).await?;
            (
                "SwitchoverRequested",
                format!("switchover from {leader} to {target} handed to Patroni"),
            )
        }
        (Ok(_), None) => (
            "SwitchoverRefused",
            "no member holds the leader lock".to_string(),
        ),
        (Err(why), _) => (
            "SwitchoverRefused",
            format!("{SWITCHOVER_ANNOTATION}={request} refused: {why}"),
        ),
    };
    let countries: Api<DfrCountry> = Api::all(client.clone());
    countries
        .patch(
            &country.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {SWITCHOVER_ANNOTATION: null}}})),
        )
        .await
        .map_err(Error::kube("removing the switchover annotation"))?;
    Ok(Some(report))
}

pub async fn write_failover_record(
    client: &Client,
    tenant: &Tenant,
    leader: &str,
    target: &str,
) -> Result<()> {
    let name = patroni_state::record("failover");
    let mut record_labels = crate::children::patroni::selector(tenant);
    record_labels.insert(labels::PATRONI_SCOPE.into(), naming::POSTGRES.into());
    let record = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(tenant.namespace.clone()),
            labels: Some(record_labels),
            annotations: Some(
                [("leader", leader), ("member", target)]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..kube::api::ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &tenant.namespace);
    // Patroni owns the record; a merge patch touches only these two annotations, and creates
    // the record when Patroni has not yet made one.
    match api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"leader": leader, "member": target}}}),
            ),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(response)) if response.code == 404 => api
            .create(&Default::default(), &record)
            .await
            .map(|_| ())
            .map_err(Error::kube(format!("creating Patroni's {name}"))),
        Err(error) => Err(Error::kube(format!("writing Patroni's {name}"))(error)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn member(name: &str, ready: bool, replication: Option<&str>) -> Member {
        Member {
            name: name.into(),
            ready,
            state: Some("running".into()),
            replication: replication.map(String::from),
            pending_restart: false,
        }
    }

    fn members() -> Vec<Member> {
        vec![
            member("postgres-0", true, None),
            member("postgres-1", true, Some("streaming")),
            member("postgres-2", true, Some("streaming")),
        ]
    }

    #[test]
    fn any_picks_a_synchronous_standby_and_a_name_must_be_one() {
        let sync = vec!["postgres-2".to_string()];
        assert_eq!(
            choose_target("any", "postgres-0", &members(), &sync, true),
            Ok("postgres-2".into())
        );
        let refused = choose_target("postgres-1", "postgres-0", &members(), &sync, true);
        assert!(
            matches!(&refused, Err(why) if why.contains("not a synchronous standby")),
            "{refused:?}"
        );
        // Without synchronous mode any streaming member will do.
        assert_eq!(
            choose_target("postgres-1", "postgres-0", &members(), &sync, false),
            Ok("postgres-1".into())
        );
    }

    #[test]
    fn refusals_say_why() {
        let sync = vec!["postgres-1".to_string()];
        let why = |request: &str, members: &[Member]| {
            choose_target(request, "postgres-0", members, &sync, true).unwrap_err()
        };
        assert!(why("postgres-0", &members()).contains("already the leader"));
        assert!(why("postgres-9", &members()).contains("not a member"));
        let lagging = vec![
            member("postgres-0", true, None),
            member("postgres-1", true, Some("in archive recovery")),
        ];
        assert!(why("postgres-1", &lagging).contains("not streaming"));
        let alone = vec![member("postgres-0", true, None)];
        assert!(why("any", &alone).contains("only member"));
        let down = vec![
            member("postgres-0", true, None),
            member("postgres-1", false, Some("streaming")),
        ];
        assert!(why("any", &down).contains("not ready"));
    }
}
