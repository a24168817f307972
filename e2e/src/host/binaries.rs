//! The upstream Kubernetes components and etcd, built from their Go modules by the recipe in
//! e2e/kube-build into one multi-call binary, cached outside the repository by version and by
//! the recipe's content, so a recipe change rebuilds and anything else reuses the binary. CoreDNS
//! (e2e/coredns-build), the S3 server versitygw (e2e/versitygw-build), metrics-server
//! (e2e/metrics-server-build), prometheus-adapter (e2e/prometheus-adapter-build), the Prometheus
//! Operator (e2e/prometheus-operator-build) and kube-router (e2e/kube-router-build) are cached
//! the same way.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::error::{Error, Result};

pub const KUBERNETES_VERSION: &str = "v1.34.4";
pub const COMPONENTS: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
];
const RECIPE_FILES: &[&str] = &["go.mod", "go.sum", "main.go"];
/// The versitygw recipe has no main.go: its go.mod names upstream's command as a `tool`, so the
/// build uses upstream's main package itself, resolved against the pinned go.mod/go.sum.
const TOOL_RECIPE_FILES: &[&str] = &["go.mod", "go.sum"];

pub fn recipe_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kube-build")
}

pub fn cache_root() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").ok_or(Error::NoHome)?;
    Ok(PathBuf::from(home).join(".cache").join("dfr"))
}

/// `kube-<version>-<first 12 hex of the recipe hash>`.
pub fn cache_key(recipe: &[(&str, Vec<u8>)]) -> String {
    keyed_by_recipe(&format!("kube-{KUBERNETES_VERSION}"), recipe)
}

/// `<prefix>-<first 12 hex of the recipe hash>`.
fn keyed_by_recipe(prefix: &str, recipe: &[(&str, Vec<u8>)]) -> String {
    let mut hasher = Sha256::new();
    for (name, content) in recipe {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(content);
        hasher.update([0]);
    }
    let digest = hex::encode(hasher.finalize());
    format!("{prefix}-{}", &digest[..12])
}

fn read_recipe(dir: &Path) -> Result<Vec<(&'static str, Vec<u8>)>> {
    read_recipe_files(dir, RECIPE_FILES)
}

fn read_recipe_files(dir: &Path, files: &[&'static str]) -> Result<Vec<(&'static str, Vec<u8>)>> {
    files
        .iter()
        .map(|name| {
            std::fs::read(dir.join(name))
                .map(|content| (*name, content))
                .map_err(Error::io(format!(
                    "reading the build recipe {}",
                    dir.join(name).display()
                )))
        })
        .collect()
}

/// Where the binaries of the current recipe live, with a symlink per component name.
pub fn bin_dir() -> Result<PathBuf> {
    Ok(cache_root()?.join(cache_key(&read_recipe(&recipe_dir())?)))
}

/// The bundled kubectl among the components in `bin_dir`.
pub fn kubectl(bin_dir: &Path) -> PathBuf {
    bin_dir.join("kubectl")
}

pub fn go_build_args(output: &Path) -> Vec<String> {
    let version = KUBERNETES_VERSION;
    let ldflags = format!(
        "-s -w -X k8s.io/component-base/version.gitVersion={version} \
         -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34 \
         -X k8s.io/component-base/version.gitTreeState=clean"
    );
    vec![
        "build".into(),
        "-ldflags".into(),
        ldflags,
        "-o".into(),
        output.display().to_string(),
        ".".into(),
    ]
}

pub const COREDNS_VERSION: &str = "v1.13.2";

pub fn coredns_recipe_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("coredns-build")
}

/// The cluster DNS server, from e2e/coredns-build, cached like the Kubernetes components.
pub fn ensure_coredns() -> Result<PathBuf> {
    let recipe = read_recipe(&coredns_recipe_dir())?;
    let key = keyed_by_recipe(&format!("coredns-{COREDNS_VERSION}"), &recipe);
    let binary = cache_root()?.join(key).join("coredns");
    if !binary.exists() {
        build_binary(&coredns_recipe_dir(), &binary, "CoreDNS", |output| {
            stripped_build_args(output, "", ".")
        })?;
    }
    Ok(binary)
}

pub const VERSITYGW_VERSION: &str = "v1.8.0";
const VERSITYGW_PACKAGE: &str = "github.com/versity/versitygw/cmd/versitygw";

pub fn versitygw_recipe_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("versitygw-build")
}

/// The S3 server of node clusters (versitygw), from e2e/versitygw-build, cached like CoreDNS.
pub fn ensure_versitygw() -> Result<PathBuf> {
    ensure_tool(
        &versitygw_recipe_dir(),
        &format!("versitygw-{VERSITYGW_VERSION}"),
        "versitygw",
        "versitygw (S3 server)",
        versitygw_build_args,
    )
}

