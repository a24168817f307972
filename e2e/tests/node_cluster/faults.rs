//! The fault loop, beside the other scenarios: one tenant, a writer through the API that reads
//! back every acknowledged record at once, and one fault after another on its leader: Patroni
//! and PostgreSQL killed, the leader cut off from the network (rules inside its own network
//! namespace only), and a planned switchover from one kubectl command. After each: no
//! acknowledged write missing in SQL on either member, no stale read, and the former leader back
//! as a streaming synchronous standby. (The deleted and the hung leader are the first
//! scenario's.)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use super::backups::{apply, superuser_sql, token, wait_ready};
use super::{Written, eventually, patronictl, run_kubectl, write_until};

// A country no other scenario uses: the namespace is dfr-<country>-<environment>, so two
// scenarios of one country and environment would claim the same namespace.
const NAME: &str = "kir-e2e-faults";
const NAMESPACE: &str = "dfr-kir-test";

async fn healthy_pair() -> (String, String) {
    super::healthy_pair_in(NAMESPACE).await
}

fn stored(pod: &str, ids: &[String]) -> usize {
    super::stored_in(NAMESPACE, pod, ids)
}

fn pod_uid(pod: &str) -> String {
    current_uid(pod).unwrap_or_else(|| panic!("pod {pod} in {NAMESPACE} has no uid"))
}

/// The pod's cgroup directory in the freezer hierarchy (every process of the pod is in it).
fn pod_cgroup(uid: &str) -> PathBuf {
    let root = Path::new("/sys/fs/cgroup/freezer/kubepods");
    ["burstable", "besteffort", ""]
        .iter()
        .map(|class| root.join(class).join(format!("pod{uid}")))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| panic!("no cgroup for pod {uid}"))
}

/// The processes of the pod's containers (not its sandbox's pause process).
fn container_processes(uid: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(pod_cgroup(uid)).unwrap().flatten() {
        let procs = entry.path().join("cgroup.procs");
        let Ok(text) = std::fs::read_to_string(&procs) else {
            continue;
        };
        for pid in text
            .lines()
            .filter_map(|line| line.trim().parse::<i32>().ok())
        {
            let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if !command.starts_with(b"/pause") {
                pids.push(pid);
            }
        }
    }
    pids
}

fn kill_all(pids: &[i32]) {
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

/// Adds (`-I`) or removes (`-D`) rules that drop every packet but loopback, inside the network
/// namespace of process `pid` only: the host's own tables are never touched.
fn cut_network(pid: i32, action: &str) -> bool {
    let mut ok = true;
    for (chain, direction) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
        let status = std::process::Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-n", "iptables", action, chain])
            .args(["!", direction, "lo", "-j", "DROP"])
            .status();
        ok &= status.is_ok_and(|s| s.success());
    }
    ok
}

/// The pod's uid, or None when it does not exist (any more).
fn current_uid(pod: &str) -> Option<String> {
    current_uid_in(NAMESPACE, pod)
}

