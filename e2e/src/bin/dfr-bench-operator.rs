//! Benchmark of the operator against the local control plane (not a test: it prints figures).
//!
//! Starts the release operator binary as its own process, applies N DfrCountry objects and
//! reports the time until every tenant has all its children, the reconcile duration p50/p95,
//! the operator's peak RSS and its API requests per minute once nothing changes.
//!
//! Run: target/debug/dfr-cluster up --name bench && eval "$(target/debug/dfr-cluster env --name bench)"
//!      cargo build --release -p dfr-operator && cargo run --release -p dfr-e2e --bin dfr-bench-operator

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dfr_crds::DfrCountry;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};

const TENANTS: usize = 50;

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let operator = repo.join("target/release/dfr-operator");
    if !operator.exists() {
        return Err("build the operator first: cargo build --release -p dfr-operator".into());
    }
    let kubeconfig = dfr_e2e::testing::kubeconfig_path();
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

    let run = dfr_e2e::testing::unique_suffix();
    let port = free_port()?;
    let log = std::env::temp_dir().join(format!("dfr-bench-operator-{run}.log"));
    let mut process = Command::new(&operator)
        .args(["run", "--no-leader-election", "--log-format", "json"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args(["--tenant-selector", &format!("dfr.io/bench={run}")])
        .args(["--kubernetes-api-cidr", "127.0.0.1/32"])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::from(std::fs::File::create(&log)?))
        .stderr(Stdio::null())
        .spawn()?;
    let pid = process.id();
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    while scrape(&metrics_url).await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let sample: DfrCountry = serde_yaml::from_str(&std::fs::read_to_string(
        repo.join("config/samples/ton-dev.yaml"),
    )?)?;
    let api: Api<DfrCountry> = Api::all(client.clone());
    let started = Instant::now();
    let mut names = Vec::new();
    for index in 0..TENANTS {
        let mut country = sample.clone();
        let code = country_code(index);
        country.metadata.name = Some(format!("bench-{run}-{}", code.to_lowercase()));
        country.metadata.labels = Some([("dfr.io/bench".to_string(), run.clone())].into());
        country.spec.country_code = code;
        api.patch(
            &country.name_any(),
            &PatchParams::apply("dfr-bench").force(),
            &Patch::Apply(&country),
        )
        .await?;
        names.push(country.name_any());
    }
    let applied_in = started.elapsed();
    // The status is written after every child is applied: a status for the current generation
    // means the tenant is complete.
    loop {
        let list = api.list(&Default::default()).await?;
        let done = list
            .items
            .iter()
            .filter(|c| names.contains(&c.name_any()))
            .filter(|c| {
                c.status.as_ref().and_then(|s| s.observed_generation) == c.metadata.generation
            })
            .count();
        if done == TENANTS {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!(
                "only {done}/{TENANTS} tenants complete after 10 minutes; see {}",
                log.display()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_children = started.elapsed();
    let settled = scrape(&metrics_url).await?;

    // Steady state: nothing changes for a minute; count what the operator still asks.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = scrape(&metrics_url).await?;
    let window = Duration::from_secs(60);
    tokio::time::sleep(window).await;
    let after = scrape(&metrics_url).await?;
    let requests = |text: &str| sum(text, "dfr_operator_kube_api_requests_total{");
    let writes = |text: &str| {
        ["create", "patch", "update", "delete"]
            .iter()
            .map(|verb| {
                sum(
                    text,
                    &format!("dfr_operator_kube_api_requests_total{{verb=\"{verb}\"}}"),
                )
            })
            .sum::<f64>()
    };
    let per_minute = (requests(&after) - requests(&before)) * 60.0 / window.as_secs_f64();
    let writes_per_minute = (writes(&after) - writes(&before)) * 60.0 / window.as_secs_f64();
    let peak_rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))?
        .lines()
        .find_map(|line| {
            line.strip_prefix("VmHWM:")
                .map(|v| v.trim().trim_end_matches(" kB").to_string())
        })
        .unwrap_or_default();

    println!("dfr-operator benchmark: {TENANTS} DfrCountry objects, release build, one process");
    println!(
        "  applied {TENANTS} objects in               {:>8.2} s",
        applied_in.as_secs_f64()
    );
    println!(
        "  all children and status present after {:>8.2} s",
        all_children.as_secs_f64()
    );
    println!(
        "  reconciles until settled               {:>8.0}",
        sum(
            &settled,
            "dfr_operator_reconcile_duration_seconds_count{result=\"success\"}"
        )
    );
    println!(
        "  reconcile duration p50                 {:>8.1} ms",
        quantile(&settled, 0.50) * 1000.0
    );
    println!(
        "  reconcile duration p95                 {:>8.1} ms",
        quantile(&settled, 0.95) * 1000.0
    );
    println!(
        "  operator peak RSS                      {:>8.1} MiB",
        peak_rss_kib.parse::<f64>().unwrap_or(0.0) / 1024.0
    );
    println!(
        "  API requests per minute, steady state  {per_minute:>8.1} (writes {writes_per_minute:.1})"
    );
    println!(
        "  requests to reach the settled state    {:>8.0}",
        requests(&settled)
    );

    for name in &names {
        let _ = api.delete(name, &DeleteParams::background()).await;
    }
    let _ = nix_terminate(&mut process);
    Ok(())
}

fn country_code(index: usize) -> String {
    let letter = |n: usize| char::from(b'A' + u8::try_from(n % 26).unwrap_or(0));
    format!("Z{}{}", letter(index / 26), letter(index))
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
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

fn nix_terminate(process: &mut std::process::Child) -> std::io::Result<()> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(process.id()).unwrap_or(0));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    process.wait().map(|_| ())
}
