use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use proptest::prelude::*;
use roaring::RoaringBitmap;
use serde_json::{json, Value};

use super::*;
use crate::manifest::common::Metadata;
use crate::manifest::package::PackageSpec;
use crate::manifest::{AdvertisementSpec, DistributionPointSpec, SiteSpec};
use crate::model::{Object, Origin};

// ---------------------------------------------------------------------------
// Building sites from JSON specs (serde fills the defaults, as manifests do).

fn object<S: serde::de::DeserializeOwned>(name: &str, spec: Value) -> Object<S> {
    Object {
        metadata: Metadata {
            name: name.into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        },
        spec: serde_json::from_value(spec).unwrap_or_else(|e| panic!("{name}: {e}")),
        origin: Origin {
            file: "test.yaml".into(),
            line: 1,
        },
    }
}

#[derive(Default)]
struct Site {
    desired: Desired,
    content: BTreeMap<String, ContentSummary>,
    installs: crate::policy::UpdateInstalls,
}

impl Site {
    fn new() -> Site {
        let mut site = Site::default();
        site.desired.site = Some(object::<SiteSpec>(
            "LAB",
            json!({"siteCode": "LAB", "siteServer": "sms01"}),
        ));
        site
    }

    fn dp(mut self, name: &str, spec: Value) -> Site {
        let mut spec = spec;
        spec["path"] = json!(format!("dp/{name}"));
        if spec.get("url").is_none() {
            spec["url"] = json!(format!("http://{name}:8080"));
        }
        self.desired
            .distribution_points
            .insert(name.into(), object::<DistributionPointSpec>(name, spec));
        self
    }

    /// A package; with a `source`, content is known unless `content: false`.
    fn package(mut self, name: &str, mut spec: Value) -> Site {
        let with_content = spec
            .as_object_mut()
            .and_then(|o| o.remove("content"))
            .is_none_or(|v| v != json!(false));
        if spec.get("source").is_some() && with_content {
            self.content.insert(
                name.into(),
                ContentSummary {
                    version: hex::encode(Sha256::digest(format!("manifest of {name}"))),
                    files: 3,
                    bytes: 1234,
                },
            );
        }
        self.desired
            .packages
            .insert(name.into(), object::<PackageSpec>(name, spec));
        self
    }

    fn ad(mut self, name: &str, spec: Value) -> Site {
        let mut spec = spec;
        if spec.get("collection").is_none() {
            spec["collection"] = json!("All Systems");
        }
        self.desired
            .advertisements
            .insert(name.into(), object::<AdvertisementSpec>(name, spec));
        self
    }

    fn policy(&self) -> PolicySite {
        PolicySite::with_updates(&self.desired, &self.content, &self.installs)
    }
}

fn machine(addresses: &[[u8; 4]], arch: Option<&str>, version: Option<&str>) -> Machine {
    let mut m = Machine::named("WKS01");
    m.ip.addresses = addresses.iter().map(|a| Ipv4Addr::from(*a)).collect();
    m.architecture = arch.map(String::from);
    m.os.version = version.map(String::from);
    m
}

fn xp() -> Machine {
    machine(&[[10, 1, 2, 3]], Some("x86"), Some("5.1.2600"))
}

fn names(policy: &MachinePolicy) -> Vec<&str> {
    policy
        .assignments
        .iter()
        .map(|a| a.advertisement.as_str())
        .collect()
}

/// A small site: one content package on two DPs, one advertisement.
fn basic() -> Site {
    Site::new()
        .dp("dp-hq", json!({"boundaries": ["10.1.0.0/16"]}))
        .dp("dp-branch", json!({"boundaries": ["10.2.0.0/16"]}))
        .package(
            "Office",
            json!({"source": "pkgs/office", "distributionPoints": ["dp-hq", "dp-branch"],
                   "programs": [{"name": "Install", "commandLine": "setup.exe /q"}]}),
        )
        .ad(
            "Office to all",
            json!({"package": "Office", "program": "Install"}),
        )
}

// ---------------------------------------------------------------------------
// Rules.

#[test]
fn an_assignment_carries_program_content_and_dps() {
    let site = basic();
    let p = machine_policy(&site.policy(), &xp(), &["Office to all"]);
    assert_eq!(p.format, POLICY_FORMAT);
    assert_eq!(p.site_code.as_deref(), Some("LAB"));
    assert_eq!(
        p.client,
        ClientSettings {
            polling_interval_seconds: 3600,
            jitter_seconds: 300,
            heartbeat_interval_seconds: 86400
        }
    );
    let a = &p.assignments[0];
    assert!(!a.mandatory);
    assert_eq!(a.program.command_line, "setup.exe /q");
    assert_eq!(a.program.max_run_time_seconds, DEFAULT_MAX_RUN_TIME_SECS);
    let content = a.program.content.as_ref().unwrap();
    assert_eq!(content.package_id, crate::dp::library::package_id("Office"));
    assert_eq!((content.files, content.bytes), (3, 1234));
    let dps: Vec<_> = a
        .program
        .distribution_points
        .iter()
        .map(|d| (d.name.as_str(), d.local))
        .collect();
    assert_eq!(dps, [("dp-hq", true), ("dp-branch", false)]);
    assert!(p.programs.is_empty());
}

