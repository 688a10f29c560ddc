//! The normalized update catalog: what every reader produces and what the
//! applicability engine consumes. Pure data; no I/O.
//!
//! Every lookup of the source format is already resolved here: a patch
//! carries its affected product/service-pack pairs, its file and registry
//! checks with their locations, its superseders and its command IDs. Values
//! are trimmed; placeholders (`na`, `NA`, `none`, empty) are `None`.

use std::collections::BTreeMap;

use serde::Serialize;

/// Which format a catalog was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CatalogKind {
    /// MSSecure.XML (HFNetChk / MBSA security bulletins).
    Security,
    /// The Office update catalog (Office Update Inventory Tool).
    Office,
}

impl std::fmt::Display for CatalogKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CatalogKind::Security => "security (MSSecure.XML)",
            CatalogKind::Office => "office (Office update catalog)",
        })
    }
}

/// A date as written in the catalog, and the calendar date when one of the
/// known spellings (`YYYY/MM/DD`, `MM/DD/YYYY`, `M-D-YYYY`, ISO) parses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogDate {
    pub raw: String,
    pub date: Option<jiff::civil::Date>,
}

impl CatalogDate {
    /// `None` for an empty or placeholder value.
    pub fn parse(raw: &str) -> Option<CatalogDate> {
        let raw = clean(raw)?;
        let date = parse_date(&raw);
        Some(CatalogDate { raw, date })
    }
}

/// Parses the date spellings the catalogs use. Slash dates starting with a
/// four-digit year are `Y/M/D`; other slash or dash dates are `M/D/Y`.
pub fn parse_date(raw: &str) -> Option<jiff::civil::Date> {
    let s = raw.split_whitespace().next()?;
    let sep = if s.contains('/') { '/' } else { '-' };
    let parts: Vec<&str> = s.split(sep).collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty() || p.len() > 4) {
        return None;
    }
    let n: Vec<i32> = parts
        .iter()
        .map(|p| p.parse::<i32>().ok())
        .collect::<Option<_>>()?;
    let (y, m, d) = if parts[0].len() == 4 {
        (n[0], n[1], n[2])
    } else if parts[2].len() == 4 {
        (n[2], n[0], n[1])
    } else {
        return None;
    };
    let (Ok(y), Ok(m), Ok(d)) = (i16::try_from(y), i8::try_from(m), i8::try_from(d)) else {
        return None;
    };
    jiff::civil::Date::new(y, m, d).ok()
}

/// Trims a value; empty and placeholder values (`na`, `none`, any case)
/// become `None`.
pub fn clean(raw: &str) -> Option<String> {
    let t = raw.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("na") || t.eq_ignore_ascii_case("none") {
        None
    } else {
        Some(t.to_string())
    }
}

/// One catalog, normalized.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    pub kind: CatalogKind,
    /// `DataVersion` of the file, e.g. `1.0.1.148`.
    pub data_version: Option<String>,
    /// `LastDataUpdate`, raw and parsed.
    pub last_updated: Option<CatalogDate>,
    pub schema_version: Option<String>,
    /// The bulletins (security) or updates (Office), in file order.
    pub bulletins: Vec<Bulletin>,
    /// Products by their catalog ID.
    pub products: BTreeMap<String, Product>,
    /// Service packs by their catalog ID.
    pub service_packs: BTreeMap<String, ServicePack>,
}

impl Catalog {
    pub fn new(kind: CatalogKind) -> Catalog {
        Catalog {
            kind,
            data_version: None,
            last_updated: None,
            schema_version: None,
            bulletins: Vec::new(),
            products: BTreeMap::new(),
            service_packs: BTreeMap::new(),
        }
    }

    /// Patches over all bulletins.
    pub fn patch_count(&self) -> usize {
        self.bulletins.iter().map(|b| b.patches.len()).sum()
    }

    pub fn bulletin(&self, id: &str) -> Option<&Bulletin> {
        self.bulletins
            .iter()
            .find(|b| b.id.eq_ignore_ascii_case(id))
    }
}

/// A security bulletin (or an Office update).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bulletin {
    /// Uppercase and trimmed, e.g. `MS01-050`.
    pub id: String,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub issue: Option<String>,
    pub date_posted: Option<CatalogDate>,
    pub date_revised: Option<CatalogDate>,
    /// `Supported="No"` bulletins are listed but cannot be checked.
    pub supported: bool,
    /// The severity's description, when the catalog gives a real one.
    pub severity: Option<String>,
    /// Trimmed, deduplicated, in file order.
    pub q_numbers: Vec<String>,
    pub comments: Vec<String>,
    pub patches: Vec<Patch>,
    /// Bulletins that supersede one of this bulletin's patches (union over
    /// the patches, deduplicated).
    pub superseded_by: Vec<String>,
    /// 1-based line of the bulletin's element in the source.
    pub line: u32,
}

/// One patch (an installable file) of a bulletin.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Patch {
    /// Trimmed; not unique across bulletins (nor always within one).
    pub name: String,
    /// The Q number the patch installs as, e.g. `Q169556`.
    pub sq_number: Option<String>,
    /// Whether installing it needs a restart (`NoReboot="0"` → true);
    /// `None` when the catalog does not say.
    pub reboot_required: Option<bool>,
    /// Where to download it.
    pub download_url: Option<String>,
    pub comments: Vec<String>,
    /// The products (and their service packs) the patch applies to.
    pub affected: Vec<Affected>,
    /// Files whose version/size/checksum show the patch is installed.
    pub files: Vec<FileCheck>,
    /// Registry values that show the patch is installed.
    pub registry: Vec<RegCheck>,
    /// Windows Installer detection (Office catalogs).
    pub msi: Option<MsiCheck>,
    /// What detection data exists; `None` means unknown — check manually,
    /// never "installed".
    pub detection: Detection,
    /// What supersedes this patch, when anything does.
    pub superseded_by: Option<SupersededBy>,
}

