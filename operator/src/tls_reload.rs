//! PostgreSQL and Patroni read their certificate, key and CA files only when they start or
//! reload, so a renewed certificate in the postgres-tls Secret is not served by itself. Each
//! reconcile compares the certificate each running member serves on its Patroni REST API (the
//! same files) with the Secret's, and asks a member that serves another one to reload:
//! `POST /reload` on Patroni's REST API. Patroni then reloads its REST API certificate (its
//! serial changed) and sends PostgreSQL a SIGHUP, which loads the new ssl_cert_file, key and
//! ssl_ca_file for new connections and drops none.
//!
//! A member is asked only once the certificate is older than the trust propagation delay (the
//! kubelet writes a changed Secret into the volume within it; a reload before would read the
//! old files), and at most once per reconcile; the tenant is looked at again every
//! [`RECHECK`] while a member serves an old certificate. Pods that are not running (or have no
//! address yet) are left out: a member that starts reads the current files.

use std::net::IpAddr;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::jiff::Timestamp;

use crate::cache::Caches;
use crate::children::secrets::{certificate_issued_at, pem_certificates};
use crate::failover::PatroniProbe;
use crate::tenant::Tenant;
use crate::{labels, naming};

/// How soon a tenant is looked at again while a member serves an old certificate.
pub const RECHECK: Duration = Duration::from_secs(15);
/// One request to a member's REST API; a reconcile waits for it.
const DEADLINE: Duration = Duration::from_secs(3);

/// What a member serves compared with its Secret.
#[derive(Clone, Debug, PartialEq)]
pub enum Serving {
    Current,
    Other,
    /// Its REST API could not be asked (or answered without a certificate).
    Unknown(String),
}

/// What to do about one member.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Nothing,
    Reload,
    /// The kubelet may not have written the certificate into the volume before then.
    WaitForVolume(Timestamp),
    Unreachable(String),
}

/// The decision for a member that serves `serving`, the Secret's certificate issued at
/// `issued_at` (unknown counts as long ago), at `now` with the propagation `delay`.
pub fn decide(
    serving: &Serving,
    issued_at: Option<Timestamp>,
    now: Timestamp,
    delay: Duration,
) -> Decision {
    match serving {
        Serving::Current => Decision::Nothing,
        Serving::Unknown(problem) => Decision::Unreachable(problem.clone()),
        Serving::Other => {
            let visible = issued_at.and_then(|issued| {
                k8s_openapi::jiff::SignedDuration::try_from(delay)
                    .ok()
                    .and_then(|delay| issued.checked_add(delay).ok())
            });
            match visible {
                Some(visible) if visible > now => Decision::WaitForVolume(visible),
                _ => Decision::Reload,
            }
        }
    }
}

/// A PostgreSQL member that runs.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub ip: IpAddr,
}

/// The tenant's running members and what is needed to ask them.
pub struct Members {
    members: Vec<Member>,
    /// The client and the REST API credentials, or why there are none.
    patroni: Result<(PatroniProbe, String, String), String>,
    /// The postgres-tls certificate, DER, and when it was issued.
    wanted: Option<Vec<u8>>,
    issued_at: Option<Timestamp>,
}

impl Members {
    pub fn of(caches: &Caches, tenant: &Tenant) -> Self {
        let namespace = &tenant.namespace;
        let members: Vec<Member> = caches
            .in_namespace::<Pod>(
                namespace,
                &[
                    (labels::NAME, labels::APP_POSTGRES),
                    (labels::INSTANCE, tenant.name.as_str()),
                ],
            )
            .iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .filter_map(|pod| {
                let status = pod.status.as_ref()?;
                if status.phase.as_deref() != Some("Running") {
                    return None;
                }
                Some(Member {
                    name: pod.metadata.name.clone()?,
                    ip: status.pod_ip.as_deref()?.parse().ok()?,
                })
            })
            .collect();
        let tls = caches.get::<Secret>(Some(namespace), naming::SECRET_POSTGRES_TLS);
        let certificate = tls
            .as_ref()
            .and_then(|s| crate::children::secrets::secret_text(s, "tls.crt"));
        let patroni = (|| {
            let tls = tls
                .as_ref()
                .ok_or(format!("Secret {} is missing", naming::SECRET_POSTGRES_TLS))?;
            let bundle = crate::children::secrets::secret_text(tls, "ca.crt").unwrap_or_default();
            let probe = PatroniProbe::new(bundle.as_bytes(), namespace, DEADLINE)?;
            let login = caches
                .get::<Secret>(Some(namespace), naming::SECRET_PATRONI_API)
                .ok_or(format!("Secret {} is missing", naming::SECRET_PATRONI_API))?;
            let user =
                crate::children::secrets::secret_text(&login, "username").unwrap_or_default();
            let password =
                crate::children::secrets::secret_text(&login, "password").unwrap_or_default();
            Ok((probe, user, password))
        })();
        Self {
            members,
            patroni,
            wanted: certificate
                .as_deref()
                .and_then(|pem| pem_certificates(pem).into_iter().next()),
            issued_at: certificate.as_deref().and_then(certificate_issued_at),
        }
    }

