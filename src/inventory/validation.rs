//! Checking a machine's facts, as imported from a file or as reported by an
//! agent: one set of rules for both.

use super::machine::Machine;
use super::problem::{FieldProblem, Found};
use super::property::{
    ARCHITECTURES, FREE_FORM_PREFIX as PROPERTIES_PREFIX, MULTI_VALUE_SEPARATOR, OS_TYPES,
};
use crate::suggest::did_you_mean;

/// NetBIOS names are at most 15 characters, but DNS host labels go to 63
/// and some sites inventory machines by their DNS name.
const MAX_NAME_CHARS: usize = 63;
const MAX_TEXT_CHARS: usize = 1024;
pub(super) const MAX_KEY_CHARS: usize = 64;
pub(super) const MAX_SERVICE_PACK: u64 = 99;
/// 16 TiB.
const MAX_MEMORY_MB: u64 = 16 << 20;
/// 1 PiB.
const MAX_DISK_FREE_MB: u64 = 1 << 30;
/// Values shown in messages are cut to this many characters.
pub(super) const EXCERPT_CHARS: usize = 60;
/// Heartbeats outside 1990-01-01 to 2100-01-01 are clock or export errors.
pub(super) const EARLIEST_HEARTBEAT: i64 = 631_152_000;
pub(super) const LATEST_HEARTBEAT: i64 = 4_102_444_800;

/// Sets `os.type` and `architecture` to their canonical spelling when they
/// match one without regard to case, so `Workstation` is stored as
/// `workstation` and queries see one spelling.
pub fn canonicalize_machine(machine: &mut Machine) {
    canonicalize(&mut machine.os.os_type, OS_TYPES);
    canonicalize(&mut machine.architecture, ARCHITECTURES);
}

fn canonicalize(value: &mut Option<String>, allowed: &[&str]) {
    if let Some(v) = value {
        if let Some(canonical) = allowed.iter().find(|a| a.eq_ignore_ascii_case(v)) {
            *v = (*canonical).to_owned();
        }
    }
}

