//! Every directory under `tests/bad-manifests/` is one broken site: its
//! `input/` is validated by the real binary and the diagnostics must match
//! its `expected.txt` exactly (first line `exit: N`, then one diagnostic per
//! line). An optional `args` file adds arguments (one per line), e.g.
//! `--strict`.
//!
//! After an intended change of messages, `UPDATE_EXPECT=1 cargo test --test
//! bad_manifests` rewrites the expectations; review the diff before
//! committing it.

use std::fs;
use std::path::Path;

use crate::support::{render_diagnostics, repo, run_validate};

#[test]
fn bad_manifests_report_exactly_what_is_expected() {
    let root = repo().join("tests/bad-manifests");
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut cases: Vec<_> = fs::read_dir(&root)
        .expect("tests/bad-manifests exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 40,
        "the corpus has {} cases; it must keep at least 40",
        cases.len()
    );

    let mut failures = Vec::new();
    for case in &cases {
        let args: Vec<String> = fs::read_to_string(case.join("args"))
            .map(|s| {
                s.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let (code, json) = run_validate(case, Path::new("input"), &args);
        let actual = format!("exit: {code}\n{}", render_diagnostics(&json));
        let expected_path = case.join("expected.txt");
        if update {
            fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "--- {}\nexpected:\n{expected}\nactual:\n{actual}",
                case.file_name().unwrap().to_string_lossy()
            ));
        }
        assert!(
            code == 0 || code == 1,
            "{}: exit code {code} (crash?)",
            case.display()
        );
        if code == 1 {
            assert!(
                json["errors"].as_u64().unwrap() > 0,
                "{}: exit 1 without an error",
                case.display()
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
