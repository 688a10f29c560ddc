//! Which catalog a software update package draws from, and what its update
//! selection means in that catalog: the patch files, their download URLs and
//! the command line each is installed with. Pure: the catalog is read by the
//! caller.

use crate::catalog::{Bulletin, Catalog, Patch};
use crate::manifest::software_update_package::{
    OfficeInstallType, Ohotfix, SoftwareUpdatePackageSpec, UiLevel, UpdateSelection,
};
use crate::manifest::sync_host::CatalogType;
use crate::model::Desired;
use crate::suggest::did_you_mean;

/// Where a package's catalog is, relative to the repository root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogLocation {
    /// e.g. `packages/security-inventory-tool/mssecure.xml`.
    pub path: String,
    /// The sync host that fetches it.
    pub sync_host: String,
    /// The package whose source receives it.
    pub package: String,
}

/// The catalog of `update_type`: the first sync host (by name) that syncs a
/// catalog of that type names a package; the catalog is `mssecure.xml` or
/// `invcif.xml` in that package's source. `Err` says why there is none.
pub fn catalog_location(
    desired: &Desired,
    update_type: CatalogType,
) -> Result<CatalogLocation, String> {
    let file = crate::sync::file_name(update_type);
    for (host, sh) in &desired.sync_hosts {
        for c in &sh.spec.catalogs {
            if c.catalog_type != update_type {
                continue;
            }
            let Some(package) = desired.packages.get(&c.package) else {
                return Err(format!(
                    "sync host `{host}` puts the {} catalog into package `{}`, which is not declared",
                    crate::sync::kind_name(update_type),
                    c.package
                ));
            };
            let Some(source) = &package.spec.source else {
                return Err(format!(
                    "package `{}` has no source to hold the catalog",
                    c.package
                ));
            };
            let dir = source.as_str().trim_end_matches('/');
            return Ok(CatalogLocation {
                path: format!("{dir}/{file}"),
                sync_host: host.clone(),
                package: c.package.clone(),
            });
        }
    }
    Err(format!(
        "no sync host fetches a {} catalog (`{file}`); declare one in a SyncHost's `catalogs`",
        crate::sync::kind_name(update_type)
    ))
}

/// One file of a resolved package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedFile {
    /// Index of the selection in `spec.updates`.
    pub selection: usize,
    pub bulletin: String,
    /// The catalog's patch name.
    pub patch: String,
    /// The file's name in the source directory.
    pub file_name: String,
    /// Where the catalog says to download it.
    pub download_url: Option<String>,
    /// What the program runs.
    pub command_line: String,
    /// The program's name in the package.
    pub program_name: String,
}

/// A selection that does not match the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionProblem {
    /// Index of the selection in `spec.updates`.
    pub selection: usize,
    /// The field below `spec.updates[i]`: `bulletin`, `qNumbers[0]`, …
    pub field: String,
    pub message: String,
    pub help: Option<String>,
}

/// What a package's selection resolves to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    pub files: Vec<ResolvedFile>,
    pub problems: Vec<SelectionProblem>,
}

/// Digits of a Q or KB number: `Q835732`, `KB835732` and `835732` are one.
fn q_digits(q: &str) -> &str {
    let t = q.trim();
    let upper = t.to_ascii_uppercase();
    if upper.starts_with("KB") {
        &t[2..]
    } else if upper.starts_with('Q') {
        &t[1..]
    } else {
        t
    }
}

