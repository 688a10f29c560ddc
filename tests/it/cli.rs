//! The real binary on the shipped example and on inputs that must not hang,
//! crash or read what is not a manifest.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{self, patchops, render_diagnostics, repo, run_validate, run_with_limit};

const SITE: &str = "apiVersion: patchops/v1\nkind: Site\nmetadata: {name: LAB}\nspec: {siteCode: LAB, siteServer: sms01}\n";

fn site_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("site.yaml"), SITE).unwrap();
    dir
}

#[test]
fn example_site_is_valid_with_strict() {
    let (code, json) = run_validate(repo(), Path::new("examples/site"), &["--strict".into()]);
    assert_eq!(render_diagnostics(&json), "");
    assert_eq!(code, 0);
    assert_eq!(json["valid"], true);
    assert_eq!(json["manifests"], 19);
}

#[test]
fn human_output_points_into_the_file() {
    let dir = site_dir();
    fs::write(
        dir.path().join("c.yaml"),
        "apiVersion: patchops/v1\nkind: Collection\nmetadata: {name: Servers}\nspec:\n  limitngCollection: All Systems\n",
    )
    .unwrap();
    let out = patchops()
        .current_dir(dir.path())
        .args(["validate", ".", "--color", "never"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "unknown field `limitngCollection`",
        "c.yaml (Collection/Servers):5:3",
        "5 |   limitngCollection: All Systems",
        "`-- spec.limitngCollection",
        "did you mean `limitingCollection`?",
        "invalid: 1 error in 2 manifests in 2 files",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        !text.contains('\u{1b}'),
        "--color never must not emit escape codes"
    );
}

#[test]
fn a_ten_megabyte_document_is_refused_fast() {
    let dir = site_dir();
    let mut big = String::from(
        "apiVersion: patchops/v1\nkind: Collection\nmetadata: {name: Big}\nspec:\n  comment: \"",
    );
    big.push_str(&"x".repeat(10 * 1024 * 1024));
    big.push_str("\"\n");
    fs::write(dir.path().join("big.yaml"), big).unwrap();
    let (code, json) = run_validate(dir.path(), Path::new("."), &[]);
    assert_eq!(code, 1);
    assert_eq!(render_diagnostics(&json), "error[file-too-large] big.yaml: file is larger than 4 MiB (help: split the manifests into several files; a manifest file this large is almost certainly not a manifest)\n");
}

#[cfg(unix)]
#[test]
fn a_symlink_loop_is_reported_not_followed_forever() {
    let dir = site_dir();
    fs::create_dir(dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink("..", dir.path().join("sub/loop")).unwrap();
    let (code, json) = run_validate(dir.path(), Path::new("."), &[]);
    assert_eq!(code, 1);
    assert_eq!(
        render_diagnostics(&json),
        "error[symlink-loop] sub/loop: symbolic link loop (help: remove the link that points back into its own parent directory)\n"
    );
}

#[cfg(unix)]
#[test]
fn a_symlink_out_of_the_repository_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(
        outside.path().join("secret.yaml"),
        "apiVersion: patchops/v1\nkind: Collection\n",
    )
    .unwrap();
    let dir = site_dir();
    std::os::unix::fs::symlink(
        outside.path().join("secret.yaml"),
        dir.path().join("linked.yaml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("linked-dir")).unwrap();
    let (code, json) = run_validate(dir.path(), Path::new("."), &[]);
    assert_eq!(code, 1);
    assert_eq!(
        render_diagnostics(&json),
        "error[path-escapes] linked-dir: symbolic link points outside the manifest directory (help: manifests and package sources must live inside the repository)\n\
         error[path-escapes] linked.yaml: symbolic link points outside the manifest directory (help: manifests and package sources must live inside the repository)\n"
    );
}

#[test]
fn hidden_directories_and_package_content_are_not_manifests() {
    let dir = site_dir();
    fs::create_dir_all(dir.path().join(".github/workflows")).unwrap();
    fs::write(
        dir.path().join(".github/workflows/ci.yml"),
        "on: push\njobs: {}\n",
    )
    .unwrap();
    fs::create_dir_all(dir.path().join("packages/tool/conf")).unwrap();
    fs::write(
        dir.path().join("packages/tool/conf/settings.yaml"),
        "not: a manifest\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("dp.yaml"),
        "apiVersion: patchops/v1\nkind: DistributionPoint\nmetadata: {name: dp}\nspec: {path: dp, url: 'http://dp:8080'}\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("tool.yaml"),
        "apiVersion: patchops/v1\nkind: Package\nmetadata: {name: Tool}\nspec:\n  source: packages/tool\n  distributionPoints: [dp]\n  programs: [{name: Run, commandLine: run.exe}]\n",
    )
    .unwrap();
    let (code, json) = run_validate(dir.path(), Path::new("."), &[]);
    assert_eq!(render_diagnostics(&json), "");
    assert_eq!((code, json["files"].as_u64()), (0, Some(3)));
}

#[test]
fn an_unreadable_directory_is_a_clear_error() {
    let out = patchops()
        .args(["validate", "/nonexistent/patchops-site", "--color", "never"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(
            "cannot read manifest directory /nonexistent/patchops-site: No such file or directory"
        ),
        "{err}"
    );
}

#[test]
fn hostile_inputs_finish_quickly_together() {
    // Every hostile case of the corpus in one tree: one run, bounded time.
    let dir = site_dir();
    let corpus = repo().join("tests/bad-manifests");
    for entry in fs::read_dir(&corpus).unwrap() {
        let case = entry.unwrap().path();
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("hostile-") {
            continue;
        }
        for file in fs::read_dir(case.join("input")).unwrap() {
            let file = file.unwrap().path();
            let target = dir.path().join(format!(
                "{name}-{}",
                file.file_name().unwrap().to_string_lossy()
            ));
            fs::copy(&file, target).unwrap();
        }
    }
    let mut cmd = patchops();
    cmd.current_dir(dir.path())
        .args(["validate", ".", "--format", "json"]);
    let out = run_with_limit(cmd, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["errors"].as_u64().unwrap() >= 6, "{json}");
}

#[test]
fn committed_schemas_are_up_to_date() {
    let out = patchops()
        .current_dir(repo())
        .args([
            "schema",
            "--check",
            "--out",
            "schemas",
            "--docs",
            "docs/reference.md",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "schemas/ or docs/reference.md is stale: run `cargo run -- schema --out schemas --docs docs/reference.md` and commit.\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn schema_check_notices_a_stale_file() {
    let dir = tempfile::tempdir().unwrap();
    let write = patchops()
        .args(["schema", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(write.status.success());
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 8);
    fs::write(dir.path().join("package.schema.json"), "{}").unwrap();
    let check = patchops()
        .args(["schema", "--check", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stderr).contains("package.schema.json"));
}

#[test]
fn example_files_carry_a_schema_modeline_that_resolves() {
    let examples = repo().join("examples/site");
    let mut checked = 0;
    for entry in walk(&examples) {
        if entry.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = fs::read_to_string(&entry).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("# yaml-language-server: $schema="))
            .unwrap_or_else(|| panic!("{} has no modeline", entry.display()));
        let target = entry
            .parent()
            .unwrap()
            .join(line.trim_start_matches("# yaml-language-server: $schema="));
        assert!(
            target.is_file(),
            "{}: modeline points at missing {}",
            entry.display(),
            target.display()
        );
        checked += 1;
    }
    assert!(checked >= 8);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Human output holds no control or bidi character raw, and no line of it
/// is one that a file name forged.
fn assert_nothing_forged(what: &str, out: &str) {
    for c in out.chars() {
        assert!(
            c == '\n' || !patchops::untrusted::is_unsafe(c),
            "{what}: raw {c:?} in:\n{out}"
        );
    }
    assert!(
        !out.lines()
            .any(|l| l.trim_start().starts_with("+ create Package \"forged\"")),
        "{what}: a forged line in:\n{out}"
    );
}

#[test]
fn manifest_file_names_with_newlines_cannot_forge_plan_lines() {
    let dir = tempfile::tempdir().unwrap();
    support::copy_dir(&repo().join("examples/site"), &dir.path().join("site"));
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    let forged = "\n+ create Package \"forged\"\r\x1b[2K\u{202e}";
    let escaped = "\\n+ create Package \"forged\"\\r\\x1b[2K\\u{202e}";
    let collection = "apiVersion: patchops/v1\nkind: Collection\nmetadata:\n  name: Evil\nspec:\n  limitingCollection: All Systems\n  membership:\n    - direct: [wks-test-01]\n";
    let evil = dir.path().join(format!("site/evil{forged}.yaml"));
    let twice = dir.path().join(format!("site/dup{forged}.yaml"));
    let binary = dir.path().join(format!("site/bin{forged}.yaml"));
    fs::write(&evil, collection).unwrap();
    // Declared twice: the second's help names the first by file.
    fs::write(&twice, collection).unwrap();
    // A file without a snippet to show: its diagnostic is one line.
    fs::write(&binary, "a: \0\n").unwrap();
    let run = |args: &[&str]| {
        let mut cmd = patchops();
        cmd.current_dir(dir.path())
            .env("PATCHOPS_STATE", &state)
            .args(args)
            .args(["--color", "never"]);
        let out = run_with_limit(cmd, Duration::from_secs(60));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };

    for args in [&["validate", "site"][..], &["plan", "site"][..]] {
        let (code, out) = run(args);
        assert_eq!(code, Some(1), "{args:?}:\n{out}");
        assert_nothing_forged(&format!("{args:?}"), &out);
        for expected in [
            format!("error[binary-file] bin{escaped}.yaml:1:4: binary file"),
            format!("evil{escaped}.yaml (Collection/Evil):4:9"),
            format!("it is first declared at dup{escaped}.yaml:1"),
        ] {
            assert!(
                out.contains(&expected),
                "{args:?}: no {expected:?} in:\n{out}"
            );
        }
    }
    assert!(
        !dir.path().join("state.db").exists() || run(&["history"]).1.contains("No applies"),
        "an invalid plan changed the state"
    );

    fs::remove_file(&twice).unwrap();
    fs::remove_file(&binary).unwrap();
    let (code, out) = run(&["validate", "site"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&["plan", "site"]);
    assert_eq!(code, Some(0), "{out}");
    assert_nothing_forged("plan", &out);
    assert!(
        out.contains(&format!(
            "+ create Collection \"Evil\"  (evil{escaped}.yaml:1)"
        )),
        "{out}"
    );
    let (code, out) = run(&["apply", "site", "--auto-approve"]);
    assert_eq!(code, Some(0), "{out}");
    assert_nothing_forged("apply", &out);
    // The state keeps the file name as it is; people see it escaped.
    let (_, show) = run(&["state", "show", "Collection/Evil", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(
        doc["state"]["file"],
        format!("evil{forged}.yaml"),
        "stored as it is"
    );
}
