//! Names between objects: every reference must name an object that exists
//! (a declared one, or a built-in collection), and collections and programs
//! may not depend on themselves through a cycle.

use std::collections::{BTreeMap, BTreeSet};

use crate::diagnostic::{Diagnostic, Severity};
use crate::load::SourceFile;
use crate::manifest::collection::MembershipRule;
use crate::manifest::{Kind, Manifest, Spec};
use crate::model::{Desired, BUILTIN_COLLECTIONS};
use crate::suggest::did_you_mean;
use crate::yaml::FieldPath;

use super::{locator, Entry, Locator};

struct Refs<'a, 'b> {
    desired: &'a Desired,
    declared: &'a BTreeSet<(Kind, String)>,
    at: &'a Locator<'b>,
    out: &'a mut Vec<Diagnostic>,
}

impl Refs<'_, '_> {
    fn missing(&mut self, path: &FieldPath, kind: &str, name: &str, candidates: Vec<&str>) {
        let help = did_you_mean(name, candidates.iter().copied())
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| {
                if candidates.is_empty() {
                    format!("no {kind} is declared")
                } else {
                    format!("declare a {kind} named `{name}`, or fix the name")
                }
            });
        self.out.push(
            self.at
                .at(
                    Severity::Error,
                    "dangling-reference",
                    path,
                    format!("no {kind} named `{name}`"),
                )
                .with_help(help),
        );
    }

    fn object(&mut self, path: &FieldPath, kind: Kind, name: &str) -> bool {
        if self.desired.contains(kind, name) {
            return true;
        }
        if self.declared.contains(&(kind, name.to_string())) {
            return false;
        }
        self.missing(path, &kind_words(kind), name, self.desired.names(kind));
        false
    }

    fn collection(&mut self, path: &FieldPath, name: &str) {
        if self.desired.has_collection(name)
            || self
                .declared
                .contains(&(Kind::Collection, name.to_string()))
        {
            return;
        }
        let mut candidates = self.desired.names(Kind::Collection);
        candidates.extend(BUILTIN_COLLECTIONS.iter().map(|b| b.name));
        self.missing(path, "collection", name, candidates);
    }

    fn program(&mut self, path: &FieldPath, package: &str, program: &str) {
        let Some(p) = self.desired.packages.get(package) else {
            return;
        };
        if p.spec.programs.iter().any(|x| x.name == program) {
            return;
        }
        let names: Vec<&str> = p.spec.programs.iter().map(|x| x.name.as_str()).collect();
        let help = did_you_mean(program, names.iter().copied())
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| {
                if names.is_empty() {
                    format!("package `{package}` has no programs")
                } else {
                    format!(
                        "programs of `{package}`: {}",
                        crate::suggest::one_of(names.iter().copied())
                    )
                }
            });
        self.out.push(
            self.at
                .at(
                    Severity::Error,
                    "dangling-reference",
                    path,
                    format!("package `{package}` has no program named `{program}`"),
                )
                .with_help(help),
        );
    }

    fn dps(&mut self, path: &FieldPath, names: &[String]) {
        for (i, dp) in names.iter().enumerate() {
            self.object(&path.index(i), Kind::DistributionPoint, dp);
        }
    }
}

fn kind_words(kind: Kind) -> String {
    match kind {
        Kind::DistributionPoint => "distribution point".into(),
        Kind::SyncHost => "sync host".into(),
        Kind::SoftwareUpdatePackage => "software update package".into(),
        other => other.as_str().to_lowercase(),
    }
}