#[test]
fn dps_are_ordered_local_first_then_by_name() {
    let site = Site::new()
        .dp("a-remote", json!({"boundaries": ["192.168.0.0/24"]}))
        .dp("b-everywhere", json!({}))
        .dp(
            "c-local",
            json!({"boundaries": ["10.9.0.0/16", "10.1.2.0/24"]}),
        )
        .dp("d-disabled", json!({"enabled": false}))
        .dp("e-remote", json!({"boundaries": ["10.2.0.0/16"]}))
        .package(
            "P",
            json!({"source": "p", "distributionPoints":
                   ["e-remote", "d-disabled", "c-local", "b-everywhere", "a-remote", "missing"],
                   "programs": [{"name": "x", "commandLine": "x"}]}),
        )
        .ad("A", json!({"package": "P", "program": "x"}));
    let p = machine_policy(&site.policy(), &xp(), &["A"]);
    let dps: Vec<_> = p.assignments[0]
        .program
        .distribution_points
        .iter()
        .map(|d| (d.name.as_str(), d.local))
        .collect();
    assert_eq!(
        dps,
        [
            ("b-everywhere", true),
            ("c-local", true),
            ("a-remote", false),
            ("e-remote", false)
        ]
    );
    // A second address makes a-remote local too.
    let mut two = xp();
    two.ip.addresses.push(Ipv4Addr::new(192, 168, 0, 7));
    let p = machine_policy(&site.policy(), &two, &["A"]);
    let local: Vec<_> = p.assignments[0]
        .program
        .distribution_points
        .iter()
        .filter(|d| d.local)
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(local, ["a-remote", "b-everywhere", "c-local"]);
    // No addresses: only the DP without boundaries is local.
    let none = machine(&[], Some("x86"), Some("5.1"));
    let p = machine_policy(&site.policy(), &none, &["A"]);
    assert_eq!(
        p.assignments[0].program.distribution_points[0].name,
        "b-everywhere"
    );
    assert!(!p.assignments[0].program.distribution_points[1].local);
}

#[test]
fn remote_dps_are_listed_when_the_remote_action_is_do_not_run() {
    let site = basic().ad(
        "Strict",
        json!({"package": "Office", "program": "Install", "remoteDistributionPoint": "doNotRun"}),
    );
    let p = machine_policy(&site.policy(), &xp(), &["Strict"]);
    let a = &p.assignments[0];
    assert_eq!(a.remote_distribution_point, RemoteDpAction::DoNotRun);
    assert_eq!(a.program.distribution_points.len(), 2);
    assert!(!a.program.distribution_points[1].local);
}

#[test]
fn disabled_programs_and_unknown_content_give_no_assignment() {
    let site = basic()
        .package(
            "Off",
            json!({"programs": [{"name": "x", "commandLine": "x", "disabled": true}]}),
        )
        .ad("Disabled", json!({"package": "Off", "program": "x"}))
        .package(
            "Unsent",
            json!({"source": "u", "content": false,
                   "programs": [{"name": "x", "commandLine": "x"}]}),
        )
        .ad("No content", json!({"package": "Unsent", "program": "x"}))
        .package(
            "Local",
            json!({"programs": [{"name": "x", "commandLine": "x"}]}),
        )
        .ad("Sourceless", json!({"package": "Local", "program": "x"}))
        .ad("Dangling", json!({"package": "Gone", "program": "x"}));
    let p = machine_policy(
        &site.policy(),
        &xp(),
        &["Disabled", "No content", "Sourceless", "Dangling", "Nope"],
    );
    assert_eq!(names(&p), ["Sourceless"]);
    assert_eq!(p.assignments[0].program.content, None);
    assert!(p.assignments[0].program.distribution_points.is_empty());
}

#[test]
fn platforms_restrict_programs_to_known_machines() {
    let site = Site::new()
        .package(
            "P",
            json!({"programs": [
                {"name": "xp", "commandLine": "x", "platforms": ["x86-windows-xp"]},
                {"name": "x64", "commandLine": "x", "platforms": ["x64-windows-xp", "x64-windows-server-2003"]},
                {"name": "srv64", "commandLine": "x", "platforms": ["x64-windows-server-2003"]},
                {"name": "any", "commandLine": "x"}]}),
        )
        .ad("xp", json!({"package": "P", "program": "xp"}))
        .ad("x64", json!({"package": "P", "program": "x64"}))
        .ad("srv64", json!({"package": "P", "program": "srv64"}))
        .ad("any", json!({"package": "P", "program": "any"}));
    let site = site.policy();
    let all = ["xp", "x64", "srv64", "any"];
    let got = |m: &Machine| {
        machine_policy(&site, m, &all)
            .assignments
            .into_iter()
            .map(|a| a.advertisement)
            .collect::<Vec<_>>()
    };
    assert_eq!(got(&xp()), ["any", "xp"]);
    assert_eq!(got(&machine(&[], Some("X86"), Some("5.1"))), ["any", "xp"]);
    assert_eq!(got(&machine(&[], Some("x86"), Some("5.2.3790"))), ["any"]);
    assert_eq!(got(&machine(&[], None, Some("5.1.2600"))), ["any"]);
    assert_eq!(got(&machine(&[], Some("x86"), None)), ["any"]);
    assert_eq!(got(&machine(&[], Some("x86"), Some("garbage"))), ["any"]);
    // x64 5.2 of unknown type: XP x64 or Server 2003 x64; only a program
    // allowing both gets it.
    let unknown64 = machine(&[], Some("x64"), Some("5.2.3790"));
    assert_eq!(got(&unknown64), ["any", "x64"]);
    let mut server64 = unknown64.clone();
    server64.os.os_type = Some("server".into());
    assert_eq!(got(&server64), ["any", "srv64", "x64"]);
    assert_eq!(
        machine_platforms(&server64),
        [Platform::X64WindowsServer2003]
    );
    let mut wks64 = unknown64;
    wks64.os.os_type = Some("workstation".into());
    assert_eq!(machine_platforms(&wks64), [Platform::X64WindowsXp]);
    assert_eq!(
        machine_platforms(&machine(&[], Some("x86"), Some("5.0.2195"))),
        [Platform::X86Windows2000]
    );
    assert_eq!(
        machine_platforms(&machine(&[], Some("ia64"), Some("5.2"))),
        [Platform::Ia64WindowsServer2003]
    );
}

