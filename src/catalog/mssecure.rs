//! MSSecure.XML (the HFNetChk/MBSA security catalog), read in one
//! streaming pass.
//!
//! The lookup tables (products, service packs, files, registry, locations,
//! …) come after the bulletins, so bulletins are collected with their raw
//! IDs and resolved at the end. A reference that resolves to nothing makes
//! its bulletin bad: the bulletin is reported and left out, the rest load.
//! Duplicate table IDs are tolerated (the first definition wins) and
//! reported as warnings. `docs/catalogs.md` lists every quirk handled.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use super::model::*;
use super::xml::{self, Element, Item};
use super::{CatalogError, CatalogReader, Loaded, Problem, ProblemSeverity};

/// The root element of MSSecure.XML.
pub const ROOT: &str = "BulletinDatastore";

/// Reads MSSecure.XML.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsSecureReader;

impl CatalogReader for MsSecureReader {
    fn kind(&self) -> CatalogKind {
        CatalogKind::Security
    }

    fn read(&self, bytes: &[u8]) -> Result<Loaded, CatalogError> {
        let mut state = State::default();
        xml::scan(bytes, ROOT, |item| state.item(item))?;
        Ok(state.finish(bytes))
    }
}

/// The elements the reader knows; the rest are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Root,
    Bulletin,
    BulletinComment,
    QNumber,
    Patch,
    PatchComment,
    AffectedProduct,
    AffectedServicePack,
    FileChg,
    RegChg,
    Products,
    Product,
    ProductFamilies,
    ProductFamily,
    AvailableSPs,
    AvailableSP,
    ServicePack,
    RegKey,
    RegChange,
    File,
    FileChange,
    Command,
    Location,
    Comment,
    Severity,
    SupercededBy,
    SupercededBulletin,
    SupercededPatch,
    Other,
}

fn tag(name: &str) -> Tag {
    match name {
        ROOT => Tag::Root,
        "Bulletin" => Tag::Bulletin,
        "BulletinComment" => Tag::BulletinComment,
        "QNumber" => Tag::QNumber,
        "Patch" => Tag::Patch,
        "PatchComment" => Tag::PatchComment,
        "AffectedProduct" => Tag::AffectedProduct,
        "AffectedServicePack" => Tag::AffectedServicePack,
        "FileChg" => Tag::FileChg,
        "RegChg" => Tag::RegChg,
        "Products" => Tag::Products,
        "Product" => Tag::Product,
        "ProductFamilies" => Tag::ProductFamilies,
        "ProductFamily" => Tag::ProductFamily,
        "AvailableSPs" => Tag::AvailableSPs,
        "AvailableSP" => Tag::AvailableSP,
        "ServicePack" => Tag::ServicePack,
        "RegKey" => Tag::RegKey,
        "RegChange" => Tag::RegChange,
        "File" => Tag::File,
        "FileChange" => Tag::FileChange,
        "Command" => Tag::Command,
        "Location" => Tag::Location,
        "Comment" => Tag::Comment,
        "Severity" => Tag::Severity,
        "SupercededBy" => Tag::SupercededBy,
        "SupercededBulletin" => Tag::SupercededBulletin,
        "SupercededPatch" => Tag::SupercededPatch,
        _ => Tag::Other,
    }
}

/// An ID as referenced, with where the reference is.
#[derive(Debug, Clone)]
struct Ref {
    id: String,
    offset: usize,
}

#[derive(Debug, Default)]
struct RawBulletin {
    offset: usize,
    id: String,
    title: Option<String>,
    summary: Option<String>,
    issue: Option<String>,
    posted: Option<CatalogDate>,
    revised: Option<CatalogDate>,
    supported: bool,
    severity: Option<Ref>,
    q_numbers: Vec<String>,
    comments: Vec<Ref>,
    patches: Vec<RawPatch>,
}

