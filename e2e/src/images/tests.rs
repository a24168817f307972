use std::collections::BTreeSet;

use super::*;

/// The instructions of a Dockerfile's last stage, continuation lines joined.
fn last_stage(dockerfile: &str) -> Vec<String> {
    let joined = dockerfile.replace("\\\n", " ");
    let lines: Vec<String> = joined
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect();
    let start = lines
        .iter()
        .rposition(|line| line.starts_with("FROM "))
        .expect("a FROM line");
    lines[start..].to_vec()
}

fn dockerfile(image: &str) -> String {
    std::fs::read_to_string(images_dir().join(image).join("Dockerfile")).expect("Dockerfile")
}

/// Config instructions of the stage, in order.
fn config_lines(stage: &[String]) -> Vec<String> {
    stage
        .iter()
        .filter(|line| {
            ["ENV ", "USER ", "WORKDIR ", "ENTRYPOINT ", "CMD "]
                .iter()
                .any(|keyword| line.starts_with(keyword))
        })
        .cloned()
        .collect()
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The recipe files the stage copies to BUILD_DIR, resolved against the build context.
fn copied_recipe_files(stage: &[String], context: &Path) -> BTreeSet<PathBuf> {
    stage
        .iter()
        .filter_map(|line| line.strip_prefix("COPY "))
        .filter_map(|rest| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let (destination, sources) = words.split_last()?;
            (*destination == format!("{}/", recipe::BUILD_DIR)).then(|| {
                sources
                    .iter()
                    .map(|source| canonical(&context.join(source)))
                    .collect::<Vec<_>>()
            })
        })
        .flatten()
        .collect()
}

fn assert_same_recipe(
    image: &str,
    context: &Path,
    recipe_dir: &str,
    files: &[&str],
    config: &ImageConfig,
) {
    let stage = last_stage(&dockerfile(image));
    assert_eq!(stage[0], "FROM debian:bookworm-slim", "{image}");
    let expected: BTreeSet<PathBuf> = files
        .iter()
        .map(|file| canonical(&images_dir().join(recipe_dir).join(file)))
        .collect();
    assert_eq!(copied_recipe_files(&stage, context), expected, "{image}");
    assert!(
        stage
            .iter()
            .any(|line| line.starts_with(&format!("RUN sh {}/setup.sh", recipe::BUILD_DIR))),
        "{image} runs setup.sh"
    );
    // debian:bookworm-slim sets this PATH, so the Dockerfile inherits it without an ENV line.
    let inherited = format!("ENV PATH={DEFAULT_PATH}");
    let wanted: Vec<String> = config
        .dockerfile_lines()
        .into_iter()
        .filter(|line| *line != inherited)
        .collect();
    assert_eq!(config_lines(&stage), wanted, "{image}");
}

#[test]
fn the_postgres_dockerfile_runs_the_local_recipe_with_the_same_config() {
    let context = images_dir().join("dfr-postgres");
    assert_same_recipe(
        "dfr-postgres",
        &context,
        "dfr-postgres",
        POSTGRES_FILES,
        &postgres_config(),
    );
}

#[test]
fn the_binary_dockerfiles_run_the_local_recipe_with_the_same_config() {
    // Their context is the repository root, for the build stage.
    let context = images_dir().join("..");
    for name in BINARY_IMAGES {
        let install = format!("/usr/local/bin/{name}");
        assert_same_recipe(
            name,
            &context,
            RUNTIME_RECIPE,
            BINARY_FILES,
            &binary_config(&install),
        );
        let stage = last_stage(&dockerfile(name));
        let copy = format!("COPY --from=build /src/target/release/{name} {install}");
        assert!(stage.contains(&copy), "{name}: {stage:?}");
        assert!(dockerfile(name).contains(&format!("cargo build --release --locked -p {name}")));
    }
    let config = binary_config(COREDNS_PATH);
    assert_same_recipe(
        "dfr-coredns",
        &context,
        RUNTIME_RECIPE,
        BINARY_FILES,
        &config,
    );
    let stage = last_stage(&dockerfile("dfr-coredns"));
    assert!(stage.contains(&format!("COPY --from=build /coredns {COREDNS_PATH}")));
}

#[test]
fn the_pause_dockerfile_compiles_like_the_local_recipe() {
    let text = dockerfile("pause");
    let compile = format!("RUN gcc {} -o /pause /src/pause.c", PAUSE_CFLAGS.join(" "));
    assert!(text.lines().any(|line| line == compile), "{compile}");
    assert!(text.lines().any(|line| line == "COPY pause.c /src/pause.c"));
    let stage = last_stage(&text);
    assert_eq!(stage[0], "FROM scratch");
    assert_eq!(config_lines(&stage), pause_config().dockerfile_lines());
}

