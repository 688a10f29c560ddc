//! The applicability engine (pure): a catalog and one machine's scan facts
//! in, the machine's patch states out — one per (bulletin, product), with
//! the fields of SMS's `Win32_PatchState`. The rules are in
//! `docs/applicability.md`; in short:
//!
//! * a patch applies to a product the machine has when the machine's
//!   service pack is one the patch lists (any, when it lists none) and is
//!   not the patch's `FixedInSP` service pack;
//! * an applicable patch is installed when its detection data says so
//!   (file versions ≥ the catalog's, registry values present, Windows
//!   Installer patch code present); a patch without detection data is
//!   `unknown`, never installed;
//! * a missing patch superseded by an installed one is installed (by
//!   supersedence), transitively.
//!
//! No I/O: the CLI reads the files. [`Engine`] indexes a catalog once for
//! many machines; [`evaluate`] is the one-machine shorthand.

pub mod facts;
pub mod report;

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use serde::Serialize;

pub use facts::{parse_facts, FactsError, FactsFormat, ScanFacts};

use crate::catalog::{Catalog, CatalogKind, Detection, Patch};
use crate::query::compare_versions;

/// Whether the patch is on the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Installed,
    Missing,
    NotApplicable,
    /// The catalog's data cannot decide: check manually.
    Unknown,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Installed,
        Status::Missing,
        Status::NotApplicable,
        Status::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Installed => "installed",
            Status::Missing => "missing",
            Status::NotApplicable => "notApplicable",
            Status::Unknown => "unknown",
        }
    }

    /// The inverse of [`Status::as_str`].
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Which of two statuses of one product's patches decides: missing
    /// over unknown over installed.
    fn weight(self) -> u8 {
        match self {
            Status::Missing => 3,
            Status::Unknown => 2,
            Status::Installed => 1,
            Status::NotApplicable => 0,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Installed => "installed",
            Status::Missing => "missing",
            Status::NotApplicable => "not applicable",
            Status::Unknown => "unknown",
        })
    }
}

/// Whether installing the patch needs a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Reboot {
    Required,
    NotRequired,
    /// The catalog does not say.
    Unknown,
}

impl Reboot {
    fn of(p: Option<&Patch>) -> Reboot {
        match p.and_then(|p| p.reboot_required) {
            Some(true) => Reboot::Required,
            Some(false) => Reboot::NotRequired,
            None => Reboot::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reboot::Required => "required",
            Reboot::NotRequired => "notRequired",
            Reboot::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Reboot {
        match s {
            "required" => Reboot::Required,
            "notRequired" => Reboot::NotRequired,
            _ => Reboot::Unknown,
        }
    }
}

/// The scan agent that reports states from a catalog of this kind.
pub fn scan_agent(kind: CatalogKind) -> &'static str {
    match kind {
        CatalogKind::Security => "patchops-mssecure",
        CatalogKind::Office => "patchops-office",
    }
}

/// One bulletin's state for one product on one machine (SMS's
/// `Win32_PatchState`). Borrows the catalog's text: evaluating thousands of
/// machines copies no catalog string.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchState<'c> {
    pub bulletin: &'c str,
    pub q_numbers: &'c [String],
    pub title: Option<&'c str>,
    /// The affected product the machine has; `None` when it has none of
    /// the bulletin's products (then the state is `notApplicable`).
    pub product: Option<&'c str>,
    pub status: Status,
    pub reboot: Reboot,
    pub scan_agent: &'static str,
    pub scan_time: jiff::Timestamp,
    /// The patch that decided the state, when one did.
    pub patch: Option<&'c str>,
    /// Why, in a few words.
    pub reason: Cow<'static, str>,
    /// Bulletins superseding this one (from the catalog).
    pub superseded_by: &'c [String],
    /// `false` for bulletins the catalog marks unsupported (they are never
    /// reported installed or missing).
    pub supported: bool,
}

/// Counts of states by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub installed: u64,
    pub missing: u64,
    pub not_applicable: u64,
    pub unknown: u64,
}

impl Counts {
    pub fn add(&mut self, s: Status) {
        match s {
            Status::Installed => self.installed += 1,
            Status::Missing => self.missing += 1,
            Status::NotApplicable => self.not_applicable += 1,
            Status::Unknown => self.unknown += 1,
        }
    }

