//! One machine's scan facts: what an inventory scan of the machine found
//! that the applicability engine needs (installed products and their
//! service packs, file versions, registry values, Windows Installer
//! products and patches). Documented in `docs/scan-facts.md`.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The scan facts of one machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScanFacts {
    /// The machine's name (compared without case).
    pub machine: String,
    /// Installed products, by catalog product name or product ID.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<ProductFact>,
    /// File versions found on the machine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileFact>,
    /// Registry values found on the machine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registry: Vec<RegistryFact>,
    /// Windows Installer product codes and installed patch codes (Office).
    #[serde(default, skip_serializing_if = "MsiFacts::is_empty")]
    pub msi: MsiFacts,
}

/// An installed product.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProductFact {
    /// The catalog's product name (trimmed, any case) or its product ID.
    pub product: String,
    /// The installed service pack: the catalog's service-pack name (e.g.
    /// `Windows NT4 Service Pack 6a`, `Internet Explorer 5.01 Gold`) or its
    /// ServicePackID. Absent: not reported (patches that list service packs
    /// are then `unknown` for the product).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_pack: Option<String>,
}

/// A file found on the machine: either `path` (`%windir%\system32\x.dll`)
/// or `location` + `name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileFact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The file version (dotted or comma-separated); absent when the file
    /// has no version resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl FileFact {
    /// The full path as written (`location\name` when no `path`).
    pub fn full_path(&self) -> Option<String> {
        match (&self.path, &self.location, &self.name) {
            (Some(p), _, _) => Some(p.clone()),
            (None, Some(l), Some(n)) => Some(format!("{l}\\{n}")),
            (None, None, Some(n)) => Some(n.clone()),
            _ => None,
        }
    }
}

/// A registry value found on the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistryFact {
    /// e.g. `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Hotfix\Q300972`.
    pub key: String,
    /// The value's name, e.g. `Installed`.
    pub value: String,
    /// The value's data as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// Windows Installer facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MsiFacts {
    /// Installed product codes (GUIDs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<String>,
    /// Installed patch codes (GUIDs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<String>,
}

impl MsiFacts {
    pub fn is_empty(&self) -> bool {
        self.products.is_empty() && self.patches.is_empty()
    }
}

/// The text formats scan facts are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactsFormat {
    Json,
    Yaml,
}

impl FactsFormat {
    /// From the extension: `.json`, `.yaml`, `.yml`.
    pub fn from_path(path: &Path) -> Option<FactsFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(FactsFormat::Json),
            "yaml" | "yml" => Some(FactsFormat::Yaml),
            _ => None,
        }
    }
}

/// Why scan facts could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactsError {
    #[error("invalid JSON scan facts: {0}")]
    Json(String),
    #[error("invalid YAML scan facts: {0}")]
    Yaml(String),
    #[error("invalid scan facts: {0}")]
    Invalid(String),
}

/// Parses and checks one machine's scan facts.
pub fn parse_facts(text: &str, format: FactsFormat) -> Result<ScanFacts, FactsError> {
    let facts: ScanFacts = match format {
        FactsFormat::Json => {
            serde_json::from_str(text).map_err(|e| FactsError::Json(e.to_string()))?
        }
        FactsFormat::Yaml => {
            serde_yaml::from_str(text).map_err(|e| FactsError::Yaml(e.to_string()))?
        }
    };
    check(&facts)?;
    Ok(facts)
}

fn check(facts: &ScanFacts) -> Result<(), FactsError> {
    if facts.machine.trim().is_empty() {
        return Err(FactsError::Invalid("`machine` is empty".into()));
    }
    for (i, p) in facts.products.iter().enumerate() {
        if p.product.trim().is_empty() {
            return Err(FactsError::Invalid(format!(
                "products[{i}].product is empty"
            )));
        }
    }
    for (i, f) in facts.files.iter().enumerate() {
        if f.path.is_none() && f.name.is_none() {
            return Err(FactsError::Invalid(format!(
                "files[{i}]: give `path`, or `location` and `name`"
            )));
        }
        if f.path.is_some() && (f.location.is_some() || f.name.is_some()) {
            return Err(FactsError::Invalid(format!(
                "files[{i}]: give either `path` or `location` and `name`, not both"
            )));
        }
    }
    for (i, r) in facts.registry.iter().enumerate() {
        if r.key.trim().is_empty() {
            return Err(FactsError::Invalid(format!("registry[{i}].key is empty")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_read_alike() {
        let json = r#"{"machine":"PC01","products":[{"product":"Windows NT Server 4.0","servicePack":"Windows NT4 Service Pack 5"}],
            "files":[{"path":"%windir%\\system32\\idq.dll","version":"5.0.1781.3"},{"location":"%windir%","name":"a.dll"}],
            "registry":[{"key":"HKLM\\SOFTWARE\\X","value":"Installed","data":"1"}],
            "msi":{"products":["{A}"],"patches":["{B}"]}}"#;
        let yaml = "machine: PC01\nproducts:\n  - product: Windows NT Server 4.0\n    servicePack: Windows NT4 Service Pack 5\nfiles:\n  - path: '%windir%\\system32\\idq.dll'\n    version: 5.0.1781.3\n  - location: '%windir%'\n    name: a.dll\nregistry:\n  - key: HKLM\\SOFTWARE\\X\n    value: Installed\n    data: '1'\nmsi:\n  products: ['{A}']\n  patches: ['{B}']\n";
        let a = parse_facts(json, FactsFormat::Json).expect("json");
        let b = parse_facts(yaml, FactsFormat::Yaml).expect("yaml");
        assert_eq!(a, b);
        assert_eq!(a.files[1].full_path().as_deref(), Some("%windir%\\a.dll"));
    }

    #[test]
    fn errors_are_clear() {
        let e = parse_facts(r#"{"machine":"x","produkts":[]}"#, FactsFormat::Json).unwrap_err();
        assert!(e.to_string().contains("unknown field `produkts`"), "{e}");
        let e = parse_facts("machine: ' '\n", FactsFormat::Yaml).unwrap_err();
        assert!(e.to_string().contains("`machine` is empty"), "{e}");
        let e = parse_facts(
            r#"{"machine":"x","files":[{"version":"1"}]}"#,
            FactsFormat::Json,
        )
        .unwrap_err();
        assert!(e.to_string().contains("files[0]"), "{e}");
        let e = parse_facts("machine: [", FactsFormat::Yaml).unwrap_err();
        assert!(e.to_string().starts_with("invalid YAML"), "{e}");
    }
}