/// Upstream's Makefile stamps the version into main.Version; without it `versitygw --version`
/// says "git".
fn versitygw_build_args(output: &Path) -> Vec<String> {
    stripped_build_args(
        output,
        &format!("-X main.Version={VERSITYGW_VERSION}"),
        VERSITYGW_PACKAGE,
    )
}

/// `go build` of `package` into `output`, without symbol tables, debug information or the
/// build machine's paths, with `stamps` (`-X` flags) added to the linker flags.
fn stripped_build_args(output: &Path, stamps: &str, package: &str) -> Vec<String> {
    vec![
        "build".into(),
        "-trimpath".into(),
        "-ldflags".into(),
        format!("-s -w {stamps}").trim_end().to_string(),
        "-o".into(),
        output.display().to_string(),
        package.into(),
    ]
}

pub const METRICS_SERVER_VERSION: &str = "v0.8.0";
const METRICS_SERVER_PACKAGE: &str = "sigs.k8s.io/metrics-server/cmd/metrics-server";
pub const PROMETHEUS_ADAPTER_VERSION: &str = "v0.12.0";
const PROMETHEUS_ADAPTER_PACKAGE: &str = "sigs.k8s.io/prometheus-adapter/cmd/adapter";

pub fn metrics_server_recipe_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("metrics-server-build")
}

pub fn prometheus_adapter_recipe_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus-adapter-build")
}

/// metrics-server (metrics.k8s.io), from e2e/metrics-server-build, cached like versitygw.
pub fn ensure_metrics_server() -> Result<PathBuf> {
    ensure_tool(
        &metrics_server_recipe_dir(),
        &format!("metrics-server-{METRICS_SERVER_VERSION}"),
        "metrics-server",
        "metrics-server (metrics.k8s.io)",
        metrics_server_build_args,
    )
}

/// prometheus-adapter (custom.metrics.k8s.io), from e2e/prometheus-adapter-build. Its own
/// recipe: it pins k8s.io/* v0.30 and metrics-server v0.7.1, metrics-server v0.8.0 pins v0.33.
pub fn ensure_prometheus_adapter() -> Result<PathBuf> {
    ensure_tool(
        &prometheus_adapter_recipe_dir(),
        &format!("prometheus-adapter-{PROMETHEUS_ADAPTER_VERSION}"),
        "prometheus-adapter",
        "prometheus-adapter (custom.metrics.k8s.io)",
        prometheus_adapter_build_args,
    )
}

fn ensure_tool(
    dir: &Path,
    prefix: &str,
    name: &str,
    what: &str,
    args: fn(&Path) -> Vec<String>,
) -> Result<PathBuf> {
    let recipe = read_recipe_files(dir, TOOL_RECIPE_FILES)?;
    let binary = cache_root()?
        .join(keyed_by_recipe(prefix, &recipe))
        .join(name);
    if !binary.exists() {
        build_binary(dir, &binary, what, args)?;
    }
    Ok(binary)
}

/// Upstream's Makefile stamps client-go's version package; without it metrics-server reports
/// v0.0.0-master in its logs and User-Agent.
fn metrics_server_build_args(output: &Path) -> Vec<String> {
    stripped_build_args(
        output,
        &format!("-X k8s.io/client-go/pkg/version.gitVersion={METRICS_SERVER_VERSION}"),
        METRICS_SERVER_PACKAGE,
    )
}

fn prometheus_adapter_build_args(output: &Path) -> Vec<String> {
    stripped_build_args(output, "", PROMETHEUS_ADAPTER_PACKAGE)
}

pub const KUBE_ROUTER_VERSION: &str = "v2.1.0";
const KUBE_ROUTER_MODULE: &str = "github.com/cloudnativelabs/kube-router/v2";
const KUBE_ROUTER_PACKAGE: &str = "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router";

pub fn kube_router_recipe_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kube-router-build")
}

/// kube-router, the NetworkPolicy enforcer of node clusters (firewall-only mode, see
/// node::network_policy), from e2e/kube-router-build, cached like versitygw.
pub fn ensure_kube_router() -> Result<PathBuf> {
    ensure_tool(
        &kube_router_recipe_dir(),
        &format!("kube-router-{KUBE_ROUTER_VERSION}"),
        "kube-router",
        "kube-router (NetworkPolicy enforcement)",
        kube_router_build_args,
    )
}