/// The uid of the pod named `pod` in `namespace`, if it exists.
pub(super) fn current_uid_in(namespace: &str, pod: &str) -> Option<String> {
    if pod.is_empty() {
        return None;
    }
    let output = dfr_e2e::testing::kubectl(&[
        "-n",
        namespace,
        "get",
        "pod",
        pod,
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let uid = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && !uid.is_empty()).then_some(uid)
}

async fn new_leader_after(old_uid: &str, timeout: Duration) -> String {
    eventually("a new leader", timeout, || async {
        // The pod that carried the fault may keep its label for a moment; a leader counts once
        // it is another pod.
        // It may also be deleted between the two reads (the operator fences it): ask again.
        let leader = super::backups::leader_pod(NAMESPACE);
        let uid = current_uid(&leader)?;
        (uid != old_uid).then_some(leader)
    })
    .await
}

struct Fault {
    name: &'static str,
    new_leader: Duration,
    writes_back: Duration,
    acknowledged: usize,
    stale: usize,
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fault_of_the_leader_loses_no_write_and_serves_no_stale_read() {
    let _shared = super::shared_cluster().await;
    let client = dfr_e2e::testing::kube_client().await;
    super::install_operator();
    apply(
        &client,
        &super::repositories::country(NAME, "KIR", 2, Value::Null),
    )
    .await;
    wait_ready(&client, NAME, Duration::from_secs(420)).await;
    let countries: Api<dfr_crds::DfrCountry> = Api::all(client.clone());
    // A tenant left by an earlier run may first roll to this run's spec.
    eventually("no restart pending", Duration::from_secs(300), || async {
        let country = countries.get(NAME).await.ok()?;
        maintenance_condition(&country).filter(|(status, _, _)| status == "False")
    })
    .await;
    let (leader, _) = healthy_pair().await;
    superuser_sql(
        NAMESPACE,
        &leader,
        "INSERT INTO areas (code, parent_code, name, level) VALUES ('TO', NULL, 'Tonga', 0), ('TO-01', 'TO', 'Tongatapu', 1) ON CONFLICT DO NOTHING",
    );
    let username = format!("faults-{}", dfr_e2e::testing::unique_suffix());
    super::create_user(NAMESPACE, &username, "enumerator", "TO-01");
    let (http, base) = super::api_endpoint(&client, NAMESPACE).await;
    let bearer = token(&http, &base, &username).await;

    let mut figures = Vec::new();
    for fault in ["killed", "cut off", "switchover"] {
        let (leader, _) = healthy_pair().await;
        let uid = pod_uid(&leader);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let writer = tokio::spawn(write_until(
            http.clone(),
            base.clone(),
            bearer.clone(),
            stopped,
        ));
        tokio::time::sleep(Duration::from_secs(3)).await;
        let started = Instant::now();
        let mut cut_pid = None;
        match fault {
            "killed" => kill_all(&container_processes(&uid)),
            "cut off" => {
                let pid = *container_processes(&uid).first().unwrap();
                assert!(cut_network(pid, "-I"), "iptables in the leader's netns");
                cut_pid = Some(pid);
            }
            _ => {
                countries
                    .patch(
                        NAME,
                        &PatchParams::default(),
                        &Patch::Merge(
                            json!({"metadata": {"annotations": {"dfr.io/switchover": "any"}}}),
                        ),
                    )
                    .await
                    .unwrap();
            }
        }
        // A killed leader's containers restart under the same pod: its Patroni may take its
        // own lock back. Either way a leader must write again.
        let new_leader = if fault == "killed" {
            eventually(
                "a leader writing again",
                Duration::from_secs(90),
                || async {
                    let leader = super::backups::leader_pod(NAMESPACE);
                    (!leader.is_empty()).then_some(leader)
                },
            )
            .await
        } else {
            new_leader_after(&uid, Duration::from_secs(90)).await
        };
        let to_new_leader = started.elapsed();
        let writes_back = super::writes_accepted(&http, &base, &bearer).await;
        if let Some(pid) = cut_pid {
            // The guard fenced the pod, so its namespace is usually gone with it.
            let _ = cut_network(pid, "-D");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.send(true).unwrap();
        let Written {
            acknowledged,
            stale_reads,
            ..
        } = writer.await.unwrap();
        let (leader_now, standby_now) = healthy_pair().await;
        let on_leader = stored(&leader_now, &acknowledged);
        let on_standby = eventually("the standby to replay", Duration::from_secs(60), || async {
            let count = stored(&standby_now, &acknowledged);
            (count == acknowledged.len()).then_some(count)
        })
        .await;
        println!(
            "figure: fault {fault} on {leader}: {new_leader} leads after {:.1} s, writes accepted after {:.1} s; {} acknowledged, {on_leader} on {leader_now}, {on_standby} on {standby_now}, {} stale reads",
            to_new_leader.as_secs_f64(),
            writes_back.duration_since(started).as_secs_f64(),
            acknowledged.len(),
            stale_reads.len()
        );
        assert_eq!(
            on_leader,
            acknowledged.len(),
            "{fault}: acknowledged writes lost"
        );
        assert!(
            stale_reads.is_empty(),
            "{fault}: stale reads {stale_reads:?}"
        );
        assert!(acknowledged.len() > 10, "{fault}: the writer wrote");
        if fault == "switchover" {
            let events = run_kubectl(&[
                "get",
                "events",
                "--all-namespaces",
                "--field-selector",
                &format!("involvedObject.name={NAME},reason=SwitchoverRequested"),
                "-o",
                "jsonpath={.items[*].message}",
            ]);
            assert!(events.contains(&format!("from {leader}")), "{events}");
            assert_ne!(leader_now, leader, "the switchover moved the leader");
        }
        figures.push(Fault {
            name: fault,
            new_leader: to_new_leader,
            writes_back: writes_back.duration_since(started),
            acknowledged: acknowledged.len(),
            stale: stale_reads.len(),
        });
    }
    for fault in &figures {
        println!(
            "figure: fault loop {}: leader {:.1} s, writes {:.1} s, {} acknowledged, 0 lost, {} stale",
            fault.name,
            fault.new_leader.as_secs_f64(),
            fault.writes_back.as_secs_f64(),
            fault.acknowledged,
            fault.stale
        );
    }
    restart_needing_parameter_waits_for_the_window_then_rolls(&client, &http, &base, &bearer).await;
    let guard = patronictl(NAMESPACE, &healthy_pair().await.0, &["list"]);
    println!("{guard}");
    super::release_tenant(&client, NAME).await;
}

fn maintenance_condition(country: &dfr_crds::DfrCountry) -> Option<(String, String, String)> {
    country
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "MaintenancePending")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// A parameter PostgreSQL reads only at start and a new pod template: nothing restarts while the
/// maintenance window is closed (the status says what waits and when); once it opens (here: the
/// window is removed), the replica is replaced first, then one switchover, then the former
/// leader, and no write is lost.
async fn restart_needing_parameter_waits_for_the_window_then_rolls(
    client: &kube::Client,
    http: &reqwest::Client,
    base: &str,
    bearer: &str,
) {
    let countries: Api<dfr_crds::DfrCountry> = Api::all(client.clone());
    let (leader, standby) = healthy_pair().await;
    let uids = (pod_uid(&leader), pod_uid(&standby));
    // A window that opens in twelve hours, every day: closed now.
    let opens = chrono::Utc::now() + chrono::Duration::hours(12);
    countries
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "maintenanceWindow": {
                    "days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
                    "start": opens.format("%H:%M").to_string(),
                    "duration": "1h",
                    "timeZone": "UTC",
                },
                // A parameter PostgreSQL reads only at start, and a new pod template (as an
                // image update makes): both need every member restarted.
                "postgres": {
                    "parameters": {"shared_buffers": "64MB"},
                    "resources": {"requests": {"cpu": "60m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
                },
            }})),
        )
        .await
        .unwrap();
    let (_, reason, message) = eventually(
        "MaintenancePending to say the restart waits for the window",
        Duration::from_secs(120),
        || async {
            let country = countries.get(NAME).await.ok()?;
            maintenance_condition(&country).filter(|(status, reason, _)| {
                status == "True" && reason == "WaitingForMaintenanceWindow"
            })
        },
    )
    .await;
    println!("maintenance: {reason}: {message}");
    assert!(message.contains("next window starts"), "{message}");
    assert_eq!(
        (pod_uid(&leader), pod_uid(&standby)),
        uids,
        "nothing restarted outside the window"
    );

    let timeline = |pod: &str| -> u32 {
        superuser_sql(
            NAMESPACE,
            pod,
            "SELECT timeline_id FROM pg_control_checkpoint()",
        )
        .trim()
        .parse()
        .unwrap()
    };
    let timeline_before = timeline(&leader);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(write_until(
        http.clone(),
        base.to_string(),
        bearer.to_string(),
        stopped,
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let opened = Instant::now();
    countries
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"maintenanceWindow": null}})),
        )
        .await
        .unwrap();
    eventually(
        "both members replaced, with shared_buffers 64MB",
        Duration::from_secs(300),
        || async {
            let country = countries.get(NAME).await.ok()?;
            let (status, _, _) = maintenance_condition(&country)?;
            if status != "False" {
                return None;
            }
            let (leader, standby) = healthy_pair().await;
            let applied =
                |pod: &str| superuser_sql(NAMESPACE, pod, "SHOW shared_buffers").trim() == "64MB";
            (applied(&leader) && applied(&standby)).then_some(())
        },
    )
    .await;
    let rolled = opened.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.send(true).unwrap();
    let Written {
        acknowledged,
        stale_reads,
        ..
    } = writer.await.unwrap();
    let (leader_now, standby_now) = healthy_pair().await;
    let on_leader = stored(&leader_now, &acknowledged);
    // Each promotion starts a new timeline: one switchover is one step.
    superuser_sql(NAMESPACE, &leader_now, "CHECKPOINT");
    let count = timeline(&leader_now) - timeline_before;
    println!(
        "figure: restart-needing parameter rolled in {:.1} s after the window opened: {count} switchover(s), {} acknowledged, {on_leader} on {leader_now} ({standby_now} standby), {} stale reads",
        rolled.as_secs_f64(),
        acknowledged.len(),
        stale_reads.len()
    );
    assert_eq!(on_leader, acknowledged.len(), "acknowledged writes lost");
    assert!(stale_reads.is_empty(), "stale reads {stale_reads:?}");
    assert_eq!(
        count,
        1,
        "exactly one switchover (timelines {timeline_before} to {})",
        timeline_before + count
    );
    let replaced = (pod_uid(&leader), pod_uid(&standby));
    assert!(
        replaced.0 != uids.0 && replaced.1 != uids.1,
        "both members run the new pod template"
    );
}
