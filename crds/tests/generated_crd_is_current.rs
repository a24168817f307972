//! The checked-in CRD manifest must be exactly what the Rust types generate.

use std::path::Path;

#[test]
fn checked_in_crd_matches_the_rust_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dfr_crds::CRD_FILE);
    let generated = dfr_crds::crd_yaml().expect("CRD serializes to YAML");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != generated {
        let fresh = path.with_extension("yaml.generated");
        std::fs::write(&fresh, &generated).expect("write the freshly generated CRD");
        panic!(
            "{} is out of date with crds/src; regenerate it with \
             `cargo run -p dfr-operator -- crd > crds/{}` (fresh copy written to {})",
            path.display(),
            dfr_crds::CRD_FILE,
            fresh.display()
        );
    }
}