#[derive(Debug, Default)]
struct RawPatch {
    offset: usize,
    name: String,
    location: Option<Ref>,
    sbid: Option<Ref>,
    sq_number: Option<String>,
    no_reboot: Option<String>,
    comments: Vec<Ref>,
    affected: Vec<RawAffected>,
    files: Vec<Ref>,
    registry: Vec<Ref>,
}

#[derive(Debug)]
struct RawAffected {
    product: Ref,
    fixed_in_sp: Option<String>,
    service_packs: Vec<Ref>,
}

#[derive(Debug)]
struct RawProduct {
    offset: usize,
    product: Product,
    families: Vec<Ref>,
}

#[derive(Debug)]
struct RawFileChange {
    file: String,
    location: Option<Ref>,
    version: Option<String>,
    size: Option<u64>,
    checksum: Option<String>,
    date: Option<CatalogDate>,
    command: Option<String>,
}

#[derive(Debug)]
struct RawRegChange {
    value_name: String,
    value_type: Option<String>,
    location: Option<Ref>,
    expected: Option<String>,
    command: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    stack: Vec<Tag>,
    header: HashMap<&'static str, String>,
    bulletins: Vec<RawBulletin>,
    bulletin: Option<RawBulletin>,
    patch: Option<RawPatch>,
    product: Option<RawProduct>,
    products: Vec<RawProduct>,
    families: HashMap<String, String>,
    service_packs: HashMap<String, ServicePack>,
    sp_order: Vec<String>,
    /// (name, type) of the RegKey being read.
    reg_key: Option<(String, Option<String>)>,
    reg_changes: HashMap<String, RawRegChange>,
    /// (name, location) of the File being read.
    file: Option<(String, Option<Ref>)>,
    file_ids: HashMap<String, String>,
    file_changes: HashMap<String, RawFileChange>,
    commands: HashMap<String, Option<String>>,
    locations: HashMap<String, Option<String>>,
    comments: HashMap<String, Option<String>>,
    severities: HashMap<String, Option<String>>,
    superseded: HashMap<String, SupersededBy>,
    superseded_current: Option<SupersededBy>,
    /// Warnings by offset: (offset, field, message).
    warnings: Vec<(usize, String, String)>,
}

fn opt_ref(el: &Element<'_>, key: &str) -> Option<Ref> {
    let id = el.trimmed(key);
    (!id.is_empty()).then(|| Ref {
        id: id.to_string(),
        offset: el.offset,
    })
}

fn opt(el: &Element<'_>, key: &str) -> Option<String> {
    el.get(key).and_then(clean)
}

impl State {
    fn parent(&self) -> Tag {
        self.stack.last().copied().unwrap_or(Tag::Other)
    }

    fn grandparent(&self) -> Tag {
        let n = self.stack.len();
        if n >= 2 {
            self.stack[n - 2]
        } else {
            Tag::Other
        }
    }

    fn warn(&mut self, offset: usize, field: impl Into<String>, message: impl Into<String>) {
        self.warnings.push((offset, field.into(), message.into()));
    }

    fn item(&mut self, item: Item<'_>) -> Result<(), CatalogError> {
        match item {
            Item::Open(el) => {
                let t = tag(el.name);
                self.open(t, &el);
                self.stack.push(t);
            }
            Item::Close { name } => {
                self.stack.pop();
                self.close(tag(name));
            }
        }
        Ok(())
    }