#[test]
fn run_first_programs_are_listed_with_their_content() {
    let site = basic()
        .dp("dp-tools", json!({}))
        .package(
            "Runtime",
            json!({"source": "rt", "distributionPoints": ["dp-tools"], "programs": [
                {"name": "Base", "commandLine": "base.exe"},
                {"name": "Install", "commandLine": "rt.exe",
                 "runAnotherProgramFirst": {"program": "Base"}}]}),
        )
        .package(
            "App",
            json!({"programs": [{"name": "Install", "commandLine": "app.exe",
                "runAnotherProgramFirst": {"package": "Runtime", "program": "Install", "alwaysRun": true}}]}),
        )
        .ad("App", json!({"package": "App", "program": "Install"}))
        .ad("Runtime", json!({"package": "Runtime", "program": "Install"}));
    let p = machine_policy(&site.policy(), &xp(), &["App", "Runtime"]);
    assert_eq!(names(&p), ["App", "Runtime"]);
    let first = p.assignments[0].program.run_first.as_ref().unwrap();
    assert_eq!(
        (
            first.package.as_str(),
            first.program.as_str(),
            first.always_run
        ),
        ("Runtime", "Install", true)
    );
    let listed: Vec<_> = p
        .programs
        .iter()
        .map(|q| (q.package.as_str(), q.program.as_str()))
        .collect();
    assert_eq!(listed, [("Runtime", "Base"), ("Runtime", "Install")]);
    let base = &p.programs[0];
    assert_eq!(base.command_line, "base.exe");
    assert!(base.content.is_some());
    assert_eq!(base.distribution_points[0].name, "dp-tools");
    // The same-package reference names its package.
    assert_eq!(p.programs[1].run_first.as_ref().unwrap().package, "Runtime");
}

#[test]
fn an_unrunnable_run_first_program_drops_the_assignment() {
    let site = Site::new()
        .package(
            "P",
            json!({"programs": [
                {"name": "dep-off", "commandLine": "x", "disabled": true},
                {"name": "dep-srv", "commandLine": "x", "platforms": ["x86-windows-server-2003"]},
                {"name": "a", "commandLine": "x", "runAnotherProgramFirst": {"program": "dep-off"}},
                {"name": "b", "commandLine": "x", "runAnotherProgramFirst": {"program": "dep-srv"}},
                {"name": "c", "commandLine": "x", "runAnotherProgramFirst": {"program": "gone"}},
                {"name": "d", "commandLine": "x", "runAnotherProgramFirst": {"program": "e"}},
                {"name": "e", "commandLine": "x", "runAnotherProgramFirst": {"program": "d"}}]}),
        )
        .ad("a", json!({"package": "P", "program": "a"}))
        .ad("b", json!({"package": "P", "program": "b"}))
        .ad("c", json!({"package": "P", "program": "c"}))
        .ad("d", json!({"package": "P", "program": "d"}));
    let site = site.policy();
    let p = machine_policy(&site, &xp(), &["a", "b", "c", "d"]);
    assert!(p.assignments.is_empty() && p.programs.is_empty());
    let server = machine(&[], Some("x86"), Some("5.2"));
    assert_eq!(
        names(&machine_policy(&site, &server, &["a", "b", "c", "d"])),
        ["b"]
    );
}

