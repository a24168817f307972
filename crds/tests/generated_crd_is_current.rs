//! Every checked-in copy of the CRD manifest must be exactly what the Rust types generate.

use std::path::{Path, PathBuf};

/// The copies users apply: the crate's, the kustomize base's and the Helm chart's.
fn copies(file: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    vec![
        root.join(file),
        root.join("../config/crd").join(file),
        root.join("../charts/dfr-operator/crds").join(file),
    ]
}

#[test]
fn checked_in_crds_match_the_rust_types() {
    let countries = dfr_crds::crd_yaml().expect("CRD serializes to YAML");
    let backups = dfr_crds::backup_crd_yaml().expect("CRD serializes to YAML");
    let stale: Vec<String> = copies(dfr_crds::CRD_FILE)
        .into_iter()
        .map(|path| (path, countries.clone()))
        .chain(
            copies(dfr_crds::BACKUP_CRD_FILE)
                .into_iter()
                .map(|path| (path, backups.clone())),
        )
        .filter(|(path, generated)| {
            std::fs::read_to_string(path).ok().as_deref() != Some(generated.as_str())
        })
        .map(|(path, _)| path)
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        stale.is_empty(),
        "out of date with crds/src: {}\nregenerate with: scripts/generate",
        stale.join(", ")
    );
}

#[test]
fn the_generated_crd_is_one_installable_document() {
    let generated = dfr_crds::crd_yaml().expect("CRD serializes to YAML");
    let documents: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&generated)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("valid YAML"))
        .collect();
    assert_eq!(documents.len(), 1);
    assert_eq!(documents[0]["kind"], "CustomResourceDefinition");
    assert_eq!(documents[0]["spec"]["scope"], "Cluster");
    assert_eq!(documents[0]["spec"]["names"]["shortNames"][0], "dfrc");
}

#[test]
fn the_backup_crd_is_namespaced_and_reports_its_phase() {
    let generated = dfr_crds::backup_crd_yaml().expect("CRD serializes to YAML");
    let crd: serde_yaml::Value = serde_yaml::from_str(
        generated
            .split_once("---\n")
            .map(|(_, body)| body)
            .unwrap_or(&generated),
    )
    .expect("valid YAML");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "dfrb");
    let columns = &crd["spec"]["versions"][0]["additionalPrinterColumns"];
    assert!(
        columns
            .as_sequence()
            .expect("printer columns")
            .iter()
            .any(|c| c["jsonPath"] == ".status.phase")
    );
}