    fn open(&mut self, t: Tag, el: &Element<'_>) {
        let parent = self.parent();
        match t {
            Tag::Root => {
                for key in ["DataVersion", "LastDataUpdate", "SchemaVersion"] {
                    if let Some(v) = opt(el, key) {
                        self.header.insert(key, v);
                    }
                }
            }
            Tag::Bulletin => {
                self.bulletin = Some(RawBulletin {
                    offset: el.offset,
                    id: el.trimmed("BulletinID").to_ascii_uppercase(),
                    title: opt(el, "Title"),
                    summary: opt(el, "Summary"),
                    issue: opt(el, "Issue"),
                    posted: el.get("DatePosted").and_then(CatalogDate::parse),
                    revised: el.get("DateRevised").and_then(CatalogDate::parse),
                    supported: !el.trimmed("Supported").eq_ignore_ascii_case("no"),
                    severity: opt_ref(el, "ImpactSeverityID"),
                    ..RawBulletin::default()
                });
            }
            Tag::BulletinComment => {
                if let (Some(b), Some(r)) = (&mut self.bulletin, opt_ref(el, "CommentID")) {
                    b.comments.push(r);
                }
            }
            Tag::QNumber => {
                if let (Some(b), Some(q)) = (&mut self.bulletin, opt(el, "QNumber")) {
                    if !b.q_numbers.contains(&q) {
                        b.q_numbers.push(q);
                    }
                }
            }
            Tag::Patch => {
                let sbid = opt_ref(el, "SBID").filter(|r| r.id != "0");
                self.patch = Some(RawPatch {
                    offset: el.offset,
                    name: el.trimmed("PatchName").to_string(),
                    location: opt_ref(el, "PatchLocationID"),
                    sbid,
                    sq_number: opt(el, "SQNumber"),
                    no_reboot: opt(el, "NoReboot"),
                    ..RawPatch::default()
                });
            }
            Tag::PatchComment => {
                if let (Some(p), Some(r)) = (&mut self.patch, opt_ref(el, "CommentID")) {
                    p.comments.push(r);
                }
            }
            Tag::AffectedProduct if parent == Tag::Patch => {
                if let Some(p) = &mut self.patch {
                    p.affected.push(RawAffected {
                        product: Ref {
                            id: el.trimmed("ProductID").to_string(),
                            offset: el.offset,
                        },
                        fixed_in_sp: opt(el, "FixedInSP"),
                        service_packs: Vec::new(),
                    });
                }
            }
            Tag::AffectedServicePack => {
                if let (Some(a), Some(r)) = (
                    self.patch.as_mut().and_then(|p| p.affected.last_mut()),
                    opt_ref(el, "ServicePackID"),
                ) {
                    a.service_packs.push(r);
                }
            }
            Tag::FileChg => {
                if let Some(p) = &mut self.patch {
                    p.files.push(Ref {
                        id: el.trimmed("FileChangeID").to_string(),
                        offset: el.offset,
                    });
                }
            }
            Tag::RegChg => {
                if let Some(p) = &mut self.patch {
                    p.registry.push(Ref {
                        id: el.trimmed("RegChangeID").to_string(),
                        offset: el.offset,
                    });
                }
            }
            Tag::Product if parent == Tag::Products => {
                let id = el.trimmed("ProductID").to_string();
                self.product = Some(RawProduct {
                    offset: el.offset,
                    product: Product {
                        name: el.trimmed("Name").to_string(),
                        families: Vec::new(),
                        minimum_supported_sp: opt(el, "MinimumSupportedServicePackID"),
                        current_sp: opt(el, "CurrentServicePackID"),
                        current_version: opt(el, "CurrentVersion"),
                        available_sps: Vec::new(),
                        product_codes: Vec::new(),
                        id,
                    },
                    families: Vec::new(),
                });
            }
            Tag::ProductFamily if parent == Tag::ProductFamilies => {
                if self.grandparent() == Tag::Product {
                    if let (Some(p), Some(r)) = (&mut self.product, opt_ref(el, "ProductFamilyID"))
                    {
                        p.families.push(r);
                    }
                } else if self.grandparent() == Tag::Root {
                    let id = el.trimmed("ProductFamilyID").to_string();
                    let name = el.trimmed("Name").to_string();
                    if let Some(first) = self.families.get(&id) {
                        let msg = format!(
                            "ProductFamilyID {id} is defined again (\"{name}\"); the first definition (\"{first}\") is kept"
                        );
                        self.warn(el.offset, "ProductFamily@ProductFamilyID", msg);
                    } else {
                        self.families.insert(id, name);
                    }
                }
            }
            // Also directly under Product: one catalog puts it there.
            Tag::AvailableSP if matches!(parent, Tag::AvailableSPs | Tag::Product) => {
                if let (Some(p), Some(r)) = (&mut self.product, opt_ref(el, "ServicePackID")) {
                    if !p.product.available_sps.contains(&r.id) {
                        p.product.available_sps.push(r.id);
                    }
                }
            }
            Tag::ServicePack => {
                let id = el.trimmed("ServicePackID").to_string();
                let sp = ServicePack {
                    id: id.clone(),
                    name: el.trimmed("Name").to_string(),
                    url: opt(el, "URL"),
                    release_date: el.get("ReleaseDate").and_then(CatalogDate::parse),
                };
                if self.service_packs.contains_key(&id) {
                    self.warn(
                        el.offset,
                        "ServicePack@ServicePackID",
                        format!(
                            "ServicePackID {id} is defined again; the first definition is kept"
                        ),
                    );
                } else {
                    self.sp_order.push(id.clone());
                    self.service_packs.insert(id, sp);
                }
            }
            Tag::RegKey => {
                self.reg_key = Some((el.trimmed("Name").to_string(), opt(el, "Type")));
            }
            Tag::RegChange => {
                let Some((name, ty)) = self.reg_key.clone() else {
                    return;
                };
                // A RegKeyID on a RegChange is ignored: the enclosing RegKey
                // says which value it is (many of these IDs dangle).
                let id = el.trimmed("RegChangeID").to_string();
                let change = RawRegChange {
                    value_name: name,
                    value_type: ty,
                    location: opt_ref(el, "LocationID"),
                    expected: el
                        .get("RegChangeValue")
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(str::to_string),
                    command: opt(el, "CommandID"),
                };
                let dup = match self.reg_changes.entry(id.clone()) {
                    Entry::Occupied(_) => true,
                    Entry::Vacant(v) => {
                        v.insert(change);
                        false
                    }
                };
                if dup {
                    self.warn(
                        el.offset,
                        "RegChange@RegChangeID",
                        format!("RegChangeID {id} is defined again; the first definition is kept"),
                    );
                }
            }
            Tag::File => {
                let id = el.trimmed("FileID").to_string();
                let name = el.trimmed("Name").to_string();
                if let Some(first) = self.file_ids.get(&id) {
                    let msg = format!(
                        "FileID {id} is defined again ({name}; first: {first}); files are not referenced by ID, so each keeps its own changes"
                    );
                    self.warn(el.offset, "File@FileID", msg);
                } else {
                    self.file_ids.insert(id, name.clone());
                }
                self.file = Some((name, opt_ref(el, "LocationID")));
            }
            Tag::FileChange => {
                let Some((file, location)) = self.file.clone() else {
                    return;
                };
                let id = el.trimmed("FileChangeID").to_string();
                let size = match opt(el, "Size") {
                    None => None,
                    Some(s) => match s.parse::<u64>() {
                        Ok(n) => Some(n),
                        Err(_) => {
                            self.warn(
                                el.offset,
                                "FileChange@Size",
                                format!("FileChangeID {id} ({file}): size {s:?} is not a number; ignored"),
                            );
                            None
                        }
                    },
                };
                let change = RawFileChange {
                    file: file.clone(),
                    location,
                    version: opt(el, "Version"),
                    size,
                    checksum: opt(el, "Checksum"),
                    date: el.get("Date").and_then(CatalogDate::parse),
                    command: opt(el, "CommandID"),
                };
                let dup = match self.file_changes.entry(id.clone()) {
                    Entry::Occupied(_) => true,
                    Entry::Vacant(v) => {
                        v.insert(change);
                        false
                    }
                };
                if dup {
                    self.warn(
                        el.offset,
                        "FileChange@FileChangeID",
                        format!("FileChangeID {id} ({file}) is defined again; the first definition is kept"),
                    );
                }
            }
            Tag::Command => {
                let id = el.trimmed("CommandID").to_string();
                let name = opt(el, "Name");
                self.commands.entry(id).or_insert(name);
            }
            Tag::Location => {
                self.insert_table(el, "Location", "LocationID", "Path");
            }
            Tag::Comment => {
                self.insert_table(el, "Comment", "CommentID", "Text");
            }
            Tag::Severity => {
                self.insert_table(el, "Severity", "SeverityID", "Description");
            }
            Tag::SupercededBy => {
                self.superseded_current = Some(SupersededBy {
                    id: el.trimmed("SBID").to_string(),
                    description: opt(el, "Description"),
                    bulletins: Vec::new(),
                });
            }
            Tag::SupercededBulletin => {
                if let Some(sb) = &mut self.superseded_current {
                    sb.bulletins.push(Superseder {
                        bulletin_id: el.trimmed("BulletinID").to_ascii_uppercase(),
                        patches: Vec::new(),
                    });
                }
            }
            Tag::SupercededPatch => {
                if let Some(b) = self
                    .superseded_current
                    .as_mut()
                    .and_then(|sb| sb.bulletins.last_mut())
                {
                    let name = el.trimmed("PatchName");
                    if !name.is_empty() {
                        b.patches.push(name.to_string());
                    }
                }
            }
            _ => {}
        }
    }