#[test]
fn settings_are_resolved_to_wire_values() {
    let site = Site::new()
        .package(
            "P",
            json!({"programs": [{"name": "x", "commandLine": "x",
                "maxRunTime": "1h30m", "estimatedDiskSpace": "50MB", "driveMode": "specificDriveLetter",
                "driveLetter": "z", "removal": {"uninstallKey": "{GUID}"}, "expedited": true}]}),
        )
        .ad(
            "A",
            json!({"package": "P", "program": "x", "availableAfter": "2026-11-24T03:00:00+01:00",
                   "expiresAt": "2026-12-01T00:00:00",
                   "schedule": [{"start": "2026-11-25T02:00:00Z", "every": "7d"}, {"event": "logon"}]}),
        );
    let p = machine_policy(&site.policy(), &xp(), &["A"]);
    let a = &p.assignments[0];
    assert!(a.mandatory);
    assert_eq!(a.available_after.as_deref(), Some("2026-11-24T02:00:00Z"));
    assert_eq!(a.expires_at.as_deref(), Some("2026-12-01T00:00:00"));
    assert_eq!(a.schedule[0].every_seconds, Some(7 * 86400));
    assert_eq!(a.schedule[1].event, Some(AssignmentEvent::Logon));
    assert_eq!(a.program.max_run_time_seconds, 5400);
    assert_eq!(a.program.estimated_disk_space_bytes, Some(50 << 20));
    assert_eq!(a.program.drive_letter.as_deref(), Some("Z"));
    assert_eq!(a.program.removal.as_ref().unwrap().uninstall_key, "{GUID}");
    // Without a site: no site code, default client settings.
    let mut bare = Site::new();
    bare.desired.site = None;
    let p = machine_policy(&bare.policy(), &xp(), &[]);
    assert_eq!(p.site_code, None);
    assert_eq!(p.client.polling_interval_seconds, 3600);
}

#[test]
fn the_hash_is_stable_and_round_trips() {
    let site = basic();
    let a = machine_policy(&site.policy(), &xp(), &["Office to all"]);
    let b = machine_policy(
        &basic().policy(),
        &xp(),
        &["Office to all", "Office to all"],
    );
    assert_eq!(a.hash(), b.hash());
    assert!(a.hash().starts_with("sha256:") && a.hash().len() == 7 + 64);
    let back: MachinePolicy = serde_json::from_slice(&a.to_json()).unwrap();
    assert_eq!(back, a);
    assert_eq!(back.hash(), a.hash());
    let other = machine_policy(&site.policy(), &xp(), &[]);
    assert_ne!(other.hash(), a.hash());
}

#[test]
fn versions_advance_only_when_the_hash_changes() {
    assert_eq!(next_version(None, "h1"), 1);
    assert_eq!(next_version(Some((4, "h1")), "h1"), 4);
    assert_eq!(next_version(Some((4, "h1")), "h2"), 5);
    assert_eq!(next_version(Some((u64::MAX, "h1")), "h2"), u64::MAX);
}

#[test]
fn diff_names_added_removed_and_changed_assignments() {
    let old_site = basic()
        .ad("Gone", json!({"package": "Office", "program": "Install"}))
        .ad("Same", json!({"package": "Office", "program": "Install"}));
    let new_site = Site::new()
        .dp("dp-hq", json!({"boundaries": ["10.1.0.0/16"]}))
        .package(
            "Office",
            json!({"source": "pkgs/office", "distributionPoints": ["dp-hq"],
                   "programs": [{"name": "Install", "commandLine": "setup.exe /q"}]}),
        )
        .ad(
            "Office to all",
            json!({"package": "Office", "program": "Install"}),
        )
        .ad(
            "New",
            json!({"package": "Office", "program": "Install", "priority": "high"}),
        );
    let all = ["Office to all", "Gone", "New", "Same"];
    let old = machine_policy(&old_site.policy(), &xp(), &all);
    let new = machine_policy(&new_site.policy(), &xp(), &all);
    let d = diff(&old, &new);
    assert_eq!(d.added, ["New"]);
    assert_eq!(d.removed, ["Gone", "Same"]);
    // The branch DP left the package.
    assert_eq!(d.changed, ["Office to all"]);
    assert!(diff(&new, &new).is_empty());
}

#[test]
fn a_run_first_change_changes_the_dependent_assignment() {
    let site = |cmd: &str| {
        Site::new()
            .package(
                "P",
                json!({"programs": [
                    {"name": "base", "commandLine": cmd},
                    {"name": "app", "commandLine": "app", "runAnotherProgramFirst": {"program": "base"}}]}),
            )
            .ad("app", json!({"package": "P", "program": "app"}))
            .policy()
    };
    let old = machine_policy(&site("v1"), &xp(), &["app"]);
    let new = machine_policy(&site("v2"), &xp(), &["app"]);
    assert_eq!(old.assignments, new.assignments);
    assert_eq!(diff(&old, &new).changed, ["app"]);
}

#[test]
fn blast_radius_counts_machines_per_advertisement() {
    let old_site = basic().policy();
    let new_site = basic()
        .ad("Extra", json!({"package": "Office", "program": "Install"}))
        .policy();
    let machines: Vec<Machine> = (0..8)
        .map(|i| {
            let mut m = xp();
            m.name = format!("WKS{i:02}");
            m
        })
        .collect();
    let old: Vec<PolicyDigest> = machines
        .iter()
        .map(|m| machine_policy(&old_site, m, &["Office to all"]).digest())
        .collect();
    let new: Vec<PolicyDigest> = machines
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let ads: &[&str] = if i % 2 == 0 {
                &["Office to all", "Extra"]
            } else if i == 7 {
                &[]
            } else {
                &["Office to all"]
            };
            machine_policy(&new_site, m, ads).digest()
        })
        .collect();
    // WKS07 was removed from inventory; a new machine appears.
    let newcomer = machine_policy(&new_site, &xp(), &["Extra"]).digest();
    let r = blast_radius(
        machines.iter().map(|m| m.name.as_str()).zip(old.iter()),
        machines[..7]
            .iter()
            .map(|m| m.name.as_str())
            .zip(new.iter())
            .chain([("NEW01", &newcomer)]),
    );
    assert_eq!(r.machines, 8);
    assert_eq!(r.machines_changed, 4 + 1 + 1);
    let extra = &r.assignments_added["Extra"];
    assert_eq!(extra.machines, 5);
    assert_eq!(extra.sample, ["NEW01", "WKS00", "WKS02", "WKS04", "WKS06"]);
    assert_eq!(r.assignments_removed["Office to all"].machines, 1);
    assert_eq!(r.assignments_removed["Office to all"].sample, ["WKS07"]);
    assert!(r.assignments_changed.is_empty());
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["assignmentsAdded"]["Extra"]["machines"], 5);
}

