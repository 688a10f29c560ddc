//! The JSON Schema files under `schemas/`: one per kind and one that picks
//! the kind by `kind`, for files that mix kinds.

use std::path::Path;

use crate::manifest::{combined_schema, kind_schema, Kind};

/// The combined schema's file name.
pub const COMBINED: &str = "patchops.schema.json";

/// Every schema file: name and pretty-printed content (ending in a newline).
pub fn files() -> Vec<(String, String)> {
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    let mut out: Vec<(String, String)> = Kind::ALL
        .iter()
        .map(|k| (k.schema_file().to_string(), pretty(kind_schema(*k))))
        .collect();
    out.push((COMBINED.to_string(), pretty(&combined_schema())));
    out
}

/// The files in `dir` that differ from what this build would write.
pub fn stale(dir: &Path, files: &[(String, String)]) -> Vec<String> {
    files
        .iter()
        .filter(|(name, text)| {
            std::fs::read_to_string(dir.join(name)).map_or(true, |on_disk| &on_disk != text)
        })
        .map(|(name, _)| name.clone())
        .collect()
}