    fn insert_table(&mut self, el: &Element<'_>, what: &str, id_key: &str, value_key: &str) {
        let id = el.trimmed(id_key).to_string();
        let value = opt(el, value_key);
        let table = match what {
            "Location" => &mut self.locations,
            "Comment" => &mut self.comments,
            _ => &mut self.severities,
        };
        let dup = match table.entry(id.clone()) {
            Entry::Occupied(_) => true,
            Entry::Vacant(v) => {
                v.insert(value);
                false
            }
        };
        if dup {
            self.warn(
                el.offset,
                format!("{what}@{id_key}"),
                format!("{id_key} {id} is defined again; the first definition is kept"),
            );
        }
    }

    fn close(&mut self, t: Tag) {
        match t {
            Tag::Bulletin => {
                if let Some(b) = self.bulletin.take() {
                    self.bulletins.push(b);
                }
            }
            Tag::Patch => {
                if let (Some(b), Some(p)) = (&mut self.bulletin, self.patch.take()) {
                    b.patches.push(p);
                }
            }
            Tag::Product => {
                if let Some(p) = self.product.take() {
                    self.products.push(p);
                }
            }
            Tag::RegKey => self.reg_key = None,
            Tag::File => self.file = None,
            Tag::SupercededBy => {
                if let Some(sb) = self.superseded_current.take() {
                    self.superseded.entry(sb.id.clone()).or_insert(sb);
                }
            }
            _ => {}
        }
    }