pub(super) fn check(
    manifest: &Manifest,
    desired: &Desired,
    declared: &BTreeSet<(Kind, String)>,
    at: &Locator<'_>,
    out: &mut Vec<Diagnostic>,
) {
    let mut r = Refs {
        desired,
        declared,
        at,
        out,
    };
    let spec = FieldPath::root("spec");
    match &*manifest.spec {
        Spec::Site(_) | Spec::DistributionPoint(_) => {}
        Spec::Collection(s) => {
            if let Some(limit) = &s.limiting_collection {
                r.collection(&spec.key("limitingCollection"), limit);
            }
            for (i, rule) in s.membership.iter().enumerate() {
                let (key, names) = match rule {
                    MembershipRule::Include(n) => ("include", n),
                    MembershipRule::Exclude(n) => ("exclude", n),
                    _ => continue,
                };
                for (j, name) in names.iter().enumerate() {
                    r.collection(&spec.key("membership").index(i).key(key).index(j), name);
                }
            }
        }
        Spec::Package(s) => {
            r.dps(&spec.key("distributionPoints"), &s.distribution_points);
            for (i, program) in s.programs.iter().enumerate() {
                let Some(first) = &program.run_another_program_first else {
                    continue;
                };
                let path = spec.key("programs").index(i).key("runAnotherProgramFirst");
                let package = first.package.as_deref().unwrap_or(&manifest.metadata.name);
                if first.package.is_none() || r.object(&path.key("package"), Kind::Package, package)
                {
                    r.program(&path.key("program"), package, &first.program);
                }
            }
        }
        Spec::Advertisement(s) => {
            if r.object(&spec.key("package"), Kind::Package, &s.package) {
                r.program(&spec.key("program"), &s.package, &s.program);
            }
            r.collection(&spec.key("collection"), &s.collection);
        }
        Spec::SyncHost(s) => {
            for (i, catalog) in s.catalogs.iter().enumerate() {
                let path = spec.key("catalogs").index(i).key("package");
                if r.object(&path, Kind::Package, &catalog.package) {
                    let has_source = desired
                        .packages
                        .get(&catalog.package)
                        .is_some_and(|p| p.spec.source.is_some());
                    if !has_source {
                        r.out.push(
                            at.at(Severity::Error, "invalid-value", &path, format!("package `{}` has no `source` to receive the catalog", catalog.package))
                                .with_help("give the package a source directory; the catalog is written there and distributed with it"),
                        );
                    }
                }
            }
        }
        Spec::SoftwareUpdatePackage(s) => {
            let inv = spec.key("inventoryProgram");
            if r.object(
                &inv.key("package"),
                Kind::Package,
                &s.inventory_program.package,
            ) {
                r.program(
                    &inv.key("program"),
                    &s.inventory_program.package,
                    &s.inventory_program.program,
                );
            }
            r.dps(&spec.key("distributionPoints"), &s.distribution_points);
            if let Some(ad) = &s.advertisement {
                r.collection(&spec.key("advertisement").key("collection"), &ad.collection);
            }
            for (i, update) in s.updates.iter().enumerate() {
                if let Some(m) = &update.missing_in {
                    r.collection(
                        &spec
                            .key("updates")
                            .index(i)
                            .key("missingIn")
                            .key("collection"),
                        &m.collection,
                    );
                }
            }
        }
    }
}

/// Cycles among collections (through `include`, `exclude` and
/// `limitingCollection`) and among programs (through
/// `runAnotherProgramFirst`). Each cycle is reported once, at its
/// alphabetically first member.
pub(super) fn check_cycles(
    desired: &Desired,
    entries: &[Entry],
    files: &[SourceFile],
    out: &mut Vec<Diagnostic>,
) {
    let mut collections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, c) in &desired.collections {
        let mut next: Vec<String> = c.spec.limiting_collection.iter().cloned().collect();
        for rule in &c.spec.membership {
            if let MembershipRule::Include(n) | MembershipRule::Exclude(n) = rule {
                next.extend(n.iter().cloned());
            }
        }
        collections.insert(name.clone(), next);
    }
    let report = CycleReport {
        entries,
        files,
        kind: Kind::Collection,
        field: "membership",
    };
    for cycle in find_cycles(&collections) {
        report.push(&cycle, &cycle[0], "collections depend on themselves", "a collection cannot include, exclude or be limited by itself, directly or through others", out);
    }

    let program_id = |package: &str, program: &str| format!("{package} / {program}");
    let mut programs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, p) in &desired.packages {
        for program in &p.spec.programs {
            let next = program
                .run_another_program_first
                .iter()
                .map(|f| program_id(f.package.as_deref().unwrap_or(name), &f.program))
                .collect();
            programs.insert(program_id(name, &program.name), next);
        }
    }
    let report = CycleReport {
        entries,
        files,
        kind: Kind::Package,
        field: "programs",
    };
    for cycle in find_cycles(&programs) {
        let package = cycle[0]
            .split_once(" / ")
            .map_or(cycle[0].as_str(), |(package, _)| package);
        report.push(
            &cycle,
            package,
            "programs run each other first in a cycle",
            "break the chain of `runAnotherProgramFirst`",
            out,
        );
    }
}

