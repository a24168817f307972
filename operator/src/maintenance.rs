//! Disruptive work on the database members, one step per reconcile, only inside
//! spec.maintenanceWindow (any time when the spec has none). A member needs a restart when its
//! pod runs an older revision of the StatefulSet (an image or version update, a changed pod
//! template: the StatefulSet's update strategy is OnDelete, so nothing restarts by itself) or
//! when Patroni reports `pending_restart` (a parameter changed that PostgreSQL reads only at
//! start). The order keeps every write: the replicas first, one at a time, each back to
//! streaming before the next; then one switchover to a synchronous standby, after which the
//! former leader restarts as a replica (Patroni restarts PostgreSQL when it demotes, which
//! applies pending parameters) and, if its pod is old, is replaced like the others. So an
//! update costs at most one switchover. The status condition `MaintenancePending` says what
//! waits and when it will run.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::{Client, ResourceExt};

use crate::cache::Caches;
use crate::error::{Error, Result};
use crate::tenant::Tenant;
use crate::{labels, naming};
use dfr_crds::{MaintenanceWindow, SynchronousMode, Weekday};

/// One member as the planner sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberState {
    pub name: String,
    pub leader: bool,
    pub ready: bool,
    /// A replica streaming from the leader.
    pub streaming: bool,
    pub synchronous: bool,
    /// Why it needs a restart, if it does.
    pub stale: Option<String>,
    pub terminating: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// Work is pending but may not run now: (reason, message).
    Wait(&'static str, String),
    /// Delete this member's pod; the StatefulSet makes it again at the new revision.
    Restart {
        member: String,
        why: String,
    },
    /// Hand the leader lock to `target` so the leader can restart as a replica.
    Switchover {
        leader: String,
        target: String,
    },
}