#[test]
fn samples_keep_the_smallest_names() {
    let mut impact = Impact::default();
    for name in ["m9", "m3", "m7", "m1", "m8", "m2", "m5", "m0"] {
        impact.add(name);
    }
    assert_eq!(impact.machines, 8);
    assert_eq!(impact.sample, ["m0", "m1", "m2", "m3", "m5"]);
}

#[test]
fn all_policies_matches_machine_policy_and_ignores_strays() {
    let site = basic()
        .ad(
            "Second",
            json!({"package": "Office", "program": "Install", "priority": "low"}),
        )
        .ad("Unknown target", json!({"package": "Gone", "program": "x"}));
    let policy = site.policy();
    let machines = [
        (7u32, xp()),
        (3, machine(&[[10, 2, 0, 1]], None, None)),
        (9, xp()),
    ];
    let mut targets = BTreeMap::new();
    targets.insert(
        "Office to all".to_string(),
        RoaringBitmap::from_iter([3u32, 7, 100]),
    );
    targets.insert("Second".to_string(), RoaringBitmap::from_iter([7u32]));
    targets.insert("Not declared".to_string(), RoaringBitmap::from_iter([9u32]));
    targets.insert(
        "Unknown target".to_string(),
        RoaringBitmap::from_iter([9u32]),
    );
    let got = all_policies(&policy, machines.iter().map(|(i, m)| (*i, m)), &targets);
    let ids: Vec<u32> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [7, 3, 9]);
    let expect = |m: &Machine, ads: &[&str]| machine_policy(&policy, m, ads).digest();
    assert_eq!(
        got[0].1,
        expect(&machines[0].1, &["Office to all", "Second"])
    );
    assert_eq!(got[1].1, expect(&machines[1].1, &["Office to all"]));
    assert_eq!(got[2].1, expect(&machines[2].1, &[]));
}

// ---------------------------------------------------------------------------
// The documented example stays true.

/// The example site of `docs/policy.md`.
fn example() -> (Site, Machine) {
    let site = Site::new()
        .dp("dp-hq", json!({"url": "http://dp-hq.lab.example:8080", "boundaries": ["10.1.0.0/16"]}))
        .dp("dp-branch", json!({"url": "http://dp-branch.lab.example:8080", "boundaries": ["10.2.0.0/16"]}))
        .package(
            "Windows XP SP3",
            json!({"source": "packages/xpsp3", "distributionPoints": ["dp-hq", "dp-branch"],
                   "programs": [
                       {"name": "Install", "commandLine": "WindowsXP-KB936929-SP3-x86-ENU.exe /quiet /norestart",
                        "comment": "Installs Service Pack 3", "runMode": "hidden", "afterRunning": "restart",
                        "maxRunTime": "2h", "estimatedDiskSpace": "900MB", "canRun": "whetherOrNotUserLoggedOn",
                        "runWith": "administrativeRights", "platforms": ["x86-windows-xp"],
                        "runAnotherProgramFirst": {"package": "Prerequisites", "program": "Check disk space"}}]}),
        )
        .package(
            "Prerequisites",
            json!({"programs": [{"name": "Check disk space", "commandLine": "cmd /c checkspace.cmd 900"}]}),
        )
        .ad(
            "XP SP3 (Pilot)",
            json!({"package": "Windows XP SP3", "program": "Install", "collection": "Pilot",
                   "availableAfter": "2026-11-24T02:00:00Z", "expiresAt": "2026-12-24T02:00:00Z",
                   "schedule": [{"start": "2026-11-25T02:00:00", "every": "1d"}, {"event": "logon"}],
                   "rerun": "ifFailed", "priority": "high", "remoteDistributionPoint": "doNotRun"}),
        );
    let mut m = xp();
    m.os.os_type = Some("workstation".into());
    (site, m)
}

fn example_json() -> String {
    let (site, m) = example();
    let policy = machine_policy(&site.policy(), &m, &["XP SP3 (Pilot)"]);
    let mut out = serde_json::to_string_pretty(&policy).unwrap();
    out.push('\n');
    out
}

/// `docs/policy.md` embeds `example_json()` between markers;
/// `UPDATE_EXPECT=1` rewrites it.
#[test]
fn the_documented_example_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/policy.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let (begin, end) = (
        "<!-- example:begin -->\n```json\n",
        "```\n<!-- example:end -->",
    );
    let start = doc.find(begin).expect("begin marker") + begin.len();
    let stop = doc.find(end).expect("end marker");
    let expected = example_json();
    if doc[start..stop] != expected {
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            let updated = format!("{}{}{}", &doc[..start], expected, &doc[stop..]);
            std::fs::write(path, updated).unwrap();
        } else {
            panic!("docs/policy.md's example is stale; run with UPDATE_EXPECT=1");
        }
    }
}