/// Resolves every selection of `spec` against `catalog`. A bulletin, Q
/// number or product the catalog does not have is a problem with a
/// suggestion; matching ignores case and surrounding white space.
pub fn resolve(spec: &SoftwareUpdatePackageSpec, catalog: &Catalog) -> Resolution {
    let mut out = Resolution::default();
    for (i, sel) in spec.updates.iter().enumerate() {
        let id = sel.bulletin.trim();
        let Some(bulletin) = catalog.bulletin(id) else {
            let ids = catalog.bulletins.iter().map(|b| b.id.as_str());
            out.problems.push(SelectionProblem {
                selection: i,
                field: "bulletin".into(),
                message: format!(
                    "bulletin `{id}` is not in the {} catalog",
                    kind_word(spec.update_type)
                ),
                help: Some(match did_you_mean(id, ids) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "check the ID against `patchops catalog inspect` of the catalog".into(),
                }),
            });
            continue;
        };
        let before = out.problems.len();
        let patches = select_patches(i, sel, bulletin, &mut out.problems);
        if out.problems.len() > before {
            continue;
        }
        if patches.is_empty() {
            out.problems.push(SelectionProblem {
                selection: i,
                field: "bulletin".into(),
                message: format!(
                    "no patch of bulletin `{}` matches the selection's filters",
                    bulletin.id
                ),
                help: Some("loosen `qNumbers`, `products` or `language`".into()),
            });
            continue;
        }
        let mut seen: Vec<String> = Vec::new();
        for patch in patches {
            let file_name = file_name(patch);
            let key = file_name.to_ascii_lowercase();
            if seen.contains(&key) {
                continue; // the same file for several products
            }
            seen.push(key);
            let command_line = sel
                .command_line
                .clone()
                .unwrap_or_else(|| default_command_line(spec, &file_name));
            let program_name = match &sel.program_name {
                Some(p) => format!("{p} ({file_name})"),
                None => format!("{} ({file_name})", bulletin.id),
            };
            out.files.push(ResolvedFile {
                selection: i,
                bulletin: bulletin.id.clone(),
                patch: patch.name.clone(),
                file_name,
                download_url: patch.download_url.clone(),
                command_line,
                program_name,
            });
        }
    }
    out
}

fn kind_word(t: CatalogType) -> &'static str {
    match t {
        CatalogType::Security => "security",
        CatalogType::Office => "Office",
    }
}

fn select_patches<'a>(
    i: usize,
    sel: &UpdateSelection,
    bulletin: &'a Bulletin,
    problems: &mut Vec<SelectionProblem>,
) -> Vec<&'a Patch> {
    let mut patches: Vec<&Patch> = bulletin.patches.iter().collect();
    if !sel.q_numbers.is_empty() {
        let known: Vec<&str> = bulletin
            .q_numbers
            .iter()
            .map(|q| q.as_str())
            .chain(
                bulletin
                    .patches
                    .iter()
                    .filter_map(|p| p.sq_number.as_deref()),
            )
            .collect();
        let mut wanted = Vec::new();
        for (qi, q) in sel.q_numbers.iter().enumerate() {
            let digits = q_digits(q);
            if known.iter().any(|k| q_digits(k) == digits) {
                wanted.push(digits);
            } else {
                let digits_known: Vec<&str> = known.iter().map(|k| q_digits(k)).collect();
                problems.push(SelectionProblem {
                    selection: i,
                    field: format!("qNumbers[{qi}]"),
                    message: format!("bulletin `{}` has no Q number `{}`", bulletin.id, q.trim()),
                    help: Some(match did_you_mean(digits, digits_known.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("its Q numbers: {}", digits_known.join(", ")),
                    }),
                });
            }
        }
        // A patch that names a Q number (as its own or in its file name) is
        // kept when it names a wanted one; patches that name none stay.
        let names_q = |p: &Patch, q: &str| {
            p.sq_number.as_deref().is_some_and(|s| q_digits(s) == q) || p.name.contains(q)
        };
        if patches.iter().any(|p| wanted.iter().any(|q| names_q(p, q))) {
            patches.retain(|p| wanted.iter().any(|q| names_q(p, q)));
        }
    }
    if !sel.products.is_empty() {
        let mut wanted = Vec::new();
        for (pi, product) in sel.products.iter().enumerate() {
            let product = product.trim();
            let all: Vec<&str> = bulletin
                .patches
                .iter()
                .flat_map(|p| p.affected.iter().map(|a| a.product.as_str()))
                .collect();
            if all.iter().any(|a| a.eq_ignore_ascii_case(product)) {
                wanted.push(product);
            } else {
                problems.push(SelectionProblem {
                    selection: i,
                    field: format!("products[{pi}]"),
                    message: format!(
                        "no patch of bulletin `{}` is for product `{product}`",
                        bulletin.id
                    ),
                    help: Some(match did_you_mean(product, all.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("its products: {}", dedup(all).join(", ")),
                    }),
                });
            }
        }
        patches.retain(|p| {
            p.affected
                .iter()
                .any(|a| wanted.iter().any(|w| a.product.eq_ignore_ascii_case(w)))
        });
    }
    if let Some(language) = &sel.language {
        // The security catalog carries no language per patch; the file
        // name or URL does for most (`_en`, `eng`, `en-us`). Patches that
        // name no language stay.
        let lang = language.trim().to_ascii_lowercase();
        patches.retain(|p| match patch_language(p) {
            None => true,
            Some(l) => l == lang,
        });
    }
    patches
}

