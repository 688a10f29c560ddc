use std::fs;
use std::path::Path;

use super::{exit, Failure, Outcome};
use crate::diagnostic::Diagnostic;
use crate::schemas;

pub fn run(out: &Path, docs: Option<&Path>, check: bool) -> Outcome {
    let files = schemas::files();
    if check {
        let mut stale: Vec<String> = schemas::stale(out, &files)
            .iter()
            .map(|n| out.join(n).display().to_string())
            .collect();
        if let Some(docs) = docs {
            if fs::read_to_string(docs).ok().as_deref()
                != Some(schemas::reference_markdown().as_str())
            {
                stale.push(docs.display().to_string());
            }
        }
        if stale.is_empty() {
            println!(
                "schemas in {} are up to date ({} files)",
                out.display(),
                files.len()
            );
            return Ok(exit::OK);
        }
        for name in &stale {
            eprintln!("stale or missing: {}", out.join(name).display());
        }
        eprintln!(
            "run `patchops schema --out {}` and commit the result",
            out.display()
        );
        return Ok(exit::FAILED);
    }
    if let Err(e) = fs::create_dir_all(out) {
        return Err(unwritable(format!("cannot create {}: {e}", out.display())));
    }
    for (name, text) in &files {
        let path = out.join(name);
        if let Err(e) = fs::write(&path, text) {
            return Err(unwritable(format!("cannot write {}: {e}", path.display())));
        }
    }
    if let Some(docs) = docs {
        if let Err(e) = fs::write(docs, schemas::reference_markdown()) {
            return Err(unwritable(format!("cannot write {}: {e}", docs.display())));
        }
        println!("wrote the field reference to {}", docs.display());
    }
    println!("wrote {} schemas to {}", files.len(), out.display());
    Ok(exit::OK)
}

fn unwritable(message: String) -> Failure {
    Failure::Diagnostic(Diagnostic::error("unwritable", message))
}