// ---------------------------------------------------------------------------
// Oracle: a deliberately naive reference, straight from the Desired.

fn naive_platforms(m: &Machine) -> Vec<Platform> {
    let arch = m.architecture.clone().unwrap_or_default().to_lowercase();
    let version = m.os.version.clone().unwrap_or_default();
    let parts: Vec<&str> = version.split('.').collect();
    if parts.len() < 2 {
        return vec![];
    }
    let key = format!("{arch} {}.{}", parts[0], parts[1]);
    let ty = m.os.os_type.clone().unwrap_or_default();
    match key.as_str() {
        "x86 5.0" => vec![Platform::X86Windows2000],
        "x86 5.1" => vec![Platform::X86WindowsXp],
        "x86 5.2" => vec![Platform::X86WindowsServer2003],
        "x64 5.2" if ty == "workstation" => vec![Platform::X64WindowsXp],
        "x64 5.2" if ty == "server" || ty == "domainController" => {
            vec![Platform::X64WindowsServer2003]
        }
        "x64 5.2" => vec![Platform::X64WindowsXp, Platform::X64WindowsServer2003],
        "ia64 5.2" => vec![Platform::Ia64WindowsServer2003],
        _ => vec![],
    }
}

fn naive_program(
    site: &Site,
    m: &Machine,
    package: &str,
    program: &str,
) -> Option<(PolicyProgram, Option<(String, String)>)> {
    let pkg = site.desired.packages.get(package)?;
    let prog = pkg.spec.programs.iter().find(|p| p.name == program)?;
    if prog.disabled {
        return None;
    }
    let update = site.installs.get(package).and_then(|p| p.get(program));
    let candidates = naive_platforms(m);
    if !prog.platforms.is_empty()
        && (candidates.is_empty() || !candidates.iter().all(|c| prog.platforms.contains(c)))
    {
        return None;
    }
    let content = match &pkg.spec.source {
        None => None,
        Some(_) => {
            let c = site.content.get(package)?;
            Some(PolicyContent {
                package_id: crate::dp::library::package_id(package),
                version: c.version.clone(),
                files: c.files as u64,
                bytes: c.bytes,
            })
        }
    };
    let mut dps = Vec::new();
    if content.is_some() {
        for (name, dp) in &site.desired.distribution_points {
            if !dp.spec.enabled || !pkg.spec.distribution_points.contains(name) {
                continue;
            }
            let mut local = dp.spec.boundaries.is_empty();
            for b in &dp.spec.boundaries {
                let net: Ipv4Net = b.parse().unwrap();
                for a in &m.ip.addresses {
                    if net.contains(*a) {
                        local = true;
                    }
                }
            }
            dps.push(PolicyDistributionPoint {
                name: name.clone(),
                url: dp.spec.url.clone(),
                local,
            });
        }
    }
    dps.sort_by_key(|d| (!d.local, d.name.clone()));
    let first = prog.run_another_program_first.as_ref().map(|f| RunFirst {
        package: f.package.clone().unwrap_or(package.to_string()),
        program: f.program.clone(),
        always_run: f.always_run,
    });
    let next = first
        .as_ref()
        .map(|f| (f.package.clone(), f.program.clone()));
    let max = match &prog.max_run_time {
        Some(d) => crate::units::parse_duration(d.as_str()).unwrap().as_secs(),
        None => 43200,
    };
    Some((
        PolicyProgram {
            package: package.into(),
            program: program.into(),
            command_line: prog.command_line.clone(),
            comment: prog.comment.clone(),
            run_mode: prog.run_mode,
            after_running: prog.after_running,
            max_run_time_seconds: max,
            estimated_disk_space_bytes: None,
            can_run: prog.can_run,
            run_with: prog.run_with,
            allow_user_interaction: prog.allow_user_interaction,
            drive_mode: prog.drive_mode,
            drive_letter: prog.drive_letter.clone(),
            reconnect_at_logon: prog.reconnect_at_logon,
            suppress_notifications: prog.suppress_notifications,
            expedited: prog.expedited,
            removal: None,
            run_first: first,
            content,
            distribution_points: dps,
            scan: prog.scan.as_ref().map(|s| crate::policy::PolicyScan {
                catalog: s.catalog.clone(),
                catalog_type: s.catalog_type,
            }),
            install_agent: update.map(|u| u.install_agent.clone()),
            notification: update.map(|u| u.notification.clone()),
            notice: update.and_then(|u| u.notice.clone()),
        },
        next,
    ))
}

