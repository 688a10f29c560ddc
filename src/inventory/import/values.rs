//! A property's value from its text, as CSV cells and JSON/YAML strings
//! write it; a problem when it does not parse.

use std::net::Ipv4Addr;

use crate::inventory::problem::{FieldProblem, Found};
use crate::inventory::validation::service_pack_problem;

pub(super) fn parse_number(
    field: &str,
    text: &str,
    problems: &mut Vec<FieldProblem>,
) -> Option<u64> {
    match text.parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) => {
            problems.push(FieldProblem::new(
                field,
                "a whole number",
                Found::value(text),
            ));
            None
        }
    }
}

pub(super) fn parse_service_pack(
    field: &str,
    text: &str,
    problems: &mut Vec<FieldProblem>,
) -> Option<u32> {
    let n = parse_number(field, text, problems)?;
    match u32::try_from(n) {
        Ok(n) => Some(n),
        Err(_) => {
            problems.push(service_pack_problem(n));
            None
        }
    }
}

pub(super) fn parse_addresses<'a>(
    field: &str,
    texts: impl Iterator<Item = &'a str>,
    problems: &mut Vec<FieldProblem>,
) -> Vec<Ipv4Addr> {
    texts
        .filter_map(|text| match text.parse::<Ipv4Addr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                problems.push(FieldProblem::new(
                    field,
                    "an IPv4 address such as `10.1.2.3`",
                    Found::value(text),
                ));
                None
            }
        })
        .collect()
}

pub(super) fn parse_timestamp(
    field: &str,
    text: &str,
    problems: &mut Vec<FieldProblem>,
) -> Option<jiff::Timestamp> {
    match text.parse::<jiff::Timestamp>() {
        Ok(t) => Some(t),
        Err(_) => {
            problems.push(FieldProblem::new(
                field,
                "an RFC 3339 time such as `2026-11-20T08:30:00Z`",
                Found::value(text),
            ));
            None
        }
    }
}
