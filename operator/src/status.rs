//! The status a DfrCountry should show for what the operator observed. Pure: the reconciler
//! gathers [`Observed`] and writes the result only when it differs from the current status.

use dfr_crds::condition_type as ct;
use dfr_crds::{ApiStatus, DfrCountryStatus, Endpoints, PostgresStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::naming;

/// What the operator saw of a tenant in one reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The DfrCountry generation this observation answers.
    pub generation: Option<i64>,
    pub namespace: String,
    pub postgres_ready: i32,
    pub postgres_desired: i32,
    /// The pod Patroni labelled leader, if it is Ready.
    pub primary: Option<String>,
    pub api_available: i32,
    pub api_desired: i32,
    /// The Deployment's Available condition is True.
    pub api_deployment_available: bool,
    /// What the API's HorizontalPodAutoscaler reports, where autoscaling is on.
    pub autoscaler: crate::autoscaling::Observation,
    pub certificates_not_after: Option<Timestamp>,
    /// Every certificate's expiry, for status.certificates.
    pub certificates: Vec<dfr_crds::CertificateStatus>,
    pub ca_renewal: Option<dfr_crds::CaRenewalStatus>,
    /// Whether every running member serves its current certificate: (status, reason,
    /// message); None keeps what the status shows.
    pub certificates_served: Option<(bool, String, String)>,
    /// With spec.tls.issuerRef: the cert-manager Certificates that are not Ready, for
    /// CertificatesValid; None when all are (or the operator issues them itself).
    pub certificates_not_ready: Option<String>,
    /// The active PII key and since when, if the key ring Secret can be read.
    pub pii_key: Option<dfr_crds::PiiKeyStatus>,
    /// A problem that needs a person: (reason, message).
    pub problem: Option<(String, String)>,
    /// A risk while the tenant still serves (no synchronous standby): Degraded, not unready.
    pub risk: Option<(String, String)>,
    pub suspended: bool,
    pub cluster_domain: String,
    /// spec.tls.renewBefore: a certificate this close to expiry is reported as due.
    pub renew_before: std::time::Duration,
    /// The kind of backup repository the spec asks for.
    pub backup_repository: crate::backup::Repository,
    /// The backup and expiry runs the tenant's pods show.
    pub backup_runs: crate::backup::report::Runs,
    /// Whether the monitoring objects are applied; None (suspended, or a problem report) keeps
    /// the condition the status already has.
    pub monitoring: Option<crate::children::monitoring::MonitoringState>,
    /// Restarts waiting or under way: (pending, reason, message); None keeps what the status
    /// shows.
    pub maintenance: Option<(bool, String, String)>,
}

