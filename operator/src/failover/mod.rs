//! Operator-assisted failover. Patroni alone replaces a leader that stops renewing its lock only
//! when the lock expires (ttl, 20 s at the least), and a hung leader that resumes keeps answering
//! reads as a primary until its Patroni notices. Every second this guard looks at each tenant's
//! leader lock; when the lock goes unrenewed past loop_wait and the leader's Patroni does not
//! answer over its REST API, while a synchronous standby is ready, streaming and confirms over
//! its own REST API that it is in sync, the guard
//!   1. re-reads the lock from the API server (the cache may lag),
//!   2. fences the leader: deletes its pod, so the kubelet kills it and it can take no write or
//!      serve no read even if it resumes (its pending SIGKILL runs before any of its code),
//!   3. releases the lock exactly as Patroni releases its own (the `leader` annotation removed
//!      under the record's resourceVersion), so the synchronous standby takes it at once.
//!
//! A leader that renews meanwhile makes step 3 fail on the version, and nothing more happens.
//! It never promotes anything itself: Patroni does, and in synchronous mode only a synchronous
//! standby may. A former leader still labelled primary whose Patroni does not answer is fenced
//! the same way. Every decision is an Event on the DfrCountry and a count in
//! `dfr_operator_failover_actions_total`.

mod decision;
mod probe;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde_json::Value;
use tracing::{info, warn};

use crate::cache::Caches;
use crate::children::patroni::LOOP_WAIT_SECONDS;
use crate::metrics::Metrics;
use crate::patroni_state::{self, Member};
use crate::{labels, naming};
pub use decision::{Assessment, MemberView, Verdict, decide, stale_primaries};
use dfr_crds::DfrCountry;
pub use probe::PatroniProbe;

const TICK: Duration = Duration::from_secs(1);
/// One probe must answer well inside a tick; Patroni's REST API answers in milliseconds.
const PROBE_DEADLINE: Duration = Duration::from_millis(900);
/// A fenced member's containers get SIGTERM and, two seconds later at the latest, SIGKILL. Not
/// 0: that would remove the pod object at once and let its replacement start on the same
/// volume before the kubelet has killed the old processes.
const FENCE_GRACE_SECONDS: u32 = 1;

fn loop_wait() -> Duration {
    Duration::from_secs(u64::from(LOOP_WAIT_SECONDS))
}

/// What the guard remembers of one tenant between ticks.
#[derive(Default)]
struct Watch {
    holder: String,
    renew: String,
    since: Option<Instant>,
    silent_probes: u32,
    /// Former leaders still labelled primary, with their consecutive unanswered probes.
    labelled_primary: BTreeMap<String, u32>,
    /// The last refusal said as an Event, so it is said once, not every second.
    refused: Option<String>,
}

pub struct FailoverGuard {
    client: Client,
    caches: Caches,
    metrics: Metrics,
    recorder: Recorder,
    watches: HashMap<String, Watch>,
}

impl FailoverGuard {
    pub fn new(client: Client, caches: Caches, metrics: Metrics, recorder: Recorder) -> Self {
        Self {
            client,
            caches,
            metrics,
            recorder,
            watches: HashMap::new(),
        }
    }