/// What kind of detection data a patch has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Detection {
    Files,
    Registry,
    Both,
    /// Windows Installer product and patch codes (Office).
    Msi,
    /// No detection data: the patch's state is unknown — check manually.
    None,
}

impl Detection {
    pub fn of(files: bool, registry: bool, msi: bool) -> Detection {
        match (msi, files, registry) {
            (true, _, _) => Detection::Msi,
            (false, true, true) => Detection::Both,
            (false, true, false) => Detection::Files,
            (false, false, true) => Detection::Registry,
            (false, false, false) => Detection::None,
        }
    }
}

impl std::fmt::Display for Detection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Detection::Files => "files",
            Detection::Registry => "registry",
            Detection::Both => "files and registry",
            Detection::Msi => "Windows Installer",
            Detection::None => "none (unknown: check manually)",
        })
    }
}

/// One product a patch applies to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Affected {
    pub product_id: String,
    /// The product's name (resolved).
    pub product: String,
    /// The service packs of the product the patch applies to; empty means
    /// the catalog lists none (any).
    pub service_packs: Vec<ServicePackRef>,
    pub fixed_in_sp: Option<FixedInSp>,
}

/// A resolved service-pack reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePackRef {
    pub id: String,
    pub name: String,
}

/// `FixedInSP`, which MSSecure uses two ways: mostly a service-pack level
/// (0–8), sometimes a ServicePackID. Both readings are kept; the
/// applicability engine decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FixedInSp {
    pub raw: String,
    /// The value as a number, when it is one.
    pub level: Option<u32>,
    /// The service pack whose ID equals the value, when there is one.
    pub service_pack: Option<ServicePackRef>,
}

/// A file whose state shows the patch is installed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileCheck {
    pub name: String,
    /// The folder, e.g. `%windir%\system32`.
    pub location: Option<String>,
    /// The version after patching (dotted or comma-separated, as written).
    pub version: Option<String>,
    pub size: Option<u64>,
    pub checksum: Option<String>,
    pub date: Option<CatalogDate>,
    /// The command ID (`e`: change if exists, `c`: change, `a`: add, …).
    pub command: Option<Command>,
}

/// A registry value whose presence shows the patch is installed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegCheck {
    /// The key, e.g. `HKLM\SOFTWARE\…\Hotfix\Q159573`.
    pub key: Option<String>,
    /// The value's name, e.g. `Installed`.
    pub value_name: String,
    /// The registry type as written (e.g. `0x10001`).
    pub value_type: Option<String>,
    /// The expected data (`1`, a version, a Q number, …).
    pub expected: Option<String>,
    pub command: Option<Command>,
}

/// A command ID and its meaning from the catalog's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    pub id: String,
    pub name: Option<String>,
}

/// Windows Installer detection of an Office patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MsiCheck {
    /// The MSP's patch code (a GUID), when known.
    pub patch_code: Option<String>,
    /// The product codes the patch targets (from the affected products).
    pub product_codes: Vec<String>,
    /// Client patch or administrative-image patch.
    pub install: InstallType,
}

/// Which Office installations a patch is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum InstallType {
    /// Applied on each client.
    Client,
    /// Applied to an administrative installation point (then clients
    /// recache/reinstall from it).
    Admin,
}

/// What supersedes a patch: bulletins and their patch names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SupersededBy {
    /// The catalog's entry ID (`SBID`).
    pub id: String,
    pub description: Option<String>,
    pub bulletins: Vec<Superseder>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Superseder {
    pub bulletin_id: String,
    pub patches: Vec<String>,
}

/// A product of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: String,
    pub name: String,
    /// Family names (resolved; first definition of a duplicate ID wins).
    pub families: Vec<String>,
    pub minimum_supported_sp: Option<String>,
    pub current_sp: Option<String>,
    pub current_version: Option<String>,
    /// ServicePack IDs known for the product.
    pub available_sps: Vec<String>,
    /// Windows Installer product codes (Office).
    pub product_codes: Vec<String>,
}

/// A service pack of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePack {
    pub id: String,
    pub name: String,
    pub url: Option<String>,
    pub release_date: Option<CatalogDate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_every_spelling() {
        let d = |s| parse_date(s).map(|d| d.to_string());
        assert_eq!(d("1998/06/01").as_deref(), Some("1998-06-01"));
        assert_eq!(d("10/04/2001").as_deref(), Some("2001-10-04"));
        assert_eq!(d("6/6/2001").as_deref(), Some("2001-06-06"));
        assert_eq!(d("10-1-2001  updated").as_deref(), Some("2001-10-01"));
        assert_eq!(d("2004-03-09").as_deref(), Some("2004-03-09"));
        assert_eq!(d("2001/13/01"), None);
        assert_eq!(d("soon"), None);
        assert_eq!(d(""), None);
    }

    #[test]
    fn placeholders_are_none() {
        for p in ["", "  ", "na", "NA", "none", "None", " na "] {
            assert_eq!(clean(p), None, "{p:?}");
        }
        assert_eq!(clean(" ixsso.dll").as_deref(), Some("ixsso.dll"));
        assert_eq!(clean("None Available").as_deref(), Some("None Available"));
    }

    #[test]
    fn detection_kinds() {
        assert_eq!(Detection::of(false, false, false), Detection::None);
        assert_eq!(Detection::of(true, true, false), Detection::Both);
        assert_eq!(Detection::of(true, false, true), Detection::Msi);
    }
}