    pub fn of(states: &[PatchState]) -> Counts {
        let mut c = Counts::default();
        for s in states {
            c.add(s.status);
        }
        c
    }

    /// installed / (installed + missing), in percent; `None` when neither.
    pub fn percent_compliant(&self) -> Option<f64> {
        let base = self.installed + self.missing;
        (base > 0).then(|| 100.0 * self.installed as f64 / base as f64)
    }
}

/// Evaluates one machine against a catalog.
pub fn evaluate<'c>(
    catalog: &'c Catalog,
    facts: &ScanFacts,
    scan_time: jiff::Timestamp,
) -> Vec<PatchState<'c>> {
    Engine::new(catalog).evaluate(facts, scan_time)
}

/// How a file check treats a file absent from the machine (the catalog's
/// command IDs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileCmd {
    /// `c` change, `a` add (and no command): must be there.
    Required,
    /// `e`: change if it exists, ignore if not.
    IfExists,
    /// `d`: the patch deletes it.
    Delete,
    /// `u`: unsupported; not checked.
    Skip,
}

struct FileRule {
    key: String,
    shown: String,
    version: Option<String>,
    cmd: FileCmd,
}

struct RegRule {
    key: (String, String),
    shown: String,
    expected: Option<String>,
}

struct PatchRules {
    files: Vec<FileRule>,
    registry: Vec<RegRule>,
    msi_patch: Option<String>,
}

/// A catalog indexed for evaluating many machines.
pub struct Engine<'c> {
    catalog: &'c Catalog,
    /// Lowercased product names and IDs → product ID.
    products: HashMap<String, &'c str>,
    /// Lowercased MSI product codes → product ID.
    product_codes: HashMap<String, &'c str>,
    /// Lowercased service-pack names and IDs → service-pack ID.
    service_packs: HashMap<String, &'c str>,
    /// Per bulletin, per patch.
    rules: Vec<Vec<PatchRules>>,
    /// Uppercase bulletin ID → index.
    bulletin_index: HashMap<String, usize>,
    /// Per bulletin, the global index of its first patch (and one past
    /// the last bulletin's patches at the end).
    patch_base: Vec<usize>,
    /// Per global patch index, the global index of its first affected entry.
    affected_base: Vec<usize>,
    affected_count: usize,
    agent: &'static str,
}