/// Upstream's Makefile stamps pkg/version.Version (from `git describe`, so the tag); without it
/// kube-router logs "Running kube-router version , built on ," at start. BuildDate is left out
/// so the same recipe always builds the same binary.
fn kube_router_build_args(output: &Path) -> Vec<String> {
    stripped_build_args(
        output,
        &format!("-X {KUBE_ROUTER_MODULE}/pkg/version.Version={KUBE_ROUTER_VERSION}"),
        KUBE_ROUTER_PACKAGE,
    )
}

pub const PROMETHEUS_OPERATOR_VERSION: &str = "v0.93.0";
const PROMETHEUS_OPERATOR_MODULE: &str = "github.com/prometheus-operator/prometheus-operator";
/// The two commands of e2e/prometheus-operator-build: the binary's name and upstream's package.
const PROMETHEUS_OPERATOR_COMMANDS: [(&str, &str); 2] = [
    ("prometheus-operator", "cmd/operator"),
    (
        "prometheus-config-reloader",
        "cmd/prometheus-config-reloader",
    ),
];

pub fn prometheus_operator_recipe_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus-operator-build")
}

/// The Prometheus Operator and the config reloader it runs beside each Prometheus, from
/// e2e/prometheus-operator-build, cached like CoreDNS.
#[derive(Clone, Debug)]
pub struct PrometheusOperatorBinaries {
    pub operator: PathBuf,
    pub config_reloader: PathBuf,
}

pub fn ensure_prometheus_operator() -> Result<PrometheusOperatorBinaries> {
    let [operator, config_reloader] = ensure_commands(
        &prometheus_operator_recipe_dir(),
        &format!("prometheus-operator-{PROMETHEUS_OPERATOR_VERSION}"),
        PROMETHEUS_OPERATOR_COMMANDS,
        prometheus_operator_build_args,
    )?;
    Ok(PrometheusOperatorBinaries {
        operator,
        config_reloader,
    })
}

fn prometheus_operator_build_args(output: &Path, package: &str) -> Vec<String> {
    stripped_build_args(
        output,
        &version_stamp(PROMETHEUS_OPERATOR_VERSION),
        &format!("{PROMETHEUS_OPERATOR_MODULE}/{package}"),
    )
}

/// Upstream stamps its version into prometheus/common's version package; the Prometheus
/// Operator logs it and writes it into the annotations of what it creates, Prometheus reports it
/// in `prometheus_build_info` and `--version`.
fn version_stamp(version: &str) -> String {
    format!(
        "-X github.com/prometheus/common/version.Version={}",
        version.trim_start_matches('v')
    )
}

/// The commands (binary name, upstream package) of a recipe with several, built into one cache
/// directory keyed by the recipe; returns their paths in the order given.
fn ensure_commands<const N: usize>(
    dir: &Path,
    prefix: &str,
    commands: [(&str, &str); N],
    args: impl Fn(&Path, &str) -> Vec<String>,
) -> Result<[PathBuf; N]> {
    let recipe = read_recipe_files(dir, TOOL_RECIPE_FILES)?;
    let cache = cache_root()?.join(keyed_by_recipe(prefix, &recipe));
    for (name, package) in commands {
        let binary = cache.join(name);
        if !binary.exists() {
            build_binary(dir, &binary, &format!("{name} ({prefix})"), |output| {
                args(output, package)
            })?;
        }
    }
    Ok(commands.map(|(name, _)| cache.join(name)))
}

/// Prometheus 3 (the version the Prometheus object names) and its promtool.
pub const PROMETHEUS_VERSION: &str = "v3.13.1";
const PROMETHEUS_MODULE: &str = "github.com/prometheus/prometheus";
const PROMETHEUS_COMMANDS: [(&str, &str); 2] = [
    ("prometheus", "cmd/prometheus"),
    ("promtool", "cmd/promtool"),
];
/// Upstream's build tags that leave out every service discovery but Kubernetes's (see the
/// recipe's go.mod).
const PROMETHEUS_TAGS: &str = "remove_all_sd,enable_kubernetes_sd";

pub fn prometheus_recipe_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus-build")
}

#[derive(Clone, Debug)]
pub struct PrometheusBinaries {
    pub prometheus: PathBuf,
    pub promtool: PathBuf,
}

/// Prometheus and promtool from e2e/prometheus-build, cached like the Prometheus Operator.
pub fn ensure_prometheus() -> Result<PrometheusBinaries> {
    let [prometheus, promtool] = ensure_commands(
        &prometheus_recipe_dir(),
        &format!("prometheus-{PROMETHEUS_VERSION}"),
        PROMETHEUS_COMMANDS,
        prometheus_build_args,
    )?;
    Ok(PrometheusBinaries {
        prometheus,
        promtool,
    })
}

