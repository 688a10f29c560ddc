//! The Office update catalog: Office updates detected by Windows Installer
//! product codes and patch codes, with client and administrative-image
//! variants. No real copy of the Office Update Inventory Tool's catalog is
//! public; the structure read here is defined in `docs/office-catalog.md`.
//! Same rules as MSSecure: values trimmed, placeholders `None`, duplicate
//! IDs warned (first wins), a dangling reference makes its update bad.

use std::collections::HashMap;

use super::model::*;
use super::mssecure::Lines;
use super::xml::{self, Element, Item};
use super::{CatalogError, CatalogReader, Loaded, Problem, ProblemSeverity};

/// The root element of the Office update catalog.
pub const ROOT: &str = "OfficeUpdateCatalog";

/// Reads the Office update catalog.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfficeReader;

impl CatalogReader for OfficeReader {
    fn kind(&self) -> CatalogKind {
        CatalogKind::Office
    }

    fn read(&self, bytes: &[u8]) -> Result<Loaded, CatalogError> {
        let mut state = State::default();
        xml::scan(bytes, ROOT, |item| {
            match item {
                Item::Open(el) => {
                    state.open(&el);
                    state.stack.push(el.name.to_string());
                }
                Item::Close { name } => {
                    state.stack.pop();
                    state.close(name);
                }
            }
            Ok(())
        })?;
        Ok(state.finish(bytes))
    }
}

#[derive(Debug, Default)]
struct RawUpdate {
    offset: usize,
    bulletin: Option<Bulletin>,
    patches: Vec<RawPatch>,
    /// (offset, field, message) found while reading.
    errors: Vec<(usize, String, String)>,
}

/// (product ID, offset, FixedInSP, service-pack IDs with offsets).
type RawTarget = (String, usize, Option<String>, Vec<(String, usize)>);

#[derive(Debug)]
struct RawPatch {
    patch: Patch,
    /// (product ID, offset, FixedInSP, service-pack IDs with offsets).
    targets: Vec<RawTarget>,
}

#[derive(Debug, Default)]
struct State {
    stack: Vec<String>,
    header: Catalog0,
    products: Vec<(usize, Product)>,
    product: Option<(usize, Product)>,
    service_packs: Vec<(usize, ServicePack)>,
    updates: Vec<RawUpdate>,
    update: Option<RawUpdate>,
    patch: Option<RawPatch>,
}

#[derive(Debug, Default)]
struct Catalog0 {
    data_version: Option<String>,
    last_updated: Option<CatalogDate>,
    schema_version: Option<String>,
}

fn opt(el: &Element<'_>, key: &str) -> Option<String> {
    el.get(key).and_then(clean)
}

fn yes_no(v: Option<String>) -> Option<bool> {
    match v?.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Some(true),
        "no" | "false" | "0" => Some(false),
        _ => None,
    }
}

impl State {
    fn parent(&self) -> &str {
        self.stack.last().map_or("", String::as_str)
    }