    fn finish(mut self, bytes: &[u8]) -> Loaded {
        let lines = Lines::new(bytes);
        let mut catalog = Catalog::new(CatalogKind::Security);
        catalog.data_version = self.header.remove("DataVersion");
        catalog.last_updated = self
            .header
            .remove("LastDataUpdate")
            .and_then(|v| CatalogDate::parse(&v));
        catalog.schema_version = self.header.remove("SchemaVersion");

        for id in &self.sp_order {
            if let Some(sp) = self.service_packs.get(id) {
                catalog.service_packs.insert(id.clone(), sp.clone());
            }
        }
        for raw in std::mem::take(&mut self.products) {
            let mut product = raw.product;
            if catalog.products.contains_key(&product.id) {
                self.warn(
                    raw.offset,
                    "Product@ProductID",
                    format!(
                        "ProductID {} is defined again; the first definition is kept",
                        product.id
                    ),
                );
                continue;
            }
            for r in &raw.families {
                match self.families.get(&r.id) {
                    Some(name) => product.families.push(name.clone()),
                    None => self.warnings.push((
                        r.offset,
                        "ProductFamily@ProductFamilyID".into(),
                        format!(
                            "product {}: ProductFamilyID {} is not defined",
                            product.id, r.id
                        ),
                    )),
                }
            }
            catalog.products.insert(product.id.clone(), product);
        }

        let mut problems: Vec<(usize, Problem)> = Vec::new();
        let mut seen: HashMap<String, ()> = HashMap::new();
        for raw in std::mem::take(&mut self.bulletins) {
            if !raw.id.is_empty() && seen.insert(raw.id.clone(), ()).is_some() {
                let (line, column) = lines.at(raw.offset);
                problems.push((
                    raw.offset,
                    Problem {
                        severity: ProblemSeverity::Warning,
                        bulletin: Some(raw.id.clone()),
                        field: "Bulletin@BulletinID".into(),
                        line,
                        column,
                        message: "bulletin defined again; the first definition is kept".into(),
                    },
                ));
                continue;
            }
            match self.resolve(raw, &catalog, &lines) {
                Ok((bulletin, warnings)) => {
                    problems.extend(warnings);
                    catalog.bulletins.push(bulletin);
                }
                Err(errors) => problems.extend(errors),
            }
        }
        for (offset, field, message) in std::mem::take(&mut self.warnings) {
            let (line, column) = lines.at(offset);
            problems.push((
                offset,
                Problem {
                    severity: ProblemSeverity::Warning,
                    bulletin: None,
                    field,
                    line,
                    column,
                    message,
                },
            ));
        }
        problems.sort_by_key(|(offset, _)| *offset);
        Loaded {
            catalog,
            problems: problems.into_iter().map(|(_, p)| p).collect(),
        }
    }

