//! What the failover guard does about one tenant, decided from what it observed: a pure function,
//! so every rule that keeps two members from both taking writes is unit-tested.

use std::time::Duration;

/// One member as the guard sees it: its pod, Patroni's status on it, and its REST API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberView {
    pub name: String,
    /// The kubelet's readiness probe (Patroni's /readiness) passes.
    pub ready: bool,
    /// Patroni's status annotation says running and streaming from the leader.
    pub streaming: bool,
    /// Patroni's REST API answered /sync with 200: it is a synchronous standby right now, by its
    /// own account. None when not asked.
    pub answers_sync: Option<bool>,
    /// The pod is already being deleted.
    pub terminating: bool,
}

/// Everything the decision needs about a tenant whose leader lock is held.
#[derive(Clone, Debug, Default)]
pub struct Assessment {
    pub leader: String,
    /// How long the operator itself has seen the same renewTime (its own clock, so clock skew
    /// between nodes does not matter, and an API-server outage restarts the count).
    pub unrenewed_for: Duration,
    /// Consecutive probes of the leader's REST API that got no answer in time.
    pub silent_probes: u32,
    /// Patroni's dynamic configuration has synchronous_mode on.
    pub synchronous_mode: bool,
    /// The leader Patroni's `-sync` record was written for; the standby names in it count only
    /// when it is the current lock holder's.
    pub sync_leader: Option<String>,
    pub sync_standbys: Vec<String>,
    pub members: Vec<MemberView>,
}

/// How long the lock may go unrenewed before the leader is probed. Patroni renews every
/// loop_wait; two more seconds absorb a slow API-server round trip.
pub fn suspicion_threshold(loop_wait: Duration) -> Duration {
    loop_wait + Duration::from_secs(2)
}

/// Probes that must go unanswered, one per tick, before the leader counts as lost.
pub const SILENT_PROBES_TO_FENCE: u32 = 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The lock is renewed, or the leader answers: nothing to do.
    Healthy,
    /// The lock is not renewed: probe the leader (again).
    Probe,
    /// The leader is lost and the standbys that may take over need asking for their /sync.
    AskStandbys(Vec<String>),
    /// Fence the leader (delete its pod) and release its lock so `standby` takes over now.
    FailOver { leader: String, standby: String },
    /// The leader is lost but no standby is known to hold every acknowledged write: leave it
    /// to Patroni (which in synchronous mode promotes only a synchronous standby anyway).
    Refuse(String),
}

pub fn decide(assessment: &Assessment, loop_wait: Duration) -> Verdict {
    if assessment.unrenewed_for < suspicion_threshold(loop_wait) {
        return Verdict::Healthy;
    }
    if assessment.silent_probes < SILENT_PROBES_TO_FENCE {
        return Verdict::Probe;
    }
    let leader = &assessment.leader;
    if !assessment.synchronous_mode {
        return Verdict::Refuse(format!(
            "leader {leader} stopped renewing its lock and does not answer, but synchronous mode is off: no standby is known to hold every acknowledged write, so Patroni's lock expiry decides"
        ));
    }
    if assessment.sync_leader.as_deref() != Some(leader.as_str()) {
        return Verdict::Refuse(format!(
            "leader {leader} stopped renewing its lock and does not answer, but Patroni's synchronous-standby record was not written by it ({}): no standby is known to be in sync",
            assessment.sync_leader.as_deref().unwrap_or("no record")
        ));
    }
    let candidates: Vec<&MemberView> = assessment
        .sync_standbys
        .iter()
        .filter(|name| *name != leader)
        .filter_map(|name| assessment.members.iter().find(|m| &m.name == name))
        .filter(|member| member.ready && member.streaming && !member.terminating)
        .collect();
    if candidates.is_empty() {
        return Verdict::Refuse(format!(
            "leader {leader} stopped renewing its lock and does not answer, but no synchronous standby ({}) is ready and streaming",
            if assessment.sync_standbys.is_empty() {
                "none named".to_string()
            } else {
                assessment.sync_standbys.join(", ")
            }
        ));
    }
    if let Some(standby) = candidates
        .iter()
        .find(|member| member.answers_sync == Some(true))
    {
        return Verdict::FailOver {
            leader: leader.clone(),
            standby: standby.name.clone(),
        };
    }
    let unasked: Vec<String> = candidates
        .iter()
        .filter(|member| member.answers_sync.is_none())
        .map(|member| member.name.clone())
        .collect();
    if unasked.is_empty() {
        return Verdict::Refuse(format!(
            "leader {leader} stopped renewing its lock and does not answer, but its synchronous standby does not confirm it is in sync"
        ));
    }
    Verdict::AskStandbys(unasked)
}

