//! Benchmark (prints figures, asserts nothing): one enumerator's device syncs over an emulated
//! 3G link, 750 kbit/s down, 250 kbit/s up, 100 ms round trip. It pushes 500 new persons (5
//! pushes of 100) and another device pulls the 500 changes, each sent compressed (gzip
//! request bodies, gzip answers) and, for comparison, plain.
//!
//! The link: the device runs in a network namespace of the bench's own, joined to the host by
//! a veth pair; a tbf qdisc on each end limits the rate (this kernel has no netem), and a TCP
//! proxy on the host end holds every chunk 50 ms in each direction before passing it on to the
//! API server. The namespace has no name: a child process (`unshare --net sleep`) holds it, so
//! nothing is mounted under /run/netns (`ip netns add` would bind-mount that directory over
//! itself and leave the network namespaces a running node cluster made there unremovable). The
//! veth pair is named after the bench's process id; the pair, its qdiscs and the namespace go
//! when the bench ends, panics or is interrupted; nothing else is touched.
//!
//! Run: cargo bench -p dfr-api --features integration --bench sync_3g (as root: it starts its
//! own PostgreSQL and makes the namespace)

#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{TestApp, person};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use uuid::Uuid;

const RECORDS: usize = 500;
const PER_PUSH: usize = 100;
const DOWN: &str = "750kbit";
const UP: &str = "250kbit";
/// Half the round trip, added in each direction.
const ONE_WAY: Duration = Duration::from_millis(50);

fn run(args: &[&str]) -> Result<String, String> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The process holding this run's network namespace, for the interrupt handler.
static HOLDER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The namespace and veth pair of this run; dropping it removes them (the qdiscs go with the
/// veth pair, the namespace with its holder).
struct Link {
    /// /proc/<holder>/ns/net
    netns: String,
    host_if: String,
    device_if: String,
    host_ip: String,
}

impl Link {
    fn names() -> (String, String) {
        let pid = std::process::id();
        (format!("d3g{pid}h"), format!("d3g{pid}d"))
    }

    /// Removes what a run with this process id made, if it is there.
    fn remove_by_name() {
        let (host_if, _) = Link::names();
        let _ = run(&["ip", "link", "del", &host_if]);
        let holder = HOLDER.swap(0, std::sync::atomic::Ordering::SeqCst);
        if holder != 0 {
            let _ = run(&["kill", &holder.to_string()]);
        }
    }

    fn make() -> Result<Link, String> {
        let (host_if, device_if) = Link::names();
        // A /30 of 10.253/16 by process id; refused if the host already routes it.
        let third = std::process::id() % 250;
        let (host_ip, device_ip) = (format!("10.253.{third}.1"), format!("10.253.{third}.2"));
        let routes = run(&["ip", "-4", "route", "show"])?;
        if routes.contains(&format!("10.253.{third}.")) {
            return Err(format!(
                "10.253.{third}.0/30 is already in use on this host"
            ));
        }
        let holder = Command::new("unshare")
            .args(["--net", "sleep", "infinity"])
            .spawn()
            .map_err(|e| format!("unshare --net: {e}"))?;
        HOLDER.store(holder.id(), std::sync::atomic::Ordering::SeqCst);
        let holder_pid = holder.id().to_string();
        let netns = format!("/proc/{holder_pid}/ns/net");
        // unshare has made the namespace once its /proc entry differs from ours.
        let ours = std::fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
        let started = Instant::now();
        while std::fs::read_link(&netns).ok().as_ref() == Some(&ours)
            || !std::path::Path::new(&netns).exists()
        {
            if started.elapsed() > Duration::from_secs(5) {
                return Err("unshare --net did not make a namespace".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let link = Link {
            netns: netns.clone(),
            host_if: host_if.clone(),
            device_if: device_if.clone(),
            host_ip: host_ip.clone(),
        };
        let enter = format!("--net={netns}");
        let inside = |args: &[&str]| {
            let mut all = vec!["nsenter", enter.as_str()];
            all.extend_from_slice(args);
            run(&all)
        };
        run(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &device_if,
        ])?;
        run(&["ip", "link", "set", &device_if, "netns", &holder_pid])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &host_if,
        ])?;
        run(&["ip", "link", "set", &host_if, "up"])?;
        inside(&[
            "ip",
            "addr",
            "add",
            &format!("{device_ip}/30"),
            "dev",
            &device_if,
        ])?;
        inside(&["ip", "link", "set", &device_if, "up"])?;
        inside(&["ip", "link", "set", "lo", "up"])?;
        // Down: what leaves the host end toward the device; up: what leaves the device.
        let tbf = |rate: &'static str| {
            [
                "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "1s",
            ]
        };
        let mut down = vec!["tc", "qdisc", "add", "dev", host_if.as_str()];
        down.extend(tbf(DOWN));
        run(&down)?;
        let mut up = vec!["tc", "qdisc", "add", "dev", device_if.as_str()];
        up.extend(tbf(UP));
        inside(&up)?;
        Ok(link)
    }

    fn meter(&self) -> Meter {
        Meter {
            netns: self.netns.clone(),
            host_if: self.host_if.clone(),
            device_if: self.device_if.clone(),
        }
    }
}