#[test]
fn the_checked_in_recipes_parse_and_pin_patroni_4() {
    let postgres = images_dir().join("dfr-postgres");
    let path = postgres.join("packages");
    let packages =
        recipe::parse_packages(&std::fs::read_to_string(&path).expect("packages"), &path)
            .expect("parses");
    for wanted in [
        "postgresql-15",
        "postgresql-15-pgaudit",
        "pgbackrest",
        "python3-psycopg2",
    ] {
        assert!(packages.iter().any(|package| package == wanted), "{wanted}");
    }
    let requirements =
        std::fs::read_to_string(postgres.join("requirements.txt")).expect("requirements.txt");
    assert!(requirements.contains("patroni==4.1.5 --hash=sha256:"));
    let runtime = Recipe {
        dir: images_dir().join(RUNTIME_RECIPE),
        files: BINARY_FILES,
    };
    runtime
        .read()
        .expect("the shared recipe of the binary images reads");
}

#[test]
fn the_image_key_changes_with_each_input_and_only_then() {
    let config = postgres_config();
    let key = image_key("dfr-postgres:15", &config, &[("rootfs", b"r1")]);
    assert_eq!(
        key,
        image_key("dfr-postgres:15", &config, &[("rootfs", b"r1")])
    );
    assert_ne!(
        key,
        image_key("dfr-postgres:16", &config, &[("rootfs", b"r1")])
    );
    assert_ne!(
        key,
        image_key("dfr-postgres:15", &config, &[("rootfs", b"r2")])
    );
    let other_user = ImageConfig {
        user: "0:0".into(),
        ..config.clone()
    };
    assert_ne!(
        key,
        image_key("dfr-postgres:15", &other_user, &[("rootfs", b"r1")])
    );
    assert_ne!(
        key,
        image_key(
            "dfr-postgres:15",
            &config,
            &[("rootfs", b"r1"), ("binary", b"b")]
        )
    );
}

#[test]
fn the_rootfs_keys_follow_the_slim_script_and_the_recipe_files() {
    let dir = std::env::temp_dir().join(format!("dfr-images-keys-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("base")).expect("dir");
    std::fs::write(dir.join("base/slim.sh"), "one").expect("write");
    let first = rootfs::base_key(&dir).expect("key");
    std::fs::write(dir.join("base/slim.sh"), "two").expect("write");
    let second = rootfs::base_key(&dir).expect("key");
    let _ = std::fs::remove_dir_all(&dir);
    assert_ne!(first, second);

    let files = vec![("packages", b"ca-certificates\n".to_vec())];
    let prepared = rootfs::prepared_key(&first, &files);
    assert_eq!(prepared, rootfs::prepared_key(&first, &files));
    assert_ne!(prepared, rootfs::prepared_key(&second, &files));
    let more = vec![("packages", b"ca-certificates\ncurl\n".to_vec())];
    assert_ne!(prepared, rootfs::prepared_key(&first, &more));
}

#[test]
fn binary_images_are_only_ours_and_tags_follow_docker() {
    assert!(matches!(
        build_binary_image("postgres", Path::new("/nonexistent"), "dev"),
        Err(Error::UnknownImage(_))
    ));
    assert!(matches!(
        build_coredns(Path::new("/nonexistent"), "v1:2"),
        Err(Error::InvalidTag(_))
    ));
    for good in ["dev", "1.2.3", "v1_rc-2"] {
        assert!(check_tag(good).is_ok(), "{good}");
    }
    for bad in ["", "-x", ".x", "a:b", "a/b", &"x".repeat(129)] {
        assert!(check_tag(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_monitoring_dockerfiles_run_the_local_recipes_with_the_same_config() {
    use crate::host::binaries::{PROMETHEUS_OPERATOR_VERSION, PROMETHEUS_VERSION};
    use monitoring::*;
    let image = "dfr-alertmanager";
    assert_same_recipe(
        image,
        &images_dir().join(image),
        image,
        PACKAGED_FILES,
        &alertmanager_config(),
    );
    for (image, binary, recipe, version) in [
        (
            "dfr-prometheus-config-reloader",
            "prometheus-config-reloader",
            "prometheus-operator-build",
            PROMETHEUS_OPERATOR_VERSION,
        ),
        (
            "dfr-prometheus",
            "prometheus",
            "prometheus-build",
            PROMETHEUS_VERSION,
        ),
    ] {
        let path = format!("/usr/bin/{binary}");
        assert_same_recipe(
            image,
            &images_dir().join(".."),
            RUNTIME_RECIPE,
            BINARY_FILES,
            &binary_config(&path),
        );
        let text = dockerfile(image);
        let stage = last_stage(&text);
        assert!(stage.contains(&format!("COPY --from=build /{binary} {path}")));
        assert!(text.contains(&format!("COPY e2e/{recipe}/ ./")));
        let version = version.trim_start_matches('v');
        assert!(
            text.contains(&format!("version.Version={version}")),
            "{image}"
        );
    }
    assert_eq!(CONFIG_RELOADER_PATH, "/usr/bin/prometheus-config-reloader");
    assert_eq!(PROMETHEUS_PATH, "/usr/bin/prometheus");
    assert!(dockerfile("dfr-prometheus").contains("-tags remove_all_sd,enable_kubernetes_sd"));
}