fn naive_policy(site: &Site, m: &Machine, targeted: &[&str]) -> MachinePolicy {
    let mut assignments = Vec::new();
    let mut programs: Vec<PolicyProgram> = Vec::new();
    'ads: for (name, ad) in &site.desired.advertisements {
        if !targeted.contains(&name.as_str()) {
            continue;
        }
        let Some((program, mut next)) = naive_program(site, m, &ad.spec.package, &ad.spec.program)
        else {
            continue;
        };
        let mut chain: Vec<PolicyProgram> = Vec::new();
        while let Some((package, prog)) = next {
            if (package == ad.spec.package && prog == ad.spec.program)
                || chain
                    .iter()
                    .any(|c| c.package == package && c.program == prog)
            {
                continue 'ads;
            }
            let Some((dep, after)) = naive_program(site, m, &package, &prog) else {
                continue 'ads;
            };
            chain.push(dep);
            next = after;
        }
        for dep in chain {
            if !programs.contains(&dep) {
                programs.push(dep);
            }
        }
        assignments.push(PolicyAssignment {
            advertisement: name.clone(),
            mandatory: !ad.spec.schedule.is_empty(),
            available_after: None,
            expires_at: None,
            schedule: ad
                .spec
                .schedule
                .iter()
                .map(|s| PolicySchedule {
                    start: None,
                    every_seconds: None,
                    event: s.event,
                })
                .collect(),
            rerun: ad.spec.rerun,
            allow_users_to_run_independently: ad.spec.allow_users_to_run_independently,
            mandatory_over_slow_links: ad.spec.mandatory_over_slow_links,
            priority: ad.spec.priority,
            local_distribution_point: ad.spec.local_distribution_point,
            remote_distribution_point: ad.spec.remote_distribution_point,
            program,
        });
    }
    programs.sort_by(|a, b| (&a.package, &a.program).cmp(&(&b.package, &b.program)));
    MachinePolicy {
        format: "patchops-policy/v1".into(),
        site_code: site.desired.site.as_ref().map(|s| s.spec.site_code.clone()),
        client: ClientSettings {
            polling_interval_seconds: 3600,
            jitter_seconds: 300,
            heartbeat_interval_seconds: 86400,
        },
        assignments,
        programs,
    }
}

// Random small sites. The generator keeps to what validation accepts for
// the fields the oracle does not re-derive (times, sizes: left out), and
// freely produces what validation would refuse elsewhere (dangling
// references, run-first cycles) since policy must cope with both.

const BOUNDARIES: [&str; 4] = [
    "10.1.0.0/16",
    "10.2.0.0/16",
    "10.1.2.0/24",
    "192.168.0.0/24",
];
const ADDRESSES: [[u8; 4]; 4] = [
    [10, 1, 2, 3],
    [10, 2, 0, 5],
    [192, 168, 0, 9],
    [172, 16, 0, 1],
];
const ARCHES: [Option<&str>; 4] = [None, Some("x86"), Some("x64"), Some("ia64")];
const VERSIONS: [Option<&str>; 5] = [
    None,
    Some("5.0.2195"),
    Some("5.1.2600"),
    Some("5.2.3790"),
    Some("6.0"),
];
const TYPES: [Option<&str>; 3] = [None, Some("workstation"), Some("server")];
const PLATFORM_NAMES: [&str; 6] = [
    "x86-windows-2000",
    "x86-windows-xp",
    "x86-windows-server-2003",
    "x64-windows-xp",
    "x64-windows-server-2003",
    "ia64-windows-server-2003",
];

/// A small deterministic generator, seeded by proptest.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn subset<T: Clone>(&mut self, items: &[T], percent: u64) -> Vec<T> {
        items
            .iter()
            .filter(|_| self.chance(percent))
            .cloned()
            .collect()
    }
}

fn random_site(g: &mut Gen) -> Site {
    let mut site = if g.chance(80) {
        Site::new()
    } else {
        Site::default()
    };
    let dps = g.below(4);
    for i in 0..dps {
        site = site.dp(
            &format!("dp{i}"),
            json!({"boundaries": g.subset(&BOUNDARIES, 25), "enabled": g.chance(80)}),
        );
    }
    let dp_names: Vec<String> = (0..=dps).map(|i| format!("dp{i}")).collect();
    let packages = 1 + g.below(4);
    for i in 0..packages {
        let programs: Vec<Value> = (0..1 + g.below(3))
            .map(|j| {
                let mut p = json!({"name": format!("p{j}"), "commandLine": format!("cmd {i} {j}"),
                    "disabled": g.chance(15), "expedited": g.chance(30),
                    "runMode": (["normal", "hidden"][g.below(2)]),
                    "platforms": if g.chance(40) { g.subset(&PLATFORM_NAMES, 40) } else { vec![] }});
                if g.chance(30) {
                    p["maxRunTime"] = json!((["30m", "2h", "1d"][g.below(3)]));
                }
                if g.chance(40) {
                    let mut first = json!({"program": format!("p{}", g.below(3)), "alwaysRun": g.chance(50)});
                    if g.chance(60) {
                        first["package"] = json!(format!("pkg{}", g.below(packages + 1)));
                    }
                    p["runAnotherProgramFirst"] = first;
                }
                p
            })
            .collect();
        let mut spec = json!({"distributionPoints": g.subset(&dp_names, 50), "programs": programs});
        if g.chance(70) {
            spec["source"] = json!(format!("src/{i}"));
            spec["content"] = json!(g.chance(85));
        }
        site = site.package(&format!("pkg{i}"), spec);
    }
    for i in 0..g.below(7) {
        let schedule: Vec<Value> = (0..g.below(3))
            .map(|_| json!({"event": (["logon", "logoff", "asSoonAsPossible"][g.below(3)])}))
            .collect();
        site = site.ad(
            &format!("ad{i}"),
            json!({"package": format!("pkg{}", g.below(packages + 1)),
                   "program": format!("p{}", g.below(3)), "schedule": schedule,
                   "rerun": (["never", "always", "ifFailed"][g.below(3)]),
                   "priority": (["low", "medium", "high"][g.below(3)]),
                   "mandatoryOverSlowLinks": g.chance(50),
                   "remoteDistributionPoint": (["doNotRun", "downloadAndRun"][g.below(2)])}),
        );
    }
    site
}

