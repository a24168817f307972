//! Benchmark of the operator against the local control plane (not a test: it prints figures).
//!
//! For each tenant count (50 and 200, or DFR_BENCH_TENANTS="50,200"), in one run:
//! 1. raw creation: the very objects the operator would make for those tenants (the builders'
//!    output plus the generated Secrets), created straight through the API by 50 concurrent
//!    clients, each tenant's objects in sequence: the floor the operator is measured against;
//! 2. the release operator binary, as its own process, bringing the same number of DfrCountry
//!    objects (applied by 50 clients) to all children and status: time, reconcile p50/p95,
//!    peak RSS, requests;
//! 3. the operator idle for a minute: API requests it still makes (should be none);
//! 4. cleanup: every DfrCountry deleted while the operator runs (its finalizer), every namespace
//!    waited for, so the benchmark can run again on the same control plane.
//!
//! Run: target/debug/dfr-cluster up --name bench && eval "$(target/debug/dfr-cluster env --name bench)"
//!      cargo bench -p dfr-operator --features integration --bench convergence

use std::sync::Arc;
use std::time::{Duration, Instant};

use dfr_crds::{DeletionPolicy, DfrCountry};
use dfr_operator::children::desired_state;
use dfr_operator::children::secrets::{SecretMaterial, desired_secrets};
use dfr_operator::settings::Settings;
use dfr_operator::validate::validate;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use tokio::sync::Semaphore;

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Clients creating objects at once in the raw run.
const RAW_CLIENTS: usize = 50;
const IDLE_WINDOW: Duration = Duration::from_secs(60);
const BENCH_LABEL: &str = "dfr.io/bench";

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let sizes: Vec<usize> = std::env::var("DFR_BENCH_TENANTS")
        .unwrap_or_else(|_| "50,200".into())
        .split(',')
        .map(|n| n.trim().parse())
        .collect::<Result<_, _>>()?;
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let client = dfr_e2e::testing::kube_client().await;
    let crd = repo.join("crds/dfrcountries.dfr.io.yaml");
    let applied =
        dfr_e2e::testing::kubectl(&["apply", "--server-side", "-f", &crd.display().to_string()]);
    if !applied.status.success() {
        return Err(String::from_utf8_lossy(&applied.stderr).into_owned().into());
    }
    dfr_e2e::testing::kubectl(&[
        "wait",
        "--for",
        "condition=Established",
        "crd/dfrcountries.dfr.io",
    ]);
    let sample: DfrCountry = serde_yaml::from_str(&std::fs::read_to_string(
        repo.join("config/samples/ton-dev.yaml"),
    )?)?;

    println!("dfr-operator convergence benchmark (release build, one control plane)");
    for tenants in sizes {
        let run = dfr_e2e::testing::unique_suffix();
        let raw = raw_creation(&client, &sample, tenants, &run).await?;
        let operator = operator_convergence(&client, &sample, tenants, &run).await?;
        report(tenants, raw, &operator);
    }
    Ok(())
}

/// The DfrCountry objects of one phase: distinct country codes starting with `prefix`.
fn countries(sample: &DfrCountry, tenants: usize, run: &str, prefix: char) -> Vec<DfrCountry> {
    (0..tenants)
        .map(|index| {
            let mut country = sample.clone();
            let letter = |n: usize| char::from(b'A' + (n % 26) as u8);
            let code = format!("{prefix}{}{}", letter(index / 26), letter(index));
            country.metadata.name = Some(format!("bench-{run}-{}", code.to_lowercase()));
            country.metadata.labels = Some([(BENCH_LABEL.to_string(), run.to_string())].into());
            country.spec.country_code = code;
            country.spec.deletion_policy = DeletionPolicy::Delete;
            country
        })
        .collect()
}