fn prometheus_build_args(output: &Path, package: &str) -> Vec<String> {
    let mut args = stripped_build_args(
        output,
        &version_stamp(PROMETHEUS_VERSION),
        &format!("{PROMETHEUS_MODULE}/{package}"),
    );
    args.splice(1..1, ["-tags".to_string(), PROMETHEUS_TAGS.to_string()]);
    args
}

/// Builds `binary` from `recipe` under a temporary name and renames it into place, so an
/// interrupted or failed build never leaves a cache entry behind.
fn build_binary(
    recipe: &Path,
    binary: &Path,
    what: &str,
    args: impl FnOnce(&Path) -> Vec<String>,
) -> Result<()> {
    let dir = binary.parent().unwrap_or(Path::new("."));
    let name = binary.file_name().unwrap_or_default().to_string_lossy();
    let partial = dir.join(format!("{name}.partial-{}", std::process::id()));
    if let Err(error) = go_build(recipe, dir, &args(&partial), what) {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    std::fs::rename(&partial, binary).map_err(Error::io(format!("installing {}", binary.display())))
}

/// Runs `go build` with `args` in `recipe`, logging to `dir`/build.log.
fn go_build(recipe: &Path, dir: &Path, args: &[String], what: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    if Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        return Err(Error::GoMissing);
    }
    let log = dir.join("build.log");
    let log_file =
        std::fs::File::create(&log).map_err(Error::io(format!("creating {}", log.display())))?;
    let log_err = log_file
        .try_clone()
        .map_err(Error::io("duplicating the build log handle"))?;
    eprintln!("dfr-cluster: building {what} from its Go modules (first run only)");
    let status = Command::new("go")
        .args(args)
        .current_dir(recipe)
        .env("CGO_ENABLED", "0")
        .stdout(log_file)
        .stderr(log_err)
        .status()
        .map_err(Error::io("running go build"))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::BuildFailed {
            status: status.to_string(),
            log,
        })
    }
}