pub fn desired_status(
    observed: &Observed,
    previous: Option<&DfrCountryStatus>,
    now: Timestamp,
) -> DfrCountryStatus {
    let generation = observed.generation;
    let previous_conditions = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let condition = |type_: &str, status: bool, reason: &str, message: String| {
        let status = if status { "True" } else { "False" };
        make_condition(
            previous_conditions,
            type_,
            status,
            reason,
            message,
            generation,
            now,
        )
    };

    let database = database_condition(observed);
    let api = api_condition(observed);
    let database_ready = database.0;
    let api_ready = api.0;
    let ready = database_ready && api_ready && observed.problem.is_none();

    let (ready_reason, ready_message) = match (&observed.problem, database_ready, api_ready) {
        (Some((reason, message)), _, _) => (reason.clone(), message.clone()),
        (None, false, _) => (database.1.to_string(), database.2.clone()),
        (None, true, false) => (api.1.to_string(), api.2.clone()),
        (None, true, true) => (
            "TenantAvailable".to_string(),
            format!(
                "PostgreSQL leader {} is up and the API is available ({}/{})",
                observed.primary.as_deref().unwrap_or("?"),
                observed.api_available,
                observed.api_desired
            ),
        ),
    };

    let (progressing, progressing_reason, progressing_message) = if observed.suspended {
        (
            false,
            "Suspended",
            "spec.suspend is true: the operator is not changing this tenant's resources, only reporting status".to_string(),
        )
    } else if observed.problem.is_some() {
        (
            false,
            "Blocked",
            "the operator cannot make progress until the Degraded problem is fixed".to_string(),
        )
    } else if ready {
        (
            false,
            "ReconcileComplete",
            "all resources match the spec and are available".to_string(),
        )
    } else {
        (
            true,
            "WaitingForResources",
            "resources are applied; waiting for them to become ready".to_string(),
        )
    };

    // A problem stops the reconcile; a replication risk threatens acknowledged writes; an
    // autoscaler that cannot scale only leaves the API at its size. The first names the reason,
    // the message lists every one.
    let autoscaler_problem = observed.autoscaler.problem.as_ref();
    let (degraded, degraded_reason, degraded_message) =
        match (&observed.problem, &observed.risk, autoscaler_problem) {
            (Some((reason, message)), _, _) => (true, reason.as_str(), message.clone()),
            (None, Some((reason, message)), autoscaler) => (
                true,
                reason.as_str(),
                match autoscaler {
                    Some((_, also)) => format!("{message}; {also}"),
                    None => message.clone(),
                },
            ),
            (None, None, Some((reason, message))) => (true, reason.as_str(), message.clone()),
            (None, None, None) => (
                false,
                "NoProblems",
                "no problem needs attention".to_string(),
            ),
        };

    let certificates = match &observed.certificates_not_ready {
        Some(message) => ("False", "CertificateNotReady", message.clone()),
        None => certificates_condition(observed.renew_before, observed.certificates_not_after, now),
    };

    let last_backup = crate::backup::last_backup(
        &observed.backup_runs,
        previous.and_then(|s| s.last_backup.as_ref()),
    );
    let backups = crate::backup::inventory(
        &observed.backup_runs,
        previous.and_then(|s| s.backups.as_ref()),
    );
    let last_restore_check = crate::backup::last_restore_check(
        &observed.backup_runs,
        previous.and_then(|s| s.last_restore_check.as_ref()),
    );
    let backups_health = crate::backup::health(
        observed.backup_repository,
        &observed.backup_runs,
        last_backup.as_ref(),
        backups.as_ref(),
        last_restore_check.as_ref(),
    );

    let mut conditions = vec![
        condition(ct::READY, ready, &ready_reason, ready_message),
        condition(
            ct::PROGRESSING,
            progressing,
            progressing_reason,
            progressing_message,
        ),
        condition(ct::DEGRADED, degraded, degraded_reason, degraded_message),
        condition(ct::DATABASE_READY, database_ready, database.1, database.2),
        condition(ct::API_READY, api_ready, api.1, api.2),
        make_condition(
            previous_conditions,
            ct::BACKUPS_HEALTHY,
            backups_health.0,
            backups_health.1,
            backups_health.2,
            generation,
            now,
        ),
        make_condition(
            previous_conditions,
            ct::CERTIFICATES_VALID,
            certificates.0,
            certificates.1,
            certificates.2,
            generation,
            now,
        ),
    ];
    match &observed.monitoring {
        Some(state) => conditions.push(condition(
            ct::MONITORING_READY,
            state.ready,
            state.reason,
            state.message.clone(),
        )),
        None => conditions.extend(
            previous_conditions
                .iter()
                .find(|c| c.type_ == ct::MONITORING_READY)
                .cloned(),
        ),
    }

    match &observed.maintenance {
        Some((pending, reason, message)) => conditions.push(condition(
            ct::MAINTENANCE_PENDING,
            *pending,
            reason,
            message.clone(),
        )),
        None => conditions.extend(
            previous_conditions
                .iter()
                .find(|c| c.type_ == ct::MAINTENANCE_PENDING)
                .cloned(),
        ),
    }

    match &observed.certificates_served {
        Some((served, reason, message)) => conditions.push(condition(
            ct::CERTIFICATES_SERVED,
            *served,
            reason,
            message.clone(),
        )),
        None => conditions.extend(
            previous_conditions
                .iter()
                .find(|c| c.type_ == ct::CERTIFICATES_SERVED)
                .cloned(),
        ),
    }

    let namespace = &observed.namespace;
    let domain = &observed.cluster_domain;
    DfrCountryStatus {
        observed_generation: generation,
        conditions,
        namespace: Some(namespace.clone()),
        primary: observed.primary.clone(),
        postgres: Some(PostgresStatus {
            ready: observed.postgres_ready,
            instances: observed.postgres_desired,
        }),
        api: Some(ApiStatus {
            ready: observed.api_available,
            desired: observed.api_desired,
            replicas: format!("{}/{}", observed.api_available, observed.api_desired),
            autoscaler: observed.autoscaler.status.clone(),
        }),
        last_backup,
        backups,
        last_restore_check,
        certificates_not_after: observed.certificates_not_after.map(Time),
        certificates: observed.certificates.clone(),
        ca_renewal: observed.ca_renewal.clone(),
        pii_key: observed.pii_key.clone(),
        endpoints: Some(Endpoints {
            api: format!(
                "https://{}:{}",
                naming::cluster_dns(naming::API, namespace, domain),
                naming::API_PORT
            ),
            read_write: format!(
                "{}:{}",
                naming::cluster_dns(naming::POSTGRES_RW, namespace, domain),
                naming::POSTGRES_PORT
            ),
            read_only: format!(
                "{}:{}",
                naming::cluster_dns(naming::POSTGRES_RO, namespace, domain),
                naming::POSTGRES_PORT
            ),
        }),
    }
}