fn dedup(mut v: Vec<&str>) -> Vec<&str> {
    v.sort_unstable();
    v.dedup();
    v
}

/// The language a patch's file name or URL names, as a Windows language
/// code (`enu`, `deu`, …), when it names one of the common ones.
fn patch_language(p: &Patch) -> Option<&'static str> {
    const CODES: [(&str, &str, &str); 6] = [
        ("enu", "_en", "/en-us/"),
        ("deu", "_de", "/de/"),
        ("fra", "_fr", "/fr/"),
        ("jpn", "_ja", "/ja/"),
        ("esn", "_es", "/es/"),
        ("ita", "_it", "/it/"),
    ];
    let name = p.name.to_ascii_lowercase();
    let url = p
        .download_url
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    CODES.iter().find_map(|(code, suffix, path)| {
        let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
        (stem.ends_with(suffix) || url.contains(path)).then_some(*code)
    })
}

/// The file a patch is saved as: its name when that is a file name (has an
/// extension), else the last segment of its download URL when that is one,
/// else the name with `.exe`.
pub fn file_name(p: &Patch) -> String {
    let name = p.name.trim();
    let safe = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    if has_extension(name) && safe(name) {
        return name.to_string();
    }
    if let Some(url) = &p.download_url {
        let path = url.split(['?', '#']).next().unwrap_or_default();
        let last = path.rsplit('/').next().unwrap_or_default();
        let lower = last.to_ascii_lowercase();
        if safe(last) && [".exe", ".msi", ".msp"].iter().any(|e| lower.ends_with(e)) {
            return last.to_string();
        }
    }
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{}.exe",
        if cleaned.is_empty() {
            "patch"
        } else {
            &cleaned
        }
    )
}

fn has_extension(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".exe", ".msi", ".msp"].iter().any(|e| lower.ends_with(e))
}

/// The command line a file is installed with when its selection gives none.
///
/// Security updates, by installer generation (recognized from the file
/// name): `KB…`-named packages (the update.exe installer) run
/// `/quiet /norestart`; `Q…` hotfixes (`Q299553_W2K_SP3_x86_en.EXE`,
/// `Q305399i.exe`, `Q307195engi386.EXE`; hotfix.exe) run `-q -z`; anything
/// else is an IExpress package (Internet Explorer, Office and server
/// product fixes) and runs `/q:a /r:n`. Office client installs run
/// `ohotfix.exe`, which reads the generated `ohotfix.ini` beside it;
/// administrative installs run the patch itself with `/q:a /r:n` against
/// the administrative installation point the package's program is run on.
pub fn default_command_line(spec: &SoftwareUpdatePackageSpec, file_name: &str) -> String {
    match spec.update_type {
        CatalogType::Office => match spec.office.as_ref().map(|o| o.install_type) {
            Some(OfficeInstallType::Administrative) => format!("{file_name} /q:a /r:n"),
            _ => "ohotfix.exe".to_string(),
        },
        CatalogType::Security => {
            let lower = file_name.to_ascii_lowercase();
            let switches = if lower.starts_with("kb")
                || lower.contains("-kb")
                || lower.starts_with("windows")
            {
                "/quiet /norestart"
            } else if lower.starts_with('q') && lower[1..].starts_with(|c: char| c.is_ascii_digit())
            {
                "-q -z"
            } else {
                "/q:a /r:n"
            };
            format!("{file_name} {switches}")
        }
    }
}

/// Whether a package needs a generated `ohotfix.ini` (Office client installs).
pub fn needs_ohotfix(spec: &SoftwareUpdatePackageSpec) -> bool {
    spec.update_type == CatalogType::Office
        && spec.office.as_ref().map(|o| o.install_type) != Some(OfficeInstallType::Administrative)
}

/// The `ohotfix.ini` of an Office client package: deterministic, CRLF
/// line ends (Ohotfix is a Windows program).
pub fn ohotfix_ini(settings: &Ohotfix) -> String {
    let level = |l: UiLevel| match l {
        UiLevel::Q => "q",
        UiLevel::Qn => "qn",
        UiLevel::Qb => "qb",
        UiLevel::Qr => "qr",
        UiLevel::Qf => "qf",
    };
    format!(
        "[OHotfix]\r\nShowSuccessDialog={}\r\nOHotfixUILevel={}\r\nMsiUILevel={}\r\n",
        u8::from(settings.show_success_dialog),
        level(settings.ohotfix_ui_level),
        level(settings.msi_ui_level)
    )
}
