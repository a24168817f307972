//! The crate's layers, checked on its source: a module never imports one above it, and the
//! control plane and the node, being peers, never import each other. A `use` that breaks this
//! compiles fine, so only this test catches it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each layer with the top-level modules it must not name, whether through `crate::` or
/// through enough `super::` to climb out of itself.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "host",
        &["images", "controlplane", "node", "cluster", "testing"],
    ),
    ("images", &["controlplane", "node", "cluster", "testing"]),
    ("controlplane", &["node", "cluster", "testing"]),
    ("node", &["controlplane", "cluster", "testing"]),
    ("cluster", &["testing"]),
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            into.push(path);
        }
    }
}

/// The module path of a file under src/: `node/addons/mod.rs` is `node::addons`,
/// `node/addons/storage.rs` is `node::addons::storage`.
fn module_path(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src_dir()).unwrap_or(file);
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts
}

fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The first segment of each path in what follows `crate::`: one identifier, or the
/// top-level items of a `{...}` group.
fn first_segments(after: &str) -> Vec<String> {
    let Some(group) = after.strip_prefix('{') else {
        return vec![identifier(after).to_string()];
    };
    let mut segments = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (index, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if c.is_whitespace() => {}
            _ if item_start && depth == 0 => {
                segments.push(identifier(&group[index..]).to_string());
                item_start = false;
            }
            _ => {}
        }
    }
    segments
}

/// The top-level modules `source` (the file of module `module`) refers to by path. A `super`
/// inside a file's inline module (its tests) is counted from the file's module, which can only
/// see more top-level names than there are, never fewer.
fn top_level_references(source: &str, module: &[String]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in source.match_indices("crate::") {
        found.extend(first_segments(&source[at + "crate::".len()..]));
    }
    let mut rest = source;
    while let Some(at) = rest.find("super::") {
        let mut after = &rest[at..];
        let mut climbs = 0;
        while let Some(next) = after.strip_prefix("super::") {
            climbs += 1;
            after = next;
        }
        // `super` climbs from the file's module; reaching the crate root names a top level.
        if climbs >= module.len() {
            found.extend(first_segments(after));
        }
        rest = &rest[at + "super::".len() * climbs..];
    }
    found
}

fn violations() -> Vec<String> {
    let mut found = Vec::new();
    for (layer, forbidden) in FORBIDDEN {
        let mut files = Vec::new();
        let dir = src_dir().join(layer);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        } else {
            files.push(src_dir().join(format!("{layer}.rs")));
        }
        assert!(!files.is_empty(), "no source files for {layer}");
        for file in files {
            let source = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let references = top_level_references(&source, &module_path(&file));
            for name in references
                .iter()
                .filter(|r| forbidden.contains(&r.as_str()))
            {
                found.push(format!("{} refers to {name}", file.display()));
            }
        }
    }
    found
}

#[test]
fn no_module_imports_a_layer_above_it_or_its_peer() {
    let found = violations();
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_plain_grouped_and_climbing_paths() {
    let node_file = vec!["node".to_string(), "addons".to_string()];
    let plain = top_level_references("use crate::controlplane::Ports;", &node_file);
    assert!(plain.contains("controlplane"));
    let grouped = top_level_references(
        "use crate::{host::{Error, Result}, controlplane};",
        &node_file,
    );
    assert_eq!(
        grouped,
        BTreeSet::from(["host".to_string(), "controlplane".to_string()])
    );
    let climbing = top_level_references("use super::super::controlplane;", &node_file);
    assert!(climbing.contains("controlplane"));
    let inside = top_level_references("use super::config::NodeLayout;", &node_file);
    assert!(inside.is_empty(), "{inside:?}");
}