fn database_condition(observed: &Observed) -> (bool, &'static str, String) {
    match &observed.primary {
        Some(primary) => (
            true,
            "PrimaryAvailable",
            format!(
                "{primary} is the Patroni leader; {}/{} PostgreSQL pods ready",
                observed.postgres_ready, observed.postgres_desired
            ),
        ),
        None => (
            false,
            "WaitingForPrimary",
            format!(
                "{}/{} PostgreSQL pods ready, no Patroni leader yet",
                observed.postgres_ready, observed.postgres_desired
            ),
        ),
    }
}

/// Ready by the pods that serve; an autoscaler that cannot scale does not stop the API serving,
/// so it is named in the message (and makes the tenant Degraded) without making it unready.
fn api_condition(observed: &Observed) -> (bool, &'static str, String) {
    let mut counts = format!(
        "{}/{} API pods available",
        observed.api_available, observed.api_desired
    );
    if let Some((_, message)) = &observed.autoscaler.problem {
        counts.push_str("; ");
        counts.push_str(message);
    }
    if observed.api_deployment_available && observed.api_available > 0 {
        (true, "MinimumReplicasAvailable", counts)
    } else {
        (false, "WaitingForApi", counts)
    }
}

fn certificates_condition(
    renew_before: std::time::Duration,
    not_after: Option<Timestamp>,
    now: Timestamp,
) -> (&'static str, &'static str, String) {
    let Some(not_after) = not_after else {
        return (
            "Unknown",
            "NoCertificate",
            "no certificate has been issued yet".to_string(),
        );
    };
    if not_after <= now {
        return (
            "False",
            "CertificateExpired",
            format!("a certificate expired at {not_after}"),
        );
    }
    let renewal_due = not_after
        .checked_sub(jiff_span(renew_before))
        .map(|due| due <= now)
        .unwrap_or(false);
    if renewal_due {
        (
            "True",
            "RenewalDue",
            format!("valid until {not_after}; renewal is due"),
        )
    } else {
        (
            "True",
            "CertificatesCurrent",
            format!("valid until {not_after}"),
        )
    }
}

fn jiff_span(duration: std::time::Duration) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::try_from(duration)
        .unwrap_or(k8s_openapi::jiff::SignedDuration::MAX)
}

