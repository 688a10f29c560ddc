//! The inventory's properties: the one list of the facts a machine has, as
//! the query language, the evaluator and the inventory importer spell them.

use std::fmt;

/// The canonical spellings of `os.type`.
pub const OS_TYPES: &[&str] = &["workstation", "server", "domainController"];
/// The canonical spellings of `architecture`.
pub const ARCHITECTURES: &[&str] = &["x86", "x64", "ia64"];

/// Free-form text properties, e.g. `properties.owner`.
pub const FREE_FORM_PREFIX: &str = "properties.";

/// Separates the values of a multi-valued property written as one text
/// (a CSV cell), so no single value may contain it.
pub const MULTI_VALUE_SEPARATOR: char = ';';

/// A fixed (not free-form) property of a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fact {
    Name,
    Domain,
    OsName,
    OsType,
    OsVersion,
    OsServicePack,
    Architecture,
    Site,
    Product,
    MemoryMb,
    DiskFreeMb,
    Address,
    Subnet,
    LastHeartbeat,
}

/// How a property's values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropertyKind {
    Text,
    Version,
    Number,
    Address,
    Time,
}

impl fmt::Display for PropertyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PropertyKind::Text => "text",
            PropertyKind::Version => "version",
            PropertyKind::Number => "number",
            PropertyKind::Address => "address",
            PropertyKind::Time => "time",
        })
    }
}

/// One fixed property: its spelling, type, and the values it accepts.
#[derive(Debug, Clone, Copy)]
pub struct FactDef {
    pub fact: Fact,
    /// Canonical spelling, e.g. `os.servicePack`.
    pub name: &'static str,
    pub kind: PropertyKind,
    /// A machine may have several values, e.g. one per network adapter.
    pub multi_valued: bool,
    /// The only values accepted; empty when any value goes.
    pub values: &'static [&'static str],
}

impl FactDef {
    const fn new(fact: Fact, name: &'static str, kind: PropertyKind) -> Self {
        Self {
            fact,
            name,
            kind,
            multi_valued: false,
            values: &[],
        }
    }

    const fn values(self, values: &'static [&'static str]) -> Self {
        Self { values, ..self }
    }

    const fn multi_valued(self) -> Self {
        Self {
            multi_valued: true,
            ..self
        }
    }
}

use PropertyKind::{Address, Number, Text, Time, Version};

/// Every fixed property, in the order documentation and CSV exports list them.
pub const FACTS: &[FactDef] = &[
    FactDef::new(Fact::Name, "name", Text),
    FactDef::new(Fact::Domain, "domain", Text),
    FactDef::new(Fact::OsName, "os.name", Text),
    FactDef::new(Fact::OsType, "os.type", Text).values(OS_TYPES),
    FactDef::new(Fact::OsVersion, "os.version", Version),
    FactDef::new(Fact::OsServicePack, "os.servicePack", Number),
    FactDef::new(Fact::Architecture, "architecture", Text).values(ARCHITECTURES),
    FactDef::new(Fact::Site, "site", Text),
    FactDef::new(Fact::Product, "installed.product", Text).multi_valued(),
    FactDef::new(Fact::MemoryMb, "hardware.memoryMB", Number),
    FactDef::new(Fact::DiskFreeMb, "hardware.diskFreeMB", Number),
    FactDef::new(Fact::Address, "ip.address", Address).multi_valued(),
    FactDef::new(Fact::Subnet, "ip.subnet", Address).multi_valued(),
    FactDef::new(Fact::LastHeartbeat, "lastHeartbeat", Time),
];

impl Fact {
    /// The fact spelled `name`, ignoring case as WQL does.
    pub fn lookup(name: &str) -> Option<&'static FactDef> {
        FACTS.iter().find(|def| def.name.eq_ignore_ascii_case(name))
    }

    pub fn def(self) -> &'static FactDef {
        FACTS
            .iter()
            .find(|def| def.fact == self)
            .expect("every fact is listed in FACTS")
    }

    pub fn name(self) -> &'static str {
        self.def().name
    }
}

/// The key of a free-form property spelled `name` (`properties.<key>`,
/// prefix in any case), or `None`.
pub fn free_form_key(name: &str) -> Option<&str> {
    match name.split_at_checked(FREE_FORM_PREFIX.len()) {
        Some((prefix, key)) if prefix.eq_ignore_ascii_case(FREE_FORM_PREFIX) => Some(key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fact_is_listed_once() {
        for def in FACTS {
            assert_eq!(def.fact.def().name, def.name);
            assert_eq!(FACTS.iter().filter(|d| d.fact == def.fact).count(), 1);
        }
        assert_eq!(FACTS.len(), 14);
    }

    #[test]
    fn lookup_ignores_case() {
        assert_eq!(
            Fact::lookup("OS.SERVICEPACK").map(|d| d.fact),
            Some(Fact::OsServicePack)
        );
        assert!(Fact::lookup("os.servicepacks").is_none());
        assert_eq!(free_form_key("Properties.owner"), Some("owner"));
        assert_eq!(free_form_key("owner"), None);
    }
}