/// Checks every fact of a machine, as imported or as reported by an agent.
/// Case differences in `os.type` and `architecture` are accepted; see
/// [`canonicalize_machine`].
pub fn validate_machine(m: &Machine) -> Result<(), Vec<FieldProblem>> {
    let mut problems = Vec::new();
    let p = &mut problems;
    check_name(&m.name, p);
    let texts = [
        ("domain", &m.domain),
        ("os.name", &m.os.name),
        ("site", &m.site),
    ];
    for (field, value) in texts {
        if let Some(value) = value {
            check_text(field, value, p);
        }
    }
    if let Some(os_type) = &m.os.os_type {
        check_choice("os.type", os_type, OS_TYPES, p);
    }
    if let Some(version) = &m.os.version {
        check_version(version, p);
    }
    if let Some(sp) = m.os.service_pack {
        if u64::from(sp) > MAX_SERVICE_PACK {
            p.push(service_pack_problem(sp.into()));
        }
    }
    if let Some(arch) = &m.architecture {
        check_choice("architecture", arch, ARCHITECTURES, p);
    }
    for product in &m.installed.products {
        check_text("installed.product", product, p);
        if product.contains(MULTI_VALUE_SEPARATOR) {
            p.push(
                FieldProblem::new(
                    "installed.product",
                    "a product name without `;`",
                    Found::value(product),
                )
                .hint(Some("`;` separates products in CSV inventories".into())),
            );
        }
    }
    if let Some(mb) = m.hardware.memory_mb {
        check_range(
            "hardware.memoryMB",
            mb,
            1,
            MAX_MEMORY_MB,
            "a memory size in MB",
            p,
        );
    }
    if let Some(mb) = m.hardware.disk_free_mb {
        check_range(
            "hardware.diskFreeMB",
            mb,
            0,
            MAX_DISK_FREE_MB,
            "a free disk space in MB",
            p,
        );
    }
    for addr in &m.ip.addresses {
        if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
            p.push(FieldProblem::new(
                "ip.address",
                "a host address",
                Found::value(&addr.to_string()),
            ));
        }
    }
    for subnet in &m.ip.subnets {
        let hint = if m.ip.addresses.contains(subnet) {
            Some("that is the machine's own address".to_owned())
        } else if subnet.is_broadcast() || subnet.is_multicast() {
            None
        } else {
            continue;
        };
        p.push(
            FieldProblem::new(
                "ip.subnet",
                "a network address such as `10.1.0.0`",
                Found::value(&subnet.to_string()),
            )
            .hint(hint),
        );
    }
    if let Some(t) = m.last_heartbeat {
        if !(EARLIEST_HEARTBEAT..LATEST_HEARTBEAT).contains(&t.as_second()) {
            p.push(FieldProblem::new(
                "lastHeartbeat",
                "a time from 1990 to 2099",
                Found::value(&t.to_string()),
            ));
        }
    }
    for (key, value) in &m.properties {
        let field = format!("{PROPERTIES_PREFIX}{}", excerpt(key));
        if let Some(expected) = key_problem(key) {
            p.push(FieldProblem::new(&field, expected, Found::value(key)));
        }
        check_text(&field, value, p);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn check_name(name: &str, p: &mut Vec<FieldProblem>) {
    if name.is_empty() {
        p.push(FieldProblem::new("name", "a machine name", Found::Nothing));
        return;
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        p.push(
            FieldProblem::new(
                "name",
                "a name of letters, digits, `-`, `_` and `.`",
                Found::value(name),
            )
            .hint(Some(format!("`{}` is not allowed", bad.escape_debug()))),
        );
        return;
    }
    // `.`, `..` and `-` (and names like them) read as paths or options
    // wherever a machine name is used as one.
    if name.starts_with(['.', '-']) {
        p.push(
            FieldProblem::new(
                "name",
                "a name that starts with a letter, digit or `_`",
                Found::value(name),
            )
            .hint(Some(
                "names such as `.`, `..` and `-` read as paths or options".into(),
            )),
        );
        return;
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        p.push(
            FieldProblem::new(
                "name",
                format!("a name of at most {MAX_NAME_CHARS} characters"),
                Found::value(name),
            )
            .hint(Some(format!("it has {chars}"))),
        );
    }
}

fn check_text(field: &str, value: &str, p: &mut Vec<FieldProblem>) {
    if value.is_empty() {
        p.push(
            FieldProblem::new(field, "a value", Found::Described("empty text".into()))
                .hint(Some("leave the fact out when it is not known".into())),
        );
    } else if let Some(c) = value.chars().find(|c| c.is_control()) {
        p.push(
            FieldProblem::new(
                field,
                "text without control characters",
                Found::value(value),
            )
            .hint(Some(format!("it contains `{}`", c.escape_debug()))),
        );
    } else if value.chars().count() > MAX_TEXT_CHARS {
        p.push(FieldProblem::new(
            field,
            format!("at most {MAX_TEXT_CHARS} characters"),
            Found::Described(format!("{} characters", value.chars().count())),
        ));
    }
}

fn check_choice(field: &str, value: &str, allowed: &[&'static str], p: &mut Vec<FieldProblem>) {
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(value)) {
        return;
    }
    let hint = did_you_mean(value, allowed.iter().copied()).map(|s| format!("did you mean `{s}`?"));
    p.push(
        FieldProblem::new(
            field,
            format!("one of {}", allowed.join(", ")),
            Found::value(value),
        )
        .hint(hint),
    );
}

fn check_version(version: &str, p: &mut Vec<FieldProblem>) {
    let dotted_numbers = version
        .split('.')
        .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if !dotted_numbers || version.len() > MAX_KEY_CHARS {
        p.push(FieldProblem::new(
            "os.version",
            "a dotted numeric version such as `5.1.2600`",
            Found::value(version),
        ));
    }
}

fn check_range(field: &str, value: u64, min: u64, max: u64, what: &str, p: &mut Vec<FieldProblem>) {
    if !(min..=max).contains(&value) {
        p.push(FieldProblem::new(
            field,
            format!("{what} from {min} to {max}"),
            Found::value(&value.to_string()),
        ));
    }
}

/// What is wrong with a free-form property key, as "expected" text.
pub(super) fn key_problem(key: &str) -> Option<String> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_CHARS
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (!ok).then(|| format!("a key of 1 to {MAX_KEY_CHARS} letters, digits and `_`"))
}

/// The value as shown in messages: control characters escaped, cut to
/// [`EXCERPT_CHARS`] characters.
pub(super) fn excerpt(text: &str) -> String {
    let shown: Vec<char> = text
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_debug().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect();
    if shown.len() <= EXCERPT_CHARS {
        return shown.into_iter().collect();
    }
    let mut out: String = shown[..EXCERPT_CHARS - 1].iter().collect();
    out.push('…');
    out
}

pub(super) fn service_pack_problem(n: u64) -> FieldProblem {
    FieldProblem::new(
        "os.servicePack",
        format!("a service pack number from 0 to {MAX_SERVICE_PACK}"),
        Found::value(&n.to_string()),
    )
}