/// A condition that keeps its lastTransitionTime while its status does not change, as
/// metav1.Condition consumers (kubectl wait, Argo CD, Flux) expect.
fn make_condition(
    previous: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation,
        last_transition_time,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn find<'a>(status: &'a DfrCountryStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    fn waiting() -> Observed {
        Observed {
            generation: Some(3),
            namespace: "dfr-ton-dev".into(),
            postgres_desired: 2,
            renew_before: std::time::Duration::from_secs(720 * 3600),
            api_desired: 2,
            cluster_domain: "cluster.local".into(),
            ..Observed::default()
        }
    }

    #[test]
    fn without_a_leader_the_tenant_is_not_ready_and_says_why() {
        let status = desired_status(&waiting(), None, Timestamp::UNIX_EPOCH);
        let ready = find(&status, ct::READY);
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "WaitingForPrimary");
        assert_eq!(
            ready.message,
            "0/2 PostgreSQL pods ready, no Patroni leader yet"
        );
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(find(&status, ct::PROGRESSING).status, "True");
        assert_eq!(status.api.as_ref().unwrap().replicas, "0/2");
    }

    #[test]
    fn monitoring_readiness_is_reported_and_kept_while_unobserved() {
        let mut observed = waiting();
        let status = desired_status(&observed, None, Timestamp::UNIX_EPOCH);
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.type_ != ct::MONITORING_READY)
        );
        observed.monitoring = Some(crate::children::monitoring::MonitoringState {
            ready: false,
            reason: crate::monitoring::REASON_CRDS_ABSENT,
            message: "no PodMonitor kind".into(),
        });
        let absent = desired_status(&observed, None, Timestamp::UNIX_EPOCH);
        let condition = find(&absent, ct::MONITORING_READY);
        assert_eq!(condition.status, "False");
        assert_eq!(condition.reason, "MonitoringCRDsAbsent");
        // A reconcile that does not look (suspended, or reporting a problem) keeps it.
        observed.monitoring = None;
        let kept = desired_status(&observed, Some(&absent), Timestamp::UNIX_EPOCH);
        assert_eq!(find(&kept, ct::MONITORING_READY), condition);
    }

    #[test]
    fn ready_needs_both_the_leader_and_an_available_api() {
        let mut observed = waiting();
        observed.primary = Some("postgres-0".into());
        observed.postgres_ready = 2;
        let status = desired_status(&observed, None, Timestamp::UNIX_EPOCH);
        assert_eq!(find(&status, ct::READY).reason, "WaitingForApi");
        observed.api_available = 2;
        observed.api_deployment_available = true;
        let status = desired_status(&observed, None, Timestamp::UNIX_EPOCH);
        assert_eq!(find(&status, ct::READY).status, "True");
        assert_eq!(find(&status, ct::PROGRESSING).status, "False");
        assert_eq!(status.primary.as_deref(), Some("postgres-0"));
    }

    #[test]
    fn a_problem_makes_the_tenant_degraded_and_not_ready() {
        let mut observed = waiting();
        observed.problem = Some(("NamespaceConflict".into(), "namespace taken".into()));
        let status = desired_status(&observed, None, Timestamp::UNIX_EPOCH);
        assert_eq!(find(&status, ct::DEGRADED).status, "True");
        assert_eq!(find(&status, ct::DEGRADED).reason, "NamespaceConflict");
        assert_eq!(find(&status, ct::READY).reason, "NamespaceConflict");
    }

    #[test]
    fn transition_time_is_kept_while_the_status_does_not_change() {
        let first = desired_status(&waiting(), None, Timestamp::UNIX_EPOCH);
        let later = Timestamp::from_second(1_000).unwrap();
        let second = desired_status(&waiting(), Some(&first), later);
        assert_eq!(
            first, second,
            "an unchanged observation must produce an identical status"
        );
        let mut observed = waiting();
        observed.primary = Some("postgres-1".into());
        let third = desired_status(&observed, Some(&second), later);
        assert_eq!(
            find(&third, ct::DATABASE_READY).last_transition_time,
            Time(later)
        );
    }

    #[test]
    fn an_autoscaler_without_metrics_degrades_the_tenant_but_the_api_stays_ready() {
        let mut observed = waiting();
        observed.primary = Some("postgres-0".into());
        observed.api_available = 2;
        observed.api_deployment_available = true;
        observed.autoscaler = crate::autoscaling::Observation {
            status: Some(dfr_crds::AutoscalerStatus {
                current_replicas: 2,
                desired_replicas: 2,
                last_scale_time: None,
            }),
            problem: Some((
                "FailedGetResourceMetric".into(),
                "HorizontalPodAutoscaler dfr-api cannot read its metrics".into(),
            )),
        };
        let status = desired_status(&observed, None, Timestamp::UNIX_EPOCH);
        let degraded = find(&status, ct::DEGRADED);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "FailedGetResourceMetric")
        );
        let api = find(&status, ct::API_READY);
        assert_eq!(api.status, "True");
        assert!(
            api.message.contains("cannot read its metrics"),
            "{}",
            api.message
        );
        assert_eq!(find(&status, ct::READY).status, "True");
        let autoscaler = status.api.unwrap().autoscaler.unwrap();
        assert_eq!(
            (autoscaler.current_replicas, autoscaler.desired_replicas),
            (2, 2)
        );

        // A replication risk names the reason; the message keeps both.
        observed.risk = Some(("SynchronousStandbyLost".into(), "no standby".into()));
        let both = desired_status(&observed, None, Timestamp::UNIX_EPOCH);
        let degraded = find(&both, ct::DEGRADED);
        assert_eq!(degraded.reason, "SynchronousStandbyLost");
        assert!(
            degraded
                .message
                .contains("no standby; HorizontalPodAutoscaler")
        );
    }

    #[test]
    fn suspended_tenants_say_so() {
        let mut observed = waiting();
        observed.suspended = true;
        let status = desired_status(&observed, None, Timestamp::UNIX_EPOCH);
        assert_eq!(find(&status, ct::PROGRESSING).reason, "Suspended");
    }

    #[test]
    fn certificates_near_expiry_are_due_for_renewal() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let soon = Timestamp::from_second(1_000_000 + 3600).unwrap();
        assert_eq!(
            certificates_condition(std::time::Duration::from_secs(720 * 3600), Some(soon), now).1,
            "RenewalDue"
        );
        let far = Timestamp::from_second(1_000_000 + 200 * 24 * 3600).unwrap();
        assert_eq!(
            certificates_condition(std::time::Duration::from_secs(720 * 3600), Some(far), now).1,
            "CertificatesCurrent"
        );
        assert_eq!(
            certificates_condition(std::time::Duration::from_secs(720 * 3600), Some(now), now).0,
            "False"
        );
    }
}