/// Seconds to create every tenant's objects straight through the API.
async fn raw_creation(
    client: &Client,
    sample: &DfrCountry,
    tenants: usize,
    run: &str,
) -> Result<Duration, Failure> {
    let settings = Settings {
        kubernetes_api_cidrs: vec!["127.0.0.1/32".into()],
        ..Settings::default()
    };
    let mut plans = Vec::new();
    for mut country in countries(sample, tenants, run, 'Y') {
        country.metadata.uid = Some(format!("bench-{run}-{}", country.name_any()));
        let tenant = validate(&country)?;
        let mut objects = desired_state(&tenant, &settings).erased()?;
        let material = SecretMaterial::generate(&tenant, &settings)?;
        for secret in desired_secrets(&tenant, &material) {
            objects.push((
                ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
                serde_json::to_value(secret)?,
            ));
        }
        // No DfrCountry owns these: an owner reference to a missing uid would have the garbage
        // collector delete them while they are measured.
        for (_, object) in &mut objects {
            if let Some(meta) = object.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                meta.remove("ownerReferences");
            }
        }
        plans.push((tenant.namespace.clone(), objects));
    }
    let namespaces: Vec<String> = plans.iter().map(|(ns, _)| ns.clone()).collect();

    let clients = Arc::new(Semaphore::new(RAW_CLIENTS));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (_, objects) in plans {
        let client = client.clone();
        let clients = clients.clone();
        tasks.push(tokio::spawn(async move {
            let _slot = clients.acquire().await?;
            for (resource, object) in objects {
                let object: DynamicObject = serde_json::from_value(object)?;
                let name = object.name_any();
                let api: Api<DynamicObject> = match object.namespace() {
                    Some(ns) => Api::namespaced_with(client.clone(), &ns, &resource),
                    None => Api::all_with(client.clone(), &resource),
                };
                api.patch(
                    &name,
                    &PatchParams::apply("dfr-bench").force(),
                    &Patch::Apply(&object),
                )
                .await?;
            }
            Ok::<_, Failure>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();

    let api: Api<Namespace> = Api::all(client.clone());
    for namespace in &namespaces {
        api.delete(namespace, &DeleteParams::background()).await?;
    }
    wait_for_namespaces_gone(client, &namespaces).await?;
    Ok(elapsed)
}

struct OperatorFigures {
    applied: Duration,
    converged: Duration,
    reconciles: f64,
    p50_ms: f64,
    p95_ms: f64,
    peak_rss_mib: f64,
    requests_to_settle: f64,
    idle_requests_per_minute: f64,
    idle_writes_per_minute: f64,
    cleanup: Duration,
}

async fn operator_convergence(
    client: &Client,
    sample: &DfrCountry,
    tenants: usize,
    run: &str,
) -> Result<OperatorFigures, Failure> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = std::env::temp_dir().join(format!("dfr-bench-operator-{run}.log"));
    let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_dfr-operator"))
        .args(["run", "--no-leader-election", "--log-format", "json"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args(["--tenant-selector", &format!("{BENCH_LABEL}={run}")])
        .args(["--kubernetes-api-cidr", "127.0.0.1/32"])
        .env("KUBECONFIG", dfr_e2e::testing::kubeconfig_path())
        .stdout(std::process::Stdio::from(std::fs::File::create(&log)?))
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let pid = process.id();
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    while scrape(&metrics_url).await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let objects = countries(sample, tenants, run, 'Z');
    let names: Vec<String> = objects.iter().map(ResourceExt::name_any).collect();
    let namespaces: Vec<String> = objects
        .iter()
        .map(dfr_operator::naming::namespace)
        .collect();
    let api: Api<DfrCountry> = Api::all(client.clone());
    let started = Instant::now();
    // Applied by as many clients as the raw run uses, so both start from the same load.
    let clients = Arc::new(Semaphore::new(RAW_CLIENTS));
    let mut applies = Vec::new();
    for country in objects {
        let api = api.clone();
        let clients = clients.clone();
        applies.push(tokio::spawn(async move {
            let _slot = clients.acquire().await?;
            api.patch(
                &country.name_any(),
                &PatchParams::apply("dfr-bench").force(),
                &Patch::Apply(&country),
            )
            .await?;
            Ok::<_, Failure>(())
        }));
    }
    for apply in applies {
        apply.await??;
    }
    let applied = started.elapsed();
    // The status is written after every child is applied: a status for the current generation
    // means the tenant is complete.
    let selector = ListParams::default().labels(&format!("{BENCH_LABEL}={run}"));
    loop {
        let done = api
            .list(&selector)
            .await?
            .items
            .iter()
            .filter(|c| {
                c.status.as_ref().and_then(|s| s.observed_generation) == c.metadata.generation
            })
            .count();
        if done == tenants {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            return Err(format!(
                "only {done}/{tenants} tenants complete after 15 minutes; see {}",
                log.display()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let converged = started.elapsed();
    let settled = scrape(&metrics_url).await?;

    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = scrape(&metrics_url).await?;
    tokio::time::sleep(IDLE_WINDOW).await;
    let after = scrape(&metrics_url).await?;
    let per_minute =
        |f: &dyn Fn(&str) -> f64| (f(&after) - f(&before)) * 60.0 / IDLE_WINDOW.as_secs_f64();
    let peak_rss_mib = std::fs::read_to_string(format!("/proc/{pid}/status"))?
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0;

    // Cleanup with the operator still running, so its finalizer lets the objects go.
    let cleanup_started = Instant::now();
    for name in &names {
        api.delete(name, &DeleteParams::background()).await?;
    }
    loop {
        let left = api.list(&selector).await?.items.len();
        if left == 0 {
            break;
        }
        if cleanup_started.elapsed() > Duration::from_secs(600) {
            return Err(format!("{left} DfrCountry objects still present after 10 minutes").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_namespaces_gone(client, &namespaces).await?;
    let cleanup = cleanup_started.elapsed();
    terminate(&mut process)?;

    Ok(OperatorFigures {
        applied,
        converged,
        reconciles: sum(
            &settled,
            "dfr_operator_reconcile_duration_seconds_count{result=\"success\"}",
        ),
        p50_ms: quantile(&settled, 0.50) * 1000.0,
        p95_ms: quantile(&settled, 0.95) * 1000.0,
        peak_rss_mib,
        requests_to_settle: requests(&settled),
        idle_requests_per_minute: per_minute(&requests),
        idle_writes_per_minute: per_minute(&writes),
        cleanup,
    })
}

fn report(tenants: usize, raw: Duration, operator: &OperatorFigures) {
    let ratio = operator.converged.as_secs_f64() / raw.as_secs_f64().max(f64::EPSILON);
    println!("\n{tenants} tenants");
    println!(
        "  raw creation of the same objects ({RAW_CLIENTS} clients)  {:>8.2} s",
        raw.as_secs_f64()
    );
    println!(
        "  operator: all children and status          {:>8.2} s  ({ratio:.1}x raw; DfrCountry objects applied in {:.2} s)",
        operator.converged.as_secs_f64(),
        operator.applied.as_secs_f64()
    );
    println!(
        "  reconciles until settled                   {:>8.0}",
        operator.reconciles
    );
    println!(
        "  reconcile duration p50 / p95               {:>8.1} / {:.1} ms",
        operator.p50_ms, operator.p95_ms
    );
    println!(
        "  operator peak RSS                          {:>8.1} MiB",
        operator.peak_rss_mib
    );
    println!(
        "  API requests to reach the settled state    {:>8.0}",
        operator.requests_to_settle
    );
    println!(
        "  API requests per minute while idle         {:>8.1} (writes {:.1})",
        operator.idle_requests_per_minute, operator.idle_writes_per_minute
    );
    println!(
        "  cleanup (DfrCountry deleted, namespaces gone) {:>5.1} s",
        operator.cleanup.as_secs_f64()
    );
}

async fn wait_for_namespaces_gone(client: &Client, names: &[String]) -> Result<(), Failure> {
    let api: Api<Namespace> = Api::all(client.clone());
    let started = Instant::now();
    loop {
        let mut left = 0;
        for name in names {
            if api.get_opt(name).await?.is_some() {
                left += 1;
            }
        }
        if left == 0 {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("{left} namespaces still present after 10 minutes").into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn scrape(url: &str) -> Result<String, Failure> {
    let output = tokio::process::Command::new("curl")
        .args(["-sf", url])
        .output()
        .await?;
    if output.status.success() {
        Ok(String::from_utf8(output.stdout)?)
    } else {
        Err("metrics endpoint not up".into())
    }
}

fn requests(text: &str) -> f64 {
    sum(text, "dfr_operator_kube_api_requests_total{")
}

fn writes(text: &str) -> f64 {
    ["create", "patch", "update", "delete"]
        .iter()
        .map(|verb| {
            sum(
                text,
                &format!("dfr_operator_kube_api_requests_total{{verb=\"{verb}\"}}"),
            )
        })
        .sum()
}

/// Sum of every sample whose line starts with `prefix`.
fn sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A quantile of the successful-reconcile histogram, interpolated within its bucket.
fn quantile(text: &str, q: f64) -> f64 {
    let prefix = "dfr_operator_reconcile_duration_seconds_bucket{result=\"success\",le=\"";
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .filter_map(|rest| {
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, count.parse().ok()?))
        })
        .collect();
    let total = buckets.last().map(|(_, count)| *count).unwrap_or(0.0);
    let target = total * q;
    let mut previous = (0.0, 0.0);
    for (bound, count) in buckets {
        if count >= target {
            if bound.is_infinite() {
                return previous.0;
            }
            let share = if count > previous.1 {
                (target - previous.1) / (count - previous.1)
            } else {
                0.0
            };
            return previous.0 + share * (bound - previous.0);
        }
        previous = (bound, count);
    }
    previous.0
}

fn terminate(process: &mut std::process::Child) -> std::io::Result<()> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(process.id()).unwrap_or(0));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    process.wait().map(|_| ())
}
