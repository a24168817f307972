//! Every checked-in copy of the CRD manifest must be exactly what the Rust types generate.

use std::path::{Path, PathBuf};

/// The copies users apply: the crate's, the kustomize base's and the Helm chart's.
fn copies() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    vec![
        root.join(dfr_crds::CRD_FILE),
        root.join("../config/crd").join(dfr_crds::CRD_FILE),
        root.join("../charts/dfr-operator/crds")
            .join(dfr_crds::CRD_FILE),
    ]
}

#[test]
fn checked_in_crds_match_the_rust_types() {
    let generated = dfr_crds::crd_yaml().expect("CRD serializes to YAML");
    let stale: Vec<String> = copies()
        .into_iter()
        .filter(|path| std::fs::read_to_string(path).ok().as_deref() != Some(generated.as_str()))
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