    fn open(&mut self, el: &Element<'_>) {
        let parent = self.parent().to_string();
        match (el.name, parent.as_str()) {
            (ROOT, _) => {
                self.header.data_version = opt(el, "DataVersion");
                self.header.last_updated = el.get("LastDataUpdate").and_then(CatalogDate::parse);
                self.header.schema_version = opt(el, "SchemaVersion");
            }
            ("Product", "Products") => {
                self.product = Some((
                    el.offset,
                    Product {
                        id: el.trimmed("ProductID").to_string(),
                        name: el.trimmed("Name").to_string(),
                        families: opt(el, "Family").into_iter().collect(),
                        minimum_supported_sp: None,
                        current_sp: None,
                        current_version: opt(el, "CurrentVersion"),
                        available_sps: Vec::new(),
                        product_codes: Vec::new(),
                    },
                ));
            }
            ("ProductCode", "Product") => {
                if let (Some((_, p)), Some(code)) = (&mut self.product, opt(el, "Code")) {
                    let code = code.to_ascii_uppercase();
                    if !p.product_codes.contains(&code) {
                        p.product_codes.push(code);
                    }
                }
            }
            ("ServicePack", "ServicePacks") => {
                self.service_packs.push((
                    el.offset,
                    ServicePack {
                        id: el.trimmed("ServicePackID").to_string(),
                        name: el.trimmed("Name").to_string(),
                        url: opt(el, "URL"),
                        release_date: el.get("ReleaseDate").and_then(CatalogDate::parse),
                    },
                ));
            }
            ("Update", "Updates") => {
                self.update = Some(RawUpdate {
                    offset: el.offset,
                    bulletin: Some(Bulletin {
                        id: el.trimmed("UpdateID").to_ascii_uppercase(),
                        title: opt(el, "Title"),
                        summary: opt(el, "Summary"),
                        issue: None,
                        date_posted: el.get("DatePosted").and_then(CatalogDate::parse),
                        date_revised: el.get("DateRevised").and_then(CatalogDate::parse),
                        supported: yes_no(opt(el, "Supported")).unwrap_or(true),
                        severity: opt(el, "Severity"),
                        q_numbers: Vec::new(),
                        comments: Vec::new(),
                        patches: Vec::new(),
                        superseded_by: Vec::new(),
                        line: 0,
                    }),
                    ..RawUpdate::default()
                });
            }
            ("QNumber", "Update") => {
                if let (Some(b), Some(q)) = (
                    self.update.as_mut().and_then(|u| u.bulletin.as_mut()),
                    opt(el, "QNumber"),
                ) {
                    if !b.q_numbers.contains(&q) {
                        b.q_numbers.push(q);
                    }
                }
            }
            ("Patch", "Update") => {
                let Some(update) = &mut self.update else {
                    return;
                };
                let name = el.trimmed("Name").to_string();
                if name.is_empty() {
                    update.errors.push((
                        el.offset,
                        "Patch@Name".into(),
                        "the patch has no Name".into(),
                    ));
                }
                let install = match el.trimmed("Install").to_ascii_lowercase().as_str() {
                    "" | "client" => Some(InstallType::Client),
                    "admin" | "administrative" => Some(InstallType::Admin),
                    other => {
                        update.errors.push((
                            el.offset,
                            "Patch@Install".into(),
                            format!("patch {name}: Install {other:?} is neither Client nor Admin"),
                        ));
                        None
                    }
                };
                let superseded_by = opt(el, "SupersededBy").map(|raw| SupersededBy {
                    bulletins: raw
                        .split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|s| !s.is_empty())
                        .map(|s| Superseder {
                            bulletin_id: s.to_ascii_uppercase(),
                            patches: Vec::new(),
                        })
                        .collect(),
                    id: raw,
                    description: None,
                });
                let patch_code = opt(el, "PatchCode").map(|c| c.to_ascii_uppercase());
                self.patch = Some(RawPatch {
                    patch: Patch {
                        name,
                        sq_number: opt(el, "QNumber"),
                        reboot_required: yes_no(opt(el, "Reboot")),
                        download_url: opt(el, "DownloadURL"),
                        comments: opt(el, "Comment").into_iter().collect(),
                        affected: Vec::new(),
                        files: Vec::new(),
                        registry: Vec::new(),
                        msi: Some(MsiCheck {
                            patch_code,
                            product_codes: Vec::new(),
                            install: install.unwrap_or(InstallType::Client),
                        }),
                        detection: Detection::None,
                        superseded_by,
                    },
                    targets: Vec::new(),
                });
            }
            ("Target", "Patch") => {
                if let Some(p) = &mut self.patch {
                    p.targets.push((
                        el.trimmed("ProductID").to_string(),
                        el.offset,
                        opt(el, "FixedInSP"),
                        Vec::new(),
                    ));
                }
            }
            ("ServicePack", "Target") => {
                if let Some(t) = self.patch.as_mut().and_then(|p| p.targets.last_mut()) {
                    let id = el.trimmed("ServicePackID");
                    if !id.is_empty() {
                        t.3.push((id.to_string(), el.offset));
                    }
                }
            }
            ("File", "Patch") => {
                if let Some(p) = &mut self.patch {
                    let size = opt(el, "Size").and_then(|s| s.parse().ok());
                    p.patch.files.push(FileCheck {
                        name: el.trimmed("Name").to_string(),
                        location: opt(el, "Location"),
                        version: opt(el, "Version"),
                        size,
                        checksum: opt(el, "Checksum"),
                        date: el.get("Date").and_then(CatalogDate::parse),
                        command: None,
                    });
                }
            }
            ("Registry", "Patch") => {
                if let Some(p) = &mut self.patch {
                    p.patch.registry.push(RegCheck {
                        key: opt(el, "Key"),
                        value_name: el.trimmed("Value").to_string(),
                        value_type: opt(el, "Type"),
                        expected: el
                            .get("Data")
                            .map(str::trim)
                            .filter(|v| !v.is_empty())
                            .map(str::to_string),
                        command: None,
                    });
                }
            }
            _ => {}
        }
    }

    fn close(&mut self, name: &str) {
        match name {
            "Product" => {
                if let Some(p) = self.product.take() {
                    self.products.push(p);
                }
            }
            "Patch" => {
                if let (Some(u), Some(p)) = (&mut self.update, self.patch.take()) {
                    u.patches.push(p);
                }
            }
            "Update" => {
                if let Some(u) = self.update.take() {
                    self.updates.push(u);
                }
            }
            _ => {}
        }
    }

    fn finish(self, bytes: &[u8]) -> Loaded {
        let lines = Lines::new(bytes);
        let mut problems: Vec<(usize, Problem)> = Vec::new();
        let problem = |sev, offset, bulletin: Option<&str>, field: &str, message: String| {
            let (line, column) = lines.at(offset);
            (
                offset,
                Problem {
                    severity: sev,
                    bulletin: bulletin.map(str::to_string),
                    field: field.to_string(),
                    line,
                    column,
                    message,
                },
            )
        };
        use ProblemSeverity::{Error, Warning};
        let mut catalog = Catalog::new(CatalogKind::Office);
        catalog.data_version = self.header.data_version;
        catalog.last_updated = self.header.last_updated;
        catalog.schema_version = self.header.schema_version;
        for (offset, sp) in self.service_packs {
            if catalog.service_packs.contains_key(&sp.id) {
                problems.push(problem(
                    Warning,
                    offset,
                    None,
                    "ServicePack@ServicePackID",
                    format!(
                        "ServicePackID {} is defined again; the first definition is kept",
                        sp.id
                    ),
                ));
            } else {
                catalog.service_packs.insert(sp.id.clone(), sp);
            }
        }
        for (offset, p) in self.products {
            if catalog.products.contains_key(&p.id) {
                problems.push(problem(
                    Warning,
                    offset,
                    None,
                    "Product@ProductID",
                    format!(
                        "ProductID {} is defined again; the first definition is kept",
                        p.id
                    ),
                ));
            } else {
                catalog.products.insert(p.id.clone(), p);
            }
        }
        let mut seen: HashMap<String, ()> = HashMap::new();
        for u in self.updates {
            let Some(mut b) = u.bulletin else { continue };
            let id = (!b.id.is_empty()).then(|| b.id.clone());
            let mut errors: Vec<(usize, Problem)> = u
                .errors
                .into_iter()
                .map(|(o, f, m)| problem(Error, o, id.as_deref(), &f, m))
                .collect();
            if b.id.is_empty() {
                errors.push(problem(
                    Error,
                    u.offset,
                    None,
                    "Update@UpdateID",
                    "the update has no UpdateID".into(),
                ));
            } else if seen.insert(b.id.clone(), ()).is_some() {
                problems.push(problem(
                    Warning,
                    u.offset,
                    id.as_deref(),
                    "Update@UpdateID",
                    "update defined again; the first definition is kept".into(),
                ));
                continue;
            }
            for raw in u.patches {
                let mut patch = raw.patch;
                let mut codes: Vec<String> = Vec::new();
                for (pid, offset, fixed, sps) in raw.targets {
                    let Some(product) = catalog.products.get(&pid) else {
                        errors.push(problem(
                            Error,
                            offset,
                            id.as_deref(),
                            "Target@ProductID",
                            format!(
                                "patch {}: ProductID {pid:?} is not defined in <Products>",
                                patch.name
                            ),
                        ));
                        continue;
                    };
                    for c in &product.product_codes {
                        if !codes.contains(c) {
                            codes.push(c.clone());
                        }
                    }
                    let mut service_packs = Vec::new();
                    for (sp, offset) in sps {
                        match catalog.service_packs.get(&sp) {
                            Some(s) => service_packs.push(ServicePackRef {
                                id: s.id.clone(),
                                name: s.name.clone(),
                            }),
                            None => errors.push(problem(
                                Error,
                                offset,
                                id.as_deref(),
                                "ServicePack@ServicePackID",
                                format!("patch {}: ServicePackID {sp:?} is not defined in <ServicePacks>", patch.name),
                            )),
                        }
                    }
                    let fixed_in_sp = fixed.map(|raw| FixedInSp {
                        level: raw.parse().ok(),
                        service_pack: catalog.service_packs.get(&raw).map(|s| ServicePackRef {
                            id: s.id.clone(),
                            name: s.name.clone(),
                        }),
                        raw,
                    });
                    patch.affected.push(Affected {
                        product_id: product.id.clone(),
                        product: product.name.clone(),
                        service_packs,
                        fixed_in_sp,
                    });
                }
                if let Some(msi) = &mut patch.msi {
                    msi.product_codes = codes;
                }
                let msi = patch
                    .msi
                    .as_ref()
                    .is_some_and(|m| m.patch_code.is_some() && !m.product_codes.is_empty());
                patch.detection =
                    Detection::of(!patch.files.is_empty(), !patch.registry.is_empty(), msi);
                if let Some(sb) = &patch.superseded_by {
                    for s in &sb.bulletins {
                        if !b.superseded_by.contains(&s.bulletin_id) {
                            b.superseded_by.push(s.bulletin_id.clone());
                        }
                    }
                }
                b.patches.push(patch);
            }
            if errors.is_empty() {
                b.line = lines.at(u.offset).0;
                catalog.bulletins.push(b);
            } else {
                problems.extend(errors);
            }
        }
        problems.sort_by_key(|(o, _)| *o);
        Loaded {
            catalog,
            problems: problems.into_iter().map(|(_, p)| p).collect(),
        }
    }
}
