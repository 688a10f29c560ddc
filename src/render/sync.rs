//! `patchops sync` output for people: one catalog's outcome.

use crate::records::rfc3339_from_epoch_ms;
use crate::sync::{CatalogOutcome, Outcome};

pub fn catalog_outcome(o: &CatalogOutcome) -> String {
    let mut out = format!("  {} {} (package {}): ", o.kind, o.url, o.package);
    let next = rfc3339_from_epoch_ms(o.next_attempt_ms);
    match &o.outcome {
        Outcome::Unchanged { sha256, restored } => {
            out.push_str(&format!("unchanged (sha256 {})", super::short_hash(sha256)));
            if *restored {
                out.push_str("; the file in the package source was written again");
            }
            out.push('\n');
        }
        Outcome::Updated {
            version_id,
            sha256,
            size,
            path,
            summary,
            diff,
        } => {
            out.push_str(&format!(
                "new version {version_id} (sha256 {}, {size} bytes) written to {path}\n",
                super::short_hash(sha256)
            ));
            let lines: Vec<&str> = if diff.trim().is_empty() {
                summary.lines().collect()
            } else {
                diff.lines().collect()
            };
            for line in lines.iter().take(20) {
                out.push_str(&format!("      {line}\n"));
            }
            if lines.len() > 20 {
                out.push_str(&format!("      … and {} more lines\n", lines.len() - 20));
            }
        }
        Outcome::Refused { error, help } => {
            out.push_str(&format!("refused: {error}\n"));
            if let Some(h) = help {
                out.push_str(&format!("      help: {h}\n"));
            }
        }
        Outcome::Failed { error, help } => {
            out.push_str(&format!(
                "failed: {error}\n      {} failure(s) in a row; next attempt at {next}\n",
                o.consecutive_failures
            ));
            if let Some(h) = help {
                out.push_str(&format!("      help: {h}\n"));
            }
        }
    }
    out
}