/// Reads what went over the link, from either namespace.
#[derive(Clone)]
struct Meter {
    netns: String,
    host_if: String,
    device_if: String,
}

impl Meter {
    /// Bytes the qdisc of each end has sent so far: (down, up).
    fn bytes(&self) -> (u64, u64) {
        let sent = |text: Result<String, String>| {
            text.ok()
                .and_then(|t| {
                    t.split_whitespace()
                        .skip_while(|w| *w != "Sent")
                        .nth(1)
                        .and_then(|n| n.parse().ok())
                })
                .unwrap_or(0)
        };
        // The host end through the namespace of the bench's main thread (/proc/PID/ns is the
        // thread group leader's), so this works from the device's thread too.
        let host = format!("--net=/proc/{}/ns/net", std::process::id());
        let down = sent(run(&[
            "nsenter",
            &host,
            "tc",
            "-s",
            "qdisc",
            "show",
            "dev",
            &self.host_if,
        ]));
        let up = sent(run(&[
            "nsenter",
            &format!("--net={}", self.netns),
            "tc",
            "-s",
            "qdisc",
            "show",
            "dev",
            &self.device_if,
        ]));
        (down, up)
    }

    /// Runs `phase` and tells its time and the bytes it put on the link each way.
    async fn phase<F: std::future::Future<Output = String>>(&self, phase: F) -> String {
        let before = self.bytes();
        let started = Instant::now();
        let what = phase.await;
        let took = started.elapsed();
        let after = self.bytes();
        format!(
            "{what:<28} {:>7.0} ms  {:>6.1} KB down {:>6.1} KB up",
            took.as_secs_f64() * 1000.0,
            (after.0 - before.0) as f64 / 1000.0,
            (after.1 - before.1) as f64 / 1000.0
        )
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        Link::remove_by_name();
    }
}

