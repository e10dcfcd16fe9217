//! Shared helpers for the integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The shared vectors directory (`../shared/vectors` next to the workspace), or `None` with a
/// printed reason when it is absent (a panic instead when `ORCH_REQUIRE_SERVICES` is set: CI
/// must not skip).
pub(crate) fn vectors_dir() -> Option<PathBuf> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/vectors"));
    if dir.is_dir() {
        Some(dir.to_path_buf())
    } else if std::env::var_os("ORCH_REQUIRE_SERVICES").is_some() {
        panic!("ORCH_REQUIRE_SERVICES is set but ../shared/vectors is missing (looked at {})", dir.display());
    } else {
        eprintln!("skipping: ../shared/vectors not found (looked at {})", dir.display());
        None
    }
}

pub(crate) fn read(dir: &Path, rel: &str) -> String {
    let p = dir.join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

pub(crate) fn expected(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&read(dir, "derived/expected.json")).expect("expected.json parses")
}
