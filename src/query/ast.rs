//! The checked query tree and its canonical text form.

use std::fmt::{self, Display};

use super::like::LikePattern;
use super::net::Ipv4Net;

/// A parsed and type-checked collection query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub expr: Expr,
}

/// A boolean combination of conditions.
///
/// Trees built by [`parse`](super::parse) are normalized: `Or` and `And`
/// hold at least two operands and never directly contain a node of their own
/// kind (`a or (b or c)` becomes one `Or` of three). The canonical text of a
/// normalized tree parses back to the same tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Condition(Condition),
}

impl Expr {
    /// A normalized disjunction of `operands`.
    pub(super) fn or(operands: Vec<Expr>) -> Expr {
        let mut flat = Vec::with_capacity(operands.len());
        for operand in operands {
            match operand {
                Expr::Or(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        collapse(flat, Expr::Or)
    }

    /// A normalized conjunction of `operands`.
    pub(super) fn and(operands: Vec<Expr>) -> Expr {
        let mut flat = Vec::with_capacity(operands.len());
        for operand in operands {
            match operand {
                Expr::And(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        collapse(flat, Expr::And)
    }
}

fn collapse(mut operands: Vec<Expr>, combine: fn(Vec<Expr>) -> Expr) -> Expr {
    if operands.len() == 1 {
        if let Some(only) = operands.pop() {
            return only;
        }
    }
    combine(operands)
}

/// One test of one inventory property.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub property: Property,
    pub test: Test,
}

/// An inventory property, resolved against the registry of known properties.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Property {
    /// Canonical spelling, e.g. `os.servicePack` even if written `OS.SERVICEPACK`.
    pub name: String,
    pub kind: PropertyKind,
    /// A machine may have several values, e.g. one per network adapter.
    pub multi_valued: bool,
}

pub use crate::inventory::property::PropertyKind;

#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Compare { op: CompareOp, value: Literal },
    Like { pattern: LikePattern, negated: bool },
    In { values: Vec<Literal>, negated: bool },
    IsNull { negated: bool },
    InSubnet { network: Ipv4Net, negated: bool },
}

/// Comparison operators; `<>` is read as [`CompareOp::Ne`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    pub(super) fn from_symbol(symbol: &str) -> Option<CompareOp> {
        Some(match symbol {
            "=" => CompareOp::Eq,
            "!=" | "<>" => CompareOp::Ne,
            "<" => CompareOp::Lt,
            "<=" => CompareOp::Le,
            ">" => CompareOp::Gt,
            ">=" => CompareOp::Ge,
            _ => return None,
        })
    }

    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }

    /// Whether the operator needs an ordering, which text and addresses lack.
    pub fn is_ordering(self) -> bool {
        !matches!(self, CompareOp::Eq | CompareOp::Ne)
    }
}

/// A literal value. Versions, addresses and timestamps are validated strings.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    String(String),
    /// Always finite.
    Number(f64),
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // `or` binds loosest, so its operands never need parentheses.
            Expr::Or(operands) => write_joined(f, operands, " or ", |_| false),
            Expr::And(operands) => write_joined(f, operands, " and ", |e| matches!(e, Expr::Or(_))),
            Expr::Not(inner) => {
                f.write_str("not ")?;
                write_operand(f, inner, matches!(**inner, Expr::Or(_) | Expr::And(_)))
            }
            Expr::Condition(condition) => condition.fmt(f),
        }
    }
}

fn write_joined(
    f: &mut fmt::Formatter<'_>,
    operands: &[Expr],
    separator: &str,
    needs_parens: fn(&Expr) -> bool,
) -> fmt::Result {
    for (i, operand) in operands.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        write_operand(f, operand, needs_parens(operand))?;
    }
    Ok(())
}

fn write_operand(f: &mut fmt::Formatter<'_>, expr: &Expr, parenthesize: bool) -> fmt::Result {
    if parenthesize {
        write!(f, "({expr})")
    } else {
        expr.fmt(f)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.property.name;
        match &self.test {
            Test::Compare { op, value } => write!(f, "{name} {} {value}", op.symbol()),
            Test::Like { pattern, negated } => {
                write!(f, "{name} {}like ", not(*negated))?;
                write_quoted(f, pattern.source())
            }
            Test::In { values, negated } => {
                write!(f, "{name} {}in (", not(*negated))?;
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    value.fmt(f)?;
                }
                f.write_str(")")
            }
            Test::IsNull { negated } => write!(f, "{name} is {}null", not(*negated)),
            Test::InSubnet { network, negated } => {
                write!(f, "{name} {}in subnet '{network}'", not(*negated))
            }
        }
    }
}

fn not(negated: bool) -> &'static str {
    if negated {
        "not "
    } else {
        ""
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => write_quoted(f, s),
            // Rust never prints floats in exponent form, so this re-lexes as a number.
            Literal::Number(n) => n.fmt(f),
        }
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    write!(f, "'{}'", s.replace('\'', "''"))
}