/// Builds the binary when the cache has none for this recipe. Returns the bin dir and, when it
/// built, how long that took.
pub fn ensure_built() -> Result<(PathBuf, Option<std::time::Duration>)> {
    let dir = bin_dir()?;
    let binary = dir.join("dfr-kube");
    let mut took = None;
    if !binary.exists() {
        let started = Instant::now();
        let what = format!("the Kubernetes {KUBERNETES_VERSION} components (a few minutes)");
        build_binary(&recipe_dir(), &binary, &what, go_build_args)?;
        took = Some(started.elapsed());
    }
    for component in COMPONENTS {
        let link = dir.join(component);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("dfr-kube", &link)
                .map_err(Error::io(format!("linking {}", link.display())))?;
        }
    }
    Ok((dir, took))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_changes_with_the_recipe_and_nothing_else() {
        let recipe = vec![
            ("go.mod", b"module a".to_vec()),
            ("main.go", b"package main".to_vec()),
        ];
        let same = vec![
            ("go.mod", b"module a".to_vec()),
            ("main.go", b"package main".to_vec()),
        ];
        let changed = vec![
            ("go.mod", b"module b".to_vec()),
            ("main.go", b"package main".to_vec()),
        ];
        assert_eq!(cache_key(&recipe), cache_key(&same));
        assert_ne!(cache_key(&recipe), cache_key(&changed));
        assert!(cache_key(&recipe).starts_with("kube-v1.34.4-"));
    }

    #[test]
    fn the_versitygw_recipe_pins_the_version_it_builds() {
        let go_mod =
            std::fs::read_to_string(versitygw_recipe_dir().join("go.mod")).expect("go.mod");
        assert!(go_mod.contains(&format!("github.com/versity/versitygw {VERSITYGW_VERSION}")));
        assert!(go_mod.contains(&format!("tool {VERSITYGW_PACKAGE}")));
        let args = versitygw_build_args(Path::new("/tmp/out"));
        assert_eq!(
            args[3],
            format!("-s -w -X main.Version={VERSITYGW_VERSION}")
        );
        assert_eq!(
            stripped_build_args(Path::new("/tmp/out"), "", ".")[..4],
            ["build", "-trimpath", "-ldflags", "-s -w"]
        );
        assert_eq!(args.last().map(String::as_str), Some(VERSITYGW_PACKAGE));
    }

    #[test]
    fn the_kube_router_recipe_pins_the_version_it_builds() {
        let go_mod =
            std::fs::read_to_string(kube_router_recipe_dir().join("go.mod")).expect("go.mod");
        assert!(go_mod.contains(&format!("{KUBE_ROUTER_MODULE} {KUBE_ROUTER_VERSION}")));
        assert!(go_mod.contains(&format!("tool {KUBE_ROUTER_PACKAGE}")));
        let args = kube_router_build_args(Path::new("/tmp/out"));
        assert_eq!(
            args[3],
            format!(
                "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version={KUBE_ROUTER_VERSION}"
            )
        );
        assert_eq!(args[..3], ["build", "-trimpath", "-ldflags"]);
        assert_eq!(args.last().map(String::as_str), Some(KUBE_ROUTER_PACKAGE));
        assert!(args.contains(&"/tmp/out".to_string()));
    }

    #[test]
    fn the_metrics_api_recipes_pin_the_versions_they_build() {
        for (dir, module, version, package, args) in [
            (
                metrics_server_recipe_dir(),
                "sigs.k8s.io/metrics-server",
                METRICS_SERVER_VERSION,
                METRICS_SERVER_PACKAGE,
                metrics_server_build_args as fn(&Path) -> Vec<String>,
            ),
            (
                prometheus_adapter_recipe_dir(),
                "sigs.k8s.io/prometheus-adapter",
                PROMETHEUS_ADAPTER_VERSION,
                PROMETHEUS_ADAPTER_PACKAGE,
                prometheus_adapter_build_args,
            ),
        ] {
            let go_mod = std::fs::read_to_string(dir.join("go.mod")).expect("go.mod");
            assert!(go_mod.contains(&format!("{module} {version}")), "{module}");
            assert!(go_mod.contains(&format!("tool {package}")), "{package}");
            let args = args(Path::new("/tmp/out"));
            assert_eq!(args.last().map(String::as_str), Some(package));
            assert!(args.contains(&"/tmp/out".to_string()));
        }
    }

    #[test]
    fn the_prometheus_operator_recipe_pins_the_version_it_builds() {
        let go_mod = std::fs::read_to_string(prometheus_operator_recipe_dir().join("go.mod"))
            .expect("go.mod");
        assert!(go_mod.contains(&format!(
            "{PROMETHEUS_OPERATOR_MODULE} {PROMETHEUS_OPERATOR_VERSION}"
        )));
        for (_, package) in PROMETHEUS_OPERATOR_COMMANDS {
            let full = format!("{PROMETHEUS_OPERATOR_MODULE}/{package}");
            assert!(go_mod.contains(&format!("\t{full}\n")), "tool {full}");
            let args = prometheus_operator_build_args(Path::new("/tmp/out"), package);
            assert_eq!(args.last(), Some(&full));
            assert!(args[3].contains("version.Version=0.93.0"));
        }
    }

    #[test]
    fn the_prometheus_recipe_pins_the_version_it_builds_with_kubernetes_discovery_only() {
        let go_mod =
            std::fs::read_to_string(prometheus_recipe_dir().join("go.mod")).expect("go.mod");
        // Prometheus 3.x.y is the Go module version v0.3xx.y.
        assert!(go_mod.contains(&format!("{PROMETHEUS_MODULE} v0.313.1")));
        assert_eq!(PROMETHEUS_VERSION, "v3.13.1");
        for (_, package) in PROMETHEUS_COMMANDS {
            let full = format!("{PROMETHEUS_MODULE}/{package}");
            assert!(go_mod.contains(&format!("\t{full}\n")), "tool {full}");
            let args = prometheus_build_args(Path::new("/tmp/out"), package);
            assert_eq!(args[..4], ["build", "-tags", PROMETHEUS_TAGS, "-trimpath"]);
            assert_eq!(args.last(), Some(&full));
            assert!(args[5].contains("version.Version=3.13.1"));
        }
    }

    #[test]
    fn the_build_stamps_the_kubernetes_version() {
        let args = go_build_args(Path::new("/tmp/out"));
        let ldflags = &args[2];
        assert!(ldflags.contains("version.gitVersion=v1.34.4"));
        assert!(ldflags.contains("version.gitMinor=34"));
        assert_eq!(args[4], "/tmp/out");
    }

    #[test]
    fn the_checked_in_recipe_pins_every_staging_module() {
        let go_mod = std::fs::read_to_string(recipe_dir().join("go.mod")).expect("go.mod");
        assert!(go_mod.contains("k8s.io/kubernetes v1.34.4"));
        let replaces = go_mod
            .lines()
            .filter(|l| l.contains("=> k8s.io/") && l.contains("v0.34.4"))
            .count();
        assert_eq!(
            replaces, 31,
            "k8s.io/kubernetes v1.34.4 has 31 staging modules"
        );
    }
}