/// Reports a cycle at a field of the manifest that declares its first member.
struct CycleReport<'a> {
    entries: &'a [Entry],
    files: &'a [SourceFile],
    kind: Kind,
    field: &'static str,
}

impl CycleReport<'_> {
    fn push(
        &self,
        cycle: &[String],
        owner: &str,
        what: &str,
        help: &str,
        out: &mut Vec<Diagnostic>,
    ) {
        let Some(entry) = self
            .entries
            .iter()
            .find(|e| e.manifest.kind == self.kind && e.manifest.metadata.name == owner)
        else {
            return;
        };
        let chain = cycle
            .iter()
            .chain(cycle.first())
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(" → ");
        let path = FieldPath::root("spec").key(self.field);
        out.push(
            locator(entry, self.files)
                .at_key(Severity::Error, "cycle", &path, format!("{what}: {chain}"))
                .with_help(help),
        );
    }
}

/// Every elementary cycle's members, each cycle once, rotated to start at
/// its smallest member. Edges to unknown nodes are ignored (they are
/// dangling references, reported elsewhere).
fn find_cycles(graph: &BTreeMap<String, Vec<String>>) -> Vec<Vec<String>> {
    // Iterative DFS with colours: the stack holds (node, next edge index).
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    let mut colour: BTreeMap<&str, Colour> =
        graph.keys().map(|k| (k.as_str(), Colour::White)).collect();
    let mut found: BTreeSet<Vec<String>> = BTreeSet::new();
    for start in graph.keys() {
        if colour[start.as_str()] != Colour::White {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        colour.insert(start, Colour::Grey);
        while let Some((node, edge)) = stack.last().copied() {
            let edges = &graph[node];
            if edge == edges.len() {
                colour.insert(node, Colour::Black);
                stack.pop();
                continue;
            }
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            let next = edges[edge].as_str();
            match colour.get(next).copied() {
                Some(Colour::White) => {
                    colour.insert(next, Colour::Grey);
                    stack.push((next, 0));
                }
                Some(Colour::Grey) => {
                    let from = stack.iter().position(|(n, _)| *n == next).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|(n, _)| n.to_string()).collect();
                    let min = cycle
                        .iter()
                        .enumerate()
                        .min_by(|a, b| a.1.cmp(b.1))
                        .map_or(0, |(i, _)| i);
                    cycle.rotate_left(min);
                    found.insert(cycle);
                }
                _ => {}
            }
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn finds_each_cycle_once() {
        let g = graph(&[
            ("a", &["b"]),
            ("b", &["c"]),
            ("c", &["a"]),
            ("d", &["d"]),
            ("e", &["a", "x"]),
        ]);
        assert_eq!(
            find_cycles(&g),
            vec![
                vec!["a".to_string(), "b".into(), "c".into()],
                vec!["d".to_string()]
            ]
        );
    }

    #[test]
    fn acyclic_graphs_have_none() {
        let g = graph(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &[])]);
        assert!(find_cycles(&g).is_empty());
    }
}