    /// Runs until the task is aborted.
    pub async fn run(mut self) {
        while !self.caches.wait_until_ready(Duration::from_secs(60)).await {}
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            ticks.tick().await;
            self.tick().await;
        }
    }

    async fn tick(&mut self) {
        let leader_record = patroni_state::record("leader");
        let records: Vec<ConfigMap> = self
            .caches
            .patroni
            .state()
            .into_iter()
            .filter(|record| record.metadata.name.as_deref() == Some(leader_record.as_str()))
            .map(|record| (*record).clone())
            .collect();
        let now = Instant::now();
        let mut seen = Vec::new();
        for record in &records {
            let Some(namespace) = record.namespace() else {
                continue;
            };
            let annotations = record.annotations();
            let holder = annotations.get("leader").cloned().unwrap_or_default();
            let renew = annotations.get("renewTime").cloned().unwrap_or_default();
            let watch = self.watches.entry(namespace.clone()).or_default();
            if watch.holder != holder || watch.renew != renew || watch.since.is_none() {
                watch.holder = holder;
                watch.renew = renew;
                watch.since = Some(now);
                watch.silent_probes = 0;
            }
            seen.push(namespace);
        }
        self.watches
            .retain(|namespace, _| seen.iter().any(|seen| seen == namespace));

        let mut taken = Vec::new();
        for record in records {
            let Some(namespace) = record.namespace() else {
                continue;
            };
            if let Some(watch) = self.watches.remove(&namespace) {
                taken.push((record, namespace, watch));
            }
        }
        let checked = join_all(
            taken
                .into_iter()
                .map(|(record, namespace, watch)| self.check(record, namespace, watch)),
        )
        .await;
        for (namespace, watch) in checked {
            self.watches.insert(namespace, watch);
        }
    }

    /// One tenant, one tick. Takes and gives back its Watch so tenants are checked side by side.
    async fn check(
        &self,
        record: ConfigMap,
        namespace: String,
        mut watch: Watch,
    ) -> (String, Watch) {
        if watch.holder.is_empty() {
            return (namespace, watch);
        }
        let tenant = record.labels().get(labels::INSTANCE).cloned();
        let pods: Vec<Pod> = self
            .caches
            .in_namespace::<Pod>(&namespace, &[(labels::PATRONI_SCOPE, naming::POSTGRES)]);
        let unrenewed_for = watch.since.map(|t| t.elapsed()).unwrap_or_default();
        let suspicious = unrenewed_for >= decision::suspicion_threshold(loop_wait());
        let former_primaries: Vec<&Pod> = pods
            .iter()
            .filter(|pod| {
                pod.labels().get(labels::PATRONI_ROLE).map(String::as_str)
                    == Some(labels::PATRONI_ROLE_PRIMARY)
                    && pod.name_any() != watch.holder
                    && pod.metadata.deletion_timestamp.is_none()
            })
            .collect();
        if !suspicious && former_primaries.is_empty() {
            watch.labelled_primary.clear();
            watch.refused = None;
            return (namespace, watch);
        }
        let probe = match self.probe(&namespace) {
            Ok(probe) => probe,
            Err(error) => {
                warn!(%namespace, %error, "cannot probe Patroni's REST API");
                return (namespace, watch);
            }
        };

        // Former leaders that hung while the lock moved on.
        let mut labelled = BTreeMap::new();
        for pod in &former_primaries {
            let silent = watch
                .labelled_primary
                .get(&pod.name_any())
                .copied()
                .unwrap_or(0);
            let answered = match pod_ip(pod) {
                Some(ip) => probe.status(ip, "/liveness").await.is_ok(),
                None => false,
            };
            labelled.insert(pod.name_any(), if answered { 0 } else { silent + 1 });
        }
        watch.labelled_primary = labelled;
        let counts: Vec<(String, u32)> = watch
            .labelled_primary
            .iter()
            .map(|(name, silent)| (name.clone(), *silent))
            .collect();
        for former in stale_primaries(&watch.holder, &counts) {
            if let Some(pod) = former_primaries.iter().find(|p| p.name_any() == former) {
                let note = format!(
                    "fenced former leader {former}: it is still labelled primary while {} holds the lock, and its Patroni does not answer",
                    watch.holder
                );
                self.fence(&namespace, pod).await;
                self.report(tenant.as_deref(), "FormerLeaderFenced", note)
                    .await;
            }
        }

        if !suspicious {
            return (namespace, watch);
        }
        let Some(leader_pod) = pods.iter().find(|pod| pod.name_any() == watch.holder) else {
            return (namespace, watch);
        };
        if leader_pod.metadata.deletion_timestamp.is_some() {
            return (namespace, watch);
        }
        let leader_answers = match pod_ip(leader_pod) {
            Some(ip) => probe.status(ip, "/liveness").await.is_ok(),
            None => false,
        };
        watch.silent_probes = if leader_answers {
            0
        } else {
            watch.silent_probes + 1
        };

        let mut assessment = self.assess(&namespace, &watch, unrenewed_for, &pods);
        let mut verdict = decide(&assessment, loop_wait());
        if let Verdict::AskStandbys(names) = &verdict {
            for name in names {
                let answer = match pods.iter().find(|p| &p.name_any() == name).and_then(pod_ip) {
                    Some(ip) => probe.status(ip, "/sync").await.ok() == Some(200),
                    None => false,
                };
                if let Some(member) = assessment.members.iter_mut().find(|m| &m.name == name) {
                    member.answers_sync = Some(answer);
                }
            }
            verdict = decide(&assessment, loop_wait());
        }
        match verdict {
            Verdict::Healthy | Verdict::Probe | Verdict::AskStandbys(_) => {}
            Verdict::Refuse(message) => {
                if watch.refused.as_deref() != Some(message.as_str()) {
                    watch.refused = Some(message.clone());
                    self.report(tenant.as_deref(), "FailoverRefused", message)
                        .await;
                }
            }
            Verdict::FailOver { leader, standby } => {
                let started = Instant::now();
                let outcome = self
                    .fail_over(&namespace, &record, leader_pod, &watch)
                    .await;
                let (reason, note) = match outcome {
                    Ok(()) => (
                        "LeaderFenced",
                        format!(
                            "leader {leader} had not renewed its lock for {:.1} s and its Patroni did not answer {} probes; fenced it and released its lock for synchronous standby {standby} ({} ms)",
                            unrenewed_for.as_secs_f64(),
                            watch.silent_probes,
                            started.elapsed().as_millis()
                        ),
                    ),
                    Err(why) => ("FailoverAborted", format!("leader {leader}: {why}")),
                };
                info!(%namespace, reason, "{note}");
                self.report(tenant.as_deref(), reason, note).await;
                watch.silent_probes = 0;
                watch.since = None;
            }
        }
        (namespace, watch)
    }

    fn assess(
        &self,
        namespace: &str,
        watch: &Watch,
        unrenewed_for: Duration,
        pods: &[Pod],
    ) -> Assessment {
        let config = self
            .caches
            .patroni_state(namespace, &patroni_state::record("config"))
            .and_then(|record| record.annotations().get("config").cloned())
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .unwrap_or(Value::Null);
        let sync_leader = self
            .caches
            .patroni_state(namespace, &patroni_state::record("sync"))
            .and_then(|record| record.annotations().get("leader").cloned());
        let members = pods
            .iter()
            .filter_map(|pod| {
                let member = Member::from_pod(pod)?;
                Some(MemberView {
                    streaming: member.state.as_deref() == Some("running")
                        && member.replication.as_deref() == Some("streaming"),
                    ready: member.ready,
                    name: member.name,
                    answers_sync: None,
                    terminating: pod.metadata.deletion_timestamp.is_some(),
                })
            })
            .collect();
        Assessment {
            leader: watch.holder.clone(),
            unrenewed_for,
            silent_probes: watch.silent_probes,
            synchronous_mode: config.get("synchronous_mode").and_then(Value::as_bool) == Some(true),
            sync_leader,
            sync_standbys: patroni_state::synchronous_standbys(&self.caches, namespace),
            members,
        }
    }

    fn probe(&self, namespace: &str) -> Result<PatroniProbe, String> {
        let secret = self
            .caches
            .get::<k8s_openapi::api::core::v1::Secret>(Some(namespace), naming::SECRET_POSTGRES_TLS)
            .ok_or_else(|| format!("Secret {} not found", naming::SECRET_POSTGRES_TLS))?;
        let ca = secret
            .data
            .as_ref()
            .and_then(|data| data.get("ca.crt"))
            .ok_or_else(|| format!("Secret {} has no ca.crt", naming::SECRET_POSTGRES_TLS))?;
        PatroniProbe::new(&ca.0, namespace, PROBE_DEADLINE)
    }

    async fn fail_over(
        &self,
        namespace: &str,
        cached: &ConfigMap,
        leader_pod: &Pod,
        watch: &Watch,
    ) -> Result<(), String> {
        let records: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let name = cached.name_any();
        let fresh = records
            .get(&name)
            .await
            .map_err(|e| format!("re-reading the lock {name}: {e}"))?;
        let annotations = fresh.annotations();
        if annotations.get("leader") != Some(&watch.holder)
            || annotations.get("renewTime") != Some(&watch.renew)
        {
            return Err("the lock was renewed or moved after all; nothing done".into());
        }
        self.fence(namespace, leader_pod).await;
        let release = serde_json::json!({"metadata": {
            "resourceVersion": fresh.metadata.resource_version,
            "annotations": {"leader": null},
        }});
        let params = PatchParams {
            field_manager: Some(naming::FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match records.patch(&name, &params, &Patch::Merge(&release)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(response)) if response.code == 409 => Err(
                "fenced the leader, but its lock changed before it could be released; Patroni's expiry decides"
                    .into(),
            ),
            Err(error) => Err(format!(
                "fenced the leader, but releasing its lock failed: {error}"
            )),
        }
    }

    /// Deletes the member's pod (only that incarnation of it: the uid is a precondition).
    async fn fence(&self, namespace: &str, pod: &Pod) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(FENCE_GRACE_SECONDS),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(error) = pods.delete(&pod.name_any(), &params).await {
            warn!(%namespace, pod = %pod.name_any(), %error, "could not fence a member");
        }
    }

    async fn report(&self, tenant: Option<&str>, reason: &str, note: String) {
        self.metrics
            .failover_actions
            .with_label_values(&[tenant.unwrap_or(""), reason])
            .inc();
        let Some(tenant) = tenant else {
            return;
        };
        let countries: Api<DfrCountry> = Api::all(self.client.clone());
        let Ok(country) = countries.get(tenant).await else {
            return;
        };
        let event = Event {
            type_: if reason == "FailoverRefused" || reason == "FailoverAborted" {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: "Failover".into(),
            secondary: None,
        };
        if let Err(error) = self
            .recorder
            .publish(&event, &country.object_ref(&()))
            .await
        {
            warn!(%error, reason, "could not publish an Event");
        }
    }
}

fn pod_ip(pod: &Pod) -> Option<IpAddr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}