fn random_machine(g: &mut Gen, i: usize) -> Machine {
    let mut m = machine(
        &g.subset(&ADDRESSES, 35),
        ARCHES[g.below(ARCHES.len())],
        VERSIONS[g.below(VERSIONS.len())],
    );
    m.name = format!("M{i}");
    m.os.os_type = TYPES[g.below(TYPES.len())].map(String::from);
    m
}

/// The generator reaches the cases the oracle is for.
#[test]
fn random_sites_cover_the_interesting_cases() {
    let (mut assignments, mut programs, mut local, mut remote, mut restricted) = (0, 0, 0, 0, 0);
    for seed in 0..300 {
        let mut g = Gen(seed);
        let site = random_site(&mut g);
        let policy = site.policy();
        let all: Vec<&str> = site
            .desired
            .advertisements
            .keys()
            .map(String::as_str)
            .collect();
        for i in 0..4 {
            let p = machine_policy(&policy, &random_machine(&mut g, i), &all);
            assignments += p.assignments.len();
            programs += p.programs.len();
            for a in &p.assignments {
                local += a
                    .program
                    .distribution_points
                    .iter()
                    .filter(|d| d.local)
                    .count();
                remote += a
                    .program
                    .distribution_points
                    .iter()
                    .filter(|d| !d.local)
                    .count();
            }
            restricted += p
                .assignments
                .iter()
                .filter(|a| {
                    let (package, program) = (&a.program.package, &a.program.program);
                    site.desired.packages[package]
                        .spec
                        .programs
                        .iter()
                        .any(|q| &q.name == program && !q.platforms.is_empty())
                })
                .count();
        }
    }
    for (what, n) in [
        ("assignments", assignments),
        ("run-first programs", programs),
        ("local DPs", local),
        ("remote DPs", remote),
        ("platform-restricted assignments", restricted),
    ] {
        assert!(n >= 20, "only {n} {what}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn machine_policy_matches_the_naive_reference(seed in any::<u64>()) {
        let mut g = Gen(seed);
        let site = random_site(&mut g);
        let policy = site.policy();
        let ad_names: Vec<String> = site.desired.advertisements.keys().cloned().chain(["stray".to_string()]).collect();
        let machines: Vec<Machine> = (0..6).map(|i| random_machine(&mut g, i)).collect();
        let mut targets: BTreeMap<String, RoaringBitmap> = BTreeMap::new();
        let mut targeted: Vec<Vec<&str>> = Vec::new();
        for (id, m) in machines.iter().enumerate() {
            let mine: Vec<&str> = ad_names.iter().map(String::as_str).filter(|_| g.chance(60)).collect();
            for name in &mine {
                targets.entry(name.to_string()).or_default().insert(id as u32 * 3);
            }
            let got = machine_policy(&policy, m, &mine);
            let want = naive_policy(&site, m, &mine);
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(got.hash(), want.hash());
            targeted.push(mine);
        }
        // Bulk: same digests, in the order given.
        let bulk = all_policies(&policy, machines.iter().enumerate().map(|(i, m)| (i as u32 * 3, m)), &targets);
        prop_assert_eq!(bulk.len(), machines.len());
        for ((id, digest), (i, m)) in bulk.iter().zip(machines.iter().enumerate()) {
            prop_assert_eq!(*id, i as u32 * 3);
            prop_assert_eq!(digest, &naive_policy(&site, m, &targeted[i]).digest());
        }
    }

    #[test]
    fn unrelated_advertisements_do_not_change_a_machines_hash(seed in any::<u64>()) {
        let mut g = Gen(seed);
        let site = random_site(&mut g);
        let m = random_machine(&mut g, 0);
        let owned: Vec<String> = site.desired.advertisements.keys().filter(|_| g.chance(50)).cloned().collect();
        let mine: Vec<&str> = owned.iter().map(String::as_str).collect();
        let before = machine_policy(&site.policy(), &m, &mine).hash();
        // Same inputs, same hash.
        prop_assert_eq!(&before, &machine_policy(&site.policy(), &m, &mine).hash());
        // Change every advertisement that does not target the machine, and add one.
        let mut changed = site;
        for (name, ad) in changed.desired.advertisements.iter_mut() {
            if !mine.contains(&name.as_str()) {
                ad.spec.priority = Priority::High;
                ad.spec.program = "p0".into();
                ad.spec.schedule.clear();
            }
        }
        let changed = changed.ad("zz-new", json!({"package": "pkg0", "program": "p0"}));
        prop_assert_eq!(before, machine_policy(&changed.policy(), &m, &mine).hash());
    }
}