    /// Resolves one bulletin's references; errors make it bad.
    #[allow(clippy::type_complexity)]
    fn resolve(
        &self,
        raw: RawBulletin,
        catalog: &Catalog,
        lines: &Lines,
    ) -> Result<(Bulletin, Vec<(usize, Problem)>), Vec<(usize, Problem)>> {
        let id = (!raw.id.is_empty()).then(|| raw.id.clone());
        let mut errors: Vec<(usize, Problem)> = Vec::new();
        let mut warnings: Vec<(usize, Problem)> = Vec::new();
        let mut problem = |sev: ProblemSeverity, offset: usize, field: &str, message: String| {
            let (line, column) = lines.at(offset);
            let p = Problem {
                severity: sev,
                bulletin: id.clone(),
                field: field.to_string(),
                line,
                column,
                message,
            };
            match sev {
                ProblemSeverity::Error => errors.push((offset, p)),
                ProblemSeverity::Warning => warnings.push((offset, p)),
            }
        };
        use ProblemSeverity::{Error, Warning};
        if raw.id.is_empty() {
            problem(
                Error,
                raw.offset,
                "Bulletin@BulletinID",
                "the bulletin has no BulletinID".into(),
            );
        }
        let severity = match &raw.severity {
            None => None,
            Some(r) => match self.severities.get(&r.id) {
                Some(d) => d.clone(),
                None => {
                    problem(
                        Warning,
                        r.offset,
                        "Bulletin@ImpactSeverityID",
                        format!("SeverityID {} is not defined in <Severities>", r.id),
                    );
                    None
                }
            },
        };
        let mut comments = Vec::new();
        for r in &raw.comments {
            match self.comments.get(&r.id) {
                Some(Some(text)) => comments.push(text.clone()),
                Some(None) => {}
                None => problem(
                    Warning,
                    r.offset,
                    "BulletinComment@CommentID",
                    format!("CommentID {} is not defined in <Comments>", r.id),
                ),
            }
        }
        let mut patches = Vec::new();
        let mut superseded_by: Vec<String> = Vec::new();
        for p in raw.patches {
            if p.name.is_empty() {
                problem(
                    Error,
                    p.offset,
                    "Patch@PatchName",
                    "the patch has no PatchName".into(),
                );
            }
            let download_url = match &p.location {
                None => None,
                Some(r) => match self.locations.get(&r.id) {
                    Some(path) => path.clone(),
                    None => {
                        problem(
                            Error,
                            r.offset,
                            "Patch@PatchLocationID",
                            format!(
                                "patch {}: LocationID {} is not defined in <Locations>",
                                p.name, r.id
                            ),
                        );
                        None
                    }
                },
            };
            let superseded = match &p.sbid {
                None => None,
                Some(r) => match self.superseded.get(&r.id) {
                    Some(sb) => {
                        for b in &sb.bulletins {
                            if !superseded_by.contains(&b.bulletin_id) {
                                superseded_by.push(b.bulletin_id.clone());
                            }
                        }
                        Some(sb.clone())
                    }
                    None => {
                        problem(
                            Error,
                            r.offset,
                            "Patch@SBID",
                            format!(
                                "patch {}: SBID {} is not defined in <SupercededBys>",
                                p.name, r.id
                            ),
                        );
                        None
                    }
                },
            };
            let mut patch_comments = Vec::new();
            for r in &p.comments {
                match self.comments.get(&r.id) {
                    Some(Some(text)) => patch_comments.push(text.clone()),
                    Some(None) => {}
                    None => problem(
                        Warning,
                        r.offset,
                        "PatchComment@CommentID",
                        format!(
                            "patch {}: CommentID {} is not defined in <Comments>",
                            p.name, r.id
                        ),
                    ),
                }
            }
            let mut affected = Vec::new();
            for a in &p.affected {
                let Some(product) = catalog.products.get(&a.product.id) else {
                    problem(
                        Error,
                        a.product.offset,
                        "AffectedProduct@ProductID",
                        format!(
                            "patch {}: ProductID {:?} is not defined in <Products>",
                            p.name, a.product.id
                        ),
                    );
                    continue;
                };
                let mut service_packs = Vec::new();
                for r in &a.service_packs {
                    match catalog.service_packs.get(&r.id) {
                        Some(sp) => service_packs.push(ServicePackRef {
                            id: sp.id.clone(),
                            name: sp.name.clone(),
                        }),
                        None => problem(
                            Error,
                            r.offset,
                            "AffectedServicePack@ServicePackID",
                            format!(
                                "patch {}: ServicePackID {} is not defined in <ServicePacks>",
                                p.name, r.id
                            ),
                        ),
                    }
                }
                let fixed_in_sp = a.fixed_in_sp.as_ref().map(|raw| {
                    let known = product.available_sps.iter().any(|s| s == raw)
                        || a.service_packs.iter().any(|s| &s.id == raw);
                    FixedInSp {
                        raw: raw.clone(),
                        level: raw.parse().ok(),
                        service_pack: known.then(|| catalog.service_packs.get(raw)).flatten().map(
                            |sp| ServicePackRef {
                                id: sp.id.clone(),
                                name: sp.name.clone(),
                            },
                        ),
                    }
                });
                affected.push(Affected {
                    product_id: product.id.clone(),
                    product: product.name.clone(),
                    service_packs,
                    fixed_in_sp,
                });
            }
            let mut files = Vec::new();
            for r in &p.files {
                let Some(fc) = self.file_changes.get(&r.id) else {
                    problem(
                        Error,
                        r.offset,
                        "FileChg@FileChangeID",
                        format!(
                            "patch {}: FileChangeID {:?} is not defined in <Files>",
                            p.name, r.id
                        ),
                    );
                    continue;
                };
                let location = match &fc.location {
                    None => None,
                    Some(l) => match self.locations.get(&l.id) {
                        Some(path) => path.clone(),
                        None => {
                            problem(
                                Error,
                                l.offset,
                                "File@LocationID",
                                format!(
                                    "file {} (FileChangeID {}, used by patch {}): LocationID {} is not defined in <Locations>",
                                    fc.file, r.id, p.name, l.id
                                ),
                            );
                            None
                        }
                    },
                };
                files.push(FileCheck {
                    name: fc.file.clone(),
                    location,
                    version: fc.version.clone(),
                    size: fc.size,
                    checksum: fc.checksum.clone(),
                    date: fc.date.clone(),
                    command: self.command(&fc.command),
                });
            }
            let mut registry = Vec::new();
            for r in &p.registry {
                let Some(rc) = self.reg_changes.get(&r.id) else {
                    problem(
                        Error,
                        r.offset,
                        "RegChg@RegChangeID",
                        format!(
                            "patch {}: RegChangeID {:?} is not defined in <RegKeys>",
                            p.name, r.id
                        ),
                    );
                    continue;
                };
                let key = match &rc.location {
                    None => None,
                    Some(l) => match self.locations.get(&l.id) {
                        Some(path) => path.clone(),
                        None => {
                            problem(
                                Error,
                                l.offset,
                                "RegChange@LocationID",
                                format!(
                                    "registry value {} (RegChangeID {}, used by patch {}): LocationID {} is not defined in <Locations>",
                                    rc.value_name, r.id, p.name, l.id
                                ),
                            );
                            None
                        }
                    },
                };
                registry.push(RegCheck {
                    key,
                    value_name: rc.value_name.clone(),
                    value_type: rc.value_type.clone(),
                    expected: rc.expected.clone(),
                    command: self.command(&rc.command),
                });
            }
            let detection = Detection::of(!files.is_empty(), !registry.is_empty(), false);
            patches.push(Patch {
                name: p.name,
                sq_number: p.sq_number,
                reboot_required: p.no_reboot.as_deref().and_then(|v| match v {
                    "0" => Some(true),
                    "1" => Some(false),
                    _ => None,
                }),
                download_url,
                comments: patch_comments,
                affected,
                files,
                registry,
                msi: None,
                detection,
                superseded_by: superseded,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let (line, _) = lines.at(raw.offset);
        Ok((
            Bulletin {
                id: raw.id,
                title: raw.title,
                summary: raw.summary,
                issue: raw.issue,
                date_posted: raw.posted,
                date_revised: raw.revised,
                supported: raw.supported,
                severity,
                q_numbers: raw.q_numbers,
                comments,
                patches,
                superseded_by,
                line,
            },
            warnings,
        ))
    }

    fn command(&self, id: &Option<String>) -> Option<Command> {
        id.as_ref().map(|id| Command {
            id: id.clone(),
            name: self.commands.get(id).cloned().flatten(),
        })
    }
}

/// Byte offsets → line and column, by the offsets of every newline.
pub(crate) struct Lines<'a> {
    src: &'a [u8],
    newlines: Vec<usize>,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Lines<'a> {
        let src = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        Lines {
            src,
            newlines: memchr::memchr_iter(b'\n', src).collect(),
        }
    }

    /// 1-based (line, column).
    pub(crate) fn at(&self, offset: usize) -> (u32, u32) {
        let line = self.newlines.partition_point(|&n| n < offset);
        let start = if line == 0 {
            0
        } else {
            self.newlines[line - 1] + 1
        };
        let end = offset.min(self.src.len()).max(start);
        let column = self.src[start..end]
            .iter()
            .filter(|&&b| (b & 0xC0) != 0x80)
            .count()
            + 1;
        (
            u32::try_from(line + 1).unwrap_or(u32::MAX),
            u32::try_from(column).unwrap_or(u32::MAX),
        )
    }
}