/// What the machine reports for one catalog product.
#[derive(Debug, Clone, Copy)]
enum MachineSp<'a> {
    NotReported,
    Known(&'a str),
    NotInCatalog(&'a str),
}

/// A patch's detection outcome on the machine.
#[derive(Debug, Clone)]
struct Det {
    status: Status,
    reason: String,
    /// Files detection only: no check applied (every file is
    /// "change if exists" and none exists); registry data then decides.
    vacuous: bool,
}

enum Applies {
    Yes,
    No(String),
    Unknown(String),
}

impl<'c> Engine<'c> {
    pub fn new(catalog: &'c Catalog) -> Engine<'c> {
        let mut products = HashMap::new();
        let mut product_codes = HashMap::new();
        for (id, p) in &catalog.products {
            products.insert(id.trim().to_lowercase(), id.as_str());
            products
                .entry(p.name.trim().to_lowercase())
                .or_insert(id.as_str());
            for code in &p.product_codes {
                product_codes.insert(code.trim().to_lowercase(), id.as_str());
            }
        }
        let mut service_packs = HashMap::new();
        for (id, sp) in &catalog.service_packs {
            service_packs.insert(id.trim().to_lowercase(), id.as_str());
            service_packs
                .entry(sp.name.trim().to_lowercase())
                .or_insert(id.as_str());
        }
        let rules = catalog
            .bulletins
            .iter()
            .map(|b| b.patches.iter().map(rules_of).collect())
            .collect();
        let bulletin_index = catalog
            .bulletins
            .iter()
            .enumerate()
            .map(|(i, b)| (b.id.to_uppercase(), i))
            .rev() // the first of duplicate IDs wins
            .collect();
        let mut patch_base = Vec::with_capacity(catalog.bulletins.len() + 1);
        let mut affected_base = Vec::new();
        let (mut patches, mut affected_count) = (0, 0);
        for b in &catalog.bulletins {
            patch_base.push(patches);
            for p in &b.patches {
                affected_base.push(affected_count);
                affected_count += p.affected.len();
                patches += 1;
            }
        }
        patch_base.push(patches);
        Engine {
            catalog,
            patch_base,
            affected_base,
            affected_count,
            products,
            product_codes,
            service_packs,
            rules,
            bulletin_index,
            agent: scan_agent(catalog.kind),
        }
    }

    /// The machine's patch states, in catalog order: per bulletin, one
    /// state per affected product the machine has, or one
    /// `notApplicable` state without product when it has none.
    pub fn evaluate(&self, facts: &ScanFacts, scan_time: jiff::Timestamp) -> Vec<PatchState<'c>> {
        let c = self.catalog;
        // The machine's products, by catalog product ID.
        let mut have: HashMap<&str, MachineSp<'_>> = HashMap::new();
        for p in &facts.products {
            let Some(&id) = self.products.get(&p.product.trim().to_lowercase()) else {
                continue;
            };
            let sp = match p.service_pack.as_deref().map(str::trim) {
                None | Some("") => MachineSp::NotReported,
                Some(s) => match self.service_packs.get(&s.to_lowercase()) {
                    Some(&sp) => MachineSp::Known(sp),
                    None => MachineSp::NotInCatalog(s),
                },
            };
            have.insert(id, sp);
        }
        for code in &facts.msi.products {
            if let Some(&id) = self.product_codes.get(&code.trim().to_lowercase()) {
                have.entry(id).or_insert(MachineSp::NotReported);
            }
        }
        let files: HashMap<String, Option<&str>> = facts
            .files
            .iter()
            .filter_map(|f| Some((file_key(&f.full_path()?), f.version.as_deref())))
            .collect();
        let registry: HashMap<(String, String), Option<&str>> = facts
            .registry
            .iter()
            .map(|r| (reg_key(&r.key, &r.value), r.data.as_deref()))
            .collect();
        let msi_patches: HashSet<String> = facts
            .msi
            .patches
            .iter()
            .map(|p| p.trim().to_lowercase())
            .collect();

        // Pass 1: applicability per (bulletin, patch, affected) and
        // detection of every patch that applies somewhere.
        let mut applies: Vec<Applies> = Vec::with_capacity(self.affected_count);
        let mut det: Vec<Option<Det>> =
            Vec::with_capacity(self.patch_base.last().copied().unwrap_or(0));
        for (bi, b) in c.bulletins.iter().enumerate() {
            for (pi, p) in b.patches.iter().enumerate() {
                let start = applies.len();
                applies.extend(
                    p.affected
                        .iter()
                        .map(|a| match have.get(a.product_id.as_str()) {
                            None => Applies::No(String::new()),
                            Some(&sp) => self.applies(a, sp),
                        }),
                );
                let d = applies[start..]
                    .iter()
                    .any(|x| matches!(x, Applies::Yes))
                    .then(|| detect(p, &self.rules[bi][pi], &files, &registry, &msi_patches));
                det.push(d);
            }
        }

        // Pass 2: supersedence, to a fixed point (chains are short).
        for _ in 0..16 {
            let mut changed = false;
            for (bi, b) in c.bulletins.iter().enumerate() {
                for (pi, p) in b.patches.iter().enumerate() {
                    let Some(sup) = &p.superseded_by else {
                        continue;
                    };
                    if det[self.patch_base[bi] + pi]
                        .as_ref()
                        .is_none_or(|d| d.status != Status::Missing)
                    {
                        continue;
                    }
                    let by = sup
                        .bulletins
                        .iter()
                        .find(|s| self.superseder_installed(&det, &s.bulletin_id, &s.patches));
                    if let Some(s) = by {
                        det[self.patch_base[bi] + pi] = Some(Det {
                            status: Status::Installed,
                            reason: format!("superseded by {}, which is installed", s.bulletin_id),
                            vacuous: false,
                        });
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }

        // Pass 3: one state per (bulletin, product).
        let mut out = Vec::with_capacity(c.bulletins.len());
        for (bi, b) in c.bulletins.iter().enumerate() {
            // Per product the machine has: the deciding candidate. Applicable
            // patches decide over the others; among them missing over
            // unknown over installed; the first of equals.
            let mut per: Vec<Candidate<'_>> = Vec::new();
            for (pi, p) in b.patches.iter().enumerate() {
                for (ai, a) in p.affected.iter().enumerate() {
                    if !have.contains_key(a.product_id.as_str()) {
                        continue;
                    }
                    let (applicable, status, reason) =
                        match &applies[self.affected_base[self.patch_base[bi] + pi] + ai] {
                            Applies::Yes => {
                                let d = det[self.patch_base[bi] + pi]
                                    .as_ref()
                                    .expect("detected when applicable");
                                if b.supported {
                                    (true, d.status, d.reason.clone())
                                } else {
                                    (
                                    true,
                                    Status::Unknown,
                                    "the catalog marks the bulletin unsupported: check manually"
                                        .to_string(),
                                )
                                }
                            }
                            Applies::No(r) => (false, Status::NotApplicable, r.clone()),
                            Applies::Unknown(r) => (false, Status::Unknown, r.clone()),
                        };
                    let cand = Candidate {
                        product_id: &a.product_id,
                        product: &a.product,
                        rank: (applicable, status.weight()),
                        status,
                        reason,
                        patch: pi,
                    };
                    match per.iter_mut().find(|e| e.product_id == a.product_id) {
                        None => per.push(cand),
                        Some(e) if cand.rank > e.rank => *e = cand,
                        Some(_) => {}
                    }
                }
            }
            if per.is_empty() {
                out.push(self.state(
                    b,
                    None,
                    Status::NotApplicable,
                    Cow::Borrowed("none of the affected products is installed"),
                    None,
                    scan_time,
                ));
            }
            for e in per {
                out.push(self.state(
                    b,
                    Some(e.product),
                    e.status,
                    Cow::Owned(e.reason),
                    Some(e.patch),
                    scan_time,
                ));
            }
        }
        out
    }

    fn state(
        &self,
        b: &'c crate::catalog::Bulletin,
        product: Option<&'c str>,
        status: Status,
        reason: Cow<'static, str>,
        patch: Option<usize>,
        scan_time: jiff::Timestamp,
    ) -> PatchState<'c> {
        let p = patch.and_then(|i| b.patches.get(i));
        PatchState {
            bulletin: &b.id,
            q_numbers: &b.q_numbers,
            title: b.title.as_deref(),
            product,
            status,
            reboot: Reboot::of(p),
            scan_agent: self.agent,
            scan_time,
            patch: p.map(|p| p.name.as_str()),
            reason,
            superseded_by: &b.superseded_by,
            supported: b.supported,
        }
    }

    /// Whether an affected entry applies to the machine's service pack.
    fn applies(&self, a: &crate::catalog::Affected, sp: MachineSp<'_>) -> Applies {
        let c = self.catalog;
        // FixedInSP is read as a ServicePackID first (see the docs);
        // "0" means no service pack fixes it.
        let fixed: Option<&str> = a
            .fixed_in_sp
            .as_ref()
            .filter(|f| f.raw != "0")
            .and_then(|f| {
                c.service_packs
                    .get_key_value(&f.raw)
                    .map(|(k, _)| k.as_str())
            });
        let sp_name = |id: &str| {
            c.service_packs
                .get(id)
                .map_or(id.to_string(), |s| s.name.clone())
        };
        match sp {
            MachineSp::Known(id) if fixed == Some(id) => {
                Applies::No(format!("fixed in {}, which is installed", sp_name(id)))
            }
            _ if a.service_packs.is_empty() => Applies::Yes,
            MachineSp::Known(id) => {
                if a.service_packs.iter().any(|s| s.id == id) {
                    Applies::Yes
                } else {
                    Applies::No(format!("{} is not an affected service pack", sp_name(id)))
                }
            }
            MachineSp::NotReported => {
                Applies::Unknown(format!("the service pack of {} is not reported", a.product))
            }
            MachineSp::NotInCatalog(s) => Applies::Unknown(format!(
                "service pack `{s}` of {} is not in the catalog",
                a.product
            )),
        }
    }

    /// Whether the superseding bulletin's patch is installed: one of the
    /// named patches (names compared without case), or — when none of the
    /// names is a patch of that bulletin (the catalog has such names) — any
    /// of its patches.
    fn superseder_installed(&self, det: &[Option<Det>], bulletin: &str, names: &[String]) -> bool {
        let Some(&bi) = self.bulletin_index.get(&bulletin.to_uppercase()) else {
            return false;
        };
        let b = &self.catalog.bulletins[bi];
        let installed = |pi: usize| {
            det[self.patch_base[bi] + pi]
                .as_ref()
                .is_some_and(|d| d.status == Status::Installed)
        };
        let named: Vec<usize> = b
            .patches
            .iter()
            .enumerate()
            .filter(|(_, p)| names.iter().any(|n| n.trim().eq_ignore_ascii_case(&p.name)))
            .map(|(i, _)| i)
            .collect();
        if named.is_empty() {
            (0..b.patches.len()).any(installed)
        } else {
            named.into_iter().any(installed)
        }
    }
}

struct Candidate<'a> {
    product_id: &'a str,
    product: &'a str,
    rank: (bool, u8),
    status: Status,
    reason: String,
    patch: usize,
}

fn rules_of(p: &Patch) -> PatchRules {
    let files = p
        .files
        .iter()
        .map(|f| {
            let shown = match &f.location {
                Some(l) => format!("{l}\\{}", f.name),
                None => f.name.clone(),
            };
            let cmd = match f
                .command
                .as_ref()
                .map(|c| c.id.to_ascii_lowercase())
                .as_deref()
            {
                Some("e") => FileCmd::IfExists,
                Some("d") => FileCmd::Delete,
                Some("u") => FileCmd::Skip,
                _ => FileCmd::Required,
            };
            FileRule {
                key: file_key(&shown),
                shown,
                version: f.version.as_deref().map(norm_version),
                cmd,
            }
        })
        .collect();
    let registry = p
        .registry
        .iter()
        .filter_map(|r| {
            let key = r.key.as_deref()?;
            Some(RegRule {
                key: reg_key(key, &r.value_name),
                shown: format!("{key}\\{}", r.value_name),
                expected: r.expected.as_deref().map(|e| e.trim().to_lowercase()),
            })
        })
        .collect();
    PatchRules {
        files,
        registry,
        msi_patch: p
            .msi
            .as_ref()
            .and_then(|m| m.patch_code.as_deref())
            .map(|c| c.trim().to_lowercase()),
    }
}

/// A file path as compared: lowercase, `\` separators, `%SystemRoot%`
/// read as `%windir%`, no doubled or trailing separators.
pub fn file_key(path: &str) -> String {
    let lower = path.trim().replace('/', "\\").to_lowercase();
    let lower = lower.replace("%systemroot%", "%windir%");
    let mut out = String::with_capacity(lower.len());
    for ch in lower.chars() {
        if ch == '\\' && out.ends_with('\\') {
            continue;
        }
        out.push(ch);
    }
    while out.ends_with('\\') {
        out.pop();
    }
    out
}

/// A registry key and value name as compared: lowercase, root keys
/// abbreviated (`HKEY_LOCAL_MACHINE` → `hklm`), no trailing `\`.
pub fn reg_key(key: &str, value: &str) -> (String, String) {
    let mut k = key.trim().trim_end_matches('\\').to_lowercase();
    for (long, short) in [
        ("hkey_local_machine", "hklm"),
        ("hkey_current_user", "hkcu"),
        ("hkey_classes_root", "hkcr"),
        ("hkey_users", "hku"),
    ] {
        if let Some(rest) = k.strip_prefix(long) {
            k = format!("{short}{rest}");
            break;
        }
    }
    (k, value.trim().to_lowercase())
}

/// Commas as dots, and only the first word (`9.0.4402 SR-1` → `9.0.4402`).
fn norm_version(v: &str) -> String {
    v.split_whitespace().next().unwrap_or("").replace(',', ".")
}

fn detect(
    p: &Patch,
    rules: &PatchRules,
    files: &HashMap<String, Option<&str>>,
    registry: &HashMap<(String, String), Option<&str>>,
    msi_patches: &HashSet<String>,
) -> Det {
    let det = |status, reason: String| Det {
        status,
        reason,
        vacuous: false,
    };
    match p.detection {
        Detection::None => det(
            Status::Unknown,
            "no detection data in the catalog: check manually".into(),
        ),
        Detection::Msi => match &rules.msi_patch {
            None => det(Status::Unknown, "no patch code in the catalog".into()),
            Some(code) if msi_patches.contains(code) => {
                det(Status::Installed, "patch code is installed".into())
            }
            Some(_) => det(Status::Missing, "patch code is not installed".into()),
        },
        Detection::Files => detect_files(rules, files),
        Detection::Registry => detect_registry(rules, registry),
        Detection::Both => {
            let f = detect_files(rules, files);
            let r = detect_registry(rules, registry);
            if f.vacuous {
                return r;
            }
            match (f.status, r.status) {
                (Status::Missing, _) => f,
                (_, Status::Missing) => r,
                (Status::Installed, Status::Installed) => {
                    det(Status::Installed, format!("{}; {}", f.reason, r.reason))
                }
                (Status::Unknown, _) => f,
                _ => r,
            }
        }
    }
}

fn detect_files(rules: &PatchRules, files: &HashMap<String, Option<&str>>) -> Det {
    let (mut ok, mut unverifiable) = (0usize, 0usize);
    let mut unknown: Option<String> = None;
    for f in &rules.files {
        if f.cmd == FileCmd::Skip {
            continue;
        }
        match (files.get(&f.key), f.cmd) {
            (None, FileCmd::IfExists) => {}
            (None, FileCmd::Delete) => ok += 1,
            (None, _) => {
                return Det {
                    status: Status::Missing,
                    reason: format!("{} not found", f.shown),
                    vacuous: false,
                }
            }
            (Some(_), FileCmd::Delete) => {
                return Det {
                    status: Status::Missing,
                    reason: format!("{} is still present", f.shown),
                    vacuous: false,
                }
            }
            (Some(have), _) => match (&f.version, have) {
                (None, _) => unverifiable += 1,
                (Some(_), None) => {
                    unknown.get_or_insert_with(|| format!("no version reported for {}", f.shown));
                }
                (Some(want), Some(have)) => {
                    if compare_versions(&norm_version(have), want) == Ordering::Less {
                        return Det {
                            status: Status::Missing,
                            reason: format!("{} is {}, needs {want}", f.shown, have.trim()),
                            vacuous: false,
                        };
                    }
                    ok += 1;
                }
            },
        }
    }
    if let Some(reason) = unknown {
        return Det {
            status: Status::Unknown,
            reason,
            vacuous: false,
        };
    }
    if ok == 0 {
        let reason = if unverifiable > 0 {
            "the catalog gives no file version to compare: check manually"
        } else {
            "none of the catalog's files is on the machine"
        };
        return Det {
            status: Status::Unknown,
            reason: reason.into(),
            vacuous: unverifiable == 0,
        };
    }
    Det {
        status: Status::Installed,
        reason: format!("{ok} file version(s) up to date"),
        vacuous: false,
    }
}

fn detect_registry(rules: &PatchRules, registry: &HashMap<(String, String), Option<&str>>) -> Det {
    if rules.registry.is_empty() {
        return Det {
            status: Status::Unknown,
            reason: "no registry key in the catalog".into(),
            vacuous: false,
        };
    }
    for r in &rules.registry {
        match registry.get(&r.key) {
            None => {
                return Det {
                    status: Status::Missing,
                    reason: format!("registry value {} not found", r.shown),
                    vacuous: false,
                }
            }
            Some(have) => {
                if let Some(want) = &r.expected {
                    let have = have.map(|h| h.trim().to_lowercase()).unwrap_or_default();
                    if &have != want {
                        return Det {
                            status: Status::Missing,
                            reason: format!(
                                "registry value {} is `{have}`, expected `{want}`",
                                r.shown
                            ),
                            vacuous: false,
                        };
                    }
                }
            }
        }
    }
    Det {
        status: Status::Installed,
        reason: format!("{} registry value(s) present", rules.registry.len()),
        vacuous: false,
    }
}

#[cfg(test)]
mod tests;