    /// What each running member serves.
    pub async fn serving(&self) -> Vec<(String, Serving)> {
        let asked = self.members.iter().map(|member| async move {
            let serving = match (&self.patroni, &self.wanted) {
                (Err(problem), _) => Serving::Unknown(problem.clone()),
                (_, None) => Serving::Unknown(format!(
                    "Secret {} holds no certificate",
                    naming::SECRET_POSTGRES_TLS
                )),
                (Ok((probe, _, _)), Some(wanted)) => {
                    match probe.served_certificate(member.ip).await {
                        Ok(served) if &served == wanted => Serving::Current,
                        Ok(_) => Serving::Other,
                        Err(problem) => Serving::Unknown(problem),
                    }
                }
            };
            (member.name.clone(), serving)
        });
        join_all(asked).await
    }

    async fn reload(&self, member: &Member) -> Result<(), String> {
        let (probe, user, password) = self.patroni.as_ref().map_err(Clone::clone)?;
        match probe.post(member.ip, "/reload", user, password).await? {
            status if (200..300).contains(&status) => Ok(()),
            status => Err(format!("Patroni answered HTTP {status}")),
        }
    }

    /// Reloads each member that serves an old certificate and the Secret's is old enough to be
    /// in its volume; reports what it did and saw.
    pub async fn reload_stale(
        &self,
        serving: &[(String, Serving)],
        now: Timestamp,
        delay: Duration,
    ) -> Report {
        let mut report = Report::default();
        if self.members.is_empty() {
            report.condition = (
                true,
                "NoRunningMembers",
                "no PostgreSQL member is running; a member loads the current certificate when it starts".into(),
            );
            return report;
        }
        let mut pending = Vec::new();
        for (name, serving) in serving {
            let Some(member) = self.members.iter().find(|m| &m.name == name) else {
                continue;
            };
            match decide(serving, self.issued_at, now, delay) {
                Decision::Nothing => {}
                Decision::WaitForVolume(until) => pending.push(format!(
                    "{name} serves an older certificate (reloaded after {until}, once its volume has the new one)"
                )),
                Decision::Unreachable(problem) => {
                    pending.push(format!("{name} could not be asked which certificate it serves: {problem}"))
                }
                Decision::Reload => match self.reload(member).await {
                    Ok(()) => {
                        pending.push(format!("{name} serves an older certificate; reload requested"));
                        report.events.push((
                            false,
                            "CertificateReloaded",
                            format!(
                                "{name} served a certificate other than Secret {}'s: asked its Patroni to reload, which loads the new certificate into its REST API and PostgreSQL without dropping connections",
                                naming::SECRET_POSTGRES_TLS
                            ),
                        ));
                    }
                    Err(problem) => {
                        pending.push(format!("{name} serves an older certificate and could not be reloaded: {problem}"));
                        report.events.push((
                            true,
                            "CertificateReloadFailed",
                            format!("{name} serves an older certificate; POST /reload to its Patroni failed: {problem}"),
                        ));
                    }
                },
            }
        }
        if pending.is_empty() {
            let names: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
            report.condition = (
                true,
                "CurrentCertificateServed",
                format!(
                    "every running member ({}) serves the certificate of Secret {}",
                    names.join(", "),
                    naming::SECRET_POSTGRES_TLS
                ),
            );
        } else {
            report.condition = (false, "ReloadPending", pending.join("; "));
            report.requeue = Some(RECHECK);
        }
        report
    }

    /// Every running member serves the Secret's certificate (true without running members).
    pub fn all_current(serving: &[(String, Serving)]) -> bool {
        serving
            .iter()
            .all(|(_, serving)| *serving == Serving::Current)
    }
}

impl crate::ca_renewal::Reloader for Members {
    /// Every running member must take the reload; the first failure is the answer.
    async fn reload_all(&self) -> Result<(), String> {
        let results = join_all(self.members.iter().map(|member| async move {
            self.reload(member)
                .await
                .map_err(|problem| format!("{}: {problem}", member.name))
        }))
        .await;
        let failed: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }
}

/// What [`Members::reload_stale`] did and saw.
#[derive(Debug, Default)]
pub struct Report {
    /// (status, reason, message) of the CertificatesServed condition.
    pub condition: (bool, &'static str, String),
    /// (warning, reason, note) for an Event each.
    pub events: Vec<(bool, &'static str, String)>,
    pub requeue: Option<Duration>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_secs(120);

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    #[test]
    fn a_member_is_reloaded_only_once_its_volume_can_hold_the_new_certificate() {
        let issued = Some(at(0));
        assert_eq!(
            decide(&Serving::Current, issued, at(500), DELAY),
            Decision::Nothing
        );
        assert_eq!(
            decide(&Serving::Other, issued, at(60), DELAY),
            Decision::WaitForVolume(at(120))
        );
        assert_eq!(
            decide(&Serving::Other, issued, at(120), DELAY),
            Decision::Reload
        );
        // An unreadable issue time does not hold a reload back.
        assert_eq!(
            decide(&Serving::Other, None, at(0), DELAY),
            Decision::Reload
        );
        assert_eq!(
            decide(
                &Serving::Unknown("TLS: refused".into()),
                issued,
                at(500),
                DELAY
            ),
            Decision::Unreachable("TLS: refused".into())
        );
    }

    #[test]
    fn members_are_current_only_when_each_serves_the_secrets_certificate() {
        assert!(Members::all_current(&[]));
        assert!(Members::all_current(&[(
            "postgres-0".into(),
            Serving::Current
        )]));
        assert!(!Members::all_current(&[
            ("postgres-0".into(), Serving::Current),
            ("postgres-1".into(), Serving::Other),
        ]));
        assert!(!Members::all_current(&[(
            "postgres-0".into(),
            Serving::Unknown("timeout".into())
        )]));
    }
}