/// Copies `from` to `to`, each chunk held `ONE_WAY` after it arrived (chunks queue, so the
/// delay adds latency, not a rate limit).
async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let (sender, mut receiver) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = tokio::spawn(async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sender
                        .send((Instant::now() + ONE_WAY, buffer[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    while let Some((due, chunk)) = receiver.recv().await {
        tokio::time::sleep_until(due.into()).await;
        if to.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    reader.abort();
}

/// The latency proxy on the host end of the link, passing connections on to `server`.
async fn proxy(listener: TcpListener, server: SocketAddr) {
    while let Ok((device, _)) = listener.accept().await {
        tokio::spawn(async move {
            let Ok(upstream) = TcpStream::connect(server).await else {
                return;
            };
            let _ = device.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (device_read, device_write) = device.into_split();
            let (upstream_read, upstream_write) = upstream.into_split();
            tokio::join!(
                delayed(device_read, upstream_write),
                delayed(upstream_read, device_write)
            );
        });
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).unwrap();
    encoder.finish().unwrap()
}

fn mutations(n: usize, area: &str) -> Vec<Value> {
    (0..n)
        .map(|_| {
            let id = Uuid::new_v4();
            let mut data = person(area, "Bench");
            data["id"] = json!(id);
            json!({"clientMutationId": Uuid::new_v4(), "entity": "person", "op": "create", "id": id, "data": data})
        })
        .collect()
}

/// Pushes `mutations` in pushes of PER_PUSH, each body gzipped or not.
async fn push_all(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    mutations: &[Value],
    compressed: bool,
) {
    for batch in mutations.chunks(PER_PUSH) {
        let body = serde_json::to_vec(&json!({"mutations": batch})).unwrap();
        let mut request = http
            .post(format!("{base}/api/dfr/sync/push"))
            .bearer_auth(token)
            .header("content-type", "application/json");
        request = if compressed {
            request.header("content-encoding", "gzip").body(gzip(&body))
        } else {
            request.body(body)
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert!(
            answer["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["outcome"] == "applied")
        );
    }
}

/// Pulls every change from the start in pages of `limit`; changes and pages.
async fn pull_all(http: &reqwest::Client, base: &str, token: &str, limit: usize) -> (usize, usize) {
    let (mut changes, mut pages) = (0, 0);
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}/api/dfr/sync/changes?limit={limit}&cursor={c}"),
            None => format!("{base}/api/dfr/sync/changes?limit={limit}"),
        };
        let page: Value = http
            .get(path)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        changes += page["changes"].as_array().unwrap().len();
        cursor = page["cursor"].as_str().map(String::from);
        if page["more"] != json!(true) {
            return (changes, pages);
        }
    }
}

/// The two devices: each pushes its 500 persons into an area of its own (one gzipped, one
/// plain), and the puller, in the first area, pulls those 500.
struct Device {
    base: String,
    gzip_pusher: String,
    plain_pusher: String,
    puller: String,
    gzip_mutations: Vec<Value>,
    plain_mutations: Vec<Value>,
}

/// The device's side, on a thread that joined the namespace (a network namespace is per
/// thread), with a runtime of its own so every socket it opens is in the namespace.
fn on_device(netns: String, device: Device, meter: Meter) -> Vec<String> {
    let run_device = move || -> Vec<String> {
        let file = std::fs::File::open(&netns).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let gzip_client = reqwest::Client::builder().gzip(true).build().unwrap();
            let plain_client = reqwest::Client::builder().no_gzip().build().unwrap();
            let base = device.base.as_str();
            // One small request each first, so the figures leave out connection set-up.
            for client in [&gzip_client, &plain_client] {
                let _ = client
                    .get(format!("{base}/api/dfr/health/ready"))
                    .send()
                    .await;
            }
            let mut lines = Vec::new();
            lines.push(
                meter
                    .phase(async {
                        push_all(
                            &gzip_client,
                            base,
                            &device.gzip_pusher,
                            &device.gzip_mutations,
                            true,
                        )
                        .await;
                        format!("push {RECORDS} gzip ({} pushes)", RECORDS / PER_PUSH)
                    })
                    .await,
            );
            lines.push(
                meter
                    .phase(async {
                        push_all(
                            &plain_client,
                            base,
                            &device.plain_pusher,
                            &device.plain_mutations,
                            false,
                        )
                        .await;
                        format!("push {RECORDS} plain ({} pushes)", RECORDS / PER_PUSH)
                    })
                    .await,
            );
            for (name, client) in [("gzip", &gzip_client), ("plain", &plain_client)] {
                for limit in [RECORDS, 100] {
                    lines.push(
                        meter
                            .phase(async {
                                let (changes, pages) =
                                    pull_all(client, base, &device.puller, limit).await;
                                format!("pull {changes} {name} ({pages} pages)")
                            })
                            .await,
                    );
                }
            }
            lines
        })
    };
    std::thread::spawn(run_device).join().unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    support::use_ring_for_tls();
    Link::remove_by_name();
    let link = match Link::make() {
        Ok(link) => link,
        Err(error) => {
            Link::remove_by_name();
            eprintln!("sync_3g: could not make the emulated link: {error}");
            std::process::exit(1);
        }
    };
    // An interrupt would skip Drop: remove the link first.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            Link::remove_by_name();
            std::process::exit(130);
        }
    });
    let app = TestApp::start().await;
    let server: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let listener = TcpListener::bind(format!("{}:0", link.host_ip))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(proxy(listener, server));

    let device = Device {
        base,
        gzip_pusher: app.user("enumerator", &["TO-01"], None, "").await,
        plain_pusher: app.user("enumerator", &["TO-02"], None, "").await,
        puller: app.user("enumerator", &["TO-01"], None, "").await,
        gzip_mutations: mutations(RECORDS, "TO-01"),
        plain_mutations: mutations(RECORDS, "TO-02"),
    };
    println!(
        "sync over an emulated 3G link: {DOWN}/s down, {UP}/s up, {} ms round trip; {RECORDS} persons, pushes of {PER_PUSH}",
        ONE_WAY.as_millis() * 2
    );
    let (netns, meter) = (link.netns.clone(), link.meter());
    let lines = tokio::task::spawn_blocking(move || on_device(netns, device, meter))
        .await
        .unwrap();
    for line in lines {
        println!("  {line}");
    }
    drop(link);
}
