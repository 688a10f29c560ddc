//! `patchops inventory import` through the real binary: a good file, a bad
//! one (every bad row named, nothing imported), and the blast radius a plan
//! then shows over the imported machines.

use std::path::Path;

use crate::support::{self, patchops};
use tempfile::TempDir;

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = patchops()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn machines_in_plan(dir: &Path, state: &str) -> u64 {
    let (code, out, err) = run(dir, &["plan", "site", "--format", "json", "--state", state]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).expect("json");
    plan["impact"]["machines"].as_u64().expect("impact")
}

#[test]
fn a_bad_file_imports_nothing_and_names_every_bad_row() {
    let dir = TempDir::new().expect("tmp");
    support::copy_dir(
        &support::repo().join("examples/site"),
        &dir.path().join("site"),
    );
    let state = format!("sqlite://{}", dir.path().join("s.db").display());
    let inventory = support::repo().join("examples/inventory.csv");
    let inventory = inventory.to_str().expect("utf-8 path");

    let (code, out, err) = run(
        dir.path(),
        &["inventory", "import", inventory, "--state", &state],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "Imported 302 machines from ".to_string()
            + inventory
            + ": 302 added or changed, 0 unchanged.\n"
    );
    // Again: nothing changes.
    let (_, out, _) = run(
        dir.path(),
        &[
            "inventory",
            "import",
            inventory,
            "--state",
            &state,
            "--format",
            "json",
        ],
    );
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (json["machines"].as_u64(), json["changed"].as_u64()),
        (Some(302), Some(0))
    );
    assert_eq!(machines_in_plan(dir.path(), &state), 302);

    // Two good rows around two bad ones: nothing of it lands.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "name,os.type,ip.address\n\
         wks-new-1,workstation,10.1.1.1\n\
         wks-new-2,wrkstation,10.1.1.2\n\
         wks-new-3,server,10.1.1.300\n\
         wks-new-4,server,10.1.1.4\n",
    )
    .expect("write");
    let (code, out, err) = run(
        dir.path(),
        &[
            "inventory",
            "import",
            "bad.csv",
            "--state",
            &state,
            "--color",
            "never",
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("bad.csv: nothing was imported"), "{err}");
    assert!(
        err.contains("row 2 (line 3), field `os.type`: expected one of workstation, server, domainController, found `wrkstation` (did you mean `workstation`?)"),
        "{err}"
    );
    assert!(err.contains("row 3 (line 4), field `ip.address`"), "{err}");
    assert_eq!(
        machines_in_plan(dir.path(), &state),
        302,
        "nothing was imported"
    );

    // Unknown formats and missing files are refused with the path.
    let (code, _, err) = run(
        dir.path(),
        &["inventory", "import", "machines.txt", "--state", &state],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("machines.txt: unknown inventory format"),
        "{err}"
    );
}

#[test]
fn the_first_plan_shows_every_machine_that_gets_policy() {
    let dir = TempDir::new().expect("tmp");
    support::copy_dir(
        &support::repo().join("examples/site"),
        &dir.path().join("site"),
    );
    let state = format!("sqlite://{}", dir.path().join("s.db").display());
    let inventory = support::repo().join("examples/inventory.csv");
    run(
        dir.path(),
        &[
            "inventory",
            "import",
            inventory.to_str().expect("path"),
            "--state",
            &state,
        ],
    );
    let (code, out, err) = run(
        dir.path(),
        &["plan", "site", "--state", &state, "--color", "never"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Machines (of 302 in the inventory):"), "{out}");
    assert!(
        out.contains("~ collection MS Security Updates (Pre-production): 0 → 1 members (+1 −0): +wks-test-01"),
        "{out}"
    );
    assert!(
        out.contains("+ MS Security Updates (Pre-production): offered to 1 machine (wks-test-01)"),
        "{out}"
    );
    assert!(out.contains("Client policy: 302 machines change."), "{out}");
    // Applied: the next plan has nothing to show.
    let (code, _, err) = run(
        dir.path(),
        &["apply", "site", "--auto-approve", "--state", &state],
    );
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = run(
        dir.path(),
        &["plan", "site", "--state", &state, "--color", "never"],
    );
    assert!(!out.contains("Machines (of"), "{out}");
}