/// What to do now. `window_open` is whether disruptive work may run now; `window_note` says
/// when it next may.
pub fn plan(
    members: &[MemberState],
    synchronous: bool,
    window_open: bool,
    window_note: &str,
) -> Step {
    let stale: Vec<&MemberState> = members.iter().filter(|m| m.stale.is_some()).collect();
    if stale.is_empty() {
        return Step::Nothing;
    }
    let listing = stale
        .iter()
        .map(|m| format!("{} ({})", m.name, m.stale.as_deref().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(", ");
    if !window_open {
        return Step::Wait(
            "WaitingForMaintenanceWindow",
            format!("restart of {listing} waits for the maintenance window: {window_note}"),
        );
    }
    let healthy = |m: &MemberState| !m.terminating && m.ready && (m.leader || m.streaming);
    if let Some(unhealthy) = members.iter().find(|m| !healthy(m)) {
        return Step::Wait(
            "WaitingForHealthyMembers",
            format!(
                "restart of {listing} waits until {} is ready and streaming again",
                unhealthy.name
            ),
        );
    }
    if let Some(replica) = stale.iter().find(|m| !m.leader) {
        return Step::Restart {
            member: replica.name.clone(),
            why: replica.stale.clone().unwrap_or_default(),
        };
    }
    let Some(leader) = stale.iter().find(|m| m.leader) else {
        return Step::Nothing;
    };
    match members
        .iter()
        .find(|m| !m.leader && m.streaming && (!synchronous || m.synchronous))
    {
        Some(target) => Step::Switchover {
            leader: leader.name.clone(),
            target: target.name.clone(),
        },
        // A single member restarts in place: there is nobody to hand over to.
        None if members.len() == 1 => Step::Restart {
            member: leader.name.clone(),
            why: leader.stale.clone().unwrap_or_default(),
        },
        None => Step::Wait(
            "WaitingForSynchronousStandby",
            format!("restart of {listing} waits for a synchronous standby to switch over to"),
        ),
    }
}

fn weekday_number(day: &Weekday) -> i8 {
    match day {
        Weekday::Mon => 1,
        Weekday::Tue => 2,
        Weekday::Wed => 3,
        Weekday::Thu => 4,
        Weekday::Fri => 5,
        Weekday::Sat => 6,
        Weekday::Sun => 7,
    }
}

/// Whether `now` is inside the window, and when the next one starts (or the open one ends).
pub fn window_state(
    window: &MaintenanceWindow,
    now: Timestamp,
) -> std::result::Result<(bool, String), String> {
    let zone = jiff::tz::TimeZone::get(&window.time_zone)
        .map_err(|e| format!("maintenanceWindow.timeZone {}: {e}", window.time_zone))?;
    let (hour, minute) = window
        .start
        .split_once(':')
        .and_then(|(h, m)| Some((h.parse::<i8>().ok()?, m.parse::<i8>().ok()?)))
        .ok_or_else(|| format!("maintenanceWindow.start {} is not HH:MM", window.start))?;
    let length = crate::duration::parse_go_duration(&window.duration).ok_or_else(|| {
        format!(
            "maintenanceWindow.duration {} is not a duration",
            window.duration
        )
    })?;
    let now_zoned = jiff::Timestamp::from_second(now.as_second())
        .map_err(|e| e.to_string())?
        .to_zoned(zone.clone());
    let today = now_zoned.date();
    let mut next: Option<jiff::Zoned> = None;
    for offset in -1..=7i64 {
        let day = today
            .checked_add(jiff::Span::new().days(offset))
            .map_err(|e| e.to_string())?;
        if !window
            .days
            .iter()
            .any(|d| weekday_number(d) == day.weekday().to_monday_one_offset())
        {
            continue;
        }
        let start = day
            .at(hour, minute, 0, 0)
            .to_zoned(zone.clone())
            .map_err(|e| e.to_string())?;
        let end = start
            .checked_add(jiff::SignedDuration::try_from(length).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        if start <= now_zoned && now_zoned < end {
            return Ok((true, format!("open until {end}")));
        }
        if start > now_zoned && next.as_ref().is_none_or(|n| start < *n) {
            next = Some(start);
        }
    }
    Ok((
        false,
        next.map(|n| format!("next window starts {n}"))
            .unwrap_or_else(|| "no window in the coming week".into()),
    ))
}

/// The members as the planner needs them, from the cache.
fn member_states(caches: &Caches, tenant: &Tenant) -> Vec<MemberState> {
    let update_revision = caches
        .get::<StatefulSet>(Some(&tenant.namespace), naming::POSTGRES)
        .and_then(|s| s.status)
        .and_then(|s| s.update_revision);
    let standbys = crate::patroni_state::synchronous_standbys(caches, &tenant.namespace);
    let pods: Vec<Pod> = caches.in_namespace::<Pod>(
        &tenant.namespace,
        &[(labels::PATRONI_SCOPE, naming::POSTGRES)],
    );
    pods.iter()
        .filter_map(|pod| {
            let member = crate::patroni_state::Member::from_pod(pod)?;
            let revision = pod.labels().get("controller-revision-hash");
            let stale = if update_revision.is_some() && revision != update_revision.as_ref() {
                Some("runs an older revision of the StatefulSet".to_string())
            } else if member.pending_restart {
                Some("a changed parameter needs a restart".to_string())
            } else {
                None
            };
            Some(MemberState {
                leader: pod.labels().get(labels::PATRONI_ROLE).map(String::as_str)
                    == Some(labels::PATRONI_ROLE_PRIMARY),
                ready: member.ready,
                streaming: member.replication.as_deref() == Some("streaming"),
                synchronous: standbys.contains(&member.name),
                terminating: pod.metadata.deletion_timestamp.is_some(),
                stale,
                name: member.name,
            })
        })
        .collect()
}

/// Takes the next step, if any may run now: (condition status, reason, message) for the status
/// and the Event to say, if one was taken.
pub async fn advance(
    client: &Client,
    caches: &Caches,
    tenant: &Tenant,
    now: Timestamp,
) -> Result<(
    Option<(bool, String, String)>,
    Option<(&'static str, String)>,
)> {
    let members = member_states(caches, tenant);
    if members.is_empty() {
        return Ok((None, None));
    }
    let (open, note) = match &tenant.spec.maintenance_window {
        None => (true, "no maintenance window is set: any time".to_string()),
        Some(window) => match window_state(window, now) {
            Ok(state) => state,
            Err(why) => (false, why),
        },
    };
    let synchronous = tenant.spec.postgres.synchronous_mode != SynchronousMode::Off;
    let step = plan(&members, synchronous, open, &note);
    let pending = |reason: &str, message: String| Some((true, reason.to_string(), message));
    Ok(match step {
        Step::Nothing => (
            Some((
                false,
                "NothingPending".into(),
                "no member needs a restart".into(),
            )),
            None,
        ),
        Step::Wait(reason, message) => (pending(reason, message), None),
        Step::Restart { member, why } => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &tenant.namespace);
            let uid = caches
                .get::<Pod>(Some(&tenant.namespace), &member)
                .and_then(|p| p.metadata.uid);
            pods.delete(
                &member,
                &DeleteParams {
                    preconditions: Some(Preconditions {
                        uid,
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                },
            )
            .await
            .map_err(Error::kube(format!("restarting member {member}")))?;
            let message = format!("restarting {member}: {why}");
            (
                pending("RollingRestart", message.clone()),
                Some(("MemberRestarted", message)),
            )
        }
        Step::Switchover { leader, target } => {
            let requested = caches
                .patroni_state(&tenant.namespace, &crate::patroni_state::record("failover"))
                .is_some_and(|record| {
                    let annotations = record.annotations();
                    annotations.get("leader") == Some(&leader)
                        && annotations.get("member") == Some(&target)
                });
            if requested {
                // Patroni has the request and acts at its next loop; asking again adds nothing.
                return Ok((
                    pending(
                        "RollingRestart",
                        format!("switchover from {leader} to {target} under way"),
                    ),
                    None,
                ));
            }
            crate::switchover::write_failover_record(client, tenant, &leader, &target).await?;
            let message = format!(
                "switchover from {leader} to {target} so {leader} can restart as a replica"
            );
            (
                pending("RollingRestart", message.clone()),
                Some(("SwitchoverForMaintenance", message)),
            )
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn member(name: &str, leader: bool, stale: bool) -> MemberState {
        MemberState {
            name: name.into(),
            leader,
            ready: true,
            streaming: !leader,
            synchronous: !leader,
            stale: stale.then(|| "runs an older revision of the StatefulSet".into()),
            terminating: false,
        }
    }

    #[test]
    fn replicas_restart_first_then_one_switchover() {
        let members = vec![
            member("postgres-0", true, true),
            member("postgres-1", false, true),
        ];
        assert_eq!(
            plan(&members, true, true, ""),
            Step::Restart {
                member: "postgres-1".into(),
                why: "runs an older revision of the StatefulSet".into()
            }
        );
        let members = vec![
            member("postgres-0", true, true),
            member("postgres-1", false, false),
        ];
        assert_eq!(
            plan(&members, true, true, ""),
            Step::Switchover {
                leader: "postgres-0".into(),
                target: "postgres-1".into()
            }
        );
        // After the switchover the former leader is an old replica: restarted like the others.
        let members = vec![
            member("postgres-0", false, true),
            member("postgres-1", true, false),
        ];
        assert!(
            matches!(plan(&members, true, true, ""), Step::Restart { member, .. } if member == "postgres-0")
        );
        let members = vec![
            member("postgres-0", true, false),
            member("postgres-1", false, false),
        ];
        assert_eq!(plan(&members, true, true, ""), Step::Nothing);
    }

    #[test]
    fn nothing_disruptive_outside_the_window_or_while_a_member_is_unhealthy() {
        let members = vec![
            member("postgres-0", true, true),
            member("postgres-1", false, true),
        ];
        assert!(matches!(
            plan(&members, true, false, "next window starts Sun 02:00"),
            Step::Wait("WaitingForMaintenanceWindow", m) if m.contains("next window starts Sun 02:00") && m.contains("postgres-1")
        ));
        let mut members = members;
        members[1].streaming = false;
        assert!(matches!(
            plan(&members, true, true, ""),
            Step::Wait("WaitingForHealthyMembers", _)
        ));
        // No synchronous standby to hand over to: the leader waits.
        let members = vec![
            member("postgres-0", true, true),
            MemberState {
                synchronous: false,
                ..member("postgres-1", false, false)
            },
        ];
        assert!(matches!(
            plan(&members, true, true, ""),
            Step::Wait("WaitingForSynchronousStandby", _)
        ));
        // A single member restarts in place.
        let alone = vec![member("postgres-0", true, true)];
        assert!(matches!(
            plan(&alone, false, true, ""),
            Step::Restart { .. }
        ));
    }

    fn window(days: &[&str], start: &str, duration: &str, zone: &str) -> MaintenanceWindow {
        serde_json::from_value(serde_json::json!({
            "days": days, "start": start, "duration": duration, "timeZone": zone
        }))
        .unwrap()
    }

    #[test]
    fn the_window_is_read_in_its_time_zone() {
        // 2026-12-05 is a Saturday; 13:30 UTC is 02:30 on Sunday the 6th in Tonga (UTC+13).
        let now: Timestamp = "2026-12-05T13:30:00Z".parse().unwrap();
        let sunday = window(&["Sun"], "02:00", "2h", "Pacific/Tongatapu");
        let (open, note) = window_state(&sunday, now).unwrap();
        assert!(open, "{note}");
        let monday = window(&["Mon"], "02:00", "2h", "Pacific/Tongatapu");
        let (open, note) = window_state(&monday, now).unwrap();
        assert!(!open);
        assert!(note.contains("2026-12-07T02:00:00+13:00"), "{note}");
        let utc = window(&["Sat"], "13:00", "20m", "UTC");
        assert!(
            !window_state(&utc, now).unwrap().0,
            "13:00 + 20 min has ended by 13:30"
        );
        let unknown = window(&["Sat"], "13:00", "1h", "Mars/Olympus");
        assert!(
            window_state(&unknown, now)
                .unwrap_err()
                .contains("Mars/Olympus")
        );
    }
}