/// Members that still carry the primary role label although another member holds the lock and
/// whose Patroni does not answer: a former leader that hung while the lock moved on. Its
/// PostgreSQL would answer reads as a primary the moment it resumes, until its Patroni demotes
/// it, so it is fenced too. A former leader whose Patroni answers relabels itself.
pub fn stale_primaries<'a>(
    leader: &str,
    labelled_primary: &'a [(String, u32)],
) -> impl Iterator<Item = &'a str> {
    labelled_primary
        .iter()
        .filter(move |(name, silent)| name != leader && *silent >= SILENT_PROBES_TO_FENCE)
        .map(|(name, _)| name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOP_WAIT: Duration = Duration::from_secs(5);

    fn standby(name: &str) -> MemberView {
        MemberView {
            name: name.into(),
            ready: true,
            streaming: true,
            answers_sync: None,
            terminating: false,
        }
    }

    fn lost_leader() -> Assessment {
        Assessment {
            leader: "postgres-0".into(),
            unrenewed_for: Duration::from_secs(9),
            silent_probes: 2,
            synchronous_mode: true,
            sync_leader: Some("postgres-0".into()),
            sync_standbys: vec!["postgres-1".into()],
            members: vec![
                MemberView {
                    name: "postgres-0".into(),
                    ..MemberView::default()
                },
                standby("postgres-1"),
            ],
        }
    }

    #[test]
    fn a_renewed_lock_needs_nothing_and_a_stale_one_is_probed_first() {
        let mut assessment = lost_leader();
        assessment.unrenewed_for = Duration::from_secs(6);
        assert_eq!(decide(&assessment, LOOP_WAIT), Verdict::Healthy);
        assessment.unrenewed_for = Duration::from_secs(7);
        assessment.silent_probes = 1;
        assert_eq!(decide(&assessment, LOOP_WAIT), Verdict::Probe);
    }

    #[test]
    fn a_silent_leader_hands_over_only_to_a_standby_that_confirms_it_is_in_sync() {
        let mut assessment = lost_leader();
        assert_eq!(
            decide(&assessment, LOOP_WAIT),
            Verdict::AskStandbys(vec!["postgres-1".into()])
        );
        assessment.members[1].answers_sync = Some(true);
        assert_eq!(
            decide(&assessment, LOOP_WAIT),
            Verdict::FailOver {
                leader: "postgres-0".into(),
                standby: "postgres-1".into()
            }
        );
        assessment.members[1].answers_sync = Some(false);
        assert!(matches!(
            decide(&assessment, LOOP_WAIT),
            Verdict::Refuse(message) if message.contains("does not confirm")
        ));
    }

    #[test]
    fn no_failover_without_synchronous_mode_or_an_in_sync_standby() {
        let mut assessment = lost_leader();
        assessment.synchronous_mode = false;
        assert!(
            matches!(decide(&assessment, LOOP_WAIT), Verdict::Refuse(m) if m.contains("synchronous mode is off"))
        );

        let mut assessment = lost_leader();
        assessment.sync_leader = Some("postgres-1".into());
        assert!(
            matches!(decide(&assessment, LOOP_WAIT), Verdict::Refuse(m) if m.contains("not written by it"))
        );

        let mut assessment = lost_leader();
        assessment.members[1].streaming = false;
        assert!(
            matches!(decide(&assessment, LOOP_WAIT), Verdict::Refuse(m) if m.contains("ready and streaming"))
        );

        let mut assessment = lost_leader();
        assessment.members[1].ready = false;
        assert!(matches!(decide(&assessment, LOOP_WAIT), Verdict::Refuse(_)));

        let mut assessment = lost_leader();
        assessment.sync_standbys.clear();
        assert!(
            matches!(decide(&assessment, LOOP_WAIT), Verdict::Refuse(m) if m.contains("none named"))
        );

        // The lock holder named as its own standby is never a candidate.
        let mut assessment = lost_leader();
        assessment.sync_standbys = vec!["postgres-0".into()];
        assessment.members[0].ready = true;
        assessment.members[0].streaming = true;
        assessment.members[0].answers_sync = Some(true);
        assert!(matches!(decide(&assessment, LOOP_WAIT), Verdict::Refuse(_)));
    }

    #[test]
    fn only_silent_former_leaders_still_labelled_primary_are_fenced() {
        let labelled = vec![
            ("postgres-0".to_string(), 5),
            ("postgres-1".to_string(), 2),
            ("postgres-2".to_string(), 1),
        ];
        let fenced: Vec<&str> = stale_primaries("postgres-0", &labelled).collect();
        assert_eq!(fenced, vec!["postgres-1"]);
    }
}
